-- Metering (话单), prices, bills and budgets. Quantities are stored in millionths of their
-- unit and money in millionths of a yuan (整数, so sums are exact); bills round to the fen.

-- Where the meter has got to (one row): events up to last_event_id are applied, every hour
-- before closed_through is closed and rated, and exported up to exported_through.
CREATE TABLE meter_cursor (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    last_event_id BIGINT NOT NULL,
    closed_through TEXT NOT NULL,
    exported_through TEXT NOT NULL
);

-- Each metered resource's state (JSON) as of `since`: what it accrues from then on.
CREATE TABLE meter_resources (
    resource_id TEXT PRIMARY KEY,
    resource_type TEXT NOT NULL,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    state TEXT NOT NULL,
    since TEXT NOT NULL
);

-- Usage records: one per resource, meter, spec, owner and hour.
CREATE TABLE usage_records (
    id BIGSERIAL PRIMARY KEY,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    org_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    vpc_id TEXT,
    region TEXT NOT NULL,
    zone TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    meter TEXT NOT NULL,
    spec TEXT NOT NULL,
    unit TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    -- 1: time nobody observed (the host's agent was silent); never priced.
    gap BIGINT NOT NULL DEFAULT 0,
    -- 1 once its hour closed and it was priced.
    rated BIGINT NOT NULL DEFAULT 0,
    price_id TEXT,
    unit_price BIGINT NOT NULL DEFAULT 0,
    amount BIGINT NOT NULL DEFAULT 0,
    UNIQUE (resource_id, meter, spec, project_id, period_start)
);
CREATE INDEX usage_records_period ON usage_records (period_start);
CREATE INDEX usage_records_project ON usage_records (project_id, period_start);
CREATE INDEX usage_records_vdc ON usage_records (vdc_id, period_start);
CREATE INDEX usage_records_org ON usage_records (org_id, period_start);

-- The price list: per meter and spec ('' = any spec), pay-as-you-go (per unit) or monthly
-- (per resource and month), in force from effective_from until effective_to (open = NULL).
CREATE TABLE prices (
    id TEXT PRIMARY KEY,
    meter TEXT NOT NULL,
    spec TEXT NOT NULL,
    billing TEXT NOT NULL,
    unit_price BIGINT NOT NULL,
    currency TEXT NOT NULL,
    effective_from TEXT NOT NULL,
    effective_to TEXT,
    description TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX prices_meter ON prices (meter, spec, billing);

-- A VDC's monthly budget; alerted_level is the highest threshold (80, 100) already raised
-- in alerted_month.
CREATE TABLE budgets (
    vdc_id TEXT PRIMARY KEY,
    monthly_limit BIGINT NOT NULL,
    alerted_month TEXT NOT NULL DEFAULT '',
    alerted_level BIGINT NOT NULL DEFAULT 0,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Budget thresholds crossed (the alert channels of the monitoring service take these up).
CREATE TABLE billing_events (
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    month TEXT NOT NULL,
    spent BIGINT NOT NULL,
    monthly_limit BIGINT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX billing_events_vdc ON billing_events (vdc_id, at);

-- Hosts whose instances the meter holds as unobserved (their agent went silent).
ALTER TABLE hosts ADD COLUMN meter_lost BIGINT NOT NULL DEFAULT 0;
