//! Block storage volumes and backups on this host: each converges to its desired state
//! ([`DesiredVolume`], [`DesiredBackup`]) through the host's [`StoragePool`], and through
//! the QEMU of every running guest that has the volume attached (QEMU holds the files it
//! uses locked, and a guest must see a new size or a snapshot happen under it).
//!
//! All work on one volume is serialized by the host's per-volume lock
//! ([`Host::lock_volumes`]), shared with backups and with the instance workers that attach
//! and detach volumes, so a grow never races a detach. What was applied is kept in records
//! written atomically — `<state_dir>/volumes/<id>.json` and `<backup_dir>/<id>.json` — so
//! a restarted agent carries on and repairs only what drifted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use stratus_api::{
    BackupReport, DesiredBackup, DesiredVolume, SnapshotReport, VolumeFormat, VolumeReport,
    VolumeSource, VolumeState,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::agent::{gib, Host};
use crate::pool::{Fill, SnapshotOp, RAW_SNAPSHOTS};
use crate::workers::Resource;
use crate::{disk, identity, qemu};

const RECORD_VERSION: u32 = 1;

/// Whole GiB covering `bytes` (sizes are reported in GiB; a source image may be smaller).
fn ceil_gib(bytes: u64) -> i64 {
    i64::try_from(bytes.div_ceil(1 << 30)).unwrap_or(i64::MAX)
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn read_record<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = tokio::fs::read(path).await.ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("unreadable record {}: {e}", path.display());
            None
        }
    }
}

/// An object's record: the file (written atomically) and its copy in memory, which reports
/// read. `None`: no record yet (or removed); `gone`: deleted while desired.
struct Tracked<R> {
    path: PathBuf,
    rec: Mutex<Option<R>>,
    gone: AtomicBool,
}

impl<R: Clone + Serialize + DeserializeOwned> Tracked<R> {
    async fn open(path: PathBuf) -> Tracked<R> {
        Tracked {
            rec: Mutex::new(read_record(&path).await),
            path,
            gone: AtomicBool::new(false),
        }
    }

    /// The record, unless the object is gone.
    async fn get(&self) -> Option<R> {
        let rec = self.rec.lock().await.clone();
        rec.filter(|_| !self.is_gone())
    }

    async fn save(&self, rec: &R) -> anyhow::Result<()> {
        let mut cur = self.rec.lock().await;
        identity::write_atomic(&self.path, &serde_json::to_vec_pretty(rec)?, 0o600)
            .await
            .with_context(|| format!("writing {}", self.path.display()))?;
        *cur = Some(rec.clone());
        Ok(())
    }

    /// The object was deleted: no record left.
    async fn remove(&self) -> anyhow::Result<()> {
        remove_file(&self.path).await?;
        *self.rec.lock().await = None;
        self.gone.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Desired again (not deleted).
    fn revive(&self) {
        self.gone.store(false, Ordering::SeqCst);
    }

    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// The state to report without a record: gone, or not made yet.
    fn absent_state(&self) -> VolumeState {
        if self.is_gone() {
            VolumeState::Gone
        } else {
            VolumeState::Creating
        }
    }

    /// Only the record could not be written: keep the error in memory for the report.
    async fn failed(&self, what: &str, e: anyhow::Error, set: impl FnOnce(&mut R, String)) {
        tracing::warn!(path = %self.path.display(), "{what}: {e:#}");
        if let Some(r) = self.rec.lock().await.as_mut() {
            set(r, format!("{e:#}"));
        }
    }
}

async fn remove_file(path: &Path) -> anyhow::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Record a failed step (`what: error`) and go on with the next.
fn note(errors: &mut Vec<String>, what: &str, r: anyhow::Result<()>) {
    if let Err(e) = r {
        errors.push(format!("{what}: {e:#}"));
    }
}

// ------------------------------------------------------------------ volumes

/// What was applied to one volume (`<state_dir>/volumes/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub version: u32,
    pub id: Uuid,
    pub format: VolumeFormat,
    /// The desired generation this is the outcome of (while creating: being worked on).
    pub generation: i64,
    /// `Creating` on disk means the agent stopped while making it: it is made again.
    pub state: VolumeState,
    pub error: Option<String>,
    pub size_gib: i64,
    /// Snapshots that exist.
    pub snapshots: Vec<Uuid>,
    /// Desired snapshots that could not be made, and why.
    #[serde(default)]
    pub snapshot_errors: Vec<SnapshotReport>,
    pub revert_serial: i64,
}

