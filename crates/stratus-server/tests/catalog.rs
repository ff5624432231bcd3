//! The service catalog, approval flows and orders through the API: a five-level flow with
//! ten approvers at a level down to a running guest, rejection, locked and approver-only
//! parameters, who may decide what, the approver's queue, a provisioning failure halfway
//! that undoes what it made, whitelists, and bad definitions.

mod common;

use common::*;
use serde_json::{json, Value};
use stratus_client::Client;

/// Wait for a request to leave approving/approved/provisioning.
async fn finished(c: &Client, id: &str) -> Value {
    wait(&format!("request {id} to finish"), 60, || async {
        let r: Value = c.get(&format!("/v1/requests/{id}"), &[]).await.unwrap();
        (!["approving", "approved", "provisioning"].contains(&r["status"].as_str().unwrap()))
            .then_some(r)
    })
    .await
}

async fn approve(c: &Client, id: &str) -> Value {
    post(c, &format!("/v1/requests/{id}/approve"), json!({})).await
}

fn queue_has(q: &[Value], id: &str) -> bool {
    q.iter().any(|r| r["id"] == id)
}

/// Users without roles, who approve as named seats.
async fn approvers(ts: &TestServer, sec: &Client, prefix: &str, n: usize) -> Vec<(String, Client)> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(user_with_role(ts, sec, &format!("{prefix}{i}"), None, None).await);
    }
    out
}

fn seat(user: &str) -> Value {
    json!({"user_id": user})
}

