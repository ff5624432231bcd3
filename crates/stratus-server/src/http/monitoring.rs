//! Handlers for monitoring: metric queries.

use axum::extract::State;
use chrono::Utc;
use stratus_api::*;

use axum::http::StatusCode;
use uuid::Uuid;

use super::extract::{Ctx, Json, Path, Query};
use super::{created, Created, Ok};
use crate::app::monitoring::{self, alerts, notify, tickets};
use crate::app::AppRef;

/// Prometheus's rendering of a sample value.
fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn metric(l: &stratus_tsdb::Labels) -> std::collections::BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A PromQL range query over the metrics the caller may see (other tenants' series are
/// not there for them).
#[utoipa::path(get, path = "/v1/metrics/query_range", operation_id = "metrics_query_range", tag = "monitoring",
    params(MetricsRangeQuery),
    responses((status = 200, body = MetricsResult), (status = "default", body = ErrorBody)))]
pub async fn metrics_query_range(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<MetricsRangeQuery>,
) -> Ok<MetricsResult> {
    let end = match q.end.as_deref() {
        Some(s) => monitoring::parse_time("end", s)?,
        None => Utc::now().timestamp_millis(),
    };
    let start = match q.start.as_deref() {
        Some(s) => monitoring::parse_time("start", s)?,
        None => end - 3_600_000,
    };
    let step = match q.step.as_deref() {
        Some(s) => monitoring::parse_step(s)?,
        None => 60_000,
    };
    let series = monitoring::query_range(&app, &ctx.p, &q.query, start, end, step).await?;
    Ok(axum::Json(MetricsResult {
        result_type: "matrix".into(),
        result: series
            .iter()
            .map(|s| MetricSeries {
                metric: metric(&s.labels),
                values: s
                    .samples
                    .iter()
                    .map(|(t, v)| (*t as f64 / 1000.0, value_text(*v)))
                    .collect(),
                value: None,
            })
            .collect(),
    }))
}

/// A PromQL query at one time (default now).
#[utoipa::path(get, path = "/v1/metrics/query", operation_id = "metrics_query", tag = "monitoring",
    params(MetricsInstantQuery),
    responses((status = 200, body = MetricsResult), (status = "default", body = ErrorBody)))]
pub async fn metrics_query(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<MetricsInstantQuery>,
) -> Ok<MetricsResult> {
    let t = match q.time.as_deref() {
        Some(s) => monitoring::parse_time("time", s)?,
        None => Utc::now().timestamp_millis(),
    };
    let series = monitoring::query_range(&app, &ctx.p, &q.query, t, t, 1).await?;
    Ok(axum::Json(MetricsResult {
        result_type: "vector".into(),
        result: series
            .iter()
            .filter_map(|s| {
                s.samples.last().map(|(t, v)| MetricSeries {
                    metric: metric(&s.labels),
                    values: vec![],
                    value: Some((*t as f64 / 1000.0, value_text(*v))),
                })
            })
            .collect(),
    }))
}

/// Push custom (business) metrics for a project; they are queried like any other series,
/// by those who can see the project.
#[utoipa::path(post, path = "/v1/metrics/push", operation_id = "metrics_push", tag = "monitoring",
    request_body = MetricsPush,
    responses((status = 200, body = MetricsPushed), (status = "default", body = ErrorBody)))]
pub async fn metrics_push(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<MetricsPush>,
) -> Ok<MetricsPushed> {
    Ok(axum::Json(monitoring::push(&app, &ctx.p, b).await?))
}

// ---------------------------------------------------------------- alert rules

/// Ready-made rules for the common cases (CPU, memory, disk of guests and hosts).
#[utoipa::path(get, path = "/v1/alert-rule-templates", operation_id = "alert_rule_templates", tag = "alerts",
    responses((status = 200, body = Vec<AlertRuleTemplate>), (status = "default", body = ErrorBody)))]
pub async fn alert_rule_templates(_ctx: Ctx) -> Ok<Vec<AlertRuleTemplate>> {
    Ok(axum::Json(alerts::templates()))
}

/// Rules the caller can see: platform rules for platform-wide readers, and those of the
/// projects they can see.
#[utoipa::path(get, path = "/v1/alert-rules", operation_id = "alert_rule_list", tag = "alerts",
    responses((status = 200, body = Vec<AlertRule>), (status = "default", body = ErrorBody)))]
pub async fn alert_rule_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<AlertRule>> {
    Ok(axum::Json(alerts::rule_list(&app, &ctx.p).await?))
}

/// A rule: the expression is parsed and its metrics must exist.
#[utoipa::path(post, path = "/v1/alert-rules", operation_id = "alert_rule_create", tag = "alerts",
    request_body = AlertRuleCreate,
    responses((status = 201, body = AlertRule), (status = "default", body = ErrorBody)))]
pub async fn alert_rule_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<AlertRuleCreate>,
) -> Created<AlertRule> {
    created(alerts::rule_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/alert-rules/{id}", operation_id = "alert_rule_view", tag = "alerts",
    params(("id" = Uuid, Path)), responses((status = 200, body = AlertRule), (status = "default", body = ErrorBody)))]