fn volume_record_path(host: &Host, id: Uuid) -> PathBuf {
    host.state_dir.join("volumes").join(format!("{id}.json"))
}

/// The format of volume `id` if it is ready in this host's pool (for attaching it).
pub async fn ready_format(host: &Host, id: Uuid) -> anyhow::Result<VolumeFormat> {
    match read_record::<VolumeRecord>(&volume_record_path(host, id)).await {
        Some(r) if r.state == VolumeState::Ready && host.pool.exists(id, r.format) => Ok(r.format),
        Some(r) => anyhow::bail!("volume {id} is not ready ({:?})", r.state),
        None => anyhow::bail!("volume {id} is not in this host's storage pool"),
    }
}

/// One volume in this host's pool.
pub struct Volume {
    pub id: Uuid,
    rec: Tracked<VolumeRecord>,
    /// The generation last handed to converge (reported when there is no record: a
    /// deleted volume is gone as the outcome of it).
    desired_generation: AtomicI64,
}

impl Volume {
    async fn save(&self, rec: &VolumeRecord) -> anyhow::Result<()> {
        self.rec.save(rec).await
    }

    /// Make the volume from its source. A failure leaves no file.
    async fn create(&self, host: &Host, d: &DesiredVolume) -> anyhow::Result<()> {
        host.pool
            .delete(d.id, d.format)
            .await
            .context("removing an unfinished volume")?;
        let size = gib(d.size_gib)?;
        let made = async {
            match &d.source {
                None => host.pool.create(d.id, d.format, size, Fill::Empty).await,
                Some(VolumeSource::Snapshot {
                    volume_id,
                    snapshot_id,
                }) => {
                    let src = ready_format(host, *volume_id).await?;
                    anyhow::ensure!(src == VolumeFormat::Qcow2, RAW_SNAPSHOTS);
                    let fill = Fill::Snapshot {
                        volume: *volume_id,
                        snapshot: *snapshot_id,
                    };
                    host.pool.create(d.id, d.format, size, fill).await
                }
                Some(VolumeSource::Backup { backup_id }) => {
                    let path = backup_path(host, *backup_id);
                    anyhow::ensure!(
                        path.exists(),
                        "backup {backup_id} is not in this host's backup directory"
                    );
                    let fill = Fill::File {
                        path: &path,
                        format: "qcow2",
                    };
                    host.pool.create(d.id, d.format, size, fill).await
                }
                Some(VolumeSource::Image {
                    image_id,
                    image_sha256,
                }) => {
                    let path = host
                        .image(*image_id, image_sha256)
                        .await
                        .with_context(|| format!("downloading image {image_id}"))?;
                    let fill = Fill::File {
                        path: &path,
                        format: "qcow2",
                    };
                    host.pool.create(d.id, d.format, size, fill).await
                }
            }?;
            host.fault("agent.volume")
        }
        .await;
        if made.is_err() {
            if let Err(e) = host.pool.delete(d.id, d.format).await {
                tracing::warn!(id = %d.id, "cleaning up a failed volume: {e:#}");
            }
        }
        made
    }

