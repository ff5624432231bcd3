-- Monthly subscriptions (包年包月): a resource bought for whole calendar months at the
-- monthly prices in force when it was bought. The fee is charged one usage record per
-- covered month (meter subscription_months); while it runs, the hourly records of the
-- meters it covers are priced only for what exceeds the covered rate.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    resource_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    months BIGINT NOT NULL,
    -- Covered hours are [starts_at, ends_at), both on hour boundaries.
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    -- JSON array of {meter, spec, per_hour, price_id, monthly_unit_price}.
    lines TEXT NOT NULL,
    monthly_fee BIGINT NOT NULL,
    -- active, cancelled (ended early by a user) or ended (its resource was deleted).
    status TEXT NOT NULL,
    request_id TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX subscriptions_resource ON subscriptions (resource_id, ends_at);
CREATE INDEX subscriptions_period ON subscriptions (starts_at, ends_at);
CREATE INDEX subscriptions_project ON subscriptions (project_id);

-- The subscription that covered (part of) a record's quantity.
ALTER TABLE usage_records ADD COLUMN subscription_id TEXT;

-- A catalog request may buy what it makes by the month: the months, or NULL (pay as you go).
ALTER TABLE requests ADD COLUMN subscription_months BIGINT;
