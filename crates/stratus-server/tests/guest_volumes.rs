//! Block storage end to end: the control plane with its all-in-one agent, real QEMU guests
//! (the tiny image under TCG) and real qcow2 volumes, driven through the API; the guests
//! are checked from inside over their serial consoles.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use stratus_agent::console::SerialShell;
use stratus_client::Client;

/// Poll `path` until its status is `want` (failing on `error`).
async fn settle(c: &Client, path: &str, want: &str) -> Value {
    wait(&format!("{path} to be {want}"), 120, || async {
        let v: Value = c.get(path, &[]).await.unwrap();
        assert_ne!(v["status"], "error", "{path} failed: {v}");
        (v["status"] == want && v["task"].is_null()).then_some(v)
    })
    .await
}

async fn gone(c: &Client, path: &str) {
    wait(&format!("{path} to go"), 120, || async {
        c.get::<Value>(path, &[]).await.is_err().then_some(())
    })
    .await
}

/// A guest's interactive serial console, once it has booted.
async fn shell(ts: &TestServer, admin: &Client, vm: &str) -> SerialShell {
    wait("the guest to boot", 120, || async {
        let r = admin
            .send_raw(
                reqwest::Method::GET,
                &format!("/v1/instances/{vm}/console-log"),
                &[],
                None,
            )
            .await
            .unwrap();
        String::from_utf8_lossy(&r.body)
            .contains("STRATUS-READY")
            .then_some(())
    })
    .await;
    let simple = vm.replace('-', "");
    let sock = ts
        .dir
        .join("agent")
        .join("s")
        .join(format!("{simple}.serial"));
    SerialShell::connect(&sock).await.unwrap()
}

