use stratus_api::{ListParams, Page, Vdc, VdcCreate, VdcFilter, VdcUpdate};
use uuid::Uuid;

use super::{require, require_global, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::Paging;
use crate::validate;

const SORTABLE: &[&str] = &["created_at", "name"];

/// Changing where a VDC sits (create under, move, delete) is the business of whoever
/// manages its parent; a top-level VDC belongs to the platform.
fn require_parent_write(p: &Principal, chain: &[Uuid], id: Uuid) -> Result<()> {
    if chain.len() > 1 {
        require(
            p,
            Perm::VdcWrite,
            &Target::Vdc { chain: &chain[1..] },
            "VDC",
            id,
        )
    } else {
        require_global(p, Perm::VdcWrite)
    }
}

pub async fn vdc_create(app: &App, p: &Principal, b: VdcCreate) -> Result<Vdc> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    let (org_id, parent) = match (b.parent_id, b.org_id) {
        (Some(parent_id), org) => {
            let (parent, chain) = app
                .vdc_visible(p, parent_id)
                .await
                .map_err(|_| Error::not_found("parent VDC", parent_id))?;
            if org.is_some_and(|o| o != parent.org_id) {
                return Err(Error::invalid(
                    "org_id",
                    "differs from the parent VDC's organization",
                ));
            }
            require(
                p,
                Perm::VdcWrite,
                &Target::Vdc { chain: &chain },
                "VDC",
                parent_id,
            )?;
            (parent.org_id, Some(parent))
        }
        (None, Some(org_id)) => {
            super::orgs::org_view(app, p, org_id).await?;
            require_global(p, Perm::VdcWrite)?;
            (org_id, None)
        }
        (None, None) => {
            return Err(Error::invalid(
                "parent_id",
                "give parent_id for a child VDC or org_id for a top-level one",
            ))
        }
    };
    app.store
        .vdc_create(org_id, parent.as_ref(), &b.name, &b.description)
        .await
}

pub async fn vdc_list(app: &App, p: &Principal, q: ListParams, f: VdcFilter) -> Result<Page<Vdc>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::VdcRead);
    if vis.is_empty() {
        return Ok(Page {
            items: vec![],
            next: None,
        });
    }
    let (items, next) = app
        .store
        .vdc_list(&vis, f.org_id, f.parent_id, q.name.as_deref(), &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn vdc_view(app: &App, p: &Principal, id: Uuid) -> Result<Vdc> {
    Ok(app.vdc_visible(p, id).await?.0)
}

pub async fn vdc_update(app: &App, p: &Principal, id: Uuid, b: VdcUpdate) -> Result<Vdc> {
    let (vdc, chain) = app.vdc_visible(p, id).await?;
    if let Some(n) = &b.name {
        validate::name("name", n)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    if b.name.is_some() || b.description.is_some() {
        require(p, Perm::VdcWrite, &Target::Vdc { chain: &chain }, "VDC", id)?;
    }
    if let Some(new_parent) = b.parent_id {
        require_parent_write(p, &chain, id)?;
        let (np, np_chain) = app
            .vdc_visible(p, new_parent)
            .await
            .map_err(|_| Error::invalid("parent_id", "no such VDC"))?;
        require(
            p,
            Perm::VdcWrite,
            &Target::Vdc { chain: &np_chain },
            "VDC",
            new_parent,
        )?;
        if np.org_id != vdc.org_id {
            return Err(Error::invalid(
                "parent_id",
                "a VDC can only move within its organization",
            ));
        }
        if vdc.parent_id != Some(new_parent) {
            app.store.vdc_move(&vdc, &np).await?;
        }
    }
    if b.name.is_some() || b.description.is_some() {
        return app
            .store
            .vdc_update(id, b.name.as_deref(), b.description.as_deref())
            .await;
    }
    vdc_view(app, p, id).await
}

pub async fn vdc_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let (_, chain) = app.vdc_visible(p, id).await?;
    require_parent_write(p, &chain, id)?;
    app.store.vdc_delete(id).await?;
    app.auth.invalidate_all();
    Ok(())
}
