//! Handlers for block storage: volume types, volumes, snapshots, backups, backup policies.

use axum::extract::State;
use axum::http::StatusCode;
use stratus_api::*;
use uuid::Uuid;

use super::extract::{Ctx, Json, Path, Query};
use crate::app::{self, AppRef};
use crate::error::Result;

use super::{accepted, created, Created, Ok};

/// Volume types and the I/O limits enforced on their volumes (the spec's tiers are built in).
#[utoipa::path(get, path = "/v1/volume-types", operation_id = "volume_type_list", tag = "volumes",
    responses((status = 200, body = Vec<VolumeType>), (status = "default", body = ErrorBody)))]
pub async fn volume_type_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<VolumeType>> {
    Ok(axum::Json(
        app::volumes::volume_type_list(&app, &ctx.p).await?,
    ))
}

/// Define a volume type with its IOPS and bandwidth limits (platform administrators).
#[utoipa::path(post, path = "/v1/volume-types", operation_id = "volume_type_create", tag = "volumes",
    request_body = VolumeTypeCreate, responses((status = 201, body = VolumeType), (status = "default", body = ErrorBody)))]
pub async fn volume_type_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<VolumeTypeCreate>,
) -> Created<VolumeType> {
    created(app::volumes::volume_type_create(&app, &ctx.p, b).await?)
}

/// Delete a custom volume type no volume uses.
#[utoipa::path(delete, path = "/v1/volume-types/{id}", operation_id = "volume_type_delete", tag = "volumes",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn volume_type_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::volumes::volume_type_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/volumes", operation_id = "volume_list", tag = "volumes",
    params(ListParams, VolumeFilter), responses((status = 200, body = Page<Volume>), (status = "default", body = ErrorBody)))]
pub async fn volume_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<VolumeFilter>,
) -> Ok<Page<Volume>> {
    Ok(axum::Json(
        app::volumes::volume_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Create `count` volumes (empty, or from a snapshot, a backup or an image). Answers at once
/// with them `creating` (or `error` when no storage pool has room); they become `available`
/// when the host has made them.
#[utoipa::path(post, path = "/v1/volumes", operation_id = "volume_create", tag = "volumes",
    request_body = VolumeCreate, responses((status = 202, body = Vec<Volume>), (status = "default", body = ErrorBody)))]
pub async fn volume_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<VolumeCreate>,
) -> Created<Vec<Volume>> {
    accepted(app::volumes::volume_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/volumes/{id}", operation_id = "volume_view", tag = "volumes",
    params(("id" = Uuid, Path)), responses((status = 200, body = Volume), (status = "default", body = ErrorBody)))]
pub async fn volume_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Volume> {
    Ok(axum::Json(
        app::volumes::volume_view(&app, &ctx.p, id).await?,
    ))
}

/// Rename or re-describe a volume.
#[utoipa::path(patch, path = "/v1/volumes/{id}", operation_id = "volume_update", tag = "volumes",
    params(("id" = Uuid, Path)), request_body = VolumeUpdate, responses((status = 200, body = Volume), (status = "default", body = ErrorBody)))]
pub async fn volume_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<VolumeUpdate>,
) -> Ok<Volume> {
    Ok(axum::Json(
        app::volumes::volume_update(&app, &ctx.p, id, b).await?,
    ))
}

/// Delete a detached volume (its file goes once the host confirms; with the recycle bin on,
/// it is kept there until restored or purged). A volume with snapshots needs `cascade=true`.
#[utoipa::path(delete, path = "/v1/volumes/{id}", operation_id = "volume_delete", tag = "volumes",
    params(("id" = Uuid, Path), VolumeDeleteParams), responses((status = 202), (status = "default", body = ErrorBody)))]
