use sqlx::any::AnyRow;
use stratus_api::{Grant, ScopeType};
use uuid::Uuid;

use super::{
    col_opt_str, col_opt_uuid, col_str, col_time, col_uuid, is_unique_violation, now_text, Arg,
    Conds, Store,
};
use crate::authz::{self, GrantRef, GrantScope, Visibility};
use crate::error::{Error, Result};

const COLS: &str = "id, user_id, role, scope_type, scope_id, created_at";

fn grant_from_row(row: &AnyRow) -> Result<Grant> {
    let st = col_str(row, "scope_type")?;
    Ok(Grant {
        id: col_uuid(row, "id")?,
        user_id: col_uuid(row, "user_id")?,
        role: col_str(row, "role")?,
        scope_type: ScopeType::parse(&st)
            .ok_or_else(|| Error::internal(format!("bad scope_type {st}")))?,
        scope_id: col_opt_uuid(row, "scope_id")?,
        created_at: col_time(row, "created_at")?,
    })
}

impl Store {
    pub async fn grant_create(
        &self,
        user_id: Uuid,
        role: &str,
        scope_type: ScopeType,
        scope_id: Option<Uuid>,
    ) -> Result<Grant> {
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO grants (id, user_id, role, scope_type, scope_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id.to_string())
            .bind(user_id.to_string())
            .bind(role)
            .bind(scope_type.as_str())
            .bind(scope_id.map(|s| s.to_string()).unwrap_or_default())
            .bind(now_text())
            .execute(&self.db.write)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict("the user already has this role on this scope")
                } else {
                    e.into()
                }
            })?;
        self.grant_get(id)
            .await?
            .ok_or_else(|| Error::internal("grant vanished after insert"))
    }

    pub async fn grant_get(&self, id: Uuid) -> Result<Option<Grant>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM grants WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// Grants on scopes visible under `vis`, plus the caller's own (`self_id`).
    pub async fn grant_list(
        &self,
        vis: &Visibility,
        self_id: Uuid,
        user_id: Option<Uuid>,
        scope_id: Option<Uuid>,
    ) -> Result<Vec<Grant>> {
        let mut c = Conds::new();
        if !vis.all {
            let subtree = format!(
                "SELECT descendant_id FROM vdc_closure WHERE {}",
                Conds::in_list("ancestor_id", vis.vdcs.len())
            );
            let mut args: Vec<Arg> = vec![Arg::from(self_id)];
            args.extend(vis.vdcs.iter().map(|v| Arg::from(*v)));
            args.extend(vis.vdcs.iter().map(|v| Arg::from(*v)));
            args.extend(vis.projects.iter().map(|v| Arg::from(*v)));
            c.and(
                format!(
                    "user_id = ? OR (scope_type = 'vdc' AND scope_id IN ({subtree}))
                     OR (scope_type = 'project' AND (scope_id IN (SELECT id FROM projects WHERE vdc_id IN ({subtree})) OR {}))",
                    Conds::in_list("scope_id", vis.projects.len())
                ),
                args,
            );
        }
        if let Some(u) = user_id {
            c.and("user_id = ?", [Arg::from(u)]);
        }
        if let Some(s) = scope_id {
            c.and("scope_id = ?", [Arg::from(s)]);
        }
        let (sql, args) = c.render(
            &format!("SELECT {COLS} FROM grants"),
            "ORDER BY created_at, id LIMIT 10000",
            vec![],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(grant_from_row).collect()
    }

    pub async fn grant_delete(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM grants WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// The user's grants resolved for authorization: each VDC or project grant with the
    /// organization (and, for projects, the VDC) it lies in.
    pub async fn grant_refs_for_user(&self, user_id: Uuid) -> Result<Vec<GrantRef>> {
        let rows = sqlx::query(
            "SELECT g.role, g.scope_type, g.scope_id, COALESCE(v.org_id, p.org_id) AS org_id, p.vdc_id AS project_vdc
             FROM grants g
             LEFT JOIN vdcs v ON g.scope_type = 'vdc' AND v.id = g.scope_id
             LEFT JOIN projects p ON g.scope_type = 'project' AND p.id = g.scope_id
             WHERE g.user_id = $1",
        )
        .bind(user_id.to_string())
        .fetch_all(&self.db.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(role) = authz::role(&col_str(row, "role")?) else {
                continue;
            };
            let org = col_opt_str(row, "org_id")?.and_then(|s| Uuid::parse_str(&s).ok());
            let scope = match (
                col_str(row, "scope_type")?.as_str(),
                col_opt_uuid(row, "scope_id")?,
                org,
            ) {
                ("platform", _, _) => GrantScope::Platform,
                ("vdc", Some(id), Some(org_id)) => GrantScope::Vdc { id, org_id },
                ("project", Some(id), Some(org_id)) => match col_opt_uuid(row, "project_vdc")? {
                    Some(vdc_id) => GrantScope::Project { id, vdc_id, org_id },
                    None => continue,
                },
                _ => continue,
            };
            out.push(GrantRef { role, scope });
        }
        Ok(out)
    }
}
