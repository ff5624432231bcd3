//! Metering's tables: the meter's cursor and per-resource state, usage records, prices,
//! budgets and budget events.
//!
//! Everything the meter does to turn events into records happens in one transaction with
//! the cursor that says how far it got, so a crash or restart can neither lose nor repeat
//! a record: the next run starts exactly where the last commit ended.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use stratus_api::{Billing, BillingEvent, Budget, Price, UsageRecord, MICRO};
use uuid::Uuid;

use super::instances::Tx;
use super::{
    col_i64, col_opt_str, col_opt_time, col_opt_uuid, col_str, col_time, col_uuid, parse_time,
    time_text, Arg, Conds, Store,
};
use crate::app::metering::meters::{self, Applied};
use crate::error::{Error, Result};

// ------------------------------------------------------------------ the meter's clock

/// A test clock: when set, the meter's time stands still at it until set again.
static FROZEN: RwLock<Option<DateTime<Utc>>> = RwLock::new(None);

/// The meter's time: what metering events are stamped with and hours close by. The wall
/// clock, unless a test froze it with [`freeze_meter_clock`].
pub fn meter_now() -> DateTime<Utc> {
    match FROZEN.read() {
        Ok(g) => g.unwrap_or_else(Utc::now),
        Err(_) => Utc::now(),
    }
}

/// Test instrument: stop the meter's clock at `t` (or let it run again with `None`). It is
/// process-wide and reachable only from Rust, never from the API or the configuration.
pub fn freeze_meter_clock(t: Option<DateTime<Utc>>) {
    if let Ok(mut g) = FROZEN.write() {
        *g = t;
    }
}

pub fn hour_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

/// A half-open interval of time.
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// The start of `t`'s UTC day.
pub fn day_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::days(1)).unwrap_or(t)
}

/// `[from, to)` split into what daily sums answer — the whole UTC days closed by
/// `closed` — and the hours before and after them, which records answer.
pub fn split_days(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    closed: DateTime<Utc>,
) -> (Option<Span>, Vec<Span>) {
    let first = day_floor(from + Duration::days(1) - Duration::microseconds(1));
    let last = day_floor(to.min(closed));
    if first >= last {
        return (None, vec![(from, to)]);
    }
    let hours = [(from, first), (last, to)]
        .into_iter()
        .filter(|(a, b)| a < b)
        .collect();
    (Some((first, last)), hours)
}

/// Split `[from, to)` at hour boundaries: (hour start, microseconds inside that hour).
pub fn split_hours(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, i64)> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let h = hour_floor(t);
        let end = (h + Duration::hours(1)).min(to);
        let micros = (end - t).num_microseconds().unwrap_or(0);
        if micros > 0 {
            out.push((h, micros));
        }
        t = end;
    }
    out
}

const HOUR_MICROS: i128 = 3_600_000_000;

/// `per_hour` millionths for `micros` microseconds, rounded half up.
pub fn accrued(per_hour: i64, micros: i64) -> i64 {
    ((per_hour as i128 * micros as i128 + HOUR_MICROS / 2) / HOUR_MICROS) as i64
}

