//! Request counts and latency histograms by operation, in Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// One counter's value: metric name, labels, value.
pub type Counter = (&'static str, Vec<(&'static str, String)>, f64);

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    pub fn observe(&self, operation: &str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((operation.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(operation.to_string()).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// The counters as (metric, labels, value), for the time-series store.
    pub fn snapshot(&self) -> Vec<Counter> {
        let mut out = Vec::new();
        if let Ok(r) = self.requests.lock() {
            for ((op, status), n) in r.iter() {
                out.push((
                    "stratus_http_requests_total",
                    vec![("operation", op.clone()), ("status", status.to_string())],
                    *n as f64,
                ));
            }
        }
        if let Ok(l) = self.latency.lock() {
            for (op, h) in l.iter() {
                let labels = vec![("operation", op.clone())];
                out.push((
                    "stratus_http_request_duration_seconds_sum",
                    labels.clone(),
                    h.sum,
                ));
                out.push((
                    "stratus_http_request_duration_seconds_count",
                    labels,
                    h.count as f64,
                ));
            }
        }
        out
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP stratus_http_requests_total HTTP requests by operation and status.\n");
        out.push_str("# TYPE stratus_http_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((op, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "stratus_http_requests_total{{operation=\"{op}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP stratus_http_request_duration_seconds Time to answer a request, by operation.\n");
        out.push_str("# TYPE stratus_http_request_duration_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (op, h) in l.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "stratus_http_request_duration_seconds_bucket{{operation=\"{op}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(out, "stratus_http_request_duration_seconds_bucket{{operation=\"{op}\",le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(
                    out,
                    "stratus_http_request_duration_seconds_sum{{operation=\"{op}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "stratus_http_request_duration_seconds_count{{operation=\"{op}\"}} {}",
                    h.count
                );
            }
        }
        out
    }
}
