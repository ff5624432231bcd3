//! Quotas: limits per VDC and project, roll-up to every ancestor, atomic enforcement.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{json, Value};

fn line<'a>(view: &'a Value, level: usize, resource: &str) -> &'a Value {
    view["levels"][level]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == resource)
        .unwrap()
}

#[tokio::test]
async fn limits_nest_and_refuse_bad_values_without_writing() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let t = tree(&admin, "org").await;
    let _: Value = admin
        .put(
            &format!("/v1/vdcs/{}/quota", t.top),
            &json!({"limits": {"vcpus": 100, "projects": 10}}),
        )
        .await
        .unwrap();
    let v: Value = admin
        .put(
            &format!("/v1/vdcs/{}/quota", t.child),
            &json!({"limits": {"vcpus": 40}}),
        )
        .await
        .unwrap();
    assert_eq!(line(&v, 0, "vcpus")["limit"], 40);
    assert_eq!(
        line(&v, 1, "vcpus")["limit"],
        100,
        "the view shows every level up to the top"
    );
    // A child's limit above its parent's.
    let e = admin
        .put::<Value>(
            &format!("/v1/vdcs/{}/quota", t.child),
            &json!({"limits": {"vcpus": 101}}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(
        e.message.starts_with("limits.vcpus:") && e.message.contains("above"),
        "{}",
        e.message
    );
    // A parent's limit below a child's.
    let e = admin
        .put::<Value>(
            &format!("/v1/vdcs/{}/quota", t.top),
            &json!({"limits": {"vcpus": 30}}),
        )
        .await
        .unwrap_err();
    assert!(
        e.message.starts_with("limits.vcpus:") && e.message.contains("below"),
        "{}",
        e.message
    );
    // Below current usage: the top already counts one project.
    let e = admin
        .put::<Value>(
            &format!("/v1/vdcs/{}/quota", t.top),
            &json!({"limits": {"projects": 0}}),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("below current usage 1"), "{}", e.message);
    // Negative, unknown resource, wrong type.
    assert_eq!(
        status(
            admin
                .put::<Value>(
                    &format!("/v1/vdcs/{}/quota", t.top),
                    &json!({"limits": {"vcpus": -5}})
                )
                .await
        ),
        400
    );
    let e = admin
        .put::<Value>(
            &format!("/v1/vdcs/{}/quota", t.top),
            &json!({"limits": {"gpus": 5}}),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("gpus"), "{}", e.message);
    assert_eq!(
        status(
            admin
                .put::<Value>(
                    &format!("/v1/vdcs/{}/quota", t.top),
                    &json!({"limits": {"vcpus": "many"}})
                )
                .await
        ),
        400
    );
    // Nothing changed by any refused call.
    let v: Value = admin
        .get(&format!("/v1/vdcs/{}/quota", t.child), &[])
        .await
        .unwrap();
    assert_eq!(line(&v, 0, "vcpus")["limit"], 40);
    assert_eq!(line(&v, 1, "vcpus")["limit"], 100);
    // Unlimited again with null; project limits sit under the VDC's.
    let v: Value = admin
        .put(
            &format!("/v1/vdcs/{}/quota", t.child),
            &json!({"limits": {"vcpus": null}}),
        )
        .await
        .unwrap();
    assert!(line(&v, 0, "vcpus").get("limit").is_none());
    assert_eq!(
        line(&v, 0, "vcpus")["available"],
        100,
        "headroom comes from the nearest limited ancestor"
    );
    let e = admin
        .put::<Value>(
            &format!("/v1/projects/{}/quota", t.project),
            &json!({"limits": {"vcpus": 500}}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 400);
    let v: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", t.project),
            &json!({"limits": {"vcpus": 8, "memory_gib": 16}}),
        )
        .await
        .unwrap();
    assert_eq!(line(&v, 0, "vcpus")["available"], 8);
    assert_eq!(
        v["levels"].as_array().unwrap().len(),
        3,
        "project, child VDC, top VDC"
    );
    ts.stop().await;
}

#[tokio::test]
async fn a_vdc_admin_sets_quotas_below_itself_but_not_its_own() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let t = tree(&admin, "org").await;
    let (_, va) = user_with_role(
        &ts,
        &sec,
        "va",
        Some(&t.top),
        Some(("vdc_admin", "vdc", &t.top)),
    )
    .await;
    let _: Value = va
        .put(
            &format!("/v1/vdcs/{}/quota", t.child),
            &json!({"limits": {"instances": 5}}),
        )
        .await
        .unwrap();
    assert_eq!(
        status(
            va.put::<Value>(
                &format!("/v1/vdcs/{}/quota", t.top),
                &json!({"limits": {"instances": 500}})
            )
            .await
        ),
        403
    );
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "mem",
        Some(&t.child),
        Some(("member", "project", &t.project)),
    )
    .await;
    let _: Value = member
        .get(&format!("/v1/projects/{}/quota", t.project), &[])
        .await
        .unwrap();
    assert_eq!(
        status(
            member
                .put::<Value>(
                    &format!("/v1/projects/{}/quota", t.project),
                    &json!({"limits": {"instances": 500}})
                )
                .await
        ),
        403
    );
    assert_eq!(
        status(
            member
                .get::<Value>(&format!("/v1/vdcs/{}/quota", t.top), &[])
                .await
        ),
        404
    );
    ts.stop().await;
}

