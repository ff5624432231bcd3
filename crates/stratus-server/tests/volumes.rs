//! Block storage in the control plane: volume types, volumes, attachments, extend,
//! snapshots, revert, backups and policies, driven here by a scripted agent so every report
//! is explicit. (Real volumes in real guests under the real agent are in `guest_volumes.rs`.)

mod common;

use common::*;
use serde_json::{json, Value};
use stratus_client::{Auth, Client};

/// A scripted host agent with a storage pool: joins and reports exactly what the test says.
struct Agent {
    c: Client,
    host_id: String,
    facts: Value,
}

impl Agent {
    async fn join(ts: &TestServer, admin: &Client, name: &str, pool_gib: i64) -> Agent {
        let t: Value = admin
            .post("/v1/hosts/join-tokens", &json!({}))
            .await
            .unwrap();
        let facts = json!({"hostname": name, "cpus": 16, "memory_mib": 65536, "disk_gib": 1000,
            "hypervisor": "tcg", "agent_version": "test", "volume_pool_gib": pool_gib});
        let j: Value = Client::new(&ts.url, Auth::Token(t["token"].as_str().unwrap().into()))
            .post("/v1/agent/join", &json!({"facts": facts}))
            .await
            .unwrap();
        let a = Agent {
            c: Client::new(
                &ts.url,
                Auth::Token(j["credential"].as_str().unwrap().into()),
            ),
            host_id: j["host_id"].as_str().unwrap().into(),
            facts,
        };
        a.report(json!({})).await;
        a
    }

    /// Report: `r` holds any of `instances`, `volumes`, `backups`.
    async fn report(&self, r: Value) {
        let _: Value = self
            .c
            .post(
                "/v1/agent/report",
                &json!({"facts": self.facts, "instances": r.get("instances").cloned().unwrap_or(json!([])),
                    "volumes": r.get("volumes").cloned().unwrap_or(json!([])),
                    "backups": r.get("backups").cloned().unwrap_or(json!([]))}),
            )
            .await
            .unwrap();
    }

    async fn desired(&self) -> Value {
        self.c
            .get("/v1/agent/desired", &[("after", "0".to_string())])
            .await
            .unwrap()
    }

