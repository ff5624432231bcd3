//! Unified monitoring (spec 8.2.4, 8.3.4): metrics from every agent and the control plane
//! in the embedded time-series store (`stratus-tsdb`), queried in PromQL, scoped to what
//! the caller may see.
//!
//! - Guest metrics arrive with every agent report (the raw counters the agent reads from
//!   QEMU and the host's cgroup); each becomes a sample labelled with the instance, its
//!   project, VDC and host. Counters keep their Prometheus names (`…_total`), so
//!   `rate(stratus_instance_cpu_seconds_total[1m])` is the CPU share of a guest.
//! - A caller who cannot read resources platform-wide gets every selector restricted to
//!   the projects they can see (`project_id=~"…"`): a department sees only its own
//!   series, and asking for another's returns nothing.
//! - The store's log is synced every second; retention runs every minute and the log is
//!   checkpointed into a snapshot when it grows past `monitoring.checkpoint_mb`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use stratus_api::GuestCounters;
use stratus_tsdb::{Labels, MatchOp, Matcher, Sample, Tsdb, NAME};
use uuid::Uuid;

pub mod alerts;
pub mod notify;
pub mod tickets;

use super::App;
use crate::authz::{Perm, Principal};
use crate::error::{Error, Result};

/// How a guest series is read from the counters.
type Read = fn(&GuestCounters) -> f64;

/// The guest series.
const GUEST: &[(&str, Read)] = &[
    ("stratus_instance_cpu_seconds_total", |c| c.cpu_seconds),
    ("stratus_instance_memory_bytes", |c| c.memory_bytes as f64),
    ("stratus_instance_memory_used_bytes", |c| c.rss_bytes as f64),
    ("stratus_instance_disk_read_bytes_total", |c| {
        c.disk_read_bytes as f64
    }),
    ("stratus_instance_disk_written_bytes_total", |c| {
        c.disk_write_bytes as f64
    }),
    ("stratus_instance_disk_reads_total", |c| {
        c.disk_read_ops as f64
    }),
    ("stratus_instance_disk_writes_total", |c| {
        c.disk_write_ops as f64
    }),
    ("stratus_instance_network_receive_bytes_total", |c| {
        c.net_rx_bytes as f64
    }),
    ("stratus_instance_network_transmit_bytes_total", |c| {
        c.net_tx_bytes as f64
    }),
];

/// What an instance's series are labelled with.
pub struct GuestOwner {
    pub instance: Uuid,
    pub project: Uuid,
    pub vdc: Uuid,
    pub host: Uuid,
}

fn store_error(e: stratus_tsdb::Error) -> Error {
    match e {
        stratus_tsdb::Error::Invalid(m) => Error::InvalidInput(m),
        e => Error::internal(e.to_string()),
    }
}

/// The samples of one guest report at `at`.
pub fn guest_samples(o: &GuestOwner, c: &GuestCounters, at: DateTime<Utc>) -> Vec<Sample> {
    let (instance, project, vdc, host) = (
        o.instance.to_string(),
        o.project.to_string(),
        o.vdc.to_string(),
        o.host.to_string(),
    );
    GUEST
        .iter()
        .filter_map(|(name, read)| {
            let labels = Labels::new([
                (NAME, *name),
                ("instance_id", instance.as_str()),
                ("project_id", project.as_str()),
                ("vdc_id", vdc.as_str()),
                ("host_id", host.as_str()),
            ])
            .ok()?;
            Some(Sample {
                labels,
                t: at.timestamp_millis(),
                v: read(c),
            })
        })
        .collect()
}

