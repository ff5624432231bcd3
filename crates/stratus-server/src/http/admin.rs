//! Handlers for quotas, access keys, the audit log and system endpoints.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use stratus_api::*;
use uuid::Uuid;

use super::extract::{Ctx, Json, Path, Query};
use crate::app::{self, AppRef};
use crate::error::Result;

type Ok<T> = Result<axum::Json<T>>;

// ---------------------------------------------------------------- quotas

/// Limits, usage and headroom of a VDC and of each VDC above it.
#[utoipa::path(get, path = "/v1/vdcs/{id}/quota", operation_id = "vdc_quota_view", tag = "quotas",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = QuotaView), (status = "default", body = ErrorBody)))]
pub async fn vdc_quota_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Ok<QuotaView> {
    Ok(axum::Json(
        app::quotas::vdc_quota_view(&app, &ctx.p, id).await?,
    ))
}

/// Set a VDC's limits (by whoever manages its parent).
#[utoipa::path(put, path = "/v1/vdcs/{id}/quota", operation_id = "vdc_quota_update", tag = "quotas",
    params(("id" = uuid::Uuid, Path)), request_body = QuotaUpdate,
    responses((status = 200, body = QuotaView), (status = "default", body = ErrorBody)))]
pub async fn vdc_quota_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
    Json(b): Json<QuotaUpdate>,
) -> Ok<QuotaView> {
    Ok(axum::Json(
        app::quotas::vdc_quota_update(&app, &ctx.p, id, b).await?,
    ))
}

/// Limits, usage and headroom of a project and of each VDC above it.
#[utoipa::path(get, path = "/v1/projects/{id}/quota", operation_id = "project_quota_view", tag = "quotas",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = QuotaView), (status = "default", body = ErrorBody)))]
pub async fn project_quota_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Ok<QuotaView> {
    Ok(axum::Json(
        app::quotas::project_quota_view(&app, &ctx.p, id).await?,
    ))
}

/// Set a project's limits (by whoever manages its VDC).
#[utoipa::path(put, path = "/v1/projects/{id}/quota", operation_id = "project_quota_update", tag = "quotas",
    params(("id" = uuid::Uuid, Path)), request_body = QuotaUpdate,
    responses((status = 200, body = QuotaView), (status = "default", body = ErrorBody)))]
pub async fn project_quota_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
    Json(b): Json<QuotaUpdate>,
) -> Ok<QuotaView> {
    Ok(axum::Json(
        app::quotas::project_quota_update(&app, &ctx.p, id, b).await?,
    ))
}

/// Recount usage from the resources themselves and list counters that disagree.
#[utoipa::path(get, path = "/v1/system/quota-consistency", operation_id = "quota_consistency_check", tag = "system",
    responses((status = 200, body = ConsistencyReport), (status = "default", body = ErrorBody)))]
pub async fn quota_consistency_check(State(app): State<AppRef>, ctx: Ctx) -> Ok<ConsistencyReport> {
    Ok(axum::Json(
        app::quotas::quota_consistency(&app, &ctx.p).await?,
    ))
}

// ---------------------------------------------------------------- access keys

#[utoipa::path(get, path = "/v1/access-keys", operation_id = "access_key_list", tag = "access-keys",
    params(AccessKeyFilter),
    responses((status = 200, body = Vec<AccessKey>), (status = "default", body = ErrorBody)))]
pub async fn access_key_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<AccessKeyFilter>,
) -> Ok<Vec<AccessKey>> {
    Ok(axum::Json(
        app::access_keys::access_key_list(&app, &ctx.p, f).await?,
    ))
}

/// Create an access key for yourself; the secret is in this answer only.
#[utoipa::path(post, path = "/v1/access-keys", operation_id = "access_key_create", tag = "access-keys",
    request_body = AccessKeyCreate,
    responses((status = 201, body = AccessKeyCreated), (status = "default", body = ErrorBody)))]
pub async fn access_key_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<AccessKeyCreate>,
) -> Result<(StatusCode, axum::Json<AccessKeyCreated>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::access_keys::access_key_create(&app, &ctx.p, b).await?),
    ))
}

/// Enable, disable or describe an access key.
#[utoipa::path(patch, path = "/v1/access-keys/{id}", operation_id = "access_key_update", tag = "access-keys",
    params(("id" = String, Path)), request_body = AccessKeyUpdate,
    responses((status = 200, body = AccessKey), (status = "default", body = ErrorBody)))]
pub async fn access_key_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<String>,
    Json(b): Json<AccessKeyUpdate>,
) -> Ok<AccessKey> {
    Ok(axum::Json(
        app::access_keys::access_key_update(&app, &ctx.p, &id, b).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/access-keys/{id}", operation_id = "access_key_delete", tag = "access-keys",
    params(("id" = String, Path)),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn access_key_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    app::access_keys::access_key_delete(&app, &ctx.p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- audit

/// Audit events, newest first (auditor only).
#[utoipa::path(get, path = "/v1/audit-events", operation_id = "audit_list", tag = "audit",
    params(AuditFilter),
    responses((status = 200, body = Page<AuditEvent>), (status = "default", body = ErrorBody)))]
pub async fn audit_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<AuditFilter>,
) -> Ok<Page<AuditEvent>> {
    Ok(axum::Json(app::audit::audit_list(&app, &ctx.p, f).await?))
}

/// Every matching audit event as CSV (auditor only).
#[utoipa::path(get, path = "/v1/audit-events/export", operation_id = "audit_export", tag = "audit",
    params(AuditFilter),
    responses((status = 200, content_type = "text/csv", body = String), (status = "default", body = ErrorBody)))]
