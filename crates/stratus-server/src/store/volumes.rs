//! Block storage: volume types, volumes and their attachments, snapshots, backups and
//! backup policies — rows, the desired state agents converge to, and what their reports
//! change.
//!
//! A volume's status is settled from its attachments whenever no other operation is under
//! way: any attachment `attaching` → `attaching`, any `detaching` → `detaching`, any
//! attachment → `in_use`, none → `available`. Operations that need the agent (create,
//! extend, revert, delete) hold their own status until the report of their generation.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;
use stratus_api::{
    Backup, BackupPolicy, BackupStatus, DesiredAttachment, DesiredBackup, DesiredRevert,
    DesiredVolume, QuotaResource, Snapshot, SnapshotStatus, Volume, VolumeAttachment, VolumeFormat,
    VolumeSource, VolumeStatus, VolumeType,
};
use uuid::Uuid;

use super::instances::{metering_event, vdc_chain_tx, Tx};
use super::quotas::QuotaDelta;
use super::{
    col_bool, col_i64, col_opt_str, col_opt_time, col_opt_uuid, col_str, col_time, col_uuid,
    is_foreign_key_violation, is_unique_violation, now_text, time_text, Arg, Conds, Paging, Store,
};
use crate::authz::Visibility;
use crate::error::{Error, Result};

/// The spec's tiers (5.2.2.1): name, IOPS, MB/s, description.
pub const BUILTIN_VOLUME_TYPES: [(&str, i64, i64, &str); 3] = [
    (
        "normal",
        800,
        100,
        "普通 I/O: large capacity, moderate I/O (at most 800 IOPS)",
    ),
    (
        "high",
        2500,
        150,
        "高 I/O: mainstream high-performance workloads (at most 2,500 IOPS)",
    ),
    (
        "ultra",
        10000,
        350,
        "超高 I/O: I/O-intensive workloads (at most 10,000 IOPS)",
    ),
];

/// Attachments per volume (spec 5.3.2.1: a disk attaches to ≥ 16 hosts) and data volumes
/// per instance (spec: ≥ 10 disks per VM).
pub const MAX_ATTACHMENTS: i64 = 16;
pub const MAX_INSTANCE_VOLUMES: i64 = 16;
/// Snapshots per volume (spec: ≥ 32).
pub const MAX_SNAPSHOTS: i64 = 128;

const TYPE_COLS: &str = "id, name, description, max_iops, max_mbps, builtin, created_at";

fn type_from_row(row: &AnyRow) -> Result<VolumeType> {
    Ok(VolumeType {
        id: col_uuid(row, "id")?,
        name: col_str(row, "name")?,
        description: col_str(row, "description")?,
        max_iops: col_i64(row, "max_iops")?,
        max_mbps: col_i64(row, "max_mbps")?,
        builtin: col_bool(row, "builtin")?,
        created_at: col_time(row, "created_at")?,
    })
}

const COLS: &str = "v.id, v.name, v.description, v.project_id, v.vdc_id, v.volume_type_id, \
    t.name AS type_name, t.max_iops, t.max_mbps, v.size_gib, v.format, v.shareable, v.bootable, \
    v.source_volume_id, v.source_snapshot_id, v.source_backup_id, v.image_id, v.image_sha256, \
    v.availability_zone, v.host_id, h.name AS host_name, v.status, v.status_reason, v.generation, \
    v.applied_generation, v.actual_size_gib, v.allocated_bytes, v.revert_serial, \
    v.revert_snapshot_id, v.revert_applied, v.deleted, v.quota_held, v.host_held, v.created_by, \
    v.created_at, v.updated_at, \
    (SELECT COUNT(*) FROM snapshots s WHERE s.volume_id = v.id) AS snapshot_count";

const FROM: &str = "volumes v JOIN volume_types t ON t.id = v.volume_type_id \
    LEFT JOIN hosts h ON h.id = v.host_id";

/// Everything stored about a volume.
#[derive(Debug, Clone)]
pub struct VolumeRow {
    pub api: Volume,
    pub format: VolumeFormat,
    pub source_volume_id: Option<Uuid>,
    pub image_sha256: Option<String>,
    pub generation: i64,
    pub applied_generation: i64,
    pub actual_size_gib: i64,
    pub allocated_bytes: i64,
    pub revert_serial: i64,
    pub revert_snapshot_id: Option<Uuid>,
    pub revert_applied: i64,
    pub deleted: bool,
    pub quota_held: bool,
    pub host_held: bool,
}

impl VolumeRow {
    /// Quota a volume of `size_gib` takes: one volume and its GiB of storage.
    pub(crate) fn quota(size_gib: i64, sign: i64) -> Vec<QuotaDelta> {
        vec![
            QuotaDelta {
                resource: QuotaResource::Volumes,
                amount: sign,
            },
            QuotaDelta {
                resource: QuotaResource::StorageGib,
                amount: sign * size_gib,
            },
        ]
    }
}

fn volume_from_row(row: &AnyRow) -> Result<VolumeRow> {
    let status = col_str(row, "status")?;
    let api = Volume {
        id: col_uuid(row, "id")?,
        name: col_str(row, "name")?,
        description: col_str(row, "description")?,
        project_id: col_uuid(row, "project_id")?,
        vdc_id: col_uuid(row, "vdc_id")?,
        status: VolumeStatus::parse(&status)
            .ok_or_else(|| Error::internal(format!("bad volume status {status:?}")))?,
        status_reason: col_str(row, "status_reason")?,
        size_gib: col_i64(row, "size_gib")?,
        volume_type: col_str(row, "type_name")?,
        volume_type_id: col_uuid(row, "volume_type_id")?,
        max_iops: col_i64(row, "max_iops")?,
        max_mbps: col_i64(row, "max_mbps")?,
        shareable: col_bool(row, "shareable")?,
        bootable: col_bool(row, "bootable")?,
        source_snapshot_id: col_opt_uuid(row, "source_snapshot_id")?,
        source_backup_id: col_opt_uuid(row, "source_backup_id")?,
        image_id: col_opt_uuid(row, "image_id")?,
        availability_zone: col_str(row, "availability_zone")?,
        host_id: col_opt_uuid(row, "host_id")?,
        host_name: col_opt_str(row, "host_name")?,
        attachments: Vec::new(),
        snapshot_count: col_i64(row, "snapshot_count")?,
        created_by: col_str(row, "created_by")?,
        created_at: col_time(row, "created_at")?,
        updated_at: col_time(row, "updated_at")?,
    };
    Ok(VolumeRow {
        api,
        format: if col_str(row, "format")? == "raw" {
            VolumeFormat::Raw
        } else {
            VolumeFormat::Qcow2
        },
        source_volume_id: col_opt_uuid(row, "source_volume_id")?,
        image_sha256: col_opt_str(row, "image_sha256")?,
        generation: col_i64(row, "generation")?,
        applied_generation: col_i64(row, "applied_generation")?,
        actual_size_gib: col_i64(row, "actual_size_gib")?,
        allocated_bytes: col_i64(row, "allocated_bytes")?,
        revert_serial: col_i64(row, "revert_serial")?,
        revert_snapshot_id: col_opt_uuid(row, "revert_snapshot_id")?,
        revert_applied: col_i64(row, "revert_applied")?,
        deleted: col_bool(row, "deleted")?,
        quota_held: col_bool(row, "quota_held")?,
        host_held: col_bool(row, "host_held")?,
    })
}

