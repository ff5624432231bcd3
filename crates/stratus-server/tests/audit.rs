//! The audit log records every mutating call — successful, failed and denied — and only the
//! auditor reads it.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn every_mutating_call_is_audited_with_who_what_where_and_result() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let aud = ts.auditor().await;
    let org: Value = admin
        .post("/v1/organizations", &json!({"name": "审计测试"}))
        .await
        .unwrap();
    let _ = admin
        .post::<Value>("/v1/organizations", &json!({"name": ""}))
        .await
        .unwrap_err();
    let _ = sec
        .post::<Value>("/v1/organizations", &json!({"name": "nope"}))
        .await
        .unwrap_err();
    let _ = ts
        .anon()
        .post::<Value>(
            "/v1/auth/login",
            &json!({"name": "admin", "password": "wrong"}),
        )
        .await
        .unwrap_err();
    let _ = ts
        .anon()
        .post::<Value>("/v1/organizations", &json!({"name": "anon"}))
        .await
        .unwrap_err();
    // Reads are not audited.
    let _: Value = admin.get("/v1/organizations", &[]).await.unwrap();

    let page: Value = aud
        .get("/v1/audit-events", &[("operation", "org_create".into())])
        .await
        .unwrap();
    let events = page["items"].as_array().unwrap();
    assert_eq!(events.len(), 4, "{page:#}");
    let ok = events.iter().find(|e| e["result"] == "success").unwrap();
    assert_eq!(ok["user_name"], "admin");
    assert_eq!(ok["object_id"], id(&org));
    assert_eq!(ok["object_type"], "organizations");
    assert_eq!(ok["status"], 201);
    assert_eq!(ok["source_ip"], "127.0.0.1");
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(ok["request_id"].as_str().unwrap().len(), 32);
    let invalid = events.iter().find(|e| e["status"] == 400).unwrap();
    assert_eq!(invalid["result"], "failure");
    assert!(invalid["message"].as_str().unwrap().starts_with("name:"));
    let denied: Vec<&Value> = events.iter().filter(|e| e["result"] == "denied").collect();
    assert_eq!(denied.len(), 2);
    assert!(denied
        .iter()
        .any(|e| e["user_name"] == "secadmin" && e["status"] == 403));
    assert!(denied
        .iter()
        .any(|e| e["user_name"] == "" && e["status"] == 401));
    // A failed login names the account tried.
    let logins: Value = aud
        .get(
            "/v1/audit-events",
            &[
                ("operation", "auth_login".into()),
                ("result", "denied".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(logins["items"][0]["user_name"], "admin");
    // Filters: by user, by time; paging with next.
    let by_sec: Value = aud
        .get("/v1/audit-events", &[("user", "secadmin".into())])
        .await
        .unwrap();
    assert!(by_sec["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["user_name"] == "secadmin"));
    let future: Value = aud
        .get(
            "/v1/audit-events",
            &[("since", "2999-01-01T00:00:00Z".into())],
        )
        .await
        .unwrap();
    assert_eq!(future["items"], json!([]));
    let p1: Value = aud
        .get("/v1/audit-events", &[("limit", "2".into())])
        .await
        .unwrap();
    let p2: Value = aud
        .get(
            "/v1/audit-events",
            &[
                ("limit", "2".into()),
                ("next", p1["next"].as_str().unwrap().into()),
            ],
        )
        .await
        .unwrap();
    assert!(p1["items"][1]["id"].as_i64() > p2["items"][0]["id"].as_i64());
    assert_eq!(
        status(
            aud.get::<Value>("/v1/audit-events", &[("result", "maybe".into())])
                .await
        ),
        400
    );
    // CSV export carries the same events.
    let raw = aud
        .send_raw(
            reqwest::Method::GET,
            "/v1/audit-events/export",
            &[("operation", "org_create".into())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(raw.status, 200);
    let csv = String::from_utf8(raw.body).unwrap();
    assert!(csv.starts_with("id,at,request_id,user_id,user_name"));
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.contains("审计测试") || csv.contains(&id(&org)));
    let raw = admin
        .send_raw(reqwest::Method::GET, "/v1/audit-events/export", &[], None)
        .await
        .unwrap();
    assert_eq!(raw.status, 403);
    ts.stop().await;
}
