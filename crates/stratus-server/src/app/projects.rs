use stratus_api::{ListParams, Page, Project, ProjectCreate, ProjectFilter, ProjectUpdate};
use uuid::Uuid;

use super::{require, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::Paging;
use crate::validate;

const SORTABLE: &[&str] = &["created_at", "name"];

pub async fn project_create(app: &App, p: &Principal, b: ProjectCreate) -> Result<Project> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    let (vdc, chain) = app
        .vdc_visible(p, b.vdc_id)
        .await
        .map_err(|_| Error::not_found("VDC", b.vdc_id))?;
    require(
        p,
        Perm::ProjectWrite,
        &Target::Vdc { chain: &chain },
        "VDC",
        b.vdc_id,
    )?;
    app.store
        .project_create(vdc.org_id, vdc.id, &b.name, &b.description)
        .await
}

pub async fn project_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: ProjectFilter,
) -> Result<Page<Project>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ProjectRead);
    if vis.is_empty() {
        return Ok(Page {
            items: vec![],
            next: None,
        });
    }
    let (items, next) = app
        .store
        .project_list(&vis, f.vdc_id, f.org_id, q.name.as_deref(), &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn project_view(app: &App, p: &Principal, id: Uuid) -> Result<Project> {
    Ok(app.project_visible(p, id).await?.0)
}

pub async fn project_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: ProjectUpdate,
) -> Result<Project> {
    let (_, chain) = app.project_visible(p, id).await?;
    require(
        p,
        Perm::ProjectWrite,
        &Target::Project { id, chain: &chain },
        "project",
        id,
    )?;
    if let Some(n) = &b.name {
        validate::name("name", n)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    app.store
        .project_update(id, b.name.as_deref(), b.description.as_deref())
        .await
}

pub async fn project_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let (_, chain) = app.project_visible(p, id).await?;
    require(
        p,
        Perm::ProjectWrite,
        &Target::Project { id, chain: &chain },
        "project",
        id,
    )?;
    app.store.project_delete(id).await?;
    app.auth.invalidate_all();
    Ok(())
}