    /// Grow, snapshots and revert of a ready volume. Each failed step is noted in `errors`;
    /// `rec` stays truthful (sizes and snapshots are read back from the pool).
    async fn update(
        &self,
        host: &Host,
        d: &DesiredVolume,
        rec: &mut VolumeRecord,
        errors: &mut Vec<String>,
    ) {
        let users = crate::agent::running_with(host, d.id).await;
        note(errors, "growing", self.grow(host, d, rec, &users).await);

        let mut snapshot_errors = Vec::new();
        if rec.format == VolumeFormat::Raw {
            for s in &d.snapshots {
                snapshot_errors.push(SnapshotReport {
                    id: *s,
                    error: Some(RAW_SNAPSHOTS.into()),
                });
            }
            if !d.snapshots.is_empty() {
                errors.push(RAW_SNAPSHOTS.into());
            }
        } else {
            match self.snapshots(host, d, rec).await {
                Ok(have) => {
                    for s in d.snapshots.iter().filter(|s| !have.contains(s)) {
                        let made = match users.first() {
                            Some(dir) => {
                                qemu::snapshot_internal(dir, d.id, &s.to_string(), true).await
                            }
                            None => {
                                host.pool
                                    .snapshot(d.id, rec.format, SnapshotOp::Create, *s)
                                    .await
                            }
                        };
                        if let Err(e) = made {
                            let msg = format!("creating snapshot {s}: {e:#}");
                            errors.push(msg.clone());
                            snapshot_errors.push(SnapshotReport {
                                id: *s,
                                error: Some(msg),
                            });
                        }
                    }
                }
                Err(e) => errors.push(format!("listing snapshots: {e:#}")),
            }
        }

        if let Some(r) = d.revert.as_ref().filter(|r| r.serial > rec.revert_serial) {
            let reverted = async {
                anyhow::ensure!(
                    users.is_empty(),
                    "the volume is attached to a running instance"
                );
                host.pool
                    .snapshot(d.id, rec.format, SnapshotOp::Revert, r.snapshot_id)
                    .await
            }
            .await;
            match reverted {
                Ok(()) => rec.revert_serial = r.serial,
                Err(e) => errors.push(format!("reverting to snapshot {}: {e:#}", r.snapshot_id)),
            }
            // The data now has the snapshot's size: grow it back to the volume's.
            note(errors, "growing", self.grow(host, d, rec, &users).await);
        }

        if rec.format == VolumeFormat::Qcow2 {
            let extra: Vec<Uuid> = rec
                .snapshots
                .iter()
                .filter(|s| !d.snapshots.contains(s))
                .copied()
                .collect();
            for s in extra {
                let removed = match users.first() {
                    Some(dir) => qemu::snapshot_internal(dir, d.id, &s.to_string(), false).await,
                    None => {
                        host.pool
                            .snapshot(d.id, rec.format, SnapshotOp::Delete, s)
                            .await
                    }
                };
                note(errors, &format!("deleting snapshot {s}"), removed);
            }
            if let Err(e) = self.snapshots(host, d, rec).await {
                errors.push(format!("listing snapshots: {e:#}"));
            }
        }
        rec.snapshot_errors = snapshot_errors;
    }

    /// Read the snapshots that exist into `rec` (our snapshots are named by UUID).
    async fn snapshots(
        &self,
        host: &Host,
        d: &DesiredVolume,
        rec: &mut VolumeRecord,
    ) -> anyhow::Result<Vec<Uuid>> {
        let names = host.pool.snapshot_list(d.id, rec.format).await?;
        rec.snapshots = names.iter().filter_map(|n| n.parse().ok()).collect();
        Ok(rec.snapshots.clone())
    }

    /// Grow to the desired size (never shrink): in every running QEMU that has the
    /// volume open, else offline. The recorded size is read back from the pool.
    async fn grow(
        &self,
        host: &Host,
        d: &DesiredVolume,
        rec: &mut VolumeRecord,
        users: &[qemu::VmDir],
    ) -> anyhow::Result<()> {
        let current = host.pool.size(d.id, rec.format).await?;
        rec.size_gib = ceil_gib(current);
        let want = gib(d.size_gib)?;
        if want <= current {
            return Ok(());
        }
        let grown = if users.is_empty() {
            host.pool.grow(d.id, rec.format, want).await
        } else {
            let mut r = Ok(());
            for dir in users {
                r = qemu::block_resize(dir, d.id, want).await;
                if r.is_err() {
                    break;
                }
            }
            r
        };
        rec.size_gib = ceil_gib(host.pool.size(d.id, rec.format).await?);
        grown
    }

    async fn delete(&self, host: &Host, format: VolumeFormat) -> anyhow::Result<()> {
        let users = crate::agent::running_with(host, self.id).await;
        anyhow::ensure!(
            users.is_empty(),
            "the volume is attached to a running instance"
        );
        host.pool.delete(self.id, format).await?;
        self.rec.remove().await
    }

