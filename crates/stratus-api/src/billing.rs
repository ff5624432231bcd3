//! Metering (话单), prices, bills, cost estimates and budgets.
//!
//! Quantities and money travel as decimal strings ("1.5", "12.34"): the server keeps them as
//! whole millionths, so nothing is lost to binary floating point on the way.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Millionths in one unit (of a quantity or of a yuan).
pub const MICRO: i64 = 1_000_000;

/// Parse a non-negative decimal with at most six fractional digits into millionths.
pub fn parse_micro(s: &str) -> Result<i64, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Err("is empty");
    }
    if s.starts_with('-') {
        return Err("must not be negative");
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err("is not a number");
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not a decimal number (digits, one optional '.')");
    }
    if frac.len() > 6 {
        return Err("has more than six decimal places");
    }
    let w: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "is too large")?
    };
    let f: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}")
            .parse()
            .map_err(|_| "is not a number")?
    };
    w.checked_mul(MICRO)
        .and_then(|v| v.checked_add(f))
        .filter(|v| *v <= 1_000_000_000_000 * MICRO)
        .ok_or("is too large")
}

/// Millionths as a decimal string with `places` fractional digits (rounded half away from
/// zero): `format_micro(12_345_000, 2)` is "12.35".
pub fn format_micro(v: i64, places: u32) -> String {
    let places = places.min(6);
    let step = 10i128.pow(6 - places);
    let v = v as i128;
    let half = step / 2;
    let r = if v >= 0 {
        (v + half) / step
    } else {
        (v - half) / step
    };
    let sign = if r < 0 { "-" } else { "" };
    let r = r.abs();
    if places == 0 {
        return format!("{sign}{r}");
    }
    let div = 10i128.pow(places);
    format!(
        "{sign}{}.{:0width$}",
        r / div,
        r % div,
        width = places as usize
    )
}

/// A quantity in millionths, without trailing zeros ("1.5", "2").
pub fn format_quantity(v: i64) -> String {
    let s = format_micro(v, 6);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Millionths of a yuan rounded to the fen (0.01).
pub fn round_to_fen(v: i64) -> i64 {
    let r = (v as i128 + if v >= 0 { 5_000 } else { -5_000 }) / 10_000;
    (r * 10_000) as i64
}

/// What can be metered, its unit and what it is priced by.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Meter {
    /// e.g. `vcpu_hours`.
    pub name: String,
    /// e.g. `vcpu-hour`, `GiB-hour`, `request`.
    pub unit: String,
    /// The resource type it meters (`instance`, `volume`, …).
    pub resource_type: String,
    /// What the spec of its records is (a flavor name, a volume type, or empty).
    pub spec: String,
    pub description: String,
}

/// One usage record (话单): what one resource used of one meter in one hour.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    pub id: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub org_id: Uuid,
    pub vdc_id: Uuid,
    pub project_id: Uuid,
    pub vpc_id: Option<Uuid>,
    pub region: String,
    pub availability_zone: String,
    pub resource_type: String,
    pub resource_id: Uuid,
    pub meter: String,
    /// The flavor, volume type, … the quantity was used at ('' when the meter has none).
    pub spec: String,
    pub unit: String,
    /// Decimal string, up to six places.
    pub quantity: String,
    /// True for time nobody observed (the host's agent was silent): shown, never priced.
    pub gap: bool,
    /// True once its hour closed and it was priced; open hours grow until then.
    pub rated: bool,
    pub price_id: Option<Uuid>,
    /// Yuan per unit, six places.
    pub unit_price: String,
    /// Yuan, six places.
    pub amount: String,
    /// The subscription that covered its quantity (up to the subscribed rate): `amount` is
    /// then only what exceeded it; the subscription's own fee is its `subscription_months`
    /// record.
    #[serde(default)]
    pub subscription_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageFilter {
    #[serde(default)]
    pub project_id: Option<Uuid>,
    #[serde(default)]
    pub vdc_id: Option<Uuid>,
    #[serde(default)]
    pub resource_id: Option<Uuid>,
    #[serde(default)]
    pub meter: Option<String>,
    /// Records whose hour starts at or after this time.
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// Records whose hour starts before this time.
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    /// Records after this id (paging: pass the last id you got).
    #[serde(default)]
    pub after: Option<i64>,
    /// At most this many (default 1000, at most 10000).
    #[serde(default)]
    pub limit: Option<i64>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
}

