//! Resource reports: the figures they are made of, their schedules and the reports made.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use stratus_api::{ReportInfo, ReportSchedule};
use uuid::Uuid;

use super::{col_i64, col_opt_uuid, col_str, col_time, col_uuid, time_text, Store};
use crate::error::Result;

/// Per VDC, per key: two numbers (quota limit and used; or quantity and amount).
pub type PerVdc = HashMap<Uuid, HashMap<String, (i64, i64)>>;

/// `AND <col> IN (the VDC and everything below it)` when a scope is given.
fn within(col: &str, n: usize, scope: Option<Uuid>) -> String {
    match scope {
        Some(_) => format!(
            " AND {col} IN (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = ${n})"
        ),
        None => String::new(),
    }
}

fn schedule_from_row(r: &AnyRow) -> Result<ReportSchedule> {
    Ok(ReportSchedule {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        period: col_str(r, "period")?,
        vdc_id: col_opt_uuid(r, "vdc_id")?,
        created_by: col_str(r, "created_by")?,
        last_period_end: col_time(r, "last_period_end")?,
        created_at: col_time(r, "created_at")?,
    })
}

fn info_from_row(r: &AnyRow) -> Result<ReportInfo> {
    Ok(ReportInfo {
        id: col_uuid(r, "id")?,
        schedule_id: col_opt_uuid(r, "schedule_id")?,
        name: col_str(r, "name")?,
        vdc_id: col_opt_uuid(r, "vdc_id")?,
        period_start: col_time(r, "period_start")?,
        period_end: col_time(r, "period_end")?,
        generated_at: col_time(r, "generated_at")?,
    })
}

const SCHEDULE_COLS: &str = "id, name, period, vdc_id, created_by, last_period_end, created_at";
const INFO_COLS: &str = "id, schedule_id, name, vdc_id, period_start, period_end, generated_at";

impl Store {
    /// The VDCs of a report (the scope and everything below it, or all), tree order.
    pub async fn report_vdcs(&self, scope: Option<Uuid>) -> Result<Vec<(Uuid, String, i64)>> {
        let sql = format!(
            "SELECT id, name, level FROM vdcs WHERE 1 = 1{} ORDER BY level, name, id LIMIT 5000",
            within("id", 1, scope)
        );
        let mut q = sqlx::query(&sql);
        if let Some(s) = scope {
            q = q.bind(s.to_string());
        }
        let rows = q.fetch_all(&self.db.read).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    col_uuid(r, "id")?,
                    col_str(r, "name")?,
                    col_i64(r, "level")?,
                ))
            })
            .collect()
    }

    /// Quota limit (-1: none) and usage of every VDC in scope, per resource.
    pub async fn report_quotas(&self, scope: Option<Uuid>) -> Result<PerVdc> {
        let sql = format!(
            "SELECT scope_id, resource, limit_value, used FROM quotas WHERE scope_type = 'vdc'{}",
            within("scope_id", 1, scope)
        );
        let mut q = sqlx::query_as::<_, (String, String, i64, i64)>(&sql);
        if let Some(s) = scope {
            q = q.bind(s.to_string());
        }
        let mut out = PerVdc::new();
        for (v, res, limit, used) in q.fetch_all(&self.db.read).await? {
            if let Ok(v) = Uuid::parse_str(&v) {
                out.entry(v).or_default().insert(res, (limit, used));
            }
        }
        Ok(out)
    }

    /// Per VDC (each with everything below it) and meter: quantity and rated amount of
    /// `[from, to)`.
    pub async fn report_usage(
        &self,
        scope: Option<Uuid>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<PerVdc> {
        let sql = format!(
            "SELECT c.ancestor_id, r.meter, CAST(SUM(r.quantity) AS BIGINT), CAST(SUM(r.amount) AS BIGINT) \
             FROM usage_records r JOIN vdc_closure c ON c.descendant_id = r.vdc_id \
             WHERE r.period_start >= $1 AND r.period_start < $2 AND r.gap = 0{} \
             GROUP BY c.ancestor_id, r.meter",
            within("c.ancestor_id", 3, scope)
        );
        let mut q = sqlx::query_as::<_, (String, String, i64, i64)>(&sql)
            .bind(time_text(from))
            .bind(time_text(to));
        if let Some(s) = scope {
            q = q.bind(s.to_string());
        }
        let mut out = PerVdc::new();
        for (v, meter, qty, amount) in q.fetch_all(&self.db.read).await? {
            if let Ok(v) = Uuid::parse_str(&v) {
                out.entry(v).or_default().insert(meter, (qty, amount));
            }
        }
        Ok(out)
    }

    /// Instances created in `[from, to)` per VDC (each with everything below it).
    pub async fn report_opened(
        &self,
        scope: Option<Uuid>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashMap<Uuid, i64>> {
        let sql = format!(
            "SELECT c.ancestor_id, COUNT(*) FROM metering_events e \
             JOIN vdc_closure c ON c.descendant_id = e.vdc_id \
             WHERE e.resource_type = 'instance' AND e.event = 'created' AND e.at >= $1 AND e.at < $2{} \
             GROUP BY c.ancestor_id",
            within("c.ancestor_id", 3, scope)
        );
        let mut q = sqlx::query_as::<_, (String, i64)>(&sql)
            .bind(time_text(from))
            .bind(time_text(to));
        if let Some(s) = scope {
            q = q.bind(s.to_string());
        }
        Ok(q.fetch_all(&self.db.read)
            .await?
            .into_iter()
            .filter_map(|(v, n)| Uuid::parse_str(&v).ok().map(|v| (v, n)))
            .collect())
    }

    // -------------------------------------------------------------- schedules

    pub async fn report_schedule_insert(&self, s: &ReportSchedule) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO report_schedules ({SCHEDULE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(s.id.to_string())
        .bind(&s.name)
        .bind(&s.period)
        .bind(s.vdc_id.map(|v| v.to_string()))
        .bind(&s.created_by)
        .bind(time_text(s.last_period_end))
        .bind(time_text(s.created_at))
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn report_schedules(&self) -> Result<Vec<ReportSchedule>> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM report_schedules ORDER BY name, id"
        ))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    pub async fn report_schedule_get(&self, id: Uuid) -> Result<Option<ReportSchedule>> {
        let row = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM report_schedules WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    pub async fn report_schedule_delete(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM report_schedules WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// Keep a generated report and move its schedule past its period, together.
    pub async fn report_insert(&self, r: &ReportInfo, content: &str) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO reports ({INFO_COLS}, content) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (schedule_id, period_start) DO NOTHING"
        ))
        .bind(r.id.to_string())
        .bind(r.schedule_id.map(|v| v.to_string()))
        .bind(&r.name)
        .bind(r.vdc_id.map(|v| v.to_string()))
        .bind(time_text(r.period_start))
        .bind(time_text(r.period_end))
        .bind(time_text(r.generated_at))
        .bind(content)
        .execute(&mut *tx)
        .await?;
        if let Some(s) = r.schedule_id {
            sqlx::query("UPDATE report_schedules SET last_period_end = $1 WHERE id = $2")
                .bind(time_text(r.period_end))
                .bind(s.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn report_list(&self) -> Result<Vec<ReportInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {INFO_COLS} FROM reports ORDER BY period_start DESC, name LIMIT 10000"
        ))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(info_from_row).collect()
    }

    pub async fn report_get(&self, id: Uuid) -> Result<Option<(ReportInfo, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {INFO_COLS}, content FROM reports WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        match row {
            Some(r) => Ok(Some((info_from_row(&r)?, col_str(&r, "content")?))),
            None => Ok(None),
        }
    }
}
