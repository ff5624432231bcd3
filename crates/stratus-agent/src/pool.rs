//! Storage pools: where the data of block storage volumes (EVS) lives on a host.
//!
//! [`StoragePool`] is what the agent's volume, backup and attachment code needs from a
//! pool: make a volume (empty, or from a snapshot, a backup or an image file), delete it,
//! grow it and manage its snapshots while no guest has it open, export it to a standalone
//! backup file, say what it costs, and describe it to QEMU as a `-blockdev` /
//! `blockdev-add` node. Operations on a volume a running guest has open go through that
//! guest's QEMU instead (see [`crate::qemu`]): QEMU locks the files it uses.
//!
//! [`LocalPool`] keeps each volume as a sparse file in one directory
//! (`<dir>/<id>.qcow2` or `<dir>/<id>.raw`) and drives it with `qemu-img`. qcow2 volumes
//! keep their snapshots inside the file (internal snapshots named by the snapshot's
//! UUID); raw volumes are the shareable ones (several guests may write them) and have no
//! snapshots in this pool. A Ceph RBD pool is meant to implement the same trait later
//! (RBD images, RBD snapshots and clones, `driver: rbd` nodes); none exists yet.

use std::future::Future;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::Context as _;
use serde_json::{json, Value};
use stratus_api::VolumeFormat;
use tokio::process::Command;
use uuid::Uuid;

use crate::disk;

/// The future of a pool operation (boxed, so that pools can be used as `dyn StoragePool`).
pub type PoolFuture<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

/// Where a new volume's data comes from, as the pool sees it.
#[derive(Debug, Clone, Copy)]
pub enum Fill<'a> {
    /// Zeroes (costs nothing until written).
    Empty,
    /// A copy of `snapshot` of `volume`, a qcow2 volume in this pool.
    Snapshot { volume: Uuid, snapshot: Uuid },
    /// A copy of a standalone image file (a backup copy, a cached image) of `format`.
    File { path: &'a Path, format: &'a str },
}

/// QMP node names and the device id of one volume in one guest. QEMU allows at most 31
/// characters, so they are a letter and the first 28 hex digits of the volume UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// The protocol node (`file`, later `rbd`).
    pub file: String,
    /// The format node (`qcow2`/`raw`): the guest device's drive and the node that block
    /// jobs, resizes and internal snapshots name. It must stay a root node, so there is no
    /// throttle filter above it (limits are set on the device's BlockBackend).
    pub format: String,
    /// The `virtio-blk-pci` device.
    pub device: String,
}

impl Nodes {
    pub fn of(volume: Uuid) -> Nodes {
        let hex = volume.simple().to_string();
        let short = &hex[..28];
        Nodes {
            file: format!("f{short}"),
            format: format!("v{short}"),
            device: format!("d{short}"),
        }
    }
}

/// What the control plane's volumes need from a storage pool. `size` arguments are bytes.
/// Offline operations must not be used on a volume a running QEMU has open.
pub trait StoragePool: Send + Sync {
    /// Size of the pool, GiB (reported as the host's `volume_pool_gib`).
    fn capacity_gib(&self) -> i64;
    /// True if the volume's data exists.
    fn exists(&self, id: Uuid, format: VolumeFormat) -> bool;
    /// Make a volume of `size` bytes (at least the source's size) filled from `fill`.
    /// A failure leaves nothing behind.
    fn create<'a>(
        &'a self,
        id: Uuid,
        format: VolumeFormat,
        size: u64,
        fill: Fill<'a>,
    ) -> PoolFuture<'a, ()>;
    /// Remove the volume and its snapshots (nothing to remove is fine).
    fn delete(&self, id: Uuid, format: VolumeFormat) -> PoolFuture<'_, ()>;
    /// The volume's size in bytes (readable while a guest has it open).
    fn size(&self, id: Uuid, format: VolumeFormat) -> PoolFuture<'_, u64>;
    /// Grow the volume to `size` bytes (offline).
    fn grow(&self, id: Uuid, format: VolumeFormat, size: u64) -> PoolFuture<'_, ()>;
    /// Names of the volume's snapshots (readable while a guest has it open).
    fn snapshot_list(&self, id: Uuid, format: VolumeFormat) -> PoolFuture<'_, Vec<String>>;
    /// Take, delete or revert to the snapshot named `snapshot` (offline). After a revert
    /// the volume has the snapshot's size.
    fn snapshot(
        &self,
        id: Uuid,
        format: VolumeFormat,
        op: SnapshotOp,
        snapshot: Uuid,
    ) -> PoolFuture<'_, ()>;
    /// Write a standalone qcow2 copy of the volume's current data to `dst` (offline).
    fn export<'a>(&'a self, id: Uuid, format: VolumeFormat, dst: &'a Path) -> PoolFuture<'a, ()>;
    /// Bytes the pool really holds for the volume (sparse: what was written).
    fn allocated_bytes(&self, id: Uuid, format: VolumeFormat) -> u64;
    /// The QEMU block node tree of the volume (a format node over a protocol node, named
    /// by [`Nodes::of`]), for `-blockdev` and `blockdev-add` alike.
    fn blockdev(&self, id: Uuid, format: VolumeFormat) -> Value;
}

