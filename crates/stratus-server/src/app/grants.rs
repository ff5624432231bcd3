use stratus_api::{Grant, GrantCreate, GrantFilter, Role, ScopeType};
use uuid::Uuid;

use super::{require, require_global, App};
use crate::authz::{self, Perm, Principal, Target, SEPARATED_ROLES};
use crate::error::{Error, Result};

pub fn role_list() -> Vec<Role> {
    authz::ROLES.iter().map(authz::role_view).collect()
}

/// Check `perm` on the scope a grant is (or would be) on.
async fn require_on_scope(
    app: &App,
    p: &Principal,
    perm: Perm,
    scope_type: ScopeType,
    scope_id: Option<Uuid>,
) -> Result<()> {
    match (scope_type, scope_id) {
        (ScopeType::Platform, _) => require_global(p, perm),
        (ScopeType::Vdc, Some(id)) => {
            let (_, chain) = app.vdc_visible(p, id).await?;
            require(p, perm, &Target::Vdc { chain: &chain }, "VDC", id)
        }
        (ScopeType::Project, Some(id)) => {
            let (_, chain) = app.project_visible(p, id).await?;
            require(
                p,
                perm,
                &Target::Project { id, chain: &chain },
                "project",
                id,
            )
        }
        (_, None) => Err(Error::invalid(
            "scope_id",
            "is required for vdc and project scopes",
        )),
    }
}

pub async fn grant_create(app: &App, p: &Principal, b: GrantCreate) -> Result<Grant> {
    let role = authz::role(&b.role).ok_or_else(|| {
        let names: Vec<&str> = authz::ROLES.iter().map(|r| r.name).collect();
        Error::invalid("role", &format!("must be one of {}", names.join(", ")))
    })?;
    if !role.scopes.contains(&b.scope_type) {
        let allowed: Vec<&str> = role.scopes.iter().map(|s| s.as_str()).collect();
        return Err(Error::invalid(
            "scope_type",
            &format!(
                "role {} can only be granted on {}",
                role.name,
                allowed.join(" or ")
            ),
        ));
    }
    match (b.scope_type, b.scope_id) {
        (ScopeType::Platform, Some(_)) => {
            return Err(Error::invalid(
                "scope_id",
                "must be absent for the platform scope",
            ))
        }
        (ScopeType::Vdc | ScopeType::Project, None) => {
            return Err(Error::invalid(
                "scope_id",
                "is required for vdc and project scopes",
            ))
        }
        _ => {}
    }
    let user = super::users::user_view(app, p, b.user_id).await?;
    require_on_scope(app, p, Perm::GrantWrite, b.scope_type, b.scope_id).await?;
    if b.user_id == p.user_id {
        return Err(Error::forbidden("you may not grant roles to yourself"));
    }
    if b.scope_type == ScopeType::Platform {
        if user.vdc_id.is_some() {
            return Err(Error::invalid(
                "user_id",
                "platform roles are only for platform staff (users without a VDC)",
            ));
        }
        let held = app
            .store
            .grant_list(
                &crate::authz::Visibility {
                    all: true,
                    ..Default::default()
                },
                p.user_id,
                Some(b.user_id),
                None,
            )
            .await?;
        if let Some(other) = held
            .iter()
            .find(|g| SEPARATED_ROLES.contains(&g.role.as_str()) && g.role != b.role)
        {
            if SEPARATED_ROLES.contains(&b.role.as_str()) {
                return Err(Error::conflict(format!(
                    "separation of duties: the user already holds {}, which excludes {}",
                    other.role, b.role
                )));
            }
        }
    }
    let g = app
        .store
        .grant_create(b.user_id, role.name, b.scope_type, b.scope_id)
        .await?;
    app.auth.invalidate_all();
    Ok(g)
}

pub async fn grant_list(app: &App, p: &Principal, f: GrantFilter) -> Result<Vec<Grant>> {
    let vis = p.visibility(Perm::GrantRead);
    app.store
        .grant_list(&vis, p.user_id, f.user_id, f.scope_id)
        .await
}

pub async fn grant_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let g = app
        .store
        .grant_get(id)
        .await?
        .ok_or_else(|| Error::not_found("grant", id))?;
    let seen = g.user_id == p.user_id
        || require_on_scope(app, p, Perm::GrantRead, g.scope_type, g.scope_id)
            .await
            .is_ok();
    if !seen {
        return Err(Error::not_found("grant", id));
    }
    require_on_scope(app, p, Perm::GrantWrite, g.scope_type, g.scope_id).await?;
    if g.user_id == p.user_id {
        return Err(Error::forbidden("you may not change your own grants"));
    }
    app.store.grant_delete(id).await?;
    app.auth.invalidate_all();
    Ok(())
}
