-- Flavors (instance types). Built-in reference flavors are added at start when missing.
CREATE TABLE flavors (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    vcpus INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    disk_gib INTEGER NOT NULL,
    builtin INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A flavor with rows here may be used only in these VDCs (and below them).
CREATE TABLE flavor_vdcs (
    flavor_id TEXT NOT NULL REFERENCES flavors(id),
    vdc_id TEXT NOT NULL REFERENCES vdcs(id),
    PRIMARY KEY (flavor_id, vdc_id)
);
