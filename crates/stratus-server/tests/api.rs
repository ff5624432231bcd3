//! API conventions: one error body naming the field, no 500s on bad input, size limits,
//! the committed OpenAPI document, health, metrics and rate limiting.

mod common;

use common::*;
use serde_json::{json, Value};

async fn raw(
    ts: &TestServer,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = reqwest::Client::new()
        .request(method, format!("{}{}", ts.url, path))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

async fn token(ts: &TestServer) -> String {
    let r: Value = ts
        .anon()
        .post(
            "/v1/auth/login",
            &json!({"name": "admin", "password": ADMIN_PW}),
        )
        .await
        .unwrap();
    r["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn bad_input_gets_a_4xx_naming_the_field_and_writes_nothing() {
    let ts = TestServer::start().await;
    let tok = token(&ts).await;
    let post = reqwest::Method::POST;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/v1/organizations", "{\"name\":".into(), 400, "body: malformed JSON"),
        ("/v1/organizations", "{\"name\":\"a\",\"extra\":1}".into(), 400, "extra: unknown field"),
        ("/v1/organizations", "{\"name\":5}".into(), 400, "name: invalid type"),
        ("/v1/organizations", "{}".into(), 400, "missing field `name`"),
        ("/v1/organizations", "{\"name\":\"\"}".into(), 400, "name: must not be empty"),
        ("/v1/organizations", "{\"name\":\"   \"}".into(), 400, "name: must not be empty"),
        ("/v1/organizations", format!("{{\"name\":\"{}\"}}", "长".repeat(65)), 400, "name: must be at most 64"),
        ("/v1/organizations", "{\"name\":\"a\\u0000b\"}".into(), 400, "name: must not contain control"),
        ("/v1/organizations", format!("{{\"name\":\"a\",\"description\":\"{}\"}}", "x".repeat(1025)), 400, "description: must be at most 1024"),
        ("/v1/vdcs", "{\"name\":\"x\",\"org_id\":\"not-a-uuid\"}".into(), 400, "org_id: UUID parsing failed"),
        ("/v1/vdcs", "{\"name\":\"x\"}".into(), 400, "parent_id: give parent_id"),
        ("/v1/users", "{\"name\":\"-bad\",\"password\":\"Abcdefgh12\"}".into(), 400, "name: must start with a letter"),
        ("/v1/users", "{\"name\":\"okname\",\"password\":\"Abcdefgh12\",\"email\":\"nope\"}".into(), 400, "email: must be an email"),
        ("/v1/grants", "{\"user_id\":\"00000000-0000-0000-0000-000000000000\",\"role\":\"god\",\"scope_type\":\"platform\"}".into(), 400, "role: must be one of"),
        ("/v1/grants", "{\"user_id\":\"00000000-0000-0000-0000-000000000000\",\"role\":\"viewer\",\"scope_type\":\"galaxy\"}".into(), 400, "scope_type: unknown variant"),
    ];
    for (path, body, want, msg) in cases {
        let (status, v, _) = raw(&ts, &tok, post.clone(), path, &body).await;
        assert_eq!(status, want, "{path} {body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_input", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(
            m.contains(msg),
            "{path} {body}: {m:?} should contain {msg:?}"
        );
        assert_eq!(v["error"]["request_id"].as_str().unwrap().len(), 32);
    }
    // Path ids, query values and sort keys.
    let (s, v, _) = raw(&ts, &tok, reqwest::Method::GET, "/v1/vdcs/123", "").await;
    assert_eq!(
        (s, v["error"]["message"].as_str().unwrap()),
        (400, "id: must be a UUID")
    );
    let (s, v, _) = raw(&ts, &tok, reqwest::Method::GET, "/v1/projects?limit=0", "").await;
    assert_eq!(
        (s, v["error"]["message"].as_str().unwrap()),
        (400, "limit: must be between 1 and 1000")
    );
    let (s, v, _) = raw(
        &ts,
        &tok,
        reqwest::Method::GET,
        "/v1/projects?limit=abc",
        "",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, v, _) = raw(
        &ts,
        &tok,
        reqwest::Method::GET,
        "/v1/projects?sort=password",
        "",
    )
    .await;
    assert!(s == 400 && v["error"]["message"].as_str().unwrap().starts_with("sort:"));
    let (s, v, _) = raw(
        &ts,
        &tok,
        reqwest::Method::GET,
        "/v1/projects?next=garbage",
        "",
    )
    .await;
    assert!(s == 400 && v["error"]["message"].as_str().unwrap().starts_with("next:"));
    // Too large a body: 413, whatever its content.
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(2 << 20));
    let (s, v, _) = raw(&ts, &tok, post.clone(), "/v1/organizations", &big).await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (413, "payload_too_large")
    );
    // Unknown paths and methods answer with the same body.
    let (s, v, _) = raw(&ts, &tok, reqwest::Method::GET, "/v1/nothing", "").await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (404, "not_found")
    );
    let (s, _, _) = raw(&ts, &tok, reqwest::Method::PUT, "/v1/organizations", "").await;
    assert_eq!(s, 405);
    // None of it wrote anything.
    let admin = ts.admin().await;
    let orgs: Value = admin.get("/v1/organizations", &[]).await.unwrap();
    assert_eq!(orgs["items"], json!([]));
    let users: Value = ts.secadmin().await.get("/v1/users", &[]).await.unwrap();
    assert_eq!(users["items"].as_array().unwrap().len(), 3);
    ts.stop().await;
}

