//! Handlers for authentication, organizations, VDCs, projects, users, roles and grants.
//! Each authenticates (via [`Ctx`]), calls the app layer and maps the result.

use axum::extract::State;
use axum::http::StatusCode;
use stratus_api::*;

use super::extract::{Ctx, Json, Path, Query};
use crate::app::{self, AppRef};
use crate::error::Result;

type Created<T> = Result<(StatusCode, axum::Json<T>)>;
type Ok<T> = Result<axum::Json<T>>;

fn created<T>(v: T) -> Created<T> {
    Ok((StatusCode::CREATED, axum::Json(v)))
}

// ---------------------------------------------------------------- auth

/// Log in with a user name and password; returns a session token.
#[utoipa::path(post, path = "/v1/auth/login", operation_id = "auth_login", tag = "auth",
    request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = "default", body = ErrorBody)))]
pub async fn auth_login(
    State(app): State<AppRef>,
    Json(b): Json<LoginRequest>,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let name = b.name.clone();
    let result = app::auth::login(&app, b).await;
    // The audit log records the name tried, whether or not the login succeeded.
    let mut resp = match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(super::AuditActor(name));
    Ok(resp)
}

/// End the current session (the token stops working at once).
#[utoipa::path(post, path = "/v1/auth/logout", operation_id = "auth_logout", tag = "auth",
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn auth_logout(State(app): State<AppRef>, ctx: Ctx) -> Result<StatusCode> {
    app::auth::logout(&app, ctx.token.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller, their grants and how they authenticated.
#[utoipa::path(get, path = "/v1/auth/whoami", operation_id = "auth_whoami", tag = "auth",
    responses((status = 200, body = WhoAmI), (status = "default", body = ErrorBody)))]
pub async fn auth_whoami(State(app): State<AppRef>, ctx: Ctx) -> Ok<WhoAmI> {
    Ok(axum::Json(app::auth::whoami(&app, &ctx.p).await?))
}

/// Change your own password (all your sessions end).
#[utoipa::path(post, path = "/v1/auth/password", operation_id = "auth_password_change", tag = "auth",
    request_body = PasswordChange,
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn auth_password_change(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<PasswordChange>,
) -> Result<StatusCode> {
    app::auth::password_change(&app, &ctx.p, b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The password and login policy.
#[utoipa::path(get, path = "/v1/password-policy", operation_id = "password_policy_view", tag = "auth",
    responses((status = 200, body = PasswordPolicy), (status = "default", body = ErrorBody)))]
pub async fn password_policy_view(State(app): State<AppRef>, _ctx: Ctx) -> Ok<PasswordPolicy> {
    Ok(axum::Json(app::auth::policy_view(&app).await?))
}

/// Replace the password and login policy (security administrator).
#[utoipa::path(put, path = "/v1/password-policy", operation_id = "password_policy_update", tag = "auth",
    request_body = PasswordPolicy,
    responses((status = 200, body = PasswordPolicy), (status = "default", body = ErrorBody)))]
pub async fn password_policy_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<PasswordPolicy>,
) -> Ok<PasswordPolicy> {
    Ok(axum::Json(app::auth::policy_update(&app, &ctx.p, b).await?))
}

// ---------------------------------------------------------------- organizations

#[utoipa::path(get, path = "/v1/organizations", operation_id = "org_list", tag = "organizations",
    params(ListParams),
    responses((status = 200, body = Page<Organization>), (status = "default", body = ErrorBody)))]
pub async fn org_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
) -> Ok<Page<Organization>> {
    Ok(axum::Json(app::orgs::org_list(&app, &ctx.p, q).await?))
}

#[utoipa::path(post, path = "/v1/organizations", operation_id = "org_create", tag = "organizations",
    request_body = OrganizationCreate,
    responses((status = 201, body = Organization), (status = "default", body = ErrorBody)))]
pub async fn org_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<OrganizationCreate>,
) -> Created<Organization> {
    created(app::orgs::org_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/organizations/{id}", operation_id = "org_view", tag = "organizations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Organization), (status = "default", body = ErrorBody)))]
