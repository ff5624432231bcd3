use stratus_api::PasswordPolicy;

use super::Store;
use crate::error::{Error, Result};

const PASSWORD_POLICY: &str = "password_policy";

impl Store {
    pub async fn setting_get(&self, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.db.read)
            .await?;
        Ok(row.map(|(v,)| v))
    }

    pub async fn setting_put(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    pub async fn password_policy_get(&self) -> Result<PasswordPolicy> {
        match self.setting_get(PASSWORD_POLICY).await? {
            None => Ok(PasswordPolicy::default()),
            Some(v) => serde_json::from_str(&v)
                .map_err(|e| Error::internal(format!("stored password policy: {e}"))),
        }
    }

    pub async fn password_policy_put(&self, p: &PasswordPolicy) -> Result<()> {
        let v = serde_json::to_string(p).map_err(|e| Error::internal(e.to_string()))?;
        self.setting_put(PASSWORD_POLICY, &v).await
    }
}
