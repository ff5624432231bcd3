//! Object storage (S3) benchmark.
//!
//! A small load generator that speaks S3 with SigV4 (the signing code of `stratus-api`)
//! over one shared HTTP connection pool, so the same binary measures Stratus and any peer
//! S3 server on the same machine. For each target it creates a bucket, then at 1, 8 and 32
//! concurrent clients:
//!
//! * PUT, GET and DELETE of 4 KiB objects (ops/s, p50/p99 latency); the body's SHA-256 is
//!   signed (`x-amz-content-sha256`), as SDKs do over plain HTTP;
//! * PUT and GET of 64 MiB objects (MB/s); the body is sent as `UNSIGNED-PAYLOAD`, as SDKs
//!   do over HTTPS, so neither side hashes 64 MiB for the signature. The data is generated
//!   once and shared (`bytes::Bytes`), and GET bodies are counted and dropped as they
//!   arrive, so the generator is not the bottleneck.
//!
//! Every object is deleted after its point and the bucket at the end (also after an error).
//!
//! Usage:
//!   s3-bench --stratus [--database postgres://…]          Stratus in this process
//!   s3-bench --endpoint URL --access-key AK --secret-key SK [--peer-name NAME]
//!   both at once: one table per target, and a Stratus / peer column in Stratus's table.
//! Options: --clients 1,8,32  --small-ops 3000  --large-ops 16 (at least one per client)
//!          --small-kib 4  --large-mib 64  --region gd-1

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;
use serde_json::{json, Value};
use stratus_api::sigv4;
use stratus_server::Config;
use uuid::Uuid;

const ADMIN_PW: &str = "Bench-Passw0rd1";
const SECADMIN_PW: &str = "Secur1ty-Passw0rd";
const USER_PW: &str = "Bench-User-Passw0rd1";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn num(name: &str, default: usize) -> anyhow::Result<usize> {
    Ok(arg(name).map(|v| v.parse()).transpose()?.unwrap_or(default))
}

/// `n` bytes of cheap pseudo-random data (xorshift64), so nothing compresses or dedups it.
fn data(n: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    Bytes::from(v)
}

/// An S3 endpoint with one access key; path-style addressing.
#[derive(Clone)]
struct S3 {
    http: reqwest::Client,
    base: String,
    host: String,
    access_key: String,
    secret_key: String,
    region: String,
}

/// What a request sends as its body and how the body is covered by the signature.
enum Body {
    Empty,
    /// The body and its precomputed hex SHA-256 (signed).
    Signed(Bytes, Arc<str>),
    /// `UNSIGNED-PAYLOAD`.
    Unsigned(Bytes),
}

impl S3 {
    fn new(
        http: reqwest::Client,
        endpoint: &str,
        ak: &str,
        sk: &str,
        region: &str,
    ) -> anyhow::Result<S3> {
        let url = reqwest::Url::parse(endpoint)?;
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("{endpoint}: no host"))?;
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(S3 {
            http,
            base: format!("{}://{host}", url.scheme()),
            host,
            access_key: ak.into(),
            secret_key: sk.into(),
            region: region.into(),
        })
    }

    /// Send a signed request; a non-2xx answer is an error with its status and body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Body,
    ) -> anyhow::Result<reqwest::Response> {
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let (payload_hash, bytes): (&str, Option<Bytes>) = match &body {
            Body::Empty => (sigv4::EMPTY_SHA256, None),
            Body::Signed(b, h) => (h, Some(b.clone())),
            Body::Unsigned(b) => ("UNSIGNED-PAYLOAD", Some(b.clone())),
        };
        let auth = sigv4::authorization_header(
            &self.access_key,
            &self.secret_key,
            &amz_date,
            &self.region,
            "s3",
            &sigv4::Request {
                method: method.as_str(),
                raw_path: path,
                raw_query: query,
                headers: vec![
                    ("host".into(), self.host.clone()),
                    ("x-amz-content-sha256".into(), payload_hash.into()),
                    ("x-amz-date".into(), amz_date.clone()),
                ],
                payload_hash,
            },
        );
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let mut req = self
            .http
            .request(method.clone(), url)
            .header("x-amz-content-sha256", payload_hash)
            .header("x-amz-date", amz_date)
            .header("authorization", auth);
        if let Some(b) = bytes {
            req = req.body(b);
        }
        let resp = req.send().await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            anyhow::bail!(
                "{method} {path}: HTTP {status}: {}",
                text.chars().take(400).collect::<String>()
            );
        }
        Ok(resp)
    }

    /// Read a response body to its end, counting bytes without keeping them.
    async fn drain(mut resp: reqwest::Response) -> anyhow::Result<u64> {
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            n += chunk.len() as u64;
        }
        Ok(n)
    }

    /// Every key in `bucket` (ListObjectsV2, 1,000 a page).
    async fn keys(&self, bucket: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = String::from("list-type=2&max-keys=1000");
            if let Some(t) = &token {
                query.push_str("&continuation-token=");
                query.push_str(&sigv4::uri_encode(t, false));
            }
            let resp = self
                .send(Method::GET, &format!("/{bucket}"), &query, Body::Empty)
                .await?;
            let xml = resp.text().await?;
            keys.extend(tags(&xml, "Key"));
            token = tags(&xml, "NextContinuationToken").into_iter().next();
            if token.is_none() || !xml.contains("<IsTruncated>true</IsTruncated>") {
                return Ok(keys);
            }
        }
    }
}

