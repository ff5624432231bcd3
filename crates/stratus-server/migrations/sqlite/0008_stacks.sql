-- Orchestration stacks (and the recycle bin, below): the template as given, parameter values, and each resource's
-- record (JSON, read and written whole with the stack under its version).

CREATE TABLE stacks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    template TEXT NOT NULL,
    parameters TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    on_failure TEXT NOT NULL,
    resources TEXT NOT NULL,
    outputs TEXT NOT NULL,
    created_by TEXT NOT NULL,
    -- Whose rights the action under way runs with (resumed with them after a restart).
    actor_id TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE INDEX stacks_vdc ON stacks (vdc_id);
CREATE INDEX stacks_status ON stacks (status);

-- Template services keep their orchestration template.
ALTER TABLE services ADD COLUMN template TEXT NOT NULL DEFAULT '';

-- The recycle bin: instances, volumes and buckets deleted stay in their tables
-- (stopped, holding quota) while listed here; restoring removes the row, purging deletes
-- the resource for real.
CREATE TABLE recycle_bin (
    resource_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    deleted_by TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    purge_at TEXT NOT NULL
);

CREATE INDEX recycle_bin_purge ON recycle_bin (purge_at);
CREATE INDEX recycle_bin_project ON recycle_bin (project_id);