    async fn want(&self, kind: &str, id: &str) -> Value {
        self.desired().await[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Report a volume converged to its desired state (ready, with its snapshots).
    async fn volume_ready(&self, id: &str) {
        let w = self.want("volumes", id).await;
        let snaps: Vec<Value> = w["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| json!({"id": s}))
            .collect();
        let revert = w["revert"]["serial"].as_i64().unwrap_or(0);
        self.report(
            json!({"volumes": [{"id": id, "generation": w["generation"], "state": "ready",
            "size_gib": w["size_gib"], "allocated_bytes": 4096, "snapshots": snaps,
            "revert_serial": revert}]}),
        )
        .await;
    }

    /// Report an instance converged, with the data volumes its desired state lists.
    async fn instance_converged(&self, id: &str, state: &str) {
        let w = self.want("instances", id).await;
        let vols: Vec<Value> = w["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["volume_id"].clone())
            .collect();
        self.report(
            json!({"instances": [{"id": id, "generation": w["generation"], "state": state,
            "volumes": vols}]}),
        )
        .await;
    }
}

fn usage(view: &Value, resource: &str) -> i64 {
    view["levels"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == resource)
        .unwrap()["used"]
        .as_i64()
        .unwrap()
}

async fn project_usage(c: &Client, project: &str) -> (i64, i64, i64) {
    let q: Value = c
        .get(&format!("/v1/projects/{project}/quota"), &[])
        .await
        .unwrap();
    (
        usage(&q, "volumes"),
        usage(&q, "storage_gib"),
        usage(&q, "snapshots"),
    )
}

async fn vol(c: &Client, id: &str) -> Value {
    c.get(&format!("/v1/volumes/{id}"), &[]).await.unwrap()
}

async fn create_volume(c: &Client, body: Value) -> Value {
    let v: Vec<Value> = c.post("/v1/volumes", &body).await.unwrap();
    v[0].clone()
}

async fn consistent(admin: &Client) {
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
}

/// A running instance of `project` on the agent's host (scripted through its build).
async fn running_instance(admin: &Client, agent: &Agent, project: &str, name: &str) -> String {
    let image = raw_image(admin, Some(project)).await;
    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": name, "project_id": project, "flavor": "basic.2c4g", "image": id(&image)}),
        )
        .await
        .unwrap();
    let i = id(&v[0]);
    agent.instance_converged(&i, "running").await;
    let shown: Value = admin.get(&format!("/v1/instances/{i}"), &[]).await.unwrap();
    assert_eq!(shown["status"], "running", "{shown}");
    i
}

#[tokio::test]
async fn volume_types_have_the_spec_tiers_and_admins_define_more() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let types: Vec<Value> = admin.get("/v1/volume-types", &[]).await.unwrap();
    let tiers: Vec<(&str, i64)> = types
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["max_iops"].as_i64().unwrap()))
        .collect();
    assert_eq!(tiers, [("normal", 800), ("high", 2500), ("ultra", 10000)]);
    let e = admin
        .post::<Value>(
            "/v1/volume-types",
            &json!({"name": "bad", "max_iops": 0, "max_mbps": 10}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.starts_with("max_iops"), "{}", e.message);
    let t: Value = admin
        .post(
            "/v1/volume-types",
            &json!({"name": "archive", "max_iops": 200, "max_mbps": 40}),
        )
        .await
        .unwrap();
    let e = admin
        .post::<Value>(
            "/v1/volume-types",
            &json!({"name": "archive", "max_iops": 200, "max_mbps": 40}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    let normal = &types[0];
    let e = admin
        .delete(&format!("/v1/volume-types/{}", id(normal)))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409, "{}", e.message);
    admin
        .delete(&format!("/v1/volume-types/{}", id(&t)))
        .await
        .unwrap();
    let after: Vec<Value> = admin.get("/v1/volume-types", &[]).await.unwrap();
    assert_eq!(after.len(), 3);
    ts.stop().await;
}

#[tokio::test]
async fn bad_volume_input_is_refused_naming_the_field_and_changes_nothing() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let _agent = Agent::join(&ts, &admin, "cn1", 100).await;
    for (body, field) in [
        (
            json!({"name": "v", "project_id": a.project, "size_gib": 0}),
            "size_gib",
        ),
        (
            json!({"name": "v", "project_id": a.project, "size_gib": 32769}),
            "size_gib",
        ),
        (json!({"name": "v", "project_id": a.project}), "size_gib"),
        (
            json!({"name": "v", "project_id": a.project, "size_gib": 1, "volume_type": "gold"}),
            "volume_type",
        ),
        (
            json!({"name": "", "project_id": a.project, "size_gib": 1}),
            "name",
        ),
        (
            json!({"name": "v", "project_id": a.project, "size_gib": 1, "count": 0}),
            "count",
        ),
        (
            json!({"name": "v", "project_id": a.project, "size_gib": 1,
            "snapshot_id": uuid::Uuid::new_v4(), "backup_id": uuid::Uuid::new_v4()}),
            "snapshot_id",
        ),
        (
            json!({"name": "v", "project_id": a.project, "snapshot_id": uuid::Uuid::new_v4()}),
            "snapshot_id",
        ),
        (
            json!({"name": "v", "project_id": a.project, "size_gib": 1, "image": "nope"}),
            "image",
        ),
    ] {
        let e = admin
            .post::<Vec<Value>>("/v1/volumes", &body)
            .await
            .unwrap_err();
        assert_eq!(e.status, 400, "{body}: {}", e.message);
        assert!(e.message.starts_with(field), "{body}: {}", e.message);
    }
    let e = admin
        .post::<Vec<Value>>(
            "/v1/volumes",
            &json!({"name": "v", "project_id": a.project, "size_gib": 1, "bogus": 1}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 400);
    let page: Value = admin.get("/v1/volumes", &[]).await.unwrap();
    assert_eq!(page["items"], json!([]));
    assert_eq!(project_usage(&admin, &a.project).await, (0, 0, 0));

    // Quota: a project limited to 50 GiB cannot take a 60 GiB volume, and nothing is left.
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", a.project),
            &json!({"limits": {"storage_gib": 50}}),
        )
        .await
        .unwrap();
    let e = admin
        .post::<Vec<Value>>(
            "/v1/volumes",
            &json!({"name": "big", "project_id": a.project, "size_gib": 60}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 409, "{}", e.message);
    assert!(e.message.contains("storage_gib"), "{}", e.message);
    // Two of 30 GiB do not fit either: all or nothing.
    let e = admin
        .post::<Vec<Value>>(
            "/v1/volumes",
            &json!({"name": "pair", "project_id": a.project, "size_gib": 30, "count": 2}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert_eq!(project_usage(&admin, &a.project).await, (0, 0, 0));
    consistent(&admin).await;
    ts.stop().await;
}

#[tokio::test]
async fn a_pool_without_room_fails_the_volume_clearly_and_32_tib_fits_when_thin() {
    let ts = TestServer::start_with(|c| c.storage.volume_allocation_ratio = 1.0).await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let agent = Agent::join(&ts, &admin, "cn1", 100).await;
    let v = create_volume(
        &admin,
        json!({"name": "huge", "project_id": a.project, "size_gib": 200}),
    )
    .await;
    assert_eq!(v["status"], "error", "{v}");
    assert!(
        v["status_reason"]
            .as_str()
            .unwrap()
            .contains("no valid host"),
        "{v}"
    );
    assert!(v["host_id"].is_null());
    assert_eq!(project_usage(&admin, &a.project).await, (0, 0, 0));
    admin
        .delete(&format!("/v1/volumes/{}", id(&v)))
        .await
        .unwrap();
    assert_eq!(
        status(
            admin
                .get::<Value>(&format!("/v1/volumes/{}", id(&v)), &[])
                .await
        ),
        404
    );
    let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
    assert_eq!(hosts[0]["id"], agent.host_id.as_str());
    ts.stop().await;

    // Thin provisioning: a 32 TiB volume on a 100 GiB pool with a high ratio.
    let ts = TestServer::start_with(|c| c.storage.volume_allocation_ratio = 400.0).await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let agent = Agent::join(&ts, &admin, "cn1", 100).await;
    let v = create_volume(
        &admin,
        json!({"name": "huge", "project_id": a.project, "size_gib": 32768, "volume_type": "ultra"}),
    )
    .await;
    assert_eq!(v["status"], "creating", "{v}");
    assert_eq!(v["max_iops"], 10000);
    agent.volume_ready(&id(&v)).await;
    assert_eq!(vol(&admin, &id(&v)).await["status"], "available");
    assert_eq!(project_usage(&admin, &a.project).await, (1, 32768, 0));
    ts.stop().await;
}

#[tokio::test]
async fn volume_lifecycle_through_the_agent_protocol() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let agent = Agent::join(&ts, &admin, "cn1", 1000).await;
    let inst = running_instance(&admin, &agent, &a.project, "app1").await;

    // Create: `creating` until the host says it has it.
    let v = create_volume(
        &admin,
        json!({"name": "data", "project_id": a.project, "size_gib": 10, "volume_type": "high"}),
    )
    .await;
    let vid = id(&v);
    assert_eq!(v["status"], "creating");
    assert_eq!(v["host_id"], agent.host_id.as_str());
    assert_eq!(project_usage(&admin, &a.project).await, (1, 10, 0));
    let w = agent.want("volumes", &vid).await;
    assert_eq!(
        (w["size_gib"].as_i64(), w["format"].as_str()),
        (Some(10), Some("qcow2"))
    );
    agent.volume_ready(&vid).await;
    assert_eq!(vol(&admin, &vid).await["status"], "available");

    // Attach: the instance's desired state carries it with the tier's limits.
    let att: Value = admin
        .post(
            &format!("/v1/volumes/{vid}/attach"),
            &json!({"instance_id": inst}),
        )
        .await
        .unwrap();
    assert_eq!(att["status"], "attaching");
    let wi = agent.want("instances", &inst).await;
    assert_eq!(wi["volumes"][0]["volume_id"], vid.as_str());
    assert_eq!(wi["volumes"][0]["max_iops"], 2500);
    assert_eq!(
        wi["volumes"][0]["serial"],
        vid.replace('-', "")[..20].to_string()
    );
    // An older report does not settle it; the report of the attach generation does.
    agent
        .report(
            json!({"instances": [{"id": inst, "generation": wi["generation"].as_i64().unwrap() - 1,
            "state": "running", "volumes": []}]}),
        )
        .await;
    assert_eq!(vol(&admin, &vid).await["status"], "attaching");
    agent.instance_converged(&inst, "running").await;
    let v = vol(&admin, &vid).await;
    assert_eq!(v["status"], "in_use", "{v}");
    assert_eq!(v["attachments"][0]["instance_id"], inst.as_str());
    assert_eq!(v["attachments"][0]["state"], "attached");
    let shown: Value = admin
        .get(&format!("/v1/instances/{inst}"), &[])
        .await
        .unwrap();
    assert_eq!(shown["volumes"], json!([vid]));
    // While attached: no delete, no revert, no second attach (not shareable).
    let e = admin
        .delete(&format!("/v1/volumes/{vid}"))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("attached"), "{}", e.message);

    // Extend online: quota first, then the host grows it.
    let x: Value = admin
        .post(
            &format!("/v1/volumes/{vid}/extend"),
            &json!({"size_gib": 20}),
        )
        .await
        .unwrap();
    assert_eq!(x["status"], "extending");
    assert_eq!(project_usage(&admin, &a.project).await, (1, 20, 0));
    let e = admin
        .post::<Value>(
            &format!("/v1/volumes/{vid}/extend"),
            &json!({"size_gib": 30}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 409, "one operation at a time: {}", e.message);
    agent.volume_ready(&vid).await;
    let v = vol(&admin, &vid).await;
    assert_eq!(
        (v["status"].as_str(), v["size_gib"].as_i64()),
        (Some("in_use"), Some(20))
    );
    let e = admin
        .post::<Value>(
            &format!("/v1/volumes/{vid}/extend"),
            &json!({"size_gib": 20}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.starts_with("size_gib"), "{}", e.message);
    // A grow the host cannot do is undone: old size, quota given back, the reason shown.
    let _: Value = admin
        .post(
            &format!("/v1/volumes/{vid}/extend"),
            &json!({"size_gib": 25}),
        )
        .await
        .unwrap();
    let w = agent.want("volumes", &vid).await;
    agent
        .report(
            json!({"volumes": [{"id": vid, "generation": w["generation"], "state": "ready",
            "size_gib": 20, "error": "block_resize: No space left on device"}]}),
        )
        .await;
    let v = vol(&admin, &vid).await;
    assert_eq!(
        (v["status"].as_str(), v["size_gib"].as_i64()),
        (Some("in_use"), Some(20)),
        "{v}"
    );
    assert!(
        v["status_reason"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{v}"
    );
    assert_eq!(project_usage(&admin, &a.project).await, (1, 20, 0));

    // Snapshots: taken while attached; revert needs it detached.
    let s: Value = admin
        .post(
            "/v1/snapshots",
            &json!({"volume_id": vid, "name": "before-upgrade"}),
        )
        .await
        .unwrap();
    let sid = id(&s);
    assert_eq!(s["status"], "creating");
    assert_eq!(project_usage(&admin, &a.project).await, (1, 20, 1));
    assert_eq!(agent.want("volumes", &vid).await["snapshots"], json!([sid]));
    agent.volume_ready(&vid).await;
    let s: Value = admin
        .get(&format!("/v1/snapshots/{sid}"), &[])
        .await
        .unwrap();
    assert_eq!(s["status"], "available");
    let e = admin
        .post::<Value>(
            &format!("/v1/volumes/{vid}/revert"),
            &json!({"snapshot_id": sid}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("detach"), "{}", e.message);

    // Detach: `detaching` until the instance's report no longer lists it.
    let d: Value = admin
        .post(&format!("/v1/volumes/{vid}/detach"), &json!({}))
        .await
        .unwrap();
    assert_eq!(d["status"], "detaching");
    assert_eq!(agent.want("instances", &inst).await["volumes"], json!([]));
    agent.instance_converged(&inst, "running").await;
    let v = vol(&admin, &vid).await;
    assert_eq!(v["status"], "available");
    assert_eq!(v["attachments"], json!([]));
    let e = admin
        .post::<Value>(&format!("/v1/volumes/{vid}/detach"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409, "{}", e.message);

    // Revert, once.
    let r: Value = admin
        .post(
            &format!("/v1/volumes/{vid}/revert"),
            &json!({"snapshot_id": sid}),
        )
        .await
        .unwrap();
    assert_eq!(r["status"], "reverting");
    let w = agent.want("volumes", &vid).await;
    assert_eq!(w["revert"]["snapshot_id"], sid.as_str());
    assert_eq!(w["revert"]["serial"], 1);
    agent.volume_ready(&vid).await;
    assert_eq!(vol(&admin, &vid).await["status"], "available");

    // A new volume from the snapshot lives where the snapshot is.
    let c = create_volume(
        &admin,
        json!({"name": "clone", "project_id": a.project, "snapshot_id": sid}),
    )
    .await;
    assert_eq!(c["size_gib"], 20, "defaults to the snapshot's size");
    assert_eq!(c["host_id"], agent.host_id.as_str());
    assert_eq!(c["source_snapshot_id"], sid.as_str());
    let w = agent.want("volumes", &id(&c)).await;
    assert_eq!(
        w["source"],
        json!({"kind": "snapshot", "volume_id": vid, "snapshot_id": sid})
    );
    let e = admin
        .delete(&format!("/v1/snapshots/{sid}"))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409, "being copied: {}", e.message);
    agent.volume_ready(&id(&c)).await;

    // Delete the snapshot: gone once the host no longer has it; quota back.
    admin.delete(&format!("/v1/snapshots/{sid}")).await.unwrap();
    let s: Value = admin
        .get(&format!("/v1/snapshots/{sid}"), &[])
        .await
        .unwrap();
    assert_eq!(s["status"], "deleting");
    assert_eq!(agent.want("volumes", &vid).await["snapshots"], json!([]));
    agent.volume_ready(&vid).await;
    assert_eq!(
        status(
            admin
                .get::<Value>(&format!("/v1/snapshots/{sid}"), &[])
                .await
        ),
        404
    );
    assert_eq!(project_usage(&admin, &a.project).await, (2, 40, 0));

    // Delete the volumes: `deleting` until the host reports them gone.
    for v in [&vid, &id(&c)] {
        admin.delete(&format!("/v1/volumes/{v}")).await.unwrap();
        let w = agent.want("volumes", v).await;
        assert_eq!(w["deleted"], true);
        agent
            .report(json!({"volumes": [{"id": v, "generation": w["generation"], "state": "gone"}]}))
            .await;
        assert_eq!(
            status(admin.get::<Value>(&format!("/v1/volumes/{v}"), &[]).await),
            404
        );
    }
    assert_eq!(project_usage(&admin, &a.project).await, (0, 0, 0));
    let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
    let alloc: i64 = sqlx::query_scalar("SELECT alloc_volume_gib FROM hosts WHERE id = $1")
        .bind(&agent.host_id)
        .fetch_one(&ts.server.as_ref().unwrap().app.store.db.read)
        .await
        .unwrap();
    assert_eq!(alloc, 0, "pool room given back: {hosts:?}");
    consistent(&admin).await;
    ts.stop().await;
}

#[tokio::test]
async fn attach_failures_shared_volumes_and_instance_deletion() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let agent = Agent::join(&ts, &admin, "cn1", 1000).await;
    let i1 = running_instance(&admin, &agent, &a.project, "n1").await;
    let i2 = running_instance(&admin, &agent, &a.project, "n2").await;

    // A hot-plug the guest refuses: back to available, with the reason.
    let v = create_volume(
        &admin,
        json!({"name": "d", "project_id": a.project, "size_gib": 5}),
    )
    .await;
    let vid = id(&v);
    agent.volume_ready(&vid).await;
    let _: Value = admin
        .post(
            &format!("/v1/volumes/{vid}/attach"),
            &json!({"instance_id": i1}),
        )
        .await
        .unwrap();
    let w = agent.want("instances", &i1).await;
    agent
        .report(json!({"instances": [{"id": i1, "generation": w["generation"], "state": "running",
            "volumes": [], "volume_errors": [{"volume_id": vid, "error": "device_add: bus full"}]}]}))
        .await;
    let v = vol(&admin, &vid).await;
    assert_eq!(v["status"], "available", "{v}");
    assert!(
        v["status_reason"].as_str().unwrap().contains("bus full"),
        "{v}"
    );
    assert_eq!(v["attachments"], json!([]));

    // Not shareable: a second instance is refused while it is attached to the first.
    let _: Value = admin
        .post(
            &format!("/v1/volumes/{vid}/attach"),
            &json!({"instance_id": i1}),
        )
        .await
        .unwrap();
    agent.instance_converged(&i1, "running").await;
    let e = admin
        .post::<Value>(
            &format!("/v1/volumes/{vid}/attach"),
            &json!({"instance_id": i2}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("not shareable"), "{}", e.message);

    // Shareable: raw, attached to both, and no snapshots (the local pool cannot).
    let sh = create_volume(
        &admin,
        json!({"name": "shared", "project_id": a.project, "size_gib": 5, "shareable": true}),
    )
    .await;
    let shid = id(&sh);
    assert_eq!(agent.want("volumes", &shid).await["format"], "raw");
    agent.volume_ready(&shid).await;
    for i in [&i1, &i2] {
        let _: Value = admin
            .post(
                &format!("/v1/volumes/{shid}/attach"),
                &json!({"instance_id": i}),
            )
            .await
            .unwrap();
        agent.instance_converged(i, "running").await;
    }
    let sh = vol(&admin, &shid).await;
    assert_eq!(sh["status"], "in_use");
    assert_eq!(sh["attachments"].as_array().unwrap().len(), 2);
    assert_eq!(
        agent.want("instances", &i2).await["volumes"][0]["shareable"],
        true
    );
    let e = admin
        .post::<Value>("/v1/snapshots", &json!({"volume_id": shid, "name": "s"}))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("shareable"), "{}", e.message);
    // Detaching from several needs to say which.
    let e = admin
        .post::<Value>(&format!("/v1/volumes/{shid}/detach"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.starts_with("instance_id"), "{}", e.message);

    // Deleting an instance detaches its volumes once the guest is gone.
    admin.delete(&format!("/v1/instances/{i1}")).await.unwrap();
    let w = agent.want("instances", &i1).await;
    agent
        .report(json!({"instances": [{"id": i1, "generation": w["generation"], "state": "gone"}]}))
        .await;
    let v = vol(&admin, &vid).await;
    assert_eq!(v["status"], "available", "{v}");
    let sh = vol(&admin, &shid).await;
    assert_eq!(sh["status"], "in_use");
    assert_eq!(sh["attachments"][0]["instance_id"], i2.as_str());
    consistent(&admin).await;
    ts.stop().await;
}

#[tokio::test]
async fn backups_policies_prune_and_restore_through_the_agent_protocol() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let agent = Agent::join(&ts, &admin, "cn1", 1000).await;
    let inst = running_instance(&admin, &agent, &a.project, "db1").await;
    let v = create_volume(
        &admin,
        json!({"name": "pgdata", "project_id": a.project, "size_gib": 8}),
    )
    .await;
    let vid = id(&v);
    agent.volume_ready(&vid).await;
    let _: Value = admin
        .post(
            &format!("/v1/volumes/{vid}/attach"),
            &json!({"instance_id": inst}),
        )
        .await
        .unwrap();
    agent.instance_converged(&inst, "running").await;

    // A policy on the instance covers the volumes attached to it; keep two copies.
    let e = admin
        .post::<Value>(
            "/v1/backup-policies",
            &json!({"project_id": a.project, "name": "nightly", "interval_hours": 0, "keep": 2}),
        )
        .await
        .unwrap_err();
    assert!(e.message.starts_with("interval_hours"), "{}", e.message);
    let other = tree(&admin, "B").await;
    let e = admin
        .post::<Value>(
            "/v1/backup-policies",
            &json!({"project_id": other.project, "name": "nightly", "interval_hours": 24, "keep": 2,
                "volume_ids": [vid]}),
        )
        .await
        .unwrap_err();
    assert!(e.message.starts_with("volume_ids"), "{}", e.message);
    let t0 = chrono::Utc::now() + chrono::Duration::hours(1);
    let bp: Value = admin
        .post(
            "/v1/backup-policies",
            &json!({"project_id": a.project, "name": "nightly", "interval_hours": 24, "keep": 2,
                "instance_ids": [inst], "first_run_at": t0}),
        )
        .await
        .unwrap();
    let app = ts.server.as_ref().unwrap().app.clone();
    let none = stratus_server::app::volumes::backup_policies_run_due(&app, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(none.started, 0, "not due yet");
    let mut made = Vec::new();
    for day in 0..3 {
        let now = t0 + chrono::Duration::hours(24 * day) + chrono::Duration::minutes(1);
        let run = stratus_server::app::volumes::backup_policies_run_due(&app, now)
            .await
            .unwrap();
        assert_eq!(run.started, 1, "day {day}: {run:?}");
        let page: Value = admin
            .get(
                "/v1/backups",
                &[("policy_id", id(&bp)), ("sort", "created_at".into())],
            )
            .await
            .unwrap();
        let newest = page["items"].as_array().unwrap().last().cloned().unwrap();
        assert_eq!(newest["status"], "creating");
        let desired = agent.desired().await;
        assert!(desired["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == newest["id"]));
        agent
            .report(json!({"backups": [{"id": newest["id"], "state": "ready", "stored_bytes": 1048576}]}))
            .await;
        made.push(id(&newest));
    }
    // The third run pruned the first copy: it is being deleted on the host.
    let first: Value = admin
        .get(&format!("/v1/backups/{}", made[0]), &[])
        .await
        .unwrap();
    assert_eq!(first["status"], "deleting");
    let d = agent.desired().await;
    let entry = d["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == made[0].as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["deleted"], true);
    agent
        .report(json!({"backups": [{"id": made[0], "state": "gone"}]}))
        .await;
    assert_eq!(
        status(
            admin
                .get::<Value>(&format!("/v1/backups/{}", made[0]), &[])
                .await
        ),
        404
    );
    let bp: Value = admin
        .get(&format!("/v1/backup-policies/{}", id(&bp)), &[])
        .await
        .unwrap();
    assert!(bp["next_run_at"].as_str().unwrap() > bp["last_run_at"].as_str().unwrap());
    let kept: Value = admin
        .get("/v1/backups", &[("volume_id", vid.clone())])
        .await
        .unwrap();
    assert_eq!(kept["items"].as_array().unwrap().len(), 2);
    let b1: Value = admin
        .get(&format!("/v1/backups/{}", made[1]), &[])
        .await
        .unwrap();
    assert_eq!(
        (b1["status"].as_str(), b1["stored_bytes"].as_i64()),
        (Some("available"), Some(1048576))
    );

    // Restore: a new volume, on the backup's host, filled from it.
    let e = admin
        .post::<Vec<Value>>(
            "/v1/volumes",
            &json!({"name": "restored", "project_id": a.project, "backup_id": made[1], "size_gib": 4}),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("at least 8"), "{}", e.message);
    let r = create_volume(
        &admin,
        json!({"name": "restored", "project_id": a.project, "backup_id": made[1]}),
    )
    .await;
    assert_eq!(r["source_backup_id"], made[1].as_str());
    let w = agent.want("volumes", &id(&r)).await;
    assert_eq!(w["source"], json!({"kind": "backup", "backup_id": made[1]}));
    let e = admin
        .delete(&format!("/v1/backups/{}", made[1]))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409, "being restored: {}", e.message);
    agent.volume_ready(&id(&r)).await;
    assert_eq!(vol(&admin, &id(&r)).await["status"], "available");

    // A manual backup; a failed one shows why.
    let b: Value = admin
        .post(
            "/v1/backups",
            &json!({"volume_id": vid, "name": "before-migration"}),
        )
        .await
        .unwrap();
    agent
        .report(
            json!({"backups": [{"id": id(&b), "state": "error", "error": "qemu-img: disk full"}]}),
        )
        .await;
    let b: Value = admin
        .get(&format!("/v1/backups/{}", id(&b)), &[])
        .await
        .unwrap();
    assert_eq!(b["status"], "error");
    assert!(b["status_reason"].as_str().unwrap().contains("disk full"));
    consistent(&admin).await;
    ts.stop().await;
}

#[tokio::test]
async fn departments_never_see_or_touch_each_others_volumes() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let agent = Agent::join(&ts, &admin, "cn1", 1000).await;
    let (_, ua) = user_with_role(
        &ts,
        &sec,
        "ua",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, ub) = user_with_role(
        &ts,
        &sec,
        "ub",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    let ia = running_instance(&admin, &agent, &a.project, "ia").await;
    let ib = running_instance(&admin, &agent, &b.project, "ib").await;
    let v = create_volume(
        &ua,
        json!({"name": "secret", "project_id": a.project, "size_gib": 1}),
    )
    .await;
    let vid = id(&v);
    agent.volume_ready(&vid).await;
    let s: Value = ua
        .post("/v1/snapshots", &json!({"volume_id": vid, "name": "s1"}))
        .await
        .unwrap();
    agent.volume_ready(&vid).await;
    let bk: Value = ua
        .post("/v1/backups", &json!({"volume_id": vid, "name": "b1"}))
        .await
        .unwrap();

    // B sees nothing of A's, and touching it is 404.
    for path in [
        "/v1/volumes",
        "/v1/snapshots",
        "/v1/backups",
        "/v1/backup-policies",
    ] {
        let page: Value = ub.get(path, &[]).await.unwrap();
        assert_eq!(page["items"], json!([]), "{path}");
    }
    for path in [
        format!("/v1/volumes/{vid}"),
        format!("/v1/snapshots/{}", id(&s)),
        format!("/v1/backups/{}", id(&bk)),
    ] {
        assert_eq!(status(ub.get::<Value>(&path, &[]).await), 404, "{path}");
        assert_eq!(ub.delete(&path).await.unwrap_err().status, 404, "{path}");
    }
    for (path, body) in [
        (
            format!("/v1/volumes/{vid}/attach"),
            json!({"instance_id": ib}),
        ),
        (format!("/v1/volumes/{vid}/extend"), json!({"size_gib": 2})),
        (
            format!("/v1/volumes/{vid}/revert"),
            json!({"snapshot_id": id(&s)}),
        ),
        (
            "/v1/snapshots".to_string(),
            json!({"volume_id": vid, "name": "x"}),
        ),
        (
            "/v1/backups".to_string(),
            json!({"volume_id": vid, "name": "x"}),
        ),
    ] {
        assert_eq!(status(ub.post::<Value>(&path, &body).await), 404, "{path}");
    }
    // B cannot restore A's backup or clone A's snapshot into its own project either.
    for body in [
        json!({"name": "x", "project_id": b.project, "backup_id": id(&bk)}),
        json!({"name": "x", "project_id": b.project, "snapshot_id": id(&s)}),
    ] {
        let e = ub
            .post::<Vec<Value>>("/v1/volumes", &body)
            .await
            .unwrap_err();
        assert_eq!(e.status, 400, "{body}");
    }
    // A cannot attach its volume to B's instance: that instance does not exist for A.
    assert_eq!(
        status(
            ua.post::<Value>(
                &format!("/v1/volumes/{vid}/attach"),
                &json!({"instance_id": ib})
            )
            .await
        ),
        404
    );
    let _: Value = ua
        .post(
            &format!("/v1/volumes/{vid}/attach"),
            &json!({"instance_id": ia}),
        )
        .await
        .unwrap();
    // Every change is in the audit log.
    let aud = ts.auditor().await;
    let events: Value = aud
        .get("/v1/audit-events", &[("operation", "volume_attach".into())])
        .await
        .unwrap();
    assert!(!events["items"].as_array().unwrap().is_empty(), "{events}");
    ts.stop().await;
}

#[tokio::test]
async fn instances_boot_from_volumes_and_attach_volumes_at_boot() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let agent = Agent::join(&ts, &admin, "cn1", 1000).await;
    let image = raw_image(&admin, Some(&a.project)).await;
    let root = create_volume(
        &admin,
        json!({"name": "root", "project_id": a.project, "image": id(&image), "size_gib": 20}),
    )
    .await;
    let rid = id(&root);
    assert_eq!(root["bootable"], true);
    let w = agent.want("volumes", &rid).await;
    assert_eq!(w["source"]["kind"], "image");
    assert_eq!(w["source"]["image_id"], id(&image).as_str());
    agent.volume_ready(&rid).await;
    let mut ready = Vec::new();
    for name in ["data", "blank"] {
        let v = create_volume(
            &admin,
            json!({"name": name, "project_id": a.project, "size_gib": 5}),
        )
        .await;
        agent.volume_ready(&id(&v)).await;
        ready.push(id(&v));
    }
    let (did, blank) = (ready[0].clone(), ready[1].clone());
    let vb = create_volume(
        &admin,
        json!({"name": "theirs", "project_id": b.project, "size_gib": 5}),
    )
    .await;
    // A volume on a second host (the first one disabled while it is placed).
    let other = Agent::join(&ts, &admin, "cn2", 1000).await;
    let _: Value = admin
        .patch(
            &format!("/v1/hosts/{}", agent.host_id),
            &json!({"enabled": false}),
        )
        .await
        .unwrap();
    let far = create_volume(
        &admin,
        json!({"name": "far", "project_id": a.project, "size_gib": 5}),
    )
    .await;
    assert_eq!(far["host_id"], other.host_id.as_str());
    other.volume_ready(&id(&far)).await;
    let _: Value = admin
        .patch(
            &format!("/v1/hosts/{}", agent.host_id),
            &json!({"enabled": true}),
        )
        .await
        .unwrap();

    let with = |extra: Value| {
        let mut v = json!({"name": "vm", "project_id": a.project, "flavor": "basic.2c4g"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    for (body, field) in [
        (with(json!({})), "image"),
        (
            with(json!({"image": id(&image), "boot_volume_id": rid})),
            "boot_volume_id",
        ),
        (with(json!({"boot_volume_id": blank})), "boot_volume_id"),
        (with(json!({"boot_volume_id": rid, "count": 2})), "count"),
        (
            with(json!({"boot_volume_id": rid, "volume_ids": [id(&vb)]})),
            "volume_ids",
        ),
        (
            with(json!({"boot_volume_id": rid, "volume_ids": [rid]})),
            "volume_ids",
        ),
        (
            with(json!({"boot_volume_id": rid, "volume_ids": [id(&far)]})),
            "volume_ids",
        ),
        (
            with(json!({"boot_volume_id": uuid::Uuid::new_v4()})),
            "boot_volume_id",
        ),
    ] {
        let e = admin
            .post::<Vec<Value>>("/v1/instances", &body)
            .await
            .unwrap_err();
        assert_eq!(e.status, 400, "{body}: {}", e.message);
        assert!(e.message.starts_with(field), "{body}: {}", e.message);
    }

    // Boot from the root volume with a data volume: placed on their host, both attached
    // from the first desired state, the boot volume as the root disk.
    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &with(json!({"boot_volume_id": rid, "volume_ids": [did]})),
        )
        .await
        .unwrap();
    let vm = id(&v[0]);
    assert_eq!(v[0]["host_id"], agent.host_id.as_str());
    assert_eq!(v[0]["root_disk_gib"], 0, "no root disk of its own");
    assert_eq!(v[0]["boot_volume_id"], rid.as_str());
    let w = agent.want("instances", &vm).await;
    assert_eq!(w["boot_volume"]["volume_id"], rid.as_str());
    assert_eq!(w["volumes"][0]["volume_id"], did.as_str());
    let h: Value = admin
        .get(&format!("/v1/hosts/{}", agent.host_id), &[])
        .await
        .unwrap();
    assert_eq!(h["allocated_disk_gib"], 0, "{h}");
    agent.instance_converged(&vm, "running").await;
    for v in [&rid, &did] {
        assert_eq!(vol(&admin, v).await["status"], "in_use");
    }
    let e = admin
        .post::<Value>(&format!("/v1/volumes/{rid}/detach"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("root disk"), "{}", e.message);
    admin.delete(&format!("/v1/instances/{vm}")).await.unwrap();
    let w = agent.want("instances", &vm).await;
    agent
        .report(json!({"instances": [{"id": vm, "generation": w["generation"], "state": "gone"}]}))
        .await;
    for v in [&rid, &did] {
        assert_eq!(vol(&admin, v).await["status"], "available");
    }
    consistent(&admin).await;
    ts.stop().await;
}
