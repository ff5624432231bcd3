-- Usage summed per resource, meter, spec, owner, price and UTC day, written as each hour
-- closes (closed hours never change), so a bill or a budget over whole days reads one row
-- per resource and day instead of 24 records per meter.
CREATE TABLE usage_daily (
    day TEXT NOT NULL,
    org_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    meter TEXT NOT NULL,
    spec TEXT NOT NULL,
    unit_price BIGINT NOT NULL,
    -- '' when no subscription covered it.
    subscription_id TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    UNIQUE (day, resource_id, meter, spec, project_id, vdc_id, unit_price, subscription_id)
);
CREATE INDEX usage_daily_project ON usage_daily (project_id, day);
CREATE INDEX usage_daily_vdc ON usage_daily (vdc_id, day);
CREATE INDEX usage_daily_org ON usage_daily (org_id, day);

-- What is already closed.
INSERT INTO usage_daily (day, org_id, vdc_id, project_id, resource_type, resource_id, meter,
    spec, unit_price, subscription_id, quantity, amount)
SELECT substr(period_start, 1, 10) || 'T00:00:00.000000Z', org_id, vdc_id, project_id,
    resource_type, resource_id, meter, spec, unit_price, COALESCE(subscription_id, ''),
    SUM(quantity), SUM(amount)
FROM usage_records
WHERE gap = 0 AND period_start < (SELECT closed_through FROM meter_cursor WHERE id = 1)
GROUP BY substr(period_start, 1, 10), org_id, vdc_id, project_id, resource_type, resource_id,
    meter, spec, unit_price, COALESCE(subscription_id, '');
