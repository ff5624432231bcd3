use sqlx::any::AnyRow;
use stratus_api::{Project, QuotaResource, ScopeType};
use uuid::Uuid;

use super::{
    col_str, col_time, col_uuid, is_unique_violation, like_contains, now_text, Arg, Conds, Paging,
    QuotaDelta, Store, NAME_LIKE,
};
use crate::authz::Visibility;
use crate::error::{Error, Result};

const COLS: &str = "id, vdc_id, org_id, name, description, created_at, updated_at";

fn project_from_row(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: col_uuid(row, "id")?,
        vdc_id: col_uuid(row, "vdc_id")?,
        org_id: col_uuid(row, "org_id")?,
        name: col_str(row, "name")?,
        description: col_str(row, "description")?,
        created_at: col_time(row, "created_at")?,
        updated_at: col_time(row, "updated_at")?,
    })
}

fn name_taken(e: sqlx::Error, name: &str) -> Error {
    if is_unique_violation(&e) {
        Error::conflict(format!(
            "name: a project named {name:?} already exists in this VDC"
        ))
    } else {
        e.into()
    }
}

/// SQL condition: the project row is visible under `v`.
pub(crate) fn project_visible(c: &mut Conds, v: &Visibility) {
    if v.all {
        return;
    }
    let mut args: Vec<Arg> = v.vdcs.iter().map(|i| Arg::from(*i)).collect();
    args.extend(v.projects.iter().map(|i| Arg::from(*i)));
    c.and(
        format!(
            "vdc_id IN (SELECT descendant_id FROM vdc_closure WHERE {}) OR {}",
            Conds::in_list("ancestor_id", v.vdcs.len()),
            Conds::in_list("id", v.projects.len())
        ),
        args,
    );
}

impl Store {
    /// Create a project in `vdc_chain[0]`, counting it against the `projects` quota of that
    /// VDC and every ancestor in the same transaction.
    pub async fn project_create(
        &self,
        org_id: Uuid,
        vdc_id: Uuid,
        name: &str,
        description: &str,
    ) -> Result<Project> {
        let id = Uuid::new_v4();
        let now = now_text();
        let mut tx = self.db.write.begin().await?;
        let vdc_chain = Self::vdc_chain_tx(&mut tx, vdc_id).await?;
        sqlx::query(
            "INSERT INTO projects (id, vdc_id, org_id, name, description, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id.to_string())
        .bind(vdc_id.to_string())
        .bind(org_id.to_string())
        .bind(name)
        .bind(description)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(|e| name_taken(e, name))?;
        Self::quota_rows_create(&mut tx, ScopeType::Project, id).await?;
        Self::quota_charge(
            &mut tx,
            &vdc_chain,
            &[QuotaDelta {
                resource: QuotaResource::Projects,
                amount: 1,
            }],
        )
        .await?;
        tx.commit().await?;
        self.project_get(id)
            .await?
            .ok_or_else(|| Error::internal("project vanished after insert"))
    }

    pub async fn project_get(&self, id: Uuid) -> Result<Option<Project>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM projects WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    /// Ids of every project `vis` reaches (for scoping metrics), at most 10,000.
    pub async fn project_ids_visible(&self, vis: &Visibility) -> Result<Vec<Uuid>> {
        let mut c = Conds::new();
        project_visible(&mut c, vis);
        let (sql, args) = c.render("SELECT id FROM projects", " LIMIT 10000", vec![]);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(|r| super::col_uuid(r, "id")).collect()
    }

    pub async fn project_list(
        &self,
        vis: &Visibility,
        vdc_id: Option<Uuid>,
        org_id: Option<Uuid>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<Project>, Option<String>)> {
        let mut c = Conds::new();
        project_visible(&mut c, vis);
        if let Some(v) = vdc_id {
            c.and("vdc_id = ?", [Arg::from(v)]);
        }
        if let Some(o) = org_id {
            c.and("org_id = ?", [Arg::from(o)]);
        }
        if let Some(n) = name {
            c.and(NAME_LIKE, [like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(&format!("SELECT {COLS} FROM projects"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(project_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    pub async fn project_update(
        &self,
        id: Uuid,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Project> {
        let found = self
            .name_description_update("projects", id, name, description)
            .await
            .map_err(|e| name_taken(e, name.unwrap_or_default()))?;
        if !found {
            return Err(Error::not_found("project", id));
        }
        self.project_get(id)
            .await?
            .ok_or_else(|| Error::not_found("project", id))
    }

    /// Delete a project that holds no resources; its VDCs' `projects` usage drops with it.
    pub async fn project_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let sid = id.to_string();
        let vdc: Option<(String,)> = sqlx::query_as("SELECT vdc_id FROM projects WHERE id = $1")
            .bind(&sid)
            .fetch_optional(&mut *tx)
            .await?;
        let vdc_id = vdc
            .and_then(|(v,)| Uuid::parse_str(&v).ok())
            .ok_or_else(|| Error::not_found("project", id))?;
        let vdc_chain = Self::vdc_chain_tx(&mut tx, vdc_id).await?;
        let busy: Vec<(String, i64)> =
            sqlx::query_as("SELECT resource, used FROM quotas WHERE scope_id = $1 AND used > 0")
                .bind(&sid)
                .fetch_all(&mut *tx)
                .await?;
        if let Some((res, n)) = busy.first() {
            return Err(Error::conflict(format!(
                "project {id} still holds resources ({res}: {n}); delete them first"
            )));
        }
        let done = sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("project", id));
        }
        sqlx::query("DELETE FROM grants WHERE scope_id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM quotas WHERE scope_id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        Self::quota_charge(
            &mut tx,
            &vdc_chain,
            &[QuotaDelta {
                resource: QuotaResource::Projects,
                amount: -1,
            }],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
