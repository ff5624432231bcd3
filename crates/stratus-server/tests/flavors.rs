//! Flavors: the spec's reference flavors are built in; admins add custom ones, optionally
//! restricted to some VDCs.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn reference_flavors_are_built_in_and_cannot_be_deleted() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let flavors: Vec<Value> = admin.get("/v1/flavors", &[]).await.unwrap();
    let by_name = |n: &str| {
        flavors
            .iter()
            .find(|f| f["name"] == n)
            .unwrap_or_else(|| panic!("no {n}"))
            .clone()
    };
    for (name, vcpus, gib) in [
        ("basic.2c4g", 2, 4),
        ("basic.4c8g", 4, 8),
        ("general.8c16g", 8, 16),
        ("general.16c32g", 16, 32),
        ("memory.2c8g", 2, 8),
        ("memory.4c16g", 4, 16),
        ("memory.8c32g", 8, 32),
        ("memory.16c64g", 16, 64),
        ("compute.32c64g", 32, 64),
        ("compute.32c128g", 32, 128),
    ] {
        let f = by_name(name);
        assert_eq!(
            (
                f["vcpus"].as_i64(),
                f["memory_mib"].as_i64(),
                f["disk_gib"].as_i64()
            ),
            (Some(vcpus), Some(gib * 1024), Some(100)),
            "{f}"
        );
        assert_eq!(f["builtin"], true);
    }
    let e = admin
        .delete(&format!("/v1/flavors/{}", id(&by_name("basic.2c4g"))))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    ts.stop().await;
}

#[tokio::test]
async fn custom_flavors_validate_and_respect_vdc_restrictions() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    for (body, field) in [
        (
            json!({"name": "big", "vcpus": 256, "memory_mib": 1024, "disk_gib": 10}),
            "vcpus:",
        ),
        (
            json!({"name": "big", "vcpus": 2, "memory_mib": 10, "disk_gib": 10}),
            "memory_mib:",
        ),
        (
            json!({"name": "big", "vcpus": 2, "memory_mib": 1024, "disk_gib": 0}),
            "disk_gib:",
        ),
        (
            json!({"name": "", "vcpus": 2, "memory_mib": 1024, "disk_gib": 10}),
            "name:",
        ),
        (
            json!({"name": "x1", "vcpus": 2, "memory_mib": 1024, "disk_gib": 10, "vdc_ids": ["00000000-0000-0000-0000-000000000000"]}),
            "vdc_ids:",
        ),
    ] {
        let e = admin.post::<Value>("/v1/flavors", &body).await.unwrap_err();
        assert_eq!(e.status, 400, "{body}");
        assert!(e.message.starts_with(field), "{}", e.message);
    }
    let gpu: Value = admin
        .post("/v1/flavors", &json!({"name": "a-only.8c32g", "vcpus": 8, "memory_mib": 32768, "disk_gib": 200, "vdc_ids": [a.top]}))
        .await
        .unwrap();
    assert_eq!(gpu["vdc_ids"], json!([a.top]));
    assert_eq!(
        status(
            admin
                .post::<Value>(
                    "/v1/flavors",
                    &json!({"name": "a-only.8c32g", "vcpus": 1, "memory_mib": 64, "disk_gib": 1})
                )
                .await
        ),
        409
    );
    // A member deep inside A sees it; B's users do not (404 on direct access too).
    let (_, a_member) = user_with_role(
        &ts,
        &sec,
        "am",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, b_member) = user_with_role(
        &ts,
        &sec,
        "bm",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    let names = |v: Vec<Value>| {
        v.iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(names(a_member.get("/v1/flavors", &[]).await.unwrap())
        .contains(&"a-only.8c32g".to_string()));
    let b_names = names(b_member.get("/v1/flavors", &[]).await.unwrap());
    assert!(
        !b_names.contains(&"a-only.8c32g".to_string())
            && b_names.contains(&"basic.2c4g".to_string())
    );
    assert_eq!(
        status(
            b_member
                .get::<Value>(&format!("/v1/flavors/{}", id(&gpu)), &[])
                .await
        ),
        404
    );
    // Only the platform admin adds or removes flavors.
    assert_eq!(
        status(
            a_member
                .post::<Value>(
                    "/v1/flavors",
                    &json!({"name": "x2", "vcpus": 1, "memory_mib": 64, "disk_gib": 1})
                )
                .await
        ),
        403
    );
    assert_eq!(
        status(a_member.delete(&format!("/v1/flavors/{}", id(&gpu))).await),
        403
    );
    admin
        .delete(&format!("/v1/flavors/{}", id(&gpu)))
        .await
        .unwrap();
    assert_eq!(
        status(
            admin
                .get::<Value>(&format!("/v1/flavors/{}", id(&gpu)), &[])
                .await
        ),
        404
    );
    ts.stop().await;
}
