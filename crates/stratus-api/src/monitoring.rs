//! Monitoring: metric queries (PromQL) over the embedded time-series store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsRangeQuery {
    /// PromQL (the supported subset: docs/monitoring.md).
    pub query: String,
    /// RFC 3339 or Unix seconds; default one hour before `end`.
    #[serde(default)]
    pub start: Option<String>,
    /// RFC 3339 or Unix seconds; default now.
    #[serde(default)]
    pub end: Option<String>,
    /// Seconds or a duration (`15s`, `1m`); default 60 s.
    #[serde(default)]
    pub step: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsInstantQuery {
    pub query: String,
    /// RFC 3339 or Unix seconds; default now.
    #[serde(default)]
    pub time: Option<String>,
}

/// A query's answer, shaped as Prometheus's HTTP API `data` (so its clients read it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricsResult {
    /// `matrix` (range query) or `vector` (instant query).
    #[serde(rename = "resultType")]
    pub result_type: String,
    pub result: Vec<MetricSeries>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricSeries {
    /// The series' labels (`__name__` is the metric name, when it still has one).
    pub metric: BTreeMap<String, String>,
    /// Range queries: `[unix seconds, "value"]` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub values: Vec<(f64, String)>,
    /// Instant queries: one `[unix seconds, "value"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<serde_json::Value>>)]
    pub value: Option<(f64, String)>,
}
