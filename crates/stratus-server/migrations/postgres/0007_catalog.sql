-- The cloud management platform's catalog: services, approval flows, and requests (each
-- request is its order: approval, then provisioning).

CREATE TABLE services (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    icon TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    -- JSON: the form (ServiceParameter list) and the VDC whitelist (empty: everyone).
    parameters TEXT NOT NULL,
    vdc_ids TEXT NOT NULL,
    published BIGINT NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE approval_flows (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    service_id TEXT REFERENCES services(id),
    vdc_id TEXT,
    -- '<service or *>/<vdc or *>': one flow per service and VDC.
    scope_key TEXT NOT NULL UNIQUE,
    -- JSON: ApprovalLevel list, AutoApprove list.
    levels TEXT NOT NULL,
    auto_approve TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    service_id TEXT,
    service_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    requester_id TEXT NOT NULL,
    requester_name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    parameters TEXT NOT NULL,
    resource_id TEXT,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    level BIGINT NOT NULL DEFAULT 0,
    -- JSON: the flow's levels as submitted, with their decisions.
    levels TEXT NOT NULL,
    flow_id TEXT,
    -- JSON: OrderResource list, written as provisioning goes (what to undo after a crash).
    resources TEXT NOT NULL DEFAULT '[]',
    -- Bumped by every change: decisions are written only over the version they read.
    version BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX requests_status ON requests (status, id);
CREATE INDEX requests_created ON requests (created_at, id);
-- The approvers' queue reads only these, oldest first, however long the history.
CREATE INDEX requests_approving ON requests (created_at, id) WHERE status = 'approving';
CREATE INDEX requests_requester ON requests (requester_id, id);
CREATE INDEX requests_project ON requests (project_id, id);

-- Who may decide at each level of a request still being approved (the approver's queue).
CREATE TABLE request_seats (
    request_id TEXT NOT NULL REFERENCES requests(id),
    level BIGINT NOT NULL,
    seat BIGINT NOT NULL,
    user_id TEXT,
    role TEXT,
    PRIMARY KEY (request_id, level, seat)
);
CREATE INDEX request_seats_user ON request_seats (user_id);
CREATE INDEX request_seats_role ON request_seats (role);
