//! Resource reports (8.3.4.8): per VDC (department), allocated against used for vCPUs,
//! memory, storage, elastic IPs and instances, instances opened and usage and cost in the
//! period; for the platform also per resource pool (availability zone), host capacity
//! against allocation. Made at once (`GET /v1/reports/resources`) or on a schedule set once
//! (daily, weekly, monthly, quarterly), kept, and exportable as CSV.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use stratus_api::{
    format_micro, format_quantity, Allocation, PoolRow, ReportInfo, ReportQuery, ReportRow,
    ReportSchedule, ReportScheduleCreate, ResourceReport,
};
use uuid::Uuid;

use crate::app::{require, require_global, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::metering::meter_now;

pub const PERIODS: [&str; 4] = ["daily", "weekly", "monthly", "quarterly"];

fn midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
        .single()
        .unwrap_or(t)
}

fn month_start(y: i32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The start of the `period` containing `t`.
fn period_start(period: &str, t: DateTime<Utc>) -> DateTime<Utc> {
    match period {
        "daily" => midnight(t),
        "weekly" => {
            let d = midnight(t);
            d - Duration::days(d.weekday().num_days_from_monday() as i64)
        }
        "quarterly" => month_start(t.year(), (t.month() - 1) / 3 * 3 + 1),
        _ => month_start(t.year(), t.month()),
    }
}

/// The period after the one starting at `start`.
pub fn next_period(period: &str, start: DateTime<Utc>) -> DateTime<Utc> {
    match period {
        "daily" => start + Duration::days(1),
        "weekly" => start + Duration::days(7),
        _ => {
            let months = if period == "quarterly" { 3 } else { 1 };
            let m0 = start.year() * 12 + start.month() as i32 - 1 + months;
            month_start(m0 / 12, (m0 % 12) as u32 + 1)
        }
    }
}

/// The last complete `period` before `now`.
pub fn last_complete(period: &str, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = period_start(period, now);
    let start = period_start(period, end - Duration::microseconds(1));
    (start, end)
}

fn check_period(p: &str) -> Result<()> {
    if PERIODS.contains(&p) {
        Ok(())
    } else {
        Err(Error::invalid(
            "period",
            &format!("{p:?} is not one of {}", PERIODS.join(", ")),
        ))
    }
}

/// May the caller set up reports of `vdc` (its administrators; the management unit for
/// the platform)? 404 when it cannot even see them.
async fn may_schedule(app: &App, p: &Principal, vdc: Option<Uuid>) -> Result<()> {
    may_see(app, p, vdc).await?;
    match vdc {
        Some(v) => {
            let (_, chain) = app.vdc_visible(p, v).await?;
            require(p, Perm::VdcWrite, &Target::Vdc { chain: &chain }, "VDC", v)
        }
        None => require_global(p, Perm::PriceWrite),
    }
}

/// May the caller see reports of `vdc` (None: the platform)?
async fn may_see(app: &App, p: &Principal, vdc: Option<Uuid>) -> Result<()> {
    match vdc {
        Some(v) => {
            let (_, chain) = app.vdc_visible(p, v).await?;
            require(
                p,
                Perm::BillingRead,
                &Target::Vdc { chain: &chain },
                "VDC",
                v,
            )
        }
        None => require_global(p, Perm::BillingRead),
    }
}

fn alloc(q: Option<&std::collections::HashMap<String, (i64, i64)>>, res: &str) -> Allocation {
    let (limit, used) = q.and_then(|q| q.get(res)).copied().unwrap_or((-1, 0));
    Allocation {
        allocated: (limit >= 0).then_some(limit),
        used,
    }
}

/// Make the report of `vdc` (None: the platform) over `[from, to)`.
pub async fn generate(
    app: &App,
    vdc: Option<Uuid>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<ResourceReport> {
    let store = &app.store;
    let vdcs = store.report_vdcs(vdc).await?;
    let quotas = store.report_quotas(vdc).await?;
    let usage = store.report_usage(vdc, from, to).await?;
    let opened = store.report_opened(vdc, from, to).await?;
    let mut rows = Vec::with_capacity(vdcs.len());
    for (id, name, level) in vdcs {
        let q = quotas.get(&id);
        let u = usage.get(&id);
        let sum = |meters: &[&str]| -> (i64, i64) {
            meters.iter().fold((0, 0), |(a, b), m| {
                let (q, amt) = u.and_then(|u| u.get(*m)).copied().unwrap_or((0, 0));
                (a + q, b + amt)
            })
        };
        let cost: i64 = u.map(|u| u.values().map(|(_, a)| a).sum()).unwrap_or(0);
        rows.push(ReportRow {
            vdc_id: id,
            name,
            level,
            vcpus: alloc(q, "vcpus"),
            memory_gib: alloc(q, "memory_gib"),
            storage_gib: alloc(q, "storage_gib"),
            elastic_ips: alloc(q, "elastic_ips"),
            instances: alloc(q, "instances"),
            instances_opened: opened.get(&id).copied().unwrap_or(0),
            vcpu_hours: format_quantity(sum(&["vcpu_hours"]).0),
            memory_gib_hours: format_quantity(sum(&["memory_gib_hours"]).0),
            storage_gib_hours: format_quantity(
                sum(&[
                    "volume_gib_hours",
                    "instance_disk_gib_hours",
                    "snapshot_gib_hours",
                    "backup_gib_hours",
                ])
                .0,
            ),
            cost: format_micro(cost, 2),
        });
    }
    let mut pools: BTreeMap<String, PoolRow> = BTreeMap::new();
    if vdc.is_none() {
        for h in store.host_list(&app.config.compute).await? {
            let p = pools
                .entry(h.availability_zone.clone())
                .or_insert_with(|| PoolRow {
                    availability_zone: h.availability_zone.clone(),
                    hosts: 0,
                    hosts_up: 0,
                    vcpus_capacity: 0,
                    vcpus_allocated: 0,
                    memory_mib_capacity: 0,
                    memory_mib_allocated: 0,
                    disk_gib_capacity: 0,
                    disk_gib_allocated: 0,
                });
            p.hosts += 1;
            p.hosts_up += (h.state == stratus_api::HostState::Up) as i64;
            p.vcpus_capacity += h.capacity_vcpus;
            p.vcpus_allocated += h.allocated_vcpus;
            p.memory_mib_capacity += h.capacity_memory_mib;
            p.memory_mib_allocated += h.allocated_memory_mib;
            p.disk_gib_capacity += h.capacity_disk_gib;
            p.disk_gib_allocated += h.allocated_disk_gib;
        }
    }
    Ok(ResourceReport {
        scope: if vdc.is_some() { "vdc" } else { "platform" }.into(),
        scope_id: vdc,
        period_start: from,
        period_end: to,
        generated_at: Utc::now(),
        rows,
        pools: pools.into_values().collect(),
    })
}

/// `GET /v1/reports/resources`: a report made now.
pub async fn report_now(app: &App, p: &Principal, q: &ReportQuery) -> Result<ResourceReport> {
    may_see(app, p, q.vdc_id).await?;
    let (from, to) = match (q.from, q.to, q.period.as_deref()) {
        (Some(f), Some(t), None) => {
            if t <= f {
                return Err(Error::invalid("to", "must be after from"));
            }
            (f, t)
        }
        (None, None, period) => {
            let period = period.unwrap_or("monthly");
            check_period(period)?;
            last_complete(period, meter_now())
        }
        (_, _, Some(_)) => {
            return Err(Error::invalid(
                "period",
                "give either a period or from/to, not both",
            ))
        }
        _ => return Err(Error::invalid("from", "from and to go together")),
    };
    generate(app, q.vdc_id, from, to).await
}

/// A report as CSV: one line per VDC, then one per resource pool.
pub fn report_csv(r: &ResourceReport) -> String {
    let a = |x: &Allocation| {
        format!(
            "{},{}",
            x.allocated.map(|v| v.to_string()).unwrap_or_default(),
            x.used
        )
    };
    let mut out = String::from(
        "vdc_id,name,level,vcpus_allocated,vcpus_used,memory_gib_allocated,memory_gib_used,\
storage_gib_allocated,storage_gib_used,elastic_ips_allocated,elastic_ips_used,instances_allocated,\
instances_used,instances_opened,vcpu_hours,memory_gib_hours,storage_gib_hours,cost_cny\n",
    );
    for row in &r.rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            row.vdc_id,
            super::super::audit::csv_field(&row.name),
            row.level,
            a(&row.vcpus),
            a(&row.memory_gib),
            a(&row.storage_gib),
            a(&row.elastic_ips),
            a(&row.instances),
            row.instances_opened,
            row.vcpu_hours,
            row.memory_gib_hours,
            format_args!("{},{}", row.storage_gib_hours, row.cost),
        ));
    }
    if !r.pools.is_empty() {
        out.push_str("\navailability_zone,hosts,hosts_up,vcpus_capacity,vcpus_allocated,memory_mib_capacity,memory_mib_allocated,disk_gib_capacity,disk_gib_allocated\n");
        for p in &r.pools {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                super::super::audit::csv_field(&p.availability_zone),
                p.hosts,
                p.hosts_up,
                p.vcpus_capacity,
                p.vcpus_allocated,
                p.memory_mib_capacity,
                p.memory_mib_allocated,
                p.disk_gib_capacity,
                p.disk_gib_allocated
            ));
        }
    }
    out
}

