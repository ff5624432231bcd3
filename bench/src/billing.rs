//! Billing benchmark (issue: metering and billing).
//!
//! 1. **Rating**: `--instances` instances × `--days` days of hourly usage records (each
//!    instance-hour gives `--meters` records: vCPU-, memory- and instance-hours) written
//!    unrated straight into the store, as the meter leaves them; then every hour is closed
//!    through the meter's own `meter_close_hour` (price lookup per record, one transaction
//!    per hour). Records priced per second.
//! 2. **Monthly bill**: `GET /v1/bills?month=…` for the platform over all of it, as the
//!    management unit, through the HTTP API.
//!
//! The peer, in the same run on the same file: the `sqlite3` shell doing the same work in
//! one statement each — rating as a single `UPDATE … FROM prices` and the bill as a single
//! `GROUP BY` — the floor the database itself sets.
//!
//! Usage: billing-bench [--instances 10000] [--days 30] [--meters 1]

use std::time::Instant;

use chrono::{Duration, Utc};
use serde_json::json;
use uuid::Uuid;

mod common;
use common::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let instances: usize = arg("--instances")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(10_000);
    let days: i64 = arg("--days").map(|v| v.parse()).transpose()?.unwrap_or(30);
    let meters: usize = arg("--meters")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1)
        .clamp(1, 3);
    let dir = std::env::temp_dir().join(format!("stratus-billing-bench-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let mut cfg = config(&dir, "sqlite")?;
    cfg.metering.tick_secs = 86_400;
    cfg.metering.export = false;
    let server = stratus_server::start(cfg).await?;
    let url = format!("http://{}", server.addr);
    let api = Api::login(&url).await?;
    let project = api.project().await?;
    let p = api.get(&format!("/v1/projects/{project}")).await?;
    let vdc = p["vdc_id"].as_str().unwrap_or_default().to_string();
    let v = api.get(&format!("/v1/vdcs/{vdc}")).await?;
    let org = v["org_id"].as_str().unwrap_or_default().to_string();
    for (meter, price) in [
        ("vcpu_hours", "0.12"),
        ("memory_gib_hours", "0.03"),
        ("instance_hours", "0.05"),
    ] {
        api.post(
            "/v1/prices",
            json!({"meter": meter, "unit_price": price, "effective_from": "2000-01-01T00:00:00Z"}),
        )
        .await?;
    }

    // The month before the current one, hour by hour.
    let now = Utc::now();
    let this_month = stratus_server::app::metering::bills::month_of(now);
    let (month_start, _) = stratus_server::app::metering::bills::month_bounds(&this_month)?;
    let start = month_start - Duration::days(days);
    let hours = days * 24;
    let store = &server.app.store;
    let kinds = [
        ("vcpu_hours", "vcpu-hour", 2_000_000i64),
        ("memory_gib_hours", "GiB-hour", 4_000_000),
        ("instance_hours", "hour", 1_000_000),
    ];
    let ids: Vec<String> = (0..instances).map(|_| Uuid::new_v4().to_string()).collect();
    let total = instances * hours as usize * meters;
    eprintln!(
        "writing {total} unrated records ({instances} instances × {hours} h × {meters} meters)…"
    );
    let t = Instant::now();
    for h in 0..hours {
        let hs = stratus_server::store::time_text(start + Duration::hours(h));
        let he = stratus_server::store::time_text(start + Duration::hours(h + 1));
        let mut tx = store.db.write.begin().await?;
        for id in &ids {
            for (meter, unit, q) in &kinds[..meters] {
                sqlx::query(
                    "INSERT INTO usage_records (period_start, period_end, org_id, vdc_id, project_id, \
                     region, zone, resource_type, resource_id, meter, spec, unit, quantity) \
                     VALUES ($1, $2, $3, $4, $5, 'region-1', 'az1', 'instance', $6, $7, 'basic.2c4g', $8, $9)",
                )
                .bind(&hs)
                .bind(&he)
                .bind(&org)
                .bind(&vdc)
                .bind(&project)
                .bind(id)
                .bind(*meter)
                .bind(*unit)
                .bind(*q)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
    }
    eprintln!("  written in {:.1} s", t.elapsed().as_secs_f64());

    // Rating through the meter, hour by hour.
    sqlx::query("UPDATE meter_cursor SET closed_through = $1")
        .bind(stratus_server::store::time_text(start))
        .execute(&store.db.write)
        .await?;
    let book = stratus_server::store::metering::PriceBook::new(store.price_list(None).await?);
    let t = Instant::now();
    let mut priced = 0;
    for h in 0..hours {
        priced += store
            .meter_close_hour(start + Duration::hours(h), "region-1", &book)
            .await?;
    }
    let rate_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(priced == total, "priced {priced} of {total}");

    // The bill over the whole period, through the API.
    let from = stratus_server::store::time_text(start);
    let to = stratus_server::store::time_text(month_start);
    let t = Instant::now();
    let bill = api.get(&format!("/v1/bills?from={from}&to={to}")).await?;
    let bill_secs = t.elapsed().as_secs_f64();
    let lines = bill["lines"].as_array().map_or(0, |l| l.len());
    let total_yuan = bill["total"].as_str().unwrap_or_default().to_string();
    server.stop().await?;

    // The peer: the sqlite3 shell on the same file, rating everything again in one UPDATE
    // and summing the bill in one GROUP BY.
    let db = dir.join("stratus.db");
    let sql_rate = "UPDATE usage_records SET rated = 1, unit_price = p.unit_price, \
        amount = (quantity * p.unit_price + 500000) / 1000000 FROM prices p \
        WHERE p.meter = usage_records.meter AND p.billing = 'payg';";
    let sql_bill = format!(
        "SELECT COUNT(*), SUM(a) FROM (SELECT project_id, resource_id, meter, spec, SUM(quantity), \
         SUM(amount) AS a FROM usage_records WHERE period_start >= '{from}' AND period_start < '{to}' \
         GROUP BY project_id, vdc_id, resource_type, resource_id, meter, spec, unit_price, rated);"
    );
    let run = |sql: &str| -> anyhow::Result<(f64, String)> {
        let t = Instant::now();
        let out = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg(sql)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "sqlite3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((
            t.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    };
    let (peer_rate_secs, _) = run(sql_rate)?;
    let (peer_bill_secs, peer_out) = run(&sql_bill)?;
    println!(
        "\nBilling: {instances} instances × {days} days × {meters} meter(s) = {total} hourly records (SQLite, synchronous=FULL)\n"
    );
    println!(
        "{:<44} {:>14} {:>16} {:>10}",
        "step", "Stratus", "sqlite3 (1 stmt)", "time ratio"
    );
    println!(
        "{:<44} {:>10.0} r/s {:>12.0} r/s {:>9.2}x",
        "rating (records priced per second)",
        total as f64 / rate_secs,
        total as f64 / peer_rate_secs,
        rate_secs / peer_rate_secs
    );
    println!(
        "{:<44} {:>12.2} s {:>14.2} s {:>9.2}x",
        "bill of the whole period (GET /v1/bills)",
        bill_secs,
        peer_bill_secs,
        bill_secs / peer_bill_secs
    );
    println!("(time ratio: Stratus's time over the peer's; below 1 is faster than the peer)");
    println!("\nbill: {lines} line items, total {total_yuan} CNY; sqlite3 groups/sum: {peer_out}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
