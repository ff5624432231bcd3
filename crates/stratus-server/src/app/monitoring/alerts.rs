//! Alert rules, their evaluation, and the alert center (spec 8.3.4.4, 8.3.4.10, 8.3.4.13).
//!
//! - A rule is a PromQL expression: every series it returns is a candidate alert, which
//!   fires once it has come back for the rule's `for`. A tenant rule is evaluated with its
//!   project's matcher added, so it can only ever see its own series.
//! - Alerts are grouped by fingerprint (source, name, labels): while one is firing, more
//!   firings of the same thing add to its count instead of making new alerts, and the
//!   channels are told once — when it fires and when it resolves.
//! - Host down is built in: a host that stops heartbeating (`compute.host_down_after_secs`)
//!   raises a critical alert, and every other alert on that host is inhibited (kept, not
//!   told) until it is back. Silences (maintenance windows) hold matching alerts likewise.
//! - Pending state (a series seen but not yet for `for`) is kept in memory, as Prometheus
//!   does; everything a person sees or did (alerts, acknowledgements) is in the store.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use stratus_api::*;
use stratus_tsdb::{Matcher, NAME};
use uuid::Uuid;

use super::notify;
use crate::app::{require_global, require_seen, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::alerts::AlertRow;
use crate::store::{Conds, Paging};

/// Serializes the writers of alerts (evaluation and posted alerts), so a count or a
/// suppression is never written back over a newer one.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const HOST_DOWN: &str = "HostDown";
const SOURCES_OWN: [&str; 2] = ["rule", "builtin"];

/// Ready-made rules (the `{{ }}` parts are filled in per alert).
pub fn templates() -> Vec<AlertRuleTemplate> {
    let t =
        |key: &str, name: &str, description: &str, expr: &str, for_: &str, sev, summary: &str| {
            AlertRuleTemplate {
                key: key.into(),
                name: name.into(),
                description: description.into(),
                expr: expr.into(),
                for_: for_.into(),
                severity: sev,
                summary: summary.into(),
            }
        };
    vec![
        t(
            "instance_cpu_high",
            "InstanceCpuHigh",
            "A guest keeps more than 90% of its CPU busy (rate of CPU seconds over its vCPUs).",
            "rate(stratus_instance_cpu_seconds_total[1m]) > 0.9",
            "5m",
            Severity::Major,
            "instance {{ $labels.instance_id }} CPU busy at {{ $value }} CPUs",
        ),
        t(
            "instance_memory_high",
            "InstanceMemoryHigh",
            "A guest's QEMU process holds more than 95% of the memory it was given.",
            "stratus_instance_memory_used_bytes / stratus_instance_memory_bytes > 0.95",
            "5m",
            Severity::Minor,
            "instance {{ $labels.instance_id }} uses {{ $value }} of its memory",
        ),
        t(
            "host_cpu_high",
            "HostCpuHigh",
            "A host's CPUs are more than 90% busy.",
            "sum by (host_id, host) (rate(stratus_host_cpu_seconds_total{mode!=\"idle\"}[5m])) \
             / count by (host_id, host) (stratus_host_cpu_seconds_total{mode=\"idle\"}) > 0.9",
            "10m",
            Severity::Major,
            "host {{ $labels.host }} CPU {{ $value }} busy",
        ),
        t(
            "host_memory_low",
            "HostMemoryLow",
            "Less than 10% of a host's memory is available.",
            "stratus_host_memory_available_bytes / stratus_host_memory_total_bytes < 0.1",
            "5m",
            Severity::Major,
            "host {{ $labels.host }} has {{ $value }} of its memory available",
        ),
        t(
            "host_disk_full",
            "HostDiskFull",
            "The file system holding instance disks is more than 90% full.",
            "1 - stratus_host_filesystem_avail_bytes / stratus_host_filesystem_size_bytes > 0.9",
            "5m",
            Severity::Critical,
            "host {{ $labels.host }} instance file system {{ $value }} full",
        ),
    ]
}

/// A rule's `for`: a duration, `0s` allowed.
pub fn parse_for(s: &str) -> Result<i64> {
    if s.trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" {
        return Ok(0);
    }
    let ms = super::parse_duration("for", s)?;
    if ms % 1000 != 0 || ms > 86_400_000 {
        return Err(Error::invalid("for", "must be whole seconds, at most 24h"));
    }
    Ok(ms / 1000)
}

