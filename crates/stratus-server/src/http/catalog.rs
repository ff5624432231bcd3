//! Handlers for the service catalog, approval flows, requests (orders) and the approver's
//! queue.

use axum::extract::State;
use axum::http::StatusCode;
use stratus_api::*;
use uuid::Uuid;

use super::extract::{Ctx, Json, Path, Query};
use crate::app::{self, AppRef};
use crate::error::Result;

use super::{created, Created, Ok};

/// The kinds of service the catalog can offer and the parameters each knows.
#[utoipa::path(get, path = "/v1/service-kinds", operation_id = "service_kind_list", tag = "catalog",
    responses((status = 200, body = Vec<ServiceKindInfo>), (status = "default", body = ErrorBody)))]
pub async fn service_kind_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<ServiceKindInfo>> {
    Ok(axum::Json(
        app::catalog::service_kind_list(&app, &ctx.p).await?,
    ))
}

/// The services the caller's departments may request (catalog administrators see all).
#[utoipa::path(get, path = "/v1/services", operation_id = "service_list", tag = "catalog",
    params(ServiceFilter), responses((status = 200, body = Vec<Service>), (status = "default", body = ErrorBody)))]
pub async fn service_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<ServiceFilter>,
) -> Ok<Vec<Service>> {
    Ok(axum::Json(
        app::catalog::service_list(&app, &ctx.p, f).await?,
    ))
}

/// Publish a service: its kind, its request form (defaults, allowed values, who may set
/// each parameter) and the VDCs that see it.
#[utoipa::path(post, path = "/v1/services", operation_id = "service_create", tag = "catalog",
    request_body = ServiceCreate, responses((status = 201, body = Service), (status = "default", body = ErrorBody)))]
pub async fn service_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<ServiceCreate>,
) -> Created<Service> {
    created(app::catalog::service_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/services/{id}", operation_id = "service_view", tag = "catalog",
    params(("id" = Uuid, Path)), responses((status = 200, body = Service), (status = "default", body = ErrorBody)))]
pub async fn service_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Service> {
    Ok(axum::Json(
        app::catalog::service_visible(&app, &ctx.p, id).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/services/{id}", operation_id = "service_update", tag = "catalog",
    params(("id" = Uuid, Path)), request_body = ServiceUpdate, responses((status = 200, body = Service), (status = "default", body = ErrorBody)))]
pub async fn service_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<ServiceUpdate>,
) -> Ok<Service> {
    Ok(axum::Json(
        app::catalog::service_update(&app, &ctx.p, id, b).await?,
    ))
}

/// Remove a service from the catalog (its past requests keep its name).
#[utoipa::path(delete, path = "/v1/services/{id}", operation_id = "service_delete", tag = "catalog",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn service_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::catalog::service_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/approval-flows", operation_id = "approval_flow_list", tag = "catalog",
    responses((status = 200, body = Vec<ApprovalFlow>), (status = "default", body = ErrorBody)))]
pub async fn approval_flow_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<ApprovalFlow>> {
    Ok(axum::Json(app::catalog::flow_list(&app, &ctx.p).await?))
}

/// Define who decides requests for a service (or all services) in a VDC (or everywhere).
#[utoipa::path(post, path = "/v1/approval-flows", operation_id = "approval_flow_create", tag = "catalog",
    request_body = ApprovalFlowCreate, responses((status = 201, body = ApprovalFlow), (status = "default", body = ErrorBody)))]
pub async fn approval_flow_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<ApprovalFlowCreate>,
) -> Created<ApprovalFlow> {
    created(app::catalog::flow_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/approval-flows/{id}", operation_id = "approval_flow_view", tag = "catalog",
    params(("id" = Uuid, Path)), responses((status = 200, body = ApprovalFlow), (status = "default", body = ErrorBody)))]
pub async fn approval_flow_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<ApprovalFlow> {
    Ok(axum::Json(app::catalog::flow_view(&app, &ctx.p, id).await?))
}