pub async fn alert_rule_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<AlertRule> {
    Ok(axum::Json(alerts::rule_get(&app, &ctx.p, id).await?))
}

#[utoipa::path(patch, path = "/v1/alert-rules/{id}", operation_id = "alert_rule_update", tag = "alerts",
    params(("id" = Uuid, Path)), request_body = AlertRuleUpdate,
    responses((status = 200, body = AlertRule), (status = "default", body = ErrorBody)))]
pub async fn alert_rule_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<AlertRuleUpdate>,
) -> Ok<AlertRule> {
    Ok(axum::Json(alerts::rule_update(&app, &ctx.p, id, b).await?))
}

/// Delete a rule; its firing alerts resolve.
#[utoipa::path(delete, path = "/v1/alert-rules/{id}", operation_id = "alert_rule_delete", tag = "alerts",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn alert_rule_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> crate::error::Result<StatusCode> {
    alerts::rule_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- alert center

/// The alert center: alerts of what the caller can see, newest first, filtered.
#[utoipa::path(get, path = "/v1/alerts", operation_id = "alert_list", tag = "alerts",
    params(ListParams, AlertFilter),
    responses((status = 200, body = Page<Alert>), (status = "default", body = ErrorBody)))]
pub async fn alert_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<AlertFilter>,
) -> Ok<Page<Alert>> {
    Ok(axum::Json(alerts::alert_list(&app, &ctx.p, q, f).await?))
}

/// Post an alert from another system; repeats of a firing one are grouped into it.
#[utoipa::path(post, path = "/v1/alerts", operation_id = "alert_post", tag = "alerts",
    request_body = AlertPost,
    responses((status = 200, body = Alert), (status = "default", body = ErrorBody)))]
pub async fn alert_post(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<AlertPost>,
) -> Ok<Alert> {
    Ok(axum::Json(alerts::alert_post(&app, &ctx.p, b).await?))
}

/// Firing alerts counted by severity, source, name, VDC, project or host.
#[utoipa::path(get, path = "/v1/alert-groups", operation_id = "alert_groups", tag = "alerts",
    params(AlertGroupBy),
    responses((status = 200, body = Vec<AlertGroup>), (status = "default", body = ErrorBody)))]
pub async fn alert_groups(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(by): Query<AlertGroupBy>,
) -> Ok<Vec<AlertGroup>> {
    Ok(axum::Json(alerts::alert_groups(&app, &ctx.p, by).await?))
}

#[utoipa::path(get, path = "/v1/alerts/{id}", operation_id = "alert_view", tag = "alerts",
    params(("id" = Uuid, Path)), responses((status = 200, body = Alert), (status = "default", body = ErrorBody)))]
pub async fn alert_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Alert> {
    Ok(axum::Json(alerts::alert_get(&app, &ctx.p, id).await?))
}

/// Acknowledge (claim) an alert.
#[utoipa::path(post, path = "/v1/alerts/{id}/ack", operation_id = "alert_ack", tag = "alerts",
    params(("id" = Uuid, Path)), request_body = AlertAck,
    responses((status = 200, body = Alert), (status = "default", body = ErrorBody)))]
pub async fn alert_ack(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<AlertAck>,
) -> Ok<Alert> {
    Ok(axum::Json(alerts::alert_ack(&app, &ctx.p, id, b).await?))
}

/// What was sent about an alert, to which channel, and how it went.
#[utoipa::path(get, path = "/v1/alerts/{id}/notifications", operation_id = "alert_notifications", tag = "alerts",
    params(("id" = Uuid, Path)), responses((status = 200, body = Vec<Notification>), (status = "default", body = ErrorBody)))]
pub async fn alert_notifications(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Vec<Notification>> {
    Ok(axum::Json(
        alerts::alert_notifications(&app, &ctx.p, id).await?,
    ))
}

// ---------------------------------------------------------------- silences

#[utoipa::path(get, path = "/v1/silences", operation_id = "silence_list", tag = "alerts",
    responses((status = 200, body = Vec<Silence>), (status = "default", body = ErrorBody)))]
pub async fn silence_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<Silence>> {
    Ok(axum::Json(alerts::silence_list(&app, &ctx.p).await?))
}

/// A maintenance window: matching alerts are kept but told to no one until it ends.
#[utoipa::path(post, path = "/v1/silences", operation_id = "silence_create", tag = "alerts",
    request_body = SilenceCreate,
    responses((status = 201, body = Silence), (status = "default", body = ErrorBody)))]
pub async fn silence_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<SilenceCreate>,
) -> Created<Silence> {
    created(alerts::silence_create(&app, &ctx.p, b).await?)
}

/// End a silence now (it stays listed).
#[utoipa::path(delete, path = "/v1/silences/{id}", operation_id = "silence_end", tag = "alerts",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn silence_end(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> crate::error::Result<StatusCode> {
    alerts::silence_end(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- channels

#[utoipa::path(get, path = "/v1/notify-channels", operation_id = "channel_list", tag = "alerts",
    responses((status = 200, body = Vec<NotifyChannel>), (status = "default", body = ErrorBody)))]