// ---------------------------------------------------------------- schedules

pub async fn schedule_create(
    app: &App,
    p: &Principal,
    b: ReportScheduleCreate,
) -> Result<ReportSchedule> {
    crate::validate::name("name", &b.name)?;
    check_period(&b.period)?;
    may_schedule(app, p, b.vdc_id).await?;
    // The first report, of the last complete period, is made on the next meter pass.
    let (start, _) = last_complete(&b.period, meter_now());
    let s = ReportSchedule {
        id: Uuid::new_v4(),
        name: b.name,
        period: b.period,
        vdc_id: b.vdc_id,
        created_by: p.name.clone(),
        last_period_end: start,
        created_at: Utc::now(),
    };
    app.store.report_schedule_insert(&s).await?;
    Ok(s)
}

async fn visible(app: &App, p: &Principal, vdc: Option<Uuid>) -> bool {
    may_see(app, p, vdc).await.is_ok()
}

pub async fn schedule_list(app: &App, p: &Principal) -> Result<Vec<ReportSchedule>> {
    let mut out = Vec::new();
    for s in app.store.report_schedules().await? {
        if visible(app, p, s.vdc_id).await {
            out.push(s);
        }
    }
    Ok(out)
}

pub async fn schedule_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let s = app
        .store
        .report_schedule_get(id)
        .await?
        .ok_or_else(|| Error::not_found("report schedule", id))?;
    if !visible(app, p, s.vdc_id).await {
        return Err(Error::not_found("report schedule", id));
    }
    may_schedule(app, p, s.vdc_id).await?;
    app.store.report_schedule_delete(id).await
}