pub async fn audit_export(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<AuditFilter>,
) -> Result<axum::response::Response> {
    let csv = app::audit::audit_export(&app, &ctx.p, f).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
}

// ---------------------------------------------------------------- system

/// Liveness and store reachability.
#[utoipa::path(get, path = "/healthz", operation_id = "health_view", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn health_view(State(app): State<AppRef>) -> Ok<Health> {
    sqlx::query("SELECT 1")
        .execute(&app.store.db.read)
        .await
        .map_err(|e| crate::error::Error::Unavailable(format!("store unreachable: {e}")))?;
    Ok(axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        database: app.store.db.backend.as_str().into(),
    }))
}

/// Prometheus metrics: request counts and latency histograms by operation.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics_view", tag = "system",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics_view(State(app): State<AppRef>) -> axum::response::Response {
    let mut text = app.metrics.render();
    text.push_str(&crate::app::monitoring::render_store_metrics(&app));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

// ---------------------------------------------------------------- flavors

/// Flavors the caller may use: the reference flavors and custom ones for their VDCs.
#[utoipa::path(get, path = "/v1/flavors", operation_id = "flavor_list", tag = "flavors",
    responses((status = 200, body = Vec<Flavor>), (status = "default", body = ErrorBody)))]
pub async fn flavor_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<Flavor>> {
    Ok(axum::Json(app::flavors::flavor_list(&app, &ctx.p).await?))
}

/// Add a custom flavor, optionally restricted to some VDCs (platform admin).
#[utoipa::path(post, path = "/v1/flavors", operation_id = "flavor_create", tag = "flavors",
    request_body = FlavorCreate,
    responses((status = 201, body = Flavor), (status = "default", body = ErrorBody)))]
pub async fn flavor_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<FlavorCreate>,
) -> Result<(StatusCode, axum::Json<Flavor>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(app::flavors::flavor_create(&app, &ctx.p, b).await?),
    ))
}

#[utoipa::path(get, path = "/v1/flavors/{id}", operation_id = "flavor_view", tag = "flavors",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Flavor), (status = "default", body = ErrorBody)))]
pub async fn flavor_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Ok<Flavor> {
    Ok(axum::Json(
        app::flavors::flavor_view(&app, &ctx.p, id).await?,
    ))
}

/// Delete a custom flavor (the reference flavors stay).
#[utoipa::path(delete, path = "/v1/flavors/{id}", operation_id = "flavor_delete", tag = "flavors",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn flavor_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Result<StatusCode> {
    app::flavors::flavor_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Hand an instance, volume, elastic IP or bucket to another project, its quota moving
/// with it in one transaction (needs `project.write` at both projects). Refused (409) while
/// anything ties it to its project: NICs or attached volumes, attachments or snapshots, a
/// binding.
#[utoipa::path(post, path = "/v1/transfers", operation_id = "resource_transfer", tag = "projects",
    request_body = TransferCreate, responses((status = 200, body = Transfer), (status = "default", body = ErrorBody)))]
pub async fn resource_transfer(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<TransferCreate>,
) -> Ok<Transfer> {
    Ok(axum::Json(
        app::transfers::resource_transfer(&app, &ctx.p, b).await?,
    ))
}

/// Deleted instances, volumes and buckets kept in the recycle bin (when it is on), for the projects
/// the caller may see.
#[utoipa::path(get, path = "/v1/recycle-bin", operation_id = "recycle_list", tag = "recycle-bin",
    params(RecycleFilter), responses((status = 200, body = Vec<RecycledResource>), (status = "default", body = ErrorBody)))]
pub async fn recycle_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<RecycleFilter>,
) -> Ok<Vec<RecycledResource>> {
    Ok(axum::Json(
        app::recycle::recycle_list(&app, &ctx.p, f).await?,
    ))
}

/// Give a resource back from the recycle bin, as it was (an instance stays stopped).
#[utoipa::path(post, path = "/v1/recycle-bin/{id}/restore", operation_id = "recycle_restore", tag = "recycle-bin",
    params(("id" = Uuid, Path)), responses((status = 200, body = RecycledResource), (status = "default", body = ErrorBody)))]
pub async fn recycle_restore(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<RecycledResource> {
    Ok(axum::Json(
        app::recycle::recycle_restore(&app, &ctx.p, id).await?,
    ))
}

/// Delete a resource in the recycle bin now, without waiting for its retention (202: it
/// goes once its host confirms).
#[utoipa::path(delete, path = "/v1/recycle-bin/{id}", operation_id = "recycle_purge", tag = "recycle-bin",
    params(("id" = Uuid, Path)), responses((status = 202), (status = "default", body = ErrorBody)))]
pub async fn recycle_purge(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::recycle::recycle_purge(&app, &ctx.p, id).await?;
    Ok(StatusCode::ACCEPTED)
}
