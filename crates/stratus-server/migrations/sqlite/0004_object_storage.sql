-- Object storage (OBS): buckets, object versions, multipart uploads. Object data lives in
-- the blob store (files under <data_dir>/objects); rows name their blob.

-- Capacity is counted in bytes (GiB would lose every small object); object counts too.
DELETE FROM quotas WHERE resource = 'object_storage_gib';
INSERT INTO quotas (scope_id, scope_type, resource, limit_value, used)
    SELECT scope_id, scope_type, 'object_storage_bytes', -1, 0 FROM quotas WHERE resource = 'projects';
INSERT INTO quotas (scope_id, scope_type, resource, limit_value, used)
    SELECT scope_id, scope_type, 'objects', -1, 0 FROM quotas WHERE resource = 'projects';

-- Access keys may be bound to one project: buckets they create belong to it.
ALTER TABLE access_keys ADD COLUMN project_id TEXT;

CREATE TABLE buckets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    region TEXT NOT NULL,
    -- '' (never enabled), 'Enabled' or 'Suspended'.
    versioning TEXT NOT NULL DEFAULT '',
    acl TEXT NOT NULL DEFAULT '',
    policy TEXT,
    lifecycle TEXT,
    quota_bytes INTEGER NOT NULL DEFAULT -1,
    quota_objects INTEGER NOT NULL DEFAULT -1,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    used_objects INTEGER NOT NULL DEFAULT 0,
    -- Requests served, for metering (flushed from memory every few seconds).
    read_requests INTEGER NOT NULL DEFAULT 0,
    write_requests INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX buckets_project ON buckets (project_id);

-- Every version of every object; the current one has is_latest = 1. Unversioned objects
-- have version_id 'null', as S3 names it.
CREATE TABLE objects (
    id TEXT PRIMARY KEY,
    bucket_id TEXT NOT NULL,
    key TEXT NOT NULL,
    version_id TEXT NOT NULL,
    is_latest INTEGER NOT NULL,
    delete_marker INTEGER NOT NULL DEFAULT 0,
    blob_id TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    etag TEXT NOT NULL DEFAULT '',
    -- Content-Type, Content-Encoding, user metadata… as JSON.
    headers TEXT NOT NULL DEFAULT '{}',
    checksums TEXT NOT NULL DEFAULT '{}',
    acl TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '',
    parts_count INTEGER,
    last_modified TEXT NOT NULL
);
CREATE UNIQUE INDEX objects_version ON objects (bucket_id, key, version_id);
CREATE INDEX objects_listing ON objects (bucket_id, is_latest, key);

CREATE TABLE multipart_uploads (
    id TEXT PRIMARY KEY,
    bucket_id TEXT NOT NULL,
    key TEXT NOT NULL,
    headers TEXT NOT NULL DEFAULT '{}',
    acl TEXT NOT NULL DEFAULT '',
    checksum_algorithm TEXT,
    created_by TEXT NOT NULL,
    initiated_at TEXT NOT NULL
);
CREATE INDEX multipart_uploads_bucket ON multipart_uploads (bucket_id, key, initiated_at);

CREATE TABLE multipart_parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    blob_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    md5 TEXT NOT NULL,
    checksums TEXT NOT NULL DEFAULT '{}',
    last_modified TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

-- Blobs no longer referenced, removed from disk after the transaction that let go of them
-- committed (and again at start, if the process died in between).
CREATE TABLE blob_garbage (
    blob_id TEXT PRIMARY KEY,
    queued_at TEXT NOT NULL
);
