//! Handlers for hosts, images, key pairs, instances and the host agents' protocol.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use stratus_api::*;
use uuid::Uuid;

use super::extract::{Ctx, Json, Path, Query};
use crate::app::{self, AppRef};
use crate::error::{current_request_id, Error, Result};

use super::{accepted, created, Created, Ok};

// ---------------------------------------------------------------- hosts

/// Compute hosts with their facts, state and allocation (operators).
#[utoipa::path(get, path = "/v1/hosts", operation_id = "host_list", tag = "hosts",
    responses((status = 200, body = Vec<Host>), (status = "default", body = ErrorBody)))]
pub async fn host_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<Host>> {
    Ok(axum::Json(app::hosts::host_list(&app, &ctx.p).await?))
}

#[utoipa::path(get, path = "/v1/hosts/{id}", operation_id = "host_view", tag = "hosts",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Host), (status = "default", body = ErrorBody)))]
pub async fn host_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Host> {
    Ok(axum::Json(app::hosts::host_view(&app, &ctx.p, id).await?))
}

/// Enable or disable a host (maintenance), or move it to another availability zone.
#[utoipa::path(patch, path = "/v1/hosts/{id}", operation_id = "host_update", tag = "hosts",
    params(("id" = Uuid, Path)), request_body = HostUpdate,
    responses((status = 200, body = Host), (status = "default", body = ErrorBody)))]
pub async fn host_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<HostUpdate>,
) -> Ok<Host> {
    Ok(axum::Json(
        app::hosts::host_update(&app, &ctx.p, id, b).await?,
    ))
}

/// Remove a host that has no instances.
#[utoipa::path(delete, path = "/v1/hosts/{id}", operation_id = "host_delete", tag = "hosts",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn host_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::hosts::host_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A token for `stratus agent --join`; shown once.
#[utoipa::path(post, path = "/v1/hosts/join-tokens", operation_id = "join_token_create", tag = "hosts",
    request_body = JoinTokenCreate,
    responses((status = 201, body = JoinToken), (status = "default", body = ErrorBody)))]
pub async fn join_token_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<JoinTokenCreate>,
) -> Created<JoinToken> {
    created(app::hosts::join_token_create(&app, &ctx.p, b).await?)
}

// ---------------------------------------------------------------- images

#[utoipa::path(get, path = "/v1/images", operation_id = "image_list", tag = "images",
    params(ListParams, ImageFilter),
    responses((status = 200, body = Page<Image>), (status = "default", body = ErrorBody)))]
pub async fn image_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<ImageFilter>,
) -> Ok<Page<Image>> {
    Ok(axum::Json(
        app::images::image_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Create an image record; upload its data with `image_upload`.
#[utoipa::path(post, path = "/v1/images", operation_id = "image_create", tag = "images",
    request_body = ImageCreate,
    responses((status = 201, body = Image), (status = "default", body = ErrorBody)))]
pub async fn image_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<ImageCreate>,
) -> Created<Image> {
    created(app::images::image_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/images/{id}", operation_id = "image_view", tag = "images",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Image), (status = "default", body = ErrorBody)))]
pub async fn image_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Image> {
    Ok(axum::Json(app::images::image_view(&app, &ctx.p, id).await?))
}

/// Rename, describe, share or unshare an image.
#[utoipa::path(patch, path = "/v1/images/{id}", operation_id = "image_update", tag = "images",
    params(("id" = Uuid, Path)), request_body = ImageUpdate,
    responses((status = 200, body = Image), (status = "default", body = ErrorBody)))]
pub async fn image_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<ImageUpdate>,
) -> Ok<Image> {
    Ok(axum::Json(
        app::images::image_update(&app, &ctx.p, id, b).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/images/{id}", operation_id = "image_delete", tag = "images",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn image_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::images::image_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Upload the image's data (streamed) in the format the image was created with. With
/// `x-checksum-sha256` (or `checksum_sha256` at creation) the data must match it. The
/// data is checked with qemu-img and stored as qcow2; bad data leaves the image queued.
#[utoipa::path(put, path = "/v1/images/{id}/file", operation_id = "image_upload", tag = "images",
    params(("id" = Uuid, Path), ("x-checksum-sha256" = Option<String>, Header, description = "hex SHA-256 of the body")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = Image), (status = "default", body = ErrorBody)))]
pub async fn image_upload(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Body,
) -> Ok<Image> {
    let sha = headers
        .get("x-checksum-sha256")
        .and_then(|v| v.to_str().ok());
    Ok(axum::Json(
        app::images::image_upload(&app, &ctx.p, id, sha, body).await?,
    ))
}

/// Download the image converted to qcow2 (default), raw, vmdk or vhd.
#[utoipa::path(get, path = "/v1/images/{id}/file", operation_id = "image_download", tag = "images",
    params(("id" = Uuid, Path), ImageDownload),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = "default", body = ErrorBody)))]
