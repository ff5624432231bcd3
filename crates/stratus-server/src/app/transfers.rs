//! Resource transfer (spec 8.3.1.4 (2)): an administrator hands an instance, volume,
//! elastic IP or bucket to another project. Nothing may tie it to the old project — an
//! instance with NICs or attached volumes, an attached volume or one with snapshots, a bound
//! address — and its quota moves in the same transaction as its owner.

use stratus_api::{QuotaResource, Transfer, TransferCreate};
use uuid::Uuid;

use super::App;
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::{Move, QuotaDelta, VolumeRow};

/// The owner chain of a project: the project, its VDC and the VDCs above.
fn full(project: Uuid, chain: &[Uuid]) -> Vec<Uuid> {
    let mut v = vec![project];
    v.extend_from_slice(chain);
    v
}

/// Transferring is administering both projects (`project.write` at each: VDC and platform
/// administrators), not merely using them.
fn may_transfer(p: &Principal, project: Uuid, chain: &[Uuid]) -> bool {
    p.can(Perm::ProjectWrite, &Target::Project { id: project, chain })
}

pub async fn resource_transfer(app: &App, p: &Principal, b: TransferCreate) -> Result<Transfer> {
    let id = b.resource_id;
    // What is in the recycle bin is deleted as far as the API goes.
    if app.store.is_recycled(id).await? {
        return Err(Error::not_found("resource", id));
    }
    // What it is and where it lives; 404 unless the caller sees it.
    let (kind, name, from, from_vdc, quota, table, guard) = if let Some(row) =
        app.store.instance_get(id).await?
    {
        let i = &row.api;
        if !app.store.ports_of_instance(id).await?.is_empty() || !i.volumes.is_empty() {
            return Err(Error::conflict(format!(
                "instance {id} has NICs or volumes in its project; detach them first"
            )));
        }
        (
                "instance",
                i.name.clone(),
                i.project_id,
                i.vdc_id,
                row.flavor().quota(1),
                "instances",
                "quota_held = 1 AND boot_volume_id IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM ports WHERE ports.instance_id = instances.id) \
                 AND NOT EXISTS (SELECT 1 FROM volume_attachments a WHERE a.instance_id = instances.id)",
            )
    } else if let Some(row) = app.store.volume_get(id).await? {
        let v = &row.api;
        (
                "volume",
                v.name.clone(),
                v.project_id,
                v.vdc_id,
                VolumeRow::quota(v.size_gib, 1),
                "volumes",
                "status = 'available' AND quota_held = 1 \
                 AND NOT EXISTS (SELECT 1 FROM volume_attachments a WHERE a.volume_id = volumes.id) \
                 AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.volume_id = volumes.id)",
            )
    } else if let Some(e) = app.store.elastic_ip_get(id).await? {
        (
            "elastic_ip",
            e.address.clone(),
            e.project_id,
            e.vdc_id,
            vec![QuotaDelta {
                resource: QuotaResource::ElasticIps,
                amount: 1,
            }],
            "elastic_ips",
            "port_id IS NULL",
        )
    } else if let Some(bk) = app.store.bucket_by_id(id).await? {
        (
            "bucket",
            bk.name.clone(),
            bk.project_id,
            bk.vdc_id,
            vec![
                QuotaDelta {
                    resource: QuotaResource::Buckets,
                    amount: 1,
                },
                QuotaDelta {
                    resource: QuotaResource::ObjectStorageBytes,
                    amount: bk.used_bytes,
                },
                QuotaDelta {
                    resource: QuotaResource::Objects,
                    amount: bk.used_objects,
                },
            ],
            "buckets",
            "1 = 1",
        )
    } else {
        return Err(Error::not_found("resource", id));
    };
    let from_chain = app.store.vdc_chain(from_vdc).await?;
    let source = Target::Project {
        id: from,
        chain: &from_chain,
    };
    if !p.can(Perm::ResourceRead, &source) {
        return Err(Error::not_found("resource", id));
    }
    if !may_transfer(p, from, &from_chain) {
        return Err(Error::forbidden(format!(
            "transferring {kind} {id} needs {} on its project",
            Perm::ProjectWrite.as_str()
        )));
    }
    let (to, to_chain) = app
        .project_visible(p, b.project_id)
        .await
        .map_err(|_| Error::invalid("project_id", &format!("no project {}", b.project_id)))?;
    if !may_transfer(p, to.id, &to_chain) {
        return Err(Error::forbidden(format!(
            "transferring to project {} needs {} there",
            to.id,
            Perm::ProjectWrite.as_str()
        )));
    }
    if to.id == from {
        return Err(Error::invalid(
            "project_id",
            "is the resource's project already",
        ));
    }
    if kind == "volume"
        && !matches!(
            app.store.volume_get(id).await?.map(|v| v.api.status),
            Some(stratus_api::VolumeStatus::Available)
        )
    {
        return Err(Error::conflict(format!(
            "volume {id} must be available (not attached, not busy) to be transferred"
        )));
    }
    app.store
        .resource_move(Move {
            table,
            guard,
            id,
            from: &full(from, &from_chain),
            to: &full(to.id, &to_chain),
            to_vdc: to.vdc_id,
            quota,
        })
        .await
        .map_err(|e| match e {
            Error::Conflict(_) => Error::conflict(format!(
                "{kind} {id} is tied to its project (attached, bound, with snapshots, or busy); free it first"
            )),
            other => other,
        })?;
    Ok(Transfer {
        kind: kind.into(),
        resource_id: id,
        name,
        from_project_id: from,
        to_project_id: to.id,
        to_vdc_id: to.vdc_id,
    })
}