#[tokio::test]
async fn five_levels_and_ten_approvers_lead_to_a_running_guest() {
    let ts = TestServer::start_with(tcg_guests).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    tiny_guest_setup(&admin).await;

    // The service: flavor and image locked, the zone left to approvers.
    let svc = post(
        &admin,
        "/v1/services",
        json!({"name": "ECS tiny", "category": "compute", "kind": "instance", "parameters": [
            {"name": "name"},
            {"name": "flavor", "mode": "locked", "default": "tiny.1c256m"},
            {"name": "image", "mode": "locked", "default": "tiny"},
            {"name": "count", "default": 1, "min": 1, "max": 2},
            {"name": "availability_zone", "mode": "approver", "default": "nowhere"},
        ]}),
    )
    .await;
    assert_eq!(svc["parameters"][3]["type"], "integer");

    let (_, requester) = user_with_role(
        &ts,
        &sec,
        "req",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, outsider) = user_with_role(
        &ts,
        &sec,
        "other",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    let (_, vdc_admin) = user_with_role(
        &ts,
        &sec,
        "vadm",
        Some(&a.child),
        Some(("vdc_admin", "vdc", &a.child)),
    )
    .await;
    let first = approvers(&ts, &sec, "l1-", 10).await;
    let later = approvers(&ts, &sec, "l", 3).await;
    let ids = |v: &[(String, Client)]| v.iter().map(|(u, _)| seat(u)).collect::<Vec<_>>();
    let flow = post(
        &admin,
        "/v1/approval-flows",
        json!({"name": "A: five levels", "service_id": id(&svc), "vdc_id": a.top, "levels": [
            {"name": "科室", "rule": "all", "approvers": ids(&first)},
            {"name": "VDC", "rule": "any", "approvers": [{"role": "vdc_admin"}]},
            {"name": "处室", "approvers": [seat(&later[0].0)]},
            {"name": "局", "approvers": [seat(&later[1].0)]},
            {"name": "平台", "approvers": [seat(&later[2].0), {"role": "platform_admin"}]},
        ]}),
    )
    .await;
    assert_eq!(flow["levels"].as_array().unwrap().len(), 5);

    // The requester may set only what the form leaves to them.
    let body = |params: Value| {
        json!({"service_id": id(&svc), "project_id": a.project, "parameters": params,
            "description": "a web server"})
    };
    let (st, msg) = fails(
        requester
            .post(
                "/v1/requests",
                &body(json!({"name": "web", "flavor": "basic.2c4g"})),
            )
            .await,
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        msg.contains("parameters.flavor") && msg.contains("locked"),
        "{msg}"
    );
    let (st, msg) = fails(
        requester
            .post(
                "/v1/requests",
                &body(json!({"name": "web", "availability_zone": "az1"})),
            )
            .await,
    )
    .await;
    assert_eq!(
        (st, msg.contains("parameters.availability_zone")),
        (400, true),
        "{msg}"
    );
    let (st, msg) = fails(
        requester
            .post("/v1/requests", &body(json!({"name": "web", "count": 3})))
            .await,
    )
    .await;
    assert_eq!((st, msg.contains("parameters.count")), (400, true), "{msg}");
    let (st, msg) = fails(requester.post("/v1/requests", &body(json!({}))).await).await;
    assert_eq!((st, msg.contains("parameters.name")), (400, true), "{msg}");

    let r = post(&requester, "/v1/requests", body(json!({"name": "web"}))).await;
    let rid = id(&r);
    assert_eq!(r["status"], "approving");
    assert_eq!(r["flow_id"], flow["id"]);
    assert_eq!(r["parameters"]["flavor"], "tiny.1c256m");

    // Nobody outside sees it; nobody decides out of turn; nobody decides their own.
    let path = format!("/v1/requests/{rid}");
    assert_eq!(status(outsider.get::<Value>(&path, &[]).await), 404);
    assert_eq!(
        status(
            outsider
                .post::<Value>(&format!("{path}/approve"), &json!({}))
                .await
        ),
        404
    );
    let (st, msg) = fails(requester.post(&format!("{path}/approve"), &json!({})).await).await;
    assert_eq!((st, msg.contains("own")), (403, true), "{msg}");
    let (st, msg) = fails(
        later[0]
            .1
            .post(&format!("{path}/approve"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, 403);
    assert!(msg.contains("level 3") && msg.contains("level 1"), "{msg}");
    let mine: Value = requester
        .get("/v1/requests", &[("mine", "true".into())])
        .await
        .unwrap();
    assert_eq!(mine["items"][0]["id"], rid.as_str());
    let theirs: Value = outsider.get("/v1/requests", &[]).await.unwrap();
    assert_eq!(theirs["items"], json!([]));

    // Level 1 needs all ten.
    for (i, (_, c)) in first.iter().enumerate() {
        let q: Vec<Value> = c.get("/v1/approvals", &[]).await.unwrap();
        assert!(queue_has(&q, &rid), "approver {i} sees it in the queue");
        let after = approve(c, &rid).await;
        assert_eq!(
            after["level"],
            if i < 9 { 0 } else { 1 },
            "after approver {i}"
        );
        let q: Vec<Value> = c.get("/v1/approvals", &[]).await.unwrap();
        assert!(!queue_has(&q, &rid), "decided: out of approver {i}'s queue");
    }
    let (st, _) = fails(
        first[0]
            .1
            .post(&format!("{path}/approve"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, 403, "level 1 is over");

    // Level 2: the VDC's administrator, who sets the zone (and nothing else).
    let q: Vec<Value> = vdc_admin.get("/v1/approvals", &[]).await.unwrap();
    assert!(queue_has(&q, &rid));
    let (st, msg) = fails(
        vdc_admin
            .post(
                &format!("{path}/approve"),
                &json!({"parameters": {"flavor": "basic.2c4g"}}),
            )
            .await,
    )
    .await;
    assert_eq!(
        (st, msg.contains("parameters.flavor")),
        (400, true),
        "{msg}"
    );
    let after = post(
        &vdc_admin,
        &format!("{path}/approve"),
        json!({"comment": "ok for az1", "parameters": {"availability_zone": "az1"}}),
    )
    .await;
    assert_eq!(after["parameters"]["availability_zone"], "az1");
    assert_eq!(after["level"], 2);
    for (_, c) in &later {
        approve(c, &rid).await;
    }

    // Approved: provisioned as the requester, in the requester's project.
    let done = finished(&requester, &rid).await;
    assert_eq!(done["status"], "completed", "{done}");
    let made = &done["resources"][0];
    assert_eq!(
        (&made["type"], &made["name"]),
        (&json!("instance"), &json!("web"))
    );
    let vm = made["id"].as_str().unwrap().to_string();
    let inst = wait("the instance to run", 120, || async {
        let v: Value = requester
            .get(&format!("/v1/instances/{vm}"), &[])
            .await
            .unwrap();
        assert_ne!(v["status"], "error", "{v}");
        (v["status"] == "running").then_some(v)
    })
    .await;
    assert_eq!(inst["project_id"], a.project.as_str());
    assert_eq!(inst["flavor_name"], "tiny.1c256m");
    wait("the guest to boot", 120, || async {
        let r = requester
            .send_raw(
                reqwest::Method::GET,
                &format!("/v1/instances/{vm}/console-log"),
                &[],
                None,
            )
            .await
            .unwrap();
        String::from_utf8_lossy(&r.body)
            .contains("STRATUS-READY")
            .then_some(())
    })
    .await;
    // The history: fourteen decisions, each in the audit log too.
    let decided: usize = done["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["decisions"].as_array().unwrap().len())
        .sum();
    assert_eq!(decided, 14);
    let auditor = ts.auditor().await;
    let log: Value = auditor
        .get(
            "/v1/audit-events",
            &[
                ("operation", "request_approve".into()),
                ("limit", "100".into()),
            ],
        )
        .await
        .unwrap();
    let approvals = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["object_id"] == rid.as_str() && e["result"] == "success")
        .count();
    assert_eq!(approvals, 14);
    let log: Value = auditor
        .get(
            "/v1/audit-events",
            &[("operation", "order_provision".into())],
        )
        .await
        .unwrap();
    assert_eq!(log["items"][0]["object_id"], vm.as_str(), "{log}");
    assert_eq!(log["items"][0]["user_name"], "req");
}

/// Five levels of one approver each: a rejection at level 3 ends the request and nothing is
/// made; a cancelled request cannot be approved; a request nobody configured a flow for goes
/// to the project's approvers.
#[tokio::test]
async fn rejection_at_level_three_makes_nothing() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let svc = post(
        &admin,
        "/v1/services",
        json!({"name": "VPC", "kind": "vpc", "parameters": [{"name": "name"}, {"name": "cidr"}]}),
    )
    .await;
    let (_, requester) = user_with_role(
        &ts,
        &sec,
        "req",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let people = approvers(&ts, &sec, "ap", 5).await;
    let levels: Vec<Value> = people
        .iter()
        .enumerate()
        .map(|(i, (u, _))| json!({"name": format!("level {}", i + 1), "approvers": [seat(u)]}))
        .collect();
    post(
        &admin,
        "/v1/approval-flows",
        json!({"name": "five", "vdc_id": a.child, "levels": levels}),
    )
    .await;
    let ask = |name: &str| {
        json!({"service_id": id(&svc), "project_id": a.project,
            "parameters": {"name": name, "cidr": "10.8.0.0/16"}})
    };
    let r = post(&requester, "/v1/requests", ask("net")).await;
    let rid = id(&r);
    approve(&people[0].1, &rid).await;
    approve(&people[1].1, &rid).await;
    let q: Vec<Value> = people[3].1.get("/v1/approvals", &[]).await.unwrap();
    assert!(!queue_has(&q, &rid), "level 4 waits for level 3");
    let out = post(
        &people[2].1,
        &format!("/v1/requests/{rid}/reject"),
        json!({"comment": "use the shared VPC"}),
    )
    .await;
    assert_eq!(out["status"], "rejected");
    let reason = out["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("level 3") && reason.contains("use the shared VPC"),
        "{reason}"
    );
    let (st, _) = fails(
        people[3]
            .1
            .post(&format!("/v1/requests/{rid}/approve"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, 409);
    let vpcs: Value = admin
        .get("/v1/vpcs", &[("project_id", a.project.clone())])
        .await
        .unwrap();
    assert_eq!(vpcs["items"], json!([]), "nothing made");

    // Cancelled by the requester: nobody approves it afterwards.
    let r = post(&requester, "/v1/requests", ask("net2")).await;
    let c = post(
        &requester,
        &format!("/v1/requests/{}/cancel", id(&r)),
        json!({}),
    )
    .await;
    assert_eq!(c["status"], "cancelled");
    let (st, _) = fails(
        people[0]
            .1
            .post(&format!("/v1/requests/{}/approve", id(&r)), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, 409);

    // Another VDC's project has no flow: the default one, any approver of the project.
    let b = tree(&admin, "B").await;
    let (_, rb) = user_with_role(
        &ts,
        &sec,
        "rb",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    let (_, appr) = user_with_role(
        &ts,
        &sec,
        "bappr",
        Some(&b.child),
        Some(("approver", "vdc", &b.top)),
    )
    .await;
    let r = post(
        &rb,
        "/v1/requests",
        json!({"service_id": id(&svc), "project_id": b.project, "parameters": {"name": "n", "cidr": "10.9.0.0/16"}}),
    )
    .await;
    assert!(r["flow_id"].is_null());
    assert_eq!(r["levels"][0]["approvers"][0]["role"], "approver");
    let (st, _) = fails(
        people[0]
            .1
            .post(&format!("/v1/requests/{}/approve", id(&r)), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, 404, "not an approver of B's requests: not seen");
    let q: Vec<Value> = appr.get("/v1/approvals", &[]).await.unwrap();
    assert!(queue_has(&q, &id(&r)));
    approve(&appr, &id(&r)).await;
    let done = finished(&rb, &id(&r)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["resources"][0]["type"], "vpc");
}

/// An auto-approved order for five instances where the quota holds two: the third fails,
/// the two made are undone, the quota is as before, and the order says what happened.
#[tokio::test]
async fn a_failure_halfway_undoes_what_the_order_made() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let _stop = simulated_hosts(&ts, &admin, 1).await;
    let img = raw_image(&admin, None).await;
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", a.project),
            &json!({"limits": {"instances": 2}}),
        )
        .await
        .unwrap();
    let svc = post(
        &admin,
        "/v1/services",
        json!({"name": "ECS", "kind": "instance", "parameters": [
            {"name": "name"}, {"name": "count", "max": 10},
            {"name": "flavor", "mode": "locked", "default": "basic.2c4g"},
            {"name": "image", "mode": "locked", "default": id(&img)}]}),
    )
    .await;
    post(
        &admin,
        "/v1/approval-flows",
        json!({"name": "small ones pass", "service_id": id(&svc),
            "levels": [{"name": "admin", "approvers": [{"role": "platform_admin"}]}],
            "auto_approve": [{"parameter": "count", "max": 5}]}),
    )
    .await;
    let (_, requester) = user_with_role(
        &ts,
        &sec,
        "req",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let r = post(
        &requester,
        "/v1/requests",
        json!({"service_id": id(&svc), "project_id": a.project, "parameters": {"name": "batch", "count": 5}}),
    )
    .await;
    assert_eq!(r["status"], "approved", "auto-approved: {r}");
    assert!(r["levels"][0]["decisions"][0]["comment"]
        .as_str()
        .unwrap()
        .contains("count 5 ≤ 5"));
    let done = finished(&requester, &id(&r)).await;
    assert_eq!(done["status"], "failed", "{done}");
    let reason = done["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("instance 3 of 5")
            && reason.contains("quota")
            && reason.contains("2 resources"),
        "{reason}"
    );
    assert_eq!(done["resources"], json!([]));
    wait("the two instances to go", 60, || async {
        let l: Value = requester
            .get("/v1/instances", &[("project_id", a.project.clone())])
            .await
            .unwrap();
        l["items"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
    assert_eq!(
        quota_used(&admin, &a.project, "instances").await,
        0,
        "quota as before"
    );

    // A request above the condition needs its approver.
    let r = post(
        &requester,
        "/v1/requests",
        json!({"service_id": id(&svc), "project_id": a.project, "parameters": {"name": "big", "count": 6}}),
    )
    .await;
    assert_eq!(r["status"], "approving", "{r}");
}

/// Service definitions and flows refuse what makes no sense, naming the field; the
/// whitelist hides a service from other VDCs; a change and a release go through approval.
#[tokio::test]
async fn bad_definitions_whitelists_changes_and_releases() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    for (body, field) in [
        (
            json!({"name": "x", "kind": "instance", "parameters": [{"name": "colour"}]}),
            "parameters[0].name",
        ),
        (
            json!({"name": "x", "kind": "volume", "parameters": [{"name": "size_gib", "mode": "locked"}]}),
            "parameters[0].default",
        ),
        (
            json!({"name": "x", "kind": "volume", "parameters": [{"name": "size_gib", "default": "big"}]}),
            "parameters[0].default",
        ),
        (
            json!({"name": "x", "kind": "volume", "parameters": [{"name": "size_gib", "allowed": [10, "x"]}]}),
            "parameters[0].allowed[1]",
        ),
        (
            json!({"name": "x", "kind": "volume", "parameters": [{"name": "size_gib", "min": 10, "max": 5}]}),
            "parameters[0].min",
        ),
        (
            json!({"name": "x", "kind": "vpc", "parameters": [{"name": "name"}, {"name": "name"}]}),
            "parameters[1].name",
        ),
        (
            json!({"name": "x", "kind": "vpc", "vdc_ids": ["00000000-0000-0000-0000-000000000000"]}),
            "vdc_ids[0]",
        ),
        (json!({"name": "", "kind": "vpc"}), "name"),
    ] {
        let (st, msg) = fails(admin.post("/v1/services", &body).await).await;
        assert_eq!(st, 400, "{body}");
        assert!(msg.starts_with(field), "{body}: {msg}");
    }
    let (st, _) = fails(
        admin
            .post("/v1/services", &json!({"name": "x", "kind": "dns"}))
            .await,
    )
    .await;
    assert_eq!(st, 400);
    let svc = post(
        &admin,
        "/v1/services",
        json!({"name": "Volumes for A", "kind": "volume", "vdc_ids": [a.top],
            "parameters": [{"name": "name"}, {"name": "size_gib", "allowed": [10, 20]}]}),
    )
    .await;
    let too_many: Vec<Value> = (0..11)
        .map(|i| json!({"name": format!("l{i}"), "approvers": [{"role": "approver"}]}))
        .collect();
    for (levels, field) in [
        (json!(too_many), "levels"),
        (json!([]), "levels"),
        (
            json!([{"name": "l", "approvers": []}]),
            "levels[0].approvers",
        ),
        (
            json!([{"name": "l", "approvers": [{"role": "member"}]}]),
            "levels[0].approvers[0].role",
        ),
        (
            json!([{"name": "l", "approvers": [{"role": "approver", "user_id": a.org}]}]),
            "levels[0].approvers[0]",
        ),
        (
            json!([{"name": "l", "approvers": [{"user_id": a.org}]}]),
            "levels[0].approvers[0].user_id",
        ),
    ] {
        let (st, msg) = fails(
            admin
                .post(
                    "/v1/approval-flows",
                    &json!({"name": "f", "service_id": id(&svc), "levels": levels}),
                )
                .await,
        )
        .await;
        assert_eq!(st, 400, "{levels}");
        assert!(msg.starts_with(field), "{levels}: {msg}");
    }
    let one = json!([{"name": "l", "approvers": [{"role": "approver"}]}]);
    post(
        &admin,
        "/v1/approval-flows",
        json!({"name": "f", "service_id": id(&svc), "levels": one}),
    )
    .await;
    let (st, _) = fails(
        admin
            .post(
                "/v1/approval-flows",
                &json!({"name": "g", "service_id": id(&svc), "levels": one}),
            )
            .await,
    )
    .await;
    assert_eq!(st, 409, "one flow per service and VDC");

    // A VDC's administrators define the flows of their VDC, and only theirs.
    let (_, va) = user_with_role(
        &ts,
        &sec,
        "va",
        Some(&a.top),
        Some(("vdc_admin", "vdc", &a.top)),
    )
    .await;
    let (_, vb) = user_with_role(
        &ts,
        &sec,
        "vb",
        Some(&b.top),
        Some(("vdc_admin", "vdc", &b.top)),
    )
    .await;
    let own = post(
        &va,
        "/v1/approval-flows",
        json!({"name": "A's chain", "vdc_id": a.child, "levels": one}),
    )
    .await;
    let (st, _) = fails(
        va.post("/v1/approval-flows", &json!({"name": "all", "levels": one}))
            .await,
    )
    .await;
    assert_eq!(
        st, 403,
        "a platform-wide flow is the catalog administrators'"
    );
    let (st, msg) = fails(
        va.post(
            "/v1/approval-flows",
            &json!({"name": "B", "vdc_id": b.top, "levels": one}),
        )
        .await,
    )
    .await;
    assert_eq!((st, msg.starts_with("vdc_id")), (400, true), "{msg}");
    let seen: Vec<Value> = vb.get("/v1/approval-flows", &[]).await.unwrap();
    assert!(!seen.iter().any(|f| f["id"] == own["id"]));
    assert_eq!(
        status(
            vb.get::<Value>(&format!("/v1/approval-flows/{}", id(&own)), &[])
                .await
        ),
        404
    );
    let seen: Vec<Value> = va.get("/v1/approval-flows", &[]).await.unwrap();
    assert!(seen.iter().any(|f| f["id"] == own["id"]));
    va.delete(&format!("/v1/approval-flows/{}", id(&own)))
        .await
        .unwrap();

    // The whitelist: A's departments see the service, B's do not.
    let (_, ra) = user_with_role(
        &ts,
        &sec,
        "ra",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, rb) = user_with_role(
        &ts,
        &sec,
        "rb",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    let seen: Vec<Value> = ra.get("/v1/services", &[]).await.unwrap();
    assert!(seen.iter().any(|s| s["id"] == svc["id"]));
    let seen: Vec<Value> = rb.get("/v1/services", &[]).await.unwrap();
    assert!(!seen.iter().any(|s| s["id"] == svc["id"]));
    assert_eq!(
        status(
            rb.get::<Value>(&format!("/v1/services/{}", id(&svc)), &[])
                .await
        ),
        404
    );
    let (st, _) = fails(
        rb.post(
            "/v1/requests",
            &json!({"service_id": id(&svc), "project_id": b.project, "parameters": {"name": "v", "size_gib": 10}}),
        )
        .await,
    )
    .await;
    assert_eq!(st, 404);
    let (st, msg) = fails(
        ra.post(
            "/v1/requests",
            &json!({"service_id": id(&svc), "project_id": a.project, "parameters": {"name": "v", "size_gib": 15}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (st, msg.contains("parameters.size_gib")),
        (400, true),
        "{msg}"
    );
    // Requests for another department's project, or its resources: not found.
    let (st, _) = fails(
        rb.post(
            "/v1/requests",
            &json!({"service_id": id(&svc), "project_id": a.project, "parameters": {"name": "v", "size_gib": 10}}),
        )
        .await,
    )
    .await;
    assert_eq!(st, 404);

    // A release and a change of A's VPC and volume-less resources go through approval too.
    let (_, appr) = user_with_role(
        &ts,
        &sec,
        "appr",
        Some(&a.child),
        Some(("approver", "vdc", &a.top)),
    )
    .await;
    let vpc = post(
        &ra,
        "/v1/vpcs",
        json!({"project_id": a.project, "name": "v", "cidr": "10.5.0.0/16"}),
    )
    .await;
    let (st, _) = fails(
        rb.post(
            "/v1/requests",
            &json!({"action": "release", "resource_id": id(&vpc)}),
        )
        .await,
    )
    .await;
    assert_eq!(st, 404, "another department's resource");
    let (st, msg) = fails(
        ra.post("/v1/requests", &json!({"action": "change", "resource_id": id(&vpc), "parameters": {"cidr": "10.6.0.0/16"}}))
            .await,
    )
    .await;
    assert_eq!((st, msg.contains("action")), (400, true), "{msg}");
    let r = post(
        &ra,
        "/v1/requests",
        json!({"action": "release", "resource_id": id(&vpc)}),
    )
    .await;
    assert_eq!(
        (&r["kind"], &r["service_name"]),
        (&json!("vpc"), &json!("release vpc"))
    );
    assert!(
        ra.get::<Value>(&format!("/v1/vpcs/{}", id(&vpc)), &[])
            .await
            .is_ok(),
        "not released before approval"
    );
    approve(&appr, &id(&r)).await;
    let done = finished(&ra, &id(&r)).await;
    assert_eq!(done["status"], "completed", "{done}");
    wait("the VPC to go", 30, || async {
        ra.get::<Value>(&format!("/v1/vpcs/{}", id(&vpc)), &[])
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

/// A control plane that stopped in the middle of provisioning: on the next start the order
/// is failed and what it had made is gone; an approved order not yet started is provisioned.
#[tokio::test]
async fn a_restart_undoes_a_half_provisioned_order_and_resumes_approved_ones() {
    let mut ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let svc = post(
        &admin,
        "/v1/services",
        json!({"name": "VPC", "kind": "vpc"}),
    )
    .await;
    let made = post(
        &admin,
        "/v1/vpcs",
        json!({"project_id": a.project, "name": "half", "cidr": "10.3.0.0/16"}),
    )
    .await;
    // Two orders as a crash leaves them: one provisioning with a VPC made, one approved.
    let store = ts.server.as_ref().unwrap().app.store.clone();
    let now = chrono::Utc::now();
    let admin_uid = store
        .user_get_by_name("admin")
        .await
        .unwrap()
        .unwrap()
        .user
        .id;
    let order = |status: stratus_api::RequestStatus, name: &str| stratus_api::Request {
        id: uuid::Uuid::new_v4(),
        action: stratus_api::RequestAction::Create,
        service_id: Some(id(&svc).parse().unwrap()),
        service_name: "VPC".into(),
        kind: stratus_api::ServiceKind::Vpc,
        project_id: a.project.parse().unwrap(),
        vdc_id: a.child.parse().unwrap(),
        requester_id: admin_uid,
        requester_name: "admin".into(),
        description: String::new(),
        parameters: serde_json::from_value(json!({"name": name, "cidr": "10.4.0.0/16"})).unwrap(),
        resource_id: None,
        status,
        status_reason: String::new(),
        level: 1,
        levels: vec![],
        flow_id: None,
        resources: vec![],
        subscription_months: None,
        created_at: now,
        updated_at: now,
    };
    let mut half = order(stratus_api::RequestStatus::Provisioning, "half");
    half.resources.push(stratus_api::OrderResource {
        kind: "vpc".into(),
        id: id(&made).parse().unwrap(),
        name: "half".into(),
    });
    let waiting = order(stratus_api::RequestStatus::Approved, "later");
    store.request_insert(&half).await.unwrap();
    store.request_insert(&waiting).await.unwrap();

    ts.restart().await;
    let admin = ts.admin().await;
    let r = finished(&admin, &half.id.to_string()).await;
    assert_eq!(r["status"], "failed");
    assert!(
        r["status_reason"].as_str().unwrap().contains("restart"),
        "{r}"
    );
    wait("the half-made VPC to go", 30, || async {
        admin
            .get::<Value>(&format!("/v1/vpcs/{}", id(&made)), &[])
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let r = finished(&admin, &waiting.id.to_string()).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["resources"][0]["name"], "later");
}

/// A bucket service (global names: a taken one fails the order and says why) and a VDC
/// service, made by the approving VDC administrator under the project's VDC with the quotas
/// the form and the approver set.
#[tokio::test]
async fn bucket_and_vdc_services() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "member1",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, vadm) = user_with_role(
        &ts,
        &sec,
        "vadm",
        Some(&a.top),
        Some(("vdc_admin", "vdc", &a.top)),
    )
    .await;
    let bucket = post(
        &admin,
        "/v1/services",
        json!({"name": "OBS bucket", "kind": "bucket"}),
    )
    .await;
    let ask = |name: &str| json!({"service_id": id(&bucket), "project_id": a.project, "parameters": {"name": name}});
    let r = post(&member, "/v1/requests", ask("dept-data")).await;
    approve(&vadm, &id(&r)).await;
    let done = finished(&member, &id(&r)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let b: Vec<Value> = member
        .get("/v1/buckets", &[("project_id", a.project.clone())])
        .await
        .unwrap();
    assert_eq!(b[0]["name"], "dept-data");
    let r = post(&member, "/v1/requests", ask("dept-data")).await;
    approve(&vadm, &id(&r)).await;
    let done = finished(&member, &id(&r)).await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["status_reason"].as_str().unwrap().contains("exists"),
        "{done}"
    );
    // Released through a request: the bucket goes (an S3 bucket must be empty to go).
    let rel = post(
        &member,
        "/v1/requests",
        json!({"action": "release", "resource_id": b[0]["id"], "project_id": a.project}),
    )
    .await;
    assert_eq!(rel["kind"], "bucket");
    approve(&vadm, &id(&rel)).await;
    let done = finished(&member, &id(&rel)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let left: Vec<Value> = member
        .get("/v1/buckets", &[("project_id", a.project.clone())])
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");

    let vdc = post(
        &admin,
        "/v1/services",
        json!({"name": "Sub-VDC", "kind": "vdc", "parameters": [
            {"name": "name"},
            {"name": "vcpus", "mode": "approver", "default": 8},
            {"name": "instances", "mode": "locked", "default": 10}]}),
    )
    .await;
    let r = post(
        &member,
        "/v1/requests",
        json!({"service_id": id(&vdc), "project_id": a.project, "parameters": {"name": "project-x"}}),
    )
    .await;
    post(
        &vadm,
        &format!("/v1/requests/{}/approve", id(&r)),
        json!({"parameters": {"vcpus": 16}}),
    )
    .await;
    let done = finished(&member, &id(&r)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let made = done["resources"][0]["id"].as_str().unwrap().to_string();
    let v: Value = admin.get(&format!("/v1/vdcs/{made}"), &[]).await.unwrap();
    assert_eq!(
        (&v["name"], &v["parent_id"]),
        (&json!("project-x"), &json!(a.child))
    );
    let q: Value = admin
        .get(&format!("/v1/vdcs/{made}/quota"), &[])
        .await
        .unwrap();
    let limit = |r: &str| {
        q["levels"][0]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["resource"] == r)
            .unwrap()["limit"]
            .clone()
    };
    assert_eq!((limit("vcpus"), limit("instances")), (json!(16), json!(10)));
}

/// A change request that adds an elastic IP to an instance: once approved, a new address
/// of the project is bound to the instance's NIC, and the order names it.
#[tokio::test]
async fn a_change_request_adds_an_elastic_ip() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let _stop = simulated_hosts(&ts, &admin, 1).await;
    let img = raw_image(&admin, None).await;
    let _: Value = post(
        &admin,
        "/v1/external-networks",
        json!({"name": "internet", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1",
            "pool_start": "203.0.113.10", "pool_end": "203.0.113.12"}),
    )
    .await;
    let vpc = post(
        &admin,
        "/v1/vpcs",
        json!({"project_id": a.project, "name": "net", "cidr": "10.9.0.0/16"}),
    )
    .await;
    let sub = post(
        &admin,
        "/v1/subnets",
        json!({"vpc_id": id(&vpc), "name": "sub", "cidr": "10.9.1.0/24"}),
    )
    .await;
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "member1",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let vm = post(
        &member,
        "/v1/instances",
        json!({"project_id": a.project, "name": "web", "flavor": "basic.2c4g",
            "image": id(&img), "nics": [{"subnet_id": id(&sub)}]}),
    )
    .await;
    let vm = id(&vm[0]);
    let (st, msg) = fails(
        member
            .post(
                "/v1/requests",
                &json!({"action": "change", "resource_id": vm,
                    "parameters": {"add_elastic_ip": "yes"}}),
            )
            .await,
    )
    .await;
    assert_eq!(st, 400);
    assert!(msg.contains("parameters.add_elastic_ip"), "{msg}");
    let r = post(
        &member,
        "/v1/requests",
        json!({"action": "change", "resource_id": vm, "parameters": {"add_elastic_ip": true}}),
    )
    .await;
    approve(&admin, &id(&r)).await;
    let done = finished(&member, &id(&r)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let made = &done["resources"][1];
    assert_eq!(made["type"], "elastic_ip", "{done}");
    let eip: Value = member
        .get(
            &format!("/v1/elastic-ips/{}", made["id"].as_str().unwrap()),
            &[],
        )
        .await
        .unwrap();
    assert!(eip["port_id"].is_string(), "bound: {eip}");
    assert_eq!(eip["address"], made["name"]);
    assert_eq!(quota_used(&admin, &a.project, "elastic_ips").await, 1);
    ts.stop().await;
}
