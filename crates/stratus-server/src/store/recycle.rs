//! The recycle bin: which deleted instances and volumes are kept, and until when.

use sqlx::any::AnyRow;
use stratus_api::RecycledResource;
use uuid::Uuid;

use super::{col_str, col_time, col_uuid, time_text, Arg, Conds, Store};
use crate::authz::Visibility;
use crate::error::Result;

const COLS: &str = "resource_id, kind, name, project_id, vdc_id, deleted_by, deleted_at, purge_at";

fn from_row(r: &AnyRow) -> Result<RecycledResource> {
    Ok(RecycledResource {
        id: col_uuid(r, "resource_id")?,
        kind: col_str(r, "kind")?,
        name: col_str(r, "name")?,
        project_id: col_uuid(r, "project_id")?,
        vdc_id: col_uuid(r, "vdc_id")?,
        deleted_by: col_str(r, "deleted_by")?,
        deleted_at: col_time(r, "deleted_at")?,
        purge_at: col_time(r, "purge_at")?,
    })
}

/// The condition that hides recycled rows from a resource list (`id` names the id column).
pub(crate) fn not_recycled(id: &str) -> String {
    format!("{id} NOT IN (SELECT resource_id FROM recycle_bin)")
}

impl Store {
    pub async fn recycle_insert(&self, e: &RecycledResource) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO recycle_bin ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(e.id.to_string())
        .bind(&e.kind)
        .bind(&e.name)
        .bind(e.project_id.to_string())
        .bind(e.vdc_id.to_string())
        .bind(&e.deleted_by)
        .bind(time_text(e.deleted_at))
        .bind(time_text(e.purge_at))
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn recycle_get(&self, id: Uuid) -> Result<Option<RecycledResource>> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM recycle_bin WHERE resource_id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn volume_snapshot_count(&self, volume: Uuid) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM snapshots WHERE volume_id = $1")
                .bind(volume.to_string())
                .fetch_one(&self.db.read)
                .await?,
        )
    }

    pub async fn is_recycled(&self, id: Uuid) -> Result<bool> {
        Ok(self.recycle_get(id).await?.is_some())
    }

    /// Take an entry out of the bin; false when it was not there.
    pub async fn recycle_remove(&self, id: Uuid) -> Result<bool> {
        let done = sqlx::query("DELETE FROM recycle_bin WHERE resource_id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Entries the caller may see, oldest deletion first.
    pub async fn recycle_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
    ) -> Result<Vec<RecycledResource>> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "");
        if let Some(p) = project {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        let (sql, args) = c.render(
            &format!("SELECT {COLS} FROM recycle_bin"),
            " ORDER BY deleted_at, resource_id",
            vec![],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Entries whose retention has run out.
    pub async fn recycle_due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<RecycledResource>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM recycle_bin WHERE purge_at <= $1 ORDER BY purge_at"
        ))
        .bind(time_text(now))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(from_row).collect()
    }
}