pub async fn image_download(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Query(q): Query<ImageDownload>,
) -> Result<Response> {
    let d = app::images::image_download(&app, &ctx.p, id, q.format).await?;
    let (len, body) = app::images::download_body(&d).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", d.filename),
            ),
        ],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------- key pairs

#[utoipa::path(get, path = "/v1/keypairs", operation_id = "keypair_list", tag = "keypairs",
    params(ProjectScope),
    responses((status = 200, body = Vec<KeyPair>), (status = "default", body = ErrorBody)))]
pub async fn keypair_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<ProjectScope>,
) -> Ok<Vec<KeyPair>> {
    Ok(axum::Json(
        app::instances::keypair_list(&app, &ctx.p, f).await?,
    ))
}

/// Import an SSH public key into a project.
#[utoipa::path(post, path = "/v1/keypairs", operation_id = "keypair_create", tag = "keypairs",
    request_body = KeyPairCreate,
    responses((status = 201, body = KeyPair), (status = "default", body = ErrorBody)))]
pub async fn keypair_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<KeyPairCreate>,
) -> Created<KeyPair> {
    created(app::instances::keypair_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/keypairs/{id}", operation_id = "keypair_view", tag = "keypairs",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = KeyPair), (status = "default", body = ErrorBody)))]
pub async fn keypair_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<KeyPair> {
    Ok(axum::Json(
        app::instances::keypair_view(&app, &ctx.p, id).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/keypairs/{id}", operation_id = "keypair_delete", tag = "keypairs",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn keypair_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::instances::keypair_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- instances

#[utoipa::path(get, path = "/v1/instances", operation_id = "instance_list", tag = "instances",
    params(ListParams, InstanceFilter),
    responses((status = 200, body = Page<Instance>), (status = "default", body = ErrorBody)))]
pub async fn instance_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<InstanceFilter>,
) -> Ok<Page<Instance>> {
    Ok(axum::Json(
        app::instances::instance_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Create `count` instances. Answers at once with them in `building` (or `error` when no
/// host fits); they become `running` when the guest really runs.
#[utoipa::path(post, path = "/v1/instances", operation_id = "instance_create", tag = "instances",
    request_body = InstanceCreate,
    responses((status = 202, body = Vec<Instance>), (status = "default", body = ErrorBody)))]
pub async fn instance_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<InstanceCreate>,
) -> Created<Vec<Instance>> {
    accepted(app::instances::instance_create(&app, &ctx.p, b, &current_request_id()).await?)
}

#[utoipa::path(get, path = "/v1/instances/{id}", operation_id = "instance_view", tag = "instances",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Instance), (status = "default", body = ErrorBody)))]
pub async fn instance_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Instance> {
    Ok(axum::Json(
        app::instances::instance_view(&app, &ctx.p, id).await?,
    ))
}

/// Rename or describe an instance.
#[utoipa::path(patch, path = "/v1/instances/{id}", operation_id = "instance_update", tag = "instances",
    params(("id" = Uuid, Path)), request_body = InstanceUpdate,
    responses((status = 200, body = Instance), (status = "default", body = ErrorBody)))]
pub async fn instance_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<InstanceUpdate>,
) -> Ok<Instance> {
    Ok(axum::Json(
        app::instances::instance_update(&app, &ctx.p, id, b).await?,
    ))
}

/// Delete an instance: its guest, disk and quota go once its host confirms — or, with the
/// recycle bin on, it is powered off and kept there until restored or purged.
#[utoipa::path(delete, path = "/v1/instances/{id}", operation_id = "instance_delete", tag = "instances",
    params(("id" = Uuid, Path)),
    responses((status = 202), (status = "default", body = ErrorBody)))]
pub async fn instance_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::recycle::instance_delete(&app, &ctx.p, id, &current_request_id()).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Start, stop, reboot, pause, unpause, suspend, resume or resize. 409 when the instance's
/// status does not allow it.
#[utoipa::path(post, path = "/v1/instances/{id}/actions", operation_id = "instance_action", tag = "instances",
    params(("id" = Uuid, Path)), request_body = InstanceAction,
    responses((status = 202, body = Instance), (status = "default", body = ErrorBody)))]
pub async fn instance_action(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<InstanceAction>,
) -> Created<Instance> {
    accepted(app::instances::instance_action(&app, &ctx.p, id, b, &current_request_id()).await?)
}

/// The instance's task history, oldest first.
#[utoipa::path(get, path = "/v1/instances/{id}/tasks", operation_id = "instance_tasks", tag = "instances",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<InstanceTask>), (status = "default", body = ErrorBody)))]
pub async fn instance_tasks(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Vec<InstanceTask>> {
    Ok(axum::Json(
        app::instances::instance_tasks(&app, &ctx.p, id).await?,
    ))
}

/// The end of the serial console output.
#[utoipa::path(get, path = "/v1/instances/{id}/console-log", operation_id = "instance_console_log", tag = "instances",
    params(("id" = Uuid, Path), ConsoleLogParams),
    responses((status = 200, content_type = "text/plain", body = String), (status = "default", body = ErrorBody)))]
