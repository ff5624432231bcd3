//! Monitoring through the API: guest metrics reported by agents land in the time-series
//! store, are queried in PromQL, survive a restart, and are scoped to the caller's
//! projects; bad queries say why.

mod common;

use common::*;
use serde_json::{json, Value};
use stratus_client::Client;

async fn query(c: &Client, q: &str) -> Value {
    c.get("/v1/metrics/query", &[("query", q.to_string())])
        .await
        .unwrap()
}

#[tokio::test]
async fn guest_metrics_are_queried_in_promql_and_scoped_to_the_tenant() {
    let mut ts = TestServer::start_with(|c| c.compute.report_interval_secs = 1).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let _hosts = simulated_hosts(&ts, &admin, 1).await;
    let img = raw_image(&admin, None).await;
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "mon-a",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, outsider) = user_with_role(
        &ts,
        &sec,
        "mon-b",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    let vm = id(&post(
        &member,
        "/v1/instances",
        json!({"project_id": a.project, "name": "vm", "flavor": "basic.2c4g", "image": id(&img)}),
    )
    .await[0]);
    // The simulated agent reports the guest's memory (4 GiB) every second.
    let q = format!("stratus_instance_memory_bytes{{instance_id=\"{vm}\"}}");
    let got = wait("a memory sample", 60, || async {
        let v = query(&member, &q).await;
        (v["result"].as_array().is_some_and(|r| !r.is_empty())).then_some(v)
    })
    .await;
    assert_eq!(got["resultType"], "vector");
    let s = &got["result"][0];
    assert_eq!(s["value"][1], (4u64 << 30).to_string(), "{got}");
    assert_eq!(s["metric"]["project_id"], a.project.as_str());
    assert_eq!(s["metric"]["__name__"], "stratus_instance_memory_bytes");
    // Aggregation and arithmetic: GiB per project.
    let v = query(
        &member,
        "sum by (project_id) (stratus_instance_memory_bytes) / 1024 / 1024 / 1024",
    )
    .await;
    assert_eq!(v["result"][0]["value"][1], "4", "{v}");
    // Another department asking for the same series gets nothing; the platform sees it.
    let v = query(&outsider, &q).await;
    assert_eq!(v["result"], json!([]), "{v}");
    let v = query(&outsider, "count(stratus_instance_memory_bytes)").await;
    assert_eq!(v["result"], json!([]), "{v}");
    let v = query(&admin, &q).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 1);

    // A range over the last minute, then the same after a restart: nothing lost.
    let range = |c: Client, q: String| async move {
        let v: Value = c
            .get(
                "/v1/metrics/query_range",
                &[
                    ("query", q),
                    ("start", (chrono::Utc::now().timestamp() - 60).to_string()),
                    ("step", "1s".into()),
                ],
            )
            .await
            .unwrap();
        v
    };
    // A few reports in, the minute holds several one-second steps.
    let before = wait("three steps of samples", 60, || async {
        let v = range(admin.clone(), q.clone()).await;
        (v["result"][0]["values"].as_array().map_or(0, |a| a.len()) >= 3).then_some(v)
    })
    .await;
    assert_eq!(before["resultType"], "matrix");
    let first = before["result"][0]["values"][0][0]
        .as_f64()
        .unwrap_or_else(|| panic!("{before}"));
    ts.restart().await;
    let admin = ts.admin().await;
    let after = range(admin.clone(), q.clone()).await;
    let first_after = after["result"][0]["values"][0][0].as_f64().unwrap();
    assert!(
        first_after <= first + 1.0,
        "samples from before the restart are still there: {first} vs {first_after}"
    );

    // Bad queries: 400 with the reason.
    for (q, want) in [
        ("rate(stratus_instance_cpu_seconds_total)", "query:"),
        ("histogram_quantile(0.9, x)", "not supported"),
        ("sum(", "query:"),
    ] {
        let (code, msg) = fails(
            admin
                .get("/v1/metrics/query", &[("query", q.to_string())])
                .await,
        )
        .await;
        assert_eq!(code, 400, "{q}");
        assert!(msg.contains(want), "{q}: {msg}");
    }
    for (k, v, want) in [
        ("step", "0", "step:"),
        ("step", "fast", "step:"),
        ("start", "yesterday", "start:"),
    ] {
        let (code, msg) = fails(
            admin
                .get(
                    "/v1/metrics/query_range",
                    &[("query", "up".to_string()), (k, v.to_string())],
                )
                .await,
        )
        .await;
        assert_eq!(code, 400, "{k}={v}");
        assert!(msg.contains(want), "{k}={v}: {msg}");
    }
}

