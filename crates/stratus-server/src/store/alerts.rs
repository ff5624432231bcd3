//! Alerting rows: rules, alerts, silences, notification channels and deliveries.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use stratus_api::{
    Alert, AlertRule, AlertState, ChannelKind, DeliveryStatus, Notification, NotifyChannel,
    Severity, Silence, Ticket, TicketEvent, TicketState,
};
use uuid::Uuid;

use super::{
    col_bool, col_i64, col_opt_str, col_opt_time, col_opt_uuid, col_str, col_time, col_uuid,
    json_col, json_text, time_text, Conds, Paging, Store,
};
use crate::error::{Error, Result};

fn severity(r: &AnyRow, col: &str) -> Result<Severity> {
    let s = col_str(r, col)?;
    Severity::parse(&s).ok_or_else(|| Error::internal(format!("column {col}: bad severity {s:?}")))
}

fn opt_text(u: Option<Uuid>) -> Option<String> {
    u.map(|u| u.to_string())
}

const RULE_COLS: &str = "id, name, expr, for_text, for_secs, severity, labels, summary, \
    project_id, vdc_id, enabled, last_error, created_by, created_at, updated_at";

fn rule_from_row(r: &AnyRow) -> Result<AlertRule> {
    Ok(AlertRule {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        expr: col_str(r, "expr")?,
        for_: col_str(r, "for_text")?,
        for_secs: col_i64(r, "for_secs")?,
        severity: severity(r, "severity")?,
        labels: json_col(r, "labels")?,
        summary: col_str(r, "summary")?,
        project_id: col_opt_uuid(r, "project_id")?,
        vdc_id: col_opt_uuid(r, "vdc_id")?,
        enabled: col_bool(r, "enabled")?,
        last_error: col_opt_str(r, "last_error")?,
        created_by: col_str(r, "created_by")?,
        created_at: col_time(r, "created_at")?,
        updated_at: col_time(r, "updated_at")?,
    })
}

/// An alert with what only the evaluator needs.
#[derive(Debug, Clone)]
pub struct AlertRow {
    pub alert: Alert,
    pub fingerprint: String,
    pub notified: bool,
}

const ALERT_COLS: &str = "id, fingerprint, name, source, rule_id, severity, state, labels, \
    summary, value, project_id, vdc_id, host_id, suppressed, notified, count, started_at, \
    last_fired_at, resolved_at, acknowledged_by, acknowledged_at, ack_comment, ticket_id";

fn alert_from_row(r: &AnyRow) -> Result<AlertRow> {
    let state = match col_str(r, "state")?.as_str() {
        "firing" => AlertState::Firing,
        _ => AlertState::Resolved,
    };
    Ok(AlertRow {
        fingerprint: col_str(r, "fingerprint")?,
        notified: col_bool(r, "notified")?,
        alert: Alert {
            id: col_uuid(r, "id")?,
            name: col_str(r, "name")?,
            source: col_str(r, "source")?,
            rule_id: col_opt_uuid(r, "rule_id")?,
            severity: severity(r, "severity")?,
            state,
            labels: json_col(r, "labels")?,
            summary: col_str(r, "summary")?,
            value: col_opt_str(r, "value")?.and_then(|v| v.parse().ok()),
            project_id: col_opt_uuid(r, "project_id")?,
            vdc_id: col_opt_uuid(r, "vdc_id")?,
            host_id: col_opt_uuid(r, "host_id")?,
            suppressed: col_opt_str(r, "suppressed")?,
            count: col_i64(r, "count")?,
            started_at: col_time(r, "started_at")?,
            last_fired_at: col_time(r, "last_fired_at")?,
            resolved_at: col_opt_time(r, "resolved_at")?,
            acknowledged_by: col_opt_str(r, "acknowledged_by")?,
            acknowledged_at: col_opt_time(r, "acknowledged_at")?,
            ack_comment: col_str(r, "ack_comment")?,
            ticket_id: col_opt_uuid(r, "ticket_id")?,
        },
    })
}

pub fn state_text(s: AlertState) -> &'static str {
    match s {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

fn status_text(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::RateLimited => "rate_limited",
    }
}

fn kind_text(k: ChannelKind) -> &'static str {
    match k {
        ChannelKind::Webhook => "webhook",
        ChannelKind::Command => "command",
    }
}