/// How far metering has got.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MeterStatus {
    /// Every hour before this is closed, priced and final.
    pub closed_through: DateTime<Utc>,
    /// Usage files are written up to here.
    pub exported_through: DateTime<Utc>,
    /// The last resource event applied.
    pub last_event_id: i64,
    /// Resources being metered now.
    pub resources: i64,
    /// The meter's clock.
    pub now: DateTime<Utc>,
}

/// `payg` (per unit used) or `monthly` (per unit of rate and calendar month, subscription).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Billing {
    Payg,
    Monthly,
}

impl Billing {
    pub fn as_str(self) -> &'static str {
        match self {
            Billing::Payg => "payg",
            Billing::Monthly => "monthly",
        }
    }
}

/// A price-list entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Price {
    pub id: Uuid,
    pub meter: String,
    /// A flavor, volume type, …; '' applies to every spec without its own price.
    pub spec: String,
    pub billing: Billing,
    /// The meter's unit, for reading.
    pub unit: String,
    /// Yuan per unit (payg) or per unit of rate and month (monthly), up to six places.
    pub unit_price: String,
    pub currency: String,
    pub effective_from: DateTime<Utc>,
    /// Open-ended when absent.
    pub effective_to: Option<DateTime<Utc>>,
    pub description: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceCreate {
    pub meter: String,
    #[serde(default)]
    pub spec: String,
    #[serde(default = "default_billing")]
    pub billing: Billing,
    /// When given, it must be the meter's unit (a check that the price means what you think).
    #[serde(default)]
    pub unit: Option<String>,
    /// Decimal yuan, e.g. "0.05".
    pub unit_price: String,
    /// Only `CNY`.
    #[serde(default)]
    pub currency: Option<String>,
    /// Defaults to now.
    #[serde(default)]
    pub effective_from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub effective_to: Option<DateTime<Utc>>,
    #[serde(default)]
    pub description: String,
}

fn default_billing() -> Billing {
    Billing::Payg
}

