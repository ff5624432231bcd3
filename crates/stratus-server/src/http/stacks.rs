//! Handlers for orchestration: template validation and stacks.

use axum::extract::State;
use stratus_api::*;
use uuid::Uuid;

use super::extract::{Ctx, Json, Path, Query};
use super::{accepted, Created, Ok};
use crate::app::{self, AppRef};

/// Check a template (and, when given, parameter values for it) without making anything:
/// what it declares and the waves a stack of it is made in, or a 400 naming the field and
/// its line and column.
#[utoipa::path(post, path = "/v1/templates/validate", operation_id = "template_validate", tag = "stacks",
    request_body = TemplateValidate, responses((status = 200, body = TemplateInfo), (status = "default", body = ErrorBody)))]
pub async fn template_validate(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<TemplateValidate>,
) -> Ok<TemplateInfo> {
    Ok(axum::Json(
        app::stacks::template_validate(&app, &ctx.p, b).await?,
    ))
}

/// The stacks of the projects the caller may see.
#[utoipa::path(get, path = "/v1/stacks", operation_id = "stack_list", tag = "stacks",
    params(ListParams, StackFilter), responses((status = 200, body = Page<Stack>), (status = "default", body = ErrorBody)))]
pub async fn stack_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<StackFilter>,
) -> Ok<Page<Stack>> {
    Ok(axum::Json(
        app::stacks::stack_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Make a stack from a template. Answers at once (202) with the stack `creating`; its
/// resources are made in dependency order, independent ones together. A failure rolls back
/// everything made (or keeps it, with `on_failure: keep`) and names the resource and why.
#[utoipa::path(post, path = "/v1/stacks", operation_id = "stack_create", tag = "stacks",
    request_body = StackCreate, responses((status = 202, body = Stack), (status = "default", body = ErrorBody)))]
pub async fn stack_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<StackCreate>,
) -> Created<Stack> {
    accepted(app::stacks::stack_create(&app, &ctx.p, b).await?)
}

/// A stack with each resource (logical name, type, real id, status) and its outputs.
#[utoipa::path(get, path = "/v1/stacks/{id}", operation_id = "stack_view", tag = "stacks",
    params(("id" = Uuid, Path)), responses((status = 200, body = Stack), (status = "default", body = ErrorBody)))]
pub async fn stack_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Stack> {
    Ok(axum::Json(app::stacks::stack_view(&app, &ctx.p, id).await?))
}

/// Bring a stack to a changed template (202): new resources are made, changed ones changed
/// in place where their type allows (instance flavor, volume size, group rules, address
/// binding; anything else is a 400 naming the property), and those no longer named removed.
#[utoipa::path(put, path = "/v1/stacks/{id}", operation_id = "stack_update", tag = "stacks",
    params(("id" = Uuid, Path)), request_body = StackUpdate,
    responses((status = 202, body = Stack), (status = "default", body = ErrorBody)))]
pub async fn stack_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<StackUpdate>,
) -> Created<Stack> {
    accepted(app::stacks::stack_update(&app, &ctx.p, id, b).await?)
}

/// Remove a stack and everything it made, in reverse dependency order (202). The stack is
/// gone when its last resource is; if one cannot be removed the stack is `failed` saying which.
#[utoipa::path(delete, path = "/v1/stacks/{id}", operation_id = "stack_delete", tag = "stacks",
    params(("id" = Uuid, Path)), responses((status = 202, body = Stack), (status = "default", body = ErrorBody)))]
pub async fn stack_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Created<Stack> {
    accepted(app::stacks::stack_delete(&app, &ctx.p, id).await?)
}

/// The template a stack was last given, with its parameter values.
#[utoipa::path(get, path = "/v1/stacks/{id}/template", operation_id = "stack_template", tag = "stacks",
    params(("id" = Uuid, Path)), responses((status = 200, body = StackTemplate), (status = "default", body = ErrorBody)))]
pub async fn stack_template(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<StackTemplate> {
    Ok(axum::Json(
        app::stacks::stack_template(&app, &ctx.p, id).await?,
    ))
}