/// `/metrics` (request counters and latency, the store's own gauges) passes
/// `promtool check metrics`, and the control plane's counters land in the store too.
#[tokio::test]
async fn the_metrics_endpoint_passes_promtool_and_feeds_the_store() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let _: Value = admin.get("/v1/flavors", &[]).await.unwrap();
    let text = reqwest::get(format!("{}/metrics", ts.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("stratus_tsdb_series"), "{text}");
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-deps --tests installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every 15 s the control plane records its own counters.
    wait("the control plane's own series", 40, || async {
        let v = query(
            &admin,
            "sum(stratus_http_requests_total{operation=\"flavor_list\"})",
        )
        .await;
        (v["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            >= Some(1.0))
        .then_some(())
    })
    .await;
}

/// A program pushes business metrics for its project; its department queries them, no
/// other department sees or writes them, and bad pushes say which sample and why.
#[tokio::test]
async fn custom_metrics_are_pushed_for_a_project_and_scoped_to_it() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "push-a",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, viewer) = user_with_role(
        &ts,
        &sec,
        "push-v",
        Some(&a.child),
        Some(("viewer", "project", &a.project)),
    )
    .await;
    let (_, outsider) = user_with_role(
        &ts,
        &sec,
        "push-b",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    let body = json!({"project_id": a.project, "samples": [
        {"name": "orders_total", "labels": {"shop": "gz"}, "value": 42},
        {"name": "orders_total", "labels": {"shop": "sz"}, "value": 8}]});
    let r = post(&member, "/v1/metrics/push", body.clone()).await;
    assert_eq!(r["samples"], 2, "{r}");
    assert_eq!(r["new_series"], 2);
    let v = query(&member, "sum(orders_total)").await;
    assert_eq!(v["result"][0]["value"][1], "50", "{v}");
    let v = query(&member, "orders_total{shop=\"gz\"}").await;
    assert_eq!(v["result"][0]["metric"]["project_id"], a.project.as_str());
    // Viewers read but may not push; another department neither sees nor pushes.
    assert_eq!(
        query(&viewer, "sum(orders_total)").await["result"][0]["value"][1],
        "50"
    );
    let (code, _) = fails(viewer.post("/v1/metrics/push", &body).await).await;
    assert_eq!(code, 403);
    let (code, _) = fails(outsider.post("/v1/metrics/push", &body).await).await;
    assert_eq!(code, 404);
    assert_eq!(query(&outsider, "orders_total").await["result"], json!([]));
    let now = chrono::Utc::now().timestamp_millis();
    for (sample, want) in [
        (
            json!({"name": "stratus_fake", "value": 1}),
            "samples[0].name: stratus_ names",
        ),
        (
            json!({"name": "9bad", "value": 1}),
            "samples[0].name: must match",
        ),
        (
            json!({"name": "x", "labels": {"project_id": "p"}, "value": 1}),
            "samples[0].labels: project_id is set by the platform",
        ),
        (
            json!({"name": "x", "labels": {"a-b": "1"}, "value": 1}),
            "samples[0].labels:",
        ),
        (
            json!({"name": "x", "value": 1, "timestamp_ms": now - 86_400_000}),
            "samples[0].timestamp_ms",
        ),
    ] {
        let (code, msg) = fails(
            member
                .post(
                    "/v1/metrics/push",
                    &json!({"project_id": a.project, "samples": [sample]}),
                )
                .await,
        )
        .await;
        assert_eq!(code, 400, "{msg}");
        assert!(msg.contains(want), "{want}: {msg}");
    }
    let (code, msg) = fails(
        member
            .post(
                "/v1/metrics/push",
                &json!({"project_id": a.project, "samples": []}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 400);
    assert!(msg.contains("samples:"), "{msg}");
}
