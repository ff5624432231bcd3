//! Compute in the control plane: images, the scheduler, the instance state machine and the
//! agent protocol, driven here by a scripted agent over HTTP so every report is explicit.
//! (Real guests under a real agent are in `guests.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use stratus_client::{Auth, Client};

fn usage(view: &Value, level: usize, resource: &str) -> i64 {
    view["levels"][level]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == resource)
        .unwrap()["used"]
        .as_i64()
        .unwrap()
}

async fn project_usage(c: &Client, project: &str) -> (i64, i64, i64, i64) {
    let q: Value = c
        .get(&format!("/v1/projects/{project}/quota"), &[])
        .await
        .unwrap();
    (
        usage(&q, 0, "instances"),
        usage(&q, 0, "vcpus"),
        usage(&q, 0, "memory_gib"),
        usage(&q, 0, "images"),
    )
}

/// A scripted host agent: joins with a token and reports exactly what the test says.
struct ScriptedAgent {
    c: Client,
    host_id: String,
    facts: Value,
}

impl ScriptedAgent {
    async fn join(
        ts: &TestServer,
        admin: &Client,
        name: &str,
        cpus: i64,
        mem_mib: i64,
    ) -> ScriptedAgent {
        let t: Value = admin
            .post("/v1/hosts/join-tokens", &json!({}))
            .await
            .unwrap();
        let facts = json!({"hostname": name, "cpus": cpus, "memory_mib": mem_mib, "disk_gib": 1000,
            "hypervisor": "tcg", "agent_version": "test"});
        let j: Value = Client::new(&ts.url, Auth::Token(t["token"].as_str().unwrap().into()))
            .post("/v1/agent/join", &json!({"facts": facts}))
            .await
            .unwrap();
        let a = ScriptedAgent {
            c: Client::new(
                &ts.url,
                Auth::Token(j["credential"].as_str().unwrap().into()),
            ),
            host_id: j["host_id"].as_str().unwrap().into(),
            facts,
        };
        a.report(json!([])).await;
        a
    }

    async fn report(&self, instances: Value) {
        let _: Value = self
            .c
            .post(
                "/v1/agent/report",
                &json!({"facts": self.facts, "instances": instances}),
            )
            .await
            .unwrap();
    }

    async fn desired(&self, after: i64) -> Value {
        self.c
            .get("/v1/agent/desired", &[("after", after.to_string())])
            .await
            .unwrap()
    }

    /// The desired entry of one instance.
    async fn want(&self, instance: &str) -> Value {
        let d = self.desired(0).await;
        d["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == instance)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Report the instance as converged to its current desired generation in `state`.
    async fn converge(&self, instance: &str, state: &str) {
        let w = self.want(instance).await;
        self.report(
            json!([{"id": instance, "generation": w["generation"], "state": state,
            "soft_reboots": w["soft_reboots"], "hard_reboots": w["hard_reboots"]}]),
        )
        .await;
    }
}

async fn create(c: &Client, project: &str, image: &str, flavor: &str, name: &str) -> Value {
    let v: Vec<Value> = c
        .post(
            "/v1/instances",
            &json!({"name": name, "project_id": project, "flavor": flavor, "image": image}),
        )
        .await
        .unwrap();
    v[0].clone()
}

async fn show(c: &Client, id: &str) -> Value {
    c.get(&format!("/v1/instances/{id}"), &[]).await.unwrap()
}

async fn act(c: &Client, id: &str, body: Value) -> Result<Value, stratus_client::ClientError> {
    c.post(&format!("/v1/instances/{id}/actions"), &body).await
}

#[tokio::test]
async fn images_upload_verify_convert_download_and_share() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let (_, member_a) = user_with_role(
        &ts,
        &sec,
        "ma",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, member_b) = user_with_role(
        &ts,
        &sec,
        "mb",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;

    // A raw image with a declared checksum: a wrong upload is refused and changes nothing.
    let data = vec![7u8; 3 << 20];
    let good_sha = stratus_api::sigv4::sha256_hex(&data);
    let img: Value = member_a
        .post(
            "/v1/images",
            &json!({"name": "disk", "project_id": a.project, "disk_format": "raw", "checksum_sha256": good_sha}),
        )
        .await
        .unwrap();
    assert_eq!(img["status"], "queued");
    assert_eq!(img["visibility"], "private");
    let (st, err) = upload(&member_a, &id(&img), vec![1u8; 1 << 20]).await;
    assert_eq!(st, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("checksum_sha256"),
        "{err}"
    );
    let again: Value = member_a
        .get(&format!("/v1/images/{}", id(&img)), &[])
        .await
        .unwrap();
    assert_eq!(again["status"], "queued");
    let (st, done) = upload(&member_a, &id(&img), data.clone()).await;
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["status"], "active");
    assert_eq!(done["virtual_size_bytes"], 3 << 20);
    assert_eq!(done["checksum_sha256"], good_sha.as_str());
    // Stored as qcow2 whatever it came as.
    let stored = ts.dir.join("images").join(format!("{}.qcow2", id(&img)));
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&stored)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    // A second upload to an active image: 409.
    let (st, _) = upload(&member_a, &id(&img), data.clone()).await;
    assert_eq!(st, 409);

