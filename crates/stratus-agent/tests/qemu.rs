//! Real QEMU guests (TCG here): the tiny image boots, reads its config drive, and goes
//! through pause, reset, graceful stop, suspend/resume and forced stop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use common::tiny_image;
use stratus_agent::accel::{self, Accel};
use stratus_agent::qemu::{self, PowerState, VmDir, VmSpec};
use stratus_agent::{cidata, disk};
use uuid::Uuid;

fn state_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("stratus-agent-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn wait_console(dir: &VmDir, needle: &str, count: usize, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = qemu::console_tail(dir, 1 << 20).await.unwrap();
        if log.matches(needle).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} (#{count}) on the console within {timeout:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn accelerator_probe_boots_firmware_with_tcg() {
    let dir = state_dir();
    assert!(accel::probe(Accel::Tcg, &dir, Duration::from_secs(60))
        .await
        .unwrap());
    let chosen = accel::detect(&dir, None).await.unwrap();
    // Whatever was chosen really booted, and the choice is cached.
    assert!(accel::probe(chosen, &dir, Duration::from_secs(60))
        .await
        .unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("accel")).unwrap(),
        format!("\"{}\"", chosen.as_str())
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn tiny_guest_lifecycle() {
    let image = tiny_image();
    let state = state_dir();
    let id = Uuid::new_v4();
    let dir = VmDir::new(&state, id);
    dir.create().unwrap();
    disk::overlay(&image, &dir.root_disk(), 1 << 30)
        .await
        .unwrap();
    let info = disk::info(&dir.root_disk(), Some("qcow2")).await.unwrap();
    assert_eq!(info.virtual_size, 1 << 30);
    let keys = vec!["ssh-ed25519 AAAAC3NzaTest test@stratus".to_string()];
    let user_data = b"#!/bin/sh\necho user-data-ran > /dev/console\n";
    cidata::build(
        &dir.0.join("cidata"),
        &dir.cidata(),
        &cidata::Metadata {
            instance_id: &id.to_string(),
            hostname: "web1",
            ssh_keys: &keys,
            user_data: Some(user_data),
        },
    )
    .await
    .unwrap();
    let spec = VmSpec {
        id,
        vcpus: 1,
        memory_mib: 256,
        accel: Accel::Tcg,
        root_disk: dir.root_disk(),
        cidata: Some(dir.cidata()),
        vnc_listen: "127.0.0.1".into(),
        vnc_port: qemu::free_vnc_port("127.0.0.1", &[]).unwrap(),
        volumes: vec![],
        boot: None,
        nics: vec![],
    };

    qemu::start(&spec, &dir, false).await.unwrap();
    let log = wait_console(
        &dir,
        "STRATUS-READY hostname=web1",
        1,
        Duration::from_secs(90),
    )
    .await;
    assert!(log.contains("user-data-ran"), "{log}");
    assert!(
        log.contains(&format!("instance-id=\"{id}\" keys=1"))
            || log.contains(&format!("instance-id={id} keys=1")),
        "{log}"
    );
    assert_eq!(qemu::power_state(&dir, id).await, PowerState::Running);
    let pid = qemu::pid(&dir, id).unwrap();

    let c = qemu::counters(&dir, id).await.unwrap();
    assert!(
        c.cpu_seconds > 0.0 && c.rss_bytes > 0 && c.disk_read_bytes > 0 && c.disk_read_ops > 0,
        "{c:?}"
    );
    assert_eq!(c.guest_memory_bytes, 256 << 20);

    qemu::pause(&dir).await.unwrap();
    assert_eq!(qemu::power_state(&dir, id).await, PowerState::Paused);
    qemu::unpause(&dir).await.unwrap();
    assert_eq!(qemu::power_state(&dir, id).await, PowerState::Running);

    // A hard reset reboots the guest in the same process.
    qemu::reset(&dir).await.unwrap();
    wait_console(&dir, "STRATUS-READY", 2, Duration::from_secs(90)).await;
    assert_eq!(qemu::pid(&dir, id), Some(pid));

    // A graceful stop: the guest powers itself off on the ACPI button.
    assert!(
        qemu::stop(&dir, id, Duration::from_secs(60)).await.unwrap(),
        "the guest did not shut down by itself"
    );
    assert_eq!(qemu::power_state(&dir, id).await, PowerState::Off);
    assert!(qemu::console_tail(&dir, 4096)
        .await
        .unwrap()
        .contains("power button"));

    // Start again, then suspend to disk and resume: the guest continues, it does not boot.
    qemu::start(&spec, &dir, false).await.unwrap();
    wait_console(&dir, "STRATUS-READY", 3, Duration::from_secs(90)).await;
    qemu::suspend(&dir, id).await.unwrap();
    assert_eq!(qemu::power_state(&dir, id).await, PowerState::Off);
    assert!(dir.saved_state().exists());
    qemu::start(&spec, &dir, true).await.unwrap();
    assert_eq!(qemu::power_state(&dir, id).await, PowerState::Running);
    assert!(!dir.saved_state().exists());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = qemu::console_tail(&dir, 1 << 20).await.unwrap();
    assert_eq!(
        log.matches("STRATUS-READY").count(),
        3,
        "resume must not reboot the guest"
    );

    // A one-time VNC password can be set; the console listens on TCP and speaks RFB.
    assert_eq!(qemu::vnc_password(&dir).await.unwrap().len(), 8);
    let mut vnc = tokio::net::TcpStream::connect(("127.0.0.1", spec.vnc_port))
        .await
        .unwrap();
    let mut hello = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut vnc, &mut hello)
        .await
        .unwrap();
    assert_eq!(&hello[..4], b"RFB ");
    drop(vnc);

    // Forced stop leaves no process.
    assert!(!qemu::stop(&dir, id, Duration::ZERO).await.unwrap());
    assert!(qemu::pid(&dir, id).is_none());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the QEMU process {pid} is gone"
    );
    std::fs::remove_dir_all(&state).unwrap();
}

#[tokio::test]
async fn images_convert_between_formats_and_corrupt_files_are_refused() {
    let image = tiny_image();
    let dir = state_dir();
    for fmt in ["raw", "vmdk", "vpc", "qcow2"] {
        let out = dir.join(format!("tiny.{fmt}"));
        disk::convert(&image, "qcow2", &out, fmt).await.unwrap();
        let info = disk::info(&out, Some(fmt)).await.unwrap();
        assert_eq!(info.format, fmt);
        assert!(info.virtual_size >= 64 << 20, "{fmt}: {info:?}");
        disk::check(&out, fmt).await.unwrap();
    }
    let bad = dir.join("bad.qcow2");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes.truncate(4096);
    std::fs::write(&bad, &bytes).unwrap();
    assert!(
        disk::check(&bad, "qcow2").await.is_err() || disk::info(&bad, Some("qcow2")).await.is_err()
    );
    std::fs::write(&bad, b"this is not a disk image").unwrap();
    assert!(disk::info(&bad, Some("qcow2")).await.is_err());
    std::fs::remove_dir_all(dir).unwrap();
}
