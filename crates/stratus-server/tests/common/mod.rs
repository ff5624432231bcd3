//! Test harness: a real control plane on port 0 with a fresh store — SQLite in a temporary
//! directory, or a new PostgreSQL database when `STRATUS_TEST_DATABASE` holds a server URL.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{json, Value};
use sqlx::Connection;
use stratus_client::{Auth, Client};
use stratus_server::{Config, Server};
use uuid::Uuid;

pub const ADMIN_PW: &str = "Platform-Passw0rd";
pub const SECADMIN_PW: &str = "Security-Passw0rd";
pub const AUDITOR_PW: &str = "Checker-Passw0rd";
pub const USER_PW: &str = "User-Passw0rd1";

pub struct TestServer {
    pub server: Option<Server>,
    pub url: String,
    pub dir: PathBuf,
    pub config: Config,
}

/// The database setting for a fresh store: `sqlite`, or a new database on the PostgreSQL
/// server named by `STRATUS_TEST_DATABASE`.
pub async fn fresh_database() -> String {
    match std::env::var("STRATUS_TEST_DATABASE") {
        Ok(base) if base.starts_with("postgres") => {
            let name = format!("stratus_test_{}", Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .expect("connect to the test PostgreSQL server");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let (prefix, _) = base
                .rsplit_once('/')
                .expect("postgres URL with a database name");
            format!("{prefix}/{name}")
        }
        _ => "sqlite".to_string(),
    }
}

pub fn test_config(dir: &std::path::Path, database: String) -> Config {
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        database,
        sqlite_synchronous: "normal".into(),
        ..Config::default()
    };
    cfg.rate_limit.requests_per_second = 0.0;
    cfg.bootstrap.admin_password = Some(ADMIN_PW.into());
    cfg.bootstrap.secadmin_password = Some(SECADMIN_PW.into());
    cfg.bootstrap.auditor_password = Some(AUDITOR_PW.into());
    // Tests that need guests start an agent themselves.
    cfg.local_agent.enabled = false;
    cfg.s3.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg
}