    // Download converted: raw gives back the same bytes; vmdk and vhd are what qemu-img says.
    let raw = member_a
        .send_raw(
            reqwest::Method::GET,
            &format!("/v1/images/{}/file", id(&img)),
            &[("format", "raw".into())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(raw.status, 200);
    assert!(raw.body == data, "raw download differs from the upload");
    for (fmt, qemu) in [("vmdk", "vmdk"), ("vhd", "vpc"), ("qcow2", "qcow2")] {
        let r = member_a
            .send_raw(
                reqwest::Method::GET,
                &format!("/v1/images/{}/file", id(&img)),
                &[("format", fmt.into())],
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{fmt}");
        let f = ts.dir.join(format!("dl.{fmt}"));
        std::fs::write(&f, &r.body).unwrap();
        let out = std::process::Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&f)
            .output()
            .unwrap();
        let i: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(i["format"], qemu, "{fmt}");
        assert!(i["virtual-size"].as_u64().unwrap() >= 3 << 20);
    }

    // Wrong format and corrupt data: 400 naming the file, the image stays queued.
    let q: Value = member_a
        .post(
            "/v1/images",
            &json!({"name": "bad", "project_id": a.project, "disk_format": "qcow2"}),
        )
        .await
        .unwrap();
    let (st, err) = upload(&member_a, &id(&q), vec![0x55u8; 65536]).await;
    assert_eq!(st, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("file: is not a valid qcow2 image"),
        "{err}"
    );
    // A qcow2 that points at a host file as its backing file is refused.
    let evil = ts.dir.join("evil.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            "/etc/hostname",
        ])
        .arg(&evil)
        .status()
        .unwrap();
    assert!(st.success());
    let (st, err) = upload(&member_a, &id(&q), std::fs::read(&evil).unwrap()).await;
    assert_eq!(st, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("backing file"),
        "{err}"
    );
    let q2: Value = member_a
        .get(&format!("/v1/images/{}", id(&q)), &[])
        .await
        .unwrap();
    assert_eq!(q2["status"], "queued");

    // Private: the other department does not see it; shared: it does, and may boot it.
    assert_eq!(
        status(
            member_b
                .get::<Value>(&format!("/v1/images/{}", id(&img)), &[])
                .await
        ),
        404
    );
    let listed = list_all(&member_b, "/v1/images", vec![]).await;
    assert!(!listed.iter().any(|i| i["id"] == img["id"]));
    let shared: Value = member_a
        .patch(
            &format!("/v1/images/{}", id(&img)),
            &json!({"visibility": "shared", "shared_with": [b.project], "name": "disk-v2"}),
        )
        .await
        .unwrap();
    assert_eq!(shared["name"], "disk-v2");
    assert_eq!(shared["shared_with"][0], b.project.as_str());
    let seen: Value = member_b
        .get(&format!("/v1/images/{}", id(&img)), &[])
        .await
        .unwrap();
    assert_eq!(
        seen["shared_with"],
        json!([]),
        "only the owner sees who else has it"
    );
    assert_eq!(
        status(member_b.delete(&format!("/v1/images/{}", id(&img))).await),
        403
    );

    // Image quota per project.
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", a.project),
            &json!({"limits": {"images": 2}}),
        )
        .await
        .unwrap();
    let r = member_a
        .post::<Value>(
            "/v1/images",
            &json!({"name": "third", "project_id": a.project, "disk_format": "raw"}),
        )
        .await;
    assert_eq!(status(r), 409);
    member_a
        .delete(&format!("/v1/images/{}", id(&q)))
        .await
        .unwrap();
    assert_eq!(project_usage(&admin, &a.project).await.3, 1);
    // Public images are the platform admin's.
    let r = member_a
        .post::<Value>("/v1/images", &json!({"name": "pub", "disk_format": "raw"}))
        .await;
    assert_eq!(status(r), 403);
    let public = raw_image(&admin, None).await;
    assert_eq!(public["visibility"], "public");
    let _: Value = member_b
        .get(&format!("/v1/images/{}", id(&public)), &[])
        .await
        .unwrap();
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
    ts.stop().await;
}