    async fn converge_locked(&self, host: &Host, d: &DesiredVolume) -> anyhow::Result<()> {
        let old = self.rec.get().await;
        if d.deleted {
            let format = old.as_ref().map_or(d.format, |r| r.format);
            match self.delete(host, format).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let Some(mut rec) = old else { return Err(e) };
                    rec.generation = d.generation;
                    rec.error = Some(format!("deleting: {e:#}"));
                    return self.save(&rec).await;
                }
            }
        }
        self.rec.revive();
        let mut rec = match old {
            Some(r) if r.state == VolumeState::Ready => r,
            // A failed creation is tried again only for a newer generation.
            Some(r) if r.state == VolumeState::Error && r.generation >= d.generation => {
                return Ok(())
            }
            _ => {
                let mut rec = VolumeRecord {
                    version: RECORD_VERSION,
                    id: d.id,
                    format: d.format,
                    generation: d.generation,
                    state: VolumeState::Creating,
                    error: None,
                    size_gib: 0,
                    snapshots: Vec::new(),
                    snapshot_errors: Vec::new(),
                    revert_serial: 0,
                };
                self.save(&rec).await?;
                if let Err(e) = self.create(host, d).await {
                    rec.state = VolumeState::Error;
                    rec.error = Some(format!("creating the volume: {e:#}"));
                    return self.save(&rec).await;
                }
                rec.state = VolumeState::Ready;
                // A revert asked for before the volume existed has nothing to roll back.
                rec.revert_serial = d.revert.as_ref().map_or(0, |r| r.serial);
                rec
            }
        };
        let mut errors = Vec::new();
        self.update(host, d, &mut rec, &mut errors).await;
        rec.generation = d.generation;
        rec.error = (!errors.is_empty()).then(|| errors.join("; "));
        if let Some(e) = &rec.error {
            tracing::warn!(id = %d.id, "converging the volume: {e}");
        }
        self.save(&rec).await
    }
}

impl Resource for Volume {
    type Desired = DesiredVolume;
    type Report = VolumeReport;

    fn desired_id(d: &DesiredVolume) -> Uuid {
        d.id
    }

    async fn open(host: &Host, id: Uuid) -> Volume {
        Volume {
            id,
            rec: Tracked::open(volume_record_path(host, id)).await,
            desired_generation: AtomicI64::new(0),
        }
    }

    async fn converge(&self, host: &Host, d: &DesiredVolume) {
        let mut locked = vec![d.id];
        if let Some(VolumeSource::Snapshot { volume_id, .. }) = &d.source {
            locked.push(*volume_id);
        }
        let _locks = host.lock_volumes(&locked).await;
        self.desired_generation
            .store(d.generation, Ordering::SeqCst);
        if let Err(e) = self.converge_locked(host, d).await {
            self.rec
                .failed("volume", e, |r, msg| r.error = Some(msg))
                .await;
        }
    }

    async fn report(&self, host: &Host) -> VolumeReport {
        let Some(rec) = self.rec.get().await else {
            return VolumeReport {
                id: self.id,
                generation: self.desired_generation.load(Ordering::SeqCst),
                state: self.rec.absent_state(),
                error: None,
                size_gib: 0,
                allocated_bytes: 0,
                snapshots: Vec::new(),
                revert_serial: 0,
            };
        };
        let mut snapshots: Vec<SnapshotReport> = rec
            .snapshots
            .iter()
            .map(|s| SnapshotReport {
                id: *s,
                error: None,
            })
            .collect();
        snapshots.extend(rec.snapshot_errors.iter().cloned());
        VolumeReport {
            id: self.id,
            generation: rec.generation,
            state: rec.state,
            error: rec.error.clone(),
            size_gib: rec.size_gib,
            allocated_bytes: if rec.state == VolumeState::Ready {
                clamp_i64(host.pool.allocated_bytes(self.id, rec.format))
            } else {
                0
            },
            snapshots,
            revert_serial: rec.revert_serial,
        }
    }

    async fn is_gone(&self) -> bool {
        self.rec.is_gone()
    }
}

// ------------------------------------------------------------------ backups

/// What was made of one backup (`<backup_dir>/<id>.json`; the copy is `<id>.qcow2`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BackupRecord {
    version: u32,
    id: Uuid,
    volume_id: Uuid,
    /// `Creating` on disk means the agent stopped while copying: it is copied again.
    state: VolumeState,
    error: Option<String>,
    stored_bytes: i64,
}

