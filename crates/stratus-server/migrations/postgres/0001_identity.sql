-- Identity, tenancy, quotas and audit (PostgreSQL).
-- Times are UTC text in one fixed-width format, so they sort as strings.
-- Booleans are 0/1 integers on both backends.
CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE vdcs (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations(id),
    parent_id TEXT REFERENCES vdcs(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    level BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX vdcs_sibling_name ON vdcs (org_id, COALESCE(parent_id, ''), name);
CREATE INDEX vdcs_parent ON vdcs (parent_id);

-- Every (ancestor, descendant) pair including each VDC with itself at distance 0:
-- subtree and ancestor queries are one indexed lookup at any depth.
CREATE TABLE vdc_closure (
    ancestor_id TEXT NOT NULL REFERENCES vdcs(id),
    descendant_id TEXT NOT NULL REFERENCES vdcs(id),
    distance BIGINT NOT NULL,
    PRIMARY KEY (ancestor_id, descendant_id)
);
CREATE INDEX vdc_closure_descendant ON vdc_closure (descendant_id);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    vdc_id TEXT NOT NULL REFERENCES vdcs(id),
    org_id TEXT NOT NULL REFERENCES organizations(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (vdc_id, name)
);
CREATE INDEX projects_vdc_created ON projects (vdc_id, created_at, id);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    vdc_id TEXT REFERENCES vdcs(id),
    password_hash TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until TEXT,
    last_login_at TEXT,
    password_changed_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX users_vdc ON users (vdc_id);

CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    UNIQUE (user_id, role, scope_type, scope_id)
);
CREATE INDEX grants_scope ON grants (scope_id);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE access_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    secret TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    enabled BIGINT NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    last_used_at TEXT
);
CREATE INDEX access_keys_user ON access_keys (user_id);

-- One row per (scope, resource) for every VDC and project. limit_value -1 = unlimited.
-- `used` changes in the same transaction as the resource row it counts.
CREATE TABLE quotas (
    scope_id TEXT NOT NULL,
    scope_type TEXT NOT NULL,
    resource TEXT NOT NULL,
    limit_value BIGINT NOT NULL DEFAULT -1,
    used BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope_id, resource)
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    user_id TEXT,
    user_name TEXT NOT NULL,
    vdc_id TEXT,
    source_ip TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    operation TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    result TEXT NOT NULL,
    status BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_user ON audit_events (user_name, id);
