//! Services of the catalog, approval flows, and requests with their approver seats.
//! Forms, levels and decisions are JSON columns: they are read and written whole, with
//! the request itself.

use sqlx::any::AnyRow;
use stratus_api::{ApprovalFlow, Request, RequestAction, RequestStatus, Service, ServiceKind};
use uuid::Uuid;

use super::{
    col_i64, col_opt_uuid, col_str, col_time, col_uuid, is_foreign_key_violation,
    is_unique_violation, json_col, json_text, now_text, time_text, Arg, Conds, Paging, Store,
};
use crate::error::{Error, Result};

fn kind_parse(s: &str) -> Result<ServiceKind> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| Error::internal(format!("unknown service kind {s:?} in the store")))
}

fn action_text(a: RequestAction) -> &'static str {
    match a {
        RequestAction::Create => "create",
        RequestAction::Change => "change",
        RequestAction::Release => "release",
    }
}

fn action_parse(s: &str) -> RequestAction {
    match s {
        "change" => RequestAction::Change,
        "release" => RequestAction::Release,
        _ => RequestAction::Create,
    }
}

const SERVICE_COLS: &str =
    "id, name, description, icon, category, kind, parameters, vdc_ids, published, template, created_at, updated_at";

fn service_from_row(r: &AnyRow) -> Result<Service> {
    Ok(Service {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        description: col_str(r, "description")?,
        icon: col_str(r, "icon")?,
        category: col_str(r, "category")?,
        kind: kind_parse(&col_str(r, "kind")?)?,
        parameters: json_col(r, "parameters")?,
        vdc_ids: json_col(r, "vdc_ids")?,
        published: col_i64(r, "published")? != 0,
        template: col_str(r, "template")?,
        created_at: col_time(r, "created_at")?,
        updated_at: col_time(r, "updated_at")?,
    })
}

const FLOW_COLS: &str =
    "id, name, description, service_id, vdc_id, levels, auto_approve, created_at, updated_at";

fn flow_from_row(r: &AnyRow) -> Result<ApprovalFlow> {
    Ok(ApprovalFlow {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        description: col_str(r, "description")?,
        service_id: col_opt_uuid(r, "service_id")?,
        vdc_id: col_opt_uuid(r, "vdc_id")?,
        levels: json_col(r, "levels")?,
        auto_approve: json_col(r, "auto_approve")?,
        created_at: col_time(r, "created_at")?,
        updated_at: col_time(r, "updated_at")?,
    })
}

/// One flow per service (or every service) and VDC (or everywhere).
fn scope_key(service: Option<Uuid>, vdc: Option<Uuid>) -> String {
    let s = |u: Option<Uuid>| u.map(|u| u.to_string()).unwrap_or_else(|| "*".into());
    format!("{}/{}", s(service), s(vdc))
}

const REQUEST_COLS: &str = "id, action, service_id, service_name, kind, project_id, vdc_id, \
    requester_id, requester_name, description, parameters, resource_id, status, status_reason, \
    level, levels, flow_id, resources, version, created_at, updated_at, subscription_months";

/// A request and the version it was read at.
pub type RequestRow = (Request, i64);

fn request_from_row(r: &AnyRow) -> Result<RequestRow> {
    let status = col_str(r, "status")?;
    Ok((
        Request {
            id: col_uuid(r, "id")?,
            action: action_parse(&col_str(r, "action")?),
            service_id: col_opt_uuid(r, "service_id")?,
            service_name: col_str(r, "service_name")?,
            kind: kind_parse(&col_str(r, "kind")?)?,
            project_id: col_uuid(r, "project_id")?,
            vdc_id: col_uuid(r, "vdc_id")?,
            requester_id: col_uuid(r, "requester_id")?,
            requester_name: col_str(r, "requester_name")?,
            description: col_str(r, "description")?,
            parameters: json_col(r, "parameters")?,
            resource_id: col_opt_uuid(r, "resource_id")?,
            status: RequestStatus::parse(&status)
                .ok_or_else(|| Error::internal(format!("unknown request status {status:?}")))?,
            status_reason: col_str(r, "status_reason")?,
            level: col_i64(r, "level")?,
            levels: json_col(r, "levels")?,
            flow_id: col_opt_uuid(r, "flow_id")?,
            resources: json_col(r, "resources")?,
            subscription_months: super::col_opt_i64(r, "subscription_months")?,
            created_at: col_time(r, "created_at")?,
            updated_at: col_time(r, "updated_at")?,
        },
        col_i64(r, "version")?,
    ))
}

/// Which requests a list shows to its caller.
pub struct RequestScope<'a> {
    /// Every request (platform-wide resource readers).
    pub all: bool,
    pub user: Uuid,
    /// Requests for projects in these VDC subtrees or these projects.
    pub vdcs: &'a [Uuid],
    pub projects: &'a [Uuid],
}

impl Store {
    // ------------------------------------------------------------ services

