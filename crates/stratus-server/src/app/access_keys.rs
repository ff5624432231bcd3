use stratus_api::{AccessKey, AccessKeyCreate, AccessKeyCreated, AccessKeyFilter, AccessKeyUpdate};

use super::{require_global, App};
use crate::auth::{new_access_key_id, random_token};
use crate::authz::{Perm, Principal};
use crate::error::{Error, Result};
use crate::validate;

/// Keys a user may hold at once (rotation needs two; a few more for separate programs).
pub const MAX_KEYS_PER_USER: usize = 5;

/// A key the caller owns, or any key for the security administrator.
async fn key_visible(app: &App, p: &Principal, id: &str) -> Result<AccessKey> {
    match app.store.access_key_get(id).await? {
        Some(k) if k.key.user_id == p.user_id || p.has_global(Perm::AccessKeyAdmin) => Ok(k.key),
        _ => Err(Error::not_found("access key", id)),
    }
}

pub async fn access_key_create(
    app: &App,
    p: &Principal,
    b: AccessKeyCreate,
) -> Result<AccessKeyCreated> {
    validate::description("description", &b.description)?;
    if app.store.access_key_list(Some(p.user_id)).await?.len() >= MAX_KEYS_PER_USER {
        return Err(Error::conflict(format!(
            "you already have {MAX_KEYS_PER_USER} access keys; delete one first"
        )));
    }
    if let Some(pid) = b.project_id {
        let (_, chain) = app
            .project_visible(p, pid)
            .await
            .map_err(|_| Error::not_found("project", pid))?;
        super::require(
            p,
            Perm::ResourceWrite,
            &crate::authz::Target::Project {
                id: pid,
                chain: &chain,
            },
            "project",
            pid,
        )?;
    }
    let id = new_access_key_id();
    let secret = random_token(30);
    let key = app
        .store
        .access_key_create(
            &id,
            p.user_id,
            &app.secrets.seal(&secret)?,
            &b.description,
            b.project_id,
        )
        .await?;
    Ok(AccessKeyCreated {
        access_key: key,
        secret_access_key: secret,
    })
}

pub async fn access_key_list(
    app: &App,
    p: &Principal,
    f: AccessKeyFilter,
) -> Result<Vec<AccessKey>> {
    match f.user_id {
        Some(u) if u != p.user_id => {
            require_global(p, Perm::AccessKeyAdmin)?;
            app.store.access_key_list(Some(u)).await
        }
        _ => app.store.access_key_list(Some(p.user_id)).await,
    }
}

pub async fn access_key_update(
    app: &App,
    p: &Principal,
    id: &str,
    b: AccessKeyUpdate,
) -> Result<AccessKey> {
    key_visible(app, p, id).await?;
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    let k = app
        .store
        .access_key_update(id, b.enabled, b.description.as_deref())
        .await?;
    app.auth.invalidate_all();
    Ok(k)
}

pub async fn access_key_delete(app: &App, p: &Principal, id: &str) -> Result<()> {
    key_visible(app, p, id).await?;
    app.store.access_key_delete(id).await?;
    app.auth.invalidate_all();
    Ok(())
}
