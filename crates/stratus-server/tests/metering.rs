//! Metering and billing: a scripted timeline under the meter's test clock gives usage
//! records and bills equal to hand-computed values, across restarts; roll-ups, visibility,
//! price validation, estimates, budgets and agent gaps.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::{json, Value};
use stratus_client::Client;
use stratus_server::app::metering::{tick, Holes};
use stratus_server::store::metering::freeze_meter_clock;

fn t0() -> DateTime<Utc> {
    "2030-03-01T00:00:00Z".parse().unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

/// Set the meter's clock, then run one meter pass (applying every event so far).
async fn meter_at(ts: &TestServer, t: DateTime<Utc>) {
    freeze_meter_clock(Some(t));
    let app = &ts.server.as_ref().unwrap().app;
    tick(app, &mut Holes::default()).await.unwrap();
}

async fn price(admin: &Client, meter: &str, spec: &str, unit_price: &str) -> Value {
    post(
        admin,
        "/v1/prices",
        json!({"meter": meter, "spec": spec, "unit_price": unit_price,
            "effective_from": "2030-01-01T00:00:00Z"}),
    )
    .await
}

async fn action(c: &Client, vm: &str, body: Value) {
    let _: Value = c
        .post(&format!("/v1/instances/{vm}/actions"), &body)
        .await
        .unwrap();
}

async fn instance_status(c: &Client, vm: &str) -> String {
    let v: Value = c.get(&format!("/v1/instances/{vm}"), &[]).await.unwrap();
    v["status"].as_str().unwrap_or_default().to_string()
}

async fn until_status(c: &Client, vm: &str, want: &str) {
    wait(&format!("instance {vm} {want}"), 60, || async {
        let s = instance_status(c, vm).await;
        (s == want).then_some(())
    })
    .await;
}

async fn volume(c: &Client, project: &str, name: &str, vtype: &str, gib: i64) -> String {
    let v = post(
        c,
        "/v1/volumes",
        json!({"project_id": project, "name": name, "volume_type": vtype, "size_gib": gib}),
    )
    .await;
    let vid = id(&v[0]);
    wait("the volume", 60, || async {
        let v: Value = c.get(&format!("/v1/volumes/{vid}"), &[]).await.unwrap();
        (v["status"] == "available").then_some(())
    })
    .await;
    vid
}

async fn volume_gone(c: &Client, vid: &str) {
    c.delete(&format!("/v1/volumes/{vid}")).await.unwrap();
    wait("the volume to go", 60, || async {
        let r: Result<Value, _> = c.get(&format!("/v1/volumes/{vid}"), &[]).await;
        matches!(r, Err(e) if e.status == 404).then_some(())
    })
    .await;
}

/// The quantity of one meter/spec in one hour of a resource's records.
fn quantity(records: &[Value], meter: &str, spec: &str, hour: DateTime<Utc>) -> Option<String> {
    records
        .iter()
        .find(|r| {
            r["meter"] == meter
                && r["spec"] == spec
                && r["period_start"]
                    .as_str()
                    .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                    == Some(hour)
        })
        .map(|r| r["quantity"].as_str().unwrap_or_default().to_string())
}

async fn usage_of(c: &Client, resource: &str) -> Vec<Value> {
    c.get("/v1/usage", &[("resource_id", resource.to_string())])
        .await
        .unwrap()
}

fn line<'a>(bill: &'a Value, resource: &str, meter: &str, spec: &str) -> &'a Value {
    bill["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource_id"] == resource && l["meter"] == meter && l["spec"] == spec)
        .unwrap_or_else(|| panic!("no line {meter} {spec} of {resource} in {bill}"))
}

fn part_total(parts: &Value, id: &str) -> String {
    parts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no part {id} in {parts}"))["total"]
        .as_str()
        .unwrap()
        .to_string()
}

fn cents(s: &str) -> i64 {
    let (w, f) = s.split_once('.').unwrap();
    w.parse::<i64>().unwrap() * 100 + f.parse::<i64>().unwrap()
}

