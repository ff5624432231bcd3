//! Handlers for metering and billing: meters, usage records, prices, estimates, bills,
//! budgets.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use stratus_api::*;
use uuid::Uuid;

use super::extract::{Ctx, Json, Path, Query};
use super::{created, Created, Ok};
use crate::app::metering::{bills, meters, prices, reports, subscriptions};
use crate::app::{self, AppRef};
use crate::error::{Error, Result};

fn format_of(f: Option<&str>, allowed: &[&str]) -> Result<String> {
    let f = f.unwrap_or("json");
    if allowed.contains(&f) {
        Ok(f.to_string())
    } else {
        Err(Error::invalid(
            "format",
            &format!("{f:?} is not one of {}", allowed.join(", ")),
        ))
    }
}

/// Everything that can be metered, with its unit.
#[utoipa::path(get, path = "/v1/meters", operation_id = "meter_list", tag = "billing",
    responses((status = 200, body = Vec<Meter>), (status = "default", body = ErrorBody)))]
pub async fn meter_list(_ctx: Ctx) -> Ok<Vec<Meter>> {
    Ok(axum::Json(
        meters::METERS.iter().map(meters::meter_view).collect(),
    ))
}

/// Usage records (话单) of what the caller may see, oldest first; `format=csv` gives the
/// documented CSV.
#[utoipa::path(get, path = "/v1/usage", operation_id = "usage_list", tag = "billing",
    params(UsageFilter),
    responses((status = 200, body = Vec<UsageRecord>), (status = 200, content_type = "text/csv", body = String),
        (status = "default", body = ErrorBody)))]
pub async fn usage_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<UsageFilter>,
) -> Result<Response> {
    let format = format_of(f.format.as_deref(), &["json", "csv"])?;
    let records = bills::usage_list(&app, &ctx.p, &f).await?;
    if format == "csv" {
        let body = app::metering::records_csv(&records);
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    Ok(axum::Json(records).into_response())
}

/// How far metering has got (platform-wide `billing.read`).
#[utoipa::path(get, path = "/v1/usage/status", operation_id = "usage_status", tag = "billing",
    responses((status = 200, body = MeterStatus), (status = "default", body = ErrorBody)))]
pub async fn usage_status(State(app): State<AppRef>, ctx: Ctx) -> Ok<MeterStatus> {
    app::require_global(&ctx.p, crate::authz::Perm::BillingRead)?;
    Ok(axum::Json(app::metering::status(&app).await?))
}

/// The price list (every authenticated user may read it, to estimate).
#[utoipa::path(get, path = "/v1/prices", operation_id = "price_list", tag = "billing",
    params(PriceFilter), responses((status = 200, body = Vec<Price>), (status = "default", body = ErrorBody)))]
pub async fn price_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<PriceFilter>,
) -> Ok<Vec<Price>> {
    Ok(axum::Json(prices::price_list(&app, &ctx.p, f).await?))
}

/// Add a price (`price.write`): its period may not overlap another of the same meter, spec
/// and billing.
#[utoipa::path(post, path = "/v1/prices", operation_id = "price_create", tag = "billing",
    request_body = PriceCreate, responses((status = 201, body = Price), (status = "default", body = ErrorBody)))]
pub async fn price_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<PriceCreate>,
) -> Created<Price> {
    created(prices::price_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/prices/{id}", operation_id = "price_view", tag = "billing",
    params(("id" = Uuid, Path)), responses((status = 200, body = Price), (status = "default", body = ErrorBody)))]
pub async fn price_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Price> {
    Ok(axum::Json(prices::price_get(&app, &ctx.p, id).await?))
}

/// End a price's period (`effective_to`) or change its description.
#[utoipa::path(patch, path = "/v1/prices/{id}", operation_id = "price_update", tag = "billing",
    params(("id" = Uuid, Path)), request_body = PriceUpdate,
    responses((status = 200, body = Price), (status = "default", body = ErrorBody)))]
pub async fn price_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<PriceUpdate>,
) -> Ok<Price> {
    Ok(axum::Json(prices::price_update(&app, &ctx.p, id, b).await?))
}

/// Delete a price nothing was rated with yet.
#[utoipa::path(delete, path = "/v1/prices/{id}", operation_id = "price_delete", tag = "billing",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn price_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    prices::price_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What resources would cost by today's prices: pay-as-you-go over `hours` and monthly.
#[utoipa::path(post, path = "/v1/prices/estimate", operation_id = "price_estimate", tag = "billing",
    request_body = EstimateRequest, responses((status = 200, body = Estimate), (status = "default", body = ErrorBody)))]
