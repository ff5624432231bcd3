//! The price list and cost estimates.
//!
//! Prices are per meter and spec (a flavor, a volume type, or '' for every spec without its
//! own price), pay-as-you-go per unit or monthly per unit of rate, each in force over a
//! period. Periods of one meter, spec and billing never overlap, so exactly one price (or
//! none) applies at any time. Records keep the price they were rated with: changing the
//! list changes what is rated after, never what was.

use chrono::Utc;
use stratus_api::{
    format_micro, format_quantity, parse_micro, Billing, Estimate, EstimateLine, EstimateRequest,
    Price, PriceCreate, PriceFilter, PriceUpdate, MICRO,
};
use uuid::Uuid;

use super::meters::{self, Rate};
use crate::app::{require_global, App};
use crate::authz::{Perm, Principal};
use crate::error::{Error, Result};
use crate::store::metering::{amount_of, meter_now, PriceBook};
use crate::store::subscriptions::FEE_METER;

/// Hours in a billing month, for pay-as-you-go estimates (365 × 24 / 12).
pub const MONTH_HOURS: i64 = 730;

pub async fn price_list(app: &App, _p: &Principal, f: PriceFilter) -> Result<Vec<Price>> {
    if let Some(m) = f.meter.as_deref() {
        known_meter(m)?;
    }
    let all = app.store.price_list(f.meter.as_deref()).await?;
    Ok(match f.at {
        Some(at) => all
            .into_iter()
            .filter(|p| p.effective_from <= at && p.effective_to.is_none_or(|t| t > at))
            .collect(),
        None => all,
    })
}

pub async fn price_get(app: &App, _p: &Principal, id: Uuid) -> Result<Price> {
    app.store
        .price_get(id)
        .await?
        .ok_or_else(|| Error::not_found("price", id))
}

fn known_meter(m: &str) -> Result<&'static meters::MeterDef> {
    meters::meter(m).ok_or_else(|| {
        let names: Vec<&str> = meters::METERS.iter().map(|m| m.name).collect();
        Error::invalid(
            "meter",
            &format!("unknown meter {m:?}; the meters are {}", names.join(", ")),
        )
    })
}

/// A spec must name what its meter is priced by.
async fn check_spec(app: &App, m: &meters::MeterDef, spec: &str) -> Result<()> {
    if spec.is_empty() {
        return Ok(());
    }
    match m.spec {
        "flavor" => {
            if !app
                .store
                .flavor_list()
                .await?
                .iter()
                .any(|f| f.name == spec)
            {
                return Err(Error::invalid(
                    "spec",
                    &format!("no flavor named {spec:?} (see `stratus flavor list`)"),
                ));
            }
        }
        "volume type" => {
            if !app
                .store
                .volume_type_list()
                .await?
                .iter()
                .any(|t| t.name == spec)
            {
                return Err(Error::invalid(
                    "spec",
                    &format!("no volume type named {spec:?} (see `stratus volume types`)"),
                ));
            }
        }
        _ => {
            return Err(Error::invalid(
                "spec",
                &format!("meter {} has no specs; leave spec empty", m.name),
            ))
        }
    }
    Ok(())
}