/// The text of every `<tag>…</tag>` in `xml` (unescaping the five XML entities).
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(
            rest[..j]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[j + close.len()..];
    }
    out
}

/// One measured point: `ops` operations from `clients` concurrent clients.
struct Point {
    test: String,
    clients: usize,
    latencies: Vec<Duration>,
    bytes: u64,
    wall: Duration,
}

impl Point {
    fn ops_per_s(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.wall.as_secs_f64()
    }
    fn pct_ms(&self, p: f64) -> f64 {
        let v = &self.latencies;
        v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
    }
}

/// Run operations `0..ops` on `clients` concurrent tasks (each takes the next index);
/// `op(i)` returns the payload bytes it moved. The first error stops the point.
async fn run<F, Fut>(test: String, clients: usize, ops: usize, op: F) -> anyhow::Result<Point>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut bytes = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    return anyhow::Ok((lat, bytes));
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(n) => bytes += n,
                    Err(e) => {
                        // Let the other clients stop at their next operation.
                        next.store(ops, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(ops);
    let mut bytes = 0;
    let mut first_err = None;
    for t in tasks {
        match t.await? {
            Ok((l, b)) => {
                latencies.extend(l);
                bytes += b;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let wall = start.elapsed();
    if let Some(e) = first_err {
        return Err(e.context(format!("{test} at {clients} clients")));
    }
    latencies.sort();
    let p = Point {
        test,
        clients,
        latencies,
        bytes,
        wall,
    };
    eprintln!(
        "  {:<14} {:>3} clients: {:>9.1} ops/s {:>9.1} MB/s  p50 {:.3} ms  p99 {:.3} ms",
        p.test,
        p.clients,
        p.ops_per_s(),
        p.mb_per_s(),
        p.pct_ms(0.5),
        p.pct_ms(0.99)
    );
    Ok(p)
}

struct Plan {
    clients: Vec<usize>,
    small_ops: usize,
    large_ops: usize,
    small: Bytes,
    small_sha: Arc<str>,
    large: Bytes,
}

fn size_name(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{} KiB", n >> 10)
    }
}

/// PUT `ops` objects under `prefix`, GET them back, DELETE them: the three points.
async fn put_get_delete(
    s3: &S3,
    bucket: &str,
    prefix: &str,
    clients: usize,
    ops: usize,
    data: Bytes,
    sha: Option<Arc<str>>,
) -> anyhow::Result<Vec<Point>> {
    let size = data.len() as u64;
    let name = size_name(data.len());
    let path = {
        let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
        Arc::new(move |i: usize| format!("/{bucket}/{prefix}/{i:06}"))
    };
    let mut points = Vec::new();
    let (s, p, d) = (s3.clone(), path.clone(), data.clone());
    points.push(
        run(format!("PUT {name}"), clients, ops, move |i| {
            let (s, path) = (s.clone(), p(i));
            let body = match &sha {
                Some(h) => Body::Signed(d.clone(), h.clone()),
                None => Body::Unsigned(d.clone()),
            };
            async move {
                S3::drain(s.send(Method::PUT, &path, "", body).await?).await?;
                Ok(size)
            }
        })
        .await?,
    );
    let (s, p) = (s3.clone(), path.clone());
    points.push(
        run(format!("GET {name}"), clients, ops, move |i| {
            let (s, path) = (s.clone(), p(i));
            async move {
                let n = S3::drain(s.send(Method::GET, &path, "", Body::Empty).await?).await?;
                anyhow::ensure!(n == size, "GET {path}: {n} bytes, expected {size}");
                Ok(n)
            }
        })
        .await?,
    );
    let (s, p) = (s3.clone(), path.clone());
    points.push(
        run(format!("DELETE {name}"), clients, ops, move |i| {
            let (s, path) = (s.clone(), p(i));
            async move {
                S3::drain(s.send(Method::DELETE, &path, "", Body::Empty).await?).await?;
                Ok(0)
            }
        })
        .await?,
    );
    Ok(points)
}

/// Measure one target: its own bucket, every point, and the cleanup (also after an error).
async fn measure(s3: &S3, label: &str, plan: &Plan) -> anyhow::Result<Vec<Point>> {
    let bucket = format!("s3-bench-{}", &Uuid::new_v4().simple().to_string()[..12]);
    eprintln!("{label}: bucket {bucket}");
    s3.send(Method::PUT, &format!("/{bucket}"), "", Body::Empty)
        .await?;
    let result = async {
        let mut points = Vec::new();
        for &c in &plan.clients {
            points.extend(
                put_get_delete(
                    s3,
                    &bucket,
                    &format!("small-c{c}"),
                    c,
                    plan.small_ops,
                    plan.small.clone(),
                    Some(plan.small_sha.clone()),
                )
                .await?,
            );
        }
        for &c in &plan.clients {
            points.extend(
                put_get_delete(
                    s3,
                    &bucket,
                    &format!("large-c{c}"),
                    c,
                    plan.large_ops.max(c),
                    plan.large.clone(),
                    None,
                )
                .await?
                .into_iter()
                // Deleting a large object costs what deleting a small one does.
                .filter(|p| !p.test.starts_with("DELETE")),
            );
        }
        anyhow::Ok(points)
    }
    .await;
    // Whatever happened, leave nothing behind.
    let cleanup = async {
        for key in s3.keys(&bucket).await? {
            let path = format!("/{bucket}/{}", sigv4::uri_encode(&key, true));
            s3.send(Method::DELETE, &path, "", Body::Empty).await?;
        }
        s3.send(Method::DELETE, &format!("/{bucket}"), "", Body::Empty)
            .await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = &cleanup {
        eprintln!("{label}: cleanup of bucket {bucket} failed: {e:#}");
    }
    let mut points = result?;
    // Table order: by test (stable, so clients stay ascending).
    let (small, large) = (size_name(plan.small.len()), size_name(plan.large.len()));
    let order = [
        format!("PUT {small}"),
        format!("GET {small}"),
        format!("DELETE {small}"),
        format!("PUT {large}"),
        format!("GET {large}"),
    ];
    points.sort_by_key(|p| order.iter().position(|t| *t == p.test));
    Ok(points)
}

fn print(title: &str, points: &[Point], peer: Option<&[Point]>) {
    println!("\n{title}");
    print!(
        "{:<16} {:>7} {:>7} {:>10} {:>9} {:>9} {:>9}",
        "test", "clients", "ops", "ops/s", "MB/s", "p50 ms", "p99 ms"
    );
    if peer.is_some() {
        print!(" {:>14}", "Stratus / peer");
    }
    println!();
    for p in points {
        print!(
            "{:<16} {:>7} {:>7} {:>10.1} {:>9.1} {:>9.3} {:>9.3}",
            p.test,
            p.clients,
            p.latencies.len(),
            p.ops_per_s(),
            p.mb_per_s(),
            p.pct_ms(0.5),
            p.pct_ms(0.99)
        );
        if let Some(peer) = peer {
            // Throughput ratio (ops/s; the same as MB/s for equal object sizes).
            match peer
                .iter()
                .find(|q| q.test == p.test && q.clients == p.clients)
            {
                Some(q) => print!(" {:>13.2}x", p.ops_per_s() / q.ops_per_s()),
                None => print!(" {:>14}", "-"),
            }
        }
        println!();
    }
}

/// Stratus in this process: a store, an org/VDC/project, a member with an access key.
async fn start_stratus(
    database: &str,
) -> anyhow::Result<(stratus_server::Server, std::path::PathBuf, String, String)> {
    let dir = std::env::temp_dir().join(format!("stratus-s3-bench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.clone(),
        database: database.into(),
        ..Config::default()
    };
    cfg.rate_limit.requests_per_second = 0.0;
    cfg.local_agent.enabled = false;
    cfg.s3.listen = Some("127.0.0.1:0".parse()?);
    cfg.bootstrap.admin_password = Some(ADMIN_PW.into());
    cfg.bootstrap.secadmin_password = Some(SECADMIN_PW.into());
    cfg.bootstrap.auditor_password = Some("Check3r-Passw0rd".into());
    let server = stratus_server::start(cfg).await?;
    let url = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let call = |m: Method, path: &str, token: Option<&str>, body: Value| {
        let req = http.request(m, format!("{url}{path}")).json(&body);
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let path = path.to_string();
        async move {
            let resp = req.send().await?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            anyhow::ensure!(status.is_success(), "{path}: HTTP {status}: {v}");
            anyhow::Ok(v)
        }
    };
    let login = |name: &'static str, pw: &'static str| {
        let r = call(
            Method::POST,
            "/v1/auth/login",
            None,
            json!({"name": name, "password": pw}),
        );
        async move { anyhow::Ok(r.await?["token"].as_str().unwrap_or_default().to_string()) }
    };
    let admin = login("admin", ADMIN_PW).await?;
    let sec = login("secadmin", SECADMIN_PW).await?;
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_string();
    let org = call(
        Method::POST,
        "/v1/organizations",
        Some(&admin),
        json!({"name": "bench"}),
    )
    .await?;
    let vdc = call(
        Method::POST,
        "/v1/vdcs",
        Some(&admin),
        json!({"org_id": id(&org), "name": "bench"}),
    )
    .await?;
    let project = call(
        Method::POST,
        "/v1/projects",
        Some(&admin),
        json!({"vdc_id": id(&vdc), "name": "bench"}),
    )
    .await?;
    let user = call(
        Method::POST,
        "/v1/users",
        Some(&sec),
        json!({"name": "s3bench", "password": USER_PW, "vdc_id": id(&vdc)}),
    )
    .await?;
    call(
        Method::POST,
        "/v1/grants",
        Some(&sec),
        json!({"user_id": id(&user), "role": "member", "scope_type": "project", "scope_id": id(&project)}),
    )
    .await?;
    let member = login("s3bench", USER_PW).await?;
    let key = call(
        Method::POST,
        "/v1/access-keys",
        Some(&member),
        json!({"project_id": id(&project)}),
    )
    .await?;
    let ak = key["access_key"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sk = key["secret_access_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(!ak.is_empty() && !sk.is_empty(), "no access key in {key}");
    Ok((server, dir, ak, sk))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let stratus = flag("--stratus");
    let endpoint = arg("--endpoint");
    anyhow::ensure!(
        stratus || endpoint.is_some(),
        "usage: s3-bench [--stratus [--database URL]] [--endpoint URL --access-key AK --secret-key SK]"
    );
    let region = arg("--region").unwrap_or_else(|| "gd-1".into());
    let clients: Vec<usize> = arg("--clients")
        .unwrap_or_else(|| "1,8,32".into())
        .split(',')
        .map(|c| c.trim().parse())
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        clients.iter().all(|&c| c > 0),
        "--clients: each must be at least 1"
    );
    let small_ops = num("--small-ops", 3000)?.max(1);
    let large_ops = num("--large-ops", 16)?.max(1);
    let small = data(num("--small-kib", 4)? << 10, 0x9e37_79b9_7f4a_7c15);
    let large = data(num("--large-mib", 64)? << 20, 0x2545_f491_4f6c_dd1d);
    let plan = Plan {
        clients,
        small_ops,
        large_ops,
        small_sha: sigv4::sha256_hex(&small).into(),
        small,
        large,
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(600))
        .build()?;

    let mut stratus_points = None;
    let mut stratus_title = String::new();
    if stratus {
        let database = arg("--database").unwrap_or_else(|| "sqlite".into());
        let (server, dir, ak, sk) = start_stratus(&database).await?;
        let backend = server.app.store.db.backend.as_str().to_string();
        let s3_addr = server
            .s3_addr
            .ok_or_else(|| anyhow::anyhow!("the S3 endpoint did not start"))?;
        let s3 = S3::new(
            http.clone(),
            &format!("http://{s3_addr}"),
            &ak,
            &sk,
            &region,
        )?;
        stratus_title = format!("Stratus ({backend} store, in process, http://{s3_addr})");
        let result = measure(&s3, "Stratus", &plan).await;
        server.stop().await?;
        let _ = std::fs::remove_dir_all(&dir);
        stratus_points = Some(result?);
    }
    let mut peer_points = None;
    let mut peer_title = String::new();
    let mut peer_error = None;
    if let Some(endpoint) = &endpoint {
        let name = arg("--peer-name").unwrap_or_else(|| "peer".into());
        let ak = arg("--access-key")
            .ok_or_else(|| anyhow::anyhow!("--access-key is required with --endpoint"))?;
        let sk = arg("--secret-key")
            .ok_or_else(|| anyhow::anyhow!("--secret-key is required with --endpoint"))?;
        let s3 = S3::new(http.clone(), endpoint, &ak, &sk, &region)?;
        peer_title = format!("{name} ({endpoint})");
        match measure(&s3, &name, &plan).await {
            Ok(p) => peer_points = Some(p),
            // Stratus's numbers are still worth printing.
            Err(e) => peer_error = Some(e.context(format!("measuring {name}"))),
        }
    }
    println!(
        "\nS3 benchmark: {} objects at {} clients ({} ops per point), {} objects ({} per point, at least one per client)",
        size_name(plan.small.len()),
        plan.clients
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("/"),
        plan.small_ops,
        size_name(plan.large.len()),
        plan.large_ops
    );
    if let Some(s) = &stratus_points {
        print(&stratus_title, s, peer_points.as_deref());
    }
    if let Some(p) = &peer_points {
        print(&peer_title, p, None);
    }
    match peer_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
