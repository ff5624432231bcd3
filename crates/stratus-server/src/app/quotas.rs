use stratus_api::{ConsistencyReport, QuotaUpdate, QuotaView, ScopeType};
use uuid::Uuid;

use super::{require_global, require_seen, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::Result;

/// The levels of a quota view: the owner, then each ancestor VDC with its name.
async fn levels(
    app: &App,
    owner: (ScopeType, Uuid, String),
    vdc_chain: &[Uuid],
) -> Result<Vec<(ScopeType, Uuid, String)>> {
    let mut out = vec![owner];
    for id in vdc_chain {
        if out.iter().any(|(_, o, _)| o == id) {
            continue;
        }
        let name = app
            .store
            .vdc_get(*id)
            .await?
            .map(|v| v.name)
            .unwrap_or_default();
        out.push((ScopeType::Vdc, *id, name));
    }
    Ok(out)
}

pub async fn vdc_quota_view(app: &App, p: &Principal, id: Uuid) -> Result<QuotaView> {
    let (vdc, chain) = app.vdc_visible(p, id).await?;
    require_seen(
        p,
        Perm::QuotaRead,
        &Target::Vdc { chain: &chain },
        "VDC",
        id,
    )?;
    let levels = levels(app, (ScopeType::Vdc, id, vdc.name), &chain).await?;
    Ok(QuotaView {
        levels: app.store.quota_view(&levels).await?,
    })
}

pub async fn project_quota_view(app: &App, p: &Principal, id: Uuid) -> Result<QuotaView> {
    let (project, chain) = app.project_visible(p, id).await?;
    require_seen(
        p,
        Perm::QuotaRead,
        &Target::Project { id, chain: &chain },
        "project",
        id,
    )?;
    let levels = levels(app, (ScopeType::Project, id, project.name), &chain).await?;
    Ok(QuotaView {
        levels: app.store.quota_view(&levels).await?,
    })
}

/// A VDC's own limits are set by whoever manages its parent (a VDC admin cannot raise their own).
pub async fn vdc_quota_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: QuotaUpdate,
) -> Result<QuotaView> {
    let (_, chain) = app.vdc_visible(p, id).await?;
    if chain.len() > 1 {
        require_seen(
            p,
            Perm::QuotaWrite,
            &Target::Vdc { chain: &chain[1..] },
            "VDC",
            id,
        )?;
    } else {
        require_global(p, Perm::QuotaWrite)?;
    }
    let limits: Vec<_> = b.limits.into_iter().collect();
    app.store
        .quota_update(ScopeType::Vdc, id, &chain[1..], &limits)
        .await?;
    vdc_quota_view(app, p, id).await
}

pub async fn project_quota_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: QuotaUpdate,
) -> Result<QuotaView> {
    let (_, chain) = app.project_visible(p, id).await?;
    // Set by whoever manages the project's VDC.
    require_seen(
        p,
        Perm::QuotaWrite,
        &Target::Vdc { chain: &chain },
        "project",
        id,
    )?;
    let limits: Vec<_> = b.limits.into_iter().collect();
    app.store
        .quota_update(ScopeType::Project, id, &chain, &limits)
        .await?;
    project_quota_view(app, p, id).await
}

pub async fn quota_consistency(app: &App, p: &Principal) -> Result<ConsistencyReport> {
    require_global(p, Perm::SystemRead)?;
    app.store.quota_consistency_check().await
}
