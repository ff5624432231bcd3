//! Notification channels and delivery (spec 8.3.4.4 (6)).
//!
//! An alert's firing and its resolution are each queued once per matching channel, with
//! the JSON the channel will get fixed at that moment; a worker delivers what is due every
//! second. A failed delivery is retried after 2, 4, 8 and 16 s, then recorded as failed;
//! past a channel's `max_per_hour` deliveries are recorded as `rate_limited` and dropped,
//! so an alert storm cannot flood a pager. Every attempt's outcome is in the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use stratus_api::*;
use uuid::Uuid;

use crate::app::{require, require_global, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::alerts::{AlertRow, Delivery};
use crate::store::Conds;

const MAX_ATTEMPTS: i64 = 5;
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Queue `event` of `a` for every enabled channel that takes it; a firing marks the alert
/// notified, so its resolution will follow.
pub async fn enqueue(app: &App, a: &mut AlertRow, event: AlertState) -> Result<()> {
    let mut c = Conds::new();
    c.and("enabled = 1", []);
    let body = serde_json::to_string(&AlertNotice {
        event,
        alert: a.alert.clone(),
    })
    .map_err(|e| Error::internal(e.to_string()))?;
    let now = Utc::now();
    for ch in app.store.channel_list(&c).await? {
        if !a.alert.severity.at_least(ch.min_severity) {
            continue;
        }
        if let Some(scope) = ch.vdc_id {
            match a.alert.vdc_id {
                Some(v) if app.store.vdc_is_within(v, scope).await? => {}
                _ => continue,
            }
        }
        app.store
            .notification_insert(&Delivery {
                n: Notification {
                    id: Uuid::new_v4(),
                    alert_id: a.alert.id,
                    channel_id: ch.id,
                    event,
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    last_error: String::new(),
                    created_at: now,
                    sent_at: None,
                },
                body: body.clone(),
            })
            .await?;
    }
    if event == AlertState::Firing && !a.notified {
        a.notified = true;
        app.store.alert_update(a).await?;
    }
    Ok(())
}

async fn send(
    client: &reqwest::Client,
    ch: &NotifyChannel,
    body: &str,
) -> std::result::Result<(), String> {
    match ch.kind {
        ChannelKind::Webhook => {
            let r = client
                .post(&ch.target)
                .header("content-type", "application/json")
                .body(body.to_string())
                .timeout(WEBHOOK_TIMEOUT)
                .send()
                .await
                .map_err(|e| format!("{e}"))?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("the receiver answered {}", r.status()))
            }
        }
        ChannelKind::Command => {
            use tokio::io::AsyncWriteExt;
            let mut child = tokio::process::Command::new(&ch.target)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", ch.target))?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(body.as_bytes())
                    .await
                    .map_err(|e| format!("writing to {}: {e}", ch.target))?;
            }
            let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
                .await
                .map_err(|_| format!("{} did not finish in 30 s", ch.target))?
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                Err(format!(
                    "{} failed ({}): {}",
                    ch.target,
                    out.status,
                    err.trim()
                ))
            }
        }
    }
}

/// Deliver what is due; returns how many were attempted.
pub async fn deliver_due(app: &App, client: &reqwest::Client) -> Result<usize> {
    let now = Utc::now();
    let due = app.store.notifications_due(now, 100).await?;
    let n = due.len();
    for d in due {
        let mut note = d.n;
        let mut next = now;
        match app.store.channel_get(note.channel_id).await? {
            None => {
                note.status = DeliveryStatus::Failed;
                note.last_error = "the channel was deleted".into();
            }
            Some(ch) => {
                let hour_ago = now - chrono::Duration::hours(1);
                if app.store.channel_sent_since(ch.id, hour_ago).await? >= ch.max_per_hour {
                    note.status = DeliveryStatus::RateLimited;
                    note.last_error = format!("over {} notifications this hour", ch.max_per_hour);
                } else {
                    note.attempts += 1;
                    match send(client, &ch, &d.body).await {
                        Ok(()) => {
                            note.status = DeliveryStatus::Sent;
                            note.sent_at = Some(Utc::now());
                            note.last_error.clear();
                        }
                        Err(e) => {
                            tracing::warn!(channel = %ch.name, error = %e, "notification failed");
                            note.last_error = e;
                            if note.attempts >= MAX_ATTEMPTS {
                                note.status = DeliveryStatus::Failed;
                            } else {
                                next = now + chrono::Duration::seconds(1 << note.attempts);
                            }
                        }
                    }
                }
            }
        }
        app.store.notification_update(&note, next).await?;
    }
    Ok(n)
}

