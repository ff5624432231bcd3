//! The local storage pool with qemu-img (no guest): sparse volumes, growing, snapshots and
//! reverts, clones, backup export and restore, raw volumes, deletion. Data is written and
//! checked with `qemu-io` patterns.

use std::path::{Path, PathBuf};
use std::process::Command;

use stratus_agent::pool::{Fill, LocalPool, SnapshotOp, StoragePool, RAW_SNAPSHOTS};
use stratus_api::VolumeFormat;
use uuid::Uuid;

const GIB: u64 = 1 << 30;

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("stratus-pool-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `qemu-io -c <cmd>` on an image; true if it succeeded (a read with `-P` fails when the
/// pattern does not match).
fn qemu_io(path: &Path, format: &str, cmd: &str) -> bool {
    let out = Command::new("qemu-io")
        .args(["-f", format, "-c", cmd])
        .arg(path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    out.status.success() && !text.contains("Pattern verification failed") && !text.contains("error")
}

#[tokio::test]
async fn local_pool_volumes_snapshots_clones_and_backups() {
    let dir = temp_dir();
    let pool = LocalPool::new(&dir.join("volumes")).unwrap();
    assert!(pool.capacity_gib() > 0);
    let q = VolumeFormat::Qcow2;

    // Empty and sparse: a 32 TiB volume costs next to nothing.
    let huge = Uuid::new_v4();
    pool.create(huge, q, 32 << 40, Fill::Empty).await.unwrap();
    assert_eq!(pool.size(huge, q).await.unwrap(), 32 << 40);
    let cost = pool.allocated_bytes(huge, q);
    eprintln!("32 TiB qcow2 volume allocates {cost} bytes");
    assert!(cost < 16 << 20, "{cost}");
    pool.delete(huge, q).await.unwrap();
    assert!(!pool.exists(huge, q));

    // Write, grow, snapshot, overwrite, revert: the old bytes and the old size come back.
    let v = Uuid::new_v4();
    pool.create(v, q, GIB, Fill::Empty).await.unwrap();
    let path = pool.path(v, q);
    assert!(pool.allocated_bytes(v, q) < GIB / 100);
    assert!(qemu_io(&path, "qcow2", "write -P 0xaa 0 4M"));
    pool.grow(v, q, 2 * GIB).await.unwrap();
    assert_eq!(pool.size(v, q).await.unwrap(), 2 * GIB);
    let snap = Uuid::new_v4();
    pool.snapshot(v, q, SnapshotOp::Create, snap).await.unwrap();
    assert_eq!(
        pool.snapshot_list(v, q).await.unwrap(),
        vec![snap.to_string()]
    );
    pool.grow(v, q, 3 * GIB).await.unwrap();
    assert!(qemu_io(&path, "qcow2", "write -P 0xbb 0 4M"));
    assert!(!qemu_io(&path, "qcow2", "read -P 0xaa 0 4M"));

    // A clone of the snapshot has the snapshot's bytes (and the size asked for).
    let clone = Uuid::new_v4();
    pool.create(
        clone,
        q,
        5 * GIB,
        Fill::Snapshot {
            volume: v,
            snapshot: snap,
        },
    )
    .await
    .unwrap();
    assert!(qemu_io(&pool.path(clone, q), "qcow2", "read -P 0xaa 0 4M"));
    assert_eq!(pool.size(clone, q).await.unwrap(), 5 * GIB);
    assert!(pool.snapshot_list(clone, q).await.unwrap().is_empty());

    pool.snapshot(v, q, SnapshotOp::Revert, snap).await.unwrap();
    assert!(qemu_io(&path, "qcow2", "read -P 0xaa 0 4M"));
    assert_eq!(pool.size(v, q).await.unwrap(), 2 * GIB);

    // Backup export is standalone (no snapshots, no backing file) and restores the bytes.
    let backup = dir.join("backup.qcow2");
    pool.export(v, q, &backup).await.unwrap();
    let info = stratus_agent::disk::info(&backup, Some("qcow2"))
        .await
        .unwrap();
    assert!(info.backing_filename.is_none() && info.snapshots.is_empty());
    assert!(
        std::fs::metadata(&backup).unwrap().len() < 64 << 20,
        "the backup is sparse"
    );
    for format in [VolumeFormat::Qcow2, VolumeFormat::Raw] {
        let restored = Uuid::new_v4();
        pool.create(
            restored,
            format,
            GIB,
            Fill::File {
                path: &backup,
                format: "qcow2",
            },
        )
        .await
        .unwrap();
        let fmt = if format == q { "qcow2" } else { "raw" };
        assert!(qemu_io(
            &pool.path(restored, format),
            fmt,
            "read -P 0xaa 0 4M"
        ));
        assert!(qemu_io(
            &pool.path(restored, format),
            fmt,
            "read -P 0 4M 4M"
        ));
        // Never smaller than its source.
        assert_eq!(pool.size(restored, format).await.unwrap(), 2 * GIB);
        pool.delete(restored, format).await.unwrap();
    }

    // Snapshot deletion; a missing source leaves no file.
    pool.snapshot(v, q, SnapshotOp::Delete, snap).await.unwrap();
    assert!(pool.snapshot_list(v, q).await.unwrap().is_empty());
    let orphan = Uuid::new_v4();
    let err = pool
        .create(
            orphan,
            q,
            GIB,
            Fill::Snapshot {
                volume: v,
                snapshot: snap,
            },
        )
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains(&snap.to_string()), "{err:#}");
    assert!(!pool.exists(orphan, q));

    // Raw volumes: sparse, growable, no snapshots.
    let r = Uuid::new_v4();
    let raw = VolumeFormat::Raw;
    pool.create(r, raw, GIB, Fill::Empty).await.unwrap();
    assert_eq!(std::fs::metadata(pool.path(r, raw)).unwrap().len(), GIB);
    assert!(pool.allocated_bytes(r, raw) < 1 << 20);
    assert!(qemu_io(&pool.path(r, raw), "raw", "write -P 0xcc 0 1M"));
    pool.grow(r, raw, 2 * GIB).await.unwrap();
    assert_eq!(pool.size(r, raw).await.unwrap(), 2 * GIB);
    assert!(qemu_io(&pool.path(r, raw), "raw", "read -P 0xcc 0 1M"));
    let err = pool
        .snapshot(r, raw, SnapshotOp::Create, snap)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), RAW_SNAPSHOTS);
    let node = pool.blockdev(r, raw);
    assert_eq!(node["driver"], "raw");
    assert_eq!(
        node["file"]["filename"],
        pool.path(r, raw).display().to_string()
    );

    // Delete leaves nothing.
    for (id, f) in [(v, q), (clone, q), (r, raw)] {
        pool.delete(id, f).await.unwrap();
        pool.delete(id, f).await.unwrap();
    }
    let left: Vec<_> = std::fs::read_dir(dir.join("volumes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(dir).unwrap();
}
