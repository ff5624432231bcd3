use sqlx::any::AnyRow;
use stratus_api::{AuditEvent, AuditFilter, AuditResult};
use uuid::Uuid;

use super::{col_i64, col_opt_uuid, col_str, col_time, time_text, Arg, Conds, Store};
use crate::error::{Error, Result};

/// What the HTTP layer records for one mutating call.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub at: String,
    pub request_id: String,
    pub user_id: Option<Uuid>,
    pub user_name: String,
    pub vdc_id: Option<Uuid>,
    pub source_ip: String,
    pub method: String,
    pub path: String,
    pub operation: String,
    pub object_type: String,
    pub object_id: String,
    pub result: AuditResult,
    pub status: u16,
    pub duration_us: i64,
    pub message: String,
}

const COLS: &str =
    "id, at, request_id, user_id, user_name, vdc_id, source_ip, method, path, operation, \
                    object_type, object_id, result, status, duration_us, message";

fn event_from_row(row: &AnyRow) -> Result<AuditEvent> {
    let result = col_str(row, "result")?;
    Ok(AuditEvent {
        id: col_i64(row, "id")?,
        at: col_time(row, "at")?,
        request_id: col_str(row, "request_id")?,
        user_id: col_opt_uuid(row, "user_id")?,
        user_name: col_str(row, "user_name")?,
        vdc_id: col_opt_uuid(row, "vdc_id")?,
        source_ip: col_str(row, "source_ip")?,
        method: col_str(row, "method")?,
        path: col_str(row, "path")?,
        operation: col_str(row, "operation")?,
        object_type: col_str(row, "object_type")?,
        object_id: col_str(row, "object_id")?,
        result: AuditResult::parse(&result)
            .ok_or_else(|| Error::internal(format!("bad audit result {result}")))?,
        status: col_i64(row, "status")? as u16,
        duration_ms: col_i64(row, "duration_us")? as f64 / 1000.0,
        message: col_str(row, "message")?,
    })
}

impl Store {
    pub async fn audit_insert(&self, r: &AuditRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO audit_events ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            COLS.trim_start_matches("id, ")
        ))
        .bind(&r.at)
        .bind(&r.request_id)
        .bind(r.user_id.map(|u| u.to_string()))
        .bind(&r.user_name)
        .bind(r.vdc_id.map(|u| u.to_string()))
        .bind(&r.source_ip)
        .bind(&r.method)
        .bind(&r.path)
        .bind(&r.operation)
        .bind(&r.object_type)
        .bind(&r.object_id)
        .bind(r.result.as_str())
        .bind(r.status as i64)
        .bind(r.duration_us)
        .bind(&r.message)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Newest first; `next` is the id to continue below.
    pub async fn audit_list(&self, f: &AuditFilter) -> Result<(Vec<AuditEvent>, Option<String>)> {
        let limit = match f.limit {
            None => 100,
            Some(n @ 1..=10000) => n as i64,
            Some(_) => return Err(Error::invalid("limit", "must be between 1 and 10000")),
        };
        let mut c = Conds::new();
        if let Some(t) = f.since {
            c.and("at >= ?", [Arg::from(time_text(t))]);
        }
        if let Some(t) = f.until {
            c.and("at < ?", [Arg::from(time_text(t))]);
        }
        if let Some(u) = &f.user {
            c.and("user_name = ?", [Arg::from(u.as_str())]);
        }
        if let Some(v) = f.vdc_id {
            c.and("vdc_id = ?", [Arg::from(v)]);
        }
        if let Some(o) = &f.operation {
            c.and("operation = ?", [Arg::from(o.as_str())]);
        }
        if let Some(r) = f.result {
            c.and("result = ?", [Arg::from(r.as_str())]);
        }
        if let Some(n) = &f.next {
            let below: i64 = n
                .parse()
                .map_err(|_| Error::invalid("next", "is not a cursor this server issued"))?;
            c.and("id < ?", [Arg::Int(below)]);
        }
        let (sql, args) = c.render(
            &format!("SELECT {COLS} FROM audit_events"),
            "ORDER BY id DESC LIMIT ?",
            vec![Arg::Int(limit + 1)],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let mut items = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|e| e.id.to_string())
        } else {
            None
        };
        Ok((items, next))
    }
}