/// A well-formed OpenSSH ed25519 public key (random key material).
pub fn ssh_key() -> String {
    use base64::Engine;
    let mut blob = Vec::new();
    for part in [b"ssh-ed25519".to_vec(), Uuid::new_v4().as_bytes().repeat(2)] {
        blob.extend((part.len() as u32).to_be_bytes());
        blob.extend(part);
    }
    format!(
        "ssh-ed25519 {} test@stratus",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// Upload `data` as the image's file; returns the status and the JSON answer.
pub async fn upload(c: &Client, image: &str, data: Vec<u8>) -> (u16, Value) {
    let r = c
        .send_raw(
            reqwest::Method::PUT,
            &format!("/v1/images/{image}/file"),
            &[],
            Some(data),
        )
        .await
        .unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// An active raw image (1 MiB of zeros) owned by `project`, or public without one.
pub async fn raw_image(c: &Client, project: Option<&str>) -> Value {
    let mut body = json!({"name": format!("raw-{}", &Uuid::new_v4().simple().to_string()[..8]), "disk_format": "raw"});
    if let Some(p) = project {
        body["project_id"] = json!(p);
    }
    let img: Value = c.post("/v1/images", &body).await.unwrap();
    let (st, v) = upload(c, &id(&img), vec![0u8; 1 << 20]).await;
    assert_eq!(st, 200, "{v}");
    v
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stratus-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tiny guest image `scripts/build-tiny-image` makes (the tests' real guest).
pub fn tiny_image() -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/images/tiny.qcow2");
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-tiny-image",
        p.display()
    );
    p
}

/// What a test with real guests needs: the `tiny.1c256m` flavor, the tiny image as the
/// public image `tiny`, and the local agent's host up.
pub async fn tiny_guest_setup(admin: &Client) {
    let _: Value = admin
        .post(
            "/v1/flavors",
            &json!({"name": "tiny.1c256m", "vcpus": 1, "memory_mib": 256, "disk_gib": 1}),
        )
        .await
        .unwrap();
    let img: Value = admin
        .post(
            "/v1/images",
            &json!({"name": "tiny", "disk_format": "qcow2", "visibility": "public"}),
        )
        .await
        .unwrap();
    let (st, v) = upload(admin, &id(&img), std::fs::read(tiny_image()).unwrap()).await;
    assert_eq!(st, 200, "{v}");
    wait("the local host", 60, || async {
        let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
        hosts.first().filter(|h| h["state"] == "up").cloned()
    })
    .await;
}

/// A control plane whose local agent runs real guests under TCG and reports every 2 s:
/// `TestServer::start_with(tcg_guests)`.
pub fn tcg_guests(c: &mut Config) {
    c.local_agent.enabled = true;
    c.local_agent.hypervisor = "tcg".into();
    c.compute.report_interval_secs = 2;
}

/// A project's usage of one quota resource.
pub async fn quota_used(c: &Client, project: &str, resource: &str) -> i64 {
    let q: Value = c
        .get(&format!("/v1/projects/{project}/quota"), &[])
        .await
        .unwrap();
    q["levels"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == resource)
        .unwrap_or_else(|| panic!("no quota line {resource}: {q}"))["used"]
        .as_i64()
        .unwrap()
}

/// POST that must succeed; its answer.
pub async fn post(c: &Client, path: &str, body: Value) -> Value {
    c.post(path, &body)
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// The error of a call that must fail: (status, message).
pub async fn fails(r: Result<Value, stratus_client::ClientError>) -> (u16, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => (status::<Value>(Err(e.clone())), e.to_string()),
    }
}

/// Simulated hosts (the real agent protocol, no QEMU) until the sender says stop.
pub async fn simulated_hosts(
    ts: &TestServer,
    admin: &Client,
    n: usize,
) -> tokio::sync::watch::Sender<bool> {
    let token: Value = post(admin, "/v1/hosts/join-tokens", json!({})).await;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (url, dir) = (ts.url.clone(), ts.dir.join("sim"));
    let tok = token["token"].as_str().unwrap().to_string();
    tokio::spawn(async move {
        stratus_agent::sim::run_simulated(&url, &tok, n, &dir, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        })
        .await
    });
    wait("the simulated hosts", 60, || async {
        let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
        (hosts.iter().filter(|h| h["state"] == "up").count() == n).then_some(())
    })
    .await;
    stop_tx
}

/// Poll `f` until it gives a value, for at most `secs` seconds (failing the test then).
pub async fn wait<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// A test that fails midway leaves no guest, dnsmasq, router, device or table of its local
/// agent behind to slow down or confuse the tests after it (QEMU runs daemonized: it
/// outlives the test process's tasks).
impl Drop for TestServer {
    fn drop(&mut self) {
        if !self.config.local_agent.enabled {
            return;
        }
        let state = self
            .config
            .local_agent
            .state_dir
            .clone()
            .unwrap_or_else(|| self.dir.join("agent"));
        // The test's runtime (one thread) is blocked here, so its agent cannot start again
        // what is removed; the cleanup runs on a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if state.exists() {
                    if let Err(e) = stratus_agent::network::testing::remove_all(&state).await {
                        eprintln!("cleaning up {}: {e:#}", state.display());
                    }
                }
            });
        })
        .join();
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = temp_dir();
        let mut cfg = test_config(&dir, fresh_database().await);
        tweak(&mut cfg);
        let server = stratus_server::start(cfg.clone())
            .await
            .expect("server starts");
        let url = format!("http://{}", server.addr);
        // Later restarts keep the address, so clients and agents keep working.
        cfg.listen = server.addr;
        cfg.s3.listen = server.s3_addr;
        TestServer {
            server: Some(server),
            url,
            dir,
            config: cfg,
        }
    }

    /// Stop the control plane (and its local agent) and start it again on the same data.
    pub async fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
        let server = stratus_server::start(self.config.clone())
            .await
            .expect("server restarts");
        self.server = Some(server);
    }

    pub fn anon(&self) -> Client {
        Client::new(&self.url, Auth::None)
    }

    pub async fn login(&self, name: &str, password: &str) -> Client {
        let r: Value = self
            .anon()
            .post(
                "/v1/auth/login",
                &json!({"name": name, "password": password}),
            )
            .await
            .unwrap_or_else(|e| panic!("login {name}: {e}"));
        Client::new(
            &self.url,
            Auth::Token(r["token"].as_str().unwrap().to_string()),
        )
    }

    pub async fn admin(&self) -> Client {
        self.login("admin", ADMIN_PW).await
    }
    pub async fn secadmin(&self) -> Client {
        self.login("secadmin", SECADMIN_PW).await
    }
    pub async fn auditor(&self) -> Client {
        self.login("auditor", AUDITOR_PW).await
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// Every item of a list, following `next` cursors page by page.
pub async fn list_all(c: &Client, path: &str, mut q: Vec<(&'static str, String)>) -> Vec<Value> {
    let mut items = Vec::new();
    loop {
        let page: Value = c.get(path, &q).await.unwrap();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => {
                q.retain(|(k, _)| *k != "next");
                q.push(("next", n.to_string()));
            }
            None => return items,
        }
    }
}

/// Status code of a failed call (panics if it succeeded).
pub fn status<T: std::fmt::Debug>(r: Result<T, stratus_client::ClientError>) -> u16 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.status,
    }
}

/// A small organization: org → top VDC → child VDC → project.
pub struct Tree {
    pub org: String,
    pub top: String,
    pub child: String,
    pub project: String,
}

pub async fn tree(admin: &Client, name: &str) -> Tree {
    let org: Value = admin
        .post("/v1/organizations", &json!({"name": name}))
        .await
        .unwrap();
    let top: Value = admin
        .post("/v1/vdcs", &json!({"org_id": id(&org), "name": "top"}))
        .await
        .unwrap();
    let child: Value = admin
        .post("/v1/vdcs", &json!({"parent_id": id(&top), "name": "child"}))
        .await
        .unwrap();
    let project: Value = admin
        .post(
            "/v1/projects",
            &json!({"vdc_id": id(&child), "name": "proj"}),
        )
        .await
        .unwrap();
    Tree {
        org: id(&org),
        top: id(&top),
        child: id(&child),
        project: id(&project),
    }
}

/// Create a user (as the security admin) in `vdc` and grant `role` on `scope` (vdc or project).
pub async fn user_with_role(
    ts: &TestServer,
    sec: &Client,
    name: &str,
    vdc: Option<&str>,
    role: Option<(&str, &str, &str)>,
) -> (String, Client) {
    let u: Value = sec
        .post(
            "/v1/users",
            &json!({"name": name, "password": USER_PW, "vdc_id": vdc}),
        )
        .await
        .unwrap();
    if let Some((role, scope_type, scope_id)) = role {
        let body = if scope_type == "platform" {
            json!({"user_id": id(&u), "role": role, "scope_type": "platform"})
        } else {
            json!({"user_id": id(&u), "role": role, "scope_type": scope_type, "scope_id": scope_id})
        };
        let _: Value = sec.post("/v1/grants", &body).await.unwrap();
    }
    (id(&u), ts.login(name, USER_PW).await)
}
