//! Usage records, bills (any scope, any period, rolled up the VDC tree), budgets and their
//! alerts.
//!
//! A department sees the usage and bills of what it may see (`billing.read` on its VDC or
//! project; 404 for anything else); the management unit (platform-wide `billing.read`)
//! sees all, including whole organizations and the platform.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use stratus_api::{
    format_micro, format_quantity, parse_micro, round_to_fen, Bill, BillLine, BillPart, BillQuery,
    BillingEvent, BillingEventFilter, Budget, BudgetSet, UsageFilter, UsageRecord,
};
use uuid::Uuid;

use crate::app::{require, require_global, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::metering::{amount_of, meter_now, Accruals, PriceBook, UsageScope};
use crate::store::Conds;

/// The calendar month (UTC) `YYYY-MM`: its first instant and the next month's.
pub fn month_bounds(m: &str) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let bad = || Error::invalid("month", &format!("{m:?} is not a month like 2026-03"));
    let (y, mo) = m.split_once('-').ok_or_else(bad)?;
    let (y, mo): (i32, u32) = (
        y.parse().map_err(|_| bad())?,
        mo.parse().map_err(|_| bad())?,
    );
    if !(2000..=9998).contains(&y) || !(1..=12).contains(&mo) || m.len() != 7 {
        return Err(bad());
    }
    let start = Utc
        .with_ymd_and_hms(y, mo, 1, 0, 0, 0)
        .single()
        .ok_or_else(bad)?;
    let (ny, nm) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
    let end = Utc
        .with_ymd_and_hms(ny, nm, 1, 0, 0, 0)
        .single()
        .ok_or_else(bad)?;
    Ok((start, end))
}