pub async fn volume_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Query(f): Query<VolumeDeleteParams>,
) -> Result<StatusCode> {
    app::recycle::volume_delete(&app, &ctx.p, id, f.cascade).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Attach to an instance on the same host (hot-plugged while it runs). A shareable volume
/// attaches to up to 16 instances.
#[utoipa::path(post, path = "/v1/volumes/{id}/attach", operation_id = "volume_attach", tag = "volumes",
    params(("id" = Uuid, Path)), request_body = VolumeAttach, responses((status = 202, body = Volume), (status = "default", body = ErrorBody)))]
pub async fn volume_attach(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<VolumeAttach>,
) -> Created<Volume> {
    accepted(app::volumes::volume_attach(&app, &ctx.p, id, b).await?)
}

/// Detach from an instance (hot-unplugged while it runs).
#[utoipa::path(post, path = "/v1/volumes/{id}/detach", operation_id = "volume_detach", tag = "volumes",
    params(("id" = Uuid, Path)), request_body = VolumeDetach, responses((status = 202, body = Volume), (status = "default", body = ErrorBody)))]
pub async fn volume_detach(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<VolumeDetach>,
) -> Created<Volume> {
    accepted(app::volumes::volume_detach(&app, &ctx.p, id, b).await?)
}

/// Grow a volume, online when attached (the guest sees the new size).
#[utoipa::path(post, path = "/v1/volumes/{id}/extend", operation_id = "volume_extend", tag = "volumes",
    params(("id" = Uuid, Path)), request_body = VolumeExtend, responses((status = 202, body = Volume), (status = "default", body = ErrorBody)))]
pub async fn volume_extend(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<VolumeExtend>,
) -> Created<Volume> {
    accepted(app::volumes::volume_extend(&app, &ctx.p, id, b).await?)
}

/// Roll a detached volume back to one of its snapshots.
#[utoipa::path(post, path = "/v1/volumes/{id}/revert", operation_id = "volume_revert", tag = "volumes",
    params(("id" = Uuid, Path)), request_body = VolumeRevert, responses((status = 202, body = Volume), (status = "default", body = ErrorBody)))]
pub async fn volume_revert(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<VolumeRevert>,
) -> Created<Volume> {
    accepted(app::volumes::volume_revert(&app, &ctx.p, id, b).await?)
}

#[utoipa::path(get, path = "/v1/snapshots", operation_id = "snapshot_list", tag = "snapshots",
    params(ListParams, SnapshotFilter), responses((status = 200, body = Page<Snapshot>), (status = "default", body = ErrorBody)))]
pub async fn snapshot_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<SnapshotFilter>,
) -> Ok<Page<Snapshot>> {
    Ok(axum::Json(
        app::volumes::snapshot_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Snapshot a volume (attached or not); `available` once the host has taken it.
#[utoipa::path(post, path = "/v1/snapshots", operation_id = "snapshot_create", tag = "snapshots",
    request_body = SnapshotCreate, responses((status = 202, body = Snapshot), (status = "default", body = ErrorBody)))]
pub async fn snapshot_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<SnapshotCreate>,
) -> Created<Snapshot> {
    accepted(app::volumes::snapshot_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/snapshots/{id}", operation_id = "snapshot_view", tag = "snapshots",
    params(("id" = Uuid, Path)), responses((status = 200, body = Snapshot), (status = "default", body = ErrorBody)))]
pub async fn snapshot_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Snapshot> {
    Ok(axum::Json(
        app::volumes::snapshot_view(&app, &ctx.p, id).await?,
    ))
}

/// Rename or re-describe a snapshot.
#[utoipa::path(patch, path = "/v1/snapshots/{id}", operation_id = "snapshot_update", tag = "snapshots",
    params(("id" = Uuid, Path)), request_body = VolumeUpdate, responses((status = 200, body = Snapshot), (status = "default", body = ErrorBody)))]
pub async fn snapshot_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<VolumeUpdate>,
) -> Ok<Snapshot> {
    Ok(axum::Json(
        app::volumes::snapshot_update(&app, &ctx.p, id, b).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/snapshots/{id}", operation_id = "snapshot_delete", tag = "snapshots",
    params(("id" = Uuid, Path)), responses((status = 202), (status = "default", body = ErrorBody)))]
pub async fn snapshot_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::volumes::snapshot_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(get, path = "/v1/backups", operation_id = "backup_list", tag = "backups",
    params(ListParams, BackupFilter), responses((status = 200, body = Page<Backup>), (status = "default", body = ErrorBody)))]
