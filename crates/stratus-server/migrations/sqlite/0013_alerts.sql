-- Alerting: rules over the time-series store, the alert center, maintenance windows,
-- notification channels and every delivery attempt.
CREATE TABLE alert_rules (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    expr TEXT NOT NULL,
    for_text TEXT NOT NULL,
    for_secs BIGINT NOT NULL,
    severity TEXT NOT NULL,
    -- JSON object of labels added to the rule's alerts.
    labels TEXT NOT NULL,
    summary TEXT NOT NULL,
    -- NULL for platform rules; a tenant rule sees only its project's series.
    project_id TEXT,
    vdc_id TEXT,
    enabled INTEGER NOT NULL,
    last_error TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX alert_rules_project ON alert_rules (project_id);

-- One row per alert; repeated firings of the same fingerprint (source, name, labels)
-- while it is open add to count instead of adding rows.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    rule_id TEXT,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    labels TEXT NOT NULL,
    summary TEXT NOT NULL,
    -- A float as text (both backends read it back exactly).
    value TEXT,
    project_id TEXT,
    vdc_id TEXT,
    host_id TEXT,
    suppressed TEXT,
    -- 1 once the firing was handed to the channels (so a resolution follows it).
    notified INTEGER NOT NULL,
    count BIGINT NOT NULL,
    started_at TEXT NOT NULL,
    last_fired_at TEXT NOT NULL,
    resolved_at TEXT,
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    ack_comment TEXT NOT NULL,
    -- The ticket made from it, if any.
    ticket_id TEXT
);
CREATE INDEX alerts_open ON alerts (state, fingerprint);
CREATE INDEX alerts_started ON alerts (started_at);
CREATE INDEX alerts_vdc ON alerts (vdc_id);

CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    comment TEXT NOT NULL,
    project_id TEXT,
    vdc_id TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX silences_end ON silences (ends_at);

CREATE TABLE notify_channels (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    min_severity TEXT NOT NULL,
    vdc_id TEXT,
    enabled INTEGER NOT NULL,
    max_per_hour BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    -- The JSON the channel gets, fixed when the event happened.
    body TEXT NOT NULL,
    next_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX notifications_due ON notifications (status, next_at);
CREATE INDEX notifications_alert ON notifications (alert_id);
CREATE INDEX notifications_channel ON notifications (channel_id, sent_at);

-- Tickets (工单): work orders, often made from an alert, worked to closure.
CREATE TABLE tickets (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    -- open, claimed, in_progress, resolved, closed.
    state TEXT NOT NULL,
    priority TEXT NOT NULL,
    assignee TEXT,
    alert_id TEXT,
    project_id TEXT,
    vdc_id TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    resolved_at TEXT,
    closed_at TEXT
);
CREATE INDEX tickets_state ON tickets (state, created_at);
CREATE INDEX tickets_alert ON tickets (alert_id);

-- A ticket's history: comments, and every change of state or assignee.
CREATE TABLE ticket_events (
    id TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL,
    at TEXT NOT NULL,
    author TEXT NOT NULL,
    -- comment, state, assignee.
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, at);