#[tokio::test]
async fn instance_lifecycle_follows_the_agent_and_releases_everything() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "ma",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, viewer) = user_with_role(
        &ts,
        &sec,
        "va",
        Some(&a.child),
        Some(("viewer", "project", &a.project)),
    )
    .await;
    let img = raw_image(&admin, None).await;
    let agent = ScriptedAgent::join(&ts, &admin, "node1", 16, 32768).await;
    let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
    assert_eq!(hosts[0]["state"], "up");
    assert_eq!(hosts[0]["facts"]["hypervisor"], "tcg");
    assert_eq!(
        hosts[0]["capacity_vcpus"], 64,
        "4x CPU overcommit by default"
    );

    // The desired state long-polls: nothing changes, so it answers after the timeout…
    let g0 = agent.desired(0).await["generation"].as_i64().unwrap();
    let started = Instant::now();
    let c2 = agent.c.clone();
    let poll = tokio::spawn(async move {
        c2.get::<Value>("/v1/agent/desired", &[("after", g0.to_string())])
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // …unless an instance is placed on the host, which wakes it at once.
    let vm = create(&member, &a.project, &id(&img), "basic.2c4g", "web1").await;
    assert_eq!(vm["status"], "building");
    assert_eq!(vm["host_id"], agent.host_id.as_str());
    let d = poll.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "long poll did not wake"
    );
    assert!(d["generation"].as_i64().unwrap() > g0);
    let w = &d["instances"][0];
    assert_eq!(w["power"], "running");
    assert_eq!(w["vcpus"], 2);
    assert_eq!(w["memory_mib"], 4096);
    assert_eq!(w["root_disk_gib"], 100);
    assert_eq!(project_usage(&admin, &a.project).await, (1, 2, 4, 0));

    // Not yet running: actions that need a running guest are refused with a reason.
    let e = act(&member, &id(&vm), json!({"action": "stop"}))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("building"), "{}", e.message);
    agent
        .report(
            json!([{"id": id(&vm), "generation": w["generation"], "state": "running",
            "console_append": "boot…\nSTRATUS-READY hostname=web1\n"}]),
        )
        .await;
    let v = show(&member, &id(&vm)).await;
    assert_eq!(v["status"], "running");
    assert!(v["launched_at"].is_string());
    let log = member
        .send_raw(
            reqwest::Method::GET,
            &format!("/v1/instances/{}/console-log", id(&vm)),
            &[],
            None,
        )
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&log.body).contains("STRATUS-READY hostname=web1"));

    // Viewers see but cannot act; stop → busy until the agent converges.
    assert_eq!(
        act(&viewer, &id(&vm), json!({"action": "stop"}))
            .await
            .unwrap_err()
            .status,
        403
    );
    let v = act(
        &member,
        &id(&vm),
        json!({"action": "stop", "timeout_secs": 5}),
    )
    .await
    .unwrap();
    assert_eq!(v["status"], "busy");
    assert_eq!(v["task"], "stopping");
    let w = agent.want(&id(&vm)).await;
    assert_eq!(w["power"], "stopped");
    assert_eq!(w["stop_timeout_secs"], 5);
    // A report of the old generation does not finish the task.
    agent
        .report(json!([{"id": id(&vm), "generation": w["generation"].as_i64().unwrap() - 1, "state": "running"}]))
        .await;
    assert_eq!(show(&member, &id(&vm)).await["task"], "stopping");
    agent.converge(&id(&vm), "stopped").await;
    let v = show(&member, &id(&vm)).await;
    assert_eq!(v["status"], "stopped");
    assert!(v["task"].is_null());

    // Invalid in this state: 409 naming the states that allow it.
    let e = act(&member, &id(&vm), json!({"action": "reboot"}))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert!(
        e.message.contains("needs it to be running"),
        "{}",
        e.message
    );
    let e = act(
        &member,
        &id(&vm),
        json!({"action": "stop", "timeout_secs": 99999}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.starts_with("timeout_secs"));

    // Resize while stopped: quota follows; a smaller root disk is refused.
    let v = act(
        &member,
        &id(&vm),
        json!({"action": "resize", "flavor": "memory.4c16g"}),
    )
    .await
    .unwrap();
    assert_eq!(v["task"], "resizing");
    assert_eq!(v["vcpus"], 4);
    assert_eq!(project_usage(&admin, &a.project).await, (1, 4, 16, 0));
    agent.converge(&id(&vm), "stopped").await;
    assert_eq!(show(&member, &id(&vm)).await["status"], "stopped");
    let host: Value = admin
        .get(&format!("/v1/hosts/{}", agent.host_id), &[])
        .await
        .unwrap();
    assert_eq!(host["allocated_vcpus"], 4);
    assert_eq!(host["allocated_memory_mib"], 16384);

    // Start, soft and hard reboot (counters the agent compares with what it applied).
    act(&member, &id(&vm), json!({"action": "start"}))
        .await
        .unwrap();
    agent.converge(&id(&vm), "running").await;
    act(&member, &id(&vm), json!({"action": "reboot"}))
        .await
        .unwrap();
    act(&member, &id(&vm), json!({"action": "reboot", "hard": true}))
        .await
        .unwrap_err();
    let w = agent.want(&id(&vm)).await;
    assert_eq!(w["soft_reboots"], 1);
    agent.converge(&id(&vm), "running").await;
    act(&member, &id(&vm), json!({"action": "reboot", "hard": true}))
        .await
        .unwrap();
    assert_eq!(agent.want(&id(&vm)).await["hard_reboots"], 1);
    agent.converge(&id(&vm), "running").await;
    for (action, power, state) in [
        ("pause", "paused", "paused"),
        ("unpause", "running", "running"),
        ("suspend", "suspended", "suspended"),
        ("resume", "running", "running"),
    ] {
        act(&member, &id(&vm), json!({"action": action}))
            .await
            .unwrap();
        assert_eq!(agent.want(&id(&vm)).await["power"], power, "{action}");
        agent.converge(&id(&vm), state).await;
        assert_eq!(show(&member, &id(&vm)).await["status"], state, "{action}");
    }
    // Metrics are rates over two samples.
    let counters = |cpu: f64, rd: i64| {
        json!({"cpu_seconds": cpu, "memory_bytes": 4294967296i64, "rss_bytes": 1073741824,
        "disk_read_bytes": rd, "disk_write_bytes": 0, "disk_read_ops": 0, "disk_write_ops": 0, "net_rx_bytes": 0, "net_tx_bytes": 0})
    };
    let gen = agent.want(&id(&vm)).await["generation"].clone();
    agent.report(json!([{"id": id(&vm), "generation": gen, "state": "running", "counters": counters(10.0, 0)}])).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    agent.report(json!([{"id": id(&vm), "generation": gen, "state": "running", "counters": counters(10.5, 1 << 20)}])).await;
    let m: Value = member
        .get(&format!("/v1/instances/{}/metrics", id(&vm)), &[])
        .await
        .unwrap();
    let cpu = m["cpu_percent"].as_f64().unwrap();
    assert!(cpu > 20.0 && cpu < 55.0, "{m}");
    assert!(
        m["disk_read_bytes_per_sec"].as_f64().unwrap() > 500_000.0,
        "{m}"
    );
    assert_eq!(m["memory_bytes"], 4294967296i64);

    // Rename; delete waits for the agent's `gone`, then quota and host room come back.
    let v: Value = member
        .patch(
            &format!("/v1/instances/{}", id(&vm)),
            &json!({"name": "web-renamed"}),
        )
        .await
        .unwrap();
    assert_eq!(v["name"], "web-renamed");
    member
        .delete(&format!("/v1/instances/{}", id(&vm)))
        .await
        .unwrap();
    assert_eq!(show(&member, &id(&vm)).await["status"], "deleting");
    assert_eq!(agent.want(&id(&vm)).await["power"], "deleted");
    agent
        .report(json!([{"id": id(&vm), "generation": 0, "state": "gone"}]))
        .await;
    assert_eq!(
        status(
            member
                .get::<Value>(&format!("/v1/instances/{}", id(&vm)), &[])
                .await
        ),
        404
    );
    assert_eq!(project_usage(&admin, &a.project).await, (0, 0, 0, 0));
    let host: Value = admin
        .get(&format!("/v1/hosts/{}", agent.host_id), &[])
        .await
        .unwrap();
    assert_eq!(
        (
            host["allocated_vcpus"].as_i64(),
            host["instance_count"].as_i64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(agent.desired(0).await["instances"], json!([]));
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
    ts.stop().await;
}

#[tokio::test]
async fn failed_builds_and_placement_unwind_quota_and_host_room() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let img = raw_image(&admin, None).await;

    // No host at all: error "no valid host", nothing held.
    let vm = create(&admin, &a.project, &id(&img), "basic.2c4g", "lonely").await;
    assert_eq!(vm["status"], "error");
    assert!(
        vm["status_reason"]
            .as_str()
            .unwrap()
            .starts_with("no valid host"),
        "{vm}"
    );
    assert_eq!(project_usage(&admin, &a.project).await, (0, 0, 0, 0));
    let tasks: Vec<Value> = admin
        .get(&format!("/v1/instances/{}/tasks", id(&vm)), &[])
        .await
        .unwrap();
    assert_eq!(tasks[0]["action"], "create");
    assert_eq!(tasks[0]["result"], "failed");
    // An instance in error without a host can only be deleted; deleting gives nothing back twice.
    assert_eq!(
        act(&admin, &id(&vm), json!({"action": "start"}))
            .await
            .unwrap_err()
            .status,
        409
    );
    admin
        .delete(&format!("/v1/instances/{}", id(&vm)))
        .await
        .unwrap();
    assert_eq!(project_usage(&admin, &a.project).await, (0, 0, 0, 0));

    // Two hosts, spread: instances alternate; a VM bigger than any host does not fit.
    let h1 = ScriptedAgent::join(&ts, &admin, "node1", 4, 16384).await;
    let h2 = ScriptedAgent::join(&ts, &admin, "node2", 4, 16384).await;
    let mut on = std::collections::HashMap::new();
    for i in 0..4 {
        let v = create(
            &admin,
            &a.project,
            &id(&img),
            "basic.2c4g",
            &format!("s{i}"),
        )
        .await;
        *on.entry(v["host_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(on.get(&h1.host_id), Some(&2), "{on:?}");
    assert_eq!(on.get(&h2.host_id), Some(&2), "{on:?}");
    let big = create(&admin, &a.project, &id(&img), "compute.32c128g", "big").await;
    assert_eq!(big["status"], "error");
    assert!(big["status_reason"]
        .as_str()
        .unwrap()
        .contains("no valid host"));
    // A disabled host gets nothing new.
    let _: Value = admin
        .patch(
            &format!("/v1/hosts/{}", h1.host_id),
            &json!({"enabled": false, "disabled_reason": "maintenance"}),
        )
        .await
        .unwrap();
    for i in 0..2 {
        let v = create(
            &admin,
            &a.project,
            &id(&img),
            "basic.2c4g",
            &format!("d{i}"),
        )
        .await;
        assert_eq!(v["host_id"], h2.host_id.as_str());
    }
    let (n, vcpus, _, _) = project_usage(&admin, &a.project).await;
    assert_eq!((n, vcpus), (6, 12));

    // The agent fails the build: error with its reason, quota and host room released, and
    // the agent is told to remove whatever it made.
    let v = create(&admin, &a.project, &id(&img), "basic.2c4g", "doomed").await;
    let w = h2.want(&id(&v)).await;
    h2.report(
        json!([{"id": id(&v), "generation": w["generation"], "state": "error",
        "error": "injected fault at agent.disk"}]),
    )
    .await;
    let v2 = show(&admin, &id(&v)).await;
    assert_eq!(v2["status"], "error");
    assert_eq!(v2["status_reason"], "injected fault at agent.disk");
    assert_eq!(project_usage(&admin, &a.project).await.0, 6);
    assert_eq!(h2.want(&id(&v)).await["power"], "deleted");
    h2.report(json!([{"id": id(&v), "generation": 0, "state": "gone"}]))
        .await;
    assert!(
        h2.want(&id(&v)).await.is_null(),
        "cleaned-up instance is no longer on the host"
    );
    let host: Value = admin
        .get(&format!("/v1/hosts/{}", h2.host_id), &[])
        .await
        .unwrap();
    assert_eq!(host["instance_count"], 4);
    // Deleting the failed instance changes no counter.
    admin
        .delete(&format!("/v1/instances/{}", id(&v)))
        .await
        .unwrap();
    assert_eq!(project_usage(&admin, &a.project).await.0, 6);

    // Over quota: refused before anything exists.
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", a.project),
            &json!({"limits": {"vcpus": 13}}),
        )
        .await
        .unwrap();
    let r = admin.post::<Vec<Value>>("/v1/instances", &json!({"name": "over", "project_id": a.project, "flavor": "basic.2c4g", "image": id(&img)})).await;
    let e = r.unwrap_err();
    assert_eq!(e.status, 409);
    assert_eq!(e.code, "quota_exceeded");
    // count: all or nothing.
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", a.project),
            &json!({"limits": {"vcpus": null}}),
        )
        .await
        .unwrap();
    let many: Vec<Value> = admin
        .post("/v1/instances", &json!({"name": "batch", "project_id": a.project, "flavor": "basic.2c4g", "image": id(&img), "count": 3}))
        .await
        .unwrap();
    let names: Vec<&str> = many.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["batch-1", "batch-2", "batch-3"]);

    // Bad input names the field and creates nothing.
    for (body, field) in [
        (
            json!({"name": "x1", "project_id": a.project, "flavor": "nope", "image": id(&img)}),
            "flavor",
        ),
        (
            json!({"name": "x1", "project_id": a.project, "flavor": "basic.2c4g", "image": "nope"}),
            "image",
        ),
        (
            json!({"name": "bad name!", "project_id": a.project, "flavor": "basic.2c4g", "image": id(&img)}),
            "name",
        ),
        (
            json!({"name": "x1", "project_id": a.project, "flavor": "basic.2c4g", "image": id(&img), "count": 0}),
            "count",
        ),
        (
            json!({"name": "x1", "project_id": a.project, "flavor": "basic.2c4g", "image": id(&img), "key_name": "nokey"}),
            "key_name",
        ),
    ] {
        let e = admin
            .post::<Vec<Value>>("/v1/instances", &body)
            .await
            .unwrap_err();
        assert_eq!(e.status, 400, "{body}");
        assert!(e.message.starts_with(field), "{field}: {}", e.message);
    }
    let queued: Value = admin
        .post(
            "/v1/images",
            &json!({"name": "empty", "disk_format": "raw"}),
        )
        .await
        .unwrap();
    let e = admin
        .post::<Vec<Value>>("/v1/instances", &json!({"name": "x1", "project_id": a.project, "flavor": "basic.2c4g", "image": id(&queued)}))
        .await
        .unwrap_err();
    assert!(e.message.contains("has no data yet"), "{}", e.message);
    let all = list_all(
        &admin,
        "/v1/instances",
        vec![("project_id", a.project.clone())],
    )
    .await;
    assert_eq!(all.len(), 9 + 1);
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
    ts.stop().await;
}

#[tokio::test]
async fn injected_control_plane_faults_leave_nothing_behind() {
    for fault in ["create.quota", "create.schedule"] {
        let ts = TestServer::start_with(|c| c.faults = vec![fault.to_string()]).await;
        let admin = ts.admin().await;
        let a = tree(&admin, "A").await;
        let img = raw_image(&admin, None).await;
        let agent = ScriptedAgent::join(&ts, &admin, "node1", 16, 32768).await;
        let r = admin
            .post::<Vec<Value>>("/v1/instances", &json!({"name": "vm", "project_id": a.project, "flavor": "basic.2c4g", "image": id(&img)}))
            .await;
        match fault {
            "create.quota" => {
                assert_eq!(r.unwrap_err().status, 503);
                assert!(list_all(&admin, "/v1/instances", vec![]).await.is_empty());
            }
            _ => {
                let v = r.unwrap();
                assert_eq!(v[0]["status"], "error");
                assert!(v[0]["status_reason"]
                    .as_str()
                    .unwrap()
                    .contains("injected fault at create.schedule"));
                assert!(v[0]["host_id"].is_null());
            }
        }
        assert_eq!(
            project_usage(&admin, &a.project).await,
            (0, 0, 0, 0),
            "{fault}"
        );
        let host: Value = admin
            .get(&format!("/v1/hosts/{}", agent.host_id), &[])
            .await
            .unwrap();
        assert_eq!(host["allocated_vcpus"], 0, "{fault}");
        assert_eq!(agent.desired(0).await["instances"], json!([]), "{fault}");
        ts.stop().await;
    }
}

#[tokio::test]
async fn key_pairs_are_validated_and_injected() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let key = ssh_key();
    let kp: Value = admin
        .post(
            "/v1/keypairs",
            &json!({"name": "ops", "project_id": a.project, "public_key": key}),
        )
        .await
        .unwrap();
    assert!(kp["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    let dup = admin
        .post::<Value>(
            "/v1/keypairs",
            &json!({"name": "ops", "project_id": a.project, "public_key": key}),
        )
        .await;
    assert_eq!(status(dup), 409);
    for bad in [
        "",
        "ssh-ed25519 !!!",
        "ssh-dss AAAA",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA==",
    ] {
        let e = admin
            .post::<Value>(
                "/v1/keypairs",
                &json!({"name": "bad", "project_id": a.project, "public_key": bad}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status, 400, "{bad}");
        assert!(e.message.starts_with("public_key"), "{}", e.message);
    }
    let img = raw_image(&admin, None).await;
    let agent = ScriptedAgent::join(&ts, &admin, "node1", 16, 32768).await;
    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": "keyed", "project_id": a.project, "flavor": "basic.2c4g",
            "image": id(&img), "key_name": "ops", "user_data": "#cloud-config\nhostname: keyed\n"}),
        )
        .await
        .unwrap();
    assert_eq!(v[0]["key_name"], "ops");
    let w = agent.want(&id(&v[0])).await;
    assert_eq!(w["ssh_keys"][0], key.as_str());
    assert_eq!(w["user_data"], "#cloud-config\nhostname: keyed\n");
    ts.stop().await;
}

