//! Real guests: the control plane with its all-in-one agent runs the tiny guest image
//! (scripts/build-tiny-image) under QEMU (TCG here), end to end through the API.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{json, Value};
use stratus_client::Client;

async fn start() -> TestServer {
    TestServer::start_with(|c| {
        tcg_guests(c);
        c.compute.host_down_after_secs = 30;
    })
    .await
}

async fn show(c: &Client, id: &str) -> Value {
    c.get(&format!("/v1/instances/{id}"), &[]).await.unwrap()
}

/// Wait until the instance has no task and is in `status`.
async fn settle(c: &Client, id: &str, status: &str) -> Value {
    wait(&format!("{id} to be {status}"), 120, || async {
        let v = show(c, id).await;
        assert_ne!(v["status"], "error", "instance failed: {v}");
        (v["status"] == status && v["task"].is_null()).then_some(v)
    })
    .await
}

async fn console(c: &Client, id: &str) -> String {
    let r = c
        .send_raw(
            reqwest::Method::GET,
            &format!("/v1/instances/{id}/console-log"),
            &[("bytes", "65536".into())],
            None,
        )
        .await
        .unwrap();
    String::from_utf8_lossy(&r.body).into_owned()
}

async fn ready_count(c: &Client, id: &str, host: &str) -> usize {
    console(c, id)
        .await
        .matches(&format!("STRATUS-READY hostname={host}"))
        .count()
}

/// QEMU processes whose command line names `id`.
fn qemu_processes(id: &str) -> Vec<u32> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("qemu-system") && cmd.contains(id) {
                out.push(pid);
            }
        }
    }
    out
}

fn instance_dir(ts: &TestServer, id: &str) -> PathBuf {
    ts.dir.join("agent").join("instances").join(id)
}

async fn setup(ts: &TestServer) -> (Client, Tree, Value) {
    let admin = ts.admin().await;
    let t = tree(&admin, "A").await;
    let _: Value = admin
        .post(
            "/v1/flavors",
            &json!({"name": "tiny.1c256m", "vcpus": 1, "memory_mib": 256, "disk_gib": 1}),
        )
        .await
        .unwrap();
    let _: Value = admin
        .post(
            "/v1/flavors",
            &json!({"name": "tiny.1c384m", "vcpus": 1, "memory_mib": 384, "disk_gib": 2}),
        )
        .await
        .unwrap();
    let img: Value = admin
        .post(
            "/v1/images",
            &json!({"name": "tiny", "disk_format": "qcow2"}),
        )
        .await
        .unwrap();
    let (st, img2) = upload(&admin, &id(&img), std::fs::read(tiny_image()).unwrap()).await;
    assert_eq!(st, 200, "{img2}");
    // The local agent joined and is up.
    wait("the local host", 60, || async {
        let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
        hosts
            .first()
            .filter(|h| h["state"] == "up" && h["facts"]["cpus"].as_i64() > Some(0))
            .cloned()
    })
    .await;
    (admin, t, img2)
}

