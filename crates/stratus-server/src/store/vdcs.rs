use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use stratus_api::{ScopeType, Vdc};
use uuid::Uuid;

use super::{
    col_i64, col_opt_uuid, col_str, col_time, col_uuid, is_unique_violation, like_contains,
    now_text, Arg, Conds, Paging, Store, NAME_LIKE,
};
use crate::authz::Visibility;
use crate::error::{Error, Result};

/// Deepest VDC level accepted; the spec asks for at least 5.
pub const MAX_VDC_LEVEL: i64 = 16;

const COLS: &str = "id, org_id, parent_id, name, description, level, created_at, updated_at";

fn vdc_from_row(row: &AnyRow) -> Result<Vdc> {
    Ok(Vdc {
        id: col_uuid(row, "id")?,
        org_id: col_uuid(row, "org_id")?,
        parent_id: col_opt_uuid(row, "parent_id")?,
        name: col_str(row, "name")?,
        description: col_str(row, "description")?,
        level: col_i64(row, "level")?,
        created_at: col_time(row, "created_at")?,
        updated_at: col_time(row, "updated_at")?,
    })
}

fn sibling_taken(e: sqlx::Error, name: &str) -> Error {
    if is_unique_violation(&e) {
        Error::conflict(format!(
            "name: a VDC named {name:?} already exists at this place in the tree"
        ))
    } else {
        e.into()
    }
}

/// SQL condition on a VDC id column: visible under `v`.
pub(crate) fn vdc_visible(c: &mut Conds, col: &str, v: &Visibility) {
    if v.all {
        return;
    }
    c.and(
        format!(
            "{col} IN (SELECT descendant_id FROM vdc_closure WHERE {})",
            Conds::in_list("ancestor_id", v.vdcs.len())
        ),
        v.vdcs.iter().map(|i| Arg::from(*i)),
    );
}

