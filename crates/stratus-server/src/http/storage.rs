//! Handlers for object storage administration (the data path is the S3 endpoint).

use axum::extract::State;
use stratus_api::*;
use uuid::Uuid;

use super::extract::{Ctx, Json, Path, Query};
use crate::app::{self, AppRef};
use crate::error::Result;

type Ok<T> = Result<axum::Json<T>>;

/// Buckets the caller may see, with usage.
#[utoipa::path(get, path = "/v1/buckets", operation_id = "bucket_list", tag = "buckets",
    params(ProjectScope),
    responses((status = 200, body = Vec<BucketInfo>), (status = "default", body = ErrorBody)))]
pub async fn bucket_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(f): Query<ProjectScope>,
) -> Ok<Vec<BucketInfo>> {
    Ok(axum::Json(
        app::buckets::bucket_list(&app, &ctx.p, f).await?,
    ))
}

#[utoipa::path(get, path = "/v1/buckets/{id}", operation_id = "bucket_view", tag = "buckets",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = BucketInfo), (status = "default", body = ErrorBody)))]
pub async fn bucket_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<BucketInfo> {
    Ok(axum::Json(
        app::buckets::bucket_view(&app, &ctx.p, id).await?,
    ))
}

/// Set a bucket's own capacity and object-count limits (project and VDC quotas still apply).
#[utoipa::path(put, path = "/v1/buckets/{id}/quota", operation_id = "bucket_quota_update", tag = "buckets",
    params(("id" = Uuid, Path)), request_body = BucketQuotaUpdate,
    responses((status = 200, body = BucketInfo), (status = "default", body = ErrorBody)))]
pub async fn bucket_quota_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<BucketQuotaUpdate>,
) -> Ok<BucketInfo> {
    Ok(axum::Json(
        app::buckets::bucket_quota_update(&app, &ctx.p, id, b).await?,
    ))
}