pub async fn org_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Ok<Organization> {
    Ok(axum::Json(app::orgs::org_view(&app, &ctx.p, id).await?))
}

#[utoipa::path(patch, path = "/v1/organizations/{id}", operation_id = "org_update", tag = "organizations",
    params(("id" = uuid::Uuid, Path)), request_body = OrganizationUpdate,
    responses((status = 200, body = Organization), (status = "default", body = ErrorBody)))]
pub async fn org_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
    Json(b): Json<OrganizationUpdate>,
) -> Ok<Organization> {
    Ok(axum::Json(
        app::orgs::org_update(&app, &ctx.p, id, b).await?,
    ))
}

/// Delete an organization that has no VDCs left.
#[utoipa::path(delete, path = "/v1/organizations/{id}", operation_id = "org_delete", tag = "organizations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn org_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Result<StatusCode> {
    app::orgs::org_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- VDCs

#[utoipa::path(get, path = "/v1/vdcs", operation_id = "vdc_list", tag = "vdcs",
    params(ListParams, VdcFilter),
    responses((status = 200, body = Page<Vdc>), (status = "default", body = ErrorBody)))]
pub async fn vdc_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<VdcFilter>,
) -> Ok<Page<Vdc>> {
    Ok(axum::Json(app::vdcs::vdc_list(&app, &ctx.p, q, f).await?))
}

#[utoipa::path(post, path = "/v1/vdcs", operation_id = "vdc_create", tag = "vdcs",
    request_body = VdcCreate,
    responses((status = 201, body = Vdc), (status = "default", body = ErrorBody)))]
pub async fn vdc_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<VdcCreate>,
) -> Created<Vdc> {
    created(app::vdcs::vdc_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/vdcs/{id}", operation_id = "vdc_view", tag = "vdcs",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Vdc), (status = "default", body = ErrorBody)))]
pub async fn vdc_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<uuid::Uuid>) -> Ok<Vdc> {
    Ok(axum::Json(app::vdcs::vdc_view(&app, &ctx.p, id).await?))
}

/// Rename, describe, or move (with `parent_id`) a VDC.
#[utoipa::path(patch, path = "/v1/vdcs/{id}", operation_id = "vdc_update", tag = "vdcs",
    params(("id" = uuid::Uuid, Path)), request_body = VdcUpdate,
    responses((status = 200, body = Vdc), (status = "default", body = ErrorBody)))]
pub async fn vdc_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
    Json(b): Json<VdcUpdate>,
) -> Ok<Vdc> {
    Ok(axum::Json(
        app::vdcs::vdc_update(&app, &ctx.p, id, b).await?,
    ))
}

/// Delete an empty VDC (no child VDCs, projects or users).
#[utoipa::path(delete, path = "/v1/vdcs/{id}", operation_id = "vdc_delete", tag = "vdcs",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn vdc_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Result<StatusCode> {
    app::vdcs::vdc_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- projects

#[utoipa::path(get, path = "/v1/projects", operation_id = "project_list", tag = "projects",
    params(ListParams, ProjectFilter),
    responses((status = 200, body = Page<Project>), (status = "default", body = ErrorBody)))]
pub async fn project_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<ProjectFilter>,
) -> Ok<Page<Project>> {
    Ok(axum::Json(
        app::projects::project_list(&app, &ctx.p, q, f).await?,
    ))
}

#[utoipa::path(post, path = "/v1/projects", operation_id = "project_create", tag = "projects",
    request_body = ProjectCreate,
    responses((status = 201, body = Project), (status = "default", body = ErrorBody)))]
