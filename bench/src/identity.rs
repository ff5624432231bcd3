//! Identity and tenancy benchmark (issue: foundation).
//!
//! Seeds a store with 1,000 VDCs, 20,000 users and 20,000 projects, starts the control
//! plane on it, and measures with 8 concurrent clients: login, token validation, project
//! create, project list (100 per page, filtered by VDC, as a VDC admin), and the quota
//! check. The peer is nginx answering a static file over the same loopback with the same
//! client: its numbers are the floor of what any HTTP service here can do, and the last
//! column is Stratus's p50 as a multiple of it.
//!
//! Usage: identity-bench [--database postgres://…] [--nginx URL] [--users N] [--projects N]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stratus_server::store::{NewUser, Store};
use stratus_server::Config;
use uuid::Uuid;

const CLIENTS: usize = 8;
const ADMIN_PW: &str = "Bench-Passw0rd1";

struct Sample {
    name: String,
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Sample {
    fn pct(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }
}

/// Run `per_client` requests on each of CLIENTS tasks; `make` builds request `i`.
async fn load<F, Fut>(name: &str, per_client: usize, make: F) -> Sample
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t = Instant::now();
                assert!(make(c, i).await, "request failed");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    Sample {
        name: name.to_string(),
        latencies,
        wall: start.elapsed(),
    }
}