pub async fn backup_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<BackupFilter>,
) -> Ok<Page<Backup>> {
    Ok(axum::Json(
        app::volumes::backup_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Back up a volume now: a full copy kept apart from it. Restore with `volume_create`
/// and `backup_id`.
#[utoipa::path(post, path = "/v1/backups", operation_id = "backup_create", tag = "backups",
    request_body = BackupCreate, responses((status = 202, body = Backup), (status = "default", body = ErrorBody)))]
pub async fn backup_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<BackupCreate>,
) -> Created<Backup> {
    accepted(app::volumes::backup_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/backups/{id}", operation_id = "backup_view", tag = "backups",
    params(("id" = Uuid, Path)), responses((status = 200, body = Backup), (status = "default", body = ErrorBody)))]
pub async fn backup_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Backup> {
    Ok(axum::Json(
        app::volumes::backup_view(&app, &ctx.p, id).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/backups/{id}", operation_id = "backup_delete", tag = "backups",
    params(("id" = Uuid, Path)), responses((status = 202), (status = "default", body = ErrorBody)))]
pub async fn backup_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::volumes::backup_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(get, path = "/v1/backup-policies", operation_id = "backup_policy_list", tag = "backups",
    params(ListParams, BackupPolicyFilter), responses((status = 200, body = Page<BackupPolicy>), (status = "default", body = ErrorBody)))]
pub async fn backup_policy_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<BackupPolicyFilter>,
) -> Ok<Page<BackupPolicy>> {
    Ok(axum::Json(
        app::volumes::backup_policy_list(&app, &ctx.p, q, f).await?,
    ))
}

/// A schedule that backs up volumes (listed ones and those of listed instances) and keeps
/// the newest copies.
#[utoipa::path(post, path = "/v1/backup-policies", operation_id = "backup_policy_create", tag = "backups",
    request_body = BackupPolicyCreate, responses((status = 201, body = BackupPolicy), (status = "default", body = ErrorBody)))]
pub async fn backup_policy_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<BackupPolicyCreate>,
) -> Created<BackupPolicy> {
    created(app::volumes::backup_policy_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/backup-policies/{id}", operation_id = "backup_policy_view", tag = "backups",
    params(("id" = Uuid, Path)), responses((status = 200, body = BackupPolicy), (status = "default", body = ErrorBody)))]
pub async fn backup_policy_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<BackupPolicy> {
    Ok(axum::Json(
        app::volumes::backup_policy_view(&app, &ctx.p, id).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/backup-policies/{id}", operation_id = "backup_policy_update", tag = "backups",
    params(("id" = Uuid, Path)), request_body = BackupPolicyUpdate, responses((status = 200, body = BackupPolicy), (status = "default", body = ErrorBody)))]
pub async fn backup_policy_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<BackupPolicyUpdate>,
) -> Ok<BackupPolicy> {
    Ok(axum::Json(
        app::volumes::backup_policy_update(&app, &ctx.p, id, b).await?,
    ))
}

/// Delete a policy; the backups it made stay.
#[utoipa::path(delete, path = "/v1/backup-policies/{id}", operation_id = "backup_policy_delete", tag = "backups",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn backup_policy_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::volumes::backup_policy_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run a policy now, whatever its schedule.
#[utoipa::path(post, path = "/v1/backup-policies/{id}/run", operation_id = "backup_policy_run", tag = "backups",
    params(("id" = Uuid, Path)), responses((status = 202, body = BackupPolicy), (status = "default", body = ErrorBody)))]
pub async fn backup_policy_run(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Created<BackupPolicy> {
    accepted(app::volumes::backup_policy_run(&app, &ctx.p, id).await?)
}
