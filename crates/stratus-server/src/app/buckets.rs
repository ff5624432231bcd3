//! Object storage buckets as operators see them: usage and per-bucket quotas. Buckets are
//! filled through the S3 endpoint (`crate::s3`); they are created there, or by an order
//! (`bucket_create` here, the same rules as S3's CreateBucket).

use stratus_api::{BucketInfo, BucketQuotaUpdate, ProjectScope};
use uuid::Uuid;

use super::{require, require_seen, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::BucketRow;

fn info(b: BucketRow) -> BucketInfo {
    BucketInfo {
        id: b.id,
        name: b.name,
        project_id: b.project_id,
        vdc_id: b.vdc_id,
        region: b.region,
        versioning: b.versioning,
        has_policy: b.policy.is_some(),
        has_lifecycle: b.lifecycle.is_some(),
        used_bytes: b.used_bytes,
        used_objects: b.used_objects,
        read_requests: b.read_requests,
        write_requests: b.write_requests,
        quota_bytes: (b.quota_bytes >= 0).then_some(b.quota_bytes),
        quota_objects: (b.quota_objects >= 0).then_some(b.quota_objects),
        created_by: b.created_by,
        created_at: crate::store::parse_time(&b.created_at).unwrap_or_default(),
    }
}

async fn visible(app: &App, p: &Principal, b: &BucketRow) -> Result<Option<Vec<Uuid>>> {
    let chain = app.store.vdc_chain(b.vdc_id).await?;
    let target = Target::Project {
        id: b.project_id,
        chain: &chain,
    };
    Ok(p.can(Perm::ResourceRead, &target).then_some(chain))
}

pub async fn bucket_list(app: &App, p: &Principal, f: ProjectScope) -> Result<Vec<BucketInfo>> {
    let mut out = Vec::new();
    for b in app.store.bucket_list().await? {
        if f.project_id.is_some_and(|pid| pid != b.project_id) {
            continue;
        }
        if visible(app, p, &b).await?.is_some() {
            out.push(info(b));
        }
    }
    Ok(out)
}

async fn bucket_visible(app: &App, p: &Principal, id: Uuid) -> Result<(BucketRow, Vec<Uuid>)> {
    let b = app
        .store
        .bucket_by_id(id)
        .await?
        .ok_or_else(|| Error::not_found("bucket", id))?;
    if app.store.is_recycled(id).await? {
        return Err(Error::not_found("bucket", id));
    }
    match visible(app, p, &b).await? {
        Some(chain) => Ok((b, chain)),
        None => Err(Error::not_found("bucket", id)),
    }
}

pub async fn bucket_view(app: &App, p: &Principal, id: Uuid) -> Result<BucketInfo> {
    Ok(info(bucket_visible(app, p, id).await?.0))
}

/// Set a bucket's own limits (whoever sets the project's quotas).
pub async fn bucket_quota_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: BucketQuotaUpdate,
) -> Result<BucketInfo> {
    let (bucket, chain) = bucket_visible(app, p, id).await?;
    require(
        p,
        Perm::QuotaWrite,
        &Target::Project {
            id: bucket.project_id,
            chain: &chain,
        },
        "bucket",
        id,
    )?;
    for (field, v) in [("bytes", b.bytes), ("objects", b.objects)] {
        if v.is_some_and(|v| v < 0) {
            return Err(Error::invalid(
                field,
                "must not be negative (null = unlimited)",
            ));
        }
    }
    app.store
        .bucket_set_quota(id, b.bytes.unwrap_or(-1), b.objects.unwrap_or(-1))
        .await?;
    bucket_view(app, p, id).await
}

/// An empty bucket of a project (an order's: S3 clients create theirs with CreateBucket).
pub async fn bucket_create(
    app: &App,
    p: &Principal,
    project: Uuid,
    name: &str,
) -> Result<BucketInfo> {
    if !crate::s3::service::valid_bucket_name(name) {
        return Err(Error::invalid(
            "name",
            "bucket names are 3–63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
        ));
    }
    let (proj, chain) = app
        .project_visible(p, project)
        .await
        .map_err(|_| Error::not_found("project", project))?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &Target::Project {
            id: project,
            chain: &chain,
        },
        "project",
        project,
    )?;
    if app.store.bucket_get(name).await?.is_some() {
        return Err(Error::conflict(format!(
            "a bucket named {name:?} exists (names are global)"
        )));
    }
    let mut full = vec![project];
    full.extend(chain);
    let b = app
        .store
        .bucket_create(
            name,
            project,
            proj.vdc_id,
            &full,
            &app.config.region,
            "",
            &p.name,
        )
        .await?;
    Ok(info(b))
}

/// Delete an empty bucket (as S3's DeleteBucket).
pub async fn bucket_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let (b, chain) = bucket_visible(app, p, id).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &Target::Project {
            id: b.project_id,
            chain: &chain,
        },
        "bucket",
        id,
    )?;
    let mut full = vec![b.project_id];
    full.extend(chain);
    app.store.bucket_delete(&b, &full).await
}