pub async fn price_create(app: &App, p: &Principal, b: PriceCreate) -> Result<Price> {
    require_global(p, Perm::PriceWrite)?;
    let m = known_meter(&b.meter)?;
    if m.name == FEE_METER {
        return Err(Error::invalid(
            "meter",
            "subscription_months is not priced itself: its fee comes from the monthly prices \
             of the meters a subscription covers",
        ));
    }
    if let Some(u) = b.unit.as_deref() {
        if u != m.unit {
            return Err(Error::invalid(
                "unit",
                &format!(
                    "unknown unit {u:?} for meter {}: it is measured in {}",
                    m.name, m.unit
                ),
            ));
        }
    }
    let spec = b.spec.trim().to_string();
    check_spec(app, m, &spec).await?;
    let unit_price = parse_micro(&b.unit_price).map_err(|r| Error::invalid("unit_price", r))?;
    if unit_price > 1_000_000 * MICRO {
        return Err(Error::invalid(
            "unit_price",
            "is more than 1,000,000 CNY per unit",
        ));
    }
    if b.billing == Billing::Monthly && m.unit == "request" {
        return Err(Error::invalid(
            "billing",
            &format!(
                "{} counts requests; only pay-as-you-go prices apply to it",
                m.name
            ),
        ));
    }
    let currency = b.currency.unwrap_or_else(|| "CNY".into());
    if currency != "CNY" {
        return Err(Error::invalid(
            "currency",
            &format!("{currency:?} is not supported; prices are in CNY"),
        ));
    }
    let from = b.effective_from.unwrap_or_else(meter_now);
    if let Some(to) = b.effective_to {
        if to <= from {
            return Err(Error::invalid(
                "effective_to",
                "must be after effective_from",
            ));
        }
    }
    if b.description.chars().count() > 255 {
        return Err(Error::invalid("description", "at most 255 characters"));
    }
    let price = Price {
        id: Uuid::new_v4(),
        meter: m.name.into(),
        spec,
        billing: b.billing,
        unit: m.unit.into(),
        unit_price: format_micro(unit_price, 6),
        currency,
        effective_from: from,
        effective_to: b.effective_to,
        description: b.description,
        created_by: p.name.clone(),
        created_at: Utc::now(),
    };
    app.store.price_insert(&price, unit_price).await?;
    Ok(price)
}

/// End a price's period (or change its description).
pub async fn price_update(app: &App, p: &Principal, id: Uuid, b: PriceUpdate) -> Result<Price> {
    require_global(p, Perm::PriceWrite)?;
    let mut price = price_get(app, p, id).await?;
    if let Some(to) = b.effective_to {
        if to <= price.effective_from {
            return Err(Error::invalid(
                "effective_to",
                "must be after the price's effective_from",
            ));
        }
        price.effective_to = Some(to);
    }
    if let Some(d) = b.description {
        if d.chars().count() > 255 {
            return Err(Error::invalid("description", "at most 255 characters"));
        }
        price.description = d;
    }
    app.store.price_update(&price).await?;
    Ok(price)
}

/// Delete a price no record was rated with (a used one is ended, not deleted).
pub async fn price_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    require_global(p, Perm::PriceWrite)?;
    price_get(app, p, id).await?;
    if app.store.price_used(id).await? {
        return Err(Error::conflict(format!(
            "price {id} has rated usage records; end it with effective_to instead"
        )));
    }
    app.store.price_delete(id).await
}

