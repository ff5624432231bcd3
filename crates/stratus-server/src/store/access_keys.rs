use sqlx::any::AnyRow;
use stratus_api::AccessKey;
use uuid::Uuid;

use super::{col_bool, col_opt_time, col_str, col_time, col_uuid, now_text, Arg, Conds, Store};
use crate::error::{Error, Result};

const COLS: &str =
    "id, user_id, project_id, secret, description, enabled, created_at, last_used_at";

#[derive(Debug, Clone)]
pub struct AccessKeyRow {
    pub key: AccessKey,
    pub secret: String,
}

fn key_from_row(row: &AnyRow) -> Result<AccessKeyRow> {
    Ok(AccessKeyRow {
        key: AccessKey {
            id: col_str(row, "id")?,
            user_id: col_uuid(row, "user_id")?,
            project_id: super::col_opt_uuid(row, "project_id")?,
            description: col_str(row, "description")?,
            enabled: col_bool(row, "enabled")?,
            created_at: col_time(row, "created_at")?,
            last_used_at: col_opt_time(row, "last_used_at")?,
        },
        secret: col_str(row, "secret")?,
    })
}

impl Store {
    pub async fn access_key_create(
        &self,
        id: &str,
        user_id: Uuid,
        secret: &str,
        description: &str,
        project_id: Option<Uuid>,
    ) -> Result<AccessKey> {
        sqlx::query("INSERT INTO access_keys (id, user_id, secret, description, enabled, created_at, project_id) VALUES ($1, $2, $3, $4, 1, $5, $6)")
            .bind(id)
            .bind(user_id.to_string())
            .bind(secret)
            .bind(description)
            .bind(now_text())
            .bind(project_id.map(|p| p.to_string()))
            .execute(&self.db.write)
            .await?;
        Ok(self
            .access_key_get(id)
            .await?
            .ok_or_else(|| Error::internal("access key vanished after insert"))?
            .key)
    }

    pub async fn access_key_get(&self, id: &str) -> Result<Option<AccessKeyRow>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM access_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub async fn access_key_list(&self, user_id: Option<Uuid>) -> Result<Vec<AccessKey>> {
        let mut c = Conds::new();
        if let Some(u) = user_id {
            c.and("user_id = ?", [Arg::from(u)]);
        }
        let (sql, args) = c.render(
            &format!("SELECT {COLS} FROM access_keys"),
            "ORDER BY created_at, id LIMIT 10000",
            vec![],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter()
            .map(|r| key_from_row(r).map(|k| k.key))
            .collect()
    }

    pub async fn access_key_update(
        &self,
        id: &str,
        enabled: Option<bool>,
        description: Option<&str>,
    ) -> Result<AccessKey> {
        let cur = self
            .access_key_get(id)
            .await?
            .ok_or_else(|| Error::not_found("access key", id))?
            .key;
        sqlx::query("UPDATE access_keys SET enabled = $1, description = $2 WHERE id = $3")
            .bind(enabled.unwrap_or(cur.enabled) as i64)
            .bind(description.unwrap_or(&cur.description))
            .bind(id)
            .execute(&self.db.write)
            .await?;
        Ok(self
            .access_key_get(id)
            .await?
            .ok_or_else(|| Error::not_found("access key", id))?
            .key)
    }

    pub async fn access_key_delete(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM access_keys WHERE id = $1")
            .bind(id)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    pub async fn access_key_touch(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE access_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now_text())
            .bind(id)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }
}