/// The standalone qcow2 copy of backup `id`.
pub fn backup_path(host: &Host, id: Uuid) -> PathBuf {
    host.backup_dir.join(format!("{id}.qcow2"))
}

fn backup_record_path(host: &Host, id: Uuid) -> PathBuf {
    host.backup_dir.join(format!("{id}.json"))
}

/// One backup copy in this host's backup directory.
pub struct Backup {
    pub id: Uuid,
    rec: Tracked<BackupRecord>,
}

impl Backup {
    /// Copy the volume as of now to `dst`: through the QEMU of a running guest that has
    /// it open (a full backup job, point in time), else with `qemu-img convert`.
    async fn copy(&self, host: &Host, volume: Uuid, dst: &Path) -> anyhow::Result<()> {
        let format = ready_format(host, volume).await?;
        match crate::agent::running_with(host, volume).await.first() {
            Some(dir) => {
                let tmp = dst.with_extension("copying");
                let size = host.pool.size(volume, format).await?;
                let copied = async {
                    disk::run(
                        tokio::process::Command::new("qemu-img")
                            .args(["create", "-q", "-f", "qcow2"])
                            .arg(&tmp)
                            .arg(size.to_string()),
                    )
                    .await?;
                    let tag = &self.id.simple().to_string()[..28];
                    qemu::backup(dir, volume, &tmp, tag).await?;
                    tokio::fs::rename(&tmp, dst).await?;
                    anyhow::Ok(())
                }
                .await;
                if copied.is_err() {
                    let _ = tokio::fs::remove_file(&tmp).await;
                }
                copied
            }
            None => host.pool.export(volume, format, dst).await,
        }?;
        host.fault("agent.backup")
    }

    async fn converge_locked(&self, host: &Host, d: &DesiredBackup) -> anyhow::Result<()> {
        let path = backup_path(host, d.id);
        if d.deleted {
            remove_file(&path).await?;
            return self.rec.remove().await;
        }
        self.rec.revive();
        let old = self.rec.get().await;
        if old
            .as_ref()
            .is_some_and(|r| r.state != VolumeState::Creating)
        {
            // Made once (or failed once): kept as it is until deleted.
            return Ok(());
        }
        let mut rec = BackupRecord {
            version: RECORD_VERSION,
            id: d.id,
            volume_id: d.volume_id,
            state: VolumeState::Creating,
            error: None,
            stored_bytes: 0,
        };
        self.rec.save(&rec).await?;
        remove_file(&path).await?;
        match self.copy(host, d.volume_id, &path).await {
            Ok(()) => {
                rec.state = VolumeState::Ready;
                rec.stored_bytes = std::fs::metadata(&path).map_or(0, |m| {
                    clamp_i64(std::os::unix::fs::MetadataExt::blocks(&m) * 512)
                });
            }
            Err(e) => {
                let _ = remove_file(&path).await;
                rec.state = VolumeState::Error;
                rec.error = Some(format!("backing up volume {}: {e:#}", d.volume_id));
            }
        }
        self.rec.save(&rec).await
    }
}

impl Resource for Backup {
    type Desired = DesiredBackup;
    type Report = BackupReport;

    fn desired_id(d: &DesiredBackup) -> Uuid {
        d.id
    }

    async fn open(host: &Host, id: Uuid) -> Backup {
        Backup {
            id,
            rec: Tracked::open(backup_record_path(host, id)).await,
        }
    }

    async fn converge(&self, host: &Host, d: &DesiredBackup) {
        let _lock = host.lock_volumes(&[d.volume_id]).await;
        if let Err(e) = self.converge_locked(host, d).await {
            self.rec
                .failed("backup", e, |r, msg| r.error = Some(msg))
                .await;
        }
    }

    async fn report(&self, _host: &Host) -> BackupReport {
        match self.rec.get().await {
            Some(r) => BackupReport {
                id: self.id,
                state: r.state,
                error: r.error,
                stored_bytes: r.stored_bytes,
            },
            None => BackupReport {
                id: self.id,
                state: self.rec.absent_state(),
                error: None,
                stored_bytes: 0,
            },
        }
    }

    async fn is_gone(&self) -> bool {
        self.rec.is_gone()
    }
}