/// The samples of one host report at `at`: labelled `host_id` and `host` (its name), and
/// `mode` or `device` where there are several.
pub fn host_samples(
    host: Uuid,
    name: &str,
    h: &stratus_api::HostCounters,
    at: DateTime<Utc>,
) -> Vec<Sample> {
    let id = host.to_string();
    let t = at.timestamp_millis();
    let mut out = Vec::new();
    let mut push = |metric: &str, extra: Option<(&str, &str)>, v: f64| {
        let mut pairs = vec![(NAME, metric), ("host_id", id.as_str()), ("host", name)];
        pairs.extend(extra);
        if let Ok(labels) = Labels::new(pairs) {
            out.push(Sample { labels, t, v });
        }
    };
    push("stratus_host_up", None, 1.0);
    for c in &h.cpu_seconds {
        push(
            "stratus_host_cpu_seconds_total",
            Some(("mode", &c.mode)),
            c.seconds,
        );
    }
    for (metric, v) in [
        (
            "stratus_host_memory_total_bytes",
            h.memory_total_bytes as f64,
        ),
        (
            "stratus_host_memory_available_bytes",
            h.memory_available_bytes as f64,
        ),
        ("stratus_host_load1", h.load1),
        ("stratus_host_load5", h.load5),
        ("stratus_host_load15", h.load15),
        (
            "stratus_host_filesystem_size_bytes",
            h.filesystem_size_bytes as f64,
        ),
        (
            "stratus_host_filesystem_avail_bytes",
            h.filesystem_avail_bytes as f64,
        ),
    ] {
        push(metric, None, v);
    }
    for d in &h.disks {
        let dev = Some(("device", d.device.as_str()));
        push(
            "stratus_host_disk_read_bytes_total",
            dev,
            d.read_bytes as f64,
        );
        push(
            "stratus_host_disk_written_bytes_total",
            dev,
            d.written_bytes as f64,
        );
        push("stratus_host_disk_reads_total", dev, d.reads as f64);
        push("stratus_host_disk_writes_total", dev, d.writes as f64);
    }
    for n in &h.nics {
        let dev = Some(("device", n.device.as_str()));
        push(
            "stratus_host_network_receive_bytes_total",
            dev,
            n.receive_bytes as f64,
        );
        push(
            "stratus_host_network_transmit_bytes_total",
            dev,
            n.transmit_bytes as f64,
        );
        push(
            "stratus_host_network_receive_packets_total",
            dev,
            n.receive_packets as f64,
        );
        push(
            "stratus_host_network_transmit_packets_total",
            dev,
            n.transmit_packets as f64,
        );
    }
    out
}

/// Record a host report's counters (logged on failure, like guests').
pub fn ingest_host(app: &App, host: Uuid, name: &str, h: &stratus_api::HostCounters) {
    if let Err(e) = app.tsdb.append(&host_samples(host, name, h, Utc::now())) {
        tracing::warn!(error = %e, "cannot record host metrics");
    }
}

/// Record a guest report's counters; a store failure is logged, never fails the report.
pub fn ingest_guest(app: &App, o: &GuestOwner, c: &GuestCounters) {
    if let Err(e) = app.tsdb.append(&guest_samples(o, c, Utc::now())) {
        tracing::warn!(error = %e, "cannot record guest metrics");
    }
}

/// The matchers that restrict `p` to what they may see (none for platform-wide readers).
pub async fn scope(app: &App, p: &Principal) -> Result<Vec<Matcher>> {
    let vis = p.visibility(Perm::ResourceRead);
    if vis.all {
        return Ok(vec![]);
    }
    let ids = app.store.project_ids_visible(&vis).await?;
    if ids.is_empty() {
        // Matches no series: tenants' series carry a project id, platform ones none.
        return Ok(vec![Matcher::equal("project_id", "-")]);
    }
    // Ids are hex and dashes: nothing to escape in the expression.
    let re = ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("|");
    Ok(vec![
        Matcher::new("project_id", MatchOp::Regex, &re).map_err(store_error)?
    ])
}

/// The time-series store's own gauges, in Prometheus text format.
pub fn render_store_metrics(app: &App) -> String {
    let Ok(st) = app.tsdb.stats() else {
        return String::new();
    };
    let mut out = String::new();
    for (name, help, v) in [
        (
            "stratus_tsdb_series",
            "Series in the time-series store.",
            st.series as u64,
        ),
        (
            "stratus_tsdb_samples",
            "Samples in the time-series store.",
            st.samples as u64,
        ),
        (
            "stratus_tsdb_bytes",
            "Memory the store's chunks, labels and index take, approximately.",
            st.bytes as u64,
        ),
        (
            "stratus_tsdb_log_bytes",
            "Bytes in the store's write-ahead log.",
            app.tsdb.log_bytes(),
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
        ));
    }
    out
}