/// Metric names the platform writes (whether or not a series exists yet).
fn platform_metric(name: &str) -> bool {
    name.starts_with("stratus_instance_")
        || name.starts_with("stratus_host_")
        || name.starts_with("stratus_http_")
        || name.starts_with("stratus_tsdb_")
}

/// Parse the expression and refuse metrics the store has never seen.
fn check_expr(app: &App, expr: &str) -> Result<()> {
    let e = stratus_tsdb::query::parse(expr).map_err(|e| Error::invalid("expr", &e.to_string()))?;
    let names = stratus_tsdb::query::metric_names(&e);
    if names.is_empty() {
        return Err(Error::invalid("expr", "must select at least one metric"));
    }
    let known: HashSet<String> = app
        .tsdb
        .label_values(NAME)
        .map_err(|e| Error::internal(e.to_string()))?
        .into_iter()
        .collect();
    for n in names {
        if !platform_metric(&n) && !known.contains(&n) {
            return Err(Error::invalid(
                "expr",
                &format!("unknown metric {n}: no series of it has been recorded"),
            ));
        }
    }
    Ok(())
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in labels {
        if stratus_tsdb::Labels::new([(k.as_str(), v.as_str())]).is_err() || k.starts_with("__") {
            return Err(Error::invalid(
                "labels",
                &format!("{k:?} must match [a-zA-Z_][a-zA-Z0-9_]*"),
            ));
        }
        if ["project_id", "vdc_id", "alertname"].contains(&k.as_str()) {
            return Err(Error::invalid(
                "labels",
                &format!("{k} is set by the platform"),
            ));
        }
    }
    if labels.len() > 32 {
        return Err(Error::invalid("labels", "at most 32 labels"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 128 {
        return Err(Error::invalid("name", "must be 1 to 128 characters"));
    }
    Ok(())
}

/// Who may change rules, silences and alerts of `project` (absent: the platform's).
pub(crate) async fn require_scope_write(
    app: &App,
    p: &Principal,
    project: Option<Uuid>,
) -> Result<(Option<Uuid>, Option<Uuid>)> {
    match project {
        None => {
            require_global(p, Perm::AlertWrite)?;
            Ok((None, None))
        }
        Some(id) => {
            let (pr, chain) = app.project_visible(p, id).await?;
            if !p.has_global(Perm::AlertWrite) {
                require_seen(
                    p,
                    Perm::ResourceWrite,
                    &Target::Project { id, chain: &chain },
                    "project",
                    id,
                )?;
            }
            Ok((Some(id), Some(pr.vdc_id)))
        }
    }
}

/// Whether `p` sees what belongs to `project`/`vdc` (nothing: platform-wide readers only).
pub(crate) async fn sees(
    app: &App,
    p: &Principal,
    project: Option<Uuid>,
    vdc: Option<Uuid>,
) -> Result<bool> {
    if p.visibility(Perm::ResourceRead).all {
        return Ok(true);
    }
    let Some(vdc) = vdc else {
        return Ok(false);
    };
    let chain = app.store.vdc_chain(vdc).await?;
    Ok(match project {
        Some(id) => p.can(Perm::ResourceRead, &Target::Project { id, chain: &chain }),
        None => p.can(Perm::ResourceRead, &Target::Vdc { chain: &chain }),
    })
}

/// Whether `p` may change what belongs to `project`/`vdc`.
pub(crate) async fn may_write(
    app: &App,
    p: &Principal,
    project: Option<Uuid>,
    vdc: Option<Uuid>,
) -> Result<bool> {
    if p.has_global(Perm::AlertWrite) {
        return Ok(true);
    }
    let Some(vdc) = vdc else {
        return Ok(false);
    };
    let chain = app.store.vdc_chain(vdc).await?;
    Ok(match project {
        Some(id) => p.can(Perm::ResourceWrite, &Target::Project { id, chain: &chain }),
        None => p.can(Perm::ResourceWrite, &Target::Vdc { chain: &chain }),
    })
}

// ---------------------------------------------------------------- rules

pub async fn rule_create(app: &App, p: &Principal, b: AlertRuleCreate) -> Result<AlertRule> {
    let (project_id, vdc_id) = require_scope_write(app, p, b.project_id).await?;
    check_name(&b.name)?;
    let for_ = b.for_.unwrap_or_else(|| "0s".into());
    let for_secs = parse_for(&for_)?;
    check_expr(app, &b.expr)?;
    check_labels(&b.labels)?;
    let now = Utc::now();
    let r = AlertRule {
        id: Uuid::new_v4(),
        name: b.name,
        expr: b.expr,
        for_,
        for_secs,
        severity: b.severity,
        labels: b.labels,
        summary: b.summary,
        project_id,
        vdc_id,
        enabled: b.enabled.unwrap_or(true),
        last_error: None,
        created_by: p.name.clone(),
        created_at: now,
        updated_at: now,
    };
    app.store.alert_rule_insert(&r).await?;
    Ok(r)
}

async fn rule_visible(app: &App, p: &Principal, id: Uuid) -> Result<AlertRule> {
    let r = app
        .store
        .alert_rule_get(id)
        .await?
        .ok_or_else(|| Error::not_found("alert rule", id))?;
    if !sees(app, p, r.project_id, r.vdc_id).await? {
        return Err(Error::not_found("alert rule", id));
    }
    Ok(r)
}

async fn rule_writable(app: &App, p: &Principal, id: Uuid) -> Result<AlertRule> {
    let r = rule_visible(app, p, id).await?;
    if !may_write(app, p, r.project_id, r.vdc_id).await? {
        return Err(Error::forbidden(format!(
            "you may not change alert rule {id} (needs resource.write on its project, or alert.write)"
        )));
    }
    Ok(r)
}

pub async fn rule_get(app: &App, p: &Principal, id: Uuid) -> Result<AlertRule> {
    rule_visible(app, p, id).await
}

pub async fn rule_list(app: &App, p: &Principal) -> Result<Vec<AlertRule>> {
    let mut c = Conds::new();
    crate::store::resource_visible(&mut c, &p.visibility(Perm::ResourceRead), "");
    app.store.alert_rule_list(&c).await
}

pub async fn rule_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: AlertRuleUpdate,
) -> Result<AlertRule> {
    let mut r = rule_writable(app, p, id).await?;
    if let Some(n) = b.name {
        check_name(&n)?;
        r.name = n;
    }
    if let Some(e) = b.expr {
        check_expr(app, &e)?;
        r.expr = e;
    }
    if let Some(f) = b.for_ {
        r.for_secs = parse_for(&f)?;
        r.for_ = f;
    }
    if let Some(l) = b.labels {
        check_labels(&l)?;
        r.labels = l;
    }
    if let Some(s) = b.severity {
        r.severity = s;
    }
    if let Some(s) = b.summary {
        r.summary = s;
    }
    if let Some(e) = b.enabled {
        r.enabled = e;
    }
    r.updated_at = Utc::now();
    r.last_error = None;
    app.store.alert_rule_update(&r).await?;
    Ok(r)
}

pub async fn rule_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    rule_writable(app, p, id).await?;
    app.store.alert_rule_delete(id).await?;
    Ok(())
}

// ---------------------------------------------------------------- alerts

fn fingerprint(
    source: &str,
    name: &str,
    rule: Option<Uuid>,
    labels: &BTreeMap<String, String>,
) -> String {
    let mut h = Sha256::new();
    for part in [
        source,
        name,
        &rule.map(|r| r.to_string()).unwrap_or_default(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Fill `{{ $value }}` and `{{ $labels.x }}` in.
fn render(
    template: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    value: Option<f64>,
) -> String {
    if template.is_empty() {
        return match value {
            Some(v) => format!("{name}: {v}"),
            None => name.to_string(),
        };
    }
    let mut s = template.replace(
        "{{ $value }}",
        &value.map(|v| format!("{v:.4}")).unwrap_or_default(),
    );
    for (k, v) in labels {
        s = s.replace(&format!("{{{{ $labels.{k} }}}}"), v);
    }
    s
}

fn label_uuid(labels: &BTreeMap<String, String>, k: &str) -> Option<Uuid> {
    labels.get(k).and_then(|v| Uuid::parse_str(v).ok())
}

#[allow(clippy::too_many_arguments)]
fn new_alert(
    name: &str,
    source: &str,
    rule_id: Option<Uuid>,
    severity: Severity,
    labels: BTreeMap<String, String>,
    summary: String,
    value: Option<f64>,
    project_id: Option<Uuid>,
    vdc_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> AlertRow {
    AlertRow {
        fingerprint: fingerprint(source, name, rule_id, &labels),
        notified: false,
        alert: Alert {
            id: Uuid::new_v4(),
            name: name.into(),
            source: source.into(),
            rule_id,
            severity,
            state: AlertState::Firing,
            host_id: label_uuid(&labels, "host_id"),
            labels,
            summary,
            value,
            project_id,
            vdc_id,
            suppressed: None,
            count: 1,
            started_at: now,
            last_fired_at: now,
            resolved_at: None,
            acknowledged_by: None,
            acknowledged_at: None,
            ack_comment: String::new(),
            ticket_id: None,
        },
    }
}

async fn alert_visible(app: &App, p: &Principal, id: Uuid) -> Result<AlertRow> {
    let a = app
        .store
        .alert_get(id)
        .await?
        .ok_or_else(|| Error::not_found("alert", id))?;
    if !sees(app, p, a.alert.project_id, a.alert.vdc_id).await? {
        return Err(Error::not_found("alert", id));
    }
    Ok(a)
}

pub async fn alert_get(app: &App, p: &Principal, id: Uuid) -> Result<Alert> {
    Ok(alert_visible(app, p, id).await?.alert)
}

fn filter_conds(c: &mut Conds, f: &AlertFilter) {
    if let Some(s) = f.state {
        c.and("state = ?", [crate::store::alerts::state_text(s).into()]);
    }
    if let Some(s) = f.severity {
        c.and("severity = ?", [s.as_str().into()]);
    }
    if let Some(s) = &f.source {
        c.and("source = ?", [s.as_str().into()]);
    }
    if let Some(pid) = f.project_id {
        c.and("project_id = ?", [pid.into()]);
    }
    if let Some(v) = f.vdc_id {
        c.and(
            "vdc_id IN (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = ?)",
            [v.into()],
        );
    }
    if let Some(h) = f.host_id {
        c.and("host_id = ?", [h.into()]);
    }
    match f.acknowledged {
        Some(true) => {
            c.and("acknowledged_at IS NOT NULL", []);
        }
        Some(false) => {
            c.and("acknowledged_at IS NULL", []);
        }
        None => {}
    }
}

/// The alert center's list, newest first by default.
pub async fn alert_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: AlertFilter,
) -> Result<Page<Alert>> {
    let paging = Paging::parse(
        Some(q.sort.as_deref().unwrap_or("-started_at")),
        q.limit,
        q.next.as_deref(),
        &["started_at"],
    )?;
    let mut c = Conds::new();
    crate::store::resource_visible(&mut c, &p.visibility(Perm::ResourceRead), "");
    filter_conds(&mut c, &f);
    if let Some(n) = &q.name {
        c.and(crate::store::NAME_LIKE, [crate::store::like_contains(n)]);
    }
    let (items, next) = app.store.alert_list(&mut c, &paging).await?;
    Ok(Page { items, next })
}

/// Firing alerts counted by one attribute (the alert center's grouping).
pub async fn alert_groups(app: &App, p: &Principal, by: AlertGroupBy) -> Result<Vec<AlertGroup>> {
    let col = match by.by.as_deref().unwrap_or("severity") {
        c @ ("severity" | "source" | "name" | "vdc_id" | "project_id" | "host_id") => c,
        _ => {
            return Err(Error::invalid(
                "by",
                "must be severity, source, name, vdc_id, project_id or host_id",
            ))
        }
    };
    let mut c = Conds::new();
    crate::store::resource_visible(&mut c, &p.visibility(Perm::ResourceRead), "");
    c.and("state = 'firing'", []);
    Ok(app
        .store
        .alert_groups(&c, col)
        .await?
        .into_iter()
        .map(|(key, firing, unacknowledged)| AlertGroup {
            key,
            firing,
            unacknowledged,
        })
        .collect())
}

/// Acknowledge (claim) an alert: it stays in the center, marked as someone's.
pub async fn alert_ack(app: &App, p: &Principal, id: Uuid, b: AlertAck) -> Result<Alert> {
    let a = alert_visible(app, p, id).await?;
    if !may_write(app, p, a.alert.project_id, a.alert.vdc_id).await? {
        return Err(Error::forbidden(format!(
            "you may not acknowledge alert {id} (needs resource.write on its project, or alert.write)"
        )));
    }
    if b.comment.len() > 2000 {
        return Err(Error::invalid("comment", "at most 2,000 bytes"));
    }
    app.store.alert_ack(id, &p.name, &b.comment).await?;
    alert_get(app, p, id).await
}

/// Deliveries made for an alert.
pub async fn alert_notifications(app: &App, p: &Principal, id: Uuid) -> Result<Vec<Notification>> {
    alert_visible(app, p, id).await?;
    let mut c = Conds::new();
    c.and("alert_id = ?", [id.into()]);
    app.store.notification_list(&c).await
}

/// An alert from another system: grouped with the firing one of the same fingerprint,
/// or resolving it.
pub async fn alert_post(app: &App, p: &Principal, b: AlertPost) -> Result<Alert> {
    let (project_id, vdc_id) = require_scope_write(app, p, b.project_id).await?;
    check_name(&b.name)?;
    if b.source.is_empty() || b.source.len() > 64 || SOURCES_OWN.contains(&b.source.as_str()) {
        return Err(Error::invalid(
            "source",
            "must be 1 to 64 characters and not rule or builtin",
        ));
    }
    check_labels(&b.labels)?;
    let mut labels = b.labels;
    labels.insert("alertname".into(), b.name.clone());
    if let Some(pid) = project_id {
        labels.insert("project_id".into(), pid.to_string());
    }
    let _guard = LOCK.lock().await;
    let fp = fingerprint(&b.source, &b.name, None, &labels);
    let open = app.store.alert_firing(&fp).await?;
    let now = Utc::now();
    match (b.state.unwrap_or(AlertState::Firing), open) {
        (AlertState::Firing, Some(mut a)) => {
            a.alert.count += 1;
            a.alert.last_fired_at = now;
            a.alert.summary = render(&b.summary, &b.name, &labels, None);
            app.store.alert_update(&a).await?;
            Ok(a.alert)
        }
        (AlertState::Firing, None) => {
            let summary = render(&b.summary, &b.name, &labels, None);
            let mut a = new_alert(
                &b.name, &b.source, None, b.severity, labels, summary, None, project_id, vdc_id,
                now,
            );
            let down = down_hosts(app).await?;
            let silences = app.store.silences_active(now).await?;
            a.alert.suppressed = suppression(&a.alert, &down, &silences);
            app.store.alert_insert(&a).await?;
            if a.alert.suppressed.is_none() {
                notify::enqueue(app, &mut a, AlertState::Firing).await?;
            }
            Ok(a.alert)
        }
        (AlertState::Resolved, Some(mut a)) => {
            resolve(app, &mut a, now).await?;
            Ok(a.alert)
        }
        (AlertState::Resolved, None) => Err(Error::not_found("firing alert", &b.name)),
    }
}

async fn resolve(app: &App, a: &mut AlertRow, now: DateTime<Utc>) -> Result<()> {
    a.alert.state = AlertState::Resolved;
    a.alert.resolved_at = Some(now);
    app.store.alert_update(a).await?;
    if a.notified {
        notify::enqueue(app, a, AlertState::Resolved).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- silences

pub async fn silence_create(app: &App, p: &Principal, b: SilenceCreate) -> Result<Silence> {
    let (project_id, vdc_id) = require_scope_write(app, p, b.project_id).await?;
    if b.matchers.is_empty() {
        return Err(Error::invalid(
            "matchers",
            "give at least one label to match",
        ));
    }
    let now = Utc::now();
    let starts_at = b.starts_at.unwrap_or(now);
    if b.ends_at <= starts_at || b.ends_at <= now {
        return Err(Error::invalid(
            "ends_at",
            "must be after starts_at and in the future",
        ));
    }
    if b.ends_at - starts_at > chrono::Duration::days(366) {
        return Err(Error::invalid("ends_at", "a silence lasts at most a year"));
    }
    let s = Silence {
        id: Uuid::new_v4(),
        matchers: b.matchers,
        starts_at,
        ends_at: b.ends_at,
        comment: b.comment,
        project_id,
        created_by: p.name.clone(),
        created_at: now,
    };
    app.store.silence_insert(&s, vdc_id).await?;
    Ok(s)
}

pub async fn silence_list(app: &App, p: &Principal) -> Result<Vec<Silence>> {
    let mut c = Conds::new();
    crate::store::resource_visible(&mut c, &p.visibility(Perm::ResourceRead), "");
    app.store.silence_list(&c).await
}

/// End a silence now.
pub async fn silence_end(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let s = app
        .store
        .silence_get(id)
        .await?
        .ok_or_else(|| Error::not_found("silence", id))?;
    let vdc = match s.project_id {
        Some(pid) => app.store.project_get(pid).await?.map(|p| p.vdc_id),
        None => None,
    };
    if !sees(app, p, s.project_id, vdc).await? {
        return Err(Error::not_found("silence", id));
    }
    if !may_write(app, p, s.project_id, vdc).await? {
        return Err(Error::forbidden(format!("you may not end silence {id}")));
    }
    app.store.silence_end(id).await
}

// ---------------------------------------------------------------- evaluation

/// Hosts not heartbeating: id → name.
async fn down_hosts(app: &App) -> Result<HashMap<Uuid, String>> {
    Ok(app
        .store
        .host_list(&app.config.compute)
        .await?
        .into_iter()
        .filter(|h| h.state == HostState::Down)
        .map(|h| (h.id, h.name))
        .collect())
}

/// Why an alert is not told, if it is not.
fn suppression(a: &Alert, down: &HashMap<Uuid, String>, silences: &[Silence]) -> Option<String> {
    if a.name != HOST_DOWN {
        if let Some(name) = a.host_id.and_then(|h| down.get(&h)) {
            return Some(format!("inhibited: host {name} is down"));
        }
    }
    silences
        .iter()
        .find(|s| {
            (s.project_id.is_none() || s.project_id == a.project_id)
                && s.matchers.iter().all(|(k, v)| a.labels.get(k) == Some(v))
        })
        .map(|s| format!("silenced: {} ({})", s.comment, s.id))
}

/// What evaluation remembers between rounds: since when each candidate has been seen.
#[derive(Default)]
pub struct Evaluator {
    pending: HashMap<String, DateTime<Utc>>,
}

/// One round: evaluate every enabled rule and the host-down check, open and resolve
/// alerts, and recompute suppression.
pub async fn evaluate(app: &App, ev: &mut Evaluator) -> Result<()> {
    let _guard = LOCK.lock().await;
    let now = Utc::now();
    let mut firing: HashMap<String, AlertRow> = app
        .store
        .alerts_firing()
        .await?
        .into_iter()
        .map(|a| (a.fingerprint.clone(), a))
        .collect();
    // Fingerprints that are (still) firing after this round, and the new ones.
    let mut active: HashSet<String> = HashSet::new();
    let mut opened: Vec<AlertRow> = Vec::new();
    let mut seen_pending = HashSet::new();
    let mut c = Conds::new();
    c.and("enabled = 1", []);
    for rule in app.store.alert_rule_list(&c).await? {
        let extra = match rule.project_id {
            Some(pid) => vec![Matcher::equal("project_id", &pid.to_string())],
            None => vec![],
        };
        let (db, expr, t) = (app.tsdb.clone(), rule.expr.clone(), now.timestamp_millis());
        let result = tokio::task::spawn_blocking(move || {
            stratus_tsdb::query::query_instant(&db, &expr, t, &extra)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
        let series = match result {
            Ok(s) => {
                if rule.last_error.is_some() {
                    app.store.alert_rule_error(rule.id, None).await?;
                }
                s
            }
            Err(e) => {
                let msg = e.to_string();
                if rule.last_error.as_deref() != Some(msg.as_str()) {
                    app.store.alert_rule_error(rule.id, Some(&msg)).await?;
                }
                // A rule that cannot be evaluated neither opens nor resolves anything.
                for a in firing.values().filter(|a| a.alert.rule_id == Some(rule.id)) {
                    active.insert(a.fingerprint.clone());
                }
                continue;
            }
        };
        for (labels, value) in series {
            let mut l: BTreeMap<String, String> = labels
                .iter()
                .filter(|(k, _)| *k != NAME)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            l.extend(rule.labels.clone());
            l.insert("alertname".into(), rule.name.clone());
            let fp = fingerprint("rule", &rule.name, Some(rule.id), &l);
            let summary = render(&rule.summary, &rule.name, &l, Some(value));
            if let Some(a) = firing.get_mut(&fp) {
                active.insert(fp);
                a.alert.value = Some(value);
                a.alert.summary = summary;
                a.alert.last_fired_at = now;
                app.store.alert_update(a).await?;
                continue;
            }
            let since = *ev.pending.entry(fp.clone()).or_insert(now);
            seen_pending.insert(fp.clone());
            if (now - since).num_seconds() >= rule.for_secs {
                let project = label_uuid(&l, "project_id").or(rule.project_id);
                let vdc = label_uuid(&l, "vdc_id").or(rule.vdc_id);
                let a = new_alert(
                    &rule.name,
                    "rule",
                    Some(rule.id),
                    rule.severity,
                    l,
                    summary,
                    Some(value),
                    project,
                    vdc,
                    now,
                );
                active.insert(fp);
                opened.push(a);
            }
        }
    }
    ev.pending.retain(|fp, _| seen_pending.contains(fp));

    let down = down_hosts(app).await?;
    for (id, name) in &down {
        let labels = BTreeMap::from([
            ("alertname".to_string(), HOST_DOWN.to_string()),
            ("host_id".to_string(), id.to_string()),
            ("host".to_string(), name.clone()),
        ]);
        let fp = fingerprint("builtin", HOST_DOWN, None, &labels);
        active.insert(fp.clone());
        if !firing.contains_key(&fp) {
            let summary = format!(
                "host {name} has not reported for over {} s: its agent is down or cut off",
                app.config.compute.host_down_after_secs
            );
            opened.push(new_alert(
                HOST_DOWN,
                "builtin",
                None,
                Severity::Critical,
                labels,
                summary,
                None,
                None,
                None,
                now,
            ));
        }
    }

    // What stopped firing resolves (posted alerts resolve only when their source says so).
    for a in firing.values_mut() {
        if SOURCES_OWN.contains(&a.alert.source.as_str()) && !active.contains(&a.fingerprint) {
            resolve(app, a, now).await?;
        }
    }
    let silences = app.store.silences_active(now).await?;
    for mut a in opened {
        a.alert.suppressed = suppression(&a.alert, &down, &silences);
        app.store.alert_insert(&a).await?;
        if a.alert.suppressed.is_none() {
            notify::enqueue(app, &mut a, AlertState::Firing).await?;
        }
    }
    // Suppression of what was already firing: lifted (and told, if never told) or newly set.
    for a in firing.values_mut() {
        if a.alert.state != AlertState::Firing {
            continue;
        }
        let s = suppression(&a.alert, &down, &silences);
        if s != a.alert.suppressed {
            a.alert.suppressed = s;
            app.store.alert_update(a).await?;
        }
        if a.alert.suppressed.is_none() && !a.notified {
            notify::enqueue(app, a, AlertState::Firing).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_templates() {
        assert_eq!(parse_for("0s").unwrap(), 0);
        assert_eq!(parse_for("0").unwrap(), 0);
        assert_eq!(parse_for("5m").unwrap(), 300);
        for bad in ["5x", "-1m", "", "2d"] {
            let e = parse_for(bad).unwrap_err().to_string();
            assert!(e.contains("for"), "{bad}: {e}");
        }
        let l = BTreeMap::from([("host".to_string(), "n1".to_string())]);
        assert_eq!(
            render("{{ $labels.host }} at {{ $value }}", "X", &l, Some(0.5)),
            "n1 at 0.5000"
        );
        assert_eq!(render("", "X", &l, Some(2.0)), "X: 2");
    }

    #[test]
    fn inhibition_and_silences() {
        let host = Uuid::new_v4();
        let labels = BTreeMap::from([
            ("alertname".to_string(), "CpuHigh".to_string()),
            ("host_id".to_string(), host.to_string()),
        ]);
        let a = new_alert(
            "CpuHigh",
            "rule",
            None,
            Severity::Major,
            labels,
            String::new(),
            None,
            None,
            None,
            Utc::now(),
        );
        let down = HashMap::from([(host, "node-1".to_string())]);
        assert_eq!(
            suppression(&a.alert, &down, &[]).as_deref(),
            Some("inhibited: host node-1 is down")
        );
        let s = Silence {
            id: Uuid::new_v4(),
            matchers: BTreeMap::from([("alertname".to_string(), "CpuHigh".to_string())]),
            starts_at: Utc::now(),
            ends_at: Utc::now(),
            comment: "upgrade".into(),
            project_id: None,
            created_by: "ops".into(),
            created_at: Utc::now(),
        };
        let r = suppression(&a.alert, &HashMap::new(), std::slice::from_ref(&s));
        assert!(r.is_some_and(|r| r.starts_with("silenced: upgrade")));
        let mut other = s.clone();
        other.matchers.insert("alertname".into(), "Other".into());
        assert_eq!(suppression(&a.alert, &HashMap::new(), &[other]), None);
    }
}