pub async fn project_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<ProjectCreate>,
) -> Created<Project> {
    created(app::projects::project_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/projects/{id}", operation_id = "project_view", tag = "projects",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Project), (status = "default", body = ErrorBody)))]
pub async fn project_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Ok<Project> {
    Ok(axum::Json(
        app::projects::project_view(&app, &ctx.p, id).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/projects/{id}", operation_id = "project_update", tag = "projects",
    params(("id" = uuid::Uuid, Path)), request_body = ProjectUpdate,
    responses((status = 200, body = Project), (status = "default", body = ErrorBody)))]
pub async fn project_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
    Json(b): Json<ProjectUpdate>,
) -> Ok<Project> {
    Ok(axum::Json(
        app::projects::project_update(&app, &ctx.p, id, b).await?,
    ))
}

/// Delete a project that holds no resources.
#[utoipa::path(delete, path = "/v1/projects/{id}", operation_id = "project_delete", tag = "projects",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn project_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Result<StatusCode> {
    app::projects::project_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- users

#[utoipa::path(get, path = "/v1/users", operation_id = "user_list", tag = "users",
    params(ListParams, UserFilter),
    responses((status = 200, body = Page<User>), (status = "default", body = ErrorBody)))]
pub async fn user_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<UserFilter>,
) -> Ok<Page<User>> {
    Ok(axum::Json(app::users::user_list(&app, &ctx.p, q, f).await?))
}

#[utoipa::path(post, path = "/v1/users", operation_id = "user_create", tag = "users",
    request_body = UserCreate,
    responses((status = 201, body = User), (status = "default", body = ErrorBody)))]
pub async fn user_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<UserCreate>,
) -> Created<User> {
    created(app::users::user_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/users/{id}", operation_id = "user_view", tag = "users",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = User), (status = "default", body = ErrorBody)))]
pub async fn user_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Ok<User> {
    Ok(axum::Json(app::users::user_view(&app, &ctx.p, id).await?))
}

/// Change a user's details, or disable/enable the account (`enabled`).
#[utoipa::path(patch, path = "/v1/users/{id}", operation_id = "user_update", tag = "users",
    params(("id" = uuid::Uuid, Path)), request_body = UserUpdate,
    responses((status = 200, body = User), (status = "default", body = ErrorBody)))]
pub async fn user_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
    Json(b): Json<UserUpdate>,
) -> Ok<User> {
    Ok(axum::Json(
        app::users::user_update(&app, &ctx.p, id, b).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/users/{id}", operation_id = "user_delete", tag = "users",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn user_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Result<StatusCode> {
    app::users::user_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a new password for a user (their sessions end).
#[utoipa::path(post, path = "/v1/users/{id}/password", operation_id = "user_password_reset", tag = "users",
    params(("id" = uuid::Uuid, Path)), request_body = PasswordReset,
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn user_password_reset(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
    Json(b): Json<PasswordReset>,
) -> Result<StatusCode> {
    app::users::user_password_reset(&app, &ctx.p, id, b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a lockout after failed logins.
#[utoipa::path(post, path = "/v1/users/{id}/unlock", operation_id = "user_unlock", tag = "users",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = User), (status = "default", body = ErrorBody)))]
pub async fn user_unlock(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Ok<User> {
    Ok(axum::Json(app::users::user_unlock(&app, &ctx.p, id).await?))
}

// ---------------------------------------------------------------- roles and grants

/// The built-in roles and their permissions.
#[utoipa::path(get, path = "/v1/roles", operation_id = "role_list", tag = "grants",
    responses((status = 200, body = Vec<Role>), (status = "default", body = ErrorBody)))]
pub async fn role_list(_ctx: Ctx) -> Ok<Vec<Role>> {
    Ok(axum::Json(app::grants::role_list()))
}

#[utoipa::path(get, path = "/v1/grants", operation_id = "grant_list", tag = "grants",
    params(GrantFilter),
    responses((status = 200, body = Vec<Grant>), (status = "default", body = ErrorBody)))]
pub async fn grant_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<GrantFilter>,
) -> Ok<Vec<Grant>> {
    Ok(axum::Json(app::grants::grant_list(&app, &ctx.p, f).await?))
}

#[utoipa::path(post, path = "/v1/grants", operation_id = "grant_create", tag = "grants",
    request_body = GrantCreate,
    responses((status = 201, body = Grant), (status = "default", body = ErrorBody)))]
pub async fn grant_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<GrantCreate>,
) -> Created<Grant> {
    created(app::grants::grant_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(delete, path = "/v1/grants/{id}", operation_id = "grant_delete", tag = "grants",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn grant_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<uuid::Uuid>,
) -> Result<StatusCode> {
    app::grants::grant_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
