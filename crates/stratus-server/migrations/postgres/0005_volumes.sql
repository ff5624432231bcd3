-- Block storage (EVS): volume types, volumes in hosts' storage pools, attachments to
-- instances, snapshots, backups and backup policies.

-- The pool volumes live in, per host (from the agent's facts), and what volumes take of it.
ALTER TABLE hosts ADD COLUMN volume_pool_gib BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN alloc_volume_gib BIGINT NOT NULL DEFAULT 0;

-- Built-in types (the spec's three tiers) are added at start when missing.
CREATE TABLE volume_types (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    max_iops BIGINT NOT NULL,
    max_mbps BIGINT NOT NULL,
    builtin BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE volumes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    volume_type_id TEXT NOT NULL REFERENCES volume_types(id),
    size_gib BIGINT NOT NULL,
    -- 'qcow2', or 'raw' for shareable volumes.
    format TEXT NOT NULL,
    shareable BIGINT NOT NULL DEFAULT 0,
    bootable BIGINT NOT NULL DEFAULT 0,
    -- Where the data came from (used once, when the agent makes the volume).
    source_volume_id TEXT,
    source_snapshot_id TEXT,
    source_backup_id TEXT,
    image_id TEXT,
    image_sha256 TEXT,
    availability_zone TEXT NOT NULL,
    host_id TEXT,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    -- Desired-state generation for the host's agent, and the last one it reported.
    generation BIGINT NOT NULL DEFAULT 1,
    applied_generation BIGINT NOT NULL DEFAULT 0,
    -- What the agent reported: the data's real size and the bytes it takes in the pool.
    actual_size_gib BIGINT NOT NULL DEFAULT 0,
    allocated_bytes BIGINT NOT NULL DEFAULT 0,
    -- A rollback is asked for by raising revert_serial; the agent reports the one applied.
    revert_serial BIGINT NOT NULL DEFAULT 0,
    revert_snapshot_id TEXT,
    revert_applied BIGINT NOT NULL DEFAULT 0,
    -- Desired: removed from the pool (the row goes once the agent reports it gone).
    deleted BIGINT NOT NULL DEFAULT 0,
    -- Whether volumes/storage_gib are charged to the quota and the size to the host's pool.
    quota_held BIGINT NOT NULL DEFAULT 0,
    host_held BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX volumes_host ON volumes (host_id);
CREATE INDEX volumes_project ON volumes (project_id, created_at, id);
CREATE INDEX volumes_vdc ON volumes (vdc_id);
CREATE INDEX volumes_created ON volumes (created_at, id);
CREATE INDEX volumes_name ON volumes (name, id);
CREATE INDEX volumes_project_name ON volumes (project_id, name, id);

CREATE TABLE volume_attachments (
    volume_id TEXT NOT NULL REFERENCES volumes(id),
    instance_id TEXT NOT NULL,
    -- 1: the instance's root disk (boot from volume); it stays until the instance goes.
    boot BIGINT NOT NULL DEFAULT 0,
    -- 'attaching', 'attached' or 'detaching'.
    state TEXT NOT NULL,
    serial TEXT NOT NULL,
    -- Order in which the guest sees its data disks.
    position BIGINT NOT NULL,
    -- The instance generation that asked for the change; a report of it settles it.
    requested_generation BIGINT NOT NULL,
    attached_at TEXT NOT NULL,
    PRIMARY KEY (volume_id, instance_id)
);
CREATE INDEX volume_attachments_instance ON volume_attachments (instance_id);

-- Instances that boot from a volume (their root disk is that volume).
ALTER TABLE instances ADD COLUMN boot_volume_id TEXT;

CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    volume_id TEXT NOT NULL REFERENCES volumes(id),
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    size_gib BIGINT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    -- The volume generation that asked for its creation or removal.
    generation BIGINT NOT NULL,
    quota_held BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX snapshots_volume ON snapshots (volume_id);
CREATE INDEX snapshots_project ON snapshots (project_id, created_at, id);
CREATE INDEX snapshots_created ON snapshots (created_at, id);

CREATE TABLE backups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    volume_id TEXT NOT NULL,
    volume_name TEXT NOT NULL,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    policy_id TEXT,
    host_id TEXT,
    size_gib BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    deleted BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX backups_host ON backups (host_id);
CREATE INDEX backups_project ON backups (project_id, created_at, id);
CREATE INDEX backups_volume ON backups (volume_id, created_at, id);
CREATE INDEX backups_created ON backups (created_at, id);

CREATE TABLE backup_policies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    interval_hours BIGINT NOT NULL,
    keep BIGINT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    -- JSON arrays of ids.
    volume_ids TEXT NOT NULL DEFAULT '[]',
    instance_ids TEXT NOT NULL DEFAULT '[]',
    next_run_at TEXT NOT NULL,
    last_run_at TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX backup_policies_project ON backup_policies (project_id, created_at, id);
CREATE INDEX backup_policies_due ON backup_policies (next_run_at);
