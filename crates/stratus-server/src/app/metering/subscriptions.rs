//! Monthly subscriptions (包年包月): a resource bought for whole calendar months at the
//! monthly prices in force when it is bought.
//!
//! The fee is the sum, over the meters the resource accrues while in use that have a
//! monthly price, of rate × monthly price; it is charged one `subscription_months` usage
//! record per covered month, in the month it covers, so monthly bills, budgets and reports
//! see it like any other charge. While the subscription runs, the meter prices the hourly
//! records it covers only for what exceeds the subscribed rate (a volume extended after it
//! was bought pays pay-as-you-go for the extra GiB; an instance resized to another flavor
//! pays pay-as-you-go for the new flavor). Cancelling ends it with the current hour and
//! drops the fees of months not begun; deleting the resource does the same.

use chrono::{Months, Utc};
use stratus_api::{
    format_micro, format_quantity, Billing, Subscription, SubscriptionCreate, SubscriptionFilter,
    SubscriptionLine, SubscriptionRenew,
};
use uuid::Uuid;

use super::meters;
use crate::app::{require, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::metering::{amount_of, hour_floor, meter_now, PriceBook};
use crate::store::subscriptions::{SubLine, SubRow};
use crate::store::Conds;

/// The longest a subscription is bought for at once (three years).
pub const MAX_MONTHS: i64 = 36;

pub fn check_months(field: &str, months: i64) -> Result<()> {
    if !(1..=MAX_MONTHS).contains(&months) {
        return Err(Error::invalid(
            field,
            &format!("must be a whole number of months from 1 to {MAX_MONTHS} (12 for a year)"),
        ));
    }
    Ok(())
}

pub fn view(s: &SubRow) -> Subscription {
    let now = meter_now();
    let status = if s.status == "active" && s.ends_at <= now {
        "expired".to_string()
    } else {
        s.status.clone()
    };
    Subscription {
        id: s.id,
        resource_id: s.resource_id,
        resource_type: s.resource_type.clone(),
        project_id: s.project_id,
        vdc_id: s.vdc_id,
        months: s.months,
        starts_at: s.starts_at,
        ends_at: s.ends_at,
        lines: s
            .lines
            .iter()
            .map(|l| SubscriptionLine {
                meter: l.meter.clone(),
                spec: l.spec.clone(),
                unit: meters::unit_of(&l.meter).into(),
                per_hour: format_quantity(l.per_hour),
                price_id: l.price_id,
                monthly_unit_price: format_micro(l.monthly_unit, 6),
                monthly: format_micro(amount_of(l.per_hour, l.monthly_unit), 2),
            })
            .collect(),
        monthly_fee: format_micro(s.monthly_fee, 2),
        total: format_micro(s.monthly_fee.saturating_mul(s.months), 2),
        status,
        request_id: s.request_id,
        created_by: s.created_by.clone(),
        created_at: s.created_at,
    }
}

/// Whether `p` may act on (`perm`) the subscription's or resource's project: 404 when
/// they cannot even see it.
async fn allowed(
    app: &App,
    p: &Principal,
    project: Uuid,
    vdc: Uuid,
    perm: Perm,
    what: &str,
    id: Uuid,
) -> Result<()> {
    let chain = app.store.vdc_chain(vdc).await?;
    let target = Target::Project {
        id: project,
        chain: &chain,
    };
    if !p.can(Perm::BillingRead, &target) && !p.can(Perm::ResourceRead, &target) {
        return Err(Error::not_found(what, id));
    }
    require(p, perm, &target, what, id)
}

/// Buy `months` of a metered resource. `request` is the catalog request that ordered it.
pub async fn subscribe(
    app: &App,
    p: &Principal,
    b: SubscriptionCreate,
    request: Option<Uuid>,
) -> Result<Subscription> {
    check_months("months", b.months)?;
    let mut found = app.store.meter_resource_get(b.resource_id).await?;
    if found.is_none() {
        // Just made: the meter may not have applied its events yet.
        super::tick(app, &mut super::Holes::default()).await?;
        found = app.store.meter_resource_get(b.resource_id).await?;
    }
    let Some(r) = found else {
        return Err(Error::not_found("metered resource", b.resource_id));
    };
    let (project, vdc, org) = (parse(&r.project_id)?, parse(&r.vdc_id)?, parse(&r.org_id)?);
    allowed(
        app,
        p,
        project,
        vdc,
        Perm::ResourceWrite,
        "metered resource",
        b.resource_id,
    )
    .await?;
    let now = meter_now();
    let book = PriceBook::new(app.store.price_list(None).await?);
    let mut lines = Vec::new();
    let mut unpriced = Vec::new();
    for rate in meters::in_use_rates(&r.resource_type, &r.state) {
        match book.find(rate.meter, &rate.spec, Billing::Monthly, now) {
            Some((price, unit)) => lines.push(SubLine {
                meter: rate.meter.into(),
                spec: rate.spec.clone(),
                per_hour: rate.per_hour,
                price_id: price.id,
                monthly_unit: unit,
            }),
            None => unpriced.push(rate.meter),
        }
    }
    if lines.is_empty() {
        return Err(Error::invalid(
            "resource_id",
            &format!(
                "no monthly price is in force for what this {} accrues ({}): it can only be \
                 paid as it goes",
                r.resource_type,
                if unpriced.is_empty() {
                    "nothing".to_string()
                } else {
                    unpriced.join(", ")
                }
            ),
        ));
    }
    let monthly_fee = lines
        .iter()
        .map(|l| amount_of(l.per_hour, l.monthly_unit))
        .fold(0i64, i64::saturating_add);
    let starts_at = hour_floor(now);
    let ends_at = starts_at
        .checked_add_months(Months::new(b.months as u32))
        .ok_or_else(|| Error::invalid("months", "runs past the calendar"))?;
    let zone = r
        .state
        .get("zone")
        .and_then(|z| z.as_str())
        .unwrap_or_default()
        .to_string();
    let s = SubRow {
        id: Uuid::new_v4(),
        resource_id: b.resource_id,
        resource_type: r.resource_type.clone(),
        project_id: project,
        vdc_id: vdc,
        org_id: org,
        months: b.months,
        starts_at,
        ends_at,
        lines,
        monthly_fee,
        status: "active".into(),
        request_id: request,
        created_by: p.name.clone(),
        created_at: Utc::now(),
    };
    app.store
        .subscription_insert(&s, &zone, &app.config.region)
        .await?;
    Ok(view(&s))
}

fn parse(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|e| Error::internal(format!("stored id {id:?}: {e}")))
}