/// The benchmark's few long-lived strings, shared by every client task.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn seed(
    store: &Store,
    vdcs: usize,
    users: usize,
    projects: usize,
) -> anyhow::Result<(Uuid, Uuid)> {
    let err = |e: stratus_server::error::Error| anyhow::anyhow!("{e}");
    let org = store.org_create("基准测试局", "").await.map_err(err)?;
    // A tree: 10 top-level VDCs, each with a 4-level chain, the rest spread below them.
    let mut all = Vec::new();
    let tops: Vec<_> = {
        let mut v = Vec::new();
        for i in 0..10 {
            v.push(
                store
                    .vdc_create(org.id, None, &format!("top{i}"), "")
                    .await
                    .map_err(err)?,
            );
        }
        v
    };
    all.extend(tops.iter().cloned());
    while all.len() < vdcs {
        let parent = all[all.len() / 5].clone();
        if parent.level >= 5 {
            let p = tops[all.len() % tops.len()].clone();
            all.push(
                store
                    .vdc_create(org.id, Some(&p), &format!("v{}", all.len()), "")
                    .await
                    .map_err(err)?,
            );
        } else {
            all.push(
                store
                    .vdc_create(org.id, Some(&parent), &format!("v{}", all.len()), "")
                    .await
                    .map_err(err)?,
            );
        }
    }
    // One argon2 hash for every seeded user: hashing costs the same per login, not per seed.
    let hash = stratus_server::auth::hash_password("Seed-Passw0rd1").map_err(err)?;
    for i in 0..users {
        let vdc = &all[i % all.len()];
        store
            .user_create(NewUser {
                name: &format!("user{i}"),
                password_hash: &hash,
                vdc_id: Some(vdc.id),
                display_name: "",
                email: "",
                description: "",
            })
            .await
            .map_err(err)?;
    }
    for i in 0..projects {
        let vdc = &all[i % all.len()];
        store
            .project_create(org.id, vdc.id, &format!("project{i}"), "")
            .await
            .map_err(err)?;
    }
    // The busiest VDC of the benchmark: a top-level one, 200+ projects directly in it.
    let target = tops[0].id;
    for i in 0..200 {
        store
            .project_create(org.id, target, &format!("bench{i}"), "")
            .await
            .map_err(err)?;
    }
    Ok((org.id, target))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let database = arg("--database").unwrap_or_else(|| "sqlite".into());
    let users: usize = arg("--users")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(20_000);
    let projects: usize = arg("--projects")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(20_000);
    let vdcs: usize = arg("--vdcs")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1_000);
    let nginx = arg("--nginx");
    let dir = std::env::temp_dir().join(format!("stratus-bench-{}", Uuid::new_v4().simple()));
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.clone(),
        database: database.clone(),
        ..Config::default()
    };
    cfg.rate_limit.requests_per_second = 0.0;
    cfg.bootstrap.admin_password = Some(ADMIN_PW.into());
    cfg.bootstrap.secadmin_password = Some("Secur1ty-Passw0rd".into());
    cfg.bootstrap.auditor_password = Some("Check3r-Passw0rd".into());
    let server = stratus_server::start(cfg).await?;
    let url = format!("http://{}", server.addr);
    let backend = server.app.store.db.backend.as_str();
    eprintln!("seeding {vdcs} VDCs, {users} users, {projects} projects on {backend}…");
    let t = Instant::now();
    let (_org, target) = seed(&server.app.store, vdcs, users, projects).await?;
    eprintln!("seeded in {:.1} s", t.elapsed().as_secs_f64());

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let login = |name: &str, pw: &str| {
        let http = http.clone();
        let url = url.clone();
        let body = json!({"name": name, "password": pw});
        async move {
            let r: Value = http
                .post(format!("{url}/v1/auth/login"))
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(r["token"].as_str().unwrap_or_default().to_string())
        }
    };
    let admin = login("admin", ADMIN_PW).await?;
    // A VDC admin of the target VDC: lists are filtered by visibility as well as by VDC.
    let sec = login("secadmin", "Secur1ty-Passw0rd").await?;
    let va: Value = http
        .post(format!("{url}/v1/users"))
        .bearer_auth(&sec)
        .json(&json!({"name": "bench-va", "password": ADMIN_PW, "vdc_id": target}))
        .send()
        .await?
        .json()
        .await?;
    http.post(format!("{url}/v1/grants")).bearer_auth(&sec).json(&json!({"user_id": va["id"], "role": "vdc_admin", "scope_type": "vdc", "scope_id": target})).send().await?;
    let va_token = login("bench-va", ADMIN_PW).await?;
    let project: Value = http
        .get(format!("{url}/v1/projects?vdc_id={target}&limit=1"))
        .bearer_auth(&va_token)
        .send()
        .await?
        .json()
        .await?;
    let project_id = project["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let mut samples = Vec::new();
    macro_rules! http_load {
        ($name:expr, $n:expr, |$c:ident, $i:ident, $h:ident, $u:ident| $body:expr) => {{
            let $h = http.clone();
            let $u = url.clone();
            samples.push(
                load($name, $n, move |$c, $i| {
                    let $h = $h.clone();
                    let $u = $u.clone();
                    async move {
                        match $body.await {
                            Ok(r) if r.status().is_success() => true,
                            Ok(r) => {
                                eprintln!(
                                    "{}: HTTP {} {}",
                                    $name,
                                    r.status(),
                                    r.text().await.unwrap_or_default()
                                );
                                false
                            }
                            Err(e) => {
                                eprintln!("{}: {e}", $name);
                                false
                            }
                        }
                    }
                })
                .await,
            );
        }};
    }
    http_load!("login (argon2id)", 5, |_c, _i, h, u| h
        .post(format!("{u}/v1/auth/login"))
        .json(&json!({"name": "admin", "password": ADMIN_PW}))
        .send());
    let tok: &'static str = leak(&va_token);
    http_load!("authenticated GET /v1/roles", 500, |_c, _i, h, u| h
        .get(format!("{u}/v1/roles"))
        .bearer_auth(tok)
        .send());
    let tok: &'static str = leak(&admin);
    http_load!("project create", 100, |c, i, h, u| h
        .post(format!("{u}/v1/projects"))
        .bearer_auth(tok)
        .json(
            &json!({"vdc_id": target, "name": format!("new-{c}-{i}-{}", Uuid::new_v4().simple())})
        )
        .send());
    let tok: &'static str = leak(&va_token);
    http_load!("project list (100, by VDC)", 200, |_c, _i, h, u| h
        .get(format!("{u}/v1/projects?vdc_id={target}&limit=100"))
        .bearer_auth(tok)
        .send());
    let tok: &'static str = leak(&va_token);
    let pid: &'static str = leak(&project_id);
    http_load!("quota check (project)", 300, |_c, _i, h, u| h
        .get(format!("{u}/v1/projects/{pid}/quota"))
        .bearer_auth(tok)
        .send());
    if let Some(n) = &nginx {
        let n = n.clone();
        let h = http.clone();
        samples.push(
            load("peer: nginx static file", 500, move |_c, _i| {
                let h = h.clone();
                let n = n.clone();
                async move {
                    match h.get(&n).send().await {
                        Ok(r) if r.status().is_success() => true,
                        other => {
                            eprintln!("peer: {other:?}");
                            false
                        }
                    }
                }
            })
            .await,
        );
    }

    // Token validation itself, in process: hash + cache lookup (the path every request takes).
    let auth = &server.app.auth;
    let store = &server.app.store;
    auth.bearer(store, &va_token)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut lat = Vec::with_capacity(20_000);
    let t0 = Instant::now();
    for _ in 0..20_000 {
        let t = Instant::now();
        let _ = auth.bearer(store, &va_token).await;
        lat.push(t.elapsed());
    }
    samples.push(Sample {
        name: "token validation (in process)".into(),
        latencies: lat,
        wall: t0.elapsed(),
    });

    let floor = samples
        .iter()
        .find(|s| s.name.starts_with("peer"))
        .map(|s| s.pct(0.5));
    println!("\nStratus identity benchmark — {backend}, {vdcs} VDCs, {users} users, {projects} projects, {CLIENTS} concurrent clients");
    println!(
        "{:<32} {:>7} {:>10} {:>10} {:>10} {:>12}",
        "operation", "n", "p50 ms", "p99 ms", "req/s", "p50 / nginx"
    );
    for s in &samples {
        let ratio = floor
            .map(|f| format!("{:.1}x", s.pct(0.5).as_secs_f64() / f.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        let ratio = if s.name.starts_with("peer") || s.name.contains("in process") {
            "-".to_string()
        } else {
            ratio
        };
        println!(
            "{:<32} {:>7} {:>10.4} {:>10.4} {:>10.0} {:>12}",
            s.name,
            s.latencies.len(),
            s.pct(0.5).as_secs_f64() * 1000.0,
            s.pct(0.99).as_secs_f64() * 1000.0,
            s.latencies.len() as f64 / s.wall.as_secs_f64(),
            ratio
        );
    }
    println!("targets: project list p99 < 20 ms; token validation < 0.100 ms");
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
