//! The recycle bin: with a retention set, deleted instances and volumes disappear from the
//! API but keep their data and quota; they can be restored (an instance powered off) or
//! purged at once, and are purged by themselves when their time is up. Other departments
//! see nothing of another's bin.

mod common;

use common::*;
use serde_json::{json, Value};
use stratus_client::Client;

async fn bin(c: &Client, project: &str) -> Vec<Value> {
    c.get("/v1/recycle-bin", &[("project_id", project.to_string())])
        .await
        .unwrap()
}

async fn instances_used(c: &Client, project: &str) -> (i64, i64) {
    (
        quota_used(c, project, "instances").await,
        quota_used(c, project, "volumes").await,
    )
}

async fn settle(c: &Client, path: &str, status: &str) -> Value {
    wait(&format!("{path} to be {status}"), 120, || async {
        let v: Value = c.get(path, &[]).await.unwrap();
        (v["status"] == status && v["task"].is_null()).then_some(v)
    })
    .await
}

async fn missing(c: &Client, path: &str) -> bool {
    match c.get::<Value>(path, &[]).await {
        Ok(_) => false,
        Err(e) => status::<Value>(Err(e)) == 404,
    }
}

#[tokio::test]
async fn deleted_instances_and_volumes_wait_in_the_bin_to_be_restored_or_purged() {
    let ts = TestServer::start_with(|c| {
        tcg_guests(c);
        c.recycle_bin.retention_secs = 3600;
    })
    .await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    tiny_guest_setup(&admin).await;
    let (_, dept) = user_with_role(
        &ts,
        &sec,
        "dept",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, other) = user_with_role(
        &ts,
        &sec,
        "other",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    let vm = post(
        &dept,
        "/v1/instances",
        json!({"project_id": a.project, "name": "web", "flavor": "tiny.1c256m", "image": "tiny"}),
    )
    .await;
    let vm = id(&vm[0]);
    let vm_path = format!("/v1/instances/{vm}");
    settle(&dept, &vm_path, "running").await;
    let vol = post(
        &dept,
        "/v1/volumes",
        json!({"project_id": a.project, "name": "data", "size_gib": 1}),
    )
    .await;
    let vol = id(&vol[0]);
    let vol_path = format!("/v1/volumes/{vol}");
    settle(&dept, &vol_path, "available").await;
    assert_eq!(instances_used(&admin, &a.project).await, (1, 1));

    // Deleted: gone from views and lists, kept in the bin with its quota.
    dept.delete(&vm_path).await.unwrap();
    dept.delete(&vol_path).await.unwrap();
    assert!(missing(&dept, &vm_path).await);
    assert!(missing(&dept, &vol_path).await);
    let listed = list_all(
        &dept,
        "/v1/instances",
        vec![("project_id", a.project.clone())],
    )
    .await;
    assert!(listed.is_empty(), "{listed:?}");
    let kept = bin(&dept, &a.project).await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(
        (&kept[0]["type"], &kept[0]["name"]),
        (&json!("instance"), &json!("web"))
    );
    assert_eq!(kept[0]["deleted_by"], "dept");
    let deleted =
        chrono::DateTime::parse_from_rfc3339(kept[0]["deleted_at"].as_str().unwrap()).unwrap();
    let purge =
        chrono::DateTime::parse_from_rfc3339(kept[0]["purge_at"].as_str().unwrap()).unwrap();
    assert_eq!((purge - deleted).num_seconds(), 3600);
    assert_eq!(
        instances_used(&admin, &a.project).await,
        (1, 1),
        "quota still held"
    );

    // Another department sees none of it and cannot restore it.
    assert!(bin(&other, &a.project).await.is_empty());
    let (st, _) = fails(
        other
            .post(&format!("/v1/recycle-bin/{vm}/restore"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, 404);

    // Restored: the instance is back, powered off (it was stopped when it went in).
    let r: Value = dept
        .post(&format!("/v1/recycle-bin/{vm}/restore"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r["id"], vm);
    let back = settle(&dept, &vm_path, "stopped").await;
    assert_eq!(back["name"], "web");
    let _: Value = dept
        .post(&format!("{vm_path}/actions"), &json!({"action": "start"}))
        .await
        .unwrap();
    settle(&dept, &vm_path, "running").await;

    // Purged: the volume goes for real, and its quota with it.
    let (st, _) = fails(
        dept.delete_json::<Value>(&format!("/v1/recycle-bin/{}", uuid::Uuid::new_v4()))
            .await,
    )
    .await;
    assert_eq!(st, 404);
    dept.delete(&format!("/v1/recycle-bin/{vol}"))
        .await
        .unwrap();
    wait("the purged volume's quota", 60, || async {
        (instances_used(&admin, &a.project).await == (1, 0)).then_some(())
    })
    .await;
    assert!(bin(&dept, &a.project).await.is_empty());
    let (st, _) = fails(
        dept.post(&format!("/v1/recycle-bin/{vol}/restore"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, 404, "nothing left to restore");
    ts.stop().await;
}

#[tokio::test]
async fn the_bin_purges_what_outstays_its_retention() {
    let ts = TestServer::start_with(|c| {
        tcg_guests(c);
        c.recycle_bin.retention_secs = 2;
        c.recycle_bin.purge_check_secs = 1;
    })
    .await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    tiny_guest_setup(&admin).await;
    let vol = post(
        &admin,
        "/v1/volumes",
        json!({"project_id": a.project, "name": "scratch", "size_gib": 1}),
    )
    .await;
    let vol = id(&vol[0]);
    settle(&admin, &format!("/v1/volumes/{vol}"), "available").await;
    admin.delete(&format!("/v1/volumes/{vol}")).await.unwrap();
    assert_eq!(bin(&admin, &a.project).await.len(), 1);
    wait("the purge", 60, || async {
        (bin(&admin, &a.project).await.is_empty()
            && instances_used(&admin, &a.project).await == (0, 0))
            .then_some(())
    })
    .await;
    // The purge is in the audit log, done by the platform.
    let auditor = ts.auditor().await;
    let events: Value = auditor
        .get("/v1/audit-events", &[("operation", "recycle_purge".into())])
        .await
        .unwrap();
    let e = &events["items"][0];
    assert_eq!(e["object_id"], vol);
    assert_eq!(e["user_name"], "recycle-bin");
    assert_eq!(e["result"], "success");
    ts.stop().await;
}