async fn quota_used(c: &Client, project: &str) -> Vec<i64> {
    let q: Value = c
        .get(&format!("/v1/projects/{project}/quota"), &[])
        .await
        .unwrap();
    ["instances", "vcpus", "memory_gib"]
        .iter()
        .map(|r| {
            q["levels"][0]["lines"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["resource"] == *r)
                .unwrap()["used"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_real_guest_boots_runs_its_lifecycle_becomes_an_image_and_leaves_nothing() {
    let ts = start().await;
    let (admin, t, _) = setup(&ts).await;
    let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
    assert_eq!(hosts[0]["facts"]["hypervisor"], "tcg");

    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": "web1", "project_id": t.project, "flavor": "tiny.1c256m", "image": "tiny",
                "user_data": "#!/bin/sh\necho hello-from-user-data\n"}),
        )
        .await
        .unwrap();
    let vm = id(&v[0]);
    assert_eq!(v[0]["status"], "building");
    let running = settle(&admin, &vm, "running").await;
    assert_eq!(running["vcpus"], 1);
    wait("the ready marker", 90, || async {
        (ready_count(&admin, &vm, "web1").await >= 1).then_some(())
    })
    .await;
    assert_eq!(qemu_processes(&vm).len(), 1);
    assert_eq!(quota_used(&admin, &t.project).await, vec![1, 1, 1]);

    // Live metrics from two samples.
    let m: Value = wait("metrics", 30, || async {
        let m: Value = admin
            .get(&format!("/v1/instances/{vm}/metrics"), &[])
            .await
            .unwrap();
        (m["cpu_percent"].as_f64() > Some(0.0)).then_some(m)
    })
    .await;
    assert!(m["memory_bytes"].as_i64() > Some(0), "{m}");
    // The same in the time-series store, in PromQL: the guest used CPU, and its host
    // reports its own memory and CPU time.
    for q in [
        format!("rate(stratus_instance_cpu_seconds_total{{instance_id=\"{vm}\"}}[1m]) > 0"),
        "stratus_host_memory_total_bytes > 0".to_string(),
        "sum(stratus_host_cpu_seconds_total{mode=\"idle\"}) > 0".to_string(),
    ] {
        wait(&format!("PromQL {q}"), 60, || async {
            let v: Value = admin
                .get("/v1/metrics/query", &[("query", q.clone())])
                .await
                .unwrap();
            (v["result"].as_array().is_some_and(|r| !r.is_empty())).then_some(())
        })
        .await;
    }

    // A VNC console with a one-time password.
    let rc: Value = admin
        .post(&format!("/v1/instances/{vm}/remote-console"), &json!({}))
        .await
        .unwrap();
    assert_eq!(rc["protocol"], "vnc");
    assert_eq!(
        rc["host"], "127.0.0.1",
        "the local agent's consoles listen there"
    );
    let port = rc["port"].as_u64().unwrap();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port as u16))
        .await
        .unwrap();
    let mut banner = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut s, &mut banner)
        .await
        .unwrap();
    assert!(banner.starts_with(b"RFB "), "{banner:?}");

    // Stop (graceful), start, soft reboot (a second boot shows a second ready marker).
    admin
        .post::<Value>(
            &format!("/v1/instances/{vm}/actions"),
            &json!({"action": "stop"}),
        )
        .await
        .unwrap();
    settle(&admin, &vm, "stopped").await;
    assert!(qemu_processes(&vm).is_empty());
    admin
        .post::<Value>(
            &format!("/v1/instances/{vm}/actions"),
            &json!({"action": "start"}),
        )
        .await
        .unwrap();
    settle(&admin, &vm, "running").await;
    wait("a second boot", 90, || async {
        (ready_count(&admin, &vm, "web1").await >= 2).then_some(())
    })
    .await;
    admin
        .post::<Value>(
            &format!("/v1/instances/{vm}/actions"),
            &json!({"action": "reboot", "hard": true}),
        )
        .await
        .unwrap();
    settle(&admin, &vm, "running").await;
    wait("a boot after the hard reboot", 90, || async {
        (ready_count(&admin, &vm, "web1").await >= 3).then_some(())
    })
    .await;

    // Resize while stopped: the next start has the new memory and a bigger disk.
    admin
        .post::<Value>(
            &format!("/v1/instances/{vm}/actions"),
            &json!({"action": "stop", "timeout_secs": 30}),
        )
        .await
        .unwrap();
    settle(&admin, &vm, "stopped").await;
    admin
        .post::<Value>(
            &format!("/v1/instances/{vm}/actions"),
            &json!({"action": "resize", "flavor": "tiny.1c384m"}),
        )
        .await
        .unwrap();
    let resized = settle(&admin, &vm, "stopped").await;
    assert_eq!(resized["memory_mib"], 384);
    let disk = instance_dir(&ts, &vm).join("root.qcow2");
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(&disk)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["virtual-size"], 2u64 << 30, "{info}");

    // An image of the stopped instance, then a second VM booted from it.
    let snap: Value = admin
        .post(
            &format!("/v1/instances/{vm}/image"),
            &json!({"name": "web1-snap"}),
        )
        .await
        .unwrap();
    assert_eq!(snap["status"], "saving");
    let snap = wait("the captured image", 120, || async {
        let i: Value = admin
            .get(&format!("/v1/images/{}", id(&snap)), &[])
            .await
            .unwrap();
        assert_ne!(i["status"], "error", "{i}");
        (i["status"] == "active").then_some(i)
    })
    .await;
    assert_eq!(snap["visibility"], "private");
    assert_eq!(snap["project_id"], t.project.as_str());
    let v2: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": "web2", "project_id": t.project, "flavor": "tiny.1c384m", "image": id(&snap)}),
        )
        .await
        .unwrap();
    let vm2 = id(&v2[0]);
    settle(&admin, &vm2, "running").await;
    wait("the second VM's ready marker", 90, || async {
        (ready_count(&admin, &vm2, "web2").await >= 1).then_some(())
    })
    .await;

    // Delete everything: no QEMU, no files, no quota.
    for id in [&vm, &vm2] {
        admin.delete(&format!("/v1/instances/{id}")).await.unwrap();
    }
    for id in [&vm, &vm2] {
        wait("the instance to go", 60, || async {
            (admin
                .get::<Value>(&format!("/v1/instances/{id}"), &[])
                .await
                .is_err())
            .then_some(())
        })
        .await;
        assert!(qemu_processes(id).is_empty(), "QEMU left for {id}");
        assert!(!instance_dir(&ts, id).exists(), "files left for {id}");
    }
    assert_eq!(quota_used(&admin, &t.project).await, vec![0, 0, 0]);
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
    ts.stop().await;
}