pub fn month_of(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

/// `from`/`to`, a month, or the current month.
fn period(
    month: Option<&str>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    match (month, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(Error::invalid(
            "month",
            "give either a month or from/to, not both",
        )),
        (Some(m), None, None) => month_bounds(m),
        (None, Some(f), Some(t)) => {
            if t <= f {
                Err(Error::invalid("to", "must be after from"))
            } else if t - f > Duration::days(3700) {
                Err(Error::invalid("to", "a period is at most ten years"))
            } else {
                Ok((f, t))
            }
        }
        (None, Some(_), None) => Err(Error::invalid("to", "is needed with from")),
        (None, None, Some(_)) => Err(Error::invalid("from", "is needed with to")),
        (None, None, None) => month_bounds(&month_of(meter_now())),
    }
}

/// What a caller asked to see, checked: the scope, its kind, name, and VDC chain.
struct Scoped {
    scope: UsageScope,
    kind: &'static str,
    id: Option<Uuid>,
    name: String,
    /// For org and VDC scopes: the VDC the roll-up is below (None = the organization's
    /// top-level VDCs).
    below: Option<Option<Uuid>>,
}

async fn scoped(
    app: &App,
    p: &Principal,
    project: Option<Uuid>,
    vdc: Option<Uuid>,
    org: Option<Uuid>,
    resource: Option<Uuid>,
) -> Result<Scoped> {
    let given = [
        project.is_some(),
        vdc.is_some(),
        org.is_some(),
        resource.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given > 1 {
        return Err(Error::invalid(
            "project_id",
            "give at most one of project_id, vdc_id, org_id and resource_id",
        ));
    }
    let mut s = UsageScope::default();
    if let Some(id) = resource {
        let Some((proj, vdc)) = app.store.usage_owner(id).await? else {
            return Err(Error::not_found("metered resource", id));
        };
        let chain = app.store.vdc_chain(vdc).await?;
        if !p.can(
            Perm::BillingRead,
            &Target::Project {
                id: proj,
                chain: &chain,
            },
        ) {
            return Err(Error::not_found("metered resource", id));
        }
        s.resource_id = Some(id);
        return Ok(Scoped {
            scope: s,
            kind: "resource",
            id: Some(id),
            name: id.to_string(),
            below: None,
        });
    }
    if let Some(id) = project {
        let (proj, chain) = app.project_visible(p, id).await?;
        require(
            p,
            Perm::BillingRead,
            &Target::Project { id, chain: &chain },
            "project",
            id,
        )?;
        s.project_id = Some(id);
        return Ok(Scoped {
            scope: s,
            kind: "project",
            id: Some(id),
            name: proj.name,
            below: None,
        });
    }
    if let Some(id) = vdc {
        let (v, chain) = app.vdc_visible(p, id).await?;
        require(
            p,
            Perm::BillingRead,
            &Target::Vdc { chain: &chain },
            "VDC",
            id,
        )?;
        s.vdc_id = Some(id);
        return Ok(Scoped {
            scope: s,
            kind: "vdc",
            id: Some(id),
            name: v.name,
            below: Some(Some(id)),
        });
    }
    if let Some(id) = org {
        let o = app.store.org_get(id).await?;
        let seen = p.visibility(Perm::OrgRead);
        let Some(o) = o.filter(|_| seen.all || seen.orgs.contains(&id)) else {
            return Err(Error::not_found("organization", id));
        };
        require_global(p, Perm::BillingRead)?;
        s.org_id = Some(id);
        return Ok(Scoped {
            scope: s,
            kind: "org",
            id: Some(id),
            name: o.name,
            below: Some(None),
        });
    }
    require_global(p, Perm::BillingRead)?;
    Ok(Scoped {
        scope: s,
        kind: "platform",
        id: None,
        name: "platform".into(),
        below: None,
    })
}

// ---------------------------------------------------------------- usage records

pub async fn usage_list(app: &App, p: &Principal, f: &UsageFilter) -> Result<Vec<UsageRecord>> {
    let limit = f.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 10000"));
    }
    if let Some(m) = f.meter.as_deref() {
        if super::meters::meter(m).is_none() {
            return Err(Error::invalid("meter", &format!("unknown meter {m:?}")));
        }
    }
    let mut c = Conds::new();
    match (f.project_id, f.vdc_id, f.resource_id) {
        (None, None, None) => {
            crate::store::resource_visible(&mut c, &p.visibility(Perm::BillingRead), "")
        }
        (project, vdc, resource) => {
            let s = scoped(app, p, project, vdc, None, resource).await?;
            if let Some(id) = s.scope.project_id {
                c.and("project_id = ?", [id.into()]);
            }
            if let Some(id) = s.scope.vdc_id {
                c.and(
                    "vdc_id IN (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = ?)",
                    [id.into()],
                );
            }
            if let Some(id) = s.scope.resource_id {
                c.and("resource_id = ?", [id.into()]);
            }
        }
    }
    if let Some(m) = f.meter.as_deref() {
        c.and("meter = ?", [m.into()]);
    }
    if let Some(t) = f.from {
        c.and(
            "period_start >= ?",
            [crate::store::time_text(super::hour_of(t)).into()],
        );
    }
    if let Some(t) = f.to {
        c.and("period_start < ?", [crate::store::time_text(t).into()]);
    }
    app.store
        .usage_list(&mut c, f.after.unwrap_or(0), limit)
        .await
}

// ---------------------------------------------------------------- bills

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LineKey {
    project_id: String,
    vdc_id: String,
    resource_type: String,
    resource_id: String,
    meter: String,
    spec: String,
    unit_price: i64,
    subscription_id: Option<String>,
}

pub async fn bill(app: &App, p: &Principal, q: &BillQuery) -> Result<Bill> {
    let (from, to) = period(q.month.as_deref(), q.from, q.to)?;
    let s = scoped(app, p, q.project_id, q.vdc_id, q.org_id, q.resource_id).await?;
    let now = meter_now();
    let book = PriceBook::new(app.store.price_list(None).await?);
    let mut lines: BTreeMap<LineKey, (i64, i64)> = BTreeMap::new();
    let mut add = |k: LineKey, quantity: i64, amount: i64| {
        let e = lines.entry(k).or_insert((0, 0));
        e.0 += quantity;
        e.1 += amount;
    };
    let price_now = |meter: &str, spec: &str, hour: DateTime<Utc>| {
        book.find(meter, spec, stratus_api::Billing::Payg, hour)
            .map(|(_, u)| u)
            .unwrap_or(0)
    };
    // Hours not closed yet are priced as they will be: by the list at their start, less
    // what a subscription covers.
    let subs = app.store.subscriptions_between(from, to).await?;
    let open_hour = |resource: &str, meter: &str, spec: &str, hour, quantity: i64| {
        let unit = price_now(meter, spec, hour);
        let covered = subs.iter().find_map(|s| {
            (s.covers(hour) && s.resource_id.to_string() == resource)
                .then(|| s.line(meter, spec).map(|l| (s.id.to_string(), l.per_hour)))
                .flatten()
        });
        match covered {
            Some((sub, per_hour)) => (
                unit,
                amount_of((quantity - per_hour).max(0), unit),
                Some(sub),
            ),
            None => (unit, amount_of(quantity, unit), None),
        }
    };
    for u in app.store.usage_sums(&s.scope, from, to).await? {
        // An open hour's record is one hour (rated records are the closed ones).
        let (unit, amount, subscription_id) = if u.rated {
            (u.unit_price, u.amount, u.subscription_id)
        } else {
            open_hour(&u.resource_id, &u.meter, &u.spec, u.first_hour, u.quantity)
        };
        add(
            LineKey {
                project_id: u.project_id,
                vdc_id: u.vdc_id,
                resource_type: u.resource_type,
                resource_id: u.resource_id,
                meter: u.meter,
                spec: u.spec,
                unit_price: unit,
                subscription_id,
            },
            u.quantity,
            amount,
        );
    }
    // What is accruing right now, up to the meter's clock.
    let live_to = now.min(to);
    if live_to > from {
        let mut acc = Accruals::default();
        for r in app.store.meter_resources_in(&s.scope).await? {
            acc.accrue(&r, r.since.max(from), live_to);
        }
        for u in acc.rows().filter(|u| !u.gap) {
            let (unit, amount, subscription_id) =
                open_hour(u.resource_id, u.meter, u.spec, u.hour, u.quantity);
            add(
                LineKey {
                    project_id: u.project_id.into(),
                    vdc_id: u.vdc_id.into(),
                    resource_type: u.resource_type.into(),
                    resource_id: u.resource_id.into(),
                    meter: u.meter.into(),
                    spec: u.spec.into(),
                    unit_price: unit,
                    subscription_id,
                },
                u.quantity,
                amount,
            );
        }
    }
    let closed = app.store.meter_cursor(now).await?.closed_through;
    let mut total = 0i64;
    let mut per_project: BTreeMap<String, i64> = BTreeMap::new();
    let mut per_vdc: BTreeMap<String, i64> = BTreeMap::new();
    let mut out = Vec::new();
    for (k, (quantity, amount)) in lines {
        if quantity == 0 {
            continue;
        }
        total += amount;
        *per_project.entry(k.project_id.clone()).or_default() += amount;
        *per_vdc.entry(k.vdc_id.clone()).or_default() += amount;
        out.push(BillLine {
            project_id: parse_id(&k.project_id),
            vdc_id: parse_id(&k.vdc_id),
            resource_type: k.resource_type,
            resource_id: parse_id(&k.resource_id),
            unit: super::meters::unit_of(&k.meter).into(),
            meter: k.meter,
            spec: k.spec,
            quantity: format_quantity(quantity),
            unit_price: format_micro(k.unit_price, 6),
            amount: format_micro(amount, 2),
            subscription_id: k.subscription_id.as_deref().map(parse_id),
        });
    }
    let mut projects = Vec::new();
    for (id, amount) in per_project {
        let id = parse_id(&id);
        let name = app
            .store
            .project_get(id)
            .await?
            .map(|p| p.name)
            .unwrap_or_default();
        projects.push(BillPart {
            id,
            name,
            total: format_micro(amount, 2),
        });
    }
    let vdcs = match s.below {
        Some(below) => roll_up(app, below, &per_vdc).await?,
        None => vec![],
    };
    Ok(Bill {
        scope: s.kind.into(),
        scope_id: s.id,
        scope_name: s.name,
        period_start: from,
        period_end: to,
        currency: "CNY".into(),
        total: format_micro(round_to_fen(total), 2),
        is_final: to <= closed,
        as_of: now.min(to),
        projects,
        vdcs,
        lines: out,
    })
}

fn parse_id(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_default()
}

/// Totals per VDC directly below `below` (None: the organization's top-level VDCs), each
/// with everything under it.
async fn roll_up(
    app: &App,
    below: Option<Uuid>,
    per_vdc: &BTreeMap<String, i64>,
) -> Result<Vec<BillPart>> {
    let mut totals: HashMap<Uuid, i64> = HashMap::new();
    for (vdc, amount) in per_vdc {
        // The chain runs from the VDC up to its top-level VDC.
        let chain = app.store.vdc_chain(parse_id(vdc)).await?;
        let child = match below {
            None => chain.last().copied(),
            Some(b) => chain
                .iter()
                .position(|v| *v == b)
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| chain.get(i).copied()),
        };
        if let Some(c) = child {
            *totals.entry(c).or_default() += amount;
        }
    }
    let mut out = Vec::new();
    for (id, amount) in totals {
        let name = app
            .store
            .vdc_get(id)
            .await?
            .map(|v| v.name)
            .unwrap_or_default();
        out.push(BillPart {
            id,
            name,
            total: format_micro(amount, 2),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// A bill as CSV: its line items, then the total.
pub fn bill_csv(b: &Bill) -> String {
    use super::super::audit::csv_field;
    let mut out = String::from(
        "project_id,vdc_id,resource_type,resource_id,meter,spec,unit,quantity,unit_price,amount,currency\n",
    );
    for l in &b.lines {
        let f = [
            l.project_id.to_string(),
            l.vdc_id.to_string(),
            l.resource_type.clone(),
            l.resource_id.to_string(),
            l.meter.clone(),
            l.spec.clone(),
            l.unit.clone(),
            l.quantity.clone(),
            l.unit_price.clone(),
            l.amount.clone(),
            b.currency.clone(),
        ];
        let f: Vec<String> = f.iter().map(|s| csv_field(s)).collect();
        out.push_str(&f.join(","));
        out.push('\n');
    }
    out.push_str(&format!("total,,,,,,,,,{},{}\n", b.total, b.currency));
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A bill as a page to print (one self-contained HTML document).
pub fn bill_html(b: &Bill) -> String {
    let mut rows = String::new();
    for l in &b.lines {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>\n",
            esc(&l.resource_type),
            l.resource_id,
            esc(&l.meter),
            esc(&l.spec),
            esc(&l.quantity),
            esc(&l.unit),
            esc(&l.unit_price),
            esc(&l.amount)
        ));
    }
    let mut parts = String::new();
    for (title, list) in [("项目 Projects", &b.projects), ("VDC", &b.vdcs)] {
        if list.is_empty() {
            continue;
        }
        parts.push_str(&format!("<h2>{title}</h2><table><tr><th>名称 Name</th><th>ID</th><th>金额 Amount (CNY)</th></tr>"));
        for p in list.iter() {
            parts.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td class=n>{}</td></tr>",
                esc(&p.name),
                p.id,
                esc(&p.total)
            ));
        }
        parts.push_str("</table>");
    }
    format!(
        "<!doctype html><html lang=zh-CN><head><meta charset=utf-8><title>账单 Bill — {name}</title>\
<style>body{{font-family:sans-serif;margin:2em;color:#111}}table{{border-collapse:collapse;width:100%;margin-bottom:1.5em}}\
th,td{{border:1px solid #999;padding:4px 6px;font-size:12px}}th{{background:#eee}}.n{{text-align:right}}\
@media print{{body{{margin:0}}}}</style></head><body>\
<h1>账单 Bill: {name}</h1><p>{kind} {id} · {from} — {to} · {state}</p>\
<p><strong>合计 Total: {total} {cur}</strong></p>{parts}\
<h2>明细 Line items</h2><table><tr><th>类型 Type</th><th>资源 Resource</th><th>计量项 Meter</th><th>规格 Spec</th>\
<th>用量 Quantity</th><th>单位 Unit</th><th>单价 Unit price</th><th>金额 Amount</th></tr>\n{rows}</table></body></html>\n",
        name = esc(&b.scope_name),
        kind = b.scope,
        id = b.scope_id.map(|i| i.to_string()).unwrap_or_default(),
        from = crate::store::time_text(b.period_start),
        to = crate::store::time_text(b.period_end),
        state = if b.is_final { "final 已出账" } else { "provisional 未出账 (still growing)" },
        total = esc(&b.total),
        cur = b.currency,
    )
}

// ---------------------------------------------------------------- budgets

async fn budget_view(app: &App, b: Budget) -> Result<Budget> {
    let now = meter_now();
    let (start, _) = month_bounds(&month_of(now))?;
    let spent = app
        .store
        .usage_spent(b.vdc_id, start, now + Duration::hours(1))
        .await?;
    let limit = parse_micro(&b.monthly_limit).unwrap_or(0);
    Ok(Budget {
        spent: format_micro(spent, 2),
        percent: if limit > 0 {
            (spent as f64 * 10_000.0 / limit as f64).round() / 100.0
        } else {
            0.0
        },
        ..b
    })
}

pub async fn budget_get(app: &App, p: &Principal, vdc: Uuid) -> Result<Budget> {
    let (_, chain) = app.vdc_visible(p, vdc).await?;
    require(
        p,
        Perm::BillingRead,
        &Target::Vdc { chain: &chain },
        "VDC",
        vdc,
    )?;
    let (b, _, _) = app
        .store
        .budget_get(vdc)
        .await?
        .ok_or_else(|| Error::not_found("budget of VDC", vdc))?;
    budget_view(app, b).await
}

pub async fn budget_set(app: &App, p: &Principal, vdc: Uuid, b: BudgetSet) -> Result<Budget> {
    let (_, chain) = app.vdc_visible(p, vdc).await?;
    require(
        p,
        Perm::VdcWrite,
        &Target::Vdc { chain: &chain },
        "VDC",
        vdc,
    )?;
    let limit = parse_micro(&b.monthly_limit).map_err(|r| Error::invalid("monthly_limit", r))?;
    if limit == 0 {
        return Err(Error::invalid("monthly_limit", "must be more than 0"));
    }
    app.store.budget_set(vdc, limit, &p.name).await?;
    budget_get(app, p, vdc).await
}

pub async fn budget_delete(app: &App, p: &Principal, vdc: Uuid) -> Result<()> {
    let (_, chain) = app.vdc_visible(p, vdc).await?;
    require(
        p,
        Perm::VdcWrite,
        &Target::Vdc { chain: &chain },
        "VDC",
        vdc,
    )?;
    if !app.store.budget_delete(vdc).await? {
        return Err(Error::not_found("budget of VDC", vdc));
    }
    Ok(())
}

pub async fn billing_events(
    app: &App,
    p: &Principal,
    f: &BillingEventFilter,
) -> Result<Vec<BillingEvent>> {
    let mut c = Conds::new();
    match f.vdc_id {
        Some(v) => {
            let (_, chain) = app.vdc_visible(p, v).await?;
            require(
                p,
                Perm::BillingRead,
                &Target::Vdc { chain: &chain },
                "VDC",
                v,
            )?;
            c.and("vdc_id = ?", [v.into()]);
        }
        None => crate::store::vdc_visible(&mut c, "vdc_id", &p.visibility(Perm::BillingRead)),
    }
    app.store.billing_events(&c).await
}

/// After hours close: raise each budget's 80% and 100% thresholds once a month.
pub async fn budgets_check(app: &App, closed_through: DateTime<Utc>) -> Result<()> {
    let month = month_of(closed_through - Duration::microseconds(1));
    let (start, _) = month_bounds(&month)?;
    for (b, alerted_month, alerted_level) in app.store.budget_all().await? {
        let limit = parse_micro(&b.monthly_limit).unwrap_or(0);
        if limit <= 0 {
            continue;
        }
        let spent = app
            .store
            .usage_spent(b.vdc_id, start, closed_through)
            .await?;
        let level = if spent >= limit {
            100
        } else if spent as i128 * 100 >= limit as i128 * 80 {
            80
        } else {
            0
        };
        let before = if alerted_month == month {
            alerted_level
        } else {
            0
        };
        if level <= before {
            continue;
        }
        let e = BillingEvent {
            id: Uuid::new_v4(),
            at: meter_now(),
            vdc_id: b.vdc_id,
            kind: format!("budget_{level}"),
            month: month.clone(),
            spent: format_micro(spent, 2),
            monthly_limit: b.monthly_limit.clone(),
            message: format!(
                "VDC {} has spent {} of its {} CNY budget for {month} ({}%)",
                b.vdc_id,
                format_micro(spent, 2),
                b.monthly_limit,
                (spent as i128 * 100 / limit as i128)
            ),
        };
        tracing::warn!(vdc = %b.vdc_id, level, "{}", e.message);
        app.store.budget_alert(&e, level, limit).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_bounded_and_checked() {
        let (a, b) = month_bounds("2026-12").unwrap();
        assert_eq!(crate::store::time_text(a), "2026-12-01T00:00:00.000000Z");
        assert_eq!(crate::store::time_text(b), "2027-01-01T00:00:00.000000Z");
        for bad in ["2026-13", "2026-1", "26-01", "x", "2026-00"] {
            let e = month_bounds(bad).unwrap_err().to_string();
            assert!(e.contains("month"), "{bad}: {e}");
        }
    }
}