/// Close an open price period (a new price then starts where it ends).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceUpdate {
    #[serde(default)]
    pub effective_to: Option<DateTime<Utc>>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PriceFilter {
    #[serde(default)]
    pub meter: Option<String>,
    /// Only prices in force at this time.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// What to estimate: the resources a request would make.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateRequest {
    /// Instances of this flavor (by name).
    #[serde(default)]
    pub flavor: Option<String>,
    /// How many instances (default 1 with a flavor).
    #[serde(default)]
    pub count: Option<i64>,
    #[serde(default)]
    pub volumes: Vec<EstimateVolume>,
    #[serde(default)]
    pub elastic_ips: i64,
    /// Object storage held, GiB.
    #[serde(default)]
    pub object_storage_gib: i64,
    /// For how many hours (default 730, a month).
    #[serde(default)]
    pub hours: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EstimateHours {
    /// For how many hours (default 730, a month).
    #[serde(default)]
    pub hours: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateVolume {
    /// Volume type name (default: the default type).
    #[serde(default)]
    pub volume_type: Option<String>,
    pub size_gib: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EstimateLine {
    pub meter: String,
    pub spec: String,
    pub unit: String,
    /// Units used per hour by everything estimated.
    pub quantity_per_hour: String,
    /// Pay-as-you-go yuan per unit ('' when there is no price).
    pub unit_price: String,
    /// Pay-as-you-go cost of the whole period, yuan.
    pub amount: String,
    /// Monthly subscription cost per month, yuan ('' when there is no monthly price).
    pub monthly: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Estimate {
    pub currency: String,
    pub hours: i64,
    pub lines: Vec<EstimateLine>,
    /// Pay-as-you-go per hour, yuan.
    pub hourly: String,
    /// Pay-as-you-go over `hours`, yuan (to the fen).
    pub total: String,
    /// Per month by subscription, when every line has a monthly price.
    pub monthly_subscription: Option<String>,
    /// Meters with no price in force (they cost nothing now).
    pub unpriced: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BillQuery {
    #[serde(default)]
    pub project_id: Option<Uuid>,
    /// The VDC and everything below it.
    #[serde(default)]
    pub vdc_id: Option<Uuid>,
    #[serde(default)]
    pub org_id: Option<Uuid>,
    /// One resource (a service instance): its cost so far.
    #[serde(default)]
    pub resource_id: Option<Uuid>,
    /// A calendar month `YYYY-MM` (months and hours are UTC). Default: the current month.
    #[serde(default)]
    pub month: Option<String>,
    /// Or any period: from (inclusive) …
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// … to (exclusive).
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    /// `json` (default), `csv` or `html` (a printable page).
    #[serde(default)]
    pub format: Option<String>,
}

/// A bill: the cost of a scope over a period, with its line items.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Bill {
    /// `platform`, `org`, `vdc`, `project` or `resource`.
    pub scope: String,
    pub scope_id: Option<Uuid>,
    pub scope_name: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub currency: String,
    /// Yuan, to the fen.
    pub total: String,
    /// False while the period includes hours not yet closed: those are priced at today's
    /// prices and the total can still grow.
    #[serde(rename = "final")]
    pub is_final: bool,
    pub as_of: DateTime<Utc>,
    /// Per project.
    pub projects: Vec<BillPart>,
    /// Per VDC directly below the scope (each with everything below it), for org and VDC
    /// bills.
    pub vdcs: Vec<BillPart>,
    pub lines: Vec<BillLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BillPart {
    pub id: Uuid,
    pub name: String,
    pub total: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BillLine {
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub resource_type: String,
    pub resource_id: Uuid,
    pub meter: String,
    pub spec: String,
    pub unit: String,
    pub quantity: String,
    pub unit_price: String,
    /// Yuan, to the fen.
    pub amount: String,
    /// Set when a subscription covered the quantity (the amount is only the excess).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<Uuid>,
}

/// A VDC's monthly budget and what is spent of it this month.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Budget {
    pub vdc_id: Uuid,
    /// Yuan per calendar month.
    pub monthly_limit: String,
    /// Spent so far this month (the VDC and everything below it), yuan.
    pub spent: String,
    /// Percent of the limit spent.
    pub percent: f64,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetSet {
    /// Yuan per month, e.g. "5000".
    pub monthly_limit: String,
}

/// A budget threshold crossed (80% or 100% of the month's limit).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BillingEvent {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub vdc_id: Uuid,
    /// `budget_80` or `budget_100`.
    pub kind: String,
    /// `YYYY-MM`.
    pub month: String,
    pub spent: String,
    pub monthly_limit: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BillingEventFilter {
    #[serde(default)]
    pub vdc_id: Option<Uuid>,
}

// ---------------------------------------------------------------- reports

/// Allocated (the quota limit; absent when unlimited) against used.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Allocation {
    pub allocated: Option<i64>,
    pub used: i64,
}

/// One VDC (department) in a resource report, with everything below it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportRow {
    pub vdc_id: Uuid,
    pub name: String,
    /// 1 for a top-level VDC.
    pub level: i64,
    pub vcpus: Allocation,
    pub memory_gib: Allocation,
    pub storage_gib: Allocation,
    pub elastic_ips: Allocation,
    pub instances: Allocation,
    /// Instances created in the period.
    pub instances_opened: i64,
    pub vcpu_hours: String,
    pub memory_gib_hours: String,
    /// Volume, root-disk, snapshot and backup GiB-hours.
    pub storage_gib_hours: String,
    /// Rated cost of the period, yuan.
    pub cost: String,
}

/// One resource pool (availability zone): host capacity against what is allocated.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolRow {
    pub availability_zone: String,
    pub hosts: i64,
    pub hosts_up: i64,
    pub vcpus_capacity: i64,
    pub vcpus_allocated: i64,
    pub memory_mib_capacity: i64,
    pub memory_mib_allocated: i64,
    pub disk_gib_capacity: i64,
    pub disk_gib_allocated: i64,
}

/// Resource totals and usage per VDC (and, for the platform, per resource pool) over a
/// period (8.3.4.8).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourceReport {
    /// `platform` or `vdc`.
    pub scope: String,
    pub scope_id: Option<Uuid>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub rows: Vec<ReportRow>,
    pub pools: Vec<PoolRow>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// The VDC (with everything below it); absent: the platform (management unit).
    #[serde(default)]
    pub vdc_id: Option<Uuid>,
    /// The last complete `daily`, `weekly` (Monday to Monday), `monthly` or `quarterly`
    /// period (UTC; default monthly) — or give from/to.
    #[serde(default)]
    pub period: Option<String>,
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
}

/// A report generated on a schedule: every period, once it has ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportSchedule {
    pub id: Uuid,
    pub name: String,
    pub period: String,
    pub vdc_id: Option<Uuid>,
    pub created_by: String,
    /// Reports exist for every period ending up to here.
    pub last_period_end: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportScheduleCreate {
    pub name: String,
    /// `daily`, `weekly`, `monthly` or `quarterly`.
    pub period: String,
    /// The VDC; absent: the platform (management unit).
    #[serde(default)]
    pub vdc_id: Option<Uuid>,
}

/// A generated report (without its content).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportInfo {
    pub id: Uuid,
    pub schedule_id: Option<Uuid>,
    pub name: String,
    pub vdc_id: Option<Uuid>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportFormat {
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_and_format_exactly() {
        assert_eq!(parse_micro("0.05"), Ok(50_000));
        assert_eq!(parse_micro("12"), Ok(12 * MICRO));
        assert_eq!(parse_micro(".5"), Ok(500_000));
        assert_eq!(parse_micro("1.000001"), Ok(1_000_001));
        assert!(parse_micro("-1").is_err());
        assert!(parse_micro("1.0000001").is_err());
        assert!(parse_micro("1e3").is_err());
        assert!(parse_micro("").is_err());
        assert!(parse_micro(".").is_err());
        assert!(parse_micro("99999999999999999999").is_err());
        assert_eq!(format_micro(12_345_000, 2), "12.35");
        assert_eq!(format_micro(12_344_999, 2), "12.34");
        assert_eq!(format_micro(5_000, 2), "0.01");
        assert_eq!(format_micro(-5_000, 2), "-0.01");
        assert_eq!(format_micro(0, 2), "0.00");
        assert_eq!(format_quantity(1_500_000), "1.5");
        assert_eq!(format_quantity(2 * MICRO), "2");
        assert_eq!(format_quantity(0), "0");
        assert_eq!(round_to_fen(12_345_000), 12_350_000);
    }
}

// ---------------------------------------------------------------- subscriptions

/// A resource bought for whole calendar months (包年包月) at the monthly prices in force
/// when it was bought: the fee is charged one `subscription_months` usage record per
/// covered month, and while it runs the meters it covers are charged only for use beyond
/// the subscribed rate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    pub id: Uuid,
    pub resource_id: Uuid,
    pub resource_type: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub months: i64,
    /// Covered hours are `[starts_at, ends_at)`.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub lines: Vec<SubscriptionLine>,
    /// Yuan per month (to the fen).
    pub monthly_fee: String,
    /// Yuan over all its months.
    pub total: String,
    /// `active`, `cancelled` (ended early by a user; the month begun stays charged) or
    /// `ended` (its resource was deleted), or `expired` once `ends_at` has passed.
    pub status: String,
    /// The catalog request that bought it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// One meter a subscription covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionLine {
    pub meter: String,
    pub spec: String,
    pub unit: String,
    /// The rate covered, units per hour (decimal).
    pub per_hour: String,
    /// The monthly price it was bought at.
    pub price_id: Uuid,
    /// Yuan per unit of rate and month.
    pub monthly_unit_price: String,
    /// Yuan per month for this line.
    pub monthly: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionCreate {
    /// An instance, volume, elastic IP, … being metered.
    pub resource_id: Uuid,
    /// Whole calendar months, 1 to 36 (12 for a year: 包年).
    pub months: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRenew {
    /// Months added after the current end, 1 to 36.
    pub months: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionFilter {
    #[serde(default)]
    pub project_id: Option<Uuid>,
    #[serde(default)]
    pub resource_id: Option<Uuid>,
    /// Only those running now (begun, not expired, cancelled or ended).
    #[serde(default)]
    pub active: Option<bool>,
}
