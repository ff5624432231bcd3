//! Volumes in real guests (TCG): hot-attach and detach, data that moves between guests,
//! online grow, online snapshots and offline revert, I/O throttling per tier, backups of
//! an attached volume, shareable raw volumes, cold plug at start, an agent restart, and a
//! failed attach that is undone. Two guests boot once and serve every check (a boot costs
//! seconds under TCG); commands run in the guests over the serial console socket.

mod common;

use std::time::{Duration, Instant};

use common::{fixture, no_process, report, wait_console, Shell};
use stratus_agent::agent::{Host, Instance};
use stratus_agent::pool::Nodes;
use stratus_agent::qemu;
use stratus_agent::volumes::{Backup, Volume};
use stratus_agent::workers::Resource;
use stratus_api::{
    ActualState, DesiredAttachment, DesiredBackup, DesiredInstance, DesiredPower, DesiredRevert,
    DesiredVolume, VolumeFormat, VolumeReport, VolumeSource, VolumeState,
};
use uuid::Uuid;

fn volume(id: Uuid, format: VolumeFormat) -> DesiredVolume {
    DesiredVolume {
        id,
        generation: 1,
        size_gib: 1,
        format,
        source: None,
        snapshots: vec![],
        revert: None,
        deleted: false,
    }
}

fn attachment(v: &DesiredVolume, max_iops: i64) -> DesiredAttachment {
    DesiredAttachment {
        volume_id: v.id,
        serial: v.id.simple().to_string()[..20].to_string(),
        format: v.format,
        shareable: v.format == VolumeFormat::Raw,
        max_iops,
        max_mbps: 1000,
    }
}

/// Converge `v` after bumping its generation; its report must be ready without error.
async fn converge_volume(host: &Host, vol: &Volume, d: &mut DesiredVolume) -> VolumeReport {
    d.generation += 1;
    vol.converge(host, d).await;
    let r = vol.report(host).await;
    assert_eq!(
        (r.generation, r.state),
        (d.generation, VolumeState::Ready),
        "{r:?}"
    );
    r
}

/// Converge the instance after bumping its generation; returns how long it took.
async fn converge_instance(host: &Host, inst: &Instance, d: &mut DesiredInstance) -> Duration {
    d.generation += 1;
    let t = Instant::now();
    inst.converge(host, d).await;
    let took = t.elapsed();
    let r = report(inst).await;
    assert!(r.volume_errors.is_empty(), "{r:?}");
    assert_eq!(r.generation, d.generation, "{r:?}");
    took
}

