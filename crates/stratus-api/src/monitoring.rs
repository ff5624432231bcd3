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

/// Custom (business) metrics a program pushes for its project (spec 8.3.10.3, 8.4.2.4).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsPush {
    /// The project the series belong to; each gets `project_id` as a label.
    pub project_id: uuid::Uuid,
    /// At most 10,000 samples a push.
    pub samples: Vec<PushedSample>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushedSample {
    /// A Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`), not starting with `stratus_`
    /// (those are the platform's).
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// Milliseconds since the Unix epoch; default now.
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricsPushed {
    pub samples: usize,
    /// Not later than the series' last sample: dropped.
    pub out_of_order: usize,
    pub new_series: usize,
}

// ---------------------------------------------------------------- alerting

/// How bad an alert is (紧急, 重要, 次要, 提示), most severe first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Info => "info",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Critical,
            Severity::Major,
            Severity::Minor,
            Severity::Info,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// At least as severe as `min`.
    pub fn at_least(self, min: Severity) -> bool {
        self <= min
    }
}

/// An alert rule: every series its PromQL expression returns, for `for` on end, is an
/// alert. A rule of a project sees only that project's series; a platform rule all.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertRule {
    pub id: uuid::Uuid,
    pub name: String,
    /// PromQL, usually a comparison: `rate(stratus_instance_cpu_seconds_total[1m]) > 0.9`.
    pub expr: String,
    /// How long a series must keep coming back before it fires (`5m`), as given.
    #[serde(rename = "for")]
    pub for_: String,
    pub for_secs: i64,
    pub severity: Severity,
    /// Added to every alert of the rule.
    pub labels: BTreeMap<String, String>,
    /// The alert's text; `{{ $value }}` and `{{ $labels.name }}` are filled in.
    pub summary: String,
    /// A tenant rule's project; absent for platform rules.
    pub project_id: Option<uuid::Uuid>,
    pub vdc_id: Option<uuid::Uuid>,
    pub enabled: bool,
    /// The last evaluation's error, if it failed.
    pub last_error: Option<String>,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleCreate {
    pub name: String,
    pub expr: String,
    /// A duration (`0s`, `30s`, `5m`, `1h`); default `0s` (fire at the first evaluation).
    #[serde(rename = "for", default)]
    pub for_: Option<String>,
    pub severity: Severity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub summary: String,
    /// Absent: a platform rule (needs `alert.write` platform-wide).
    #[serde(default)]
    pub project_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub expr: Option<String>,
    #[serde(rename = "for", default)]
    pub for_: Option<String>,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A ready-made rule for the common cases; create it with `expr`, `for` and `severity`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleTemplate {
    pub key: String,
    pub name: String,
    pub description: String,
    pub expr: String,
    #[serde(rename = "for")]
    pub for_: String,
    pub severity: Severity,
    pub summary: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// One alert: repeated firings of the same thing (same source, name and labels) are one
/// alert with a count, until it resolves.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    pub id: uuid::Uuid,
    pub name: String,
    /// `rule`, `builtin` (host down) or the name an external system posted it with.
    pub source: String,
    pub rule_id: Option<uuid::Uuid>,
    pub severity: Severity,
    pub state: AlertState,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    /// The rule's value when it last fired.
    pub value: Option<f64>,
    pub project_id: Option<uuid::Uuid>,
    pub vdc_id: Option<uuid::Uuid>,
    pub host_id: Option<uuid::Uuid>,
    /// Why no one is told: `inhibited: host … is down` or `silenced: …` (maintenance).
    pub suppressed: Option<String>,
    /// Firings grouped into this alert.
    pub count: i64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub last_fired_at: chrono::DateTime<chrono::Utc>,
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<chrono::DateTime<chrono::Utc>>,
    pub ack_comment: String,
    /// The ticket made from it.
    pub ticket_id: Option<uuid::Uuid>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertFilter {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub state: Option<AlertState>,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub project_id: Option<uuid::Uuid>,
    /// The VDC and every VDC below it.
    #[serde(default)]
    pub vdc_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub host_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub acknowledged: Option<bool>,
}

/// An alert from another system (Zabbix, a business program…) into the alert center.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertPost {
    pub name: String,
    /// Who raised it; not `rule` or `builtin`.
    pub source: String,
    pub severity: Severity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub summary: String,
    /// The project it concerns (`resource.write` there); absent: a platform alert
    /// (`alert.write` platform-wide).
    #[serde(default)]
    pub project_id: Option<uuid::Uuid>,
    /// `firing` (default) or `resolved`.
    #[serde(default)]
    pub state: Option<AlertState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertAck {
    #[serde(default)]
    pub comment: String,
}

/// A count of alerts by one of their attributes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertGroup {
    pub key: String,
    pub firing: i64,
    pub unacknowledged: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertGroupBy {
    /// `severity` (default), `source`, `name`, `vdc_id`, `project_id` or `host_id`.
    #[serde(default)]
    pub by: Option<String>,
}

/// A maintenance window: alerts whose labels match every matcher are kept but told to
/// no one while it lasts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Silence {
    pub id: uuid::Uuid,
    /// Label name → exact value (`host_id`, `instance_id`, `alertname`, …).
    pub matchers: BTreeMap<String, String>,
    pub starts_at: chrono::DateTime<chrono::Utc>,
    pub ends_at: chrono::DateTime<chrono::Utc>,
    pub comment: String,
    /// A tenant's silence covers only its project's alerts.
    pub project_id: Option<uuid::Uuid>,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceCreate {
    pub matchers: BTreeMap<String, String>,
    /// Default now.
    #[serde(default)]
    pub starts_at: Option<chrono::DateTime<chrono::Utc>>,
    pub ends_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub project_id: Option<uuid::Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// `target` is a URL; the alert is POSTed as JSON.
    Webhook,
    /// `target` is a program (absolute path) run with the JSON on its standard input —
    /// for SMS or 企业微信 gateways. Platform channels only.
    Command,
}

/// Where alerts are told, and which: those of its VDC and below (a platform channel: all)
/// at least as severe as `min_severity`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotifyChannel {
    pub id: uuid::Uuid,
    pub name: String,
    pub kind: ChannelKind,
    pub target: String,
    pub min_severity: Severity,
    pub vdc_id: Option<uuid::Uuid>,
    pub enabled: bool,
    /// Notifications past this many in an hour are dropped (recorded as `rate_limited`).
    pub max_per_hour: i64,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyChannelCreate {
    pub name: String,
    pub kind: ChannelKind,
    pub target: String,
    /// Default `info` (every alert).
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Absent: a platform channel (`alert.write` platform-wide); else `vdc.write` there.
    #[serde(default)]
    pub vdc_id: Option<uuid::Uuid>,
    /// 1 to 10,000; default 60.
    #[serde(default)]
    pub max_per_hour: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Failed,
    RateLimited,
}

/// One attempt to tell a channel of an alert's firing or resolution.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: uuid::Uuid,
    pub alert_id: uuid::Uuid,
    pub channel_id: uuid::Uuid,
    /// `firing` or `resolved`.
    pub event: AlertState,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a channel receives (webhook body, command input).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertNotice {
    pub event: AlertState,
    pub alert: Alert,
}

// ---------------------------------------------------------------- tickets

/// Where a ticket is: open → claimed → in progress → resolved → closed (a resolved ticket
/// may go back into progress; an open or claimed one may be closed as not needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    Open,
    Claimed,
    InProgress,
    Resolved,
    Closed,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Open => "open",
            TicketState::Claimed => "claimed",
            TicketState::InProgress => "in_progress",
            TicketState::Resolved => "resolved",
            TicketState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<TicketState> {
        [
            TicketState::Open,
            TicketState::Claimed,
            TicketState::InProgress,
            TicketState::Resolved,
            TicketState::Closed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A ticket (工单): a piece of operations work, often made from an alert.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ticket {
    pub id: uuid::Uuid,
    pub title: String,
    pub description: String,
    pub state: TicketState,
    pub priority: Severity,
    /// The account working it.
    pub assignee: Option<String>,
    pub alert_id: Option<uuid::Uuid>,
    pub project_id: Option<uuid::Uuid>,
    pub vdc_id: Option<uuid::Uuid>,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    pub closed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its history, oldest first (on `GET /v1/tickets/{id}`; empty in lists).
    #[serde(default)]
    pub events: Vec<TicketEvent>,
}

/// A comment, or a change of state or assignee.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TicketEvent {
    pub at: chrono::DateTime<chrono::Utc>,
    pub author: String,
    /// `comment`, `state` or `assignee`.
    pub kind: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketCreate {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Default `major`.
    #[serde(default)]
    pub priority: Option<Severity>,
    /// A tenant's ticket; absent: a platform ticket (`alert.write`).
    #[serde(default)]
    pub project_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub assignee: Option<String>,
}

/// Make a ticket from an alert: its title, priority and project come from the alert.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertTicket {
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketTransition {
    pub state: TicketState,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketUpdate {
    /// An account name; empty to unassign.
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub priority: Option<Severity>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketComment {
    pub body: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketFilter {
    #[serde(default)]
    pub state: Option<TicketState>,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub project_id: Option<uuid::Uuid>,
    /// Tickets not closed.
    #[serde(default)]
    pub open: Option<bool>,
}
