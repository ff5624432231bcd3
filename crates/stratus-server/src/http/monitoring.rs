//! Handlers for monitoring: metric queries.

use axum::extract::State;
use chrono::Utc;
use stratus_api::*;

use super::extract::{Ctx, Query};
use super::Ok;
use crate::app::monitoring;
use crate::app::AppRef;

/// Prometheus's rendering of a sample value.
fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn metric(l: &stratus_tsdb::Labels) -> std::collections::BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A PromQL range query over the metrics the caller may see (other tenants' series are
/// not there for them).
#[utoipa::path(get, path = "/v1/metrics/query_range", operation_id = "metrics_query_range", tag = "monitoring",
    params(MetricsRangeQuery),
    responses((status = 200, body = MetricsResult), (status = "default", body = ErrorBody)))]
pub async fn metrics_query_range(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<MetricsRangeQuery>,
) -> Ok<MetricsResult> {
    let end = match q.end.as_deref() {
        Some(s) => monitoring::parse_time("end", s)?,
        None => Utc::now().timestamp_millis(),
    };
    let start = match q.start.as_deref() {
        Some(s) => monitoring::parse_time("start", s)?,
        None => end - 3_600_000,
    };
    let step = match q.step.as_deref() {
        Some(s) => monitoring::parse_step(s)?,
        None => 60_000,
    };
    let series = monitoring::query_range(&app, &ctx.p, &q.query, start, end, step).await?;
    Ok(axum::Json(MetricsResult {
        result_type: "matrix".into(),
        result: series
            .iter()
            .map(|s| MetricSeries {
                metric: metric(&s.labels),
                values: s
                    .samples
                    .iter()
                    .map(|(t, v)| (*t as f64 / 1000.0, value_text(*v)))
                    .collect(),
                value: None,
            })
            .collect(),
    }))
}

/// A PromQL query at one time (default now).
#[utoipa::path(get, path = "/v1/metrics/query", operation_id = "metrics_query", tag = "monitoring",
    params(MetricsInstantQuery),
    responses((status = 200, body = MetricsResult), (status = "default", body = ErrorBody)))]
pub async fn metrics_query(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<MetricsInstantQuery>,
) -> Ok<MetricsResult> {
    let t = match q.time.as_deref() {
        Some(s) => monitoring::parse_time("time", s)?,
        None => Utc::now().timestamp_millis(),
    };
    let series = monitoring::query_range(&app, &ctx.p, &q.query, t, t, 1).await?;
    Ok(axum::Json(MetricsResult {
        result_type: "vector".into(),
        result: series
            .iter()
            .filter_map(|s| {
                s.samples.last().map(|(t, v)| MetricSeries {
                    metric: metric(&s.labels),
                    values: vec![],
                    value: Some((*t as f64 / 1000.0, value_text(*v))),
                })
            })
            .collect(),
    }))
}