/// The guest's block device whose serial is `serial`, once it shows up.
async fn device(sh: &mut SerialShell, serial: &str) -> String {
    let cmd = format!(
        "for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = {serial} ] && echo ${{d##*/}}; done"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = sh.run(&cmd, Duration::from_secs(30)).await.unwrap();
        if let Some(d) = out.lines().map(str::trim).find(|l| l.starts_with("vd")) {
            return d.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no disk with serial {serial} in the guest"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn run(sh: &mut SerialShell, cmd: &str) -> String {
    sh.run(cmd, Duration::from_secs(60)).await.unwrap()
}

async fn setup(ts: &TestServer) -> (Client, Tree) {
    let admin = ts.admin().await;
    let t = tree(&admin, "A").await;
    tiny_guest_setup(&admin).await;
    (admin, t)
}

async fn boot(admin: &Client, t: &Tree, name: &str) -> String {
    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": name, "project_id": t.project, "flavor": "tiny.1c256m", "image": "tiny"}),
        )
        .await
        .unwrap();
    let vm = id(&v[0]);
    settle(admin, &format!("/v1/instances/{vm}"), "running").await;
    vm
}

async fn new_volume(admin: &Client, t: &Tree, name: &str, gib: i64, tier: &str) -> Value {
    let v: Vec<Value> = admin
        .post(
            "/v1/volumes",
            &json!({"name": name, "project_id": t.project, "size_gib": gib, "volume_type": tier}),
        )
        .await
        .unwrap();
    settle(admin, &format!("/v1/volumes/{}", id(&v[0])), "available").await
}

async fn attach(admin: &Client, vol: &str, vm: &str) -> Duration {
    let started = Instant::now();
    post(
        admin,
        &format!("/v1/volumes/{vol}/attach"),
        json!({"instance_id": vm}),
    )
    .await;
    settle(admin, &format!("/v1/volumes/{vol}"), "in_use").await;
    started.elapsed()
}

async fn detach(admin: &Client, vol: &str) -> Duration {
    let started = Instant::now();
    post(admin, &format!("/v1/volumes/{vol}/detach"), json!({})).await;
    settle(admin, &format!("/v1/volumes/{vol}"), "available").await;
    started.elapsed()
}

/// The first bytes of a guest disk, as text.
async fn head(sh: &mut SerialShell, dev: &str, n: usize) -> String {
    run(sh, &format!("dd if=/dev/{dev} bs={n} count=1 2>/dev/null")).await
}

#[tokio::test]
async fn volumes_attach_move_grow_snapshot_revert_and_restore_in_real_guests() {
    let ts = TestServer::start_with(tcg_guests).await;
    let (admin, t) = setup(&ts).await;
    let vm1 = boot(&admin, &t, "app1").await;
    let vm2 = boot(&admin, &t, "app2").await;
    let mut sh1 = shell(&ts, &admin, &vm1).await;
    let mut sh2 = shell(&ts, &admin, &vm2).await;

    // Hot-attach to the first guest: it sees a new disk with the volume's serial.
    let v = new_volume(&admin, &t, "data", 1, "high").await;
    let vid = id(&v);
    let serial = vid.replace('-', "")[..20].to_string();
    let took = attach(&admin, &vid, &vm1).await;
    eprintln!("attach (API call to in_use): {took:?}");
    let d1 = device(&mut sh1, &serial).await;
    assert_eq!(
        run(&mut sh1, &format!("cat /sys/block/{d1}/size")).await,
        "2097152"
    );
    run(
        &mut sh1,
        &format!("printf hello-stratus > /tmp/m; dd if=/tmp/m of=/dev/{d1} bs=4096 conv=sync oflag=direct 2>/dev/null; sync"),
    )
    .await;

    // Detach: gone from the first guest; attach to the second: the same data.
    let took = detach(&admin, &vid).await;
    eprintln!("detach (API call to available): {took:?}");
    assert_eq!(
        run(&mut sh1, &format!("ls /sys/block | grep -c {d1} || true")).await,
        "0"
    );
    attach(&admin, &vid, &vm2).await;
    let d2 = device(&mut sh2, &serial).await;
    assert_eq!(head(&mut sh2, &d2, 13).await, "hello-stratus");
    let shown: Value = admin
        .get(&format!("/v1/instances/{vm2}"), &[])
        .await
        .unwrap();
    assert_eq!(shown["volumes"], json!([vid]));

    // Grow online: the guest sees 2 GiB without a reboot.
    post(
        &admin,
        &format!("/v1/volumes/{vid}/extend"),
        json!({"size_gib": 2}),
    )
    .await;
    settle(&admin, &format!("/v1/volumes/{vid}"), "in_use").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while run(&mut sh2, &format!("cat /sys/block/{d2}/size")).await != "4194304" {
        assert!(Instant::now() < deadline, "the guest does not see 2 GiB");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Snapshot while attached, change the data, detach, revert: the old data is back.
    let s = post(
        &admin,
        "/v1/snapshots",
        json!({"volume_id": vid, "name": "good"}),
    )
    .await;
    settle(&admin, &format!("/v1/snapshots/{}", id(&s)), "available").await;
    run(
        &mut sh2,
        &format!("printf broken-data!! > /tmp/m; dd if=/tmp/m of=/dev/{d2} bs=4096 conv=sync oflag=direct 2>/dev/null; sync"),
    )
    .await;
    assert_eq!(head(&mut sh2, &d2, 13).await, "broken-data!!");
    detach(&admin, &vid).await;
    post(
        &admin,
        &format!("/v1/volumes/{vid}/revert"),
        json!({"snapshot_id": id(&s)}),
    )
    .await;
    settle(&admin, &format!("/v1/volumes/{vid}"), "available").await;
    attach(&admin, &vid, &vm2).await;
    let d2 = device(&mut sh2, &serial).await;
    assert_eq!(head(&mut sh2, &d2, 13).await, "hello-stratus");

    // Backups on a schedule: three runs keep two copies; the newest restores the same bytes.
    let bp = post(
        &admin,
        "/v1/backup-policies",
        json!({"project_id": t.project, "name": "daily", "interval_hours": 24, "keep": 2,
            "instance_ids": [vm2], "first_run_at": chrono::Utc::now()}),
    )
    .await;
    let app = ts.server.as_ref().unwrap().app.clone();
    for day in 0..3 {
        let now =
            chrono::Utc::now() + chrono::Duration::hours(24 * day) + chrono::Duration::minutes(1);
        let run = stratus_server::app::volumes::backup_policies_run_due(&app, now)
            .await
            .unwrap();
        assert_eq!(run.started, 1, "day {day}");
        let page: Value = admin
            .get("/v1/backups", &[("policy_id", id(&bp))])
            .await
            .unwrap();
        for b in page["items"].as_array().unwrap() {
            if b["status"] == "creating" {
                settle(&admin, &format!("/v1/backups/{}", id(b)), "available").await;
            }
        }
    }
    let backups: Value = wait("pruning to two copies", 60, || async {
        let page: Value = admin
            .get(
                "/v1/backups",
                &[("policy_id", id(&bp)), ("sort", "-created_at".into())],
            )
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 2).then_some(page)
    })
    .await;
    let newest = &backups["items"][0];
    assert!(newest["stored_bytes"].as_i64().unwrap() > 0, "{newest}");
    let r: Vec<Value> = admin
        .post(
            "/v1/volumes",
            &json!({"name": "restored", "project_id": t.project, "backup_id": id(newest)}),
        )
        .await
        .unwrap();
    let rid = id(&r[0]);
    settle(&admin, &format!("/v1/volumes/{rid}"), "available").await;
    attach(&admin, &rid, &vm1).await;
    let dr = device(&mut sh1, &rid.replace('-', "")[..20]).await;
    assert_eq!(head(&mut sh1, &dr, 13).await, "hello-stratus");
    assert_eq!(
        run(&mut sh1, &format!("cat /sys/block/{dr}/size")).await,
        "4194304"
    );

    // Bad input on real resources: a volume in use cannot go; a detached one can.
    let e = admin
        .delete(&format!("/v1/volumes/{vid}"))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);

    // Clean up: instances first (their volumes detach), then volumes and backups.
    for vm in [&vm1, &vm2] {
        admin.delete(&format!("/v1/instances/{vm}")).await.unwrap();
    }
    for vm in [&vm1, &vm2] {
        gone(&admin, &format!("/v1/instances/{vm}")).await;
    }
    for v in [&vid, &rid] {
        settle(&admin, &format!("/v1/volumes/{v}"), "available").await;
        admin
            .send_raw(
                reqwest::Method::DELETE,
                &format!("/v1/volumes/{v}"),
                &[("cascade", "true".into())],
                None,
            )
            .await
            .unwrap();
    }
    for b in backups["items"].as_array().unwrap() {
        admin
            .delete(&format!("/v1/backups/{}", id(b)))
            .await
            .unwrap();
    }
    for v in [&vid, &rid] {
        gone(&admin, &format!("/v1/volumes/{v}")).await;
    }
    for b in backups["items"].as_array().unwrap() {
        gone(&admin, &format!("/v1/backups/{}", id(b))).await;
    }
    let pool = ts.dir.join("agent").join("volumes");
    let left: Vec<_> = std::fs::read_dir(&pool)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files left in the pool: {left:?}");
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
    ts.stop().await;
}