/// The timeline. t0: an instance (basic.2c4g) starts. t1 = 1 h 30 min: it is
/// stopped, resized to basic.4c8g and started. t2 = 2 h: a 100 GiB high-I/O volume is made
/// and attached. t3 = 3 h 15 min: both are deleted. The control plane restarts twice on the
/// way. Two more projects hold volumes all along, for the roll-up.
#[tokio::test]
async fn a_scripted_timeline_bills_to_the_cent_across_restarts() {
    // The clock must stand at t0 before the meter first runs: it starts at that hour.
    freeze_meter_clock(Some(t0()));
    let mut ts = TestServer::start_with(|c| c.metering.tick_secs = 3600).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let proj2 = id(&post(
        &admin,
        "/v1/projects",
        json!({"vdc_id": a.top, "name": "p2"}),
    )
    .await);
    let top2 = id(&post(&admin, "/v1/vdcs", json!({"org_id": a.org, "name": "top2"})).await);
    let proj3 = id(&post(
        &admin,
        "/v1/projects",
        json!({"vdc_id": top2, "name": "p3"}),
    )
    .await);
    let stop_hosts = simulated_hosts(&ts, &admin, 1).await;
    let img = raw_image(&admin, None).await;

    price(&admin, "vcpu_hours", "", "0.12").await;
    price(&admin, "memory_gib_hours", "", "0.03").await;
    price(&admin, "instance_hours", "basic.4c8g", "0.40").await;
    price(&admin, "volume_gib_hours", "high", "0.004").await;
    price(&admin, "volume_gib_hours", "normal", "0.002").await;

    // t0
    meter_at(&ts, t0()).await;
    let vm = id(&post(
        &admin,
        "/v1/instances",
        json!({"project_id": a.project, "name": "vm", "flavor": "basic.2c4g", "image": id(&img)}),
    )
    .await[0]);
    until_status(&admin, &vm, "running").await;
    let v2 = volume(&admin, &proj2, "v2", "normal", 20).await;
    let v3 = volume(&admin, &proj3, "v3", "normal", 40).await;
    meter_at(&ts, at(10)).await;

    // t1: stop, resize, start.
    meter_at(&ts, at(90)).await;
    action(&admin, &vm, json!({"action": "stop", "hard": true})).await;
    until_status(&admin, &vm, "stopped").await;
    action(
        &admin,
        &vm,
        json!({"action": "resize", "flavor": "basic.4c8g"}),
    )
    .await;
    until_status(&admin, &vm, "stopped").await;
    action(&admin, &vm, json!({"action": "start"})).await;
    until_status(&admin, &vm, "running").await;
    meter_at(&ts, at(100)).await;

    // t2: a volume, attached.
    meter_at(&ts, at(120)).await;
    let vol = volume(&admin, &a.project, "data", "high", 100).await;
    let _: Value = admin
        .post(
            &format!("/v1/volumes/{vol}/attach"),
            &json!({"instance_id": vm}),
        )
        .await
        .unwrap();
    wait("the attachment", 60, || async {
        let v: Value = admin.get(&format!("/v1/volumes/{vol}"), &[]).await.unwrap();
        (v["status"] == "in_use").then_some(())
    })
    .await;
    meter_at(&ts, at(150)).await;

    // Restart mid-hour: nothing accrued so far may be lost or counted twice.
    ts.restart().await;
    meter_at(&ts, at(185)).await; // closes hour 2 (its grace ended at 3 h 02 min)

    // t3: everything of the project goes.
    meter_at(&ts, at(195)).await;
    let _: Value = admin
        .post(&format!("/v1/volumes/{vol}/detach"), &json!({}))
        .await
        .unwrap();
    wait("the detach", 60, || async {
        let v: Value = admin.get(&format!("/v1/volumes/{vol}"), &[]).await.unwrap();
        (v["status"] == "available").then_some(())
    })
    .await;
    volume_gone(&admin, &vol).await;
    admin.delete(&format!("/v1/instances/{vm}")).await.unwrap();
    wait("the instance to go", 60, || async {
        let r: Result<Value, _> = admin.get(&format!("/v1/instances/{vm}"), &[]).await;
        matches!(r, Err(e) if e.status == 404).then_some(())
    })
    .await;
    volume_gone(&admin, &v2).await;
    volume_gone(&admin, &v3).await;
    meter_at(&ts, at(200)).await;
    ts.restart().await;
    // Hours 0–3 close (hour 3's grace ends at 4 h 02 min).
    meter_at(&ts, at(300)).await;
    let st: Value = admin.get("/v1/usage/status", &[]).await.unwrap();
    assert_eq!(
        st["closed_through"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        at(240),
        "{st}"
    );

    // The instance's records, hour by hour.
    let recs = usage_of(&admin, &vm).await;
    let q = |m: &str, s: &str, h: i64| quantity(&recs, m, s, at(h * 60));
    let (small, big) = ("basic.2c4g", "basic.4c8g");
    assert_eq!(q("vcpu_hours", small, 0).as_deref(), Some("2"), "{recs:?}");
    assert_eq!(q("memory_gib_hours", small, 0).as_deref(), Some("4"));
    assert_eq!(q("instance_hours", small, 0).as_deref(), Some("1"));
    assert_eq!(q("vcpu_hours", small, 1).as_deref(), Some("1"));
    assert_eq!(q("vcpu_hours", big, 1).as_deref(), Some("2"));
    assert_eq!(q("memory_gib_hours", big, 1).as_deref(), Some("4"));
    assert_eq!(q("instance_hours", big, 1).as_deref(), Some("0.5"));
    assert_eq!(q("vcpu_hours", big, 2).as_deref(), Some("4"));
    assert_eq!(q("memory_gib_hours", big, 2).as_deref(), Some("8"));
    assert_eq!(q("vcpu_hours", big, 3).as_deref(), Some("1"));
    assert_eq!(q("instance_hours", big, 3).as_deref(), Some("0.25"));
    assert_eq!(q("vcpu_hours", big, 4), None, "nothing after the delete");
    // The root disk accrues whether running or not (the flavors' 100 GiB), unpriced.
    assert_eq!(
        q("instance_disk_gib_hours", small, 0).as_deref(),
        Some("100")
    );
    assert!(recs.iter().all(|r| r["rated"] == true && r["gap"] == false));
    // No hour of a meter appears twice (a restart neither lost nor repeated anything).
    let mut keys: Vec<(String, String, String)> = recs
        .iter()
        .map(|r| {
            (
                r["meter"].to_string(),
                r["spec"].to_string(),
                r["period_start"].to_string(),
            )
        })
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
    let vrecs = usage_of(&admin, &vol).await;
    assert_eq!(
        quantity(&vrecs, "volume_gib_hours", "high", at(120)).as_deref(),
        Some("100")
    );
    assert_eq!(
        quantity(&vrecs, "volume_gib_hours", "high", at(180)).as_deref(),
        Some("25")
    );
    let r = &vrecs[0];
    assert_eq!(r["unit"], "GiB-hour");
    assert_eq!(r["project_id"], a.project.as_str());
    assert_eq!(r["vdc_id"], a.child.as_str());
    assert_eq!(r["org_id"], a.org.as_str());
    assert_eq!(r["unit_price"], "0.004000");

    // The project's bill over the four closed hours, by hand:
    //   vCPU   small 2+1 = 3 × 0.12 = 0.36     big 2+4+1 = 7 × 0.12 = 0.84
    //   memory small 4+2 = 6 × 0.03 = 0.18     big 4+8+2 = 14 × 0.03 = 0.42
    //   instance-hours big 0.5+1+0.25 = 1.75 × 0.40 = 0.70 (small has no price)
    //   volume high 100 + 25 = 125 GiB-h × 0.004 = 0.50
    //   total 3.00
    let period = [
        ("from", "2030-03-01T00:00:00Z".to_string()),
        ("to", "2030-03-01T04:00:00Z".to_string()),
    ];
    let mut q = period.to_vec();
    q.push(("project_id", a.project.clone()));
    let bill: Value = admin.get("/v1/bills", &q).await.unwrap();
    assert_eq!(bill["total"], "3.00", "{bill}");
    assert_eq!(bill["final"], true);
    assert_eq!(line(&bill, &vm, "vcpu_hours", small)["amount"], "0.36");
    assert_eq!(line(&bill, &vm, "vcpu_hours", big)["quantity"], "7");
    assert_eq!(line(&bill, &vm, "vcpu_hours", big)["amount"], "0.84");
    assert_eq!(line(&bill, &vm, "memory_gib_hours", big)["amount"], "0.42");
    assert_eq!(line(&bill, &vm, "instance_hours", big)["amount"], "0.70");
    assert_eq!(line(&bill, &vm, "instance_hours", small)["amount"], "0.00");
    assert_eq!(
        line(&bill, &vol, "volume_gib_hours", "high")["quantity"],
        "125"
    );
    assert_eq!(
        line(&bill, &vol, "volume_gib_hours", "high")["amount"],
        "0.50"
    );

    // Roll-up: p2's 20 GiB × 3.25 h × 0.002 = 0.13, p3's 40 GiB = 0.26.
    let mut q = period.to_vec();
    q.push(("org_id", a.org.clone()));
    let org: Value = admin.get("/v1/bills", &q).await.unwrap();
    assert_eq!(org["total"], "3.39", "{org}");
    assert_eq!(part_total(&org["vdcs"], &a.top), "3.13");
    assert_eq!(part_total(&org["vdcs"], &top2), "0.26");
    assert_eq!(part_total(&org["projects"], &proj2), "0.13");
    let sum_vdcs: i64 = org["vdcs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| cents(p["total"].as_str().unwrap()))
        .sum();
    let sum_projects: i64 = org["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| cents(p["total"].as_str().unwrap()))
        .sum();
    assert_eq!(sum_vdcs, 339);
    assert_eq!(sum_projects, 339);
    let mut q = period.to_vec();
    q.push(("vdc_id", a.top.clone()));
    let top: Value = admin.get("/v1/bills", &q).await.unwrap();
    assert_eq!(top["total"], "3.13");
    assert_eq!(part_total(&top["vdcs"], &a.child), "3.00");
    assert_eq!(part_total(&top["projects"], &proj2), "0.13");

    // CSV and the printable page.
    let mut q = period.to_vec();
    q.push(("project_id", a.project.clone()));
    q.push(("format", "csv".into()));
    let csv = admin.get_text("/v1/bills", &q).await.unwrap();
    assert!(csv.starts_with("project_id,vdc_id,resource_type"), "{csv}");
    assert!(csv.contains(&format!(
        "{vol},volume_gib_hours,high,GiB-hour,125,0.004000,0.50,CNY"
    )));
    assert!(csv.trim_end().ends_with("total,,,,,,,,,3.00,CNY"));
    q.pop();
    q.push(("format", "html".into()));
    let html = admin.get_text("/v1/bills", &q).await.unwrap();
    assert!(html.contains("<html") && html.contains("3.00"));

    // The usage files of closed hours, in the documented format.
    let file = ts.dir.join("usage").join("usage-2030030102.csv");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("record_id,period_start,period_end,org_id"));
    assert!(
        text.lines()
            .any(|l| l.contains(&vol) && l.contains(",volume_gib_hours,high,GiB-hour,100,")),
        "{text}"
    );
    let json: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(ts.dir.join("usage").join("usage-2030030102.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json.len(), text.lines().count() - 1);

    // A department sees its own usage and bills only.
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "dept",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let mut q = period.to_vec();
    q.push(("project_id", a.project.clone()));
    let own: Value = member.get("/v1/bills", &q).await.unwrap();
    assert_eq!(own["total"], "3.00");
    for (k, v) in [
        ("project_id", proj3.clone()),
        ("vdc_id", top2.clone()),
        ("resource_id", v3.clone()),
    ] {
        let mut q = period.to_vec();
        q.push((k, v));
        assert_eq!(
            status(member.get::<Value>("/v1/bills", &q).await),
            404,
            "{k}"
        );
    }
    let mine: Vec<Value> = member.get("/v1/usage", &[]).await.unwrap();
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|r| r["project_id"] == a.project.as_str()));
    assert_eq!(
        status(
            member
                .get::<Value>("/v1/usage", &[("project_id", proj3.clone())])
                .await
        ),
        404
    );
    // The management unit sees the platform.
    let all: Value = admin.get("/v1/bills", &period).await.unwrap();
    assert_eq!(all["total"], "3.39");
    let _ = stop_hosts.send(true);
    freeze_meter_clock(None);
}

#[tokio::test]
async fn prices_are_validated_and_estimates_use_them() {
    freeze_meter_clock(Some(t0()));
    let ts = TestServer::start_with(|c| c.metering.tick_secs = 3600).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let p = price(&admin, "vcpu_hours", "", "0.12").await;
    assert_eq!(p["unit"], "vcpu-hour");
    assert_eq!(p["currency"], "CNY");
    let bad = [
        (
            json!({"meter": "vcpu_hours", "unit_price": "-1"}),
            "unit_price: must not be negative",
        ),
        (
            json!({"meter": "vcpu_hours", "unit_price": "abc"}),
            "unit_price: is not a decimal",
        ),
        (
            json!({"meter": "cpu_minutes", "unit_price": "1"}),
            "meter: unknown meter \"cpu_minutes\"",
        ),
        (
            json!({"meter": "vcpu_hours", "unit": "core-second", "unit_price": "1"}),
            "unit: unknown unit \"core-second\" for meter vcpu_hours: it is measured in vcpu-hour",
        ),
        (
            json!({"meter": "vcpu_hours", "spec": "huge.99c", "unit_price": "1"}),
            "spec: no flavor named \"huge.99c\"",
        ),
        (
            json!({"meter": "eip_hours", "spec": "x", "unit_price": "1"}),
            "spec: meter eip_hours has no specs",
        ),
        (
            json!({"meter": "vcpu_hours", "unit_price": "1", "currency": "USD"}),
            "currency",
        ),
        (
            json!({"meter": "vcpu_hours", "unit_price": "1",
                "effective_from": "2030-06-01T00:00:00Z", "effective_to": "2030-05-01T00:00:00Z"}),
            "effective_to: must be after effective_from",
        ),
        // Overlaps the open-ended price from 2030-01-01.
        (
            json!({"meter": "vcpu_hours", "unit_price": "0.2", "effective_from": "2030-06-01T00:00:00Z"}),
            "effective_from: overlaps price",
        ),
    ];
    for (body, want) in bad {
        let (code, msg) = fails(admin.post("/v1/prices", &body).await).await;
        assert_eq!(code, 400, "{body}: {msg}");
        assert!(msg.contains(want), "{body}: {msg}");
    }
    // Ending the first price's period makes room for the next.
    let pid = id(&p);
    let _: Value = admin
        .patch(
            &format!("/v1/prices/{pid}"),
            &json!({"effective_to": "2030-06-01T00:00:00Z"}),
        )
        .await
        .unwrap();
    let next = post(
        &admin,
        "/v1/prices",
        json!({"meter": "vcpu_hours", "unit_price": "0.2", "effective_from": "2030-06-01T00:00:00Z"}),
    )
    .await;
    let prices: Vec<Value> = admin
        .get("/v1/prices", &[("at", "2030-07-01T00:00:00Z".to_string())])
        .await
        .unwrap();
    assert_eq!(prices.len(), 1);
    assert_eq!(prices[0]["id"], next["id"]);
    // Only the management unit writes prices; everyone reads them.
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "mem",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (code, _) = fails(
        member
            .post(
                "/v1/prices",
                &json!({"meter": "eip_hours", "unit_price": "1"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 403);
    let seen: Vec<Value> = member.get("/v1/prices", &[]).await.unwrap();
    assert_eq!(seen.len(), 2);

    price(&admin, "memory_gib_hours", "", "0.03").await;
    price(&admin, "instance_hours", "basic.4c8g", "0.40").await;
    price(&admin, "volume_gib_hours", "high", "0.004").await;
    post(
        &admin,
        "/v1/prices",
        json!({"meter": "instance_hours", "spec": "basic.4c8g", "billing": "monthly",
            "unit_price": "200", "effective_from": "2030-01-01T00:00:00Z"}),
    )
    .await;
    // 2 × (4 × 0.12 + 8 × 0.03 + 0.40) = 2.24 per hour, + 100 GiB × 0.004 = 0.40 per hour;
    // 10 hours: 26.40.
    let e = post(
        &member,
        "/v1/prices/estimate",
        json!({"flavor": "basic.4c8g", "count": 2,
            "volumes": [{"volume_type": "high", "size_gib": 100}], "hours": 10}),
    )
    .await;
    assert_eq!(e["total"], "26.40", "{e}");
    assert_eq!(e["hourly"], "2.6400");
    let inst = e["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["meter"] == "instance_hours")
        .unwrap();
    assert_eq!(inst["monthly"], "400.00", "{e}");
    assert_eq!(e["monthly_subscription"], Value::Null);
    assert!(e["unpriced"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u == "instance_disk_gib_hours (basic.4c8g)"));
    // The catalog's form, priced before it is submitted: a month of two locked 4c8g
    // instances is 2.24 × 730 = 1635.20.
    let svc = post(
        &admin,
        "/v1/services",
        json!({"name": "ECS", "kind": "instance", "parameters": [
            {"name": "name"}, {"name": "count", "max": 10},
            {"name": "flavor", "mode": "locked", "default": "basic.4c8g"},
            {"name": "image", "mode": "locked", "default": "any"}]}),
    )
    .await;
    let form = json!({"service_id": id(&svc), "project_id": a.project,
        "parameters": {"name": "web", "count": 2}});
    let e = post(&member, "/v1/requests/estimate", form.clone()).await;
    assert_eq!(e["total"], "1635.20", "{e}");
    assert_eq!(e["hours"], 730);
    let (code, msg) = fails(
        member
            .post(
                "/v1/requests/estimate",
                &json!({"service_id": id(&svc), "project_id": a.project,
                    "parameters": {"name": "web", "flavor": "basic.2c4g"}}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("flavor"), "{msg}");
    let other = tree(&admin, "B").await;
    let mut elsewhere = form.clone();
    elsewhere["project_id"] = json!(other.project);
    let (code, _) = fails(member.post("/v1/requests/estimate", &elsewhere).await).await;
    assert_eq!(code, 404);
    for (body, want) in [
        (json!({"flavor": "nope"}), "flavor: no flavor named"),
        (
            json!({"volumes": [{"volume_type": "gold", "size_gib": 1}]}),
            "volumes[0].volume_type",
        ),
        (json!({"volumes": [{"size_gib": 0}]}), "volumes[0].size_gib"),
        (json!({"hours": 0}), "hours"),
        (json!({"count": 2}), "count: needs a flavor"),
    ] {
        let (code, msg) = fails(member.post("/v1/prices/estimate", &body).await).await;
        assert_eq!(code, 400, "{body}");
        assert!(msg.contains(want), "{body}: {msg}");
    }
    freeze_meter_clock(None);
}

/// A VDC admin's budget: crossing 80% raises one event, 100% another, once each a month.
#[tokio::test]
async fn budgets_raise_events_at_eighty_and_a_hundred_percent() {
    freeze_meter_clock(Some(t0()));
    let ts = TestServer::start_with(|c| c.metering.tick_secs = 3600).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let _hosts = simulated_hosts(&ts, &admin, 1).await;
    price(&admin, "volume_gib_hours", "normal", "0.01").await;
    let (_, vadmin) = user_with_role(
        &ts,
        &sec,
        "vadmin",
        Some(&a.child),
        Some(("vdc_admin", "vdc", &a.child)),
    )
    .await;
    let (code, msg) = fails(
        vadmin
            .put::<Value>(
                &format!("/v1/vdcs/{}/budget", a.child),
                &json!({"monthly_limit": "-5"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 400);
    assert!(msg.contains("monthly_limit: must not be negative"), "{msg}");
    let b: Value = vadmin
        .put(
            &format!("/v1/vdcs/{}/budget", a.child),
            &json!({"monthly_limit": "2.50"}),
        )
        .await
        .unwrap();
    assert_eq!(b["monthly_limit"], "2.50");
    // Another VDC's budget is out of reach.
    assert_eq!(
        status(
            vadmin
                .put::<Value>(
                    &format!("/v1/vdcs/{}/budget", a.top),
                    &json!({"monthly_limit": "1"})
                )
                .await
        ),
        404
    );
    meter_at(&ts, t0()).await;
    // 100 GiB × 0.01 = 1.00 per hour.
    volume(&admin, &a.project, "v", "normal", 100).await;
    meter_at(&ts, at(125)).await; // two hours closed: 2.00 = 80%
    let ev: Vec<Value> = vadmin
        .get("/v1/billing-events", &[("vdc_id", a.child.clone())])
        .await
        .unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["kind"], "budget_80");
    assert_eq!(ev[0]["spent"], "2.00");
    meter_at(&ts, at(130)).await;
    let ev: Vec<Value> = vadmin.get("/v1/billing-events", &[]).await.unwrap();
    assert_eq!(ev.len(), 1, "raised once");
    meter_at(&ts, at(185)).await; // 3.00 ≥ 2.50
    let ev: Vec<Value> = vadmin.get("/v1/billing-events", &[]).await.unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["kind"], "budget_100");
    let b: Value = vadmin
        .get(&format!("/v1/vdcs/{}/budget", a.child), &[])
        .await
        .unwrap();
    assert_eq!(b["spent"], "3.00", "{b}");
    assert_eq!(b["percent"], 120.0);
    freeze_meter_clock(None);
}

/// Bills and budgets over whole closed days read the daily sums: across a restart, a
/// day and two hours of a volume bill exactly what its hourly records add up to.
#[tokio::test]
async fn whole_days_bill_what_their_records_add_up_to() {
    freeze_meter_clock(Some(t0()));
    let mut ts = TestServer::start_with(|c| c.metering.tick_secs = 3600).await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let _hosts = simulated_hosts(&ts, &admin, 1).await;
    price(&admin, "volume_gib_hours", "normal", "0.01").await;
    let _: Value = admin
        .put(
            &format!("/v1/vdcs/{}/budget", a.child),
            &json!({"monthly_limit": "1000"}),
        )
        .await
        .unwrap();
    meter_at(&ts, t0()).await;
    let vol = volume(&admin, &a.project, "v", "normal", 100).await;
    meter_at(&ts, at(13 * 60 + 5)).await;
    ts.restart().await;
    // 26 hours closed: 1 March whole (from the daily sums) and two hours of 2 March.
    meter_at(&ts, at(26 * 60 + 5)).await;
    let records = usage_of(&admin, &vol).await;
    let rated: Vec<&Value> = records.iter().filter(|r| r["rated"] == true).collect();
    assert_eq!(rated.len(), 26, "{records:?}");
    let bill: Value = admin
        .get(
            "/v1/bills",
            &[
                ("project_id", a.project.clone()),
                ("month", "2030-03".into()),
            ],
        )
        .await
        .unwrap();
    // 100 GiB × 0.01 = 1.00 an hour: 26 closed hours and the 5 minutes of the open one.
    let l = line(&bill, &vol, "volume_gib_hours", "normal");
    assert_eq!(l["amount"], "26.08", "{bill}");
    let closed: Value = admin
        .get(
            "/v1/bills",
            &[
                ("project_id", a.project.clone()),
                ("from", "2030-03-01T00:00:00Z".into()),
                ("to", "2030-03-02T02:00:00Z".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(closed["total"], "26.00", "{closed}");
    assert_eq!(closed["final"], true);
    let b: Value = admin
        .get(&format!("/v1/vdcs/{}/budget", a.child), &[])
        .await
        .unwrap();
    assert_eq!(b["spent"], "26.00", "{b}");
    freeze_meter_clock(None);
}

/// An agent that goes silent: its instance's time from the last heartbeat is a gap (shown,
/// not priced, no vCPU-hours invented); when it reports again, metering goes on.
#[tokio::test]
async fn a_silent_agent_leaves_a_visible_gap() {
    freeze_meter_clock(Some(t0()));
    let ts = TestServer::start_with(|c| {
        c.metering.tick_secs = 3600;
        c.compute.report_interval_secs = 1;
        c.compute.host_down_after_secs = 3;
    })
    .await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let hosts = simulated_hosts(&ts, &admin, 1).await;
    let img = raw_image(&admin, None).await;
    price(&admin, "vcpu_hours", "", "1").await;
    meter_at(&ts, t0()).await;
    let vm = id(&post(
        &admin,
        "/v1/instances",
        json!({"project_id": a.project, "name": "vm", "flavor": "basic.2c4g", "image": id(&img)}),
    )
    .await[0]);
    until_status(&admin, &vm, "running").await;
    meter_at(&ts, at(30)).await;
    // The agent stops; the meter notices once the host counts as down.
    let _ = hosts.send(true);
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    meter_at(&ts, at(60)).await;
    // It comes back at 90 min on the meter's clock.
    freeze_meter_clock(Some(at(90)));
    let _hosts = simulated_hosts(&ts, &admin, 1).await;
    meter_at(&ts, at(90)).await;
    meter_at(&ts, at(185)).await;
    let recs = usage_of(&admin, &vm).await;
    let gap: Vec<&Value> = recs.iter().filter(|r| r["gap"] == true).collect();
    assert!(!gap.is_empty(), "{recs:?}");
    assert!(gap
        .iter()
        .all(|r| r["meter"] == "instance_unobserved_hours" && r["amount"] == "0.000000"));
    // The gap started at the last heartbeat (a few seconds before the meter's 60 min) and
    // ended when the agent came back (at 90 min): so hour 0 has a little under an hour of
    // vCPU time... and hour 1 about 30 min unobserved.
    let sum = |meter: &str, hour: i64| -> f64 {
        recs.iter()
            .filter(|r| {
                r["meter"] == meter
                    && r["period_start"]
                        .as_str()
                        .unwrap()
                        .parse::<DateTime<Utc>>()
                        .unwrap()
                        == at(hour * 60)
            })
            .map(|r| r["quantity"].as_str().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let unobserved = sum("instance_unobserved_hours", 0) + sum("instance_unobserved_hours", 1);
    assert!(
        (0.5..0.6).contains(&unobserved),
        "unobserved {unobserved}: {recs:?}"
    );
    let vcpu = sum("vcpu_hours", 0) + sum("vcpu_hours", 1);
    // 2 vCPUs × (3 h of the two hours − the gap).
    let expect = 2.0 * (2.0 - unobserved);
    assert!((vcpu - expect).abs() < 1e-3, "vcpu {vcpu} vs {expect}");
    freeze_meter_clock(None);
}

/// Reports: allocated against used per VDC, instances opened and usage in the period, per
/// pool for the platform; a daily schedule set once makes each day's report when it ends.
#[tokio::test]
async fn reports_show_allocation_and_usage_per_vdc_and_on_a_schedule() {
    freeze_meter_clock(Some(t0()));
    let ts = TestServer::start_with(|c| c.metering.tick_secs = 3600).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let _hosts = simulated_hosts(&ts, &admin, 1).await;
    let img = raw_image(&admin, None).await;
    let _: Value = admin
        .put(
            &format!("/v1/vdcs/{}/quota", a.child),
            &json!({"limits": {"vcpus": 10}}),
        )
        .await
        .unwrap();
    let schedule = post(
        &admin,
        "/v1/report-schedules",
        json!({"name": "daily-A", "period": "daily", "vdc_id": a.top}),
    )
    .await;
    let (code, msg) = fails(
        admin
            .post(
                "/v1/report-schedules",
                &json!({"name": "x1", "period": "hourly"}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        msg.contains("period: \"hourly\" is not one of daily"),
        "{msg}"
    );
    meter_at(&ts, t0()).await;
    let vm = id(&post(
        &admin,
        "/v1/instances",
        json!({"project_id": a.project, "name": "vm", "flavor": "basic.2c4g", "image": id(&img)}),
    )
    .await[0]);
    until_status(&admin, &vm, "running").await;
    volume(&admin, &a.project, "v", "normal", 10).await;
    // The next day, five minutes in: the first day closes and its report is made.
    meter_at(&ts, at(24 * 60 + 5)).await;
    let q = [
        ("vdc_id", a.top.clone()),
        ("from", "2030-03-01T00:00:00Z".to_string()),
        ("to", "2030-03-02T00:00:00Z".to_string()),
    ];
    let r: Value = admin.get("/v1/reports/resources", &q).await.unwrap();
    let row = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["vdc_id"] == a.child.as_str())
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(row["vcpus"], json!({"allocated": 10, "used": 2}), "{row}");
    assert_eq!(row["instances"]["used"], 1);
    assert_eq!(row["instances_opened"], 1);
    assert_eq!(row["vcpu_hours"], "48", "{row}");
    // The 10 GiB volume and the 100 GiB root disk, for 24 hours.
    assert_eq!(row["storage_gib_hours"], "2640");
    assert_eq!(r["rows"].as_array().unwrap().len(), 2, "top and child only");
    assert!(r["pools"].as_array().unwrap().is_empty());
    let top = &r["rows"][0];
    assert_eq!(top["vdc_id"], a.top.as_str());
    assert_eq!(top["vcpu_hours"], "48", "rolled up from the child");
    // The platform's report has the resource pools.
    let all: Value = admin
        .get("/v1/reports/resources", &[("period", "daily".to_string())])
        .await
        .unwrap();
    assert_eq!(all["pools"][0]["hosts_up"], 1, "{all}");
    assert_eq!(all["pools"][0]["vcpus_allocated"], 2);
    // The schedule made the reports of 28 February and 1 March.
    let made: Vec<Value> = admin.get("/v1/reports", &[]).await.unwrap();
    let mine: Vec<&Value> = made
        .iter()
        .filter(|m| m["schedule_id"] == schedule["id"])
        .collect();
    assert_eq!(mine.len(), 2, "{made:?}");
    let day = mine
        .iter()
        .find(|m| m["period_start"] == "2030-03-01T00:00:00Z")
        .unwrap();
    let kept: Value = admin
        .get(&format!("/v1/reports/{}", id(day)), &[])
        .await
        .unwrap();
    assert_eq!(kept["rows"], r["rows"], "the kept report is the same");
    let csv = admin
        .get_text(
            &format!("/v1/reports/{}", id(day)),
            &[("format", "csv".to_string())],
        )
        .await
        .unwrap();
    assert!(
        csv.starts_with("vdc_id,name,level,vcpus_allocated"),
        "{csv}"
    );
    assert!(csv.contains(&format!("{},child,2,10,2,", a.child)), "{csv}");
    let files: Vec<_> = std::fs::read_dir(ts.dir.join("reports")).unwrap().collect();
    assert_eq!(files.len(), 2);
    // Another department sees neither the report nor the schedule.
    let (_, other) = user_with_role(
        &ts,
        &sec,
        "other",
        Some(&b.child),
        Some(("vdc_admin", "vdc", &b.child)),
    )
    .await;
    assert_eq!(
        status(other.get::<Value>("/v1/reports/resources", &q).await),
        404
    );
    assert_eq!(
        status(
            other
                .get::<Value>(&format!("/v1/reports/{}", id(day)), &[])
                .await
        ),
        404
    );
    let theirs: Vec<Value> = other.get("/v1/report-schedules", &[]).await.unwrap();
    assert!(theirs.is_empty());
    freeze_meter_clock(None);
}

/// A POST refused with `code` and a message containing `want`.
async fn rejects(c: &Client, path: &str, body: Value, code: u16, want: &str) {
    let (got, msg) = fails(c.post(path, &body).await).await;
    assert_eq!(got, code, "{path} {body}: {msg}");
    assert!(msg.contains(want), "{path} {body}: {msg}");
}

async fn april_total(c: &Client, project: &str) -> String {
    let v: Value = c
        .get(
            "/v1/bills",
            &[
                ("project_id", project.to_string()),
                ("month", "2030-04".into()),
            ],
        )
        .await
        .unwrap();
    v["total"].as_str().unwrap_or_default().to_string()
}

async fn subscriptions_of(c: &Client, resource: &str) -> Vec<Value> {
    c.get(
        "/v1/subscriptions",
        &[("resource_id", resource.to_string())],
    )
    .await
    .unwrap()
}

/// The record of one meter in one hour of a resource's usage.
fn record<'a>(records: &'a [Value], meter: &str, hour: DateTime<Utc>) -> &'a Value {
    records
        .iter()
        .find(|r| {
            r["meter"] == meter
                && r["period_start"]
                    .as_str()
                    .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                    == Some(hour)
        })
        .unwrap_or_else(|| panic!("no {meter} record at {hour} in {records:?}"))
}

/// Monthly subscriptions (包年包月): an instance bought for two months through a catalog
/// request and a volume bought for one by the API. Their fees are charged once a month;
/// what they cover is charged only beyond the subscribed rate; cancelling drops the months
/// not begun; deleting the resource ends it; other tenants see nothing of it.
#[tokio::test]
async fn subscriptions_charge_monthly_fees_and_cover_their_meters() {
    freeze_meter_clock(Some(t0()));
    let ts = TestServer::start_with(|c| c.metering.tick_secs = 3600).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let _hosts = simulated_hosts(&ts, &admin, 1).await;
    let img = raw_image(&admin, None).await;
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "subm",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, outsider) = user_with_role(
        &ts,
        &sec,
        "subo",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    price(&admin, "instance_hours", "basic.2c4g", "0.10").await;
    price(&admin, "vcpu_hours", "", "0.12").await;
    price(&admin, "memory_gib_hours", "", "0.03").await;
    price(&admin, "volume_gib_hours", "high", "0.004").await;
    price(&admin, "volume_gib_hours", "normal", "0.002").await;
    for (meter, spec, unit_price) in [
        ("instance_hours", "basic.2c4g", "100"),
        ("vcpu_hours", "", "20"),
        ("volume_gib_hours", "high", "2"),
    ] {
        post(
            &admin,
            "/v1/prices",
            json!({"meter": meter, "spec": spec, "billing": "monthly", "unit_price": unit_price,
                "effective_from": "2030-01-01T00:00:00Z"}),
        )
        .await;
    }
    rejects(
        &admin,
        "/v1/prices",
        json!({"meter": "subscription_months", "unit_price": "1"}),
        400,
        "meter: subscription_months is not priced",
    )
    .await;
    meter_at(&ts, t0()).await;

    // A two-month instance through the catalog.
    let svc = post(
        &admin,
        "/v1/services",
        json!({"name": "ECS monthly", "kind": "instance", "parameters": [
            {"name": "name"},
            {"name": "flavor", "mode": "locked", "default": "basic.2c4g"},
            {"name": "image", "mode": "locked", "default": id(&img)}]}),
    )
    .await;
    let form = |months: Value| {
        json!({"service_id": id(&svc), "project_id": a.project,
            "parameters": {"name": "web"}, "subscription_months": months})
    };
    for months in [json!(0), json!(37)] {
        let want = "subscription_months: must be a whole number of months";
        rejects(&member, "/v1/requests", form(months), 400, want).await;
    }
    let req = post(&member, "/v1/requests", form(json!(2))).await;
    assert_eq!(req["subscription_months"], 2);
    post(
        &admin,
        &format!("/v1/requests/{}/approve", id(&req)),
        json!({}),
    )
    .await;
    let done = wait("the request", 60, || async {
        let r: Value = member
            .get(&format!("/v1/requests/{}", id(&req)), &[])
            .await
            .unwrap();
        (r["status"] == "completed" || r["status"] == "failed").then_some(r)
    })
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["status_reason"], "", "{done}");
    let vm = done["resources"][0]["id"].as_str().unwrap().to_string();
    until_status(&member, &vm, "running").await;
    let subs = subscriptions_of(&member, &vm).await;
    assert_eq!(subs.len(), 1, "{subs:?}");
    let s1 = subs[0].clone();
    // One instance-month (100) and two vCPU-months (2 × 20); memory has no monthly price.
    assert_eq!(s1["monthly_fee"], "140.00", "{s1}");
    assert_eq!(s1["total"], "280.00");
    assert_eq!(s1["months"], 2);
    assert_eq!(s1["request_id"], req["id"]);
    assert_eq!(s1["status"], "active");
    assert_eq!(s1["lines"].as_array().unwrap().len(), 2, "{s1}");
    assert_eq!(s1["ends_at"], "2030-05-01T00:00:00Z");
    let log: Value = ts
        .auditor()
        .await
        .get(
            "/v1/audit-events",
            &[("operation", "order_subscribe".into())],
        )
        .await
        .unwrap();
    let entry = &log["items"][0];
    assert_eq!(entry["object_id"], s1["id"], "{log}");
    assert_eq!(entry["result"], "success");

    // A one-month volume by the API, half an hour into the first hour.
    let vol = volume(&member, &a.project, "data", "high", 100).await;
    meter_at(&ts, at(30)).await;
    for months in [0, 37] {
        let body = json!({"resource_id": vol, "months": months});
        rejects(&member, "/v1/subscriptions", body, 400, "months: must be").await;
    }
    // Another tenant cannot see the volume, let alone buy or read its subscription.
    assert_eq!(
        status(
            outsider
                .post::<Value>(
                    "/v1/subscriptions",
                    &json!({"resource_id": vol, "months": 1})
                )
                .await
        ),
        404
    );
    let s2 = post(
        &member,
        "/v1/subscriptions",
        json!({"resource_id": vol, "months": 1}),
    )
    .await;
    assert_eq!(s2["monthly_fee"], "200.00", "{s2}");
    assert_eq!(s2["starts_at"], "2030-03-01T00:00:00Z");
    assert_eq!(s2["ends_at"], "2030-04-01T00:00:00Z");
    rejects(
        &member,
        "/v1/subscriptions",
        json!({"resource_id": vol, "months": 1}),
        409,
        "already subscribed",
    )
    .await;
    for path in [
        format!("/v1/subscriptions/{}", id(&s2)),
        format!("/v1/subscriptions?resource_id={vol}"),
    ] {
        let r: Result<Value, _> = outsider.get(&path, &[]).await;
        match r {
            Err(e) => assert_eq!(e.status, 404, "{path}"),
            Ok(v) => assert_eq!(v, json!([]), "{path}"),
        }
    }
    assert_eq!(
        status(
            outsider
                .delete_json::<Value>(&format!("/v1/subscriptions/{}", id(&s2)))
                .await
        ),
        404
    );
    // A volume type without a monthly price can only be paid as it goes.
    let plain = volume(&member, &a.project, "plain", "normal", 10).await;
    meter_at(&ts, at(35)).await;
    rejects(
        &member,
        "/v1/subscriptions",
        json!({"resource_id": plain, "months": 1}),
        400,
        "resource_id: no monthly price",
    )
    .await;

    // An hour in, the volume grows to 150 GiB: 50 GiB beyond the subscription.
    meter_at(&ts, at(60)).await;
    let _: Value = member
        .post(
            &format!("/v1/volumes/{vol}/extend"),
            &json!({"size_gib": 150}),
        )
        .await
        .unwrap();
    wait("the extend", 60, || async {
        let v: Value = member
            .get(&format!("/v1/volumes/{vol}"), &[])
            .await
            .unwrap();
        (v["size_gib"] == 150 && v["status"] == "available").then_some(())
    })
    .await;
    meter_at(&ts, at(185)).await; // hours 0 and 1 closed
    let u = usage_of(&member, &vm).await;
    for hour in [t0(), at(60)] {
        for meter in ["instance_hours", "vcpu_hours"] {
            let r = record(&u, meter, hour);
            assert_eq!(r["amount"], "0.000000", "{r}");
            assert_eq!(r["subscription_id"], s1["id"], "{r}");
            assert_eq!(r["rated"], true);
        }
        let m = record(&u, "memory_gib_hours", hour);
        assert_eq!(m["amount"], "0.120000", "{m}");
        assert_eq!(m["subscription_id"], Value::Null);
    }
    let fees: Vec<&Value> = u
        .iter()
        .filter(|r| r["meter"] == "subscription_months")
        .collect();
    assert_eq!(fees.len(), 2, "one per month: {fees:?}");
    assert_eq!(fees[0]["amount"], "140.000000");
    assert_eq!(fees[1]["period_start"], "2030-04-01T00:00:00Z");
    let uv = usage_of(&member, &vol).await;
    assert_eq!(record(&uv, "volume_gib_hours", t0())["amount"], "0.000000");
    let h1 = record(&uv, "volume_gib_hours", at(60));
    assert_eq!(h1["quantity"], "150", "{h1}");
    assert_eq!(
        h1["amount"], "0.200000",
        "50 GiB-h beyond the subscription: {h1}"
    );

    // Bills carry the fee in the month it covers.
    let march: Value = member
        .get(
            "/v1/bills",
            &[
                ("project_id", a.project.clone()),
                ("month", "2030-03".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        line(
            &march,
            &vm,
            "subscription_months",
            s1["id"].as_str().unwrap()
        )["amount"],
        "140.00"
    );
    assert_eq!(
        line(
            &march,
            &vol,
            "subscription_months",
            s2["id"].as_str().unwrap()
        )["amount"],
        "200.00"
    );
    assert_eq!(
        line(&march, &vm, "vcpu_hours", "basic.2c4g")["subscription_id"],
        s1["id"]
    );
    assert_eq!(april_total(&member, &a.project).await, "140.00");

    // Cancelled at 3 h 20 min: covered through the hour it is in; April's fee is dropped.
    meter_at(&ts, at(200)).await;
    let c: Value = member
        .delete_json(&format!("/v1/subscriptions/{}", id(&s1)))
        .await
        .unwrap();
    assert_eq!(c["status"], "cancelled");
    assert_eq!(
        c["ends_at"],
        at(240).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(april_total(&member, &a.project).await, "0.00");
    let (code, _) = fails(
        member
            .post(
                &format!("/v1/subscriptions/{}/renew", id(&s1)),
                &json!({"months": 1}),
            )
            .await,
    )
    .await;
    assert_eq!(code, 409);
    meter_at(&ts, at(305)).await; // hours 3 and 4 closed
    let u = usage_of(&member, &vm).await;
    assert_eq!(record(&u, "vcpu_hours", at(180))["amount"], "0.000000");
    let after = record(&u, "vcpu_hours", at(240));
    assert_eq!(after["amount"], "0.240000", "pay-as-you-go again: {after}");
    assert_eq!(after["subscription_id"], Value::Null);

    // The volume's subscription renews, then ends with the volume.
    let r: Value = member
        .post(
            &format!("/v1/subscriptions/{}/renew", id(&s2)),
            &json!({"months": 2}),
        )
        .await
        .unwrap();
    assert_eq!(r["ends_at"], "2030-06-01T00:00:00Z");
    assert_eq!(r["months"], 3);
    assert_eq!(april_total(&member, &a.project).await, "200.00");
    volume_gone(&member, &vol).await;
    meter_at(&ts, at(310)).await;
    let ended = subscriptions_of(&member, &vol).await;
    assert_eq!(ended[0]["status"], "ended", "{ended:?}");
    assert_eq!(april_total(&member, &a.project).await, "0.00");
    let active: Vec<Value> = member
        .get("/v1/subscriptions", &[("active", "true".into())])
        .await
        .unwrap();
    assert!(active.is_empty(), "{active:?}");
    // The platform sees both; March keeps both fees.
    let all: Vec<Value> = admin.get("/v1/subscriptions", &[]).await.unwrap();
    assert_eq!(all.len(), 2);
    let march: Value = admin
        .get(
            "/v1/bills",
            &[
                ("project_id", a.project.clone()),
                ("month", "2030-03".into()),
            ],
        )
        .await
        .unwrap();
    assert!(cents(march["total"].as_str().unwrap()) > 34_000, "{march}");
    freeze_meter_clock(None);
}
