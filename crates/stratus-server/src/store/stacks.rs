//! Orchestration stacks. A stack's resources, parameters and outputs are JSON columns,
//! written whole with the stack over the version it was read at.

use sqlx::any::AnyRow;
use stratus_api::{OnFailure, Stack, StackStatus};
use uuid::Uuid;

use super::{
    col_i64, col_str, col_time, col_uuid, is_unique_violation, json_col, json_text, now_text,
    time_text, Arg, Conds, Paging, Store,
};
use crate::authz::Visibility;
use crate::error::{Error, Result};

const COLS: &str = "id, project_id, vdc_id, name, description, template, parameters, status, \
    status_reason, on_failure, resources, outputs, created_by, actor_id, version, created_at, \
    updated_at";

/// A stack as stored: the API view, its template text, whose rights the action under way
/// runs with, and the version it was read at.
#[derive(Debug, Clone)]
pub struct StackRow {
    pub api: Stack,
    pub template: String,
    pub actor: Uuid,
    pub version: i64,
}

fn on_failure_text(o: OnFailure) -> &'static str {
    match o {
        OnFailure::Rollback => "rollback",
        OnFailure::Keep => "keep",
    }
}

fn from_row(r: &AnyRow) -> Result<StackRow> {
    let status = col_str(r, "status")?;
    Ok(StackRow {
        api: Stack {
            id: col_uuid(r, "id")?,
            name: col_str(r, "name")?,
            description: col_str(r, "description")?,
            project_id: col_uuid(r, "project_id")?,
            vdc_id: col_uuid(r, "vdc_id")?,
            status: StackStatus::parse(&status)
                .ok_or_else(|| Error::internal(format!("unknown stack status {status:?}")))?,
            status_reason: col_str(r, "status_reason")?,
            on_failure: if col_str(r, "on_failure")? == "keep" {
                OnFailure::Keep
            } else {
                OnFailure::Rollback
            },
            parameters: json_col(r, "parameters")?,
            resources: json_col(r, "resources")?,
            outputs: json_col(r, "outputs")?,
            created_by: col_uuid(r, "created_by")?,
            created_at: col_time(r, "created_at")?,
            updated_at: col_time(r, "updated_at")?,
        },
        template: col_str(r, "template")?,
        actor: col_uuid(r, "actor_id")?,
        version: col_i64(r, "version")?,
    })
}

impl Store {
    pub async fn stack_insert(&self, s: &StackRow) -> Result<()> {
        let a = &s.api;
        let done = sqlx::query(&format!(
            "INSERT INTO stacks ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, 0, $15, $15)"
        ))
        .bind(a.id.to_string())
        .bind(a.project_id.to_string())
        .bind(a.vdc_id.to_string())
        .bind(&a.name)
        .bind(&a.description)
        .bind(&s.template)
        .bind(json_text(&a.parameters))
        .bind(a.status.as_str())
        .bind(&a.status_reason)
        .bind(on_failure_text(a.on_failure))
        .bind(json_text(&a.resources))
        .bind(json_text(&a.outputs))
        .bind(a.created_by.to_string())
        .bind(s.actor.to_string())
        .bind(time_text(a.created_at))
        .execute(&self.db.write)
        .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::conflict(format!(
                "the project already has a stack named {:?}",
                a.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn stack_get(&self, id: Uuid) -> Result<Option<StackRow>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM stacks WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Write a stack over the version it was read at; false when it changed in between.
    pub async fn stack_update(&self, s: &StackRow) -> Result<bool> {
        let a = &s.api;
        let done = sqlx::query(
            "UPDATE stacks SET template = $1, parameters = $2, status = $3, status_reason = $4, \
             resources = $5, outputs = $6, actor_id = $7, version = version + 1, updated_at = $8 \
             WHERE id = $9 AND version = $10",
        )
        .bind(&s.template)
        .bind(json_text(&a.parameters))
        .bind(a.status.as_str())
        .bind(&a.status_reason)
        .bind(json_text(&a.resources))
        .bind(json_text(&a.outputs))
        .bind(s.actor.to_string())
        .bind(now_text())
        .bind(a.id.to_string())
        .bind(s.version)
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn stack_remove(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM stacks WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    pub async fn stack_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<Stack>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "");
        if let Some(p) = project {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        if let Some(n) = name {
            c.and(super::NAME_LIKE, [super::like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(&format!("SELECT {COLS} FROM stacks"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(|r| from_row(r).map(|s| s.api))
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    /// Stacks with an action under way (to take up again after a restart).
    pub async fn stacks_busy(&self) -> Result<Vec<Uuid>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM stacks WHERE status IN ('creating', 'updating', 'deleting', 'rolling_back')",
        )
        .fetch_all(&self.db.read)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s,)| Uuid::parse_str(&s).ok())
            .collect())
    }
}
