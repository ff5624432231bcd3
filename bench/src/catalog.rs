//! Catalog benchmark (issue: service catalog, approvals, orders).
//!
//! 1. Orders end to end with simulated hosts: `--orders` requests for a one-instance
//!    service whose flow approves them automatically, from 8 clients; the time until every
//!    order is completed gives orders per second. Beside it, in the same run, the same
//!    number of instances created directly through `POST /v1/instances` — the work an order
//!    wraps — so the ratio is the catalog's overhead.
//! 2. The approver's desk with `--history` historical requests in the store (all but 50
//!    finished, those 50 waiting at the approver's level): the queue and a page of the
//!    request list, as the approver; nginx serving a static file is the HTTP floor.
//!
//! Usage: catalog-bench [--database postgres://…] [--nginx URL] [--orders 1000] [--hosts 20]
//!        [--history 100000]

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

mod common;
use common::*;

const CLIENTS: usize = 8;

/// Count rows of a table matching a condition, straight from the store.
async fn count(server: &stratus_server::Server, sql: &str) -> anyhow::Result<i64> {
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&server.app.store.db.read)
        .await?;
    Ok(n)
}

async fn until(
    what: &str,
    secs: u64,
    mut done: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let t = Instant::now();
    while !done().await? {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(secs), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `n` finished requests (and `pending` waiting at the level of role `approver`) written
/// straight into the store, as years of use leave them.
async fn history(
    server: &stratus_server::Server,
    project: &str,
    vdc: &str,
    requester: &str,
    n: usize,
    pending: usize,
) -> anyhow::Result<()> {
    let pool = &server.app.store.db.write;
    let levels = json!([{"name": "审批", "rule": "any", "approvers": [{"role": "approver"}],
        "decisions": []}])
    .to_string();
    let now = chrono::Utc::now();
    let mut tx = pool.begin().await?;
    for i in 0..n {
        let id = Uuid::new_v4().to_string();
        let status = if i < pending {
            "approving"
        } else if i % 10 == 0 {
            "rejected"
        } else {
            "completed"
        };
        let at = (now - chrono::Duration::seconds((n - i) as i64 * 60))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        sqlx::query(
            "INSERT INTO requests (id, action, service_id, service_name, kind, project_id, vdc_id, \
             requester_id, requester_name, description, parameters, resource_id, status, status_reason, \
             level, levels, flow_id, resources, version, created_at, updated_at) VALUES \
             ($1, 'create', NULL, 'ECS', 'instance', $2, $3, $4, 'admin', '', '{\"name\":\"old\"}', NULL, \
             $5, '', 0, $6, NULL, '[]', 0, $7, $7)",
        )
        .bind(&id)
        .bind(project)
        .bind(vdc)
        .bind(requester)
        .bind(status)
        .bind(&levels)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO request_seats (request_id, level, seat, user_id, role) VALUES ($1, 0, 0, NULL, 'approver')")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        if i % 5000 == 4999 {
            tx.commit().await?;
            tx = pool.begin().await?;
        }
    }
    tx.commit().await?;
    // What autovacuum does after a load like this: the planner's statistics.
    if server.app.store.db.backend.as_str() == "postgres" {
        for t in ["requests", "request_seats"] {
            sqlx::query(&format!("ANALYZE {t}")).execute(pool).await?;
        }
    }
    Ok(())
}

async fn run(
    database: &str,
    nginx: Option<String>,
    orders: usize,
    hosts: usize,
    hist: usize,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("stratus-bench-{}", Uuid::new_v4().simple()));
    let server = stratus_server::start(config(&dir, database)?).await?;
    let backend = server.app.store.db.backend.as_str();
    let url = format!("http://{}", server.addr);
    let api = Api::login(&url).await?;
    let project = api.project().await?;
    let p = api.get(&format!("/v1/projects/{project}")).await?;
    let vdc = p["vdc_id"].as_str().unwrap_or_default().to_string();
    let (img_id, sim) = sim_setup(&api, &dir, hosts).await?;
    let svc = api
        .post(
            "/v1/services",
            json!({"name": "ECS small", "kind": "instance", "parameters": [
                {"name": "name"},
                {"name": "flavor", "mode": "locked", "default": "small.1c1g"},
                {"name": "image", "mode": "locked", "default": img_id}]}),
        )
        .await?;
    api.post(
        "/v1/approval-flows",
        json!({"name": "one instance passes", "service_id": svc["id"],
            "levels": [{"name": "admin", "approvers": [{"role": "platform_admin"}]}],
            "auto_approve": [{"parameter": "count", "max": 1}]}),
    )
    .await?;
    eprintln!(
        "{hosts} simulated hosts up on {backend}; {orders} direct creates, then {orders} orders…"
    );

    let mut rows = Vec::new();
    // The peer inside the run: the same instances, created directly.
    let (a, pr, i) = (api.clone(), project.clone(), img_id.clone());
    let t = Instant::now();
    let direct = load("peer: instance create, direct API", orders, CLIENTS, move |n| {
        let (a, pr, i) = (a.clone(), pr.clone(), i.clone());
        async move {
            a.post(
                "/v1/instances",
                json!({"name": format!("d{n}"), "project_id": pr, "flavor": "small.1c1g", "image": i}),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    until("direct instances running", 600, async || {
        Ok(count(
            &server,
            "SELECT COUNT(*) FROM instances WHERE status = 'running'",
        )
        .await?
            >= orders as i64)
    })
    .await?;
    let direct_all = t.elapsed();
    rows.push(direct);

    let (a, pr, s) = (api.clone(), project.clone(), svc["id"].clone());
    let t = Instant::now();
    let submit = load("request submit (approved automatically)", orders, CLIENTS, move |n| {
        let (a, pr, s) = (a.clone(), pr.clone(), s.clone());
        async move {
            let r = a
                .post(
                    "/v1/requests",
                    json!({"service_id": s, "project_id": pr, "parameters": {"name": format!("o{n}")}}),
                )
                .await?;
            anyhow::ensure!(r["status"] == "approved", "not auto-approved: {r}");
            Ok(())
        }
    })
    .await?;
    until("orders completed", 600, async || {
        Ok(count(
            &server,
            "SELECT COUNT(*) FROM requests WHERE status = 'completed'",
        )
        .await?
            >= orders as i64)
    })
    .await?;
    let completed = t.elapsed();
    until("ordered instances running", 600, async || {
        Ok(count(
            &server,
            "SELECT COUNT(*) FROM instances WHERE status = 'running'",
        )
        .await?
            >= 2 * orders as i64)
    })
    .await?;
    let ordered_all = t.elapsed();
    let failed = count(
        &server,
        "SELECT COUNT(*) FROM requests WHERE status <> 'completed'",
    )
    .await?;
    rows.push(submit);

    // The approver's desk over a long history.
    let sec = Api::login_as(&url, "secadmin", "Secur1ty-Passw0rd").await?;
    let u = sec
        .post(
            "/v1/users",
            json!({"name": "approver1", "password": "Appr0ver-Passw0rd", "vdc_id": vdc}),
        )
        .await?;
    sec.post(
        "/v1/grants",
        json!({"user_id": u["id"], "role": "approver", "scope_type": "vdc", "scope_id": vdc}),
    )
    .await?;
    let approver = Api::login_as(&url, "approver1", "Appr0ver-Passw0rd").await?;
    let admin_id = api.get("/v1/auth/whoami").await?["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let t = Instant::now();
    history(&server, &project, &vdc, &admin_id, hist, 50).await?;
    eprintln!(
        "{hist} historical requests written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let queue_name = format!("approver queue (50 waiting of {hist})");
    for (name, path) in [
        (queue_name.as_str(), "/v1/approvals".to_string()),
        (
            "request list, first 100 (approver)",
            "/v1/requests?limit=100".to_string(),
        ),
        (
            "request list, status=approving (approver)",
            "/v1/requests?limit=100&status=approving".to_string(),
        ),
    ] {
        let (a, path) = (approver.clone(), path.clone());
        let row = load(name, 400, CLIENTS, move |_| {
            let (a, path) = (a.clone(), path.clone());
            async move {
                a.get(&path).await?;
                Ok(())
            }
        })
        .await?;
        rows.push(row);
    }
    let q = approver.get("/v1/approvals").await?;
    anyhow::ensure!(
        q.as_array().map(Vec::len) == Some(50),
        "queue has {} requests",
        q.as_array().map(Vec::len).unwrap_or(0)
    );
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
        &format!("Catalog, {backend} store: {orders} orders for one instance each on {hosts} simulated hosts; {hist} requests of history"),
        &rows,
        floor,
    );
    println!(
        "direct API: {orders} instances accepted and running in {:.1} s ({:.0}/s)",
        direct_all.as_secs_f64(),
        orders as f64 / direct_all.as_secs_f64()
    );
    println!(
        "orders: {orders} completed in {:.1} s ({:.0} orders/s), their instances running after {:.1} s ({:.0}/s); {failed} not completed",
        completed.as_secs_f64(),
        orders as f64 / completed.as_secs_f64(),
        ordered_all.as_secs_f64(),
        orders as f64 / ordered_all.as_secs_f64()
    );
    println!(
        "orders / direct (instances running per second): {:.2}",
        direct_all.as_secs_f64() / ordered_all.as_secs_f64()
    );
    sim.finish().await;
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let database = arg("--database").unwrap_or_else(|| "sqlite".into());
    let num = |k: &str, d: usize| -> anyhow::Result<usize> {
        Ok(arg(k).map(|v| v.parse()).transpose()?.unwrap_or(d))
    };
    run(
        &database,
        arg("--nginx"),
        num("--orders", 1000)?,
        num("--hosts", 20)?,
        num("--history", 100_000)?,
    )
    .await
}