pub async fn instance_console_log(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Query(q): Query<ConsoleLogParams>,
) -> Result<Response> {
    let text = app::instances::instance_console_log(&app, &ctx.p, id, q.bytes).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// A VNC endpoint and a one-time password (valid for one minute) for the running guest.
#[utoipa::path(post, path = "/v1/instances/{id}/remote-console", operation_id = "instance_remote_console", tag = "instances",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = RemoteConsole), (status = "default", body = ErrorBody)))]
pub async fn instance_remote_console(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<RemoteConsole> {
    Ok(axum::Json(
        app::instances::instance_remote_console(&app, &ctx.p, id).await?,
    ))
}

/// Live metrics: CPU, memory, disk and network rates.
#[utoipa::path(get, path = "/v1/instances/{id}/metrics", operation_id = "instance_metrics", tag = "instances",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = InstanceMetrics), (status = "default", body = ErrorBody)))]
pub async fn instance_metrics(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<InstanceMetrics> {
    Ok(axum::Json(
        app::instances::instance_metrics(&app, &ctx.p, id).await?,
    ))
}

/// Make a private image of a stopped instance's root disk. The image is `saving` until
/// the host has uploaded it.
#[utoipa::path(post, path = "/v1/instances/{id}/image", operation_id = "instance_image_create", tag = "instances",
    params(("id" = Uuid, Path)), request_body = ImageFromInstance,
    responses((status = 202, body = Image), (status = "default", body = ErrorBody)))]
pub async fn instance_image_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<ImageFromInstance>,
) -> Created<Image> {
    accepted(app::images::image_from_instance(&app, &ctx.p, id, b).await?)
}

// ---------------------------------------------------------------- agent protocol

fn bearer(headers: &HeaderMap) -> Result<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            Error::Unauthenticated("authorization: Bearer <credential> is required".into())
        })
}

/// Register a host with a join token; answers the host's credential.
#[utoipa::path(post, path = "/v1/agent/join", operation_id = "agent_join", tag = "agent",
    request_body = AgentJoin,
    responses((status = 200, body = AgentJoined), (status = "default", body = ErrorBody)))]
pub async fn agent_join(
    State(app): State<AppRef>,
    headers: HeaderMap,
    Json(b): Json<AgentJoin>,
) -> Ok<AgentJoined> {
    let token = bearer(&headers)?;
    Ok(axum::Json(app::hosts::agent_join(&app, token, b).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DesiredParams {
    /// The generation the agent has; the answer waits (up to 25 s) for a newer one.
    #[serde(default)]
    pub after: i64,
}

/// The desired state of the host's instances (long poll).
#[utoipa::path(get, path = "/v1/agent/desired", operation_id = "agent_desired", tag = "agent",
    params(DesiredParams),
    responses((status = 200, body = DesiredState), (status = "default", body = ErrorBody)))]
pub async fn agent_desired(
    State(app): State<AppRef>,
    headers: HeaderMap,
    Query(q): Query<DesiredParams>,
) -> Ok<DesiredState> {
    let host = app::hosts::agent_host(&app, bearer(&headers)?).await?;
    Ok(axum::Json(
        app::hosts::agent_desired(&app, host, q.after).await?,
    ))
}

/// Heartbeat, facts and the actual state of the host's instances.
#[utoipa::path(post, path = "/v1/agent/report", operation_id = "agent_report", tag = "agent",
    request_body = AgentReport,
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn agent_report(
    State(app): State<AppRef>,
    headers: HeaderMap,
    Json(b): Json<AgentReport>,
) -> Result<StatusCode> {
    let host = app::hosts::agent_host(&app, bearer(&headers)?).await?;
    app::hosts::agent_report(&app, host, b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The stored qcow2 of an image, for a host that builds an instance from it.
#[utoipa::path(get, path = "/v1/agent/images/{id}", operation_id = "agent_image_download", tag = "agent",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = "default", body = ErrorBody)))]
pub async fn agent_image_download(
    State(app): State<AppRef>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response> {
    app::hosts::agent_host(&app, bearer(&headers)?).await?;
    let path = app::images::agent_image_file(&app, id).await?;
    let d = app::images::Download {
        path,
        temporary: false,
        filename: format!("{id}.qcow2"),
    };
    let (len, body) = app::images::download_body(&d).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

/// A captured root disk (qcow2), uploaded by the instance's host.
#[utoipa::path(put, path = "/v1/agent/images/{id}", operation_id = "agent_image_upload", tag = "agent",
    params(("id" = Uuid, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn agent_image_upload(
    State(app): State<AppRef>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    body: Body,
) -> Result<StatusCode> {
    let host = app::hosts::agent_host(&app, bearer(&headers)?).await?;
    let sha = headers
        .get("x-checksum-sha256")
        .and_then(|v| v.to_str().ok());
    app::images::agent_image_upload(&app, host, id, sha, body).await?;
    Ok(StatusCode::NO_CONTENT)
}