/// What to do with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOp {
    Create,
    Delete,
    Revert,
}

/// The error for snapshot operations on raw volumes.
pub const RAW_SNAPSHOTS: &str =
    "snapshots of raw (shareable) volumes are not supported by the local storage pool";

fn format_name(format: VolumeFormat) -> &'static str {
    match format {
        VolumeFormat::Qcow2 => "qcow2",
        VolumeFormat::Raw => "raw",
    }
}

/// Volumes as sparse files in one directory, driven with `qemu-img`.
#[derive(Debug, Clone)]
pub struct LocalPool {
    dir: PathBuf,
}

impl LocalPool {
    /// The pool in `dir` (created if missing).
    pub fn new(dir: &Path) -> anyhow::Result<LocalPool> {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        Ok(LocalPool {
            dir: dir.to_path_buf(),
        })
    }

    /// The file holding the volume's data.
    pub fn path(&self, id: Uuid, format: VolumeFormat) -> PathBuf {
        self.dir.join(format!("{id}.{}", format_name(format)))
    }

    fn qcow2_only(format: VolumeFormat) -> anyhow::Result<()> {
        anyhow::ensure!(format == VolumeFormat::Qcow2, RAW_SNAPSHOTS);
        Ok(())
    }

    async fn snapshot_op(
        &self,
        id: Uuid,
        format: VolumeFormat,
        op: SnapshotOp,
        snapshot: Uuid,
    ) -> anyhow::Result<()> {
        Self::qcow2_only(format)?;
        let op = match op {
            SnapshotOp::Create => "-c",
            SnapshotOp::Delete => "-d",
            SnapshotOp::Revert => "-a",
        };
        disk::run(
            Command::new("qemu-img")
                .args(["snapshot", "-q", "-f", "qcow2", op, &snapshot.to_string()])
                .arg(self.path(id, format)),
        )
        .await
        .map(|_| ())
    }

    async fn create_file(
        &self,
        tmp: &Path,
        format: VolumeFormat,
        size: u64,
        fill: Fill<'_>,
    ) -> anyhow::Result<()> {
        let fmt = format_name(format);
        match fill {
            Fill::Empty => {
                disk::run(
                    Command::new("qemu-img")
                        .args(["create", "-q", "-f", fmt])
                        .arg(tmp)
                        .arg(size.to_string()),
                )
                .await?;
            }
            Fill::Snapshot { volume, snapshot } => {
                // -U: the source may be attached to a running guest; the snapshot's clusters
                // never change, so reading them without QEMU's lock is safe.
                disk::run(
                    Command::new("qemu-img")
                        .args(["convert", "-q", "-U", "-f", "qcow2", "-O", fmt, "-l"])
                        .arg(format!("snapshot.name={snapshot}"))
                        .arg(self.path(volume, VolumeFormat::Qcow2))
                        .arg(tmp),
                )
                .await
                .with_context(|| format!("copying snapshot {snapshot} of volume {volume}"))?;
            }
            Fill::File { path, format: src } => {
                disk::run(
                    Command::new("qemu-img")
                        .args(["convert", "-q", "-f", src, "-O", fmt])
                        .arg(path)
                        .arg(tmp),
                )
                .await
                .with_context(|| format!("copying {}", path.display()))?;
            }
        }
        let have = disk::info(tmp, Some(fmt)).await?.virtual_size;
        if have < size {
            disk::resize(tmp, fmt, size).await?;
        }
        Ok(())
    }
}