pub async fn report_list(app: &App, p: &Principal) -> Result<Vec<ReportInfo>> {
    let mut out = Vec::new();
    for r in app.store.report_list().await? {
        if visible(app, p, r.vdc_id).await {
            out.push(r);
        }
    }
    Ok(out)
}

pub async fn report_get(app: &App, p: &Principal, id: Uuid) -> Result<ResourceReport> {
    let (info, content) = app
        .store
        .report_get(id)
        .await?
        .ok_or_else(|| Error::not_found("report", id))?;
    if !visible(app, p, info.vdc_id).await {
        return Err(Error::not_found("report", id));
    }
    serde_json::from_str(&content).map_err(|e| Error::internal(format!("stored report {id}: {e}")))
}

/// Make every scheduled report whose period has ended (and any missed while stopped), and
/// write each as CSV into `<data_dir>/reports`.
pub async fn run_due(app: &App) -> Result<usize> {
    let now = meter_now();
    let mut made = 0;
    for s in app.store.report_schedules().await? {
        let mut start = s.last_period_end;
        // A schedule stopped for years catches up at most a year of reports at once.
        for _ in 0..400 {
            let end = next_period(&s.period, start);
            if end > now {
                break;
            }
            let r = generate(app, s.vdc_id, start, end).await?;
            let info = ReportInfo {
                id: Uuid::new_v4(),
                schedule_id: Some(s.id),
                name: s.name.clone(),
                vdc_id: s.vdc_id,
                period_start: start,
                period_end: end,
                generated_at: r.generated_at,
            };
            let content = serde_json::to_string(&r)
                .map_err(|e| Error::internal(format!("report as JSON: {e}")))?;
            app.store.report_insert(&info, &content).await?;
            let dir = app.config.data_dir.join("reports");
            let file = dir.join(format!(
                "{}-{}-{}.csv",
                s.id,
                s.period,
                start.format("%Y%m%d")
            ));
            if let Err(e) = async {
                tokio::fs::create_dir_all(&dir).await?;
                tokio::fs::write(&file, report_csv(&r)).await
            }
            .await
            {
                tracing::warn!(error = %e, file = %file.display(), "cannot write the report file");
            }
            made += 1;
            start = end;
        }
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn periods_end_where_the_calendar_says() {
        let now = t("2030-05-15T10:00:00Z"); // a Wednesday
        assert_eq!(
            last_complete("daily", now),
            (t("2030-05-14T00:00:00Z"), t("2030-05-15T00:00:00Z"))
        );
        assert_eq!(
            last_complete("weekly", now),
            (t("2030-05-06T00:00:00Z"), t("2030-05-13T00:00:00Z"))
        );
        assert_eq!(
            last_complete("monthly", now),
            (t("2030-04-01T00:00:00Z"), t("2030-05-01T00:00:00Z"))
        );
        assert_eq!(
            last_complete("quarterly", now),
            (t("2030-01-01T00:00:00Z"), t("2030-04-01T00:00:00Z"))
        );
        assert_eq!(
            next_period("quarterly", t("2030-10-01T00:00:00Z")),
            t("2031-01-01T00:00:00Z")
        );
        assert_eq!(
            next_period("monthly", t("2030-12-01T00:00:00Z")),
            t("2031-01-01T00:00:00Z")
        );
    }
}
