-- Resource reports (8.3.4.8): schedules set once, and the reports they generated.

CREATE TABLE report_schedules (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- daily, weekly, monthly or quarterly.
    period TEXT NOT NULL,
    -- The VDC reported on (with everything below it); NULL: the whole platform.
    vdc_id TEXT,
    created_by TEXT NOT NULL,
    -- Reports exist for every period ending up to here.
    last_period_end TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE reports (
    id TEXT PRIMARY KEY,
    schedule_id TEXT,
    name TEXT NOT NULL,
    vdc_id TEXT,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    generated_at TEXT NOT NULL,
    content TEXT NOT NULL,
    UNIQUE (schedule_id, period_start)
);
CREATE INDEX reports_vdc ON reports (vdc_id, period_start);
