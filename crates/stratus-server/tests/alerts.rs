//! Alerting through the API: rules over pushed and guest metrics fire after their `for`,
//! tell a webhook (retrying a failing one) and resolve; repeated firings converge into one
//! alert; channels are rate-limited; maintenance windows silence; a host going down raises
//! its own alert and inhibits those of its guests; an alert becomes a ticket worked to
//! closure; tenants see only their own alerts and tickets; acknowledgements and tickets
//! survive a restart; bad rules are refused with the reason.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};
use stratus_client::Client;

/// A webhook receiver: keeps every JSON body; answers 500 to the first `fail_first`.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(Mutex::new(0usize));
        let (g, c) = (got.clone(), calls.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let (g, c) = (g.clone(), c.clone());
                async move {
                    let n = {
                        let mut c = c.lock().unwrap();
                        *c += 1;
                        *c
                    };
                    if n <= fail_first {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    g.lock().unwrap().push(v);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Receiver { url, got }
    }

    fn events(&self) -> Vec<(String, String)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["event"].as_str().unwrap_or_default().to_string(),
                    v["alert"]["name"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    async fn wait_for(&self, event: &str, name: &str) -> Value {
        wait(&format!("a {event} notice of {name}"), 60, || async {
            self.got
                .lock()
                .unwrap()
                .iter()
                .find(|v| v["event"] == event && v["alert"]["name"] == name)
                .cloned()
        })
        .await
    }
}

async fn push(c: &Client, project: &str, name: &str, value: f64) {
    post(
        c,
        "/v1/metrics/push",
        json!({"project_id": project, "samples": [
            {"name": name, "labels": {"service": "orders"}, "value": value}]}),
    )
    .await;
}

async fn alerts(c: &Client, q: &[(&str, &str)]) -> Vec<Value> {
    let q: Vec<(&str, String)> = q.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let page: Value = c.get("/v1/alerts", &q).await.unwrap();
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn channel(admin: &Client, url: &str, vdc: Option<&str>, max_per_hour: i64) -> String {
    id(&post(
        admin,
        "/v1/notify-channels",
        json!({"name": "ops", "kind": "webhook", "target": url, "vdc_id": vdc,
            "max_per_hour": max_per_hour}),
    )
    .await)
}

#[tokio::test]
async fn a_rule_fires_tells_a_webhook_resolves_and_is_scoped_to_its_tenant() {
    let mut ts = TestServer::start_with(|c| c.monitoring.rule_interval_secs = 1).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "alert-a",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, outsider) = user_with_role(
        &ts,
        &sec,
        "alert-b",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    // The platform's channel fails twice before it takes a notice (retried after 2, 4 s);
    // department B's channel must hear nothing of department A.
    let ops = Receiver::start(2).await;
    let ops_id = channel(&admin, &ops.url, None, 60).await;
    let theirs = Receiver::start(0).await;
    channel(&admin, &theirs.url, Some(&b.child), 60).await;

    // Bad rules say why, and make nothing.
    push(&member, &a.project, "queue_depth", 100.0).await;
    for (body, status, needle) in [
        (
            json!({"name": "x", "expr": "nosuch_metric > 1", "severity": "major", "project_id": a.project}),
            400,
            "unknown metric nosuch_metric",
        ),
        (
            json!({"name": "x", "expr": "queue_depth >", "severity": "major", "project_id": a.project}),
            400,
            "expr",
        ),
        (
            json!({"name": "x", "expr": "queue_depth > 1", "for": "5 minutes", "severity": "major", "project_id": a.project}),
            400,
            "for",
        ),
        (
            json!({"name": "x", "expr": "queue_depth > 1", "severity": "urgent", "project_id": a.project}),
            400,
            "severity",
        ),
        // Platform rules are the operators'.
        (
            json!({"name": "x", "expr": "queue_depth > 1", "severity": "major"}),
            403,
            "alert.write",
        ),
        (
            json!({"name": "x", "expr": "queue_depth > 1", "severity": "major", "project_id": b.project}),
            404,
            "project",
        ),
    ] {
        let (code, msg) = fails(member.post::<Value>("/v1/alert-rules", &body).await).await;
        assert_eq!(code, status, "{body}: {msg}");
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let rules: Vec<Value> = member.get("/v1/alert-rules", &[]).await.unwrap();
    assert!(rules.is_empty(), "{rules:?}");

    let rule = post(
        &member,
        "/v1/alert-rules",
        json!({"name": "QueueBacklog", "expr": "queue_depth > 50", "for": "2s",
            "severity": "major", "project_id": a.project,
            "summary": "{{ $labels.service }} backlog {{ $value }}"}),
    )
    .await;
    assert_eq!(rule["for_secs"], 2);
    let fired = ops.wait_for("firing", "QueueBacklog").await;
    let alert = &fired["alert"];
    assert_eq!(alert["severity"], "major");
    assert_eq!(alert["labels"]["service"], "orders");
    assert_eq!(alert["project_id"], a.project.as_str());
    assert_eq!(alert["summary"], "orders backlog 100.0000");
    let alert_id = id(alert);
    // The first two attempts failed and were retried.
    let sent: Vec<Value> = admin
        .get(&format!("/v1/alerts/{alert_id}/notifications"), &[])
        .await
        .unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["status"], "sent");
    assert_eq!(sent[0]["attempts"], 3);
    assert_eq!(sent[0]["channel_id"], ops_id.as_str());

    // The member sees it; department B does not, by id or in its list.
    let mine = alerts(&member, &[("state", "firing")]).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(
        status(
            outsider
                .get::<Value>(&format!("/v1/alerts/{alert_id}"), &[])
                .await
        ),
        404
    );
    assert!(alerts(&outsider, &[]).await.is_empty());
    let groups: Vec<Value> = member
        .get("/v1/alert-groups", &[("by", "severity".to_string())])
        .await
        .unwrap();
    assert_eq!(
        groups,
        vec![json!({"key": "major", "firing": 1, "unacknowledged": 1})]
    );
    assert_eq!(
        status(
            outsider
                .post::<Value>(&format!("/v1/alerts/{alert_id}/ack"), &json!({}))
                .await
        ),
        404
    );

    // Acknowledged, then the backlog clears: resolved and told.
    let acked = post(
        &member,
        &format!("/v1/alerts/{alert_id}/ack"),
        json!({"comment": "looking"}),
    )
    .await;
    assert_eq!(acked["acknowledged_by"], "alert-a");

    // The alert becomes a ticket, worked by the platform's operator to closure.
    let ticket = post(
        &member,
        &format!("/v1/alerts/{alert_id}/ticket"),
        json!({"description": "orders are piling up"}),
    )
    .await;
    let tid = id(&ticket);
    assert_eq!(ticket["state"], "open");
    assert_eq!(ticket["priority"], "major");
    assert_eq!(ticket["title"], "[QueueBacklog] orders backlog 100.0000");
    assert_eq!(ticket["project_id"], a.project.as_str());
    let (code, msg) = fails(
        member
            .post::<Value>(&format!("/v1/alerts/{alert_id}/ticket"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(code, 409, "{msg}");
    assert_eq!(
        status(
            outsider
                .get::<Value>(&format!("/v1/tickets/{tid}"), &[])
                .await
        ),
        404
    );
    let move_to = |state: &'static str, comment: &'static str| {
        let (admin, tid) = (&admin, &tid);
        async move {
            admin
                .post::<Value>(
                    &format!("/v1/tickets/{tid}/transition"),
                    &json!({"state": state, "comment": comment}),
                )
                .await
        }
    };
    let claimed = move_to("claimed", "").await.unwrap();
    assert_eq!(claimed["assignee"], "admin");
    move_to("in_progress", "scaling the consumers")
        .await
        .unwrap();
    let (code, msg) = fails(move_to("closed", "").await).await;
    assert_eq!(code, 409, "{msg}");
    assert!(msg.contains("in_progress cannot become closed"), "{msg}");
    move_to("resolved", "consumers doubled").await.unwrap();
    post(
        &member,
        &format!("/v1/tickets/{tid}/comments"),
        json!({"body": "confirmed, thanks"}),
    )
    .await;
    let closed = move_to("closed", "").await.unwrap();
    assert_eq!(closed["state"], "closed");
    let history: Vec<(String, String)> = closed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().into(),
                e["body"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("state", "open"),
        ("state", "claimed"),
        ("assignee", "admin"),
        ("state", "in_progress"),
        ("comment", "scaling the consumers"),
        ("state", "resolved"),
        ("comment", "consumers doubled"),
        ("comment", "confirmed, thanks"),
        ("state", "closed"),
    ]
    .iter()
    .map(|(k, b)| (k.to_string(), b.to_string()))
    .collect();
    assert_eq!(history, want);
    let linked: Value = member
        .get(&format!("/v1/alerts/{alert_id}"), &[])
        .await
        .unwrap();
    assert_eq!(linked["ticket_id"], tid.as_str());
    push(&member, &a.project, "queue_depth", 3.0).await;
    ops.wait_for("resolved", "QueueBacklog").await;
    let done: Value = member
        .get(&format!("/v1/alerts/{alert_id}"), &[])
        .await
        .unwrap();
    assert_eq!(done["state"], "resolved");
    assert!(theirs.events().is_empty(), "{:?}", theirs.events());

    // A restart keeps the alert, its acknowledgement and its history.
    ts.restart().await;
    let member = ts.login("alert-a", USER_PW).await;
    let after: Value = member
        .get(&format!("/v1/alerts/{alert_id}"), &[])
        .await
        .unwrap();
    assert_eq!(after["state"], "resolved");
    assert_eq!(after["acknowledged_by"], "alert-a");
    assert_eq!(after["ack_comment"], "looking");
    let t: Value = member
        .get(&format!("/v1/tickets/{tid}"), &[])
        .await
        .unwrap();
    assert_eq!(t["state"], "closed");
    assert_eq!(t["events"].as_array().map(Vec::len), Some(9));
    ts.stop().await;
}

#[tokio::test]
async fn repeated_firings_converge_channels_are_rate_limited_and_silences_hold() {
    let ts = TestServer::start_with(|c| c.monitoring.rule_interval_secs = 1).await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let ops = Receiver::start(0).await;
    let ops_id = channel(&admin, &ops.url, None, 3).await;
    let firing = json!({"name": "DiskErrors", "source": "zabbix", "severity": "critical",
        "labels": {"device": "sda"}, "project_id": a.project});
    let mut last = Value::Null;
    for _ in 0..100 {
        last = post(&admin, "/v1/alerts", firing.clone()).await;
    }
    assert_eq!(last["count"], 100);
    let all = alerts(&admin, &[("source", "zabbix")]).await;
    assert_eq!(all.len(), 1, "one grouped alert");
    ops.wait_for("firing", "DiskErrors").await;
    let sent: Vec<Value> = admin
        .get(&format!("/v1/alerts/{}/notifications", id(&last)), &[])
        .await
        .unwrap();
    assert_eq!(sent.len(), 1, "one notice for 100 firings: {sent:?}");

    // Flapping: each cycle is a firing and a resolution, but the channel takes 3 an hour.
    let mut resolved = firing.clone();
    resolved["state"] = json!("resolved");
    post(&admin, "/v1/alerts", resolved.clone()).await;
    for _ in 0..5 {
        post(&admin, "/v1/alerts", firing.clone()).await;
        post(&admin, "/v1/alerts", resolved.clone()).await;
    }
    let deliveries = wait("every notice settled", 60, || async {
        let d: Vec<Value> = admin
            .get(&format!("/v1/notify-channels/{ops_id}/deliveries"), &[])
            .await
            .unwrap();
        (d.len() == 12 && d.iter().all(|n| n["status"] != "pending")).then_some(d)
    })
    .await;
    let count = |s: &str| deliveries.iter().filter(|n| n["status"] == s).count();
    assert_eq!(count("sent"), 3, "{deliveries:?}");
    assert_eq!(count("rate_limited"), 9, "{deliveries:?}");
    assert_eq!(ops.events().len(), 3);

    // A maintenance window: the alert is kept but told to no one.
    let quiet = Receiver::start(0).await;
    channel(&admin, &quiet.url, None, 60).await;
    post(
        &admin,
        "/v1/silences",
        json!({"matchers": {"alertname": "FanFailure"}, "ends_at": tomorrow(),
            "comment": "replacing fans"}),
    )
    .await;
    let fan = post(
        &admin,
        "/v1/alerts",
        json!({"name": "FanFailure", "source": "ipmi", "severity": "major"}),
    )
    .await;
    assert!(
        fan["suppressed"]
            .as_str()
            .is_some_and(|s| s.starts_with("silenced: replacing fans")),
        "{fan}"
    );
    post(
        &admin,
        "/v1/alerts",
        json!({"name": "PsuFailure", "source": "ipmi", "severity": "major"}),
    )
    .await;
    quiet.wait_for("firing", "PsuFailure").await;
    assert!(
        !quiet.events().iter().any(|(_, n)| n == "FanFailure"),
        "{:?}",
        quiet.events()
    );
    // Bad posts and silences say why.
    for (path, body, needle) in [
        (
            "/v1/alerts",
            json!({"name": "x", "source": "rule", "severity": "major"}),
            "source",
        ),
        (
            "/v1/alerts",
            json!({"name": "x", "source": "s", "severity": "major", "labels": {"project_id": "p"}}),
            "labels",
        ),
        (
            "/v1/silences",
            json!({"matchers": {}, "ends_at": tomorrow()}),
            "matchers",
        ),
        (
            "/v1/silences",
            json!({"matchers": {"a": "b"}, "ends_at": "2001-01-01T00:00:00Z"}),
            "ends_at",
        ),
        (
            "/v1/notify-channels",
            json!({"name": "x", "kind": "webhook", "target": "ftp://x"}),
            "target",
        ),
        (
            "/v1/notify-channels",
            json!({"name": "x", "kind": "command", "target": "/bin/true", "vdc_id": a.child}),
            "kind",
        ),
    ] {
        let (code, msg) = fails(admin.post::<Value>(path, &body).await).await;
        assert_eq!(code, 400, "{body}: {msg}");
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    ts.stop().await;
}

#[tokio::test]
async fn a_host_going_down_alerts_and_inhibits_its_guests_alerts_until_it_is_back() {
    let ts = TestServer::start_with(|c| {
        c.monitoring.rule_interval_secs = 1;
        c.compute.report_interval_secs = 1;
        c.compute.host_down_after_secs = 3;
    })
    .await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let ops = Receiver::start(0).await;
    channel(&admin, &ops.url, None, 60).await;
    let agent = simulated_hosts(&ts, &admin, 1).await;
    let img = raw_image(&admin, None).await;
    let vm = id(&post(
        &admin,
        "/v1/instances",
        json!({"project_id": a.project, "name": "vm", "flavor": "basic.2c4g", "image": id(&img)}),
    )
    .await[0]);
    let q = format!("stratus_instance_memory_bytes{{instance_id=\"{vm}\"}}");
    wait("the guest's memory series", 60, || async {
        let v: Value = admin
            .get("/v1/metrics/query", &[("query", q.clone())])
            .await
            .unwrap();
        v["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
            .then_some(())
    })
    .await;

    // The agent dies: the host-down alert fires and is told.
    agent.send(true).unwrap();
    let down = ops.wait_for("firing", "HostDown").await;
    assert_eq!(down["alert"]["severity"], "critical");
    assert_eq!(down["alert"]["source"], "builtin");
    let host_id = down["alert"]["host_id"].as_str().unwrap().to_string();
    // A rule on the guest (whose last samples are still within the lookback) fires, but
    // is inhibited: nobody is paged for the guests of a host that is down.
    post(
        &admin,
        "/v1/alert-rules",
        json!({"name": "GuestSeen", "expr": format!("stratus_instance_memory_bytes{{instance_id=\"{vm}\"}} > 0"),
            "severity": "minor"}),
    )
    .await;
    let inhibited = wait("the guest's alert", 60, || async {
        alerts(&admin, &[("state", "firing")])
            .await
            .into_iter()
            .find(|x| x["name"] == "GuestSeen")
    })
    .await;
    assert_eq!(inhibited["host_id"], host_id.as_str());
    assert!(
        inhibited["suppressed"]
            .as_str()
            .is_some_and(|s| s.starts_with("inhibited: host ")),
        "{inhibited}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !ops.events().iter().any(|(_, n)| n == "GuestSeen"),
        "{:?}",
        ops.events()
    );

    // The agent comes back: the host-down alert resolves, and the guest's alert, still
    // firing and no longer inhibited, is told now.
    let _agent = simulated_hosts(&ts, &admin, 1).await;
    ops.wait_for("resolved", "HostDown").await;
    ops.wait_for("firing", "GuestSeen").await;
    let guest: Value = admin
        .get(&format!("/v1/alerts/{}", id(&inhibited)), &[])
        .await
        .unwrap();
    assert_eq!(guest["suppressed"], Value::Null);
    ts.stop().await;
}

/// A day from now, RFC 3339 (the end of a window that is open now).
fn tomorrow() -> String {
    (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()
}