/// Fire 60 concurrent creates at a quota of 7: exactly 7 succeed at every level, the rest get
/// 409 quota_exceeded, and the counters equal the real number of projects.
#[tokio::test]
async fn concurrent_creates_never_pass_the_quota() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let t = tree(&admin, "org").await;
    // The top VDC allows 8 projects; one exists already, so 7 more fit.
    let _: Value = admin
        .put(
            &format!("/v1/vdcs/{}/quota", t.top),
            &json!({"limits": {"projects": 8}}),
        )
        .await
        .unwrap();
    let (_, va) = user_with_role(
        &ts,
        &sec,
        "dept-admin",
        Some(&t.top),
        Some(("vdc_admin", "vdc", &t.top)),
    )
    .await;
    let va = Arc::new(va);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let c = va.clone();
        let vdc = if i % 2 == 0 {
            t.child.clone()
        } else {
            t.top.clone()
        };
        tasks.push(tokio::spawn(async move {
            c.post::<Value>(
                "/v1/projects",
                &json!({"vdc_id": vdc, "name": format!("p{i}")}),
            )
            .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!((e.status, e.code.as_str()), (409, "quota_exceeded"), "{e}");
                assert!(
                    e.message.starts_with("projects: quota of vdc"),
                    "{}",
                    e.message
                );
            }
        }
    }
    assert_eq!(ok, 7);
    let projects: Value = admin
        .get("/v1/projects", &[("org_id", t.org.clone())])
        .await
        .unwrap();
    assert_eq!(projects["items"].as_array().unwrap().len(), 8);
    let v: Value = admin
        .get(&format!("/v1/vdcs/{}/quota", t.top), &[])
        .await
        .unwrap();
    assert_eq!(line(&v, 0, "projects")["used"], 8);
    assert_eq!(line(&v, 0, "projects")["available"], 0);
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
    assert!(report["counters_checked"].as_i64().unwrap() > 0);
    // Deleting a project frees its place at every level.
    admin
        .delete(&format!("/v1/projects/{}", t.project))
        .await
        .unwrap();
    let _: Value = va
        .post("/v1/projects", &json!({"vdc_id": t.child, "name": "again"}))
        .await
        .unwrap();
    ts.stop().await;
}

