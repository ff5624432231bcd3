//! Metering (话单): resource lifecycle events become hourly usage records, priced as each
//! hour closes, written to files for the operations management system to collect, and
//! summed into bills (spec 8.3.3.6, 8.3.9.1 (8), 5.2.4).
//!
//! The meter is one loop ([`spawn`]): it applies new events in id order (each closes what
//! its resource accrued since its last change, then changes its state), marks instances on
//! silent hosts as unobserved (a gap, recorded but never priced), and closes every hour
//! that ended more than `close_grace_secs` ago (all that is still accruing is accrued up to
//! the hour's end, buckets are sampled, the hour's records are priced by the price list in
//! force at its start). Each step commits with the cursor that records it, so a restart
//! resumes exactly where the last commit ended.

pub mod bills;
pub mod meters;
pub mod prices;
pub mod reports;
pub mod subscriptions;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use stratus_api::{MeterStatus, UsageRecord};

use super::App;
use crate::db::Backend;
use crate::error::{Error, Result};
use crate::store::metering::{hour_floor, meter_now, MeterEvent, PriceBook};
use crate::store::time_text;

/// How long a hole in the event ids (PostgreSQL hands out ids before commit) is waited for
/// before the meter decides it was a rolled-back transaction and goes past it.
const GAP_PATIENCE: Duration = Duration::from_secs(30);
const BATCH: i64 = 2_000;

/// What one pass of the meter did.
#[derive(Debug, Default, Clone, Copy)]
pub struct MeterRun {
    pub events: usize,
    pub hours_closed: usize,
    pub records_priced: usize,
}

/// Holes in the event ids seen so far, with when each was first seen.
#[derive(Default)]
pub struct Holes(HashMap<i64, Instant>);

impl Holes {
    fn expired(&mut self, backend: Backend, id: i64) -> bool {
        // SQLite's single writer commits ids in order: a hole there never fills.
        if backend == Backend::Sqlite {
            return true;
        }
        let first = *self.0.entry(id).or_insert_with(Instant::now);
        first.elapsed() >= GAP_PATIENCE
    }
}

/// The leading run of `events` the meter may apply now: ids follow the cursor without a
/// hole, or the hole has been waited for long enough.
fn applicable(
    events: Vec<MeterEvent>,
    after: i64,
    holes: &mut Holes,
    backend: Backend,
) -> Vec<MeterEvent> {
    let mut expect = after + 1;
    let mut out = Vec::new();
    for e in events {
        if e.id != expect && !holes.expired(backend, expect) {
            break;
        }
        holes.0.remove(&expect);
        expect = e.id + 1;
        out.push(e);
    }
    out
}

/// One pass at a time in this process (the background loop and a caller such as a test
/// or a tool): a second waits, then starts from where the first committed.
static ONE_PASS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One pass of the meter, at the meter's time.
pub async fn tick(app: &App, holes: &mut Holes) -> Result<MeterRun> {
    let _one = ONE_PASS.lock().await;
    let now = meter_now();
    let store = &app.store;
    let mut run = MeterRun::default();
    // Instances on hosts gone silent stop being counted as running from the last heartbeat.
    let down = chrono::Duration::seconds(app.config.compute.host_down_after_secs);
    store
        .meter_hosts_lost(Utc::now() - down, now - Utc::now())
        .await?;
    let mut cursor = store.meter_cursor(now).await?;
    loop {
        let events = store
            .meter_events_after(cursor.last_event_id, BATCH)
            .await?;
        let full = events.len() as i64 == BATCH;
        let ready = applicable(events, cursor.last_event_id, holes, store.db.backend);
        let Some(last) = ready.last().map(|e| e.id) else {
            break;
        };
        store
            .meter_apply(&ready, cursor.last_event_id, last, &app.config.region)
            .await?;
        run.events += ready.len();
        cursor.last_event_id = last;
        if !full {
            break;
        }
    }
    let grace = chrono::Duration::seconds(app.config.metering.close_grace_secs as i64);
    let mut book: Option<PriceBook> = None;
    while cursor.closed_through + chrono::Duration::hours(1) + grace <= now {
        if book.is_none() {
            book = Some(PriceBook::new(store.price_list(None).await?));
        }
        let b = book
            .as_ref()
            .ok_or_else(|| Error::internal("no price book"))?;
        run.records_priced += store
            .meter_close_hour(cursor.closed_through, &app.config.region, b)
            .await?;
        cursor.closed_through += chrono::Duration::hours(1);
        run.hours_closed += 1;
    }
    if run.hours_closed > 0 {
        bills::budgets_check(app, cursor.closed_through).await?;
    }
    export(app, cursor.exported_through, cursor.closed_through).await?;
    reports::run_due(app).await?;
    Ok(run)
}