impl Store {
    pub async fn vdc_create(
        &self,
        org_id: Uuid,
        parent: Option<&Vdc>,
        name: &str,
        description: &str,
    ) -> Result<Vdc> {
        let id = Uuid::new_v4();
        let now = now_text();
        let level = parent.map(|p| p.level + 1).unwrap_or(1);
        if level > MAX_VDC_LEVEL {
            return Err(Error::invalid(
                "parent_id",
                &format!("VDC trees are at most {MAX_VDC_LEVEL} levels deep"),
            ));
        }
        let mut tx = self.db.write.begin().await?;
        sqlx::query(
            "INSERT INTO vdcs (id, org_id, parent_id, name, description, level, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(id.to_string())
        .bind(org_id.to_string())
        .bind(parent.map(|p| p.id.to_string()))
        .bind(name)
        .bind(description)
        .bind(level)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(|e| sibling_taken(e, name))?;
        sqlx::query(
            "INSERT INTO vdc_closure (ancestor_id, descendant_id, distance) VALUES ($1, $1, 0)",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(p) = parent {
            sqlx::query(
                "INSERT INTO vdc_closure (ancestor_id, descendant_id, distance)
                 SELECT ancestor_id, $1, distance + 1 FROM vdc_closure WHERE descendant_id = $2",
            )
            .bind(id.to_string())
            .bind(p.id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        Self::quota_rows_create(&mut tx, ScopeType::Vdc, id).await?;
        tx.commit().await?;
        self.vdc_get(id)
            .await?
            .ok_or_else(|| Error::internal("VDC vanished after insert"))
    }

    pub async fn vdc_get(&self, id: Uuid) -> Result<Option<Vdc>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM vdcs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(vdc_from_row).transpose()
    }

    /// The VDC and its ancestors, nearest first (empty when the VDC does not exist).
    pub async fn vdc_chain(&self, id: Uuid) -> Result<Vec<Uuid>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT ancestor_id FROM vdc_closure WHERE descendant_id = $1 ORDER BY distance",
        )
        .bind(id.to_string())
        .fetch_all(&self.db.read)
        .await?;
        rows.into_iter()
            .map(|(s,)| {
                Uuid::parse_str(&s).map_err(|e| Error::internal(format!("vdc_closure: {e}")))
            })
            .collect()
    }

    pub async fn vdc_list(
        &self,
        vis: &Visibility,
        org_id: Option<Uuid>,
        parent_id: Option<Uuid>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<Vdc>, Option<String>)> {
        let mut c = Conds::new();
        vdc_visible(&mut c, "id", vis);
        if let Some(o) = org_id {
            c.and("org_id = ?", [Arg::from(o)]);
        }
        if let Some(p) = parent_id {
            c.and("parent_id = ?", [Arg::from(p)]);
        }
        if let Some(n) = name {
            c.and(NAME_LIKE, [like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(&format!("SELECT {COLS} FROM vdcs"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows.iter().map(vdc_from_row).collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    pub async fn vdc_update(
        &self,
        id: Uuid,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Vdc> {
        let found = self
            .name_description_update("vdcs", id, name, description)
            .await
            .map_err(|e| sibling_taken(e, name.unwrap_or_default()))?;
        if !found {
            return Err(Error::not_found("VDC", id));
        }
        self.vdc_get(id)
            .await?
            .ok_or_else(|| Error::not_found("VDC", id))
    }

    /// Move `vdc` and its subtree under `new_parent`: the closure table, levels and the
    /// usage rolled up to ancestors all change in one transaction, and the new ancestors'
    /// limits are enforced for the usage that arrives.
    pub async fn vdc_move(&self, vdc: &Vdc, new_parent: &Vdc) -> Result<Vdc> {
        let mut tx = self.db.write.begin().await?;
        let id = vdc.id.to_string();
        let subtree: Vec<(String, i64)> = sqlx::query_as(
            "SELECT descendant_id, distance FROM vdc_closure WHERE ancestor_id = $1",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        if subtree.iter().any(|(d, _)| *d == new_parent.id.to_string()) {
            return Err(Error::invalid(
                "parent_id",
                "cannot move a VDC under itself or one of its descendants",
            ));
        }
        let deepest = subtree.iter().map(|(_, d)| *d).max().unwrap_or(0);
        if new_parent.level + 1 + deepest > MAX_VDC_LEVEL {
            return Err(Error::invalid(
                "parent_id",
                &format!("the move would make the tree deeper than {MAX_VDC_LEVEL} levels"),
            ));
        }
        let old_ancestors: Vec<(String,)> = sqlx::query_as(
            "SELECT ancestor_id FROM vdc_closure WHERE descendant_id = $1 AND distance > 0",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        let new_chain: Vec<(String,)> = sqlx::query_as(
            "SELECT ancestor_id FROM vdc_closure WHERE descendant_id = $1 ORDER BY distance",
        )
        .bind(new_parent.id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        // Usage of the subtree leaves the old ancestors and arrives, within limits, at the new ones.
        let usage: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT resource, used, limit_value FROM quotas WHERE scope_id = $1")
                .bind(&id)
                .fetch_all(&mut *tx)
                .await?;
        for (resource, used, limit) in &usage {
            for (anc,) in &new_chain {
                let (anc_limit,): (i64,) = sqlx::query_as(
                    "SELECT limit_value FROM quotas WHERE scope_id = $1 AND resource = $2",
                )
                .bind(anc)
                .bind(resource)
                .fetch_one(&mut *tx)
                .await?;
                if *limit >= 0 && anc_limit >= 0 && *limit > anc_limit {
                    return Err(Error::invalid(
                        "parent_id",
                        &format!("this VDC's {resource} limit {limit} is above the new ancestor {anc}'s limit {anc_limit}"),
                    ));
                }
            }
            for (anc,) in &old_ancestors {
                Self::quota_adjust(&mut tx, anc, resource, -used).await?;
            }
            for (anc,) in &new_chain {
                Self::quota_adjust_checked(&mut tx, anc, resource, *used).await?;
            }
        }
        // Re-link the subtree: drop links to old ancestors, add links to the new chain.
        let mut c = Conds::new();
        c.and(
            "descendant_id IN (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = ?)",
            [Arg::from(id.as_str())],
        );
        c.and(
            "ancestor_id NOT IN (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = ?)",
            [Arg::from(id.as_str())],
        );
        let (sql, args) = c.render("DELETE FROM vdc_closure", "", vec![]);
        sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO vdc_closure (ancestor_id, descendant_id, distance)
             SELECT a.ancestor_id, s.descendant_id, a.distance + s.distance + 1
             FROM vdc_closure a, vdc_closure s
             WHERE a.descendant_id = $1 AND s.ancestor_id = $2",
        )
        .bind(new_parent.id.to_string())
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE vdcs SET level = (SELECT $1 + distance FROM vdc_closure WHERE ancestor_id = $2 AND descendant_id = vdcs.id)
             WHERE id IN (SELECT descendant_id FROM vdc_closure WHERE ancestor_id = $2)",
        )
        .bind(new_parent.level + 1)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE vdcs SET parent_id = $1, updated_at = $2 WHERE id = $3")
            .bind(new_parent.id.to_string())
            .bind(now_text())
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(|e| sibling_taken(e, &vdc.name))?;
        tx.commit().await?;
        self.vdc_get(vdc.id)
            .await?
            .ok_or_else(|| Error::not_found("VDC", vdc.id))
    }

    /// Delete an empty VDC (no child VDCs, projects or users). Grants on it go with it.
    pub async fn vdc_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let sid = id.to_string();
        for (table, col, what) in [
            ("vdcs", "parent_id", "child VDC"),
            ("projects", "vdc_id", "project"),
            ("users", "vdc_id", "user"),
        ] {
            let (n,): (i64,) =
                sqlx::query_as(&format!("SELECT COUNT(*) FROM {table} WHERE {col} = $1"))
                    .bind(&sid)
                    .fetch_one(&mut *tx)
                    .await?;
            if n > 0 {
                return Err(Error::conflict(format!(
                    "VDC {id} is not empty: it has {n} {what}(s)"
                )));
            }
        }
        sqlx::query("DELETE FROM flavor_vdcs WHERE vdc_id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM grants WHERE scope_id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM quotas WHERE scope_id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM vdc_closure WHERE descendant_id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM vdcs WHERE id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("VDC", id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// The VDC and its ancestors, nearest first, read inside a write transaction.
    pub(crate) async fn vdc_chain_tx(
        tx: &mut Transaction<'static, Any>,
        id: Uuid,
    ) -> Result<Vec<Uuid>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT ancestor_id FROM vdc_closure WHERE descendant_id = $1 ORDER BY distance",
        )
        .bind(id.to_string())
        .fetch_all(&mut **tx)
        .await?;
        if rows.is_empty() {
            return Err(Error::not_found("VDC", id));
        }
        rows.into_iter()
            .map(|(s,)| {
                Uuid::parse_str(&s).map_err(|e| Error::internal(format!("vdc_closure: {e}")))
            })
            .collect()
    }
}