pub async fn channel_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<NotifyChannel>> {
    Ok(axum::Json(notify::channel_list(&app, &ctx.p).await?))
}

/// A channel: a platform one (`alert.write`) or a VDC's (`vdc.write`; its alerts and below).
#[utoipa::path(post, path = "/v1/notify-channels", operation_id = "channel_create", tag = "alerts",
    request_body = NotifyChannelCreate,
    responses((status = 201, body = NotifyChannel), (status = "default", body = ErrorBody)))]
pub async fn channel_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<NotifyChannelCreate>,
) -> Created<NotifyChannel> {
    created(notify::channel_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/notify-channels/{id}", operation_id = "channel_view", tag = "alerts",
    params(("id" = Uuid, Path)), responses((status = 200, body = NotifyChannel), (status = "default", body = ErrorBody)))]
pub async fn channel_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<NotifyChannel> {
    Ok(axum::Json(notify::channel_get(&app, &ctx.p, id).await?))
}

#[utoipa::path(delete, path = "/v1/notify-channels/{id}", operation_id = "channel_delete", tag = "alerts",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn channel_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> crate::error::Result<StatusCode> {
    notify::channel_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A channel's recent deliveries, newest first.
#[utoipa::path(get, path = "/v1/notify-channels/{id}/deliveries", operation_id = "channel_deliveries", tag = "alerts",
    params(("id" = Uuid, Path)), responses((status = 200, body = Vec<Notification>), (status = "default", body = ErrorBody)))]
pub async fn channel_deliveries(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Vec<Notification>> {
    Ok(axum::Json(
        notify::channel_deliveries(&app, &ctx.p, id).await?,
    ))
}

// ---------------------------------------------------------------- tickets

/// Tickets of what the caller can see, newest first.
#[utoipa::path(get, path = "/v1/tickets", operation_id = "ticket_list", tag = "alerts",
    params(ListParams, TicketFilter),
    responses((status = 200, body = Page<Ticket>), (status = "default", body = ErrorBody)))]
pub async fn ticket_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<TicketFilter>,
) -> Ok<Page<Ticket>> {
    Ok(axum::Json(tickets::list(&app, &ctx.p, q, f).await?))
}

#[utoipa::path(post, path = "/v1/tickets", operation_id = "ticket_create", tag = "alerts",
    request_body = TicketCreate,
    responses((status = 201, body = Ticket), (status = "default", body = ErrorBody)))]
pub async fn ticket_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<TicketCreate>,
) -> Created<Ticket> {
    created(tickets::create(&app, &ctx.p, b).await?)
}

/// Make a ticket of an alert (one per alert).
#[utoipa::path(post, path = "/v1/alerts/{id}/ticket", operation_id = "alert_ticket", tag = "alerts",
    params(("id" = Uuid, Path)), request_body = AlertTicket,
    responses((status = 201, body = Ticket), (status = "default", body = ErrorBody)))]
pub async fn alert_ticket(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<AlertTicket>,
) -> Created<Ticket> {
    created(tickets::from_alert(&app, &ctx.p, id, b).await?)
}

/// A ticket with its history.
#[utoipa::path(get, path = "/v1/tickets/{id}", operation_id = "ticket_view", tag = "alerts",
    params(("id" = Uuid, Path)), responses((status = 200, body = Ticket), (status = "default", body = ErrorBody)))]
pub async fn ticket_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Ticket> {
    Ok(axum::Json(tickets::get(&app, &ctx.p, id).await?))
}

/// Assign or reprioritize a ticket.
#[utoipa::path(patch, path = "/v1/tickets/{id}", operation_id = "ticket_update", tag = "alerts",
    params(("id" = Uuid, Path)), request_body = TicketUpdate,
    responses((status = 200, body = Ticket), (status = "default", body = ErrorBody)))]
pub async fn ticket_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<TicketUpdate>,
) -> Ok<Ticket> {
    Ok(axum::Json(tickets::update(&app, &ctx.p, id, b).await?))
}

/// Move a ticket: claimed, in_progress, resolved, closed (or back to open/in_progress).
#[utoipa::path(post, path = "/v1/tickets/{id}/transition", operation_id = "ticket_transition", tag = "alerts",
    params(("id" = Uuid, Path)), request_body = TicketTransition,
    responses((status = 200, body = Ticket), (status = "default", body = ErrorBody)))]
pub async fn ticket_transition(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<TicketTransition>,
) -> Ok<Ticket> {
    Ok(axum::Json(tickets::transition(&app, &ctx.p, id, b).await?))
}

#[utoipa::path(post, path = "/v1/tickets/{id}/comments", operation_id = "ticket_comment", tag = "alerts",
    params(("id" = Uuid, Path)), request_body = TicketComment,
    responses((status = 200, body = Ticket), (status = "default", body = ErrorBody)))]
pub async fn ticket_comment(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<TicketComment>,
) -> Ok<Ticket> {
    Ok(axum::Json(tickets::comment(&app, &ctx.p, id, b).await?))
}