fn export_dir(app: &App) -> PathBuf {
    app.config
        .metering
        .export_dir
        .clone()
        .unwrap_or_else(|| app.config.data_dir.join("usage"))
}

/// The file name of an hour's records (without extension): `usage-2026030114` for the hour
/// starting 2026-03-01 14:00 UTC.
pub fn file_stem(hour: DateTime<Utc>) -> String {
    format!("usage-{}", hour.format("%Y%m%d%H"))
}

pub const CSV_HEADER: &str = "record_id,period_start,period_end,org_id,vdc_id,project_id,vpc_id,region,\
availability_zone,resource_type,resource_id,meter,spec,unit,quantity,gap,rated,unit_price,amount,currency,subscription_id\n";

/// Records as CSV rows (the documented usage-record format).
pub fn records_csv(records: &[UsageRecord]) -> String {
    let mut out = String::from(CSV_HEADER);
    for r in records {
        let fields = [
            r.id.to_string(),
            time_text(r.period_start),
            time_text(r.period_end),
            r.org_id.to_string(),
            r.vdc_id.to_string(),
            r.project_id.to_string(),
            r.vpc_id.map(|v| v.to_string()).unwrap_or_default(),
            r.region.clone(),
            r.availability_zone.clone(),
            r.resource_type.clone(),
            r.resource_id.to_string(),
            r.meter.clone(),
            r.spec.clone(),
            r.unit.clone(),
            r.quantity.clone(),
            r.gap.to_string(),
            r.rated.to_string(),
            r.unit_price.clone(),
            r.amount.clone(),
            "CNY".into(),
            r.subscription_id.map(|v| v.to_string()).unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| super::audit::csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Write every closed hour not yet written: `<stem>.csv` and `<stem>.json` (an array of
/// records), each written to a temporary name and renamed, so a collector never reads half
/// a file; the cursor moves after both are in place.
async fn export(app: &App, mut from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
    if from >= to {
        return Ok(());
    }
    if !app.config.metering.export {
        return app.store.meter_set_exported(to).await;
    }
    let dir = export_dir(app);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| {
        Error::internal(format!(
            "metering.export_dir: cannot create {}: {e}",
            dir.display()
        ))
    })?;
    while from < to {
        let records = app.store.usage_of_hour(from).await?;
        let stem = file_stem(from);
        let json = serde_json::to_vec_pretty(&records)
            .map_err(|e| Error::internal(format!("usage records as JSON: {e}")))?;
        for (ext, body) in [("csv", records_csv(&records).into_bytes()), ("json", json)] {
            let path = dir.join(format!("{stem}.{ext}"));
            let tmp = dir.join(format!(".{stem}.{ext}.tmp"));
            let write = async {
                tokio::fs::write(&tmp, &body).await?;
                tokio::fs::rename(&tmp, &path).await
            };
            write.await.map_err(|e| {
                Error::internal(format!("writing usage file {}: {e}", path.display()))
            })?;
        }
        from += chrono::Duration::hours(1);
        app.store.meter_set_exported(from).await?;
    }
    Ok(())
}

/// The meter's progress.
pub async fn status(app: &App) -> Result<MeterStatus> {
    let now = meter_now();
    let c = app.store.meter_cursor(now).await?;
    Ok(MeterStatus {
        closed_through: c.closed_through,
        exported_through: c.exported_through,
        last_event_id: c.last_event_id,
        resources: app.store.meter_resource_count().await?,
        now,
    })
}

/// Run the meter every `tick_secs` until the process ends.
pub fn spawn(app: Arc<App>) {
    let every = Duration::from_secs(app.config.metering.tick_secs.max(1));
    tokio::spawn(async move {
        let mut holes = Holes::default();
        let mut tick_at = tokio::time::interval(every);
        loop {
            tick_at.tick().await;
            match tick(&app, &mut holes).await {
                Ok(r) if r.hours_closed > 0 => tracing::info!(
                    events = r.events,
                    hours = r.hours_closed,
                    priced = r.records_priced,
                    "metering closed hours"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "metering pass failed"),
            }
        }
    });
}

/// The hour a time falls in, for callers outside the store.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    hour_floor(t)
}
