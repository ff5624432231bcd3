use chrono::{Duration, Utc};
use stratus_api::{LoginRequest, LoginResponse, PasswordChange, PasswordPolicy, WhoAmI};

use super::{require_global, App};
use crate::auth::{hash_password, random_token, token_hash, verify_password};
use crate::authz::{Perm, Principal};
use crate::error::{Error, Result};
use crate::validate;

/// A real hash to verify against when the name is unknown.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

/// Log in with a password. Every wrong password counts toward the lockout; a locked or
/// disabled account is refused even with the right password, and the message never says
/// whether the name exists.
pub async fn login(app: &App, b: LoginRequest) -> Result<LoginResponse> {
    let bad = || Error::Unauthenticated("wrong user name or password".into());
    let policy = app.store.password_policy_get().await?;
    let Some(row) = app.store.user_get_by_name(&b.name).await? else {
        // Spend the same time as a real check so names cannot be probed by timing.
        let _ = verify_password(&b.password, dummy_hash());
        return Err(bad());
    };
    if row.user.locked {
        return Err(Error::AccountLocked(format!(
            "the account is locked after repeated failed logins until {}",
            row.locked_until.map(|t| t.to_rfc3339()).unwrap_or_default()
        )));
    }
    if !verify_password(&b.password, &row.password_hash) {
        let until = Utc::now() + Duration::minutes(policy.lockout_minutes as i64);
        if app
            .store
            .user_login_failed(row.user.id, policy.max_failed_logins as i64, until)
            .await?
        {
            return Err(Error::AccountLocked(format!(
                "too many failed logins: the account is locked for {} minutes",
                policy.lockout_minutes
            )));
        }
        return Err(bad());
    }
    if !row.user.enabled {
        return Err(Error::Unauthenticated("the account is disabled".into()));
    }
    app.store.user_login_succeeded(row.user.id).await?;
    let token = format!("st_{}", random_token(32));
    let expires_at = Utc::now() + Duration::minutes(policy.session_minutes as i64);
    app.store
        .token_create(&token_hash(&token), row.user.id, expires_at)
        .await?;
    let user = app
        .store
        .user_get(row.user.id)
        .await?
        .ok_or_else(|| Error::internal("user vanished at login"))?
        .user;
    Ok(LoginResponse {
        token,
        expires_at,
        user,
    })
}

pub async fn logout(app: &App, token: Option<&str>) -> Result<()> {
    let Some(token) = token else {
        return Err(Error::invalid(
            "authorization",
            "logout needs the session token (access keys have no session)",
        ));
    };
    let hash = token_hash(token);
    app.store.token_revoke(&hash).await?;
    app.auth.invalidate_token(&hash);
    Ok(())
}

pub async fn whoami(app: &App, p: &Principal) -> Result<WhoAmI> {
    let user = app
        .store
        .user_get(p.user_id)
        .await?
        .ok_or_else(|| Error::Unauthenticated("the user no longer exists".into()))?
        .user;
    let grants = app
        .store
        .grant_list(&Default::default(), p.user_id, Some(p.user_id), None)
        .await?;
    Ok(WhoAmI {
        user,
        grants,
        auth_method: p.auth_method.to_string(),
    })
}

pub async fn password_change(app: &App, p: &Principal, b: PasswordChange) -> Result<()> {
    let row = app
        .store
        .user_get(p.user_id)
        .await?
        .ok_or_else(|| Error::Unauthenticated("the user no longer exists".into()))?;
    if !verify_password(&b.current_password, &row.password_hash) {
        return Err(Error::invalid("current_password", "is wrong"));
    }
    if b.current_password == b.new_password {
        return Err(Error::invalid(
            "new_password",
            "must differ from the current password",
        ));
    }
    let policy = app.store.password_policy_get().await?;
    validate::password("new_password", &b.new_password, &policy, &row.user.name)?;
    app.store
        .user_set_password(p.user_id, &hash_password(&b.new_password)?)
        .await?;
    app.auth.invalidate_all();
    Ok(())
}

pub async fn policy_view(app: &App) -> Result<PasswordPolicy> {
    app.store.password_policy_get().await
}

pub async fn policy_update(app: &App, p: &Principal, b: PasswordPolicy) -> Result<PasswordPolicy> {
    require_global(p, Perm::PolicyWrite)?;
    validate::policy(&b)?;
    app.store.password_policy_put(&b).await?;
    Ok(b)
}