/// The desired state of one volume, for its host's agent.
pub fn desired_volume(row: &VolumeRow, snapshots: Vec<Uuid>) -> DesiredVolume {
    let source = match (
        row.api.source_snapshot_id,
        row.source_volume_id,
        row.api.source_backup_id,
        row.api.image_id,
    ) {
        (Some(snapshot_id), Some(volume_id), _, _) => Some(VolumeSource::Snapshot {
            volume_id,
            snapshot_id,
        }),
        (_, _, Some(backup_id), _) => Some(VolumeSource::Backup { backup_id }),
        (_, _, _, Some(image_id)) => Some(VolumeSource::Image {
            image_id,
            image_sha256: row.image_sha256.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    DesiredVolume {
        id: row.api.id,
        generation: row.generation,
        size_gib: row.api.size_gib,
        format: row.format,
        source,
        snapshots,
        revert: row.revert_snapshot_id.map(|snapshot_id| DesiredRevert {
            serial: row.revert_serial,
            snapshot_id,
        }),
        deleted: row.deleted,
    }
}

/// The serial a guest sees for a volume (virtio-blk serials are at most 20 bytes).
pub fn volume_serial(id: Uuid) -> String {
    id.simple().to_string()[..20].to_string()
}

const SNAP_COLS: &str = "id, name, description, volume_id, project_id, vdc_id, size_gib, status, \
    status_reason, generation, quota_held, created_by, created_at, updated_at";

/// A snapshot with what only the store needs.
#[derive(Debug, Clone)]
pub struct SnapshotRow {
    pub api: Snapshot,
    pub generation: i64,
    pub quota_held: bool,
}

fn snapshot_from_row(row: &AnyRow) -> Result<SnapshotRow> {
    let status = col_str(row, "status")?;
    Ok(SnapshotRow {
        api: Snapshot {
            id: col_uuid(row, "id")?,
            name: col_str(row, "name")?,
            description: col_str(row, "description")?,
            volume_id: col_uuid(row, "volume_id")?,
            project_id: col_uuid(row, "project_id")?,
            vdc_id: col_uuid(row, "vdc_id")?,
            size_gib: col_i64(row, "size_gib")?,
            status: SnapshotStatus::parse(&status)
                .ok_or_else(|| Error::internal(format!("bad snapshot status {status:?}")))?,
            status_reason: col_str(row, "status_reason")?,
            created_by: col_str(row, "created_by")?,
            created_at: col_time(row, "created_at")?,
            updated_at: col_time(row, "updated_at")?,
        },
        generation: col_i64(row, "generation")?,
        quota_held: col_bool(row, "quota_held")?,
    })
}

const BACKUP_COLS: &str =
    "id, name, volume_id, volume_name, project_id, vdc_id, policy_id, host_id, \
    size_gib, stored_bytes, status, status_reason, deleted, created_by, created_at, updated_at";

fn backup_from_row(row: &AnyRow) -> Result<(Backup, bool)> {
    let status = col_str(row, "status")?;
    Ok((
        Backup {
            id: col_uuid(row, "id")?,
            name: col_str(row, "name")?,
            volume_id: col_uuid(row, "volume_id")?,
            volume_name: col_str(row, "volume_name")?,
            project_id: col_uuid(row, "project_id")?,
            vdc_id: col_uuid(row, "vdc_id")?,
            policy_id: col_opt_uuid(row, "policy_id")?,
            size_gib: col_i64(row, "size_gib")?,
            stored_bytes: col_i64(row, "stored_bytes")?,
            status: BackupStatus::parse(&status)
                .ok_or_else(|| Error::internal(format!("bad backup status {status:?}")))?,
            status_reason: col_str(row, "status_reason")?,
            host_id: col_opt_uuid(row, "host_id")?,
            created_by: col_str(row, "created_by")?,
            created_at: col_time(row, "created_at")?,
            updated_at: col_time(row, "updated_at")?,
        },
        col_bool(row, "deleted")?,
    ))
}

const POLICY_COLS: &str =
    "id, name, project_id, vdc_id, interval_hours, keep, enabled, volume_ids, \
    instance_ids, next_run_at, last_run_at, created_by, created_at, updated_at";

fn policy_from_row(row: &AnyRow) -> Result<BackupPolicy> {
    Ok(BackupPolicy {
        id: col_uuid(row, "id")?,
        name: col_str(row, "name")?,
        project_id: col_uuid(row, "project_id")?,
        vdc_id: col_uuid(row, "vdc_id")?,
        interval_hours: col_i64(row, "interval_hours")?,
        keep: col_i64(row, "keep")?,
        enabled: col_bool(row, "enabled")?,
        volume_ids: serde_json::from_str(&col_str(row, "volume_ids")?).unwrap_or_default(),
        instance_ids: serde_json::from_str(&col_str(row, "instance_ids")?).unwrap_or_default(),
        next_run_at: col_time(row, "next_run_at")?,
        last_run_at: col_opt_time(row, "last_run_at")?,
        created_by: col_str(row, "created_by")?,
        created_at: col_time(row, "created_at")?,
        updated_at: col_time(row, "updated_at")?,
    })
}

/// A new volume, ready to insert.
pub struct NewVolume {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub volume_type_id: Uuid,
    pub size_gib: i64,
    pub shareable: bool,
    pub bootable: bool,
    pub source_volume_id: Option<Uuid>,
    pub source_snapshot_id: Option<Uuid>,
    pub source_backup_id: Option<Uuid>,
    pub image_id: Option<Uuid>,
    pub image_sha256: Option<String>,
    pub availability_zone: String,
    pub created_by: String,
}

/// Filters of a volume list.
#[derive(Debug, Default)]
pub struct VolumeQuery<'a> {
    pub project_id: Option<Uuid>,
    pub vdc_id: Option<Uuid>,
    pub status: Option<&'a str>,
    pub instance_id: Option<Uuid>,
    pub name: Option<&'a str>,
}

/// An attachment as a report settles it: (volume, state, requested generation, boot).
pub type AttachmentRow = (String, String, i64, i64);

/// Attachments of a host's instances, by instance: data volumes, and (at most one) boot volume.
#[derive(Debug, Default)]
pub struct HostAttachments {
    pub data: HashMap<Uuid, Vec<DesiredAttachment>>,
    pub boot: HashMap<Uuid, Vec<DesiredAttachment>>,
}

/// Where a new volume must live (its source is in that host's pool), if anywhere.
#[derive(Debug, Clone, Copy)]
pub enum Placement {
    Anywhere,
    Host(Uuid),
}

impl Store {
    // ------------------------------------------------------------ volume types

    pub async fn volume_type_list(&self) -> Result<Vec<VolumeType>> {
        let rows = sqlx::query(&format!(
            "SELECT {TYPE_COLS} FROM volume_types ORDER BY max_iops, name"
        ))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(type_from_row).collect()
    }

    pub async fn volume_type_create(
        &self,
        name: &str,
        description: &str,
        max_iops: i64,
        max_mbps: i64,
        builtin: bool,
    ) -> Result<VolumeType> {
        let id = Uuid::new_v4();
        let now = now_text();
        sqlx::query(&format!(
            "INSERT INTO volume_types ({TYPE_COLS}, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
        ))
        .bind(id.to_string())
        .bind(name)
        .bind(description)
        .bind(max_iops)
        .bind(max_mbps)
        .bind(builtin as i64)
        .bind(&now)
        .execute(&self.db.write)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("name: a volume type named {name:?} already exists"))
            } else {
                e.into()
            }
        })?;
        self.volume_type_list()
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| Error::internal("volume type vanished after insert"))
    }

    pub async fn volume_type_delete(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM volume_types WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    Error::conflict(format!("volume type {id} is used by volumes"))
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    /// Add any missing built-in tier (idempotent; runs at every start).
    pub async fn volume_type_seed_builtins(&self) -> Result<()> {
        let existing = self.volume_type_list().await?;
        for (name, iops, mbps, description) in BUILTIN_VOLUME_TYPES {
            if !existing.iter().any(|t| t.name == name) {
                self.volume_type_create(name, description, iops, mbps, true)
                    .await?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ volumes

    /// Insert volumes, charging `volumes` and `storage_gib` to the project and every VDC
    /// above it, in one transaction: all of them, or none.
    pub async fn volume_create(&self, chain: &[Uuid], items: &[NewVolume]) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        for n in items {
            Store::quota_charge(&mut tx, chain, &VolumeRow::quota(n.size_gib, 1)).await?;
            let now = now_text();
            sqlx::query(
                "INSERT INTO volumes (id, name, description, project_id, vdc_id, volume_type_id, size_gib, \
                 format, shareable, bootable, source_volume_id, source_snapshot_id, source_backup_id, \
                 image_id, image_sha256, availability_zone, status, quota_held, created_by, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, 'creating', 1, $17, $18, $18)",
            )
            .bind(n.id.to_string())
            .bind(&n.name)
            .bind(&n.description)
            .bind(n.project_id.to_string())
            .bind(n.vdc_id.to_string())
            .bind(n.volume_type_id.to_string())
            .bind(n.size_gib)
            .bind(if n.shareable { "raw" } else { "qcow2" })
            .bind(n.shareable as i64)
            .bind(n.bootable as i64)
            .bind(n.source_volume_id.map(|u| u.to_string()))
            .bind(n.source_snapshot_id.map(|u| u.to_string()))
            .bind(n.source_backup_id.map(|u| u.to_string()))
            .bind(n.image_id.map(|u| u.to_string()))
            .bind(n.image_sha256.as_deref())
            .bind(&n.availability_zone)
            .bind(&n.created_by)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            // Prices are set per volume type by name (the IOPS tiers).
            let type_name: Option<String> =
                sqlx::query_scalar("SELECT name FROM volume_types WHERE id = $1")
                    .bind(n.volume_type_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            volume_metering(
                &mut tx,
                n.id,
                n.project_id,
                n.vdc_id,
                "created",
                serde_json::json!({"size_gib": n.size_gib, "volume_type_id": n.volume_type_id,
                    "volume_type": type_name.unwrap_or_default(), "zone": n.availability_zone}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Take room for the volume in a host's pool: the one its source lives on, or the
    /// emptiest enabled, recently heard-from host of the zone. `None` when nothing fits.
    pub async fn volume_place(
        &self,
        id: Uuid,
        placement: Placement,
        ratio: f64,
        down_after_secs: i64,
    ) -> Result<Option<Uuid>> {
        let mut tx = self.db.write.begin().await?;
        let Some(row) = volume_get_tx(&mut tx, id).await? else {
            return Ok(None);
        };
        let cutoff = time_text(chrono::Utc::now() - chrono::Duration::seconds(down_after_secs));
        let fits = "enabled = 1 AND availability_zone = $1 AND last_heartbeat_at >= $2 \
             AND alloc_volume_gib + $3 <= volume_pool_gib * $4";
        let candidates: Vec<String> = match placement {
            Placement::Host(h) => vec![h.to_string()],
            Placement::Anywhere => {
                sqlx::query_scalar(&format!(
                    "SELECT id FROM hosts WHERE {fits} \
                 ORDER BY (alloc_volume_gib * 1.0) / (volume_pool_gib * 1.0 + 1.0), id LIMIT 8"
                ))
                .bind(&row.api.availability_zone)
                .bind(&cutoff)
                .bind(row.api.size_gib)
                .bind(ratio)
                .fetch_all(&mut *tx)
                .await?
            }
        };
        for host in candidates {
            // Conditional: a concurrent placement may have taken the room.
            let done = sqlx::query(&format!(
                "UPDATE hosts SET alloc_volume_gib = alloc_volume_gib + $3, generation = generation + 1 \
                 WHERE {fits} AND id = $5"
            ))
            .bind(&row.api.availability_zone)
            .bind(&cutoff)
            .bind(row.api.size_gib)
            .bind(ratio)
            .bind(&host)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                sqlx::query(
                    "UPDATE volumes SET host_id = $1, host_held = 1, updated_at = $2 WHERE id = $3",
                )
                .bind(&host)
                .bind(now_text())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Uuid::parse_str(&host)
                    .map(Some)
                    .map_err(|e| Error::internal(format!("host id: {e}")));
            }
        }
        Ok(None)
    }

    /// A volume that could not be made: `error` with the reason, its quota and pool room
    /// given back (it is kept so the user sees why; deleting it removes the row).
    pub async fn volume_fail_create(&self, id: Uuid, reason: &str) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let Some(row) = volume_get_tx(&mut tx, id).await? else {
            return Ok(());
        };
        release_volume(&mut tx, &row).await?;
        sqlx::query(
            "UPDATE volumes SET status = 'error', status_reason = $1, quota_held = 0, host_held = 0, \
             updated_at = $2 WHERE id = $3",
        )
        .bind(reason)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        volume_metering(
            &mut tx,
            id,
            row.api.project_id,
            row.api.vdc_id,
            "failed",
            serde_json::json!({"reason": reason}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn volume_get(&self, id: Uuid) -> Result<Option<VolumeRow>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM {FROM} WHERE v.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        let Some(mut v) = row.map(|r| volume_from_row(&r)).transpose()? else {
            return Ok(None);
        };
        let mut att = self.attachments_of(&[id]).await?;
        v.api.attachments = att.remove(&id).unwrap_or_default();
        Ok(Some(v))
    }

    /// Attachments of the given volumes, in attach order.
    async fn attachments_of(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<VolumeAttachment>>> {
        let mut out: HashMap<Uuid, Vec<VolumeAttachment>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut c = Conds::new();
        c.and(
            Conds::in_list("a.volume_id", ids.len()),
            ids.iter().map(|i| Arg::from(*i)),
        );
        let (sql, args) = c.render(
            "SELECT a.volume_id, a.instance_id, a.state, a.serial, a.attached_at, \
             COALESCE(i.name, '') AS instance_name FROM volume_attachments a \
             LEFT JOIN instances i ON i.id = a.instance_id",
            "ORDER BY a.attached_at, a.instance_id",
            vec![],
        );
        for r in sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?
        {
            out.entry(col_uuid(&r, "volume_id")?)
                .or_default()
                .push(VolumeAttachment {
                    instance_id: col_uuid(&r, "instance_id")?,
                    instance_name: col_str(&r, "instance_name")?,
                    state: col_str(&r, "state")?,
                    serial: col_str(&r, "serial")?,
                    attached_at: col_time(&r, "attached_at")?,
                });
        }
        Ok(out)
    }

    pub async fn volume_list(
        &self,
        vis: &Visibility,
        q: &VolumeQuery<'_>,
        paging: &Paging,
    ) -> Result<(Vec<Volume>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "v.");
        c.and(super::recycle::not_recycled("v.id"), Vec::<Arg>::new());
        if let Some(p) = q.project_id {
            c.and("v.project_id = ?", [Arg::from(p)]);
        }
        if let Some(v) = q.vdc_id {
            c.and(
                "v.vdc_id IN (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = ?)",
                [Arg::from(v)],
            );
        }
        if let Some(s) = q.status {
            c.and("v.status = ?", [Arg::from(s)]);
        }
        if let Some(i) = q.instance_id {
            c.and(
                "v.id IN (SELECT volume_id FROM volume_attachments WHERE instance_id = ?)",
                [Arg::from(i)],
            );
        }
        if let Some(n) = q.name {
            c.and("v.name LIKE ? ESCAPE '\\'", [super::like_contains(n)]);
        }
        let (tail, targs) = paging.apply_to(&mut c, "v.", "v.id");
        let (sql, args) = c.render(&format!("SELECT {COLS} FROM {FROM}"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let mut items = rows
            .iter()
            .map(|r| volume_from_row(r).map(|v| v.api))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<Uuid> = items.iter().map(|v| v.id).collect();
        let mut att = self.attachments_of(&ids).await?;
        for v in &mut items {
            v.attachments = att.remove(&v.id).unwrap_or_default();
        }
        Ok(paging.page(items))
    }

    /// Volumes in a host's pool (including those being removed), for its agent.
    pub async fn volume_rows_on_host(&self, host: Uuid) -> Result<Vec<VolumeRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM {FROM} WHERE v.host_id = $1 ORDER BY v.id"
        ))
        .bind(host.to_string())
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(volume_from_row).collect()
    }

    /// The snapshots that should exist, per volume of a host's pool.
    pub async fn snapshot_ids_on_host(&self, host: Uuid) -> Result<HashMap<Uuid, Vec<Uuid>>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT s.volume_id, s.id FROM snapshots s JOIN volumes v ON v.id = s.volume_id \
             WHERE v.host_id = $1 AND s.status IN ('creating', 'available') ORDER BY s.created_at, s.id",
        )
        .bind(host.to_string())
        .fetch_all(&self.db.read)
        .await?;
        let mut out: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for (v, s) in rows {
            if let (Ok(v), Ok(s)) = (Uuid::parse_str(&v), Uuid::parse_str(&s)) {
                out.entry(v).or_default().push(s);
            }
        }
        Ok(out)
    }

    /// What each instance of a host should have attached: its data volumes in order, and
    /// the volume it boots from.
    pub async fn attachments_on_host(&self, host: Uuid) -> Result<HostAttachments> {
        let rows = sqlx::query(
            "SELECT a.volume_id, a.instance_id, a.serial, a.boot, v.format, v.shareable, t.max_iops, \
             t.max_mbps FROM volume_attachments a JOIN volumes v ON v.id = a.volume_id \
             JOIN volume_types t ON t.id = v.volume_type_id \
             JOIN instances i ON i.id = a.instance_id \
             WHERE i.host_id = $1 AND a.state IN ('attaching', 'attached') \
             ORDER BY a.instance_id, a.position, a.volume_id",
        )
        .bind(host.to_string())
        .fetch_all(&self.db.read)
        .await?;
        let mut out = HostAttachments::default();
        for r in rows {
            let instance = col_uuid(&r, "instance_id")?;
            let list = if col_bool(&r, "boot")? {
                &mut out.boot
            } else {
                &mut out.data
            };
            list.entry(instance).or_default().push(DesiredAttachment {
                volume_id: col_uuid(&r, "volume_id")?,
                serial: col_str(&r, "serial")?,
                format: if col_str(&r, "format")? == "raw" {
                    VolumeFormat::Raw
                } else {
                    VolumeFormat::Qcow2
                },
                shareable: col_bool(&r, "shareable")?,
                max_iops: col_i64(&r, "max_iops")?,
                max_mbps: col_i64(&r, "max_mbps")?,
            });
        }
        Ok(out)
    }

    /// Attach a volume to an instance (both on the same host, checked by the caller):
    /// the attachment starts `attaching`; the instance's agent plugs it in. A `boot`
    /// attachment is the instance's root disk.
    pub async fn volume_attach(&self, volume: Uuid, instance: Uuid, boot: bool) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let v = volume_get_tx(&mut tx, volume)
            .await?
            .ok_or_else(|| Error::not_found("volume", volume))?;
        let attached: Vec<(String,)> =
            sqlx::query_as("SELECT instance_id FROM volume_attachments WHERE volume_id = $1")
                .bind(volume.to_string())
                .fetch_all(&mut *tx)
                .await?;
        if attached.iter().any(|(i,)| *i == instance.to_string()) {
            return Err(Error::conflict(format!(
                "volume {volume} is already attached to instance {instance}"
            )));
        }
        let ok = match v.api.status {
            VolumeStatus::Available => true,
            VolumeStatus::InUse | VolumeStatus::Attaching => v.api.shareable,
            _ => false,
        };
        if !ok {
            return Err(Error::conflict(if v.api.status == VolumeStatus::InUse {
                format!("volume {volume} is attached to another instance and is not shareable")
            } else {
                format!(
                    "volume {volume} is {}; attaching needs it available (or in_use and shareable)",
                    v.api.status.as_str()
                )
            }));
        }
        if attached.len() as i64 >= MAX_ATTACHMENTS {
            return Err(Error::conflict(format!(
                "volume {volume} is attached to {MAX_ATTACHMENTS} instances, the most a volume may be"
            )));
        }
        let (count, max_pos): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(MAX(position), 0) AS BIGINT) FROM volume_attachments \
             WHERE instance_id = $1",
        )
        .bind(instance.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if count >= MAX_INSTANCE_VOLUMES {
            return Err(Error::conflict(format!(
                "instance {instance} has {MAX_INSTANCE_VOLUMES} data volumes, the most an instance may have"
            )));
        }
        let generation = instance_bump(&mut tx, instance).await?;
        sqlx::query(
            "INSERT INTO volume_attachments (volume_id, instance_id, state, serial, position, \
             requested_generation, attached_at, boot) VALUES ($1, $2, 'attaching', $3, $4, $5, $6, $7)",
        )
        .bind(volume.to_string())
        .bind(instance.to_string())
        .bind(volume_serial(volume))
        .bind(if boot { 0 } else { max_pos + 1 })
        .bind(generation)
        .bind(now_text())
        .bind(boot as i64)
        .execute(&mut *tx)
        .await?;
        settle_tx(&mut tx, volume, "").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ask the instance's agent to unplug a volume; the attachment goes `detaching`.
    pub async fn volume_detach(&self, volume: Uuid, instance: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let state: Option<(String, i64)> = sqlx::query_as(
            "SELECT state, boot FROM volume_attachments WHERE volume_id = $1 AND instance_id = $2",
        )
        .bind(volume.to_string())
        .bind(instance.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if state.as_ref().is_some_and(|(_, boot)| *boot != 0) {
            return Err(Error::conflict(format!(
                "volume {volume} is the root disk of instance {instance}; it is detached when the instance is deleted"
            )));
        }
        match state.as_ref().map(|(s, _)| s.as_str()) {
            None => {
                return Err(Error::conflict(format!(
                    "volume {volume} is not attached to instance {instance}"
                )))
            }
            Some("attached") => {}
            Some(s) => {
                return Err(Error::conflict(format!(
                    "volume {volume} is {s} on instance {instance}; wait until it is attached"
                )))
            }
        }
        let v = volume_get_tx(&mut tx, volume)
            .await?
            .ok_or_else(|| Error::not_found("volume", volume))?;
        if !matches!(
            v.api.status,
            VolumeStatus::InUse | VolumeStatus::Attaching | VolumeStatus::Detaching
        ) {
            return Err(Error::conflict(format!(
                "volume {volume} is {}; wait until that finishes",
                v.api.status.as_str()
            )));
        }
        let generation = instance_bump(&mut tx, instance).await?;
        sqlx::query(
            "UPDATE volume_attachments SET state = 'detaching', requested_generation = $1 \
             WHERE volume_id = $2 AND instance_id = $3",
        )
        .bind(generation)
        .bind(volume.to_string())
        .bind(instance.to_string())
        .execute(&mut *tx)
        .await?;
        settle_tx(&mut tx, volume, "").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Grow a volume: quota and pool room for the extra GiB in one transaction.
    pub async fn volume_extend(
        &self,
        id: Uuid,
        chain: &[Uuid],
        size_gib: i64,
        ratio: f64,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let v = volume_get_tx(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("volume", id))?;
        if !matches!(v.api.status, VolumeStatus::Available | VolumeStatus::InUse) {
            return Err(Error::conflict(format!(
                "volume {id} is {}; extending needs it available or in_use",
                v.api.status.as_str()
            )));
        }
        if size_gib <= v.api.size_gib {
            return Err(Error::invalid(
                "size_gib",
                &format!(
                    "must be larger than the current {} GiB (volumes only grow)",
                    v.api.size_gib
                ),
            ));
        }
        let delta = size_gib - v.api.size_gib;
        Store::quota_charge(
            &mut tx,
            chain,
            &[QuotaDelta {
                resource: QuotaResource::StorageGib,
                amount: delta,
            }],
        )
        .await?;
        if let Some(h) = v.api.host_id {
            let done = sqlx::query(
                "UPDATE hosts SET alloc_volume_gib = alloc_volume_gib + $1, generation = generation + 1 \
                 WHERE id = $2 AND alloc_volume_gib + $1 <= volume_pool_gib * $3",
            )
            .bind(delta)
            .bind(h.to_string())
            .bind(ratio)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(Error::conflict(format!(
                    "the storage pool of host {} has no room for {delta} more GiB",
                    v.api.host_name.clone().unwrap_or_else(|| h.to_string())
                )));
            }
        }
        sqlx::query(
            "UPDATE volumes SET size_gib = $1, status = 'extending', status_reason = '', \
             generation = generation + 1, updated_at = $2 WHERE id = $3",
        )
        .bind(size_gib)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        volume_metering(
            &mut tx,
            id,
            v.api.project_id,
            v.api.vdc_id,
            "resized",
            serde_json::json!({"size_gib": size_gib, "volume_type_id": v.api.volume_type_id,
                "volume_type": v.api.volume_type}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Roll a detached volume back to one of its snapshots.
    pub async fn volume_revert(&self, id: Uuid, snapshot: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let v = volume_get_tx(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("volume", id))?;
        if v.api.status != VolumeStatus::Available {
            return Err(Error::conflict(format!(
                "volume {id} is {}; reverting needs it available (detach it first)",
                v.api.status.as_str()
            )));
        }
        let st: Option<String> =
            sqlx::query_scalar("SELECT status FROM snapshots WHERE id = $1 AND volume_id = $2")
                .bind(snapshot.to_string())
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        match st.as_deref() {
            None => {
                return Err(Error::invalid(
                    "snapshot_id",
                    &format!("volume {id} has no snapshot {snapshot}"),
                ))
            }
            Some("available") => {}
            Some(s) => {
                return Err(Error::conflict(format!(
                    "snapshot {snapshot} is {s}; reverting needs it available"
                )))
            }
        }
        sqlx::query(
            "UPDATE volumes SET status = 'reverting', status_reason = '', revert_serial = revert_serial + 1, \
             revert_snapshot_id = $1, generation = generation + 1, updated_at = $2 WHERE id = $3",
        )
        .bind(snapshot.to_string())
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        bump_volume_host(&mut tx, &v).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Delete a detached volume (with its snapshots when `cascade`). A volume that is on a
    /// host goes `deleting` until the agent reports its file gone; one without a host goes
    /// at once. Returns true when the row is already gone.
    pub async fn volume_delete(&self, id: Uuid, cascade: bool) -> Result<bool> {
        let mut tx = self.db.write.begin().await?;
        let v = volume_get_tx(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("volume", id))?;
        if v.api.status == VolumeStatus::Deleting {
            return Ok(false);
        }
        let attached: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM volume_attachments WHERE volume_id = $1")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if attached > 0 {
            return Err(Error::conflict(format!(
                "volume {id} is attached to {attached} instance(s); detach it first"
            )));
        }
        if !matches!(v.api.status, VolumeStatus::Available | VolumeStatus::Error) {
            return Err(Error::conflict(format!(
                "volume {id} is {}; deleting needs it available or in error",
                v.api.status.as_str()
            )));
        }
        let snaps: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM snapshots WHERE volume_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if snaps > 0 && !cascade {
            return Err(Error::conflict(format!(
                "volume {id} has {snaps} snapshot(s); delete them first, or delete with cascade=true"
            )));
        }
        if v.api.host_id.is_none() {
            finalize_volume(&mut tx, &v).await?;
            tx.commit().await?;
            return Ok(true);
        }
        sqlx::query(
            "UPDATE snapshots SET status = 'deleting', updated_at = $1 WHERE volume_id = $2",
        )
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE volumes SET status = 'deleting', deleted = 1, generation = generation + 1, \
             updated_at = $1 WHERE id = $2",
        )
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        bump_volume_host(&mut tx, &v).await?;
        tx.commit().await?;
        Ok(false)
    }

    /// Record what the agent says about a volume in its pool.
    pub async fn volume_observe(
        &self,
        row: &VolumeRow,
        r: &stratus_api::VolumeReport,
    ) -> Result<()> {
        use stratus_api::VolumeState as S;
        let id = row.api.id;
        let converged = r.generation >= row.generation;
        let mut tx = self.db.write.begin().await?;
        // Snapshots first: a report lists the ones that exist (and those that failed).
        let snaps: Vec<SnapshotRow> = sqlx::query(&format!(
            "SELECT {SNAP_COLS} FROM snapshots WHERE volume_id = $1"
        ))
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(snapshot_from_row)
        .collect::<Result<_>>()?;
        for s in &snaps {
            let seen = r.snapshots.iter().find(|x| x.id == s.api.id);
            match (s.api.status, seen) {
                (SnapshotStatus::Creating, Some(x)) => {
                    let (status, reason) = match &x.error {
                        None => ("available", String::new()),
                        Some(e) => ("error", e.clone()),
                    };
                    sqlx::query(
                        "UPDATE snapshots SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4",
                    )
                    .bind(status)
                    .bind(&reason)
                    .bind(now_text())
                    .bind(s.api.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                (SnapshotStatus::Deleting, None) if r.generation >= s.generation => {
                    drop_snapshot_tx(&mut tx, s).await?;
                }
                _ => {}
            }
        }
        if r.state == S::Gone {
            if row.deleted {
                finalize_volume(&mut tx, row).await?;
            }
            tx.commit().await?;
            return Ok(());
        }
        let mut status = row.api.status;
        let mut reason = row.api.status_reason.clone();
        let mut size = row.api.size_gib;
        let mut refund_gib = 0;
        match (row.api.status, r.state) {
            (VolumeStatus::Creating, S::Ready) if converged => {
                status = VolumeStatus::Available;
                reason.clear();
            }
            (VolumeStatus::Creating, S::Error) => {
                status = VolumeStatus::Error;
                reason = r
                    .error
                    .clone()
                    .unwrap_or_else(|| "the agent failed to make it".into());
                // Nothing was made: the volume holds no quota or pool room while in error.
                release_volume(&mut tx, row).await?;
                sqlx::query("UPDATE volumes SET quota_held = 0, host_held = 0 WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            (VolumeStatus::Extending, S::Ready) if converged => {
                if r.size_gib < row.api.size_gib {
                    // The agent could not grow it: back to the real size, and give back
                    // what was charged for the difference.
                    refund_gib = row.api.size_gib - r.size_gib;
                    size -= refund_gib;
                    reason = format!(
                        "extending failed: {}",
                        r.error.clone().unwrap_or_else(|| "no reason given".into())
                    );
                }
                status = VolumeStatus::Available; // settled below from attachments
            }
            (VolumeStatus::Reverting, S::Ready) if r.revert_serial >= row.revert_serial => {
                status = VolumeStatus::Available;
                reason.clear();
            }
            (VolumeStatus::Reverting, S::Ready) if converged && r.error.is_some() => {
                status = VolumeStatus::Available;
                reason = format!("reverting failed: {}", r.error.clone().unwrap_or_default());
            }
            _ => {}
        }
        if refund_gib > 0 {
            let mut chain = vec![row.api.project_id];
            chain.extend(vdc_chain_tx(&mut tx, row.api.vdc_id).await?);
            Store::quota_charge(
                &mut tx,
                &chain,
                &[QuotaDelta {
                    resource: QuotaResource::StorageGib,
                    amount: -refund_gib,
                }],
            )
            .await?;
            if let (Some(h), true) = (row.api.host_id, row.host_held) {
                host_pool_release(&mut tx, h, refund_gib).await?;
            }
            volume_metering(
                &mut tx,
                id,
                row.api.project_id,
                row.api.vdc_id,
                "resized",
                serde_json::json!({"size_gib": size, "volume_type_id": row.api.volume_type_id,
                    "volume_type": row.api.volume_type, "reverted": true}),
            )
            .await?;
        }
        let unchanged = status == row.api.status
            && reason == row.api.status_reason
            && size == row.api.size_gib
            && r.generation <= row.applied_generation
            && r.size_gib == row.actual_size_gib
            && r.allocated_bytes == row.allocated_bytes
            && r.revert_serial == row.revert_applied;
        if unchanged {
            tx.commit().await?;
            return Ok(());
        }
        sqlx::query(
            "UPDATE volumes SET status = $1, status_reason = $2, size_gib = $3, \
             applied_generation = $4, actual_size_gib = $5, allocated_bytes = $6, revert_applied = $7, \
             updated_at = CASE WHEN status = $1 THEN updated_at ELSE $8 END WHERE id = $9",
        )
        .bind(status.as_str())
        .bind(&reason)
        .bind(size)
        .bind(r.generation.max(row.applied_generation))
        .bind(r.size_gib)
        .bind(r.allocated_bytes)
        .bind(r.revert_serial)
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if status == VolumeStatus::Available && row.api.status != VolumeStatus::Creating {
            // Back from its operation: available or in_use, as its attachments say.
            settle_tx(&mut tx, id, &reason).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Settle an instance's attachments from its report: plugged in → attached, unplugged
    /// → gone, failed → undone with the reason on the volume.
    /// The attachments of every instance on a host (one query per report, not one per
    /// instance): instance → (volume, state, requested generation, boot).
    pub async fn attachments_of_host(
        &self,
        host: Uuid,
    ) -> Result<HashMap<Uuid, Vec<AttachmentRow>>> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT a.instance_id, a.volume_id, a.state, a.requested_generation, a.boot \
             FROM volume_attachments a JOIN instances i ON i.id = a.instance_id WHERE i.host_id = $1",
        )
        .bind(host.to_string())
        .fetch_all(&self.db.read)
        .await?;
        let mut out: HashMap<Uuid, Vec<AttachmentRow>> = HashMap::new();
        for (i, v, state, requested, boot) in rows {
            if let Ok(i) = Uuid::parse_str(&i) {
                out.entry(i).or_default().push((v, state, requested, boot));
            }
        }
        Ok(out)
    }

    pub async fn attachments_observe(
        &self,
        instance: Uuid,
        rows: Vec<AttachmentRow>,
        r: &stratus_api::InstanceReport,
    ) -> Result<bool> {
        let mut changed = false;
        for (vid, state, requested, boot) in rows {
            let Ok(volume) = Uuid::parse_str(&vid) else {
                continue;
            };
            if r.generation < requested {
                continue;
            }
            // A boot volume is attached once the guest it boots exists.
            let booted = boot != 0
                && !matches!(
                    r.state,
                    stratus_api::ActualState::Building
                        | stratus_api::ActualState::Error
                        | stratus_api::ActualState::Gone
                );
            let present = booted || r.volumes.contains(&volume);
            let error = r
                .volume_errors
                .iter()
                .find(|e| e.volume_id == volume)
                .map(|e| e.error.clone());
            // (new attachment state — None removes it —, why it failed)
            let (next, reason) = match (state.as_str(), present, &error) {
                ("attaching", true, _) => (Some("attached"), String::new()),
                ("attaching", false, Some(e)) => (
                    None,
                    format!("attaching to instance {instance} failed: {e}"),
                ),
                ("detaching", false, _) => (None, String::new()),
                ("detaching", true, Some(e)) => (
                    Some("attached"),
                    format!("detaching from instance {instance} failed: {e}"),
                ),
                _ => continue,
            };
            let mut tx = self.db.write.begin().await?;
            set_attachment(&mut tx, volume, instance, next).await?;
            settle_tx(&mut tx, volume, &reason).await?;
            tx.commit().await?;
            changed = true;
        }
        Ok(changed)
    }

    // ------------------------------------------------------------ snapshots

    /// Take a snapshot of a volume (charged to the `snapshots` quota).
    pub async fn snapshot_create(
        &self,
        id: Uuid,
        volume: Uuid,
        chain: &[Uuid],
        name: &str,
        description: &str,
        user: &str,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let v = volume_get_tx(&mut tx, volume)
            .await?
            .ok_or_else(|| Error::not_found("volume", volume))?;
        if v.api.shareable {
            return Err(Error::conflict(format!(
                "volume {volume} is shareable: the local storage pool keeps shareable volumes raw, \
                 which cannot hold snapshots"
            )));
        }
        if !matches!(v.api.status, VolumeStatus::Available | VolumeStatus::InUse) {
            return Err(Error::conflict(format!(
                "volume {volume} is {}; a snapshot needs it available or in_use",
                v.api.status.as_str()
            )));
        }
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM snapshots WHERE volume_id = $1")
            .bind(volume.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if n >= MAX_SNAPSHOTS {
            return Err(Error::conflict(format!(
                "volume {volume} has {MAX_SNAPSHOTS} snapshots, the most a volume may have"
            )));
        }
        Store::quota_charge(
            &mut tx,
            chain,
            &[QuotaDelta {
                resource: QuotaResource::Snapshots,
                amount: 1,
            }],
        )
        .await?;
        let generation = volume_bump(&mut tx, &v).await?;
        let now = now_text();
        sqlx::query(&format!(
            "INSERT INTO snapshots ({SNAP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 'creating', '', $8, 1, $9, $10, $10)"
        ))
        .bind(id.to_string())
        .bind(name)
        .bind(description)
        .bind(volume.to_string())
        .bind(v.api.project_id.to_string())
        .bind(v.api.vdc_id.to_string())
        .bind(v.api.size_gib)
        .bind(generation)
        .bind(user)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        snapshot_metering(&mut tx, id, &v, "created").await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn snapshot_get(&self, id: Uuid) -> Result<Option<SnapshotRow>> {
        let row = sqlx::query(&format!("SELECT {SNAP_COLS} FROM snapshots WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| snapshot_from_row(&r)).transpose()
    }

    pub async fn snapshot_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
        volume: Option<Uuid>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<Snapshot>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "");
        if let Some(p) = project {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        if let Some(v) = volume {
            c.and("volume_id = ?", [Arg::from(v)]);
        }
        if let Some(n) = name {
            c.and(super::NAME_LIKE, [super::like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(&format!("SELECT {SNAP_COLS} FROM snapshots"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(|r| snapshot_from_row(r).map(|s| s.api))
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    /// Delete a snapshot: one that failed goes at once; others go once the agent removed
    /// them from the volume.
    pub async fn snapshot_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let Some(s) = sqlx::query(&format!("SELECT {SNAP_COLS} FROM snapshots WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| snapshot_from_row(&r))
            .transpose()?
        else {
            return Err(Error::not_found("snapshot", id));
        };
        match s.api.status {
            SnapshotStatus::Deleting => return Ok(()),
            SnapshotStatus::Creating => {
                return Err(Error::conflict(format!(
                    "snapshot {id} is still being made; delete it once it is available"
                )))
            }
            _ => {}
        }
        let in_use: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM volumes WHERE source_snapshot_id = $1 AND status = 'creating'",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if in_use > 0 {
            return Err(Error::conflict(format!(
                "snapshot {id} is being copied into a new volume; delete it once that is done"
            )));
        }
        let reverting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM volumes WHERE revert_snapshot_id = $1 AND status = 'reverting'",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if reverting > 0 {
            return Err(Error::conflict(format!(
                "volume {} is being reverted to snapshot {id}",
                s.api.volume_id
            )));
        }
        let v = volume_get_tx(&mut tx, s.api.volume_id).await?;
        match v {
            Some(v) if s.api.status == SnapshotStatus::Available && v.api.host_id.is_some() => {
                let generation = volume_bump(&mut tx, &v).await?;
                sqlx::query(
                    "UPDATE snapshots SET status = 'deleting', generation = $1, updated_at = $2 WHERE id = $3",
                )
                .bind(generation)
                .bind(now_text())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            }
            _ => drop_snapshot_tx(&mut tx, &s).await?,
        }
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ backups

    /// Start a backup of a volume on its host.
    pub async fn backup_create(
        &self,
        id: Uuid,
        volume: &VolumeRow,
        name: &str,
        policy: Option<Uuid>,
        user: &str,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let now = now_text();
        sqlx::query(&format!(
            "INSERT INTO backups ({BACKUP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 'creating', '', 0, $10, $11, $11)"
        ))
        .bind(id.to_string())
        .bind(name)
        .bind(volume.api.id.to_string())
        .bind(&volume.api.name)
        .bind(volume.api.project_id.to_string())
        .bind(volume.api.vdc_id.to_string())
        .bind(policy.map(|p| p.to_string()))
        .bind(volume.api.host_id.map(|h| h.to_string()))
        .bind(volume.api.size_gib)
        .bind(user)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        if let Some(h) = volume.api.host_id {
            Store::host_bump(&mut tx, &h.to_string()).await?;
        }
        backup_metering(
            &mut tx,
            id,
            volume.api.project_id,
            volume.api.vdc_id,
            "created",
            0,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn backup_get(&self, id: Uuid) -> Result<Option<Backup>> {
        let row = sqlx::query(&format!("SELECT {BACKUP_COLS} FROM backups WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        Ok(row.map(|r| backup_from_row(&r)).transpose()?.map(|b| b.0))
    }

    pub async fn backup_list(
        &self,
        vis: &Visibility,
        f: &stratus_api::BackupFilter,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<Backup>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "");
        if let Some(p) = f.project_id {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        if let Some(v) = f.volume_id {
            c.and("volume_id = ?", [Arg::from(v)]);
        }
        if let Some(p) = f.policy_id {
            c.and("policy_id = ?", [Arg::from(p)]);
        }
        if let Some(n) = name {
            c.and(super::NAME_LIKE, [super::like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(&format!("SELECT {BACKUP_COLS} FROM backups"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(|r| backup_from_row(r).map(|b| b.0))
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    /// Backups a policy made of a volume that still count (not being deleted), newest first.
    pub async fn backups_of_policy(&self, policy: Uuid, volume: Uuid) -> Result<Vec<Backup>> {
        let rows = sqlx::query(&format!(
            "SELECT {BACKUP_COLS} FROM backups WHERE policy_id = $1 AND volume_id = $2 AND deleted = 0 \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(policy.to_string())
        .bind(volume.to_string())
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| backup_from_row(r).map(|b| b.0))
            .collect()
    }

    /// Delete a backup: its host's agent removes the copy, then the row goes.
    pub async fn backup_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let Some((b, deleted)) =
            sqlx::query(&format!("SELECT {BACKUP_COLS} FROM backups WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| backup_from_row(&r))
                .transpose()?
        else {
            return Err(Error::not_found("backup", id));
        };
        if deleted {
            return Ok(());
        }
        let restoring: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM volumes WHERE source_backup_id = $1 AND status = 'creating'",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if restoring > 0 {
            return Err(Error::conflict(format!(
                "backup {id} is being restored; delete it once that is done"
            )));
        }
        match b.host_id {
            Some(h) => {
                sqlx::query(
                    "UPDATE backups SET deleted = 1, status = 'deleting', updated_at = $1 WHERE id = $2",
                )
                .bind(now_text())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                Store::host_bump(&mut tx, &h.to_string()).await?;
            }
            None => {
                drop_backup_tx(&mut tx, &b).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Backups kept on a host, for its agent.
    pub async fn backups_on_host(&self, host: Uuid) -> Result<Vec<DesiredBackup>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, volume_id, deleted FROM backups WHERE host_id = $1 AND status <> 'error' ORDER BY id",
        )
        .bind(host.to_string())
        .fetch_all(&self.db.read)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, v, d)| {
                Some(DesiredBackup {
                    id: Uuid::parse_str(&id).ok()?,
                    volume_id: Uuid::parse_str(&v).ok()?,
                    deleted: d != 0,
                })
            })
            .collect())
    }

    /// Record what the agent says about the backups in its backup directory.
    pub async fn backups_observe(
        &self,
        host: Uuid,
        reports: &[stratus_api::BackupReport],
    ) -> Result<()> {
        use stratus_api::VolumeState as S;
        for r in reports {
            let mut tx = self.db.write.begin().await?;
            let Some((b, deleted)) = sqlx::query(&format!(
                "SELECT {BACKUP_COLS} FROM backups WHERE id = $1 AND host_id = $2"
            ))
            .bind(r.id.to_string())
            .bind(host.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| backup_from_row(&row))
            .transpose()?
            else {
                continue;
            };
            match r.state {
                S::Gone if deleted => drop_backup_tx(&mut tx, &b).await?,
                S::Ready if b.status == BackupStatus::Creating => {
                    sqlx::query(
                        "UPDATE backups SET status = 'available', stored_bytes = $1, updated_at = $2 WHERE id = $3",
                    )
                    .bind(r.stored_bytes)
                    .bind(now_text())
                    .bind(r.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                    backup_metering(
                        &mut tx,
                        b.id,
                        b.project_id,
                        b.vdc_id,
                        "stored",
                        r.stored_bytes,
                    )
                    .await?;
                }
                S::Error if b.status == BackupStatus::Creating => {
                    sqlx::query(
                        "UPDATE backups SET status = 'error', status_reason = $1, updated_at = $2 WHERE id = $3",
                    )
                    .bind(r.error.clone().unwrap_or_else(|| "the agent failed to copy it".into()))
                    .bind(now_text())
                    .bind(r.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                _ => {}
            }
            tx.commit().await?;
        }
        Ok(())
    }

    // ------------------------------------------------------------ backup policies

    pub async fn backup_policy_create(&self, p: &BackupPolicy) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO backup_policies ({POLICY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)"
        ))
        .bind(p.id.to_string())
        .bind(&p.name)
        .bind(p.project_id.to_string())
        .bind(p.vdc_id.to_string())
        .bind(p.interval_hours)
        .bind(p.keep)
        .bind(p.enabled as i64)
        .bind(serde_json::to_string(&p.volume_ids).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&p.instance_ids).unwrap_or_else(|_| "[]".into()))
        .bind(time_text(p.next_run_at))
        .bind(p.last_run_at.map(time_text))
        .bind(&p.created_by)
        .bind(now_text())
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn backup_policy_get(&self, id: Uuid) -> Result<Option<BackupPolicy>> {
        let row = sqlx::query(&format!(
            "SELECT {POLICY_COLS} FROM backup_policies WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| policy_from_row(&r)).transpose()
    }

    pub async fn backup_policy_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<BackupPolicy>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "");
        if let Some(p) = project {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        if let Some(n) = name {
            c.and(super::NAME_LIKE, [super::like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(
            &format!("SELECT {POLICY_COLS} FROM backup_policies"),
            &tail,
            targs,
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(policy_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    /// Store a policy's new settings (the caller validated them).
    pub async fn backup_policy_update(&self, p: &BackupPolicy) -> Result<()> {
        sqlx::query(
            "UPDATE backup_policies SET name = $1, interval_hours = $2, keep = $3, enabled = $4, \
             volume_ids = $5, instance_ids = $6, next_run_at = $7, updated_at = $8 WHERE id = $9",
        )
        .bind(&p.name)
        .bind(p.interval_hours)
        .bind(p.keep)
        .bind(p.enabled as i64)
        .bind(serde_json::to_string(&p.volume_ids).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&p.instance_ids).unwrap_or_else(|_| "[]".into()))
        .bind(time_text(p.next_run_at))
        .bind(now_text())
        .bind(p.id.to_string())
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn backup_policy_delete(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM backup_policies WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// Enabled policies whose next run is due at `now`.
    pub async fn backup_policies_due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<BackupPolicy>> {
        let rows = sqlx::query(&format!(
            "SELECT {POLICY_COLS} FROM backup_policies WHERE enabled = 1 AND next_run_at <= $1 ORDER BY next_run_at, id"
        ))
        .bind(time_text(now))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(policy_from_row).collect()
    }

    /// Record a run: the next one is due one interval after the one that was due (runs
    /// missed while the control plane was down are not made up, only the next is).
    pub async fn backup_policy_ran(
        &self,
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
        next: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE backup_policies SET last_run_at = $1, next_run_at = $2, updated_at = $1 WHERE id = $3",
        )
        .bind(time_text(at))
        .bind(time_text(next))
        .bind(id.to_string())
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    // ------------------------------------------------------------ accounting

    /// Recount of volume usage per project (volumes, GiB) and snapshots, for the quota
    /// consistency check.
    pub(crate) async fn volume_usage(
        &self,
    ) -> Result<(Vec<(String, i64, i64)>, Vec<(String, i64)>)> {
        let volumes = sqlx::query_as(
            "SELECT project_id, COUNT(*), CAST(COALESCE(SUM(size_gib), 0) AS BIGINT) FROM volumes \
             WHERE quota_held = 1 GROUP BY project_id",
        )
        .fetch_all(&self.db.read)
        .await?;
        let snapshots = sqlx::query_as(
            "SELECT project_id, COUNT(*) FROM snapshots WHERE quota_held = 1 GROUP BY project_id",
        )
        .fetch_all(&self.db.read)
        .await?;
        Ok((volumes, snapshots))
    }

    /// Volumes attached to an instance, in order: its data volumes, and with `with_boot`
    /// the volume it boots from first.
    pub async fn volume_ids_of_instance(
        &self,
        instance: Uuid,
        with_boot: bool,
    ) -> Result<Vec<Uuid>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT volume_id FROM volume_attachments WHERE instance_id = $1 AND (boot = 0 OR $2 = 1) \
             ORDER BY position",
        )
        .bind(instance.to_string())
        .bind(with_boot as i64)
        .fetch_all(&self.db.read)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s,)| Uuid::parse_str(&s).ok())
            .collect())
    }
}

// ---------------------------------------------------------------- helpers in a transaction

pub(crate) async fn volume_get_tx(tx: &mut Tx, id: Uuid) -> Result<Option<VolumeRow>> {
    let row = sqlx::query(&format!("SELECT {COLS} FROM {FROM} WHERE v.id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| volume_from_row(&r)).transpose()
}

/// Bump an instance's generation (and its host's): returns the new generation.
async fn instance_bump(tx: &mut Tx, instance: Uuid) -> Result<i64> {
    let row = sqlx::query(
        "UPDATE instances SET generation = generation + 1, updated_at = $1 WHERE id = $2 \
         RETURNING generation, host_id",
    )
    .bind(now_text())
    .bind(instance.to_string())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| Error::not_found("instance", instance))?;
    let generation: i64 = row.try_get("generation")?;
    let host: Option<String> = row.try_get("host_id")?;
    if let Some(h) = host {
        Store::host_bump(tx, &h).await?;
    }
    Ok(generation)
}

/// Bump a volume's generation (and its host's): returns the new generation.
async fn volume_bump(tx: &mut Tx, v: &VolumeRow) -> Result<i64> {
    let g: i64 = sqlx::query_scalar(
        "UPDATE volumes SET generation = generation + 1, updated_at = $1 WHERE id = $2 RETURNING generation",
    )
    .bind(now_text())
    .bind(v.api.id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    bump_volume_host(tx, v).await?;
    Ok(g)
}

async fn bump_volume_host(tx: &mut Tx, v: &VolumeRow) -> Result<()> {
    if let Some(h) = v.api.host_id {
        Store::host_bump(tx, &h.to_string()).await?;
    }
    Ok(())
}

/// Set (or remove, with `None`) an attachment's state.
async fn set_attachment(
    tx: &mut Tx,
    volume: Uuid,
    instance: Uuid,
    state: Option<&str>,
) -> Result<()> {
    match state {
        Some(s) => sqlx::query(
            "UPDATE volume_attachments SET state = $1 WHERE volume_id = $2 AND instance_id = $3",
        )
        .bind(s)
        .bind(volume.to_string())
        .bind(instance.to_string())
        .execute(&mut **tx)
        .await?,
        None => {
            sqlx::query("DELETE FROM volume_attachments WHERE volume_id = $1 AND instance_id = $2")
                .bind(volume.to_string())
                .bind(instance.to_string())
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(())
}

/// Settle a volume's status from its attachments, unless an operation of its own is under
/// way; `reason` (when not empty) says why the last change failed.
pub(crate) async fn settle_tx(tx: &mut Tx, volume: Uuid, reason: &str) -> Result<()> {
    let states: Vec<(String,)> =
        sqlx::query_as("SELECT state FROM volume_attachments WHERE volume_id = $1")
            .bind(volume.to_string())
            .fetch_all(&mut **tx)
            .await?;
    let status = if states.iter().any(|(s,)| s == "attaching") {
        "attaching"
    } else if states.iter().any(|(s,)| s == "detaching") {
        "detaching"
    } else if states.is_empty() {
        "available"
    } else {
        "in_use"
    };
    sqlx::query(
        "UPDATE volumes SET status = $1, status_reason = CASE WHEN $2 = '' THEN status_reason ELSE $2 END, \
         updated_at = $3 WHERE id = $4 AND status IN ('available', 'in_use', 'attaching', 'detaching')",
    )
    .bind(status)
    .bind(reason)
    .bind(now_text())
    .bind(volume.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Drop an instance's attachments (the instance is gone): its volumes become available.
pub(crate) async fn detach_all_tx(tx: &mut Tx, instance: Uuid) -> Result<()> {
    let vols: Vec<(String,)> =
        sqlx::query_as("SELECT volume_id FROM volume_attachments WHERE instance_id = $1")
            .bind(instance.to_string())
            .fetch_all(&mut **tx)
            .await?;
    sqlx::query("DELETE FROM volume_attachments WHERE instance_id = $1")
        .bind(instance.to_string())
        .execute(&mut **tx)
        .await?;
    for (v,) in vols {
        if let Ok(v) = Uuid::parse_str(&v) {
            settle_tx(tx, v, "").await?;
        }
    }
    Ok(())
}

async fn host_pool_release(tx: &mut Tx, host: Uuid, gib: i64) -> Result<()> {
    sqlx::query(
        "UPDATE hosts SET alloc_volume_gib = alloc_volume_gib - $1, generation = generation + 1 WHERE id = $2",
    )
    .bind(gib)
    .bind(host.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Give back a volume's quota and pool room (what it still holds).
async fn release_volume(tx: &mut Tx, row: &VolumeRow) -> Result<()> {
    if row.quota_held {
        let mut chain = vec![row.api.project_id];
        chain.extend(vdc_chain_tx(tx, row.api.vdc_id).await?);
        Store::quota_charge(tx, &chain, &VolumeRow::quota(row.api.size_gib, -1)).await?;
    }
    if let (Some(h), true) = (row.api.host_id, row.host_held) {
        host_pool_release(tx, h, row.api.size_gib).await?;
    }
    Ok(())
}

/// Remove a volume's row, its snapshots' rows and what it held.
async fn finalize_volume(tx: &mut Tx, row: &VolumeRow) -> Result<()> {
    release_volume(tx, row).await?;
    let snaps: Vec<SnapshotRow> = sqlx::query(&format!(
        "SELECT {SNAP_COLS} FROM snapshots WHERE volume_id = $1"
    ))
    .bind(row.api.id.to_string())
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(snapshot_from_row)
    .collect::<Result<_>>()?;
    for s in &snaps {
        drop_snapshot_tx(tx, s).await?;
    }
    sqlx::query("DELETE FROM volume_attachments WHERE volume_id = $1")
        .bind(row.api.id.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM volumes WHERE id = $1")
        .bind(row.api.id.to_string())
        .execute(&mut **tx)
        .await?;
    // The agent forgets it once the desired state no longer lists it.
    bump_volume_host(tx, row).await?;
    volume_metering(
        tx,
        row.api.id,
        row.api.project_id,
        row.api.vdc_id,
        "deleted",
        serde_json::json!({"size_gib": row.api.size_gib}),
    )
    .await
}

async fn drop_snapshot_tx(tx: &mut Tx, s: &SnapshotRow) -> Result<()> {
    if s.quota_held {
        let mut chain = vec![s.api.project_id];
        chain.extend(vdc_chain_tx(tx, s.api.vdc_id).await?);
        Store::quota_charge(
            tx,
            &chain,
            &[QuotaDelta {
                resource: QuotaResource::Snapshots,
                amount: -1,
            }],
        )
        .await?;
    }
    sqlx::query("DELETE FROM snapshots WHERE id = $1")
        .bind(s.api.id.to_string())
        .execute(&mut **tx)
        .await?;
    metering_event(
        tx,
        "snapshot",
        s.api.id,
        s.api.project_id,
        s.api.vdc_id,
        "deleted",
        serde_json::json!({"volume_id": s.api.volume_id, "size_gib": s.api.size_gib}),
    )
    .await
}

async fn drop_backup_tx(tx: &mut Tx, b: &Backup) -> Result<()> {
    sqlx::query("DELETE FROM backups WHERE id = $1")
        .bind(b.id.to_string())
        .execute(&mut **tx)
        .await?;
    if let Some(h) = b.host_id {
        Store::host_bump(tx, &h.to_string()).await?;
    }
    backup_metering(tx, b.id, b.project_id, b.vdc_id, "deleted", b.stored_bytes).await
}

async fn volume_metering(
    tx: &mut Tx,
    id: Uuid,
    project: Uuid,
    vdc: Uuid,
    event: &str,
    attrs: serde_json::Value,
) -> Result<()> {
    metering_event(tx, "volume", id, project, vdc, event, attrs).await
}

async fn snapshot_metering(tx: &mut Tx, id: Uuid, v: &VolumeRow, event: &str) -> Result<()> {
    metering_event(
        tx,
        "snapshot",
        id,
        v.api.project_id,
        v.api.vdc_id,
        event,
        serde_json::json!({"volume_id": v.api.id, "size_gib": v.api.size_gib}),
    )
    .await
}

async fn backup_metering(
    tx: &mut Tx,
    id: Uuid,
    project: Uuid,
    vdc: Uuid,
    event: &str,
    stored_bytes: i64,
) -> Result<()> {
    metering_event(
        tx,
        "backup",
        id,
        project,
        vdc,
        event,
        serde_json::json!({"stored_bytes": stored_bytes}),
    )
    .await
}