/// The control plane's own counters as samples (every 15 s): requests by operation and
/// status, and the time they took.
fn self_samples(app: &App, at: DateTime<Utc>) -> Vec<Sample> {
    let t = at.timestamp_millis();
    let mut out: Vec<Sample> = app
        .metrics
        .snapshot()
        .into_iter()
        .filter_map(|(metric, labels, v)| {
            let pairs = std::iter::once((NAME, metric.to_string())).chain(labels);
            Labels::new(pairs)
                .ok()
                .map(|labels| Sample { labels, t, v })
        })
        .collect();
    if let Ok(st) = app.tsdb.stats() {
        for (metric, v) in [
            ("stratus_tsdb_series", st.series as f64),
            ("stratus_tsdb_samples", st.samples as f64),
            ("stratus_tsdb_bytes", st.bytes as f64),
        ] {
            if let Ok(labels) = Labels::new([(NAME, metric)]) {
                out.push(Sample { labels, t, v });
            }
        }
    }
    out
}

/// Open the store under the configured directory.
pub fn open(config: &crate::config::Config) -> anyhow::Result<Arc<Tsdb>> {
    let dir = config
        .monitoring
        .dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("tsdb"));
    Tsdb::open(&dir)
        .map(Arc::new)
        .map_err(|e| anyhow::anyhow!("monitoring.dir: cannot open {}: {e}", dir.display()))
}

/// Sync the log every second; apply retention and checkpoint every minute.
pub fn spawn(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => {
                    let _ = app.tsdb.sync();
                    return;
                }
            }
            n += 1;
            if n.is_multiple_of(15) {
                if let Err(e) = app.tsdb.append(&self_samples(&app, Utc::now())) {
                    tracing::warn!(error = %e, "cannot record the control plane's metrics");
                }
            }
            let db = app.tsdb.clone();
            let minute = n.is_multiple_of(60);
            let keep_ms = app.config.monitoring.retention_days as i64 * 86_400_000;
            let limit = app.config.monitoring.checkpoint_mb * 1024 * 1024;
            let done = tokio::task::spawn_blocking(move || -> stratus_tsdb::Result<()> {
                db.sync()?;
                if minute {
                    db.retain(Utc::now().timestamp_millis() - keep_ms)?;
                    if db.log_bytes() > limit {
                        db.checkpoint()?;
                    }
                }
                Ok(())
            })
            .await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "time-series store upkeep failed"),
                Err(e) => tracing::warn!(error = %e, "time-series store upkeep panicked"),
            }
        }
    });
}

/// A time in a query: RFC 3339 or Unix seconds (as Prometheus takes them).
pub fn parse_time(field: &str, s: &str) -> Result<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() {
            return Ok((secs * 1000.0) as i64);
        }
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| Error::invalid(field, "is not an RFC 3339 time or Unix seconds"))
}

/// A step: seconds, or a duration such as `30s`, `5m`, `1h`.
pub fn parse_step(s: &str) -> Result<i64> {
    parse_duration("step", s)
}

/// A positive duration in milliseconds: seconds, or `30s`, `5m`, `1h`, `1d`.
pub fn parse_duration(field: &str, s: &str) -> Result<i64> {
    let bad = || Error::invalid(field, "is not a duration (e.g. 15, 30s, 5m, 1h)");
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs > 0.0 {
            return Ok((secs * 1000.0) as i64);
        }
        return Err(bad());
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if n <= 0 {
        return Err(bad());
    }
    n.checked_mul(ms).ok_or_else(bad)
}

/// Labels a program may not set on its own series (the platform sets them).
const RESERVED: &[&str] = &["project_id", "vdc_id", "host_id", "instance_id"];

