use stratus_api::{ListParams, Organization, OrganizationCreate, OrganizationUpdate, Page};
use uuid::Uuid;

use super::{require_global, App};
use crate::authz::{Perm, Principal};
use crate::error::{Error, Result};
use crate::store::Paging;
use crate::validate;

const SORTABLE: &[&str] = &["created_at", "name"];

fn visible(p: &Principal, org: Uuid) -> bool {
    let v = p.visibility(Perm::OrgRead);
    v.all || v.orgs.contains(&org)
}

pub async fn org_create(app: &App, p: &Principal, b: OrganizationCreate) -> Result<Organization> {
    require_global(p, Perm::OrgWrite)?;
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    app.store.org_create(&b.name, &b.description).await
}

pub async fn org_list(app: &App, p: &Principal, q: ListParams) -> Result<Page<Organization>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let v = p.visibility(Perm::OrgRead);
    let only = (!v.all).then_some(v.orgs.as_slice());
    let (items, next) = app.store.org_list(only, q.name.as_deref(), &paging).await?;
    Ok(Page { items, next })
}

pub async fn org_view(app: &App, p: &Principal, id: Uuid) -> Result<Organization> {
    match app.store.org_get(id).await? {
        Some(o) if visible(p, id) => Ok(o),
        _ => Err(Error::not_found("organization", id)),
    }
}

pub async fn org_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: OrganizationUpdate,
) -> Result<Organization> {
    org_view(app, p, id).await?;
    require_global(p, Perm::OrgWrite)?;
    if let Some(n) = &b.name {
        validate::name("name", n)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    app.store
        .org_update(id, b.name.as_deref(), b.description.as_deref())
        .await
}

pub async fn org_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    org_view(app, p, id).await?;
    require_global(p, Perm::OrgWrite)?;
    app.store.org_delete(id).await
}
