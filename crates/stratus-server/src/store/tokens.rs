use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{now_text, parse_time, time_text, Store};
use crate::error::Result;

/// A session as stored: only the token's SHA-256 is kept, never the token.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
}

impl Store {
    pub async fn token_create(
        &self,
        token_hash: &str,
        user_id: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("INSERT INTO tokens (token_hash, user_id, created_at, expires_at, revoked) VALUES ($1, $2, $3, $4, 0)")
            .bind(token_hash)
            .bind(user_id.to_string())
            .bind(now_text())
            .bind(time_text(expires_at))
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    pub async fn token_get(&self, token_hash: &str) -> Result<Option<SessionRow>> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT user_id, expires_at, revoked FROM tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.db.read)
                .await?;
        let Some((user, exp, revoked)) = row else {
            return Ok(None);
        };
        Ok(Some(SessionRow {
            user_id: Uuid::parse_str(&user)
                .map_err(|e| crate::error::Error::internal(format!("tokens.user_id: {e}")))?,
            expires_at: parse_time(&exp)?,
            revoked: revoked != 0,
        }))
    }

    pub async fn token_revoke(&self, token_hash: &str) -> Result<()> {
        sqlx::query("UPDATE tokens SET revoked = 1 WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// Drop sessions that expired more than a day ago.
    pub async fn token_prune(&self) -> Result<u64> {
        let cutoff = time_text(Utc::now() - chrono::Duration::days(1));
        let done = sqlx::query("DELETE FROM tokens WHERE expires_at < $1")
            .bind(cutoff)
            .execute(&self.db.write)
            .await?;
        Ok(done.rows_affected())
    }
}
