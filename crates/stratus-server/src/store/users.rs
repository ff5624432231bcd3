use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use stratus_api::User;
use uuid::Uuid;

use super::{
    col_bool, col_i64, col_opt_time, col_opt_uuid, col_str, col_time, col_uuid,
    is_unique_violation, like_contains, now_text, time_text, Arg, Conds, Paging, Store, NAME_LIKE,
};
use crate::authz::Visibility;
use crate::error::{Error, Result};

const COLS: &str =
    "id, name, display_name, email, description, vdc_id, password_hash, enabled, failed_logins, \
                    locked_until, last_login_at, password_changed_at, created_at, updated_at";

/// A user with the fields only the server sees.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub user: User,
    pub password_hash: String,
    pub failed_logins: i64,
    pub locked_until: Option<DateTime<Utc>>,
}

fn user_from_row(row: &AnyRow) -> Result<UserRow> {
    let locked_until = col_opt_time(row, "locked_until")?;
    Ok(UserRow {
        user: User {
            id: col_uuid(row, "id")?,
            name: col_str(row, "name")?,
            display_name: col_str(row, "display_name")?,
            email: col_str(row, "email")?,
            description: col_str(row, "description")?,
            vdc_id: col_opt_uuid(row, "vdc_id")?,
            enabled: col_bool(row, "enabled")?,
            locked: locked_until.is_some_and(|t| t > Utc::now()),
            last_login_at: col_opt_time(row, "last_login_at")?,
            password_changed_at: col_time(row, "password_changed_at")?,
            created_at: col_time(row, "created_at")?,
            updated_at: col_time(row, "updated_at")?,
        },
        password_hash: col_str(row, "password_hash")?,
        failed_logins: col_i64(row, "failed_logins")?,
        locked_until,
    })
}

pub struct NewUser<'a> {
    pub name: &'a str,
    pub password_hash: &'a str,
    pub vdc_id: Option<Uuid>,
    pub display_name: &'a str,
    pub email: &'a str,
    pub description: &'a str,
}

impl Store {
    pub async fn user_create(&self, u: NewUser<'_>) -> Result<User> {
        let id = Uuid::new_v4();
        let now = now_text();
        sqlx::query(
            "INSERT INTO users (id, name, display_name, email, description, vdc_id, password_hash, enabled,
                                failed_logins, password_changed_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 0, $8, $8, $8)",
        )
        .bind(id.to_string())
        .bind(u.name)
        .bind(u.display_name)
        .bind(u.email)
        .bind(u.description)
        .bind(u.vdc_id.map(|v| v.to_string()))
        .bind(u.password_hash)
        .bind(&now)
        .execute(&self.db.write)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("name: a user named {:?} already exists", u.name))
            } else {
                e.into()
            }
        })?;
        Ok(self
            .user_get(id)
            .await?
            .ok_or_else(|| Error::internal("user vanished after insert"))?
            .user)
    }

    pub async fn user_get(&self, id: Uuid) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM users WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_get_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_count(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(&self.db.read)
            .await?;
        Ok(n)
    }

    /// Users visible under `vis`: those of VDCs in its subtrees (platform staff, who have no
    /// VDC, only with a platform-wide grant).
    pub async fn user_list(
        &self,
        vis: &Visibility,
        vdc_id: Option<Uuid>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<User>, Option<String>)> {
        let mut c = Conds::new();
        super::vdcs::vdc_visible(&mut c, "vdc_id", vis);
        if let Some(v) = vdc_id {
            c.and("vdc_id = ?", [Arg::from(v)]);
        }
        if let Some(n) = name {
            c.and(NAME_LIKE, [like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(&format!("SELECT {COLS} FROM users"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(|r| user_from_row(r).map(|u| u.user))
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    pub async fn user_update(
        &self,
        id: Uuid,
        display_name: Option<&str>,
        email: Option<&str>,
        description: Option<&str>,
        enabled: Option<bool>,
    ) -> Result<User> {
        let cur = self
            .user_get(id)
            .await?
            .ok_or_else(|| Error::not_found("user", id))?
            .user;
        let mut tx = self.db.write.begin().await?;
        sqlx::query("UPDATE users SET display_name = $1, email = $2, description = $3, enabled = $4, updated_at = $5 WHERE id = $6")
            .bind(display_name.unwrap_or(&cur.display_name))
            .bind(email.unwrap_or(&cur.email))
            .bind(description.unwrap_or(&cur.description))
            .bind(enabled.unwrap_or(cur.enabled) as i64)
            .bind(now_text())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if enabled == Some(false) {
            sqlx::query("UPDATE tokens SET revoked = 1 WHERE user_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(self
            .user_get(id)
            .await?
            .ok_or_else(|| Error::not_found("user", id))?
            .user)
    }

    /// Set a new password hash, clear any lockout and revoke every session of the user.
    pub async fn user_set_password(&self, id: Uuid, password_hash: &str) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let now = now_text();
        sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2, updated_at = $2, failed_logins = 0, locked_until = NULL WHERE id = $3")
            .bind(password_hash)
            .bind(&now)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE tokens SET revoked = 1 WHERE user_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn user_unlock(&self, id: Uuid) -> Result<()> {
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL, updated_at = $1 WHERE id = $2")
            .bind(now_text())
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// Count a failed login; lock the account when `max_failures` is reached. Returns true if now locked.
    pub async fn user_login_failed(
        &self,
        id: Uuid,
        max_failures: i64,
        lock_until: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.db.write.begin().await?;
        sqlx::query("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let (n,): (i64,) = sqlx::query_as("SELECT failed_logins FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let locked = n >= max_failures;
        if locked {
            sqlx::query("UPDATE users SET locked_until = $1, failed_logins = 0 WHERE id = $2")
                .bind(time_text(lock_until))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(locked)
    }

    pub async fn user_login_succeeded(&self, id: Uuid) -> Result<()> {
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = $1 WHERE id = $2")
            .bind(now_text())
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// Delete a user with their grants, sessions and access keys (the audit log keeps their name).
    pub async fn user_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let sid = id.to_string();
        for table in ["grants", "tokens", "access_keys"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(&sid)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("user", id));
        }
        tx.commit().await?;
        Ok(())
    }
}