impl StoragePool for LocalPool {
    fn capacity_gib(&self) -> i64 {
        crate::identity::disk_gib(&self.dir)
    }

    fn exists(&self, id: Uuid, format: VolumeFormat) -> bool {
        self.path(id, format).exists()
    }

    fn create<'a>(
        &'a self,
        id: Uuid,
        format: VolumeFormat,
        size: u64,
        fill: Fill<'a>,
    ) -> PoolFuture<'a, ()> {
        Box::pin(async move {
            let dst = self.path(id, format);
            // Made beside the volume and renamed: a volume file is always complete.
            let tmp = dst.with_extension("creating");
            let _ = tokio::fs::remove_file(&tmp).await;
            let made = self.create_file(&tmp, format, size, fill).await;
            let made = match made {
                Ok(()) => tokio::fs::rename(&tmp, &dst).await.map_err(Into::into),
                Err(e) => Err(e),
            };
            if made.is_err() {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            made
        })
    }

    fn delete(&self, id: Uuid, format: VolumeFormat) -> PoolFuture<'_, ()> {
        Box::pin(async move {
            let path = self.path(id, format);
            let _ = tokio::fs::remove_file(path.with_extension("creating")).await;
            match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| path.display().to_string())
                }
                _ => Ok(()),
            }
        })
    }

    fn size(&self, id: Uuid, format: VolumeFormat) -> PoolFuture<'_, u64> {
        Box::pin(async move {
            Ok(
                disk::info_shared(&self.path(id, format), format_name(format))
                    .await?
                    .virtual_size,
            )
        })
    }

    fn grow(&self, id: Uuid, format: VolumeFormat, size: u64) -> PoolFuture<'_, ()> {
        Box::pin(
            async move { disk::resize(&self.path(id, format), format_name(format), size).await },
        )
    }

    fn snapshot_list(&self, id: Uuid, format: VolumeFormat) -> PoolFuture<'_, Vec<String>> {
        Box::pin(async move {
            if format == VolumeFormat::Raw {
                return Ok(Vec::new());
            }
            Ok(disk::info_shared(&self.path(id, format), "qcow2")
                .await?
                .snapshots
                .into_iter()
                .map(|s| s.name)
                .collect())
        })
    }

    fn snapshot(
        &self,
        id: Uuid,
        format: VolumeFormat,
        op: SnapshotOp,
        snapshot: Uuid,
    ) -> PoolFuture<'_, ()> {
        Box::pin(self.snapshot_op(id, format, op, snapshot))
    }

    fn export<'a>(&'a self, id: Uuid, format: VolumeFormat, dst: &'a Path) -> PoolFuture<'a, ()> {
        Box::pin(async move {
            disk::convert(&self.path(id, format), format_name(format), dst, "qcow2").await
        })
    }

    fn allocated_bytes(&self, id: Uuid, format: VolumeFormat) -> u64 {
        std::fs::metadata(self.path(id, format)).map_or(0, |m| m.blocks() * 512)
    }

    fn blockdev(&self, id: Uuid, format: VolumeFormat) -> Value {
        let n = Nodes::of(id);
        json!({
            "driver": format_name(format),
            "node-name": n.format,
            "discard": "unmap",
            "file": {
                "driver": "file",
                "node-name": n.file,
                "filename": self.path(id, format).display().to_string(),
                "aio": "threads",
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_fit_qemu() {
        let n = Nodes::of(Uuid::new_v4());
        for name in [&n.file, &n.format, &n.device] {
            assert!(name.len() <= 31, "{name}");
            assert!(name.starts_with(|c: char| c.is_ascii_alphabetic()));
        }
        assert_ne!(n.file, n.format);
    }
}
