//! Compute benchmark (issue: compute and images).
//!
//! Part 1, control plane at scale: 100 simulated hosts (the agent protocol without QEMU),
//! 10,000 instances created one per call by 8 concurrent clients. Reports create-call
//! latency and instances accepted per second, the time until all are `running`, and list
//! latency at that size — beside nginx serving a static file over the same loopback (the
//! floor of any HTTP answer here).
//!
//! Part 2, real guests: time from `POST /v1/instances` to `running` and to the guest's
//! ready marker for the tiny image under QEMU (TCG here), beside the raw `qemu-system`
//! boot of the same guest to the same marker, measured in the same run. The difference
//! is what Stratus adds.
//!
//! Usage: compute-bench [--database postgres://…] [--nginx URL] [--instances N (0: skip)] [--hosts N]
//!                      [--image target/images/tiny.qcow2] [--boots N]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

#[path = "common.rs"]
mod common;
use common::*;

const CLIENTS: usize = 8;

async fn scale(
    database: &str,
    nginx: Option<String>,
    instances: usize,
    hosts: usize,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("stratus-bench-{}", Uuid::new_v4().simple()));
    let server = stratus_server::start(config(&dir, database)?).await?;
    let url = format!("http://{}", server.addr);
    let api = Api::login(&url).await?;
    let project = api.project().await?;
    let (img_id, sim) = sim_setup(&api, &dir, hosts).await?;
    eprintln!(
        "{hosts} simulated hosts up; creating {instances} instances on {}…",
        server.app.store.db.backend.as_str()
    );
    let mut rows = Vec::new();
    let (a, p, i) = (api.clone(), project.clone(), img_id.clone());
    let created = Instant::now();
    rows.push(
        load("instance create (1 per call)", instances, CLIENTS, move |n| {
            let (a, p, i) = (a.clone(), p.clone(), i.clone());
            async move {
                let v = a
                    .post(
                        "/v1/instances",
                        json!({"name": format!("vm{n}"), "project_id": p, "flavor": "small.1c1g", "image": i}),
                    )
                    .await?;
                anyhow::ensure!(v[0]["status"] == "building", "not placed: {}", v[0]);
                Ok(())
            }
        })
        .await?,
    );
    // Until every instance is running on its (simulated) host.
    loop {
        let page = api
            .get(&format!(
                "/v1/instances?status=building&limit=1&project_id={project}"
            ))
            .await?;
        let busy = api
            .get(&format!(
                "/v1/instances?status=busy&limit=1&project_id={project}"
            ))
            .await?;
        if page["items"].as_array().is_some_and(|a| a.is_empty())
            && busy["items"].as_array().is_some_and(|a| a.is_empty())
        {
            break;
        }
        anyhow::ensure!(
            created.elapsed() < Duration::from_secs(1200),
            "instances did not converge"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged = created.elapsed();
    for (name, path) in [
        (
            "instance list (first 100 of 10k)",
            "/v1/instances?limit=100".to_string(),
        ),
        (
            "instance list (100, by name, project filter)",
            format!("/v1/instances?limit=100&sort=name&project_id={project}"),
        ),
        (
            "instance list (status=running, 100)",
            "/v1/instances?limit=100&status=running".to_string(),
        ),
        ("host list (100 hosts)", "/v1/hosts".to_string()),
    ] {
        let (a, path) = (api.clone(), path.clone());
        rows.push(
            load(name, 800, CLIENTS, move |_| {
                let (a, path) = (a.clone(), path.clone());
                async move {
                    a.get(&path).await?;
                    Ok(())
                }
            })
            .await?,
        );
    }
    let mut floor = None;
    if let Some(n) = nginx {
        let http = reqwest::Client::new();
        let row = load("peer: nginx static file", 4000, CLIENTS, move |_| {
            let (http, n) = (http.clone(), n.clone());
            async move {
                http.get(&n)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                Ok(())
            }
        })
        .await?;
        floor = Some(row.pct(0.5));
        rows.push(row);
    }
    print(
        &format!(
            "Control plane, {} store: {instances} instances on {hosts} simulated hosts (all running {:.1} s after the first create)",
            server.app.store.db.backend.as_str(),
            converged.as_secs_f64()
        ),
        &rows,
        floor,
    );
    sim.finish().await;
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Boot the image directly with QEMU (the agent's own command line, no control plane) and
/// time it to the ready marker.
async fn raw_boot(image: &Path, work: &Path) -> anyhow::Result<Duration> {
    use stratus_agent::{accel::Accel, cidata, disk, qemu};
    let id = Uuid::new_v4();
    let dir = qemu::VmDir::new(work, id);
    dir.create()?;
    disk::overlay(image, &dir.root_disk(), 1 << 30).await?;
    let name = "rawboot";
    cidata::build(
        &work.join("cidata-src").join(id.to_string()),
        &dir.cidata(),
        &cidata::Metadata {
            instance_id: &id.to_string(),
            hostname: name,
            ssh_keys: &[],
            user_data: None,
        },
    )
    .await?;
    let spec = qemu::VmSpec {
        id,
        vcpus: 1,
        memory_mib: 256,
        accel: Accel::Tcg,
        root_disk: dir.root_disk(),
        cidata: Some(dir.cidata()),
        vnc_listen: "127.0.0.1".into(),
        vnc_port: qemu::free_vnc_port("127.0.0.1", &[])?,
        volumes: Vec::new(),
        boot: None,
        nics: Vec::new(),
    };
    let t = Instant::now();
    qemu::start(&spec, &dir, false).await?;
    let marker = format!("STRATUS-READY hostname={name}");
    loop {
        let text = std::fs::read_to_string(dir.console()).unwrap_or_default();
        if text.contains(&marker) {
            break;
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(180), "raw boot timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t.elapsed();
    qemu::stop(&dir, id, Duration::ZERO).await?;
    Ok(took)
}

async fn guests(image: &Path, boots: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("stratus-bench-{}", Uuid::new_v4().simple()));
    let mut cfg = config(&dir, "sqlite")?;
    cfg.local_agent.enabled = true;
    cfg.local_agent.hypervisor = "tcg".into();
    cfg.compute.report_interval_secs = 2;
    let server = stratus_server::start(cfg).await?;
    let api = Api::login(&format!("http://{}", server.addr)).await?;
    let project = api.project().await?;
    tiny_guest_setup(&api, image).await?;
    let mut to_running = Vec::new();
    let mut to_ready = Vec::new();
    let mut to_ready_on_host = Vec::new();
    let mut raw = Vec::new();
    for n in 0..boots {
        // Alternate, so both see the same machine state.
        raw.push(raw_boot(image, &dir.join("raw")).await?);
        let name = format!("bench{n}");
        let t = Instant::now();
        let v = api
            .post(
                "/v1/instances",
                json!({"name": name, "project_id": project, "flavor": "tiny.1c256m", "image": "tiny"}),
            )
            .await?;
        let id = v[0]["id"].as_str().unwrap_or_default().to_string();
        let marker = format!("STRATUS-READY hostname={name}");
        // The guest's own console file on the host: when the guest is really up, without
        // waiting for the agent's next report to carry it to the API.
        let console_file = dir
            .join("agent")
            .join("instances")
            .join(&id)
            .join("console.log");
        let mut on_host = None;
        let mut running = None;
        loop {
            if on_host.is_none()
                && std::fs::read_to_string(&console_file).is_ok_and(|t| t.contains(&marker))
            {
                on_host = Some(t.elapsed());
            }
            let i = api.get(&format!("/v1/instances/{id}")).await?;
            anyhow::ensure!(i["status"] != "error", "boot failed: {i}");
            if running.is_none() && i["status"] == "running" {
                running = Some(t.elapsed());
            }
            if running.is_some() {
                let r = api
                    .http
                    .get(format!("{}/v1/instances/{id}/console-log", api.url))
                    .bearer_auth(&api.token)
                    .send()
                    .await?
                    .text()
                    .await?;
                if r.contains(&marker) {
                    break;
                }
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(180),
                "instance boot timed out"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        to_ready.push(t.elapsed());
        to_ready_on_host.push(on_host.unwrap_or_else(|| t.elapsed()));
        to_running.push(running.unwrap_or_default());
        api.call(
            reqwest::Method::DELETE,
            &format!("/v1/instances/{id}"),
            None,
        )
        .await?;
    }
    let wall = Duration::from_secs(1);
    let rows = [
        Row {
            name: "raw qemu-system: launch → ready marker".into(),
            latencies: raw,
            wall,
        },
        Row {
            name: "Stratus: create → running".into(),
            latencies: to_running,
            wall,
        },
        Row {
            name: "Stratus: create → ready marker (guest console)".into(),
            latencies: to_ready_on_host,
            wall,
        },
        Row {
            name: "Stratus: create → ready marker (API console log)".into(),
            latencies: to_ready,
            wall,
        },
    ];
    println!("\nReal guests: tiny image, 1 vCPU, 256 MiB, TCG ({boots} boots each, alternating)");
    println!(
        "{:<48} {:>6} {:>10} {:>10}",
        "measure", "n", "p50 ms", "p99 ms"
    );
    for r in &rows {
        println!(
            "{:<48} {:>6} {:>10.0} {:>10.0}",
            r.name,
            r.latencies.len(),
            r.pct(0.5),
            r.pct(0.99)
        );
    }
    println!(
        "overhead of Stratus to the guest being up (p50): {:.0} ms; the API's console log adds up to one agent report interval (2 s here)",
        rows[2].pct(0.5) - rows[0].pct(0.5)
    );
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let database = arg("--database").unwrap_or_else(|| "sqlite".into());
    let instances: usize = arg("--instances")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(10_000);
    let hosts: usize = arg("--hosts")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(100);
    let boots: usize = arg("--boots").map(|v| v.parse()).transpose()?.unwrap_or(5);
    // Absolute: overlays record their backing file's path.
    let image = std::fs::canonicalize(PathBuf::from(
        arg("--image").unwrap_or_else(|| "target/images/tiny.qcow2".into()),
    ))?;
    if instances > 0 {
        scale(&database, arg("--nginx"), instances, hosts).await?;
    }
    if database == "sqlite" && boots > 0 {
        guests(&image, boots).await?;
    }
    Ok(())
}