/// An administrator hands a volume, an elastic IP and an instance to another project of
/// another VDC: usage moves from the old project and its VDCs to the new ones, at once; the
/// new project's limits hold; what is still tied to its project is refused; a member may not.
#[tokio::test]
async fn transfers_move_the_resource_and_its_quota() {
    let ts = TestServer::start_with(tcg_guests).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    tiny_guest_setup(&admin).await;
    let _: Value = post(
        &admin,
        "/v1/external-networks",
        json!({"name": "internet", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1",
            "pool_start": "203.0.113.10", "pool_end": "203.0.113.12"}),
    )
    .await;
    let used = |view: &Value, level: usize, r: &str| line(view, level, r)["used"].as_i64().unwrap();
    let quota = |project: String| {
        let admin = &admin;
        async move {
            admin
                .get::<Value>(&format!("/v1/projects/{project}/quota"), &[])
                .await
                .unwrap()
        }
    };

    let vol = post(
        &admin,
        "/v1/volumes",
        json!({"project_id": a.project, "name": "data", "size_gib": 2}),
    )
    .await;
    let vol = id(&vol[0]);
    wait("the volume", 30, || async {
        let v: Value = admin.get(&format!("/v1/volumes/{vol}"), &[]).await.unwrap();
        (v["status"] == "available").then_some(())
    })
    .await;
    let eip = post(&admin, "/v1/elastic-ips", json!({"project_id": a.project})).await;
    let vm = post(
        &admin,
        "/v1/instances",
        json!({"project_id": a.project, "name": "vm", "flavor": "tiny.1c256m", "image": "tiny"}),
    )
    .await;
    let vm = id(&vm[0]);
    wait("the instance", 120, || async {
        let v: Value = admin
            .get(&format!("/v1/instances/{vm}"), &[])
            .await
            .unwrap();
        (v["status"] == "running").then_some(())
    })
    .await;

    // A member of both projects uses resources but does not administer projects.
    let (mid, member) = user_with_role(
        &ts,
        &sec,
        "member1",
        Some(&a.child),
        Some(("member", "vdc", &a.top)),
    )
    .await;
    let _: Value = sec
        .post(
            "/v1/grants",
            &json!({"user_id": mid, "role": "member", "scope_type": "vdc", "scope_id": b.top}),
        )
        .await
        .unwrap();
    let (st, msg) = fails(
        member
            .post(
                "/v1/transfers",
                &json!({"resource_id": vol, "project_id": b.project}),
            )
            .await,
    )
    .await;
    assert_eq!(st, 403, "{msg}");

    let before_a = quota(a.project.clone()).await;
    let t: Value = post(
        &admin,
        "/v1/transfers",
        json!({"resource_id": vol, "project_id": b.project}),
    )
    .await;
    assert_eq!(t["type"], "volume");
    assert_eq!(t["from_project_id"], a.project);
    let v: Value = admin.get(&format!("/v1/volumes/{vol}"), &[]).await.unwrap();
    assert_eq!(v["project_id"], b.project);
    assert_eq!(v["vdc_id"], b.child);
    let qa = quota(a.project.clone()).await;
    let qb = quota(b.project.clone()).await;
    assert_eq!(
        used(&qa, 0, "storage_gib"),
        used(&before_a, 0, "storage_gib") - 2
    );
    assert_eq!(used(&qa, 0, "volumes"), 0);
    assert_eq!(used(&qb, 0, "storage_gib"), 2);
    // Every VDC above moved too: A's top VDC gave it back, B's took it.
    assert_eq!(
        used(&qa, 2, "storage_gib"),
        used(&before_a, 2, "storage_gib") - 2
    );
    assert_eq!(used(&qb, 2, "storage_gib"), 2);

    // The address, then the instance (no NICs, no volumes).
    let t: Value = post(
        &admin,
        "/v1/transfers",
        json!({"resource_id": id(&eip), "project_id": b.project}),
    )
    .await;
    assert_eq!(t["type"], "elastic_ip");
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", b.project),
            &json!({"limits": {"instances": 0}}),
        )
        .await
        .unwrap();
    let (st, msg) = fails(
        admin
            .post(
                "/v1/transfers",
                &json!({"resource_id": vm, "project_id": b.project}),
            )
            .await,
    )
    .await;
    assert_eq!(st, 409, "the new project's limits hold: {msg}");
    let i: Value = admin
        .get(&format!("/v1/instances/{vm}"), &[])
        .await
        .unwrap();
    assert_eq!(i["project_id"], a.project, "nothing moved");
    assert_eq!(used(&quota(a.project.clone()).await, 0, "instances"), 1);
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", b.project),
            &json!({"limits": {"instances": 5}}),
        )
        .await
        .unwrap();
    let t: Value = post(
        &admin,
        "/v1/transfers",
        json!({"resource_id": vm, "project_id": b.project}),
    )
    .await;
    assert_eq!(t["type"], "instance");
    let qb = quota(b.project.clone()).await;
    assert_eq!((used(&qb, 0, "instances"), used(&qb, 0, "vcpus")), (1, 1));
    assert_eq!(used(&quota(a.project.clone()).await, 0, "vcpus"), 0);

    // Tied to its project: an attached volume stays.
    let v2 = post(
        &admin,
        "/v1/volumes",
        json!({"project_id": b.project, "name": "v2", "size_gib": 1}),
    )
    .await;
    let v2 = id(&v2[0]);
    wait("the second volume", 30, || async {
        let v: Value = admin.get(&format!("/v1/volumes/{v2}"), &[]).await.unwrap();
        (v["status"] == "available").then_some(())
    })
    .await;
    let _: Value = post(
        &admin,
        &format!("/v1/volumes/{v2}/attach"),
        json!({"instance_id": vm}),
    )
    .await;
    let (st, msg) = fails(
        admin
            .post(
                "/v1/transfers",
                &json!({"resource_id": v2, "project_id": a.project}),
            )
            .await,
    )
    .await;
    assert_eq!(st, 409, "{msg}");
    for (body, want) in [
        (
            json!({"resource_id": vol, "project_id": b.project}),
            "project_id: is the resource's project already",
        ),
        (
            json!({"resource_id": vol, "project_id": uuid::Uuid::new_v4()}),
            "project_id: no project",
        ),
    ] {
        let (st, msg) = fails(admin.post("/v1/transfers", &body).await).await;
        assert_eq!(st, 400, "{msg}");
        assert!(msg.contains(want), "{msg}");
    }
    let (st, _) = fails(
        admin
            .post(
                "/v1/transfers",
                &json!({"resource_id": uuid::Uuid::new_v4(), "project_id": a.project}),
            )
            .await,
    )
    .await;
    assert_eq!(st, 404);
    ts.stop().await;
}
