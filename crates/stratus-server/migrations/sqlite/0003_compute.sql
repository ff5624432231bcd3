-- Compute: hosts and their agents, images, key pairs, instances, and metering events.

-- Join tokens let agents register hosts; only their SHA-256 is kept.
CREATE TABLE join_tokens (
    token_hash TEXT PRIMARY KEY,
    availability_zone TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE hosts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    availability_zone TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT NOT NULL DEFAULT '',
    credential_hash TEXT NOT NULL UNIQUE,
    facts TEXT NOT NULL,
    cpus INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    disk_gib INTEGER NOT NULL,
    alloc_vcpus INTEGER NOT NULL DEFAULT 0,
    alloc_memory_mib INTEGER NOT NULL DEFAULT 0,
    alloc_disk_gib INTEGER NOT NULL DEFAULT 0,
    instance_count INTEGER NOT NULL DEFAULT 0,
    -- Bumped whenever the desired state of any of its instances changes.
    generation INTEGER NOT NULL DEFAULT 1,
    last_heartbeat_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE images (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    project_id TEXT,
    vdc_id TEXT,
    visibility TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    disk_format TEXT NOT NULL,
    os_type TEXT NOT NULL DEFAULT 'linux',
    size_bytes INTEGER NOT NULL DEFAULT 0,
    virtual_size_bytes INTEGER NOT NULL DEFAULT 0,
    min_disk_gib INTEGER NOT NULL DEFAULT 0,
    checksum_sha256 TEXT NOT NULL DEFAULT '',
    -- SHA-256 of the stored qcow2, which agents verify after download.
    stored_sha256 TEXT NOT NULL DEFAULT '',
    source_instance_id TEXT,
    quota_held INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX images_project ON images (project_id);

CREATE TABLE image_members (
    image_id TEXT NOT NULL REFERENCES images(id),
    project_id TEXT NOT NULL,
    PRIMARY KEY (image_id, project_id)
);
CREATE INDEX image_members_project ON image_members (project_id);

CREATE TABLE keypairs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    flavor_id TEXT NOT NULL,
    flavor_name TEXT NOT NULL,
    vcpus INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    root_disk_gib INTEGER NOT NULL,
    image_id TEXT NOT NULL,
    image_name TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    availability_zone TEXT NOT NULL,
    host_id TEXT,
    key_name TEXT,
    ssh_keys TEXT NOT NULL DEFAULT '[]',
    user_data TEXT,
    -- Desired power state: running, stopped, paused, suspended or deleted.
    power TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    applied_generation INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    -- What the agent last reported (running, stopped, paused, suspended, error…).
    actual_state TEXT NOT NULL DEFAULT '',
    task TEXT,
    status_reason TEXT NOT NULL DEFAULT '',
    stop_timeout_secs INTEGER NOT NULL DEFAULT 60,
    soft_reboots INTEGER NOT NULL DEFAULT 0,
    hard_reboots INTEGER NOT NULL DEFAULT 0,
    console_password TEXT,
    console_serial INTEGER NOT NULL DEFAULT 0,
    console_applied INTEGER NOT NULL DEFAULT 0,
    console_expires_at TEXT,
    vnc_port INTEGER,
    capture_image_id TEXT,
    -- Whether its footprint is allocated on host_id right now.
    host_held INTEGER NOT NULL DEFAULT 0,
    -- The flavor before a resize under way (JSON), to unwind it if the agent fails.
    prev_flavor TEXT,
    -- Whether vcpus/memory/instances are charged to the project's quota right now.
    quota_held INTEGER NOT NULL DEFAULT 0,
    launched_at TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX instances_host ON instances (host_id);
CREATE INDEX instances_project ON instances (project_id, created_at, id);
CREATE INDEX instances_vdc ON instances (vdc_id);
CREATE INDEX instances_created ON instances (created_at, id);
CREATE INDEX instances_name ON instances (name, id);
CREATE INDEX instances_project_name ON instances (project_id, name, id);
CREATE INDEX instances_status ON instances (status, created_at, id);

CREATE TABLE instance_tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    action TEXT NOT NULL,
    user_name TEXT NOT NULL,
    request_id TEXT NOT NULL,
    result TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX instance_tasks_instance ON instance_tasks (instance_id, id);

-- The end of each instance's serial console, as its agent sent it.
CREATE TABLE instance_consoles (
    instance_id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);

-- Resource lifecycle events for metering (话单) to consume.
CREATE TABLE metering_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    event TEXT NOT NULL,
    attrs TEXT NOT NULL
);
CREATE INDEX metering_events_resource ON metering_events (resource_id, id);