    pub async fn service_insert(&self, s: &Service) -> Result<()> {
        let done = sqlx::query(&format!(
            "INSERT INTO services ({SERVICE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)"
        ))
        .bind(s.id.to_string())
        .bind(&s.name)
        .bind(&s.description)
        .bind(&s.icon)
        .bind(&s.category)
        .bind(s.kind.as_str())
        .bind(json_text(&s.parameters))
        .bind(json_text(&s.vdc_ids))
        .bind(s.published as i64)
        .bind(&s.template)
        .bind(time_text(s.created_at))
        .execute(&self.db.write)
        .await;
        match done {
            Err(e) if is_unique_violation(&e) => Err(Error::conflict(format!(
                "a service named {:?} exists",
                s.name
            ))),
            other => other.map(drop).map_err(Into::into),
        }
    }

    pub async fn service_get(&self, id: Uuid) -> Result<Option<Service>> {
        let row = sqlx::query(&format!(
            "SELECT {SERVICE_COLS} FROM services WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.as_ref().map(service_from_row).transpose()
    }

    /// Every service, by category and name (a catalog is small).
    pub async fn service_list(&self) -> Result<Vec<Service>> {
        let rows = sqlx::query(&format!(
            "SELECT {SERVICE_COLS} FROM services ORDER BY category, name, id"
        ))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(service_from_row).collect()
    }

    pub async fn service_update(&self, s: &Service) -> Result<()> {
        let done = sqlx::query(
            "UPDATE services SET name = $1, description = $2, icon = $3, category = $4, \
             parameters = $5, vdc_ids = $6, published = $7, template = $8, updated_at = $9 \
             WHERE id = $10",
        )
        .bind(&s.name)
        .bind(&s.description)
        .bind(&s.icon)
        .bind(&s.category)
        .bind(json_text(&s.parameters))
        .bind(json_text(&s.vdc_ids))
        .bind(s.published as i64)
        .bind(&s.template)
        .bind(now_text())
        .bind(s.id.to_string())
        .execute(&self.db.write)
        .await;
        match done {
            Err(e) if is_unique_violation(&e) => Err(Error::conflict(format!(
                "a service named {:?} exists",
                s.name
            ))),
            other => other.map(drop).map_err(Into::into),
        }
    }

    /// Remove a service no approval flow names (requests keep its name).
    pub async fn service_delete(&self, id: Uuid) -> Result<()> {
        let done = sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await;
        match done {
            Err(e) if is_foreign_key_violation(&e) => Err(Error::conflict(
                "approval flows name this service: delete them first",
            )),
            other => other.map(drop).map_err(Into::into),
        }
    }

    // ------------------------------------------------------------ approval flows

    pub async fn flow_insert(&self, f: &ApprovalFlow) -> Result<()> {
        let done = sqlx::query(&format!(
            "INSERT INTO approval_flows ({FLOW_COLS}, scope_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)"
        ))
        .bind(f.id.to_string())
        .bind(&f.name)
        .bind(&f.description)
        .bind(f.service_id.map(|u| u.to_string()))
        .bind(f.vdc_id.map(|u| u.to_string()))
        .bind(json_text(&f.levels))
        .bind(json_text(&f.auto_approve))
        .bind(time_text(f.created_at))
        .bind(scope_key(f.service_id, f.vdc_id))
        .execute(&self.db.write)
        .await;
        match done {
            Err(e) if is_unique_violation(&e) => Err(Error::conflict(
                "a flow for this service and VDC exists: change it instead",
            )),
            other => other.map(drop).map_err(Into::into),
        }
    }

    pub async fn flow_get(&self, id: Uuid) -> Result<Option<ApprovalFlow>> {
        let row = sqlx::query(&format!(
            "SELECT {FLOW_COLS} FROM approval_flows WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.as_ref().map(flow_from_row).transpose()
    }

    pub async fn flow_list(&self) -> Result<Vec<ApprovalFlow>> {
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_COLS} FROM approval_flows ORDER BY name, id"
        ))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(flow_from_row).collect()
    }

    /// Flows that may decide for `service`: its own and those for every service.
    pub async fn flow_candidates(&self, service: Option<Uuid>) -> Result<Vec<ApprovalFlow>> {
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_COLS} FROM approval_flows WHERE service_id IS NULL OR service_id = $1"
        ))
        .bind(service.map(|s| s.to_string()).unwrap_or_default())
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(flow_from_row).collect()
    }

    pub async fn flow_update(&self, f: &ApprovalFlow) -> Result<()> {
        sqlx::query(
            "UPDATE approval_flows SET name = $1, description = $2, levels = $3, \
             auto_approve = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(&f.name)
        .bind(&f.description)
        .bind(json_text(&f.levels))
        .bind(json_text(&f.auto_approve))
        .bind(now_text())
        .bind(f.id.to_string())
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn flow_delete(&self, id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM approval_flows WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    // ------------------------------------------------------------ requests

    /// A new request with the seats of its levels (the approvers' queue).
    pub async fn request_insert(&self, r: &Request) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO requests ({REQUEST_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, 0, $19, $19, $20)"
        ))
        .bind(r.id.to_string())
        .bind(action_text(r.action))
        .bind(r.service_id.map(|u| u.to_string()))
        .bind(&r.service_name)
        .bind(r.kind.as_str())
        .bind(r.project_id.to_string())
        .bind(r.vdc_id.to_string())
        .bind(r.requester_id.to_string())
        .bind(&r.requester_name)
        .bind(&r.description)
        .bind(json_text(&r.parameters))
        .bind(r.resource_id.map(|u| u.to_string()))
        .bind(r.status.as_str())
        .bind(&r.status_reason)
        .bind(r.level)
        .bind(json_text(&r.levels))
        .bind(r.flow_id.map(|u| u.to_string()))
        .bind(json_text(&r.resources))
        .bind(time_text(r.created_at))
        .bind(r.subscription_months)
        .execute(&mut *tx)
        .await?;
        for (l, level) in r.levels.iter().enumerate() {
            for (s, a) in level.approvers.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO request_seats (request_id, level, seat, user_id, role) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(r.id.to_string())
                .bind(l as i64)
                .bind(s as i64)
                .bind(a.user_id.map(|u| u.to_string()))
                .bind(a.role.clone())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn request_get(&self, id: Uuid) -> Result<Option<RequestRow>> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLS} FROM requests WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// Write a request over the version it was read at; false when someone else changed
    /// it in between (the caller reads it again and decides again).
    pub async fn request_update(&self, r: &Request, version: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE requests SET parameters = $1, status = $2, status_reason = $3, level = $4, \
             levels = $5, resources = $6, version = version + 1, updated_at = $7 \
             WHERE id = $8 AND version = $9",
        )
        .bind(json_text(&r.parameters))
        .bind(r.status.as_str())
        .bind(&r.status_reason)
        .bind(r.level)
        .bind(json_text(&r.levels))
        .bind(json_text(&r.resources))
        .bind(now_text())
        .bind(r.id.to_string())
        .bind(version)
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn request_list(
        &self,
        scope: &RequestScope<'_>,
        status: Option<RequestStatus>,
        project: Option<Uuid>,
        mine: bool,
        paging: &Paging,
    ) -> Result<(Vec<Request>, Option<String>)> {
        let mut c = Conds::new();
        if !scope.all {
            let mut args: Vec<Arg> = vec![Arg::from(scope.user), Arg::from(scope.user)];
            args.extend(scope.vdcs.iter().map(|i| Arg::from(*i)));
            args.extend(scope.projects.iter().map(|i| Arg::from(*i)));
            c.and(
                format!(
                    "requester_id = ? OR id IN (SELECT request_id FROM request_seats WHERE user_id = ?) \
                     OR vdc_id IN (SELECT descendant_id FROM vdc_closure WHERE {}) OR {}",
                    Conds::in_list("ancestor_id", scope.vdcs.len()),
                    Conds::in_list("project_id", scope.projects.len())
                ),
                args,
            );
        }
        if mine {
            c.and("requester_id = ?", [Arg::from(scope.user)]);
        }
        if let Some(s) = status {
            c.and("status = ?", [Arg::from(s.as_str())]);
        }
        if let Some(p) = project {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(
            &format!("SELECT {REQUEST_COLS} FROM requests"),
            &tail,
            targs,
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(|r| request_from_row(r).map(|(r, _)| r))
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.finish(items, |r| (time_text(r.created_at), r.id.to_string())))
    }

    /// Requests being approved whose current level has a seat for `user` or for one of
    /// `roles` (the caller still checks that the role's grant covers the request), not
    /// the user's own.
    pub async fn request_queue(&self, user: Uuid, roles: &[String]) -> Result<Vec<Request>> {
        let mut args: Vec<Arg> = vec![Arg::from(user)];
        args.extend(roles.iter().map(|r| Arg::from(r.as_str())));
        let mut c = Conds::new();
        c.and(
            "r.status = 'approving' AND r.requester_id <> ?",
            [Arg::from(user)],
        )
            .and(
                format!(
                    "EXISTS (SELECT 1 FROM request_seats s WHERE s.request_id = r.id AND s.level = r.level \
                     AND (s.user_id = ? OR {}))",
                    Conds::in_list("s.role", roles.len())
                ),
                args,
            );
        let cols = REQUEST_COLS
            .split(", ")
            .map(|c| format!("r.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let (sql, args) = c.render(
            &format!("SELECT {cols} FROM requests r"),
            "ORDER BY r.created_at, r.id",
            vec![],
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter()
            .map(|r| request_from_row(r).map(|(r, _)| r))
            .collect()
    }

    /// Requests in a status (recovery after a restart).
    pub async fn requests_in(&self, status: RequestStatus) -> Result<Vec<Uuid>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM requests WHERE status = $1")
            .bind(status.as_str())
            .fetch_all(&self.db.read)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s,)| Uuid::parse_str(&s).ok())
            .collect())
    }
}
