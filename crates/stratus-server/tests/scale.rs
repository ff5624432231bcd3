//! Control-plane scale with the simulated agent (a test instrument: the real agent protocol,
//! no QEMU): 10,000 instances over 100 hosts in one availability zone (spec: one AZ holds
//! at least 10,000 VMs). Timings live in bench/, not here.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const HOSTS: usize = 100;
const INSTANCES: usize = 10_000;
const PER_CALL: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_instances_on_a_hundred_simulated_hosts() {
    let ts = TestServer::start_with(|c| {
        c.compute.report_interval_secs = 5;
        c.compute.host_down_after_secs = 120;
    })
    .await;
    let admin = ts.admin().await;
    let t = tree(&admin, "A").await;
    let img = raw_image(&admin, None).await;
    // 100 hosts of 64 CPUs and 256 GiB hold 10,000 of these within the overcommit ratios.
    let _: Value = admin
        .post(
            "/v1/flavors",
            &json!({"name": "small.1c1g", "vcpus": 1, "memory_mib": 1024, "disk_gib": 20}),
        )
        .await
        .unwrap();
    let token: Value = admin
        .post("/v1/hosts/join-tokens", &json!({}))
        .await
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let url = ts.url.clone();
    let sim_dir = ts.dir.join("sim");
    let tok = token["token"].as_str().unwrap().to_string();
    let sim = tokio::spawn(async move {
        let mut rx = stop_rx;
        stratus_agent::sim::run_simulated(&url, &tok, HOSTS, &sim_dir, async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
        if hosts.iter().filter(|h| h["state"] == "up").count() == HOSTS {
            break;
        }
        assert!(Instant::now() < deadline, "simulated hosts did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 10,000 instances, 100 per call, four callers at a time.
    let mut calls = tokio::task::JoinSet::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..4 {
        let (c, p, i, next) = (admin.clone(), t.project.clone(), id(&img), next.clone());
        calls.spawn(async move {
            let mut created = 0;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= INSTANCES / PER_CALL {
                    return created;
                }
                let v: Vec<Value> = c
                    .post(
                        "/v1/instances",
                        &json!({"name": format!("vm{n}"), "project_id": p, "flavor": "small.1c1g",
                            "image": i, "count": PER_CALL}),
                    )
                    .await
                    .unwrap();
                if let Some(odd) = v
                    .iter()
                    .find(|i| i["status"] != "building" && i["status"] != "running")
                {
                    panic!("not placed: {odd}");
                }
                created += v.len();
            }
        });
    }
    let mut total = 0;
    while let Some(n) = calls.join_next().await {
        total += n.unwrap();
    }
    assert_eq!(total, INSTANCES);

    // Every one becomes running as the simulated hosts converge.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let running = list_all(
            &admin,
            "/v1/instances",
            vec![("status", "running".into()), ("limit", "1000".into())],
        )
        .await
        .len();
        if running == INSTANCES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {running} of {INSTANCES} running"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Spread placement: every host carries its share; allocation matches the instances.
    let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
    let counts: Vec<i64> = hosts
        .iter()
        .map(|h| h["instance_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), INSTANCES as i64);
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 2, "unbalanced placement: {min}..{max}");
    for h in &hosts {
        assert_eq!(
            h["allocated_vcpus"].as_i64().unwrap(),
            h["instance_count"].as_i64().unwrap()
        );
        assert_eq!(h["facts"]["simulated"], true);
    }
    let q: Value = admin
        .get(&format!("/v1/projects/{}/quota", t.project), &[])
        .await
        .unwrap();
    let used = q["levels"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == "instances")
        .unwrap()["used"]
        .clone();
    assert_eq!(used, INSTANCES as i64);
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");

    // Pages stay consistent at this size: a filtered, sorted walk sees each instance once.
    let by_name = list_all(
        &admin,
        "/v1/instances",
        vec![("sort", "name".into()), ("limit", "777".into())],
    )
    .await;
    let mut ids: Vec<&str> = by_name.iter().map(|v| v["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), INSTANCES);

    let _ = stop_tx.send(true);
    sim.await.unwrap().unwrap();
    ts.stop().await;
}