#[tokio::test]
async fn io_tiers_are_enforced_on_the_running_guest() {
    let ts = TestServer::start_with(tcg_guests).await;
    let (admin, t) = setup(&ts).await;
    let vm = boot(&admin, &t, "bench1").await;
    let mut sh = shell(&ts, &admin, &vm).await;
    let mut measured = Vec::new();
    for tier in ["normal", "ultra"] {
        let v = new_volume(&admin, &t, tier, 1, tier).await;
        let vid = id(&v);
        attach(&admin, &vid, &vm).await;
        let dev = device(&mut sh, &vid.replace('-', "")[..20]).await;
        // QEMU's throttle lets a one-second burst through; 4 s of random reads after a 1 s
        // warm-up show the sustained rate.
        run(
            &mut sh,
            &format!("stratus-io /dev/{dev} randread 4096 1 >/dev/null"),
        )
        .await;
        let out = run(&mut sh, &format!("stratus-io /dev/{dev} randread 4096 4")).await;
        let iops: f64 = out
            .split_whitespace()
            .find_map(|w| w.strip_prefix("iops="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no iops in {out:?}"));
        eprintln!("{tier}: {out}");
        measured.push((tier, iops));
        detach(&admin, &vid).await;
        admin.delete(&format!("/v1/volumes/{vid}")).await.unwrap();
    }
    // Orders of magnitude only (figures go to bench/README.md): the normal tier is held
    // under 1,000 IOPS; the ultra tier is not.
    assert!(measured[0].1 < 1000.0, "{measured:?}");
    assert!(measured[1].1 > 1000.0, "{measured:?}");
    admin.delete(&format!("/v1/instances/{vm}")).await.unwrap();
    gone(&admin, &format!("/v1/instances/{vm}")).await;
    ts.stop().await;
}

#[tokio::test]
async fn an_instance_boots_from_a_volume_with_data_volumes_attached_at_boot() {
    let ts = TestServer::start_with(tcg_guests).await;
    let (admin, t) = setup(&ts).await;
    // A bootable volume holding the image, and an empty data volume.
    let boot: Vec<Value> = admin
        .post(
            "/v1/volumes",
            &json!({"name": "root", "project_id": t.project, "image": "tiny", "volume_type": "ultra"}),
        )
        .await
        .unwrap();
    let boot = settle(
        &admin,
        &format!("/v1/volumes/{}", id(&boot[0])),
        "available",
    )
    .await;
    assert_eq!(boot["bootable"], true);
    assert_eq!(boot["size_gib"], 1, "the image's size, rounded up");
    let data = new_volume(&admin, &t, "logs", 1, "normal").await;
    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": "fromvol", "project_id": t.project, "flavor": "tiny.1c256m",
                "boot_volume_id": id(&boot), "volume_ids": [id(&data)]}),
        )
        .await
        .unwrap();
    let vm = id(&v[0]);
    let shown = settle(&admin, &format!("/v1/instances/{vm}"), "running").await;
    assert_eq!(shown["boot_volume_id"], id(&boot).as_str());
    assert_eq!(shown["volumes"], json!([id(&data)]));
    let mut sh = shell(&ts, &admin, &vm).await;
    // The root disk is the volume (its serial), the data volume is there from the start.
    let root = device(&mut sh, &id(&boot).replace('-', "")[..20]).await;
    assert_eq!(root, "vda");
    let d = device(&mut sh, &id(&data).replace('-', "")[..20]).await;
    assert_ne!(d, "vda");
    for v in [&boot, &data] {
        settle(&admin, &format!("/v1/volumes/{}", id(v)), "in_use").await;
    }
    // The root disk cannot be detached; deleting the instance gives both volumes back.
    let e = admin
        .post::<Value>(&format!("/v1/volumes/{}/detach", id(&boot)), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409, "{}", e.message);
    admin.delete(&format!("/v1/instances/{vm}")).await.unwrap();
    gone(&admin, &format!("/v1/instances/{vm}")).await;
    for v in [&boot, &data] {
        settle(&admin, &format!("/v1/volumes/{}", id(v)), "available").await;
    }
    // The volume still boots: a second instance from the same root disk.
    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": "again", "project_id": t.project, "flavor": "tiny.1c256m",
                "boot_volume_id": id(&boot)}),
        )
        .await
        .unwrap();
    let vm = id(&v[0]);
    settle(&admin, &format!("/v1/instances/{vm}"), "running").await;
    shell(&ts, &admin, &vm).await;
    admin.delete(&format!("/v1/instances/{vm}")).await.unwrap();
    gone(&admin, &format!("/v1/instances/{vm}")).await;
    ts.stop().await;
}