const CHANNEL_COLS: &str =
    "id, name, kind, target, min_severity, vdc_id, enabled, max_per_hour, created_by, created_at";

fn channel_from_row(r: &AnyRow) -> Result<NotifyChannel> {
    Ok(NotifyChannel {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        kind: match col_str(r, "kind")?.as_str() {
            "command" => ChannelKind::Command,
            _ => ChannelKind::Webhook,
        },
        target: col_str(r, "target")?,
        min_severity: severity(r, "min_severity")?,
        vdc_id: col_opt_uuid(r, "vdc_id")?,
        enabled: col_bool(r, "enabled")?,
        max_per_hour: col_i64(r, "max_per_hour")?,
        created_by: col_str(r, "created_by")?,
        created_at: col_time(r, "created_at")?,
    })
}

const SILENCE_COLS: &str =
    "id, matchers, starts_at, ends_at, comment, project_id, created_by, created_at";

fn silence_from_row(r: &AnyRow) -> Result<Silence> {
    Ok(Silence {
        id: col_uuid(r, "id")?,
        matchers: json_col(r, "matchers")?,
        starts_at: col_time(r, "starts_at")?,
        ends_at: col_time(r, "ends_at")?,
        comment: col_str(r, "comment")?,
        project_id: col_opt_uuid(r, "project_id")?,
        created_by: col_str(r, "created_by")?,
        created_at: col_time(r, "created_at")?,
    })
}

const NOTIFICATION_COLS: &str =
    "id, alert_id, channel_id, event, status, attempts, last_error, body, next_at, created_at, sent_at";

/// A delivery with the body it carries.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub n: Notification,
    pub body: String,
}

fn notification_from_row(r: &AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        body: col_str(r, "body")?,
        n: Notification {
            id: col_uuid(r, "id")?,
            alert_id: col_uuid(r, "alert_id")?,
            channel_id: col_uuid(r, "channel_id")?,
            event: match col_str(r, "event")?.as_str() {
                "firing" => AlertState::Firing,
                _ => AlertState::Resolved,
            },
            status: match col_str(r, "status")?.as_str() {
                "sent" => DeliveryStatus::Sent,
                "failed" => DeliveryStatus::Failed,
                "rate_limited" => DeliveryStatus::RateLimited,
                _ => DeliveryStatus::Pending,
            },
            attempts: col_i64(r, "attempts")?,
            last_error: col_str(r, "last_error")?,
            created_at: col_time(r, "created_at")?,
            sent_at: col_opt_time(r, "sent_at")?,
        },
    })
}

