//! Block storage (EVS): volume types with I/O limits, volumes, attachments, snapshots,
//! backups and backup policies — and the part of the agent protocol that carries them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

// ---------------------------------------------------------------- volume types

/// A class of volume with the I/O limits the host enforces on every attachment (spec
/// 5.2.2.1: normal 800, high 2,500 and ultra-high 10,000 IOPS are built in).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VolumeType {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// Read + write operations per second, at most.
    pub max_iops: i64,
    /// Read + write throughput, MB/s (10^6 bytes), at most.
    pub max_mbps: i64,
    /// The spec's tiers; they cannot be deleted.
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeTypeCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// 1–1,000,000.
    pub max_iops: i64,
    /// 1–100,000.
    pub max_mbps: i64,
}

// ---------------------------------------------------------------- volumes

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeStatus {
    /// The host is making it (empty, or filled from a snapshot, backup or image).
    Creating,
    /// Not attached to anything.
    Available,
    Attaching,
    /// Attached to at least one instance.
    InUse,
    Detaching,
    Extending,
    /// Being rolled back to a snapshot.
    Reverting,
    Deleting,
    Error,
}

impl VolumeStatus {
    pub const ALL: [VolumeStatus; 9] = [
        VolumeStatus::Creating,
        VolumeStatus::Available,
        VolumeStatus::Attaching,
        VolumeStatus::InUse,
        VolumeStatus::Detaching,
        VolumeStatus::Extending,
        VolumeStatus::Reverting,
        VolumeStatus::Deleting,
        VolumeStatus::Error,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeStatus::Creating => "creating",
            VolumeStatus::Available => "available",
            VolumeStatus::Attaching => "attaching",
            VolumeStatus::InUse => "in_use",
            VolumeStatus::Detaching => "detaching",
            VolumeStatus::Extending => "extending",
            VolumeStatus::Reverting => "reverting",
            VolumeStatus::Deleting => "deleting",
            VolumeStatus::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<VolumeStatus> {
        VolumeStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One instance a volume is attached to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeAttachment {
    pub instance_id: Uuid,
    pub instance_name: String,
    /// `attaching`, `attached` or `detaching`.
    pub state: String,
    /// The disk serial the guest sees (`/sys/block/vdX/serial`,
    /// `/dev/disk/by-id/virtio-<serial>`): the volume id without dashes, first 20 characters.
    pub serial: String,
    pub attached_at: DateTime<Utc>,
}

/// A block storage volume (EVS disk).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub status: VolumeStatus,
    /// Why it is in `error`, or why the last operation on it failed.
    pub status_reason: String,
    pub size_gib: i64,
    pub volume_type: String,
    pub volume_type_id: Uuid,
    pub max_iops: i64,
    pub max_mbps: i64,
    /// May be attached to several instances at once (up to 16; stored raw, no snapshots).
    pub shareable: bool,
    /// Made from an image: it can be an instance's boot disk.
    pub bootable: bool,
    pub source_snapshot_id: Option<Uuid>,
    pub source_backup_id: Option<Uuid>,
    pub image_id: Option<Uuid>,
    pub availability_zone: String,
    /// The host whose storage pool holds it.
    pub host_id: Option<Uuid>,
    pub host_name: Option<String>,
    pub attachments: Vec<VolumeAttachment>,
    pub snapshot_count: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeCreate {
    /// With `count` > 1, volumes are named `<name>-1`, `<name>-2`, …
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub project_id: Uuid,
    /// 1–32,768 GiB (32 TiB). Defaults to the source's size when made from a snapshot,
    /// a backup or an image; never smaller than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gib: Option<i64>,
    /// Volume type name or id (default `normal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub shareable: bool,
    /// A copy of this snapshot's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<Uuid>,
    /// A copy of this backup's data (a restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<Uuid>,
    /// Image id or name: a bootable volume holding the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How many identical volumes, 1–100 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeAttach {
    pub instance_id: Uuid,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeDetach {
    /// Needed when the volume is attached to more than one instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeExtend {
    /// The new size: larger than the current one, at most 32,768 GiB.
    pub size_gib: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeRevert {
    /// A snapshot of this volume; the volume must be detached.
    pub snapshot_id: Uuid,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VolumeFilter {
    pub project_id: Option<Uuid>,
    pub vdc_id: Option<Uuid>,
    pub status: Option<String>,
    /// Volumes attached to this instance.
    pub instance_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VolumeDeleteParams {
    /// Also delete the volume's snapshots (otherwise a volume with snapshots is kept).
    #[serde(default)]
    pub cascade: bool,
}

// ---------------------------------------------------------------- snapshots

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStatus {
    Creating,
    Available,
    Deleting,
    Error,
}

impl SnapshotStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotStatus::Creating => "creating",
            SnapshotStatus::Available => "available",
            SnapshotStatus::Deleting => "deleting",
            SnapshotStatus::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<SnapshotStatus> {
        [
            SnapshotStatus::Creating,
            SnapshotStatus::Available,
            SnapshotStatus::Deleting,
            SnapshotStatus::Error,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A point-in-time copy of a volume, kept beside it (crash-consistent when taken while the
/// volume is attached to a running instance).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub volume_id: Uuid,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    /// The volume's size when the snapshot was taken.
    pub size_gib: i64,
    pub status: SnapshotStatus,
    pub status_reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreate {
    pub volume_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotFilter {
    pub project_id: Option<Uuid>,
    pub volume_id: Option<Uuid>,
}

// ---------------------------------------------------------------- backups

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    Creating,
    Available,
    Deleting,
    Error,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Creating => "creating",
            BackupStatus::Available => "available",
            BackupStatus::Deleting => "deleting",
            BackupStatus::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<BackupStatus> {
        [
            BackupStatus::Creating,
            BackupStatus::Available,
            BackupStatus::Deleting,
            BackupStatus::Error,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A full copy of a volume stored apart from it (the host's backup directory), restorable
/// to a new volume. It outlives the volume.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Backup {
    pub id: Uuid,
    pub name: String,
    pub volume_id: Uuid,
    pub volume_name: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    /// The policy that made it (none for a backup made on request).
    pub policy_id: Option<Uuid>,
    /// The volume's size when it was taken.
    pub size_gib: i64,
    /// Bytes the copy occupies.
    pub stored_bytes: i64,
    pub status: BackupStatus,
    pub status_reason: String,
    pub host_id: Option<Uuid>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupCreate {
    pub volume_id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupFilter {
    pub project_id: Option<Uuid>,
    pub volume_id: Option<Uuid>,
    pub policy_id: Option<Uuid>,
}

/// A schedule that backs up volumes — listed ones, and every volume attached to the listed
/// instances — every `interval_hours`, keeping the newest `keep` copies of each volume
/// (spec 8.3.3.4 (8): 定时备份策略、备份副本个数).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupPolicy {
    pub id: Uuid,
    pub name: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub interval_hours: i64,
    pub keep: i64,
    pub enabled: bool,
    pub volume_ids: Vec<Uuid>,
    pub instance_ids: Vec<Uuid>,
    pub next_run_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicyCreate {
    pub project_id: Uuid,
    pub name: String,
    /// 1–8,760 (a year).
    pub interval_hours: i64,
    /// Copies kept per volume, 1–100.
    pub keep: i64,
    #[serde(default)]
    pub volume_ids: Vec<Uuid>,
    #[serde(default)]
    pub instance_ids: Vec<Uuid>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The first run (default: one interval from now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_run_at: Option<DateTime<Utc>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicyUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_hours: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_ids: Option<Vec<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_ids: Option<Vec<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupPolicyFilter {
    pub project_id: Option<Uuid>,
}

// ---------------------------------------------------------------- agent protocol

/// How a volume's data is stored in the host's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeFormat {
    /// Snapshots live inside the file.
    Qcow2,
    /// Shareable volumes: several guests may write it (no qcow2 metadata to corrupt).
    Raw,
}

/// Where a new volume's data comes from (absent: empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VolumeSource {
    /// A snapshot of a volume in the same pool.
    Snapshot { volume_id: Uuid, snapshot_id: Uuid },
    /// A backup in this host's backup directory.
    Backup { backup_id: Uuid },
    /// An image, downloaded like a boot image (`/v1/agent/images/{id}`).
    Image {
        image_id: Uuid,
        image_sha256: String,
    },
}

/// A rollback to a snapshot, done once: when `serial` exceeds the last one applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredRevert {
    pub serial: i64,
    pub snapshot_id: Uuid,
}

/// A volume in this host's storage pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredVolume {
    pub id: Uuid,
    /// Bumped whenever this volume's desired state changes.
    pub generation: i64,
    pub size_gib: i64,
    pub format: VolumeFormat,
    /// Used once, when the volume is made.
    pub source: Option<VolumeSource>,
    /// The snapshots that should exist; others the agent made are removed.
    pub snapshots: Vec<Uuid>,
    pub revert: Option<DesiredRevert>,
    /// Remove it and its snapshots; report `gone`.
    pub deleted: bool,
}

/// A backup copy in this host's backup directory: made once from `volume_id`, then kept
/// until `deleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredBackup {
    pub id: Uuid,
    pub volume_id: Uuid,
    pub deleted: bool,
}

/// A volume attached to an instance: hot-plugged while the guest runs, on the command line
/// when it starts. The limits are applied with QEMU's I/O throttling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredAttachment {
    pub volume_id: Uuid,
    /// The disk serial the guest sees.
    pub serial: String,
    pub format: VolumeFormat,
    pub shareable: bool,
    pub max_iops: i64,
    pub max_mbps: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeState {
    Creating,
    Ready,
    /// See `error`; a volume whose creation failed has no file.
    Error,
    /// Deleted: no file left.
    Gone,
}

/// One snapshot that exists in the pool (or failed to be made).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotReport {
    pub id: Uuid,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeReport {
    pub id: Uuid,
    /// The desired generation this state is the outcome of.
    pub generation: i64,
    pub state: VolumeState,
    #[serde(default)]
    pub error: Option<String>,
    /// The size the data really has now.
    #[serde(default)]
    pub size_gib: i64,
    /// Bytes the pool holds for it (sparse files cost only what was written).
    #[serde(default)]
    pub allocated_bytes: i64,
    #[serde(default)]
    pub snapshots: Vec<SnapshotReport>,
    /// The revert serial last applied.
    #[serde(default)]
    pub revert_serial: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupReport {
    pub id: Uuid,
    pub state: VolumeState,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub stored_bytes: i64,
}

/// A volume an instance could not attach or detach, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttachmentError {
    pub volume_id: Uuid,
    pub error: String,
}
