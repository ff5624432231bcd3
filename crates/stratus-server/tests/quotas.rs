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