impl Store {
    /// `SELECT {cols} FROM {table} WHERE … {tail}`, each row read by `f`.
    async fn rows_where<T>(
        &self,
        cols: &str,
        table: &str,
        c: &Conds,
        tail: &str,
        f: fn(&AnyRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.rows_where_args(cols, table, c, tail, vec![], f).await
    }

    /// [`Store::rows_where`] with arguments in the tail (a page's cursor and limit).
    async fn rows_where_args<T>(
        &self,
        cols: &str,
        table: &str,
        c: &Conds,
        tail: &str,
        tail_args: Vec<super::Arg>,
        f: fn(&AnyRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let (sql, args) = c.render(&format!("SELECT {cols} FROM {table}"), tail, tail_args);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(f).collect()
    }

    /// The row of `table` with `id`, read by `f`.
    async fn row_by_id<T>(
        &self,
        cols: &str,
        table: &str,
        id: Uuid,
        f: fn(&AnyRow) -> Result<T>,
    ) -> Result<Option<T>> {
        sqlx::query(&format!("SELECT {cols} FROM {table} WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?
            .as_ref()
            .map(f)
            .transpose()
    }

    // ------------------------------------------------------------------ rules

    pub async fn alert_rule_insert(&self, r: &AlertRule) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO alert_rules ({RULE_COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(r.id.to_string())
        .bind(&r.name)
        .bind(&r.expr)
        .bind(&r.for_)
        .bind(r.for_secs)
        .bind(r.severity.as_str())
        .bind(json_text(&r.labels))
        .bind(&r.summary)
        .bind(opt_text(r.project_id))
        .bind(opt_text(r.vdc_id))
        .bind(r.enabled as i64)
        .bind(r.last_error.clone())
        .bind(&r.created_by)
        .bind(time_text(r.created_at))
        .bind(time_text(r.updated_at))
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn alert_rule_update(&self, r: &AlertRule) -> Result<()> {
        sqlx::query(
            "UPDATE alert_rules SET name = $2, expr = $3, for_text = $4, for_secs = $5, \
             severity = $6, labels = $7, summary = $8, enabled = $9, updated_at = $10, \
             last_error = NULL WHERE id = $1",
        )
        .bind(r.id.to_string())
        .bind(&r.name)
        .bind(&r.expr)
        .bind(&r.for_)
        .bind(r.for_secs)
        .bind(r.severity.as_str())
        .bind(json_text(&r.labels))
        .bind(&r.summary)
        .bind(r.enabled as i64)
        .bind(time_text(r.updated_at))
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn alert_rule_get(&self, id: Uuid) -> Result<Option<AlertRule>> {
        self.row_by_id(RULE_COLS, "alert_rules", id, rule_from_row)
            .await
    }

    pub async fn alert_rule_list(&self, c: &Conds) -> Result<Vec<AlertRule>> {
        self.rows_where(
            RULE_COLS,
            "alert_rules",
            c,
            "ORDER BY created_at, id",
            rule_from_row,
        )
        .await
    }

    /// Delete a rule; its open alerts resolve with it.
    pub async fn alert_rule_delete(&self, id: Uuid) -> Result<bool> {
        let mut tx = self.db.write.begin().await?;
        let n = sqlx::query("DELETE FROM alert_rules WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE alerts SET state = 'resolved', resolved_at = $2 \
             WHERE rule_id = $1 AND state = 'firing'",
        )
        .bind(id.to_string())
        .bind(time_text(Utc::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// The last evaluation's outcome (`None`: it worked).
    pub async fn alert_rule_error(&self, id: Uuid, error: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE alert_rules SET last_error = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(error.map(str::to_string))
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    // ------------------------------------------------------------------ alerts

    pub async fn alert_insert(&self, a: &AlertRow) -> Result<()> {
        let x = &a.alert;
        sqlx::query(&format!(
            "INSERT INTO alerts ({ALERT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
        ))
        .bind(x.id.to_string())
        .bind(&a.fingerprint)
        .bind(&x.name)
        .bind(&x.source)
        .bind(opt_text(x.rule_id))
        .bind(x.severity.as_str())
        .bind(state_text(x.state))
        .bind(json_text(&x.labels))
        .bind(&x.summary)
        .bind(x.value.map(|v| v.to_string()))
        .bind(opt_text(x.project_id))
        .bind(opt_text(x.vdc_id))
        .bind(opt_text(x.host_id))
        .bind(x.suppressed.clone())
        .bind(a.notified as i64)
        .bind(x.count)
        .bind(time_text(x.started_at))
        .bind(time_text(x.last_fired_at))
        .bind(x.resolved_at.map(time_text))
        .bind(x.acknowledged_by.clone())
        .bind(x.acknowledged_at.map(time_text))
        .bind(&x.ack_comment)
        .bind(opt_text(x.ticket_id))
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Write back what evaluation changes: state, value, summary, count, times,
    /// suppression and whether it was notified.
    pub async fn alert_update(&self, a: &AlertRow) -> Result<()> {
        let x = &a.alert;
        sqlx::query(
            "UPDATE alerts SET state = $2, value = $3, summary = $4, count = $5, \
             last_fired_at = $6, resolved_at = $7, suppressed = $8, notified = $9 WHERE id = $1",
        )
        .bind(x.id.to_string())
        .bind(state_text(x.state))
        .bind(x.value.map(|v| v.to_string()))
        .bind(&x.summary)
        .bind(x.count)
        .bind(time_text(x.last_fired_at))
        .bind(x.resolved_at.map(time_text))
        .bind(x.suppressed.clone())
        .bind(a.notified as i64)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Every firing alert (what evaluation compares its results with).
    pub async fn alerts_firing(&self) -> Result<Vec<AlertRow>> {
        sqlx::query(&format!(
            "SELECT {ALERT_COLS} FROM alerts WHERE state = 'firing'"
        ))
        .fetch_all(&self.db.read)
        .await?
        .iter()
        .map(alert_from_row)
        .collect()
    }

    /// The firing alert of a fingerprint, if any.
    pub async fn alert_firing(&self, fingerprint: &str) -> Result<Option<AlertRow>> {
        sqlx::query(&format!(
            "SELECT {ALERT_COLS} FROM alerts WHERE state = 'firing' AND fingerprint = $1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.db.read)
        .await?
        .as_ref()
        .map(alert_from_row)
        .transpose()
    }

    pub async fn alert_get(&self, id: Uuid) -> Result<Option<AlertRow>> {
        self.row_by_id(ALERT_COLS, "alerts", id, alert_from_row)
            .await
    }

    pub async fn alert_list(
        &self,
        c: &mut Conds,
        paging: &Paging,
    ) -> Result<(Vec<Alert>, Option<String>)> {
        let (tail, tail_args) = paging.apply(c, "id");
        let items = self
            .rows_where_args(ALERT_COLS, "alerts", c, &tail, tail_args, alert_from_row)
            .await?
            .into_iter()
            .map(|a| a.alert)
            .collect();
        Ok(paging.finish(items, |a| (time_text(a.started_at), a.id.to_string())))
    }

    /// Firing and unacknowledged counts by `col` (a column name the caller chose from a
    /// fixed list).
    pub async fn alert_groups(&self, c: &Conds, col: &str) -> Result<Vec<(String, i64, i64)>> {
        let (sql, args) = c.render(
            &format!(
                "SELECT COALESCE({col}, '') AS k, COUNT(*) AS firing, \
                 SUM(CASE WHEN acknowledged_at IS NULL THEN 1 ELSE 0 END) AS unacked \
                 FROM alerts"
            ),
            &format!("GROUP BY COALESCE({col}, '') ORDER BY firing DESC, k"),
            vec![],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    col_str(r, "k")?,
                    col_i64(r, "firing")?,
                    col_i64(r, "unacked")?,
                ))
            })
            .collect()
    }

    pub async fn alert_ack(&self, id: Uuid, by: &str, comment: &str) -> Result<()> {
        sqlx::query(
            "UPDATE alerts SET acknowledged_by = $2, acknowledged_at = $3, ack_comment = $4 \
             WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(by)
        .bind(time_text(Utc::now()))
        .bind(comment)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    // ------------------------------------------------------------------ silences

    pub async fn silence_insert(&self, s: &Silence, vdc: Option<Uuid>) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO silences ({SILENCE_COLS}, vdc_id) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(s.id.to_string())
        .bind(json_text(&s.matchers))
        .bind(time_text(s.starts_at))
        .bind(time_text(s.ends_at))
        .bind(&s.comment)
        .bind(opt_text(s.project_id))
        .bind(&s.created_by)
        .bind(time_text(s.created_at))
        .bind(opt_text(vdc))
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn silence_list(&self, c: &Conds) -> Result<Vec<Silence>> {
        self.rows_where(
            SILENCE_COLS,
            "silences",
            c,
            "ORDER BY starts_at DESC, id LIMIT 1000",
            silence_from_row,
        )
        .await
    }

    pub async fn silence_get(&self, id: Uuid) -> Result<Option<Silence>> {
        self.row_by_id(SILENCE_COLS, "silences", id, silence_from_row)
            .await
    }

    /// End a silence now (kept for the record).
    pub async fn silence_end(&self, id: Uuid) -> Result<()> {
        sqlx::query("UPDATE silences SET ends_at = $2 WHERE id = $1 AND ends_at > $2")
            .bind(id.to_string())
            .bind(time_text(Utc::now()))
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// Silences in force at `at`.
    pub async fn silences_active(&self, at: DateTime<Utc>) -> Result<Vec<Silence>> {
        let mut c = Conds::new();
        c.and(
            "starts_at <= ? AND ends_at > ?",
            [time_text(at).into(), time_text(at).into()],
        );
        self.silence_list(&c).await
    }

    // ------------------------------------------------------------------ channels

    pub async fn channel_insert(&self, ch: &NotifyChannel) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO notify_channels ({CHANNEL_COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(ch.id.to_string())
        .bind(&ch.name)
        .bind(kind_text(ch.kind))
        .bind(&ch.target)
        .bind(ch.min_severity.as_str())
        .bind(opt_text(ch.vdc_id))
        .bind(ch.enabled as i64)
        .bind(ch.max_per_hour)
        .bind(&ch.created_by)
        .bind(time_text(ch.created_at))
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn channel_list(&self, c: &Conds) -> Result<Vec<NotifyChannel>> {
        self.rows_where(
            CHANNEL_COLS,
            "notify_channels",
            c,
            "ORDER BY created_at, id",
            channel_from_row,
        )
        .await
    }

    pub async fn channel_get(&self, id: Uuid) -> Result<Option<NotifyChannel>> {
        self.row_by_id(CHANNEL_COLS, "notify_channels", id, channel_from_row)
            .await
    }

    /// Delete a channel; what it still had to send is dropped.
    pub async fn channel_delete(&self, id: Uuid) -> Result<bool> {
        let mut tx = self.db.write.begin().await?;
        let n = sqlx::query("DELETE FROM notify_channels WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM notifications WHERE channel_id = $1 AND status = 'pending'")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// VDCs below (and including) `vdc`: which channels of an alert's VDC chain apply.
    pub async fn vdc_is_within(&self, vdc: Uuid, ancestor: Uuid) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vdc_closure WHERE ancestor_id = $1 AND descendant_id = $2",
        )
        .bind(ancestor.to_string())
        .bind(vdc.to_string())
        .fetch_one(&self.db.read)
        .await?;
        Ok(n > 0)
    }

    // ------------------------------------------------------------------ deliveries

    pub async fn notification_insert(&self, d: &Delivery) -> Result<()> {
        let n = &d.n;
        sqlx::query(&format!(
            "INSERT INTO notifications ({NOTIFICATION_COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(n.id.to_string())
        .bind(n.alert_id.to_string())
        .bind(n.channel_id.to_string())
        .bind(state_text(n.event))
        .bind(status_text(n.status))
        .bind(n.attempts)
        .bind(&n.last_error)
        .bind(&d.body)
        .bind(time_text(n.created_at))
        .bind(time_text(n.created_at))
        .bind(n.sent_at.map(time_text))
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Pending deliveries due at `at`, oldest first.
    pub async fn notifications_due(&self, at: DateTime<Utc>, limit: i64) -> Result<Vec<Delivery>> {
        sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLS} FROM notifications WHERE status = 'pending' \
             AND next_at <= $1 ORDER BY next_at, id LIMIT $2"
        ))
        .bind(time_text(at))
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?
        .iter()
        .map(notification_from_row)
        .collect()
    }

    pub async fn notification_update(
        &self,
        n: &Notification,
        next_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE notifications SET status = $2, attempts = $3, last_error = $4, \
             next_at = $5, sent_at = $6 WHERE id = $1",
        )
        .bind(n.id.to_string())
        .bind(status_text(n.status))
        .bind(n.attempts)
        .bind(&n.last_error)
        .bind(time_text(next_at))
        .bind(n.sent_at.map(time_text))
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn notification_list(&self, c: &Conds) -> Result<Vec<Notification>> {
        let d = self
            .rows_where(
                NOTIFICATION_COLS,
                "notifications",
                c,
                "ORDER BY created_at DESC, id LIMIT 1000",
                notification_from_row,
            )
            .await?;
        Ok(d.into_iter().map(|d| d.n).collect())
    }

    /// Deliveries a channel made (or is making) since `since`: its rate.
    pub async fn channel_sent_since(&self, channel: Uuid, since: DateTime<Utc>) -> Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM notifications WHERE channel_id = $1 AND status = 'sent' \
             AND sent_at >= $2",
        )
        .bind(channel.to_string())
        .bind(time_text(since))
        .fetch_one(&self.db.read)
        .await?;
        Ok(n)
    }
}

const TICKET_COLS: &str = "id, title, description, state, priority, assignee, alert_id, \
    project_id, vdc_id, created_by, created_at, updated_at, resolved_at, closed_at";

fn ticket_from_row(r: &AnyRow) -> Result<Ticket> {
    let state = col_str(r, "state")?;
    Ok(Ticket {
        id: col_uuid(r, "id")?,
        title: col_str(r, "title")?,
        description: col_str(r, "description")?,
        state: TicketState::parse(&state)
            .ok_or_else(|| Error::internal(format!("bad ticket state {state:?}")))?,
        priority: severity(r, "priority")?,
        assignee: col_opt_str(r, "assignee")?,
        alert_id: col_opt_uuid(r, "alert_id")?,
        project_id: col_opt_uuid(r, "project_id")?,
        vdc_id: col_opt_uuid(r, "vdc_id")?,
        created_by: col_str(r, "created_by")?,
        created_at: col_time(r, "created_at")?,
        updated_at: col_time(r, "updated_at")?,
        resolved_at: col_opt_time(r, "resolved_at")?,
        closed_at: col_opt_time(r, "closed_at")?,
        events: vec![],
    })
}

async fn ticket_event(
    tx: &mut super::instances::Tx,
    ticket: Uuid,
    author: &str,
    kind: &str,
    body: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO ticket_events (id, ticket_id, at, author, kind, body) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(ticket.to_string())
    .bind(time_text(Utc::now()))
    .bind(author)
    .bind(kind)
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// A new ticket, linked to its alert (if any) in the same transaction; an alert has
    /// at most one ticket.
    pub async fn ticket_insert(&self, t: &Ticket) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        if let Some(a) = t.alert_id {
            let n =
                sqlx::query("UPDATE alerts SET ticket_id = $2 WHERE id = $1 AND ticket_id IS NULL")
                    .bind(a.to_string())
                    .bind(t.id.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if n == 0 {
                return Err(Error::conflict(format!("alert {a} already has a ticket")));
            }
        }
        sqlx::query(&format!(
            "INSERT INTO tickets ({TICKET_COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(t.id.to_string())
        .bind(&t.title)
        .bind(&t.description)
        .bind(t.state.as_str())
        .bind(t.priority.as_str())
        .bind(t.assignee.clone())
        .bind(opt_text(t.alert_id))
        .bind(opt_text(t.project_id))
        .bind(opt_text(t.vdc_id))
        .bind(&t.created_by)
        .bind(time_text(t.created_at))
        .bind(time_text(t.updated_at))
        .bind(t.resolved_at.map(time_text))
        .bind(t.closed_at.map(time_text))
        .execute(&mut *tx)
        .await?;
        ticket_event(&mut tx, t.id, &t.created_by, "state", "open").await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn ticket_get(&self, id: Uuid) -> Result<Option<Ticket>> {
        let Some(mut t) = self
            .row_by_id(TICKET_COLS, "tickets", id, ticket_from_row)
            .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT at, author, kind, body FROM ticket_events WHERE ticket_id = $1 \
             ORDER BY at, id",
        )
        .bind(id.to_string())
        .fetch_all(&self.db.read)
        .await?;
        t.events = rows
            .iter()
            .map(|r| {
                Ok(TicketEvent {
                    at: col_time(r, "at")?,
                    author: col_str(r, "author")?,
                    kind: col_str(r, "kind")?,
                    body: col_str(r, "body")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some(t))
    }

    /// A page of tickets (by creation time).
    pub async fn ticket_list(
        &self,
        c: &mut Conds,
        paging: &Paging,
    ) -> Result<(Vec<Ticket>, Option<String>)> {
        let (tail, tail_args) = paging.apply(c, "id");
        let items = self
            .rows_where_args(TICKET_COLS, "tickets", c, &tail, tail_args, ticket_from_row)
            .await?;
        Ok(paging.finish(items, |t| (time_text(t.created_at), t.id.to_string())))
    }

    /// Write a ticket's state, assignee and priority, with one history event per change
    /// (and the comment, if any), only if its state is still `from` (no lost update).
    pub async fn ticket_change(
        &self,
        t: &Ticket,
        from: TicketState,
        author: &str,
        events: &[(&str, String)],
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let n = sqlx::query(
            "UPDATE tickets SET state = $2, assignee = $3, priority = $4, updated_at = $5, \
             resolved_at = $6, closed_at = $7 WHERE id = $1 AND state = $8",
        )
        .bind(t.id.to_string())
        .bind(t.state.as_str())
        .bind(t.assignee.clone())
        .bind(t.priority.as_str())
        .bind(time_text(t.updated_at))
        .bind(t.resolved_at.map(time_text))
        .bind(t.closed_at.map(time_text))
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(Error::conflict(format!(
                "ticket {} changed meanwhile: read it again",
                t.id
            )));
        }
        for (kind, body) in events {
            ticket_event(&mut tx, t.id, author, kind, body).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
