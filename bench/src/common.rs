//! What the benchmarks that run a whole control plane share: arguments, a configuration
//! on a fresh data directory, a small API client, latency rows, and the tiny guest set-up.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stratus_server::Config;

pub const ADMIN_PW: &str = "Bench-Passw0rd1";

pub struct Row {
    pub name: String,
    pub latencies: Vec<Duration>,
    pub wall: Duration,
}

impl Row {
    pub fn pct(&self, p: f64) -> f64 {
        let mut v = self.latencies.clone();
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
    }
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

pub fn config(dir: &Path, database: &str) -> anyhow::Result<Config> {
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.to_path_buf(),
        database: database.into(),
        ..Config::default()
    };
    cfg.rate_limit.requests_per_second = 0.0;
    cfg.local_agent.enabled = false;
    cfg.bootstrap.admin_password = Some(ADMIN_PW.into());
    cfg.bootstrap.secadmin_password = Some("Secur1ty-Passw0rd".into());
    cfg.bootstrap.auditor_password = Some("Check3r-Passw0rd".into());
    Ok(cfg)
}

/// A small API client on a shared connection pool.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Api {
    pub async fn login(url: &str) -> anyhow::Result<Api> {
        Api::login_as(url, "admin", ADMIN_PW).await
    }
    pub async fn login_as(url: &str, name: &str, password: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        let r: Value = http
            .post(format!("{url}/v1/auth/login"))
            .json(&json!({"name": name, "password": password}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Api {
            http,
            url: url.into(),
            token: r["token"].as_str().unwrap_or_default().into(),
        })
    }
    pub async fn call(
        &self,
        m: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status();
        let bytes = r.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "{path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn upload(&self, image: &str, data: Vec<u8>) -> anyhow::Result<Value> {
        let r = self
            .http
            .put(format!("{}/v1/images/{image}/file", self.url))
            .bearer_auth(&self.token)
            .body(data)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "upload: {v}");
        Ok(v)
    }
    pub async fn project(&self) -> anyhow::Result<String> {
        let org = self
            .post("/v1/organizations", json!({"name": "bench"}))
            .await?;
        let vdc = self
            .post("/v1/vdcs", json!({"org_id": org["id"], "name": "bench"}))
            .await?;
        let p = self
            .post(
                "/v1/projects",
                json!({"vdc_id": vdc["id"], "name": "bench"}),
            )
            .await?;
        Ok(p["id"].as_str().unwrap_or_default().into())
    }
}

/// The tiny flavor and image, and the local host up: what a real-guest benchmark needs.
pub async fn tiny_guest_setup(api: &Api, image: &Path) -> anyhow::Result<()> {
    api.post(
        "/v1/flavors",
        json!({"name": "tiny.1c256m", "vcpus": 1, "memory_mib": 256, "disk_gib": 1}),
    )
    .await?;
    let img = api
        .post(
            "/v1/images",
            json!({"name": "tiny", "disk_format": "qcow2"}),
        )
        .await?;
    api.upload(
        img["id"].as_str().unwrap_or_default(),
        std::fs::read(image)?,
    )
    .await?;
    let t = Instant::now();
    while api
        .get("/v1/hosts")
        .await?
        .as_array()
        .is_none_or(|h| h.iter().all(|h| h["state"] != "up"))
    {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "the local agent did not come up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// `total` requests spread over `clients` tasks; `make(i)` sends request `i`.
pub async fn load<F, Fut>(name: &str, total: usize, clients: usize, make: F) -> anyhow::Result<Row>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let make = std::sync::Arc::new(make);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (make, next) = (make.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                make(i).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(Row {
        name: name.into(),
        latencies,
        wall: start.elapsed(),
    })
}

/// A table of rows; the last column is each p50 as a multiple of `floor` (nginx's p50).
pub fn print(title: &str, rows: &[Row], floor: Option<f64>) {
    println!("\n{title}");
    println!(
        "{:<44} {:>6} {:>10} {:>10} {:>10} {:>12}",
        "operation", "n", "p50 ms", "p99 ms", "per s", "p50 / nginx"
    );
    for r in rows {
        let ratio = match floor {
            Some(f) if !r.name.starts_with("peer") => format!("{:.1}x", r.pct(0.5) / f),
            _ => "-".into(),
        };
        println!(
            "{:<44} {:>6} {:>10.3} {:>10.3} {:>10.0} {:>12}",
            r.name,
            r.latencies.len(),
            r.pct(0.5),
            r.pct(0.99),
            r.rate(),
            ratio
        );
    }
}

/// Simulated hosts (the real agent protocol, no QEMU) running until `stop` says so.
pub struct SimHosts {
    pub stop: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl SimHosts {
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What the simulated-host benchmarks share: a 1 MiB raw image, the `small.1c1g` flavor
/// and `hosts` simulated hosts, up. Returns the image's id and the hosts.
pub async fn sim_setup(api: &Api, dir: &Path, hosts: usize) -> anyhow::Result<(Value, SimHosts)> {
    let img = api
        .post("/v1/images", json!({"name": "bench", "disk_format": "raw"}))
        .await?;
    let img = api
        .upload(img["id"].as_str().unwrap_or_default(), vec![0u8; 1 << 20])
        .await?;
    api.post(
        "/v1/flavors",
        json!({"name": "small.1c1g", "vcpus": 1, "memory_mib": 1024, "disk_gib": 20}),
    )
    .await?;
    let token = api.post("/v1/hosts/join-tokens", json!({})).await?;
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let (url, tok, dir) = (
        api.url.clone(),
        token["token"].as_str().unwrap_or_default().to_string(),
        dir.join("sim"),
    );
    let task = tokio::spawn(async move {
        stratus_agent::sim::run_simulated(&url, &tok, hosts, &dir, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        })
        .await
    });
    let t = Instant::now();
    loop {
        let h = api.get("/v1/hosts").await?;
        let up = h
            .as_array()
            .map(|a| a.iter().filter(|h| h["state"] == "up").count())
            .unwrap_or(0);
        if up == hosts {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "simulated hosts did not come up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((img["id"].clone(), SimHosts { stop, task }))
}
