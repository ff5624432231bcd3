//! The recycle bin (spec 8.3.8 (6)). With `recycle_bin.retention_secs` set, deleting an
//! instance or a volume through the API, or a bucket through S3, puts it in the bin
//! instead: an instance is stopped, all keep their quota, data and settings and disappear
//! from lists, views and S3 (a bucket's name stays taken). An administrator or
//! the owner restores it (back as it was, an instance stopped) or purges it at once; the
//! purger deletes what has stayed longer than the retention.
//!
//! Deletes the platform does itself — a stack removing its resources, an order undone or
//! released — are final: they go around the bin.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use stratus_api::{
    InstanceAction, InstanceActionKind, InstanceStatus, RecycleFilter, RecycledResource,
    VolumeStatus,
};
use uuid::Uuid;

use super::audit::Background;
use super::{require_seen, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};

fn enabled(app: &App) -> bool {
    app.config.recycle_bin.retention_secs > 0
}

fn entry(
    app: &App,
    p: &Principal,
    id: Uuid,
    kind: &str,
    name: &str,
    project: Uuid,
    vdc: Uuid,
) -> RecycledResource {
    let now = Utc::now();
    // Retention is capped at a century, so the arithmetic cannot overflow.
    const CENTURY_SECS: i64 = 36_500 * 86_400;
    let secs = i64::try_from(app.config.recycle_bin.retention_secs)
        .unwrap_or(CENTURY_SECS)
        .min(CENTURY_SECS);
    let purge_at = now + chrono::Duration::seconds(secs);
    RecycledResource {
        id,
        kind: kind.into(),
        name: name.into(),
        project_id: project,
        vdc_id: vdc,
        deleted_by: p.name.clone(),
        deleted_at: now,
        purge_at,
    }
}

/// `DELETE /v1/instances/{id}`: into the bin when it is on (the guest is powered off), or
/// deleted at once.
pub async fn instance_delete(app: &App, p: &Principal, id: Uuid, request_id: &str) -> Result<()> {
    if !enabled(app) {
        return super::instances::instance_delete(app, p, id, request_id).await;
    }
    let (row, _) = super::instances::instance_writable(app, p, id).await?;
    let i = &row.api;
    if matches!(
        i.status,
        InstanceStatus::Running | InstanceStatus::Paused | InstanceStatus::Error
    ) && i.task.is_none()
    {
        let stop = InstanceAction {
            action: InstanceActionKind::Stop,
            hard: true,
            timeout_secs: None,
            flavor: None,
        };
        super::instances::instance_action(app, p, id, stop, request_id).await?;
    }
    let e = entry(app, p, id, "instance", &i.name, i.project_id, i.vdc_id);
    app.store.recycle_insert(&e).await
}

/// `DELETE /v1/volumes/{id}`: into the bin when it is on (it must be detached, as for a
/// delete), or deleted at once.
pub async fn volume_delete(app: &App, p: &Principal, id: Uuid, cascade: bool) -> Result<()> {
    if !enabled(app) {
        return super::volumes::volume_delete(app, p, id, cascade).await;
    }
    let (row, _) = super::volumes::volume_writable(app, p, id).await?;
    let v = &row.api;
    if !matches!(v.status, VolumeStatus::Available | VolumeStatus::Error) {
        return Err(Error::conflict(format!(
            "volume {id} is {}; only a detached volume can be deleted",
            v.status.as_str()
        )));
    }
    let snaps = app.store.volume_snapshot_count(id).await?;
    if snaps > 0 && !cascade {
        return Err(Error::conflict(format!(
            "volume {id} has {snaps} snapshot(s); delete them first, or delete with cascade=true"
        )));
    }
    let e = entry(app, p, id, "volume", &v.name, v.project_id, v.vdc_id);
    app.store.recycle_insert(&e).await
}

/// S3's DeleteBucket: into the bin when it is on (the bucket must be empty, as for a
/// delete: the bin keeps its name, policy, lifecycle and ACL); false when the bin is off and
/// the caller deletes it for good.
pub async fn bucket_recycle(
    app: &App,
    deleted_by: &str,
    b: &crate::store::BucketRow,
) -> Result<bool> {
    if !enabled(app) {
        return Ok(false);
    }
    if app.store.bucket_object_count(b.id).await? > 0 {
        return Err(Error::conflict(format!("bucket {} is not empty", b.name)));
    }
    let who = Principal::system(deleted_by);
    let e = entry(app, &who, b.id, "bucket", &b.name, b.project_id, b.vdc_id);
    app.store.recycle_insert(&e).await?;
    Ok(true)
}

