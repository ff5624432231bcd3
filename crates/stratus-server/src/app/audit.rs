use stratus_api::{AuditEvent, AuditFilter, Page};

use super::{require_global, App};
use crate::authz::{Perm, Principal};
use crate::error::Result;

pub async fn audit_list(app: &App, p: &Principal, f: AuditFilter) -> Result<Page<AuditEvent>> {
    require_global(p, Perm::AuditRead)?;
    let (items, next) = app.store.audit_list(&f).await?;
    Ok(Page { items, next })
}

fn csv_field(s: &str) -> String {
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