/// Evaluate rules every `monitoring.rule_interval_secs` and deliver every second.
pub fn spawn(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut ev = super::alerts::Evaluator::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let every = app.config.monitoring.rule_interval_secs.max(1);
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if n.is_multiple_of(every) {
                if let Err(e) = super::alerts::evaluate(&app, &mut ev).await {
                    tracing::warn!(error = %e, "alert evaluation failed");
                }
            }
            n += 1;
            if let Err(e) = deliver_due(&app, &client).await {
                tracing::warn!(error = %e, "notification delivery failed");
            }
        }
    });
}

// ---------------------------------------------------------------- channels API

fn check_channel(b: &NotifyChannelCreate) -> Result<()> {
    if b.name.is_empty() || b.name.len() > 128 {
        return Err(Error::invalid("name", "must be 1 to 128 characters"));
    }
    match b.kind {
        ChannelKind::Webhook => {
            let u = url::Url::parse(&b.target)
                .map_err(|e| Error::invalid("target", &format!("is not a URL: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(Error::invalid("target", "a webhook URL is http or https"));
            }
        }
        ChannelKind::Command => {
            if b.vdc_id.is_some() {
                return Err(Error::invalid(
                    "kind",
                    "command channels run on the control plane: platform channels only",
                ));
            }
            let path = std::path::Path::new(&b.target);
            if !path.is_absolute() || !path.is_file() {
                return Err(Error::invalid(
                    "target",
                    "must be the absolute path of a program on the control-plane host",
                ));
            }
        }
    }
    if let Some(m) = b.max_per_hour {
        if !(1..=10_000).contains(&m) {
            return Err(Error::invalid(
                "max_per_hour",
                "must be between 1 and 10,000",
            ));
        }
    }
    Ok(())
}

pub async fn channel_create(
    app: &App,
    p: &Principal,
    b: NotifyChannelCreate,
) -> Result<NotifyChannel> {
    match b.vdc_id {
        None => require_global(p, Perm::AlertWrite)?,
        Some(v) => {
            let (_, chain) = app.vdc_visible(p, v).await?;
            require(p, Perm::VdcWrite, &Target::Vdc { chain: &chain }, "VDC", v)?;
        }
    }
    check_channel(&b)?;
    let ch = NotifyChannel {
        id: Uuid::new_v4(),
        name: b.name,
        kind: b.kind,
        target: b.target,
        min_severity: b.min_severity.unwrap_or(Severity::Info),
        vdc_id: b.vdc_id,
        enabled: true,
        max_per_hour: b.max_per_hour.unwrap_or(60),
        created_by: p.name.clone(),
        created_at: Utc::now(),
    };
    app.store.channel_insert(&ch).await?;
    Ok(ch)
}

pub async fn channel_list(app: &App, p: &Principal) -> Result<Vec<NotifyChannel>> {
    let mut c = Conds::new();
    crate::store::vdc_visible(&mut c, "vdc_id", &p.visibility(Perm::VdcRead));
    app.store.channel_list(&c).await
}

async fn channel_visible(app: &App, p: &Principal, id: Uuid) -> Result<(NotifyChannel, bool)> {
    let ch = app
        .store
        .channel_get(id)
        .await?
        .ok_or_else(|| Error::not_found("notification channel", id))?;
    let writable = match ch.vdc_id {
        None => {
            if !p.visibility(Perm::VdcRead).all {
                return Err(Error::not_found("notification channel", id));
            }
            p.has_global(Perm::AlertWrite)
        }
        Some(v) => {
            let chain = app.store.vdc_chain(v).await?;
            let t = Target::Vdc { chain: &chain };
            if !p.can(Perm::VdcRead, &t) {
                return Err(Error::not_found("notification channel", id));
            }
            p.can(Perm::VdcWrite, &t)
        }
    };
    Ok((ch, writable))
}

pub async fn channel_get(app: &App, p: &Principal, id: Uuid) -> Result<NotifyChannel> {
    Ok(channel_visible(app, p, id).await?.0)
}

pub async fn channel_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let (_, writable) = channel_visible(app, p, id).await?;
    if !writable {
        return Err(Error::forbidden(format!(
            "you may not delete notification channel {id}"
        )));
    }
    app.store.channel_delete(id).await?;
    Ok(())
}

/// A channel's recent deliveries.
pub async fn channel_deliveries(app: &App, p: &Principal, id: Uuid) -> Result<Vec<Notification>> {
    channel_visible(app, p, id).await?;
    let mut c = Conds::new();
    c.and("channel_id = ?", [id.into()]);
    app.store.notification_list(&c).await
}