pub async fn recycle_list(
    app: &App,
    p: &Principal,
    f: RecycleFilter,
) -> Result<Vec<RecycledResource>> {
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(vec![]);
    }
    app.store.recycle_list(&vis, f.project_id).await
}

/// An entry the caller may act on: seen (else 404) and writable (else 403).
async fn writable(app: &App, p: &Principal, id: Uuid) -> Result<RecycledResource> {
    let e = app
        .store
        .recycle_get(id)
        .await?
        .ok_or_else(|| Error::not_found("recycle bin entry", id))?;
    let chain = app.store.vdc_chain(e.vdc_id).await?;
    let target = Target::Project {
        id: e.project_id,
        chain: &chain,
    };
    if !p.can(Perm::ResourceRead, &target) {
        return Err(Error::not_found("recycle bin entry", id));
    }
    require_seen(p, Perm::ResourceWrite, &target, "recycle bin entry", id)?;
    Ok(e)
}

/// Take a resource out of the bin: it is back as it was (an instance stays stopped).
pub async fn recycle_restore(app: &App, p: &Principal, id: Uuid) -> Result<RecycledResource> {
    let e = writable(app, p, id).await?;
    if !app.store.recycle_remove(id).await? {
        return Err(Error::not_found("recycle bin entry", id));
    }
    Ok(e)
}

/// Delete a resource in the bin now.
pub async fn recycle_purge(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let e = writable(app, p, id).await?;
    purge(app, &e).await
}

/// Delete for good, on the platform's behalf (the deleter may be gone by now); the entry
/// goes once the delete is accepted.
async fn purge(app: &App, e: &RecycledResource) -> Result<()> {
    let rid = format!("recycle-{}", e.id);
    match e.kind.as_str() {
        "instance" => {
            if let Some(row) = app.store.instance_get(e.id).await? {
                if app.store.instance_delete(e.id, "recycle-bin", &rid).await? {
                    app.hub.forget(e.id);
                }
                if let Some(h) = row.api.host_id {
                    app.hub.notify(h);
                }
            }
        }
        "volume" => {
            if let Some(row) = app.store.volume_get(e.id).await? {
                app.store.volume_delete(e.id, true).await?;
                if let Some(h) = row.api.host_id {
                    app.hub.notify(h);
                }
            }
        }
        "bucket" => {
            if let Some(b) = app.store.bucket_by_id(e.id).await? {
                let mut chain = vec![b.project_id];
                chain.extend(app.store.vdc_chain(b.vdc_id).await?);
                app.store.bucket_delete(&b, &chain).await?;
            }
        }
        other => return Err(Error::internal(format!("unknown recycled kind {other}"))),
    }
    app.store.recycle_remove(e.id).await?;
    Ok(())
}

/// Purge what has stayed its time, every `purge_check_secs`; each purge is audited.
pub fn spawn_purger(app: Arc<App>) {
    if !enabled(&app) {
        return;
    }
    let every = Duration::from_secs(app.config.recycle_bin.purge_check_secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let due = match app.store.recycle_due(Utc::now()).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the recycle bin");
                    continue;
                }
            };
            for e in due {
                let outcome = purge(&app, &e).await;
                let ctx = Background {
                    method: "RECYCLE",
                    request_id: format!("recycle-{}", e.id),
                    path: format!("/v1/recycle-bin/{}", e.id),
                    vdc_id: e.vdc_id,
                };
                let system = Principal::system("recycle-bin");
                let (ok, message) = match &outcome {
                    Ok(()) => (
                        true,
                        format!("{} {} purged after its retention", e.kind, e.name),
                    ),
                    Err(err) => (false, format!("purging {} {}: {err}", e.kind, e.name)),
                };
                super::audit::background(
                    &app,
                    &ctx,
                    &system,
                    "recycle_purge",
                    (&e.kind, e.id.to_string()),
                    ok,
                    message,
                )
                .await;
            }
        }
    });
}