#[tokio::test]
async fn duplicate_names_conflict_and_lists_page_sort_and_filter() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let t = tree(&admin, "org").await;
    let e = admin
        .post::<Value>("/v1/organizations", &json!({"name": "org"}))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert_eq!(
        status(
            admin
                .post::<Value>("/v1/projects", &json!({"vdc_id": t.child, "name": "proj"}))
                .await
        ),
        409
    );
    for i in 0..25 {
        let _: Value = admin
            .post(
                "/v1/projects",
                &json!({"vdc_id": t.top, "name": format!("p{i:02}")}),
            )
            .await
            .unwrap();
    }
    let q = vec![
        ("vdc_id", t.top.clone()),
        ("limit", "10".to_string()),
        ("sort", "-name".to_string()),
    ];
    let seen: Vec<String> = list_all(&admin, "/v1/projects", q)
        .await
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
    want.reverse();
    assert_eq!(
        seen, want,
        "three pages, descending by name, no duplicates or gaps"
    );
    let found: Value = admin
        .get("/v1/projects", &[("name", "p1".to_string())])
        .await
        .unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 10);
    // Renames keep what was not named, and respect uniqueness too.
    let p00 = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "p10")
        .unwrap()
        .clone();
    let pid = id(&p00);
    let _: Value = admin
        .patch(
            &format!("/v1/projects/{pid}"),
            &json!({"description": "门户"}),
        )
        .await
        .unwrap();
    let renamed: Value = admin
        .patch(&format!("/v1/projects/{pid}"), &json!({"name": "portal"}))
        .await
        .unwrap();
    assert_eq!(
        (renamed["name"].as_str(), renamed["description"].as_str()),
        (Some("portal"), Some("门户"))
    );
    let e = admin
        .patch::<Value>(&format!("/v1/projects/{pid}"), &json!({"name": "p11"}))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    let e = admin
        .patch::<Value>(&format!("/v1/vdcs/{}", t.child), &json!({"name": "top"}))
        .await;
    assert!(
        e.is_ok(),
        "a child may share its parent's name; only siblings must differ"
    );
    let literal: Value = admin
        .get("/v1/projects", &[("name", "%".to_string())])
        .await
        .unwrap();
    assert_eq!(
        literal["items"],
        json!([]),
        "wildcards in the filter are literal"
    );
    ts.stop().await;
}

#[tokio::test]
async fn openapi_document_matches_the_committed_file() {
    let generated = stratus_server::http::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/stratus.json");
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/stratus.json is stale: run `UPDATE_OPENAPI=1 cargo nextest run -p stratus-server openapi` and commit it"
    );
    let doc: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(
        doc["paths"]["/v1/projects"]["post"]["operationId"],
        "project_create"
    );
}

#[tokio::test]
async fn health_metrics_and_request_ids() {
    let ts = TestServer::start().await;
    let r = reqwest::get(format!("{}/healthz", ts.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-request-id").is_some());
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    let _ = ts
        .admin()
        .await
        .get::<Value>("/v1/organizations", &[])
        .await
        .unwrap();
    let m = reqwest::get(format!("{}/metrics", ts.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("stratus_http_requests_total{operation=\"org_list\",status=\"200\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("stratus_http_request_duration_seconds_count{operation=\"auth_login\"} 1"),
        "{m}"
    );
    let doc: Value = reqwest::get(format!("{}/openapi.json", ts.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["info"]["title"], "Stratus API");
    ts.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_per_account() {
    let ts = TestServer::start_with(|c| {
        c.rate_limit.requests_per_second = 1.0;
        c.rate_limit.burst = 5.0;
    })
    .await;
    let admin = ts.admin().await;
    let mut limited = None;
    for _ in 0..10 {
        if let Err(e) = admin.get::<Value>("/v1/organizations", &[]).await {
            limited = Some(e);
            break;
        }
    }
    let e = limited.expect("the 6th request within a second is limited");
    assert_eq!((e.status, e.code.as_str()), (429, "rate_limited"));
    let r = reqwest::Client::new()
        .get(format!("{}/v1/organizations", ts.url))
        .header(
            "authorization",
            match &admin.auth {
                stratus_client::Auth::Token(t) => format!("Bearer {t}"),
                _ => unreachable!(),
            },
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Another account is not affected.
    let _: Value = ts
        .auditor()
        .await
        .get("/v1/audit-events", &[])
        .await
        .unwrap();
    // The API call log names the operation, account, status and duration of each call.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(ts.dir.join("logs/api-calls.jsonl")).unwrap();
    let entries: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(entries
        .iter()
        .any(|e| e["operation"] == "org_list" && e["account"] == "admin" && e["status"] == 429));
    let login = entries
        .iter()
        .find(|e| e["operation"] == "auth_login")
        .unwrap();
    assert_eq!(
        login["request"]["password"], "***",
        "secrets are masked in the call log"
    );
    assert!(login["duration_ms"].as_f64().unwrap() > 0.0);
    ts.stop().await;
}