/// The guest disk (`vdX`) with this serial, waiting until it is there (`present`) or gone;
/// returns it and how long the wait took.
async fn wait_disk(sh: &mut Shell, serial: &str, present: bool) -> (String, Duration) {
    let t = Instant::now();
    loop {
        let dev = sh
            .sh(&format!(
                "for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = {serial} ] && echo ${{d##*/}}; done"
            ))
            .await;
        if dev.is_empty() != present {
            return (dev, t.elapsed());
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "disk {serial} present={present} not seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Write 1 MiB of random data at the start of /dev/`dev` and return its MD5.
async fn write_random(sh: &mut Shell, dev: &str) -> String {
    sh.sh(&format!(
        "dd if=/dev/urandom of=/dev/{dev} bs=64k count=16 oflag=direct 2>/dev/null; sync"
    ))
    .await;
    md5(sh, dev).await
}

/// MD5 of the first MiB of /dev/`dev`, read past the guest's page cache.
async fn md5(sh: &mut Shell, dev: &str) -> String {
    let out = sh
        .sh(&format!(
            "dd if=/dev/{dev} bs=64k count=16 iflag=direct 2>/dev/null | md5sum"
        ))
        .await;
    let sum = out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(sum.len(), 32, "{out}");
    sum
}

/// 4 KiB direct reads per second from /dev/`dev`, timed inside the guest.
async fn read_iops(sh: &mut Shell, dev: &str) -> f64 {
    let out = sh
        .run(
            &format!(
                "a=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/{dev} of=/dev/null bs=4k count=4000 iflag=direct 2>/dev/null; b=$(cut -d' ' -f1 /proc/uptime); echo T $a $b"
            ),
            Duration::from_secs(60),
        )
        .await;
    let t: Vec<f64> = out
        .rsplit("T ")
        .next()
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    4000.0 / (t[1] - t[0]).max(0.01)
}

async fn sectors(sh: &mut Shell, dev: &str) -> u64 {
    sh.sh(&format!("cat /sys/block/{dev}/size"))
        .await
        .parse()
        .unwrap()
}

#[tokio::test]
async fn volumes_in_guests() {
    let fx = fixture().await;
    let host = fx.host("vols", &[]);

    // Volumes: a qcow2 one and a shareable raw one, sparse.
    let mut d1 = volume(Uuid::new_v4(), VolumeFormat::Qcow2);
    let mut d3 = volume(Uuid::new_v4(), VolumeFormat::Raw);
    let v1 = Volume::open(&host, d1.id).await;
    let v3 = Volume::open(&host, d3.id).await;
    let r = converge_volume(&host, &v1, &mut d1).await;
    assert!(r.error.is_none() && r.size_gib == 1, "{r:?}");
    assert!(r.allocated_bytes < 8 << 20, "{r:?}");
    converge_volume(&host, &v3, &mut d3).await;

    // Two guests, booted together.
    let (ida, idb) = (Uuid::new_v4(), Uuid::new_v4());
    let (mut da, mut db) = (fx.desired(ida, "ga"), fx.desired(idb, "gb"));
    let (ia, ib) = (
        Instance::open(&host, ida).await,
        Instance::open(&host, idb).await,
    );
    tokio::join!(ia.converge(&host, &da), ib.converge(&host, &db));
    let (mut ca, mut cb) = (String::new(), String::new());
    tokio::join!(
        wait_console(&ia, &mut ca, "STRATUS-READY", 1),
        wait_console(&ib, &mut cb, "STRATUS-READY", 1)
    );
    let mut sha = Shell::connect(&ia.dir().serial()).await;
    let mut shb = Shell::connect(&ib.dir().serial()).await;
    assert_eq!(sha.sh("hostname").await, "ga");

    // Hot-attach to A: a new disk with the volume's serial.
    let a1 = attachment(&d1, 10_000);
    da.volumes = vec![a1.clone()];
    let plug = converge_instance(&host, &ia, &mut da).await;
    let (dev, seen) = wait_disk(&mut sha, &a1.serial, true).await;
    eprintln!(
        "hot-plug: agent {:.3} s, guest sees {dev} {:.3} s later",
        plug.as_secs_f64(),
        seen.as_secs_f64()
    );
    assert_eq!(report(&ia).await.volumes, vec![d1.id]);
    assert_eq!(sectors(&mut sha, &dev).await, (1 << 30) / 512);
    let data1 = write_random(&mut sha, &dev).await;

    // Online grow: the guest sees the new size.
    d1.size_gib = 2;
    let r = converge_volume(&host, &v1, &mut d1).await;
    assert_eq!((r.size_gib, r.error), (2, None));
    let t = Instant::now();
    while sectors(&mut sha, &dev).await != (2 << 30) / 512 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the guest did not see the growth"
        );
    }

    // Online snapshot, then new data; a backup of the attached volume takes the new data.
    let s1 = Uuid::new_v4();
    d1.snapshots = vec![s1];
    let r = converge_volume(&host, &v1, &mut d1).await;
    assert_eq!(r.snapshots.len(), 1, "{r:?}");
    assert_eq!(
        (r.snapshots[0].id, r.snapshots[0].error.clone()),
        (s1, None)
    );
    let data2 = write_random(&mut sha, &dev).await;
    assert_ne!(data1, data2);
    let bk = DesiredBackup {
        id: Uuid::new_v4(),
        volume_id: d1.id,
        deleted: false,
    };
    let backup = Backup::open(&host, bk.id).await;
    let t = Instant::now();
    backup.converge(&host, &bk).await;
    let r = backup.report(&host).await;
    eprintln!(
        "online backup of a 2 GiB volume: {:.3} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        (r.state, r.error.clone()),
        (VolumeState::Ready, None),
        "{r:?}"
    );
    assert!(
        r.stored_bytes > 1 << 20 && r.stored_bytes < 64 << 20,
        "{r:?}"
    );

    // Detach: the disk leaves the guest.
    da.volumes.clear();
    let unplug = converge_instance(&host, &ia, &mut da).await;
    let (_, gone) = wait_disk(&mut sha, &a1.serial, false).await;
    eprintln!(
        "hot-unplug: agent {:.3} s (guest released it), guest listing confirms {:.3} s later",
        unplug.as_secs_f64(),
        gone.as_secs_f64()
    );
    assert!(report(&ia).await.volumes.is_empty());

    // Attached to B: the same data; throttled to 800 IOPS, then to 10,000.
    db.volumes = vec![attachment(&d1, 800)];
    converge_instance(&host, &ib, &mut db).await;
    let (devb, _) = wait_disk(&mut shb, &a1.serial, true).await;
    assert_eq!(md5(&mut shb, &devb).await, data2);
    assert_eq!(sectors(&mut shb, &devb).await, (2 << 30) / 512);
    let slow = read_iops(&mut shb, &devb).await;
    db.volumes = vec![attachment(&d1, 10_000)];
    converge_instance(&host, &ib, &mut db).await;
    let fast = read_iops(&mut shb, &devb).await;
    eprintln!(
        "4 KiB direct reads: {slow:.0} IOPS at max_iops 800, {fast:.0} IOPS at max_iops 10000"
    );
    assert!(slow < 1000.0, "{slow}");
    assert!(fast > 1000.0, "{fast}");

    // Revert while detached: the snapshot's data comes back (at the volume's size).
    db.volumes.clear();
    converge_instance(&host, &ib, &mut db).await;
    wait_disk(&mut shb, &a1.serial, false).await;
    d1.revert = Some(DesiredRevert {
        serial: 1,
        snapshot_id: s1,
    });
    let r = converge_volume(&host, &v1, &mut d1).await;
    assert_eq!((r.revert_serial, r.size_gib, r.error), (1, 2, None));
    db.volumes = vec![attachment(&d1, 10_000)];
    converge_instance(&host, &ib, &mut db).await;
    let (devb, _) = wait_disk(&mut shb, &a1.serial, true).await;
    assert_eq!(md5(&mut shb, &devb).await, data1);

    // The backup restores the data it took (into a new volume, never smaller than it).
    let mut d2 = volume(Uuid::new_v4(), VolumeFormat::Qcow2);
    d2.source = Some(VolumeSource::Backup { backup_id: bk.id });
    let v2 = Volume::open(&host, d2.id).await;
    assert_eq!(converge_volume(&host, &v2, &mut d2).await.size_gib, 2);
    let a2 = attachment(&d2, 10_000);
    // The shareable raw volume goes to both guests: what A writes, B reads.
    let a3 = attachment(&d3, 10_000);
    da.volumes = vec![a2.clone(), a3.clone()];
    db.volumes.push(a3.clone());
    converge_instance(&host, &ia, &mut da).await;
    converge_instance(&host, &ib, &mut db).await;
    let (dev2, _) = wait_disk(&mut sha, &a2.serial, true).await;
    assert_eq!(md5(&mut sha, &dev2).await, data2);
    let (dev3a, _) = wait_disk(&mut sha, &a3.serial, true).await;
    let (dev3b, _) = wait_disk(&mut shb, &a3.serial, true).await;
    let shared = write_random(&mut sha, &dev3a).await;
    assert_eq!(md5(&mut shb, &dev3b).await, shared);

    // Raw volumes have no snapshots here: the report says why.
    d3.snapshots = vec![Uuid::new_v4()];
    let r = converge_volume(&host, &v3, &mut d3).await;
    assert!(
        r.snapshots[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not supported"))
            && r.error.is_some(),
        "{r:?}"
    );
    d3.snapshots.clear();
    assert!(converge_volume(&host, &v3, &mut d3).await.error.is_none());

    // An attached volume is not deleted under a running guest.
    let mut gone3 = d3.clone();
    gone3.deleted = true;
    gone3.generation += 1;
    v3.converge(&host, &gone3).await;
    let r = v3.report(&host).await;
    assert!(r.state == VolumeState::Ready && r.error.is_some(), "{r:?}");

    // An agent restart: records are read back, running guests and their disks untouched.
    let pid = qemu::pid(ib.dir(), idb).unwrap();
    drop(ib);
    let ib = Instance::open(&host, idb).await;
    let v1 = Volume::open(&host, d1.id).await;
    v1.converge(&host, &d1).await;
    assert_eq!(v1.report(&host).await.size_gib, 2);
    ib.converge(&host, &db).await;
    let r = report(&ib).await;
    assert_eq!(r.volumes, vec![d1.id, d3.id], "{r:?}");
    assert_eq!(qemu::pid(ib.dir(), idb), Some(pid));
    assert_eq!(md5(&mut shb, &devb).await, data1);

    // Stopped with volumes: reported; the next start attaches them, throttled (cold plug).
    db.power = DesiredPower::Stopped;
    converge_instance(&host, &ib, &mut db).await;
    let r = report(&ib).await;
    assert_eq!(
        (r.state, r.volumes.clone()),
        (ActualState::Stopped, vec![d1.id, d3.id])
    );
    db.volumes[0].max_iops = 800;
    converge_instance(&host, &ib, &mut db).await;
    db.power = DesiredPower::Running;
    converge_instance(&host, &ib, &mut db).await;
    wait_console(&ib, &mut cb, "STRATUS-READY", 2).await;
    let mut shb = Shell::connect(&ib.dir().serial()).await;
    let (devb, _) = wait_disk(&mut shb, &a1.serial, true).await;
    wait_disk(&mut shb, &a3.serial, true).await;
    assert_eq!(md5(&mut shb, &devb).await, data1);
    let cold = read_iops(&mut shb, &devb).await;
    eprintln!("cold-plugged at max_iops 800: {cold:.0} IOPS");
    assert!(cold < 1000.0, "{cold}");

    // A failed attach is undone: reported, no disk, no block node left in QEMU.
    let faulty = fx.host("vols", &["agent.attach"]);
    let mut d4 = volume(Uuid::new_v4(), VolumeFormat::Qcow2);
    let v4 = Volume::open(&faulty, d4.id).await;
    converge_volume(&faulty, &v4, &mut d4).await;
    let ia = Instance::open(&faulty, ida).await;
    da.volumes.push(attachment(&d4, 800));
    da.generation += 1;
    ia.converge(&faulty, &da).await;
    let r = report(&ia).await;
    assert_eq!(r.volume_errors.len(), 1, "{r:?}");
    assert!(
        r.volume_errors[0].volume_id == d4.id
            && r.volume_errors[0]
                .error
                .contains("injected fault at agent.attach"),
        "{r:?}"
    );
    assert_eq!(r.volumes, vec![d2.id, d3.id]);
    let devices = qemu::peripherals(ia.dir()).await.unwrap();
    assert!(!devices.contains(&Nodes::of(d4.id).device), "{devices:?}");
    wait_disk(&mut sha, &attachment(&d4, 0).serial, false).await;

    // Delete everything: instances, volumes, the backup; nothing is left.
    for (inst, d) in [(&ia, &mut da), (&ib, &mut db)] {
        d.power = DesiredPower::Deleted;
        d.generation += 1;
        inst.converge(&host, d).await;
        assert_eq!(report(inst).await.state, ActualState::Gone);
    }
    assert!(no_process(ida) && no_process(idb));
    for (v, d) in [
        (&v1, &mut d1),
        (&v2, &mut d2),
        (&v3, &mut d3),
        (&v4, &mut d4),
    ] {
        d.deleted = true;
        d.generation += 1;
        v.converge(&host, d).await;
        let r = v.report(&host).await;
        assert_eq!(
            (r.state, r.generation),
            (VolumeState::Gone, d.generation),
            "{r:?}"
        );
    }
    backup
        .converge(
            &host,
            &DesiredBackup {
                deleted: true,
                ..bk
            },
        )
        .await;
    assert_eq!(backup.report(&host).await.state, VolumeState::Gone);
    for sub in ["volumes", "backups"] {
        let left: Vec<_> = std::fs::read_dir(host.state_dir.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
    std::fs::remove_dir_all(&fx.root).unwrap();
}

/// Volumes and backups without a guest: failed creations and copies leave nothing, images
/// and snapshots are sources, records survive a restart and nothing is redone.
#[tokio::test]
async fn volume_sources_failures_and_restart() {
    let fx = fixture().await;
    let faulty = fx.host("offline", &["agent.volume", "agent.backup"]);
    let host = fx.host("offline", &[]);
    let pool_file = |id: Uuid| host.state_dir.join("volumes").join(format!("{id}.qcow2"));

    // A failed creation reports an error and leaves no file; a newer generation retries.
    let mut d = volume(Uuid::new_v4(), VolumeFormat::Qcow2);
    d.source = Some(VolumeSource::Image {
        image_id: fx.image_id,
        image_sha256: fx.sha.clone(),
    });
    let v = Volume::open(&faulty, d.id).await;
    v.converge(&faulty, &d).await;
    let r = v.report(&faulty).await;
    assert_eq!(r.state, VolumeState::Error, "{r:?}");
    assert!(r.error.unwrap().contains("injected fault at agent.volume"));
    assert!(!pool_file(d.id).exists());
    let v = Volume::open(&host, d.id).await;
    v.converge(&host, &d).await;
    assert_eq!(
        v.report(&host).await.state,
        VolumeState::Error,
        "same generation: not retried"
    );
    let r = converge_volume(&host, &v, &mut d).await;
    assert_eq!((r.size_gib, r.error), (1, None));
    let info = stratus_agent::disk::info(&pool_file(d.id), Some("qcow2"))
        .await
        .unwrap();
    assert!(info.backing_filename.is_none(), "{info:?}");

    // Offline snapshot, a clone from it, an offline backup; a failed backup leaves nothing.
    let snap = Uuid::new_v4();
    d.snapshots = vec![snap];
    d.size_gib = 3;
    let r = converge_volume(&host, &v, &mut d).await;
    assert_eq!((r.size_gib, r.snapshots.len(), r.error), (3, 1, None));
    let mut c = volume(Uuid::new_v4(), VolumeFormat::Raw);
    c.source = Some(VolumeSource::Snapshot {
        volume_id: d.id,
        snapshot_id: snap,
    });
    let cv = Volume::open(&host, c.id).await;
    // The snapshot was taken after the growth: the copy has its 3 GiB, not the 1 asked.
    assert_eq!(converge_volume(&host, &cv, &mut c).await.size_gib, 3);
    let bk = DesiredBackup {
        id: Uuid::new_v4(),
        volume_id: d.id,
        deleted: false,
    };
    let failed = Backup::open(&faulty, bk.id).await;
    failed.converge(&faulty, &bk).await;
    let r = failed.report(&faulty).await;
    assert!(r.state == VolumeState::Error && r.error.is_some(), "{r:?}");
    assert!(!host.backup_dir.join(format!("{}.qcow2", bk.id)).exists());
    let bk2 = DesiredBackup {
        id: Uuid::new_v4(),
        ..bk.clone()
    };
    let b = Backup::open(&host, bk2.id).await;
    b.converge(&host, &bk2).await;
    assert_eq!(b.report(&host).await.state, VolumeState::Ready);

    // A restart: records are read back, nothing is made again.
    let modified = std::fs::metadata(pool_file(d.id))
        .unwrap()
        .modified()
        .unwrap();
    let v = Volume::open(&host, d.id).await;
    assert_eq!(v.report(&host).await.snapshots.len(), 1);
    v.converge(&host, &d).await;
    let r = v.report(&host).await;
    assert_eq!((r.generation, r.size_gib, r.error), (d.generation, 3, None));
    assert_eq!(
        std::fs::metadata(pool_file(d.id))
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );
    let b = Backup::open(&host, bk2.id).await;
    b.converge(&host, &bk2).await;
    assert!(b.report(&host).await.stored_bytes > 0);

    // Dropping the snapshot from the desired list deletes it.
    d.snapshots.clear();
    assert!(converge_volume(&host, &v, &mut d)
        .await
        .snapshots
        .is_empty());
    std::fs::remove_dir_all(&fx.root).unwrap();
}
