use sqlx::any::AnyRow;
use stratus_api::Organization;
use uuid::Uuid;

use super::{
    col_str, col_time, col_uuid, is_unique_violation, like_contains, now_text, Arg, Conds, Paging,
    Store, NAME_LIKE,
};
use crate::error::{Error, Result};

const COLS: &str = "id, name, description, created_at, updated_at";

fn org_from_row(row: &AnyRow) -> Result<Organization> {
    Ok(Organization {
        id: col_uuid(row, "id")?,
        name: col_str(row, "name")?,
        description: col_str(row, "description")?,
        created_at: col_time(row, "created_at")?,
        updated_at: col_time(row, "updated_at")?,
    })
}

fn name_taken(e: sqlx::Error, name: &str) -> Error {
    if is_unique_violation(&e) {
        Error::conflict(format!(
            "name: an organization named {name:?} already exists"
        ))
    } else {
        e.into()
    }
}

impl Store {
    pub async fn org_create(&self, name: &str, description: &str) -> Result<Organization> {
        let id = Uuid::new_v4();
        let now = now_text();
        sqlx::query("INSERT INTO organizations (id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)")
            .bind(id.to_string())
            .bind(name)
            .bind(description)
            .bind(&now)
            .execute(&self.db.write)
            .await
            .map_err(|e| name_taken(e, name))?;
        self.org_get(id)
            .await?
            .ok_or_else(|| Error::internal("organization vanished after insert"))
    }

    pub async fn org_get(&self, id: Uuid) -> Result<Option<Organization>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM organizations WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    /// `only` restricts to these organizations (None = all).
    pub async fn org_list(
        &self,
        only: Option<&[Uuid]>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<Organization>, Option<String>)> {
        let mut c = Conds::new();
        if let Some(ids) = only {
            c.and(
                Conds::in_list("id", ids.len()),
                ids.iter().map(|i| Arg::from(*i)),
            );
        }
        if let Some(n) = name {
            c.and(NAME_LIKE, [like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(&format!("SELECT {COLS} FROM organizations"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows.iter().map(org_from_row).collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    pub async fn org_update(
        &self,
        id: Uuid,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Organization> {
        let found = self
            .name_description_update("organizations", id, name, description)
            .await
            .map_err(|e| name_taken(e, name.unwrap_or_default()))?;
        if !found {
            return Err(Error::not_found("organization", id));
        }
        self.org_get(id)
            .await?
            .ok_or_else(|| Error::not_found("organization", id))
    }

    pub async fn org_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM vdcs WHERE org_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Err(Error::conflict(format!(
                "organization {id} still has {n} VDC(s); delete them first"
            )));
        }
        let done = sqlx::query("DELETE FROM organizations WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("organization", id));
        }
        tx.commit().await?;
        Ok(())
    }
}
