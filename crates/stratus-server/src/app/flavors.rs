use std::collections::HashSet;

use stratus_api::{Flavor, FlavorCreate};
use uuid::Uuid;

use super::{require_global, App};
use crate::authz::{GrantScope, Perm, Principal};
use crate::error::{Error, Result};
use crate::store::NewFlavor;
use crate::validate;

/// A restricted flavor is visible to callers whose scopes lie in or above an allowed VDC.
async fn visible(app: &App, p: &Principal, f: &Flavor) -> Result<bool> {
    if f.vdc_ids.is_empty() || p.has_global(Perm::VdcRead) {
        return Ok(true);
    }
    let allowed: HashSet<Uuid> = f.vdc_ids.iter().copied().collect();
    for g in &p.grants {
        let vdc = match &g.scope {
            GrantScope::Platform => continue,
            GrantScope::Vdc { id, .. } => *id,
            GrantScope::Project { vdc_id, .. } => *vdc_id,
        };
        // The caller's scope is inside an allowed VDC…
        if app
            .store
            .vdc_chain(vdc)
            .await?
            .iter()
            .any(|c| allowed.contains(c))
        {
            return Ok(true);
        }
        // …or an allowed VDC is inside the caller's VDC.
        if let GrantScope::Vdc { id, .. } = &g.scope {
            for a in &allowed {
                if app.store.vdc_chain(*a).await?.contains(id) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

pub async fn flavor_list(app: &App, p: &Principal) -> Result<Vec<Flavor>> {
    let mut out = Vec::new();
    for f in app.store.flavor_list().await? {
        if visible(app, p, &f).await? {
            out.push(f);
        }
    }
    Ok(out)
}

pub async fn flavor_view(app: &App, p: &Principal, id: Uuid) -> Result<Flavor> {
    match app.store.flavor_get(id).await? {
        Some(f) if visible(app, p, &f).await? => Ok(f),
        _ => Err(Error::not_found("flavor", id)),
    }
}

pub async fn flavor_create(app: &App, p: &Principal, b: FlavorCreate) -> Result<Flavor> {
    require_global(p, Perm::FlavorWrite)?;
    validate::login_name("name", &b.name)?;
    validate::description("description", &b.description)?;
    if !(1..=255).contains(&b.vcpus) {
        return Err(Error::invalid("vcpus", "must be between 1 and 255"));
    }
    if !(64..=4 * 1024 * 1024).contains(&b.memory_mib) {
        return Err(Error::invalid(
            "memory_mib",
            "must be between 64 MiB and 4 TiB",
        ));
    }
    if !(1..=65536).contains(&b.disk_gib) {
        return Err(Error::invalid("disk_gib", "must be between 1 and 65536"));
    }
    let mut vdcs = b.vdc_ids.clone();
    vdcs.sort();
    vdcs.dedup();
    for v in &vdcs {
        if app.store.vdc_get(*v).await?.is_none() {
            return Err(Error::invalid(
                "vdc_ids",
                &format!("VDC {v} does not exist"),
            ));
        }
    }
    app.store
        .flavor_create(NewFlavor {
            name: &b.name,
            description: &b.description,
            vcpus: b.vcpus,
            memory_mib: b.memory_mib,
            disk_gib: b.disk_gib,
            builtin: false,
            vdc_ids: &vdcs,
        })
        .await
}

pub async fn flavor_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let f = flavor_view(app, p, id).await?;
    require_global(p, Perm::FlavorWrite)?;
    if f.builtin {
        return Err(Error::conflict(format!(
            "flavor {} is a built-in reference flavor and cannot be deleted",
            f.name
        )));
    }
    app.store.flavor_delete(id).await
}
