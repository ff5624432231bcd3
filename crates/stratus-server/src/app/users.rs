use stratus_api::{ListParams, Page, PasswordReset, User, UserCreate, UserFilter, UserUpdate};
use uuid::Uuid;

use super::{require, require_global, App};
use crate::auth::hash_password;
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::{NewUser, Paging};
use crate::validate;

const SORTABLE: &[&str] = &["created_at", "name"];

/// Check `perm` on a user: platform staff (no VDC) need it platform-wide, others on their VDC.
/// Everyone may see themselves.
async fn require_on_user(app: &App, p: &Principal, perm: Perm, user: &User) -> Result<()> {
    match user.vdc_id {
        None if p.has_global(perm) => Ok(()),
        None if p.user_id == user.id || p.has_global(Perm::UserRead) => {
            Err(Error::forbidden(format!(
                "you may not do this to user {} (needs {})",
                user.id,
                perm.as_str()
            )))
        }
        None => Err(Error::not_found("user", user.id)),
        Some(vdc) => {
            let chain = app.store.vdc_chain(vdc).await?;
            if p.user_id == user.id && perm == Perm::UserRead {
                return Ok(());
            }
            require(p, perm, &Target::Vdc { chain: &chain }, "user", user.id)
        }
    }
}

async fn user_visible(app: &App, p: &Principal, id: Uuid) -> Result<User> {
    let user = app
        .store
        .user_get(id)
        .await?
        .ok_or_else(|| Error::not_found("user", id))?
        .user;
    if p.user_id != id {
        require_on_user(app, p, Perm::UserRead, &user).await?;
    }
    Ok(user)
}

async fn user_writable(app: &App, p: &Principal, id: Uuid, action: &str) -> Result<User> {
    let user = user_visible(app, p, id).await?;
    if p.user_id == id {
        return Err(Error::forbidden(format!(
            "you may not {action} your own account"
        )));
    }
    require_on_user(app, p, Perm::UserWrite, &user).await?;
    Ok(user)
}

pub async fn user_create(app: &App, p: &Principal, b: UserCreate) -> Result<User> {
    validate::login_name("name", &b.name)?;
    validate::description("display_name", &b.display_name)?;
    validate::email("email", &b.email)?;
    validate::description("description", &b.description)?;
    match b.vdc_id {
        Some(vdc) => {
            let (_, chain) = app
                .vdc_visible(p, vdc)
                .await
                .map_err(|_| Error::not_found("VDC", vdc))?;
            require(
                p,
                Perm::UserWrite,
                &Target::Vdc { chain: &chain },
                "VDC",
                vdc,
            )?;
        }
        None => require_global(p, Perm::UserWrite)?,
    }
    let policy = app.store.password_policy_get().await?;
    validate::password("password", &b.password, &policy, &b.name)?;
    let hash = hash_password(&b.password)?;
    app.store
        .user_create(NewUser {
            name: &b.name,
            password_hash: &hash,
            vdc_id: b.vdc_id,
            display_name: &b.display_name,
            email: &b.email,
            description: &b.description,
        })
        .await
}

pub async fn user_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: UserFilter,
) -> Result<Page<User>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::UserRead);
    if vis.is_empty() {
        return Ok(Page {
            items: vec![],
            next: None,
        });
    }
    let (items, next) = app
        .store
        .user_list(&vis, f.vdc_id, q.name.as_deref(), &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn user_view(app: &App, p: &Principal, id: Uuid) -> Result<User> {
    user_visible(app, p, id).await
}

pub async fn user_update(app: &App, p: &Principal, id: Uuid, b: UserUpdate) -> Result<User> {
    if b.enabled.is_some() {
        user_writable(app, p, id, "disable or enable").await?;
    } else if p.user_id != id {
        user_writable(app, p, id, "change").await?;
    }
    if let Some(d) = &b.display_name {
        validate::description("display_name", d)?;
    }
    if let Some(e) = &b.email {
        validate::email("email", e)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    let user = app
        .store
        .user_update(
            id,
            b.display_name.as_deref(),
            b.email.as_deref(),
            b.description.as_deref(),
            b.enabled,
        )
        .await?;
    app.auth.invalidate_all();
    Ok(user)
}

pub async fn user_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    user_writable(app, p, id, "delete").await?;
    app.store.user_delete(id).await?;
    app.auth.invalidate_all();
    Ok(())
}

pub async fn user_password_reset(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: PasswordReset,
) -> Result<()> {
    let user = user_writable(app, p, id, "reset the password of").await?;
    let policy = app.store.password_policy_get().await?;
    validate::password("password", &b.password, &policy, &user.name)?;
    app.store
        .user_set_password(id, &hash_password(&b.password)?)
        .await?;
    app.auth.invalidate_all();
    Ok(())
}

pub async fn user_unlock(app: &App, p: &Principal, id: Uuid) -> Result<User> {
    user_writable(app, p, id, "unlock").await?;
    app.store.user_unlock(id).await?;
    user_visible(app, p, id).await
}