/// `quantity` millionths of a unit at `unit_price` millionths of a yuan per unit: millionths
/// of a yuan, rounded half up (saturating, never wrapping).
pub fn amount_of(quantity: i64, unit_price: i64) -> i64 {
    let v = (quantity as i128 * unit_price as i128 + MICRO as i128 / 2) / MICRO as i128;
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

// ------------------------------------------------------------------ types

#[derive(Debug, Clone)]
pub struct MeterCursor {
    pub last_event_id: i64,
    pub closed_through: DateTime<Utc>,
    pub exported_through: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct MeterEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub resource_type: String,
    pub resource_id: String,
    pub project_id: String,
    pub vdc_id: String,
    pub event: String,
    pub attrs: Value,
}

/// A metered resource's state as of `since`.
#[derive(Debug, Clone)]
pub struct MeterResource {
    pub resource_id: String,
    pub resource_type: String,
    pub project_id: String,
    pub vdc_id: String,
    pub org_id: String,
    pub state: Map<String, Value>,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AccKey {
    resource_id: String,
    meter: &'static str,
    spec: String,
    project_id: String,
    hour: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct AccVal {
    resource_type: String,
    org_id: String,
    vdc_id: String,
    vpc_id: Option<String>,
    zone: String,
    gap: bool,
    quantity: i64,
}

/// Usage accrued in memory, written at the end of a transaction.
#[derive(Default)]
pub struct Accruals(HashMap<AccKey, AccVal>);

impl Accruals {
    /// What `r` accrued over `[from, to)`.
    pub fn accrue(&mut self, r: &MeterResource, from: DateTime<Utc>, to: DateTime<Utc>) {
        if from >= to {
            return;
        }
        let rates = meters::rates(&r.resource_type, &r.state);
        if rates.is_empty() {
            return;
        }
        let slices = split_hours(from, to);
        let zone = r
            .state
            .get("zone")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let vpc = r
            .state
            .get("vpc_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        for rate in rates {
            for (hour, micros) in &slices {
                self.add(
                    AccKey {
                        resource_id: r.resource_id.clone(),
                        meter: rate.meter,
                        spec: rate.spec.clone(),
                        project_id: r.project_id.clone(),
                        hour: *hour,
                    },
                    r,
                    &zone,
                    &vpc,
                    rate.gap,
                    accrued(rate.per_hour, *micros),
                );
            }
        }
    }

    fn add(
        &mut self,
        key: AccKey,
        r: &MeterResource,
        zone: &str,
        vpc: &Option<String>,
        gap: bool,
        quantity: i64,
    ) {
        if quantity == 0 {
            return;
        }
        self.0
            .entry(key)
            .or_insert_with(|| AccVal {
                resource_type: r.resource_type.clone(),
                org_id: r.org_id.clone(),
                vdc_id: r.vdc_id.clone(),
                vpc_id: vpc.clone(),
                zone: zone.to_string(),
                gap,
                quantity: 0,
            })
            .quantity += quantity;
    }

    /// Rows as bills see them before they are written (live, unclosed usage).
    pub fn rows(&self) -> impl Iterator<Item = LiveUsage<'_>> {
        self.0.iter().map(|(k, v)| LiveUsage {
            resource_type: &v.resource_type,
            resource_id: &k.resource_id,
            project_id: &k.project_id,
            vdc_id: &v.vdc_id,
            meter: k.meter,
            spec: &k.spec,
            hour: k.hour,
            quantity: v.quantity,
            gap: v.gap,
        })
    }

    async fn write(self, tx: &mut Tx, region: &str) -> Result<()> {
        for (k, v) in self.0 {
            sqlx::query(
                "INSERT INTO usage_records (period_start, period_end, org_id, vdc_id, project_id, vpc_id, \
                 region, zone, resource_type, resource_id, meter, spec, unit, quantity, gap) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (resource_id, meter, spec, project_id, period_start) \
                 DO UPDATE SET quantity = usage_records.quantity + excluded.quantity",
            )
            .bind(time_text(k.hour))
            .bind(time_text(k.hour + Duration::hours(1)))
            .bind(&v.org_id)
            .bind(&v.vdc_id)
            .bind(&k.project_id)
            .bind(v.vpc_id.as_deref())
            .bind(region)
            .bind(&v.zone)
            .bind(&v.resource_type)
            .bind(&k.resource_id)
            .bind(k.meter)
            .bind(&k.spec)
            .bind(meters::unit_of(k.meter))
            .bind(v.quantity)
            .bind(v.gap as i64)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

pub struct LiveUsage<'a> {
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub project_id: &'a str,
    pub vdc_id: &'a str,
    pub meter: &'static str,
    pub spec: &'a str,
    pub hour: DateTime<Utc>,
    pub quantity: i64,
    pub gap: bool,
}

/// The price list as of a load, for rating many records.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    pub prices: Vec<Price>,
    /// Parsed unit prices, by index into `prices`.
    micro: Vec<i64>,
}

impl PriceBook {
    pub fn new(prices: Vec<Price>) -> PriceBook {
        let micro = prices
            .iter()
            .map(|p| stratus_api::parse_micro(&p.unit_price).unwrap_or(0))
            .collect();
        PriceBook { prices, micro }
    }

    /// The price of `meter`/`spec` in force at `at`: the spec's own, else the meter's
    /// catch-all ('' spec).
    pub fn find(
        &self,
        meter: &str,
        spec: &str,
        billing: Billing,
        at: DateTime<Utc>,
    ) -> Option<(&Price, i64)> {
        let live = |p: &&Price| {
            p.meter == meter
                && p.billing == billing
                && p.effective_from <= at
                && p.effective_to.is_none_or(|t| t > at)
        };
        let pick = |s: &str| {
            self.prices
                .iter()
                .enumerate()
                .find(|(_, p)| p.spec == s && live(p))
                .map(|(i, p)| (p, self.micro[i]))
        };
        pick(spec).or_else(|| if spec.is_empty() { None } else { pick("") })
    }
}

fn event_from_row(r: &AnyRow) -> Result<MeterEvent> {
    Ok(MeterEvent {
        id: col_i64(r, "id")?,
        at: col_time(r, "at")?,
        resource_type: col_str(r, "resource_type")?,
        resource_id: col_str(r, "resource_id")?,
        project_id: col_str(r, "project_id")?,
        vdc_id: col_str(r, "vdc_id")?,
        event: col_str(r, "event")?,
        attrs: serde_json::from_str(&col_str(r, "attrs")?).unwrap_or(Value::Null),
    })
}

fn resource_from_row(r: &AnyRow) -> Result<MeterResource> {
    Ok(MeterResource {
        resource_id: col_str(r, "resource_id")?,
        resource_type: col_str(r, "resource_type")?,
        project_id: col_str(r, "project_id")?,
        vdc_id: col_str(r, "vdc_id")?,
        org_id: col_str(r, "org_id")?,
        state: serde_json::from_str(&col_str(r, "state")?).unwrap_or_default(),
        since: col_time(r, "since")?,
    })
}

const RES_COLS: &str = "resource_id, resource_type, project_id, vdc_id, org_id, state, since";

pub const USAGE_COLS: &str = "id, period_start, period_end, org_id, vdc_id, project_id, vpc_id, region, zone, \
    resource_type, resource_id, meter, spec, unit, quantity, gap, rated, price_id, unit_price, amount, \
    subscription_id";

pub fn usage_from_row(r: &AnyRow) -> Result<UsageRecord> {
    Ok(UsageRecord {
        id: col_i64(r, "id")?,
        period_start: col_time(r, "period_start")?,
        period_end: col_time(r, "period_end")?,
        org_id: col_uuid(r, "org_id")?,
        vdc_id: col_uuid(r, "vdc_id")?,
        project_id: col_uuid(r, "project_id")?,
        vpc_id: col_opt_uuid(r, "vpc_id")?,
        region: col_str(r, "region")?,
        availability_zone: col_str(r, "zone")?,
        resource_type: col_str(r, "resource_type")?,
        resource_id: col_uuid(r, "resource_id")?,
        meter: col_str(r, "meter")?,
        spec: col_str(r, "spec")?,
        unit: col_str(r, "unit")?,
        quantity: stratus_api::format_quantity(col_i64(r, "quantity")?),
        gap: col_i64(r, "gap")? != 0,
        rated: col_i64(r, "rated")? != 0,
        price_id: col_opt_uuid(r, "price_id")?,
        unit_price: stratus_api::format_micro(col_i64(r, "unit_price")?, 6),
        amount: stratus_api::format_micro(col_i64(r, "amount")?, 6),
        subscription_id: col_opt_uuid(r, "subscription_id")?,
    })
}

const PRICE_COLS: &str =
    "id, meter, spec, billing, unit_price, currency, effective_from, effective_to, \
    description, created_by, created_at";

fn price_from_row(r: &AnyRow) -> Result<Price> {
    let meter = col_str(r, "meter")?;
    Ok(Price {
        id: col_uuid(r, "id")?,
        unit: meters::unit_of(&meter).to_string(),
        meter,
        spec: col_str(r, "spec")?,
        billing: if col_str(r, "billing")? == "monthly" {
            Billing::Monthly
        } else {
            Billing::Payg
        },
        unit_price: stratus_api::format_micro(col_i64(r, "unit_price")?, 6),
        currency: col_str(r, "currency")?,
        effective_from: col_time(r, "effective_from")?,
        effective_to: col_opt_time(r, "effective_to")?,
        description: col_str(r, "description")?,
        created_by: col_str(r, "created_by")?,
        created_at: col_time(r, "created_at")?,
    })
}

/// One group of usage for a bill: summed over its hours.
#[derive(Debug, Clone)]
pub struct UsageSum {
    pub project_id: String,
    pub vdc_id: String,
    pub resource_type: String,
    pub resource_id: String,
    pub meter: String,
    pub spec: String,
    pub unit_price: i64,
    pub rated: bool,
    /// The first hour of the group (for pricing what is not rated yet).
    pub first_hour: DateTime<Utc>,
    pub quantity: i64,
    pub amount: i64,
    pub subscription_id: Option<String>,
}

/// Where a bill or a usage list looks.
#[derive(Debug, Clone, Default)]
pub struct UsageScope {
    pub project_id: Option<Uuid>,
    /// A VDC and everything below it.
    pub vdc_id: Option<Uuid>,
    pub org_id: Option<Uuid>,
    pub resource_id: Option<Uuid>,
}

impl UsageScope {
    fn conds(&self, c: &mut Conds) {
        if let Some(p) = self.project_id {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        if let Some(v) = self.vdc_id {
            c.and(
                "vdc_id IN (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = ?)",
                [Arg::from(v)],
            );
        }
        if let Some(o) = self.org_id {
            c.and("org_id = ?", [Arg::from(o)]);
        }
        if let Some(r) = self.resource_id {
            c.and("resource_id = ?", [Arg::from(r)]);
        }
    }
}

impl Store {
    // -------------------------------------------------------------- the meter

    /// The meter's cursor; made on first use with every hour before `start` closed.
    pub async fn meter_cursor(&self, start: DateTime<Utc>) -> Result<MeterCursor> {
        let row = sqlx::query(
            "SELECT last_event_id, closed_through, exported_through FROM meter_cursor WHERE id = 1",
        )
        .fetch_optional(&self.db.write)
        .await?;
        if let Some(r) = row {
            return Ok(MeterCursor {
                last_event_id: col_i64(&r, "last_event_id")?,
                closed_through: col_time(&r, "closed_through")?,
                exported_through: col_time(&r, "exported_through")?,
            });
        }
        let start = hour_floor(start);
        sqlx::query(
            "INSERT INTO meter_cursor (id, last_event_id, closed_through, exported_through) \
             VALUES (1, 0, $1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(time_text(start))
        .execute(&self.db.write)
        .await?;
        Box::pin(self.meter_cursor(start)).await
    }

    /// Up to `limit` events after `after`, oldest first.
    pub async fn meter_events_after(&self, after: i64, limit: i64) -> Result<Vec<MeterEvent>> {
        let rows = sqlx::query(
            "SELECT id, at, resource_type, resource_id, project_id, vdc_id, event, attrs \
             FROM metering_events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.db.write)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// A resource's metered state, if the meter knows it.
    pub async fn meter_resource_get(&self, id: Uuid) -> Result<Option<MeterResource>> {
        let row = sqlx::query(&format!(
            "SELECT {RES_COLS} FROM meter_resources WHERE resource_id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.as_ref().map(resource_from_row).transpose()
    }

    async fn meter_resource_tx(tx: &mut Tx, id: &str) -> Result<Option<MeterResource>> {
        let row = sqlx::query(&format!(
            "SELECT {RES_COLS} FROM meter_resources WHERE resource_id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        row.as_ref().map(resource_from_row).transpose()
    }

    async fn org_of_tx(tx: &mut Tx, vdc: &str) -> Result<String> {
        let org: Option<String> = sqlx::query_scalar("SELECT org_id FROM vdcs WHERE id = $1")
            .bind(vdc)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(org.unwrap_or_else(|| Uuid::nil().to_string()))
    }

    /// Apply `events` (in id order) and move the cursor to `through`, in one transaction.
    /// Each event first closes what its resource accrued since its last change (at the
    /// event's time, never before the closed hours), then changes its state.
    pub async fn meter_apply(
        &self,
        events: &[MeterEvent],
        after: i64,
        through: i64,
        region: &str,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let closed: String =
            sqlx::query_scalar("SELECT closed_through FROM meter_cursor WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
        let closed = parse_time(&closed)?;
        // Resources touched, with whether they still exist afterwards.
        let mut touched: HashMap<String, Option<MeterResource>> = HashMap::new();
        let mut orgs: HashMap<String, String> = HashMap::new();
        let mut acc = Accruals::default();
        for e in events {
            let cur = match touched.get(&e.resource_id) {
                Some(r) => r.clone(),
                None => Store::meter_resource_tx(&mut tx, &e.resource_id).await?,
            };
            let org = match orgs.get(&e.vdc_id) {
                Some(o) => o.clone(),
                None => {
                    let o = Store::org_of_tx(&mut tx, &e.vdc_id).await?;
                    orgs.insert(e.vdc_id.clone(), o.clone());
                    o
                }
            };
            let next = match cur {
                Some(mut r) => {
                    // A late event cannot reach into hours already closed.
                    let at = e.at.max(r.since).max(closed);
                    acc.accrue(&r, r.since, at);
                    r.since = at;
                    // An event carries the resource's owner now (a transfer changes it).
                    r.project_id = e.project_id.clone();
                    r.vdc_id = e.vdc_id.clone();
                    r.org_id = org;
                    // Subscriptions follow their resource: deleted, they end with the hour;
                    // transferred, what is not yet begun is the new owner's.
                    match e.event.as_str() {
                        "deleted" => {
                            Store::subscriptions_end_tx(
                                &mut tx,
                                "resource_id",
                                &e.resource_id,
                                at,
                                "ended",
                            )
                            .await?;
                        }
                        "transferred" => {
                            let owner =
                                (r.project_id.as_str(), r.vdc_id.as_str(), r.org_id.as_str());
                            Store::subscriptions_move_tx(&mut tx, &e.resource_id, at, owner)
                                .await?;
                        }
                        _ => {}
                    }
                    match meters::apply(&mut r.state, &e.event, &e.attrs) {
                        Applied::Keep => Some(r),
                        Applied::Remove => None,
                    }
                }
                None if e.event == "deleted" => None,
                None => {
                    let mut state = Map::new();
                    meters::apply(&mut state, &e.event, &e.attrs);
                    Some(MeterResource {
                        resource_id: e.resource_id.clone(),
                        resource_type: e.resource_type.clone(),
                        project_id: e.project_id.clone(),
                        vdc_id: e.vdc_id.clone(),
                        org_id: org,
                        state,
                        since: e.at.max(closed),
                    })
                }
            };
            touched.insert(e.resource_id.clone(), next);
        }
        acc.write(&mut tx, region).await?;
        for (id, r) in touched {
            match r {
                Some(r) => {
                    sqlx::query(&format!(
                        "INSERT INTO meter_resources ({RES_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (resource_id) DO UPDATE SET project_id = excluded.project_id, \
                         vdc_id = excluded.vdc_id, org_id = excluded.org_id, state = excluded.state, \
                         since = excluded.since"
                    ))
                    .bind(&r.resource_id)
                    .bind(&r.resource_type)
                    .bind(&r.project_id)
                    .bind(&r.vdc_id)
                    .bind(&r.org_id)
                    .bind(Value::Object(r.state).to_string())
                    .bind(time_text(r.since))
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM meter_resources WHERE resource_id = $1")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        // Another control plane on the same database may have applied them first: then
        // nothing of this pass is kept.
        let moved = sqlx::query(
            "UPDATE meter_cursor SET last_event_id = $1 WHERE id = 1 AND last_event_id = $2",
        )
        .bind(through)
        .bind(after)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(Error::conflict("another meter applied these events first"));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Close the hour starting at `hour`: everything still accruing is accrued up to its end,
    /// buckets are sampled, the hour's records are priced, and the cursor moves past it.
    /// Returns how many records were priced.
    pub async fn meter_close_hour(
        &self,
        hour: DateTime<Utc>,
        region: &str,
        book: &PriceBook,
    ) -> Result<usize> {
        let end = hour + Duration::hours(1);
        let end_text = time_text(end);
        let mut tx = self.db.write.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {RES_COLS} FROM meter_resources WHERE since < $1 AND resource_type <> 'bucket'"
        ))
        .bind(&end_text)
        .fetch_all(&mut *tx)
        .await?;
        let mut acc = Accruals::default();
        for r in &rows {
            let r = resource_from_row(r)?;
            acc.accrue(&r, r.since, end);
        }
        Store::meter_buckets_tx(&mut tx, hour, &mut acc).await?;
        acc.write(&mut tx, region).await?;
        sqlx::query(
            "UPDATE meter_resources SET since = $1 WHERE since < $1 AND resource_type <> 'bucket'",
        )
        .bind(&end_text)
        .execute(&mut *tx)
        .await?;
        let priced = Store::meter_rate_tx(&mut tx, hour, book).await?;
        Store::meter_roll_up_tx(&mut tx, hour).await?;
        let moved = sqlx::query(
            "UPDATE meter_cursor SET closed_through = $1 WHERE id = 1 AND closed_through = $2",
        )
        .bind(&end_text)
        .bind(time_text(hour))
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(Error::conflict("another meter closed this hour first"));
        }
        tx.commit().await?;
        Ok(priced)
    }

    /// Add a closed hour's records to their day's sums.
    async fn meter_roll_up_tx(tx: &mut Tx, hour: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO usage_daily (day, org_id, vdc_id, project_id, resource_type, resource_id, \
             meter, spec, unit_price, subscription_id, quantity, amount) \
             SELECT $1, org_id, vdc_id, project_id, resource_type, resource_id, meter, spec, \
             unit_price, COALESCE(subscription_id, ''), CAST(SUM(quantity) AS BIGINT), \
             CAST(SUM(amount) AS BIGINT) FROM usage_records WHERE period_start = $2 AND gap = 0 \
             GROUP BY org_id, vdc_id, project_id, resource_type, resource_id, meter, spec, \
             unit_price, COALESCE(subscription_id, '') \
             ON CONFLICT (day, resource_id, meter, spec, project_id, vdc_id, unit_price, subscription_id) \
             DO UPDATE SET quantity = usage_daily.quantity + excluded.quantity, \
             amount = usage_daily.amount + excluded.amount",
        )
        .bind(time_text(day_floor(hour)))
        .bind(time_text(hour))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Buckets are not event-driven: as an hour closes, each is sampled for the bytes it
    /// holds (counted as held the whole hour) and the requests served since the last sample.
    async fn meter_buckets_tx(tx: &mut Tx, hour: DateTime<Utc>, acc: &mut Accruals) -> Result<()> {
        let buckets = sqlx::query(
            "SELECT b.id, b.project_id, b.vdc_id, b.used_bytes, b.read_requests, b.write_requests, \
             v.org_id FROM buckets b LEFT JOIN vdcs v ON v.id = b.vdc_id",
        )
        .fetch_all(&mut **tx)
        .await?;
        let seen = sqlx::query(&format!(
            "SELECT {RES_COLS} FROM meter_resources WHERE resource_type = 'bucket'"
        ))
        .fetch_all(&mut **tx)
        .await?;
        let mut last: HashMap<String, MeterResource> = HashMap::new();
        for r in &seen {
            let r = resource_from_row(r)?;
            last.insert(r.resource_id.clone(), r);
        }
        for b in &buckets {
            let id = col_str(b, "id")?;
            let reads = col_i64(b, "read_requests")?;
            let writes = col_i64(b, "write_requests")?;
            let prev = last.remove(&id);
            let counter = |k: &str, now: i64| {
                let before = prev
                    .as_ref()
                    .and_then(|p| p.state.get(k))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                // A counter that went down was reset: all of it is new.
                if now >= before {
                    now - before
                } else {
                    now
                }
            };
            let r = MeterResource {
                resource_id: id.clone(),
                resource_type: "bucket".into(),
                project_id: col_str(b, "project_id")?,
                vdc_id: col_str(b, "vdc_id")?,
                org_id: col_opt_str(b, "org_id")?.unwrap_or_else(|| Uuid::nil().to_string()),
                state: Map::new(),
                since: hour,
            };
            let key = |meter: &'static str| AccKey {
                resource_id: id.clone(),
                meter,
                spec: String::new(),
                project_id: r.project_id.clone(),
                hour,
            };
            let bytes = col_i64(b, "used_bytes")?;
            let gib = (bytes as i128 * MICRO as i128 / (1i128 << 30)) as i64;
            acc.add(key("object_gib_hours"), &r, "", &None, false, gib);
            acc.add(
                key("object_read_requests"),
                &r,
                "",
                &None,
                false,
                counter("reads", reads) * MICRO,
            );
            acc.add(
                key("object_write_requests"),
                &r,
                "",
                &None,
                false,
                counter("writes", writes) * MICRO,
            );
            let state = serde_json::json!({"reads": reads, "writes": writes});
            sqlx::query(&format!(
                "INSERT INTO meter_resources ({RES_COLS}) VALUES ($1, 'bucket', $2, $3, $4, $5, $6) \
                 ON CONFLICT (resource_id) DO UPDATE SET project_id = excluded.project_id, \
                 vdc_id = excluded.vdc_id, org_id = excluded.org_id, state = excluded.state, \
                 since = excluded.since"
            ))
            .bind(&id)
            .bind(&r.project_id)
            .bind(&r.vdc_id)
            .bind(&r.org_id)
            .bind(state.to_string())
            .bind(time_text(hour))
            .execute(&mut **tx)
            .await?;
        }
        // Buckets gone since the last sample.
        for id in last.keys() {
            sqlx::query("DELETE FROM meter_resources WHERE resource_id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Price the unrated records of `hour` by the price list in force at its start: one
    /// statement per meter and spec found in the hour (the price is looked up once for
    /// all of them), then the rest — gaps and what has no price — are marked rated at 0.
    async fn meter_rate_tx(tx: &mut Tx, hour: DateTime<Utc>, book: &PriceBook) -> Result<usize> {
        let h = time_text(hour);
        let groups: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT meter, spec FROM usage_records \
             WHERE period_start = $1 AND rated = 0 AND gap = 0",
        )
        .bind(&h)
        .fetch_all(&mut **tx)
        .await?;
        let mut n = Store::meter_rate_subscribed_tx(tx, hour, book).await?;
        for (meter, spec) in &groups {
            let Some((p, unit)) = book.find(meter, spec, Billing::Payg, hour) else {
                continue;
            };
            let max: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(quantity) FROM usage_records \
                 WHERE period_start = $1 AND rated = 0 AND gap = 0 AND meter = $2 AND spec = $3",
            )
            .bind(&h)
            .bind(meter)
            .bind(spec)
            .fetch_one(&mut **tx)
            .await?;
            if max.unwrap_or(0) as i128 * unit as i128 > (i64::MAX / 2) as i128 {
                // Too large for the database's 64-bit arithmetic: row by row, in 128 bits.
                n += Store::meter_rate_rows_tx(tx, &h, meter, spec, p.id, unit).await?;
                continue;
            }
            // Half up, as amount_of: (q × u + ½·10⁶) / 10⁶ in whole millionths.
            let done = sqlx::query(
                "UPDATE usage_records SET rated = 1, price_id = $1, unit_price = $2, \
                 amount = (quantity * $2 + 500000) / 1000000 \
                 WHERE period_start = $3 AND rated = 0 AND gap = 0 AND meter = $4 AND spec = $5",
            )
            .bind(p.id.to_string())
            .bind(unit)
            .bind(&h)
            .bind(meter)
            .bind(spec)
            .execute(&mut **tx)
            .await?;
            n += done.rows_affected();
        }
        let rest = sqlx::query(
            "UPDATE usage_records SET rated = 1, price_id = NULL, unit_price = 0, amount = 0 \
             WHERE period_start = $1 AND rated = 0",
        )
        .bind(&h)
        .execute(&mut **tx)
        .await?;
        Ok((n + rest.rows_affected()) as usize)
    }

    /// Price the hour's records a subscription covers: only what exceeds the subscribed
    /// rate is charged, at the pay-as-you-go price.
    async fn meter_rate_subscribed_tx(
        tx: &mut Tx,
        hour: DateTime<Utc>,
        book: &PriceBook,
    ) -> Result<u64> {
        let subs = Store::subscriptions_covering_tx(tx, hour).await?;
        if subs.is_empty() {
            return Ok(0);
        }
        let h = time_text(hour);
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, resource_id, meter, spec, quantity FROM usage_records \
             WHERE period_start = $1 AND rated = 0 AND gap = 0 AND resource_id IN \
             (SELECT resource_id FROM subscriptions WHERE starts_at <= $1 AND ends_at > $1)",
        )
        .bind(&h)
        .fetch_all(&mut **tx)
        .await?;
        let mut n = 0;
        for (id, resource, meter, spec, quantity) in rows {
            let covered = subs.iter().find_map(|s| {
                (s.resource_id.to_string() == resource)
                    .then(|| s.line(&meter, &spec).map(|l| (s.id, l.per_hour)))
                    .flatten()
            });
            let Some((sub, per_hour)) = covered else {
                continue;
            };
            let (price, unit) = match book.find(&meter, &spec, Billing::Payg, hour) {
                Some((p, u)) => (Some(p.id.to_string()), u),
                None => (None, 0),
            };
            sqlx::query(
                "UPDATE usage_records SET rated = 1, price_id = $1, unit_price = $2, amount = $3, \
                 subscription_id = $4 WHERE id = $5",
            )
            .bind(price)
            .bind(unit)
            .bind(amount_of((quantity - per_hour).max(0), unit))
            .bind(sub.to_string())
            .bind(id)
            .execute(&mut **tx)
            .await?;
            n += 1;
        }
        Ok(n)
    }

    async fn meter_rate_rows_tx(
        tx: &mut Tx,
        hour: &str,
        meter: &str,
        spec: &str,
        price: Uuid,
        unit: i64,
    ) -> Result<u64> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, quantity FROM usage_records \
             WHERE period_start = $1 AND rated = 0 AND gap = 0 AND meter = $2 AND spec = $3",
        )
        .bind(hour)
        .bind(meter)
        .bind(spec)
        .fetch_all(&mut **tx)
        .await?;
        for (id, q) in &rows {
            sqlx::query(
                "UPDATE usage_records SET rated = 1, price_id = $1, unit_price = $2, amount = $3 WHERE id = $4",
            )
            .bind(price.to_string())
            .bind(unit)
            .bind(amount_of(*q, unit))
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(rows.len() as u64)
    }

    pub async fn meter_set_exported(&self, through: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE meter_cursor SET exported_through = $1 WHERE id = 1")
            .bind(time_text(through))
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    pub async fn meter_resource_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM meter_resources WHERE resource_type <> 'bucket'",
        )
        .fetch_one(&self.db.read)
        .await?)
    }

    /// Metered resources in `scope` still accruing, for live (not yet closed) usage.
    pub async fn meter_resources_in(&self, scope: &UsageScope) -> Result<Vec<MeterResource>> {
        let mut c = Conds::new();
        scope.conds(&mut c);
        c.and("resource_type <> 'bucket'", []);
        let (sql, args) = c.render(
            &format!("SELECT {RES_COLS} FROM meter_resources"),
            "",
            vec![],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(resource_from_row).collect()
    }

    // -------------------------------------------------------------- hosts going silent

    /// Hosts whose agent has been silent since before `stale` and whose instances the meter
    /// still counts as observed; marks them, and records an `unobserved` event for each of
    /// their instances at the host's last heartbeat.
    pub async fn meter_hosts_lost(&self, stale: DateTime<Utc>, shift: Duration) -> Result<usize> {
        let mut tx = self.db.write.begin().await?;
        let hosts = sqlx::query(
            "SELECT id, last_heartbeat_at FROM hosts WHERE meter_lost = 0 AND last_heartbeat_at IS NOT NULL \
             AND last_heartbeat_at < $1",
        )
        .bind(time_text(stale))
        .fetch_all(&mut *tx)
        .await?;
        let mut n = 0;
        for h in &hosts {
            let id = col_str(h, "id")?;
            let last = col_time(h, "last_heartbeat_at")? + shift;
            n += Store::meter_host_instances_tx(&mut tx, &id, "unobserved", last).await?;
            sqlx::query("UPDATE hosts SET meter_lost = 1 WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// A heartbeat from a host the meter held as lost: its instances are observed again.
    pub(crate) async fn meter_host_back_tx(tx: &mut Tx, host: &str) -> Result<()> {
        let lost: Option<i64> = sqlx::query_scalar("SELECT meter_lost FROM hosts WHERE id = $1")
            .bind(host)
            .fetch_optional(&mut **tx)
            .await?;
        if lost == Some(1) {
            Store::meter_host_instances_tx(tx, host, "observed", meter_now()).await?;
            sqlx::query("UPDATE hosts SET meter_lost = 0 WHERE id = $1")
                .bind(host)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn meter_host_instances_tx(
        tx: &mut Tx,
        host: &str,
        event: &str,
        at: DateTime<Utc>,
    ) -> Result<usize> {
        let rows = sqlx::query("SELECT id, project_id, vdc_id FROM instances WHERE host_id = $1")
            .bind(host)
            .fetch_all(&mut **tx)
            .await?;
        for r in &rows {
            sqlx::query(
                "INSERT INTO metering_events (at, resource_type, resource_id, project_id, vdc_id, event, attrs) \
                 VALUES ($1, 'instance', $2, $3, $4, $5, '{}')",
            )
            .bind(time_text(at))
            .bind(col_str(r, "id")?)
            .bind(col_str(r, "project_id")?)
            .bind(col_str(r, "vdc_id")?)
            .bind(event)
            .execute(&mut **tx)
            .await?;
        }
        Ok(rows.len())
    }

    // -------------------------------------------------------------- usage records

    pub async fn usage_list(
        &self,
        c: &mut Conds,
        after: i64,
        limit: i64,
    ) -> Result<Vec<UsageRecord>> {
        c.and("id > ?", [Arg::Int(after)]);
        let (sql, args) = c.render(
            &format!("SELECT {USAGE_COLS} FROM usage_records"),
            " ORDER BY id LIMIT ?",
            vec![Arg::Int(limit)],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(usage_from_row).collect()
    }

    /// The records of one hour, for the usage files.
    pub async fn usage_of_hour(&self, hour: DateTime<Utc>) -> Result<Vec<UsageRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {USAGE_COLS} FROM usage_records WHERE period_start = $1 ORDER BY id"
        ))
        .bind(time_text(hour))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(usage_from_row).collect()
    }

    /// Every hour before this is closed (the distant past before the meter first ran).
    async fn meter_closed(&self) -> Result<DateTime<Utc>> {
        let t: Option<String> =
            sqlx::query_scalar("SELECT closed_through FROM meter_cursor WHERE id = 1")
                .fetch_optional(&self.db.read)
                .await?;
        Ok(match t {
            Some(t) => super::parse_time(&t)?,
            None => DateTime::<Utc>::MIN_UTC,
        })
    }

    /// Usage in `scope` over `[from, to)`, summed per resource, meter, spec and price: whole
    /// closed days from the daily sums, the hours around them from the records. (A
    /// resource can have one sum per part; callers add them up.)
    pub async fn usage_sums(
        &self,
        scope: &UsageScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageSum>> {
        let (days, hours) = split_days(from, to, self.meter_closed().await?);
        let mut out = Vec::new();
        if let Some((a, b)) = days {
            out.extend(
                self.usage_sums_in(scope, "usage_daily", "day", "1", a, b)
                    .await?,
            );
        }
        for (a, b) in hours {
            out.extend(
                self.usage_sums_in(scope, "usage_records", "period_start", "rated", a, b)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn usage_sums_in(
        &self,
        scope: &UsageScope,
        table: &str,
        time: &str,
        rated: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsageSum>> {
        let mut c = Conds::new();
        scope.conds(&mut c);
        c.and(
            format!("{time} >= ? AND {time} < ?"),
            [Arg::from(time_text(from)), Arg::from(time_text(to))],
        );
        if table == "usage_records" {
            c.and("gap = 0", []);
        }
        let (sql, args) = c.render(
            &format!(
                "SELECT project_id, vdc_id, resource_type, resource_id, meter, spec, unit_price, \
                 {rated} AS rated, subscription_id, MIN({time}) AS first_hour, \
                 CAST(SUM(quantity) AS BIGINT) AS quantity, CAST(SUM(amount) AS BIGINT) AS amount \
                 FROM {table}"
            ),
            &format!(
                " GROUP BY project_id, vdc_id, resource_type, resource_id, meter, spec, unit_price, \
                 {rated}, subscription_id ORDER BY project_id, resource_type, resource_id, meter, spec"
            ),
            vec![],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageSum {
                    project_id: col_str(r, "project_id")?,
                    vdc_id: col_str(r, "vdc_id")?,
                    resource_type: col_str(r, "resource_type")?,
                    resource_id: col_str(r, "resource_id")?,
                    meter: col_str(r, "meter")?,
                    spec: col_str(r, "spec")?,
                    unit_price: col_i64(r, "unit_price")?,
                    rated: col_i64(r, "rated")? != 0,
                    first_hour: col_time(r, "first_hour")?,
                    quantity: col_i64(r, "quantity")?,
                    amount: col_i64(r, "amount")?,
                    subscription_id: super::col_opt_str(r, "subscription_id")?
                        .filter(|s| !s.is_empty()),
                })
            })
            .collect()
    }

    /// Rated spending of a VDC and everything below it over `[from, to)`, millionths of a
    /// yuan (whole closed days from the daily sums).
    pub async fn usage_spent(
        &self,
        vdc: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i64> {
        let (days, hours) = split_days(from, to, self.meter_closed().await?);
        let parts = days
            .map(|d| ("usage_daily", "day", "", d))
            .into_iter()
            .chain(
                hours
                    .into_iter()
                    .map(|h| ("usage_records", "period_start", "rated = 1 AND ", h)),
            );
        let mut total = 0i64;
        for (table, time, cond, (a, b)) in parts {
            let v: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT CAST(SUM(amount) AS BIGINT) FROM {table} WHERE {cond}{time} >= $1 \
                 AND {time} < $2 AND vdc_id IN \
                 (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = $3)"
            ))
            .bind(time_text(a))
            .bind(time_text(b))
            .bind(vdc.to_string())
            .fetch_one(&self.db.read)
            .await?;
            total = total.saturating_add(v.unwrap_or(0));
        }
        Ok(total)
    }

    /// The owner a resource's usage is recorded under (its latest), for visibility checks.
    pub async fn usage_owner(&self, resource: Uuid) -> Result<Option<(Uuid, Uuid)>> {
        let row = sqlx::query(
            "SELECT project_id, vdc_id FROM meter_resources WHERE resource_id = $1 \
             UNION ALL SELECT project_id, vdc_id FROM \
             (SELECT project_id, vdc_id FROM usage_records WHERE resource_id = $1 ORDER BY id DESC LIMIT 1) latest",
        )
        .bind(resource.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        match row {
            Some(r) => Ok(Some((col_uuid(&r, "project_id")?, col_uuid(&r, "vdc_id")?))),
            None => Ok(None),
        }
    }

    // -------------------------------------------------------------- prices

    pub async fn price_list(&self, meter: Option<&str>) -> Result<Vec<Price>> {
        let rows = sqlx::query(&format!(
            "SELECT {PRICE_COLS} FROM prices WHERE ($1 = '' OR meter = $1) \
             ORDER BY meter, spec, billing, effective_from"
        ))
        .bind(meter.unwrap_or_default())
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(price_from_row).collect()
    }

    pub async fn price_get(&self, id: Uuid) -> Result<Option<Price>> {
        let row = sqlx::query(&format!("SELECT {PRICE_COLS} FROM prices WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(price_from_row).transpose()
    }

    /// Prices of the same meter, spec and billing whose period meets `[from, to)`, other
    /// than `except`.
    async fn price_overlaps_tx(
        tx: &mut Tx,
        p: &Price,
        except: Option<Uuid>,
    ) -> Result<Option<Price>> {
        let far = "9999-12-31T23:59:59.999999Z";
        let rows = sqlx::query(&format!(
            "SELECT {PRICE_COLS} FROM prices WHERE meter = $1 AND spec = $2 AND billing = $3 \
             AND id <> $4 AND effective_from < $5 AND COALESCE(effective_to, $6) > $7"
        ))
        .bind(&p.meter)
        .bind(&p.spec)
        .bind(p.billing.as_str())
        .bind(except.map(|e| e.to_string()).unwrap_or_default())
        .bind(p.effective_to.map(time_text).unwrap_or_else(|| far.into()))
        .bind(far)
        .bind(time_text(p.effective_from))
        .fetch_all(&mut **tx)
        .await?;
        rows.first().map(price_from_row).transpose()
    }

    fn overlap_error(o: &Price) -> Error {
        Error::invalid(
            "effective_from",
            &format!(
                "overlaps price {} of {} {:?} ({}) in force from {} {}",
                o.id,
                o.meter,
                o.spec,
                o.billing.as_str(),
                time_text(o.effective_from),
                o.effective_to
                    .map(|t| format!("until {}", time_text(t)))
                    .unwrap_or_else(|| "with no end".into())
            ),
        )
    }

    pub async fn price_insert(&self, p: &Price, unit_price: i64) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        if let Some(o) = Store::price_overlaps_tx(&mut tx, p, None).await? {
            return Err(Store::overlap_error(&o));
        }
        sqlx::query(&format!(
            "INSERT INTO prices ({PRICE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(p.id.to_string())
        .bind(&p.meter)
        .bind(&p.spec)
        .bind(p.billing.as_str())
        .bind(unit_price)
        .bind(&p.currency)
        .bind(time_text(p.effective_from))
        .bind(p.effective_to.map(time_text))
        .bind(&p.description)
        .bind(&p.created_by)
        .bind(time_text(p.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn price_update(&self, p: &Price) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        if let Some(o) = Store::price_overlaps_tx(&mut tx, p, Some(p.id)).await? {
            return Err(Store::overlap_error(&o));
        }
        sqlx::query("UPDATE prices SET effective_to = $1, description = $2 WHERE id = $3")
            .bind(p.effective_to.map(time_text))
            .bind(&p.description)
            .bind(p.id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records priced by this price (a price that has been used is kept for the record).
    pub async fn price_used(&self, id: Uuid) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_records WHERE price_id = $1")
            .bind(id.to_string())
            .fetch_one(&self.db.read)
            .await?;
        Ok(n > 0)
    }

    pub async fn price_delete(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM prices WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    // -------------------------------------------------------------- budgets

    pub async fn budget_set(&self, vdc: Uuid, limit: i64, by: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO budgets (vdc_id, monthly_limit, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (vdc_id) DO UPDATE SET monthly_limit = excluded.monthly_limit, \
             updated_by = excluded.updated_by, updated_at = excluded.updated_at, alerted_level = 0",
        )
        .bind(vdc.to_string())
        .bind(limit)
        .bind(by)
        .bind(time_text(Utc::now()))
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn budget_delete(&self, vdc: Uuid) -> Result<bool> {
        let done = sqlx::query("DELETE FROM budgets WHERE vdc_id = $1")
            .bind(vdc.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// (budget without `spent`, alerted month, alerted level).
    pub async fn budget_get(&self, vdc: Uuid) -> Result<Option<(Budget, String, i64)>> {
        let row = sqlx::query(
            "SELECT vdc_id, monthly_limit, alerted_month, alerted_level, updated_by, updated_at \
             FROM budgets WHERE vdc_id = $1",
        )
        .bind(vdc.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.as_ref().map(budget_from_row).transpose()
    }

    pub async fn budget_all(&self) -> Result<Vec<(Budget, String, i64)>> {
        let rows = sqlx::query(
            "SELECT vdc_id, monthly_limit, alerted_month, alerted_level, updated_by, updated_at FROM budgets",
        )
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(budget_from_row).collect()
    }

    /// Record a threshold crossed and remember it, so it is raised once a month.
    pub async fn budget_alert(&self, e: &BillingEvent, level: i64, limit: i64) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        sqlx::query(
            "INSERT INTO billing_events (id, at, vdc_id, kind, month, spent, monthly_limit, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.id.to_string())
        .bind(time_text(e.at))
        .bind(e.vdc_id.to_string())
        .bind(&e.kind)
        .bind(&e.month)
        .bind(stratus_api::parse_micro(&e.spent).unwrap_or(0))
        .bind(limit)
        .bind(&e.message)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE budgets SET alerted_month = $1, alerted_level = $2 WHERE vdc_id = $3")
            .bind(&e.month)
            .bind(level)
            .bind(e.vdc_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn billing_events(&self, c: &Conds) -> Result<Vec<BillingEvent>> {
        let (sql, args) = c.render(
            "SELECT id, at, vdc_id, kind, month, spent, monthly_limit, message FROM billing_events",
            " ORDER BY at DESC, id LIMIT 1000",
            vec![],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BillingEvent {
                    id: col_uuid(r, "id")?,
                    at: col_time(r, "at")?,
                    vdc_id: col_uuid(r, "vdc_id")?,
                    kind: col_str(r, "kind")?,
                    month: col_str(r, "month")?,
                    spent: stratus_api::format_micro(col_i64(r, "spent")?, 2),
                    monthly_limit: stratus_api::format_micro(col_i64(r, "monthly_limit")?, 2),
                    message: col_str(r, "message")?,
                })
            })
            .collect()
    }
}

fn budget_from_row(r: &AnyRow) -> Result<(Budget, String, i64)> {
    Ok((
        Budget {
            vdc_id: col_uuid(r, "vdc_id")?,
            monthly_limit: stratus_api::format_micro(col_i64(r, "monthly_limit")?, 2),
            spent: String::new(),
            percent: 0.0,
            updated_by: col_str(r, "updated_by")?,
            updated_at: col_time(r, "updated_at")?,
        },
        col_str(r, "alerted_month")?,
        col_i64(r, "alerted_level")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn whole_closed_days_come_from_the_daily_sums() {
        // 5 March 10:00 to 1 April, closed through 20 March 13:00: days 6–19 from sums.
        let (days, hours) = split_days(
            t("2030-03-05T10:00:00Z"),
            t("2030-04-01T00:00:00Z"),
            t("2030-03-20T13:00:00Z"),
        );
        assert_eq!(
            days,
            Some((t("2030-03-06T00:00:00Z"), t("2030-03-20T00:00:00Z")))
        );
        assert_eq!(
            hours,
            vec![
                (t("2030-03-05T10:00:00Z"), t("2030-03-06T00:00:00Z")),
                (t("2030-03-20T00:00:00Z"), t("2030-04-01T00:00:00Z")),
            ]
        );
        // A month entirely closed: all of it from the sums.
        let (days, hours) = split_days(
            t("2030-03-01T00:00:00Z"),
            t("2030-04-01T00:00:00Z"),
            t("2030-04-02T00:00:00Z"),
        );
        assert_eq!(
            days,
            Some((t("2030-03-01T00:00:00Z"), t("2030-04-01T00:00:00Z")))
        );
        assert!(hours.is_empty());
        // Less than a closed day: all from the records.
        let (days, hours) = split_days(
            t("2030-03-01T00:00:00Z"),
            t("2030-04-01T00:00:00Z"),
            t("2030-03-01T23:00:00Z"),
        );
        assert_eq!(days, None);
        assert_eq!(
            hours,
            vec![(t("2030-03-01T00:00:00Z"), t("2030-04-01T00:00:00Z"))]
        );
    }

    #[test]
    fn intervals_split_at_hour_boundaries() {
        let s = split_hours(t("2026-03-01T00:30:00Z"), t("2026-03-01T02:15:00Z"));
        assert_eq!(
            s,
            vec![
                (t("2026-03-01T00:00:00Z"), 1_800_000_000),
                (t("2026-03-01T01:00:00Z"), 3_600_000_000),
                (t("2026-03-01T02:00:00Z"), 900_000_000),
            ]
        );
        assert!(split_hours(t("2026-03-01T01:00:00Z"), t("2026-03-01T01:00:00Z")).is_empty());
        assert_eq!(accrued(2 * MICRO, 1_800_000_000), MICRO);
        assert_eq!(amount_of(3 * MICRO, 50_000), 150_000);
        // Half a millionth rounds up.
        assert_eq!(amount_of(1, 500_000), 1);
    }
}