fn metric_name_ok(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

/// Custom metrics for a project: `resource.write` on it; every series is labelled with
/// the project (and its VDC), so its owners — and only they — query it.
pub async fn push(
    app: &App,
    p: &Principal,
    b: stratus_api::MetricsPush,
) -> Result<stratus_api::MetricsPushed> {
    let (project, chain) = app.project_visible(p, b.project_id).await?;
    super::require_seen(
        p,
        Perm::ResourceWrite,
        &crate::authz::Target::Project {
            id: project.id,
            chain: &chain,
        },
        "project",
        project.id,
    )?;
    if b.samples.is_empty() || b.samples.len() > 10_000 {
        return Err(Error::invalid("samples", "give 1 to 10,000 samples"));
    }
    let now = Utc::now().timestamp_millis();
    let (pid, vdc) = (project.id.to_string(), project.vdc_id.to_string());
    let mut samples = Vec::with_capacity(b.samples.len());
    for (i, s) in b.samples.iter().enumerate() {
        let field = |f: &str| format!("samples[{i}].{f}");
        if !metric_name_ok(&s.name) {
            return Err(Error::invalid(
                &field("name"),
                "must match [a-zA-Z_:][a-zA-Z0-9_:]*",
            ));
        }
        if s.name.starts_with("stratus_") {
            return Err(Error::invalid(
                &field("name"),
                "stratus_ names are the platform's own metrics",
            ));
        }
        if s.labels.len() > 32 {
            return Err(Error::invalid(&field("labels"), "at most 32 labels"));
        }
        for (k, v) in &s.labels {
            if k == NAME || RESERVED.contains(&k.as_str()) || k.starts_with("__") {
                return Err(Error::invalid(
                    &field("labels"),
                    &format!("{k} is set by the platform"),
                ));
            }
            if v.len() > 1024 {
                return Err(Error::invalid(
                    &field("labels"),
                    &format!("{k} is longer than 1024 bytes"),
                ));
            }
        }
        let t = s.timestamp_ms.unwrap_or(now);
        if (t - now).abs() > 3_600_000 {
            return Err(Error::invalid(
                &field("timestamp_ms"),
                "must be within an hour of now",
            ));
        }
        let pairs = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([
                (NAME, s.name.as_str()),
                ("project_id", pid.as_str()),
                ("vdc_id", vdc.as_str()),
            ]);
        let labels =
            Labels::new(pairs).map_err(|e| Error::invalid(&field("labels"), &e.to_string()))?;
        samples.push(Sample {
            labels,
            t,
            v: s.value,
        });
    }
    let db = app.tsdb.clone();
    let done = tokio::task::spawn_blocking(move || db.append(&samples))
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(store_error)?;
    Ok(stratus_api::MetricsPushed {
        samples: done.samples,
        out_of_order: done.out_of_order,
        new_series: done.new_series,
    })
}

/// A range query for `p`.
pub async fn query_range(
    app: &App,
    p: &Principal,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Vec<stratus_tsdb::SeriesData>> {
    let extra = scope(app, p).await?;
    let db = app.tsdb.clone();
    let q = query.to_string();
    tokio::task::spawn_blocking(move || {
        stratus_tsdb::query::query_range(&db, &q, start, end, step, &extra)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(store_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_api::{CpuSeconds, HostCounters, NicCounters};

    #[test]
    fn host_reports_become_queryable_series() {
        let db = Tsdb::in_memory();
        let host = Uuid::new_v4();
        let t0 = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        for i in 0..7i64 {
            let h = HostCounters {
                // Two CPUs, one busy: 1 s user per second, 1 s idle per second.
                cpu_seconds: vec![
                    CpuSeconds {
                        mode: "user".into(),
                        seconds: i as f64 * 10.0,
                    },
                    CpuSeconds {
                        mode: "idle".into(),
                        seconds: i as f64 * 10.0,
                    },
                ],
                memory_total_bytes: 8 << 30,
                memory_available_bytes: 2 << 30,
                nics: vec![NicCounters {
                    device: "eth0".into(),
                    receive_bytes: i * 1000,
                    ..Default::default()
                }],
                ..Default::default()
            };
            let at = t0 + chrono::Duration::seconds(i * 10);
            db.append(&host_samples(host, "node-1", &h, at)).unwrap();
        }
        let end = (t0 + chrono::Duration::seconds(60)).timestamp_millis();
        let busy = stratus_tsdb::query::query_instant(
            &db,
            "sum by (host) (rate(stratus_host_cpu_seconds_total{mode!=\"idle\"}[1m]))",
            end,
            &[],
        )
        .unwrap();
        assert_eq!(busy.len(), 1);
        assert_eq!(busy[0].0.get("host"), Some("node-1"));
        assert!((busy[0].1 - 1.0).abs() < 1e-9, "{busy:?}");
        let used = stratus_tsdb::query::query_instant(
            &db,
            "1 - stratus_host_memory_available_bytes / stratus_host_memory_total_bytes",
            end,
            &[],
        )
        .unwrap();
        assert_eq!(used[0].1, 0.75);
        let rx = stratus_tsdb::query::query_instant(
            &db,
            "rate(stratus_host_network_receive_bytes_total{device=\"eth0\"}[1m])",
            end,
            &[],
        )
        .unwrap();
        assert_eq!(rx[0].1, 100.0);
    }
}
