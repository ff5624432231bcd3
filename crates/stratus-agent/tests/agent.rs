//! Converging one instance with the real QEMU driver and the tiny image, without a control
//! plane: images come from a local directory. Each guest boot costs seconds under TCG, so
//! the lifecycle is one test.

mod common;

use common::{fixture, no_process, report, wait_console};
use stratus_agent::agent::{Host, Instance};
use stratus_agent::{disk, qemu};
use stratus_api::{ActualState, DesiredPower};
use uuid::Uuid;

/// Nothing of the instance is left: no directory, no sockets.
fn no_files(host: &Host, id: Uuid) -> bool {
    let dir = qemu::VmDir::new(&host.state_dir, id);
    !dir.0.exists() && !dir.qmp().exists() && !dir.vnc().exists() && !dir.serial().exists()
}

#[tokio::test]
async fn instance_lifecycle_with_qemu() {
    let fx = fixture().await;
    let host = fx.host("host", &[]);
    let id = Uuid::new_v4();
    let mut d = fx.desired(id, "web1");
    let inst = Instance::open(&host, id).await;

    // Build and start; the console arrives in the reports and is not repeated once
    // acknowledged.
    inst.converge(&host, &d).await;
    let r = report(&inst).await;
    assert_eq!(r.state, ActualState::Running, "{r:?}");
    assert_eq!(r.generation, 1);
    let port = r.vnc_port.expect("a VNC port") as u16;
    assert!(port >= 5900);
    let mut console = String::new();
    wait_console(&inst, &mut console, "STRATUS-READY hostname=web1", 1).await;
    assert!(console.contains(&format!("{id}")), "{console}");
    let r = report(&inst).await;
    assert!(
        r.counters.as_ref().is_some_and(|c| c.cpu_seconds > 0.0),
        "{r:?}"
    );
    let pid = qemu::pid(inst.dir(), id).unwrap();

    // A console password: the serial is reported; VNC answers on TCP.
    d.generation = 2;
    d.console_serial = 1;
    d.console_password = Some("pw123456".into());
    d.console_expires_at = Some(chrono::Utc::now() + chrono::Duration::seconds(300));
    inst.converge(&host, &d).await;
    let r = report(&inst).await;
    assert_eq!(
        (r.state, r.generation, r.console_serial),
        (ActualState::Running, 2, 1)
    );
    let mut vnc = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut hello = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut vnc, &mut hello)
        .await
        .unwrap();
    assert_eq!(&hello[..4], b"RFB ");
    drop(vnc);
    // The applied record has no password in it.
    let applied = std::fs::read_to_string(inst.dir().0.join("applied.json")).unwrap();
    assert!(!applied.contains("pw123456"), "{applied}");

    // An agent restart: the record is read back, the running guest is not touched.
    drop(inst);
    let inst = Instance::open(&host, id).await;
    inst.converge(&host, &d).await;
    let r = report(&inst).await;
    assert_eq!((r.state, r.generation), (ActualState::Running, 2));
    assert_eq!(r.vnc_port, Some(i64::from(port)));
    assert_eq!(qemu::pid(inst.dir(), id), Some(pid));
    assert!(
        r.console_append
            .as_deref()
            .is_none_or(|c| !c.contains("STRATUS-READY")),
        "acknowledged console output came again: {r:?}"
    );

    // Graceful stop, then resize and capture while stopped.
    d.generation = 3;
    d.power = DesiredPower::Stopped;
    inst.converge(&host, &d).await;
    let r = report(&inst).await;
    assert_eq!((r.state, r.generation), (ActualState::Stopped, 3), "{r:?}");
    assert!(no_process(id));
    let captured = Uuid::new_v4();
    d.generation = 4;
    d.memory_mib = 384;
    d.root_disk_gib = 2;
    d.capture_image_id = Some(captured);
    inst.converge(&host, &d).await;
    let r = report(&inst).await;
    assert_eq!(r.capture_image_id, Some(captured), "{r:?}");
    let info = disk::info(&fx.images.join(format!("{captured}.qcow2")), Some("qcow2"))
        .await
        .unwrap();
    assert!(info.backing_filename.is_none(), "{info:?}");
    assert_eq!(info.virtual_size, 2 << 30);

    // Start again with the new size; the guest boots a second time.
    d.generation = 5;
    d.power = DesiredPower::Running;
    inst.converge(&host, &d).await;
    let r = report(&inst).await;
    assert_eq!((r.state, r.generation), (ActualState::Running, 5), "{r:?}");
    assert_eq!(r.counters.unwrap().memory_bytes, 384 << 20);
    wait_console(&inst, &mut console, "STRATUS-READY hostname=web1", 2).await;

    // Delete: no process, no files, reported gone.
    d.generation = 6;
    d.power = DesiredPower::Deleted;
    inst.converge(&host, &d).await;
    let r = report(&inst).await;
    assert_eq!((r.state, r.generation), (ActualState::Gone, 6));
    assert!(r.vnc_port.is_none() && r.console_append.is_none());
    assert!(no_process(id), "QEMU of {id} still runs");
    assert!(no_files(&host, id));
    std::fs::remove_dir_all(&fx.root).unwrap();
}

#[tokio::test]
async fn failed_builds_report_an_error_and_leave_nothing() {
    let fx = fixture().await;
    let cases: [(&str, &[&str], &str); 5] = [
        ("image", &["agent.image"], "downloading image"),
        (
            "disk",
            &["agent.disk"],
            "creating the root disk: injected fault at agent.disk",
        ),
        (
            "cidata",
            &["agent.cidata"],
            "building the config drive: injected fault at agent.cidata",
        ),
        (
            "start",
            &["agent.start"],
            "starting QEMU: injected fault at agent.start",
        ),
        ("sha", &[], "sha256 mismatch"),
    ];
    for (name, faults, expect) in cases {
        let host = fx.host(name, faults);
        let id = Uuid::new_v4();
        let mut d = fx.desired(id, name);
        if name == "sha" {
            d.image_sha256 = "0".repeat(64);
        }
        let inst = Instance::open(&host, id).await;
        inst.converge(&host, &d).await;
        let r = report(&inst).await;
        assert_eq!(r.state, ActualState::Error, "{name}: {r:?}");
        let msg = r.error.unwrap_or_default();
        assert!(msg.contains(expect), "{name}: {msg}");
        if name == "image" {
            assert!(msg.contains("injected fault at agent.image"), "{msg}");
        }
        assert!(no_process(id), "{name}: QEMU of {id} still runs");
        assert!(no_files(&host, id), "{name}: files of {id} left");
        // The same generation is not retried; deleting the failed instance works.
        inst.converge(&host, &d).await;
        assert_eq!(report(&inst).await.state, ActualState::Error);
        d.generation = 2;
        d.power = DesiredPower::Deleted;
        inst.converge(&host, &d).await;
        assert_eq!(report(&inst).await.state, ActualState::Gone);
        assert!(no_files(&host, id));
    }
    // A bad image download leaves no partial file in the cache.
    let cache: Vec<_> = std::fs::read_dir(fx.root.join("sha/images"))
        .unwrap()
        .flatten()
        .collect();
    assert!(cache.is_empty(), "{cache:?}");
    std::fs::remove_dir_all(&fx.root).unwrap();
}