pub async fn price_estimate(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<EstimateRequest>,
) -> Ok<Estimate> {
    Ok(axum::Json(prices::estimate(&app, &ctx.p, b).await?))
}

/// A bill for a project, a VDC (rolled up from everything below it), an organization, one
/// resource, or the platform, over a month or any period; `format=csv` or `format=html`
/// (a printable page).
#[utoipa::path(get, path = "/v1/bills", operation_id = "bill_view", tag = "billing",
    params(BillQuery),
    responses((status = 200, body = Bill), (status = 200, content_type = "text/csv", body = String),
        (status = 200, content_type = "text/html", body = String), (status = "default", body = ErrorBody)))]
pub async fn bill_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<BillQuery>,
) -> Result<Response> {
    let format = format_of(q.format.as_deref(), &["json", "csv", "html"])?;
    let b = bills::bill(&app, &ctx.p, &q).await?;
    Ok(match format.as_str() {
        "csv" => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            bills::bill_csv(&b),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            bills::bill_html(&b),
        )
            .into_response(),
        _ => axum::Json(b).into_response(),
    })
}

/// A VDC's monthly budget and what is spent of it this month.
#[utoipa::path(get, path = "/v1/vdcs/{id}/budget", operation_id = "budget_view", tag = "billing",
    params(("id" = Uuid, Path)), responses((status = 200, body = Budget), (status = "default", body = ErrorBody)))]
pub async fn budget_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Budget> {
    Ok(axum::Json(bills::budget_get(&app, &ctx.p, id).await?))
}

/// Set a VDC's monthly budget (`vdc.write`): crossing 80% and 100% raises a billing event.
#[utoipa::path(put, path = "/v1/vdcs/{id}/budget", operation_id = "budget_set", tag = "billing",
    params(("id" = Uuid, Path)), request_body = BudgetSet,
    responses((status = 200, body = Budget), (status = "default", body = ErrorBody)))]
pub async fn budget_set(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<BudgetSet>,
) -> Ok<Budget> {
    Ok(axum::Json(bills::budget_set(&app, &ctx.p, id, b).await?))
}

#[utoipa::path(delete, path = "/v1/vdcs/{id}/budget", operation_id = "budget_delete", tag = "billing",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn budget_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    bills::budget_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Budget thresholds crossed, newest first, for the VDCs the caller may see.
#[utoipa::path(get, path = "/v1/billing-events", operation_id = "billing_event_list", tag = "billing",
    params(BillingEventFilter), responses((status = 200, body = Vec<BillingEvent>), (status = "default", body = ErrorBody)))]
pub async fn billing_event_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<BillingEventFilter>,
) -> Ok<Vec<BillingEvent>> {
    Ok(axum::Json(bills::billing_events(&app, &ctx.p, &f).await?))
}

/// What a create request would cost before it is submitted: the form is checked as for
/// submitting it (same errors), then priced by today's prices for a month (or `hours`).
#[utoipa::path(post, path = "/v1/requests/estimate", operation_id = "request_estimate", tag = "requests",
    params(EstimateHours), request_body = RequestCreate,
    responses((status = 200, body = Estimate), (status = "default", body = ErrorBody)))]
pub async fn request_estimate(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<EstimateHours>,
    Json(b): Json<RequestCreate>,
) -> Ok<Estimate> {
    Ok(axum::Json(
        app::requests::request_estimate(&app, &ctx.p, b, q.hours).await?,
    ))
}

/// Resource totals and usage per VDC (and, for the platform, per resource pool) over the
/// last complete period or from/to; `format=csv`.
#[utoipa::path(get, path = "/v1/reports/resources", operation_id = "report_resources", tag = "billing",
    params(ReportQuery),
    responses((status = 200, body = ResourceReport), (status = 200, content_type = "text/csv", body = String),
        (status = "default", body = ErrorBody)))]
pub async fn report_resources(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ReportQuery>,
) -> Result<Response> {
    let format = format_of(q.format.as_deref(), &["json", "csv"])?;
    let r = reports::report_now(&app, &ctx.p, &q).await?;
    Ok(report_answer(&r, &format))
}