/// What the resources described would cost, by the prices in force now.
pub async fn estimate(app: &App, _p: &Principal, r: EstimateRequest) -> Result<Estimate> {
    let hours = r.hours.unwrap_or(MONTH_HOURS);
    if !(1..=87_600).contains(&hours) {
        return Err(Error::invalid(
            "hours",
            "must be between 1 and 87600 (ten years)",
        ));
    }
    let mut rates: Vec<Rate> = Vec::new();
    if let Some(name) = r.flavor.as_deref() {
        let count = r.count.unwrap_or(1);
        if !(1..=1000).contains(&count) {
            return Err(Error::invalid("count", "must be between 1 and 1000"));
        }
        let f = app
            .store
            .flavor_list()
            .await?
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| {
                Error::invalid(
                    "flavor",
                    &format!("no flavor named {name:?} (see `stratus flavor list`)"),
                )
            })?;
        let state = serde_json::json!({"flavor": f.name, "vcpus": f.vcpus, "memory_mib": f.memory_mib,
            "root_disk_gib": f.disk_gib, "running": true});
        for mut rate in meters::rates("instance", state.as_object().unwrap_or(&Default::default()))
        {
            rate.per_hour *= count;
            rates.push(rate);
        }
    } else if r.count.is_some() {
        return Err(Error::invalid("count", "needs a flavor"));
    }
    for (i, v) in r.volumes.iter().enumerate() {
        if !(1..=65_536).contains(&v.size_gib) {
            return Err(Error::invalid(
                &format!("volumes[{i}].size_gib"),
                "must be between 1 and 65536",
            ));
        }
        let t = crate::app::volumes::resolve_type(app, v.volume_type.as_deref())
            .await
            .map_err(|_| {
                Error::invalid(
                    &format!("volumes[{i}].volume_type"),
                    &format!(
                        "no volume type {:?} (see `stratus volume types`)",
                        v.volume_type.as_deref().unwrap_or("normal")
                    ),
                )
            })?;
        let state = serde_json::json!({"size_gib": v.size_gib, "volume_type": t.name});
        rates.extend(meters::rates(
            "volume",
            state.as_object().unwrap_or(&Default::default()),
        ));
    }
    if !(0..=1000).contains(&r.elastic_ips) {
        return Err(Error::invalid("elastic_ips", "must be between 0 and 1000"));
    }
    if r.elastic_ips > 0 {
        rates.push(Rate {
            meter: "eip_hours",
            spec: String::new(),
            per_hour: r.elastic_ips * MICRO,
            gap: false,
        });
    }
    if !(0..=1_048_576).contains(&r.object_storage_gib) {
        return Err(Error::invalid(
            "object_storage_gib",
            "must be between 0 and 1048576",
        ));
    }
    if r.object_storage_gib > 0 {
        rates.push(Rate {
            meter: "object_gib_hours",
            spec: String::new(),
            per_hour: r.object_storage_gib * MICRO,
            gap: false,
        });
    }
    let book = PriceBook::new(app.store.price_list(None).await?);
    Ok(price_rates(&book, &merge(rates), hours))
}

/// Rates of the same meter and spec added together.
fn merge(rates: Vec<Rate>) -> Vec<Rate> {
    let mut out: Vec<Rate> = Vec::new();
    for r in rates {
        match out
            .iter_mut()
            .find(|o| o.meter == r.meter && o.spec == r.spec)
        {
            Some(o) => o.per_hour += r.per_hour,
            None => out.push(r),
        }
    }
    out
}

/// Price what accrues at `rates` for `hours`, pay-as-you-go and monthly.
pub fn price_rates(book: &PriceBook, rates: &[Rate], hours: i64) -> Estimate {
    let now = meter_now();
    let mut lines = Vec::new();
    let (mut hourly, mut total, mut monthly) = (0i64, 0i64, Some(0i64));
    let mut unpriced = Vec::new();
    for r in rates {
        let payg = book.find(r.meter, &r.spec, Billing::Payg, now);
        let month = book.find(r.meter, &r.spec, Billing::Monthly, now);
        let per_hour = payg.map(|(_, u)| amount_of(r.per_hour, u)).unwrap_or(0);
        let amount = payg
            .map(|(_, u)| amount_of(r.per_hour.saturating_mul(hours), u))
            .unwrap_or(0);
        let month_cost = month.map(|(_, u)| amount_of(r.per_hour, u));
        if payg.is_none() {
            unpriced.push(if r.spec.is_empty() {
                r.meter.to_string()
            } else {
                format!("{} ({})", r.meter, r.spec)
            });
        }
        hourly += per_hour;
        total += amount;
        monthly = match (monthly, month_cost) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        lines.push(EstimateLine {
            meter: r.meter.into(),
            spec: r.spec.clone(),
            unit: meters::unit_of(r.meter).into(),
            quantity_per_hour: format_quantity(r.per_hour),
            unit_price: payg.map(|(_, u)| format_micro(u, 6)).unwrap_or_default(),
            amount: format_micro(amount, 2),
            monthly: month_cost.map(|c| format_micro(c, 2)).unwrap_or_default(),
        });
    }
    Estimate {
        currency: "CNY".into(),
        hours,
        lines,
        hourly: format_micro(hourly, 4),
        total: format_micro(total, 2),
        monthly_subscription: monthly
            .filter(|_| !rates.is_empty())
            .map(|m| format_micro(m, 2)),
        unpriced,
    }
}