#[tokio::test]
async fn restarting_the_control_plane_and_agent_keeps_the_guest_running_and_managed() {
    let mut ts = start().await;
    let (admin, t, _) = setup(&ts).await;
    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": "keep", "project_id": t.project, "flavor": "tiny.1c256m", "image": "tiny"}),
        )
        .await
        .unwrap();
    let vm = id(&v[0]);
    settle(&admin, &vm, "running").await;
    let pids = qemu_processes(&vm);
    assert_eq!(pids.len(), 1);
    ts.restart().await;
    assert_eq!(qemu_processes(&vm), pids, "the guest was restarted");
    let admin = ts.admin().await;
    assert_eq!(show(&admin, &vm).await["status"], "running");
    let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
    assert_eq!(hosts.len(), 1, "the agent kept its identity: {hosts:?}");
    // Still managed: it stops on request.
    admin
        .post::<Value>(
            &format!("/v1/instances/{vm}/actions"),
            &json!({"action": "stop", "timeout_secs": 20}),
        )
        .await
        .unwrap();
    settle(&admin, &vm, "stopped").await;
    assert!(qemu_processes(&vm).is_empty());
    admin.delete(&format!("/v1/instances/{vm}")).await.unwrap();
    wait("the instance to go", 60, || async {
        admin
            .get::<Value>(&format!("/v1/instances/{vm}"), &[])
            .await
            .is_err()
            .then_some(())
    })
    .await;
    ts.stop().await;
}

#[tokio::test]
async fn a_fault_at_every_agent_build_step_leaves_no_process_no_file_no_quota() {
    for fault in ["agent.image", "agent.disk", "agent.cidata", "agent.start"] {
        let ts = TestServer::start_with(|c| {
            tcg_guests(c);
            c.faults = vec![fault.to_string()];
        })
        .await;
        let (admin, t, _) = setup(&ts).await;
        let v: Vec<Value> = admin
            .post(
                "/v1/instances",
                &json!({"name": "doomed", "project_id": t.project, "flavor": "tiny.1c256m", "image": "tiny"}),
            )
            .await
            .unwrap();
        let vm = id(&v[0]);
        let failed = wait(&format!("{fault} to fail the build"), 60, || async {
            let v = show(&admin, &vm).await;
            (v["status"] == "error").then_some(v)
        })
        .await;
        assert!(
            failed["status_reason"]
                .as_str()
                .unwrap()
                .contains(&format!("injected fault at {fault}")),
            "{failed}"
        );
        assert_eq!(
            quota_used(&admin, &t.project).await,
            vec![0, 0, 0],
            "{fault}"
        );
        // The agent removes what it made and says so; then the host forgets the instance.
        wait("the host to forget it", 30, || async {
            show(&admin, &vm).await["host_id"].is_null().then_some(())
        })
        .await;
        assert!(qemu_processes(&vm).is_empty(), "{fault}: QEMU left");
        assert!(!instance_dir(&ts, &vm).exists(), "{fault}: files left");
        let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
        assert_eq!(hosts[0]["allocated_vcpus"], 0, "{fault}");
        ts.stop().await;
    }
}