fn report_answer(r: &ResourceReport, format: &str) -> Response {
    if format == "csv" {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            reports::report_csv(r),
        )
            .into_response()
    } else {
        axum::Json(r).into_response()
    }
}

/// Reports made on a schedule, newest first (content: `report_view`).
#[utoipa::path(get, path = "/v1/reports", operation_id = "report_list", tag = "billing",
    responses((status = 200, body = Vec<ReportInfo>), (status = "default", body = ErrorBody)))]
pub async fn report_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<ReportInfo>> {
    Ok(axum::Json(reports::report_list(&app, &ctx.p).await?))
}

/// A report made on a schedule; `format=csv`.
#[utoipa::path(get, path = "/v1/reports/{id}", operation_id = "report_view", tag = "billing",
    params(("id" = Uuid, Path), ReportFormat),
    responses((status = 200, body = ResourceReport), (status = 200, content_type = "text/csv", body = String),
        (status = "default", body = ErrorBody)))]
pub async fn report_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Query(f): Query<ReportFormat>,
) -> Result<Response> {
    let format = format_of(f.format.as_deref(), &["json", "csv"])?;
    let r = reports::report_get(&app, &ctx.p, id).await?;
    Ok(report_answer(&r, &format))
}

#[utoipa::path(get, path = "/v1/report-schedules", operation_id = "report_schedule_list", tag = "billing",
    responses((status = 200, body = Vec<ReportSchedule>), (status = "default", body = ErrorBody)))]
pub async fn report_schedule_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<ReportSchedule>> {
    Ok(axum::Json(reports::schedule_list(&app, &ctx.p).await?))
}

/// Make a report every period (daily, weekly, monthly, quarterly) once it has ended, for a
/// VDC or the platform; the last complete period's comes first.
#[utoipa::path(post, path = "/v1/report-schedules", operation_id = "report_schedule_create", tag = "billing",
    request_body = ReportScheduleCreate,
    responses((status = 201, body = ReportSchedule), (status = "default", body = ErrorBody)))]
pub async fn report_schedule_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<ReportScheduleCreate>,
) -> Created<ReportSchedule> {
    created(reports::schedule_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(delete, path = "/v1/report-schedules/{id}", operation_id = "report_schedule_delete", tag = "billing",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn report_schedule_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    reports::schedule_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Subscriptions (包年包月) visible to the caller, newest first.
#[utoipa::path(get, path = "/v1/subscriptions", operation_id = "subscription_list", tag = "billing",
    params(SubscriptionFilter),
    responses((status = 200, body = Vec<Subscription>), (status = "default", body = ErrorBody)))]
pub async fn subscription_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<SubscriptionFilter>,
) -> Ok<Vec<Subscription>> {
    Ok(axum::Json(subscriptions::list(&app, &ctx.p, f).await?))
}

/// Buy whole calendar months of a metered resource at today's monthly prices: the fee is
/// charged once per covered month; the meters it covers are charged only beyond its rate.
#[utoipa::path(post, path = "/v1/subscriptions", operation_id = "subscription_create", tag = "billing",
    request_body = SubscriptionCreate,
    responses((status = 201, body = Subscription), (status = "default", body = ErrorBody)))]
pub async fn subscription_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<SubscriptionCreate>,
) -> Created<Subscription> {
    created(subscriptions::subscribe(&app, &ctx.p, b, None).await?)
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}", operation_id = "subscription_view", tag = "billing",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Subscription), (status = "default", body = ErrorBody)))]
pub async fn subscription_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Subscription> {
    Ok(axum::Json(subscriptions::get(&app, &ctx.p, id).await?))
}

/// End a subscription with the current hour; fees of months not begun are dropped, the
/// month begun stays charged.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}", operation_id = "subscription_cancel", tag = "billing",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Subscription), (status = "default", body = ErrorBody)))]
pub async fn subscription_cancel(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Subscription> {
    Ok(axum::Json(subscriptions::cancel(&app, &ctx.p, id).await?))
}

/// Add months after a running subscription's end, at the prices it was bought at.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/renew", operation_id = "subscription_renew", tag = "billing",
    params(("id" = Uuid, Path)), request_body = SubscriptionRenew,
    responses((status = 200, body = Subscription), (status = "default", body = ErrorBody)))]
pub async fn subscription_renew(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<SubscriptionRenew>,
) -> Ok<Subscription> {
    Ok(axum::Json(subscriptions::renew(&app, &ctx.p, id, b).await?))
}