async fn visible(app: &App, p: &Principal, id: Uuid, perm: Perm) -> Result<SubRow> {
    let s = app
        .store
        .subscription_get(id)
        .await?
        .ok_or_else(|| Error::not_found("subscription", id))?;
    allowed(app, p, s.project_id, s.vdc_id, perm, "subscription", id).await?;
    Ok(s)
}

pub async fn get(app: &App, p: &Principal, id: Uuid) -> Result<Subscription> {
    Ok(view(&visible(app, p, id, Perm::BillingRead).await?))
}

pub async fn list(app: &App, p: &Principal, f: SubscriptionFilter) -> Result<Vec<Subscription>> {
    let mut c = Conds::new();
    crate::store::resource_visible(&mut c, &p.visibility(Perm::BillingRead), "");
    if let Some(id) = f.project_id {
        app.project_visible(p, id).await?;
        c.and("project_id = ?", [id.into()]);
    }
    if let Some(id) = f.resource_id {
        c.and("resource_id = ?", [id.into()]);
    }
    if f.active == Some(true) {
        let now = crate::store::time_text(meter_now());
        c.and(
            "status = 'active' AND starts_at <= ? AND ends_at > ?",
            [now.clone().into(), now.into()],
        );
    }
    let rows = app.store.subscription_list(&mut c).await?;
    Ok(rows.iter().map(view).collect())
}

pub async fn renew(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: SubscriptionRenew,
) -> Result<Subscription> {
    check_months("months", b.months)?;
    visible(app, p, id, Perm::ResourceWrite).await?;
    let s = app
        .store
        .subscription_renew(id, b.months, meter_now(), &app.config.region)
        .await?;
    Ok(view(&s))
}

pub async fn cancel(app: &App, p: &Principal, id: Uuid) -> Result<Subscription> {
    visible(app, p, id, Perm::ResourceWrite).await?;
    app.store.subscription_cancel(id, meter_now()).await?;
    get(app, p, id).await
}