/// Change a flow's levels or conditions (requests already submitted keep the levels they
/// were submitted with).
#[utoipa::path(patch, path = "/v1/approval-flows/{id}", operation_id = "approval_flow_update", tag = "catalog",
    params(("id" = Uuid, Path)), request_body = ApprovalFlowUpdate, responses((status = 200, body = ApprovalFlow), (status = "default", body = ErrorBody)))]
pub async fn approval_flow_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<ApprovalFlowUpdate>,
) -> Ok<ApprovalFlow> {
    Ok(axum::Json(
        app::catalog::flow_update(&app, &ctx.p, id, b).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/approval-flows/{id}", operation_id = "approval_flow_delete", tag = "catalog",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn approval_flow_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::catalog::flow_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's requests and those of the projects they may see, newest last.
#[utoipa::path(get, path = "/v1/requests", operation_id = "request_list", tag = "requests",
    params(ListParams, RequestFilter), responses((status = 200, body = Page<Request>), (status = "default", body = ErrorBody)))]
pub async fn request_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<RequestFilter>,
) -> Ok<Page<Request>> {
    Ok(axum::Json(
        app::requests::request_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Submit a request: a catalog service for a project (create), or a change or release of
/// a resource the caller's project owns. It follows the applicable approval flow; once
/// approved, the platform provisions it as the requester.
#[utoipa::path(post, path = "/v1/requests", operation_id = "request_create", tag = "requests",
    request_body = RequestCreate, responses((status = 201, body = Request), (status = "default", body = ErrorBody)))]
pub async fn request_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<RequestCreate>,
) -> Created<Request> {
    created(app::requests::request_create(&app, &ctx.p, b).await?)
}

/// A request with its levels, every decision so far, and what provisioning made.
#[utoipa::path(get, path = "/v1/requests/{id}", operation_id = "request_view", tag = "requests",
    params(("id" = Uuid, Path)), responses((status = 200, body = Request), (status = "default", body = ErrorBody)))]
pub async fn request_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Request> {
    Ok(axum::Json(
        app::requests::request_view(&app, &ctx.p, id).await?,
    ))
}

/// Approve at the request's current level (setting approver parameters if the form has any).
#[utoipa::path(post, path = "/v1/requests/{id}/approve", operation_id = "request_approve", tag = "requests",
    params(("id" = Uuid, Path)), request_body = RequestDecide, responses((status = 200, body = Request), (status = "default", body = ErrorBody)))]
pub async fn request_approve(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<RequestDecide>,
) -> Ok<Request> {
    Ok(axum::Json(
        app::requests::request_decide(&app, &ctx.p, id, DecisionKind::Approve, b).await?,
    ))
}

/// Reject: the request ends here and nothing is provisioned.
#[utoipa::path(post, path = "/v1/requests/{id}/reject", operation_id = "request_reject", tag = "requests",
    params(("id" = Uuid, Path)), request_body = RequestDecide, responses((status = 200, body = Request), (status = "default", body = ErrorBody)))]
pub async fn request_reject(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<RequestDecide>,
) -> Ok<Request> {
    Ok(axum::Json(
        app::requests::request_decide(&app, &ctx.p, id, DecisionKind::Reject, b).await?,
    ))
}

/// Withdraw a request that is not yet being provisioned.
#[utoipa::path(post, path = "/v1/requests/{id}/cancel", operation_id = "request_cancel", tag = "requests",
    params(("id" = Uuid, Path)), responses((status = 200, body = Request), (status = "default", body = ErrorBody)))]
pub async fn request_cancel(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Request> {
    Ok(axum::Json(
        app::requests::request_cancel(&app, &ctx.p, id).await?,
    ))
}

/// The caller's approval queue: requests awaiting their decision, oldest first.
#[utoipa::path(get, path = "/v1/approvals", operation_id = "approval_queue", tag = "requests",
    responses((status = 200, body = Vec<Request>), (status = "default", body = ErrorBody)))]
pub async fn approval_queue(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<Request>> {
    Ok(axum::Json(
        app::requests::approval_queue(&app, &ctx.p).await?,
    ))
}
