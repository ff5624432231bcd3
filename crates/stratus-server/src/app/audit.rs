use stratus_api::{AuditEvent, AuditFilter, Page};

use super::{require_global, App};
use crate::authz::{Perm, Principal};
use crate::error::Result;

pub async fn audit_list(app: &App, p: &Principal, f: AuditFilter) -> Result<Page<AuditEvent>> {
    require_global(p, Perm::AuditRead)?;
    let (items, next) = app.store.audit_list(&f).await?;
    Ok(Page { items, next })
}

pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Every event matching the filter (newest first) as CSV.
pub async fn audit_export(app: &App, p: &Principal, mut f: AuditFilter) -> Result<String> {
    require_global(p, Perm::AuditRead)?;
    let mut out = String::from(
        "id,at,request_id,user_id,user_name,vdc_id,source_ip,method,path,operation,object_type,object_id,result,status,duration_ms,message\n",
    );
    f.limit = Some(10_000);
    loop {
        let (items, next) = app.store.audit_list(&f).await?;
        for e in &items {
            let fields = [
                e.id.to_string(),
                crate::store::time_text(e.at),
                e.request_id.clone(),
                e.user_id.map(|u| u.to_string()).unwrap_or_default(),
                e.user_name.clone(),
                e.vdc_id.map(|u| u.to_string()).unwrap_or_default(),
                e.source_ip.clone(),
                e.method.clone(),
                e.path.clone(),
                e.operation.clone(),
                e.object_type.clone(),
                e.object_id.clone(),
                e.result.as_str().to_string(),
                e.status.to_string(),
                format!("{:.3}", e.duration_ms),
                e.message.clone(),
            ];
            out.push_str(
                &fields
                    .iter()
                    .map(|s| csv_field(s))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
        match next {
            Some(n) => f.next = Some(n),
            None => break,
        }
    }
    Ok(out)
}

/// Work the platform does after the call that asked for it (provisioning an order, making
/// a stack's resources): which call it belongs to, for its audit records.
pub struct Background {
    /// `ORDER`, `STACK`: what the records' method column shows.
    pub method: &'static str,
    pub request_id: String,
    pub path: String,
    pub vdc_id: uuid::Uuid,
}

/// Record one step of background work: what was done to which object, as whom, and how it
/// went. A failure to write is logged, not returned: the work itself is done.
pub async fn background(
    app: &App,
    ctx: &Background,
    p: &Principal,
    operation: &str,
    object: (&str, String),
    ok: bool,
    message: String,
) {
    let record = crate::store::AuditRecord {
        at: crate::store::now_text(),
        request_id: ctx.request_id.clone(),
        user_id: (!p.user_id.is_nil()).then_some(p.user_id),
        user_name: p.name.clone(),
        vdc_id: Some(ctx.vdc_id),
        source_ip: String::new(),
        method: ctx.method.into(),
        path: ctx.path.clone(),
        operation: operation.into(),
        object_type: object.0.into(),
        object_id: object.1,
        result: if ok {
            stratus_api::AuditResult::Success
        } else {
            stratus_api::AuditResult::Failure
        },
        status: if ok { 200 } else { 409 },
        duration_us: 0,
        message,
    };
    if let Err(e) = app.store.audit_insert(&record).await {
        tracing::error!(error = %e, operation, "cannot write the audit record of background work");
    }
}