#[tokio::test]
async fn zones_packing_resize_unwinding_and_metering_events() {
    let ts = TestServer::start_with(|c| c.compute.placement = "pack".into()).await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let img = raw_image(&admin, None).await;
    let h1 = ScriptedAgent::join(&ts, &admin, "node1", 8, 32768).await;
    let h2 = ScriptedAgent::join(&ts, &admin, "node2", 8, 32768).await;
    // Pack: the fullest host that fits takes the next instance.
    let first = create(&admin, &a.project, &id(&img), "basic.2c4g", "p1").await;
    let second = create(&admin, &a.project, &id(&img), "basic.2c4g", "p2").await;
    assert_eq!(
        first["host_id"], second["host_id"],
        "pack placed them apart"
    );
    // A zone with no hosts: no valid host, named in the reason.
    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": "far", "project_id": a.project, "flavor": "basic.2c4g",
            "image": id(&img), "availability_zone": "az9"}),
        )
        .await
        .unwrap();
    assert_eq!(v[0]["status"], "error");
    assert!(
        v[0]["status_reason"]
            .as_str()
            .unwrap()
            .contains("availability zone az9"),
        "{}",
        v[0]
    );
    // Moving a host to another zone makes it the only choice there.
    let _: Value = admin
        .patch(
            &format!("/v1/hosts/{}", h2.host_id),
            &json!({"availability_zone": "az9"}),
        )
        .await
        .unwrap();
    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": "far2", "project_id": a.project, "flavor": "basic.2c4g",
            "image": id(&img), "availability_zone": "az9"}),
        )
        .await
        .unwrap();
    assert_eq!(v[0]["host_id"], h2.host_id.as_str());
    let agent = if first["host_id"] == h1.host_id.as_str() {
        &h1
    } else {
        &h2
    };

    // A resize the host cannot apply is undone: old flavor, quota and host room.
    let vm = id(&first);
    agent.converge(&vm, "running").await;
    act(&admin, &vm, json!({"action": "stop"})).await.unwrap();
    agent.converge(&vm, "stopped").await;
    let before = project_usage(&admin, &a.project).await;
    act(
        &admin,
        &vm,
        json!({"action": "resize", "flavor": "basic.4c8g"}),
    )
    .await
    .unwrap();
    assert_eq!(project_usage(&admin, &a.project).await.1, before.1 + 2);
    let w = agent.want(&vm).await;
    agent
        .report(
            json!([{"id": vm, "generation": w["generation"], "state": "error",
            "error": "resizing the root disk: no space left on device"}]),
        )
        .await;
    let v = show(&admin, &vm).await;
    assert_eq!(v["status"], "error");
    assert_eq!(v["flavor_name"], "basic.2c4g");
    assert_eq!(v["vcpus"], 2);
    assert!(v["status_reason"]
        .as_str()
        .unwrap()
        .contains("no space left"));
    assert_eq!(project_usage(&admin, &a.project).await, before);
    assert_eq!(
        agent.want(&vm).await["vcpus"],
        2,
        "the host is told the old size again"
    );
    // From error, a stop brings it back to a usable state.
    act(&admin, &vm, json!({"action": "stop"})).await.unwrap();
    agent.converge(&vm, "stopped").await;
    assert_eq!(show(&admin, &vm).await["status"], "stopped");

    // A capture the host cannot make: the image goes to error with the host's reason,
    // and the instance can be captured again.
    let img2: Value = admin
        .post(
            &format!("/v1/instances/{vm}/image"),
            &json!({"name": "snap"}),
        )
        .await
        .unwrap();
    assert_eq!(img2["status"], "saving");
    let w = agent.want(&vm).await;
    assert_eq!(w["capture_image_id"], img2["id"]);
    agent
        .report(
            json!([{"id": vm, "generation": w["generation"], "state": "stopped",
            "capture_image_id": img2["id"], "capture_error": "capturing: disk full"}]),
        )
        .await;
    let i: Value = admin
        .get(&format!("/v1/images/{}", id(&img2)), &[])
        .await
        .unwrap();
    assert_eq!(i["status"], "error");
    assert!(
        i["status_reason"].as_str().unwrap().contains("disk full"),
        "{i}"
    );
    assert!(agent.want(&vm).await["capture_image_id"].is_null());

    // Every lifecycle step left a metering event, in order, in the store.
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT event, attrs FROM metering_events WHERE resource_id = $1 ORDER BY id",
    )
    .bind(&vm)
    .fetch_all(&ts.server.as_ref().unwrap().app.store.db.read)
    .await
    .unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        ["created", "started", "stopped", "resized", "resized"],
        "{events:?}"
    );
    assert!(
        events[0].1.contains("\"flavor\":\"basic.2c4g\""),
        "{}",
        events[0].1
    );
    assert!(events[3].1.contains("basic.4c8g"));
    assert!(events[4].1.contains("basic.2c4g") && events[4].1.contains("reverted"));
    ts.stop().await;
}
