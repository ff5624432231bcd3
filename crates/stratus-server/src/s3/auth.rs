//! Secret keys for SigV4 verification: Stratus access keys, sealed at rest.

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

use crate::app::AppRef;

pub struct KeyAuth {
    pub app: AppRef,
}

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let key = self
            .app
            .store
            .access_key_get(access_key)
            .await
            .map_err(|e| s3_error!(InternalError, "looking up the access key: {e}"))?
            .filter(|k| k.key.enabled)
            .ok_or_else(|| s3_error!(InvalidAccessKeyId))?;
        let secret =
            self.app.secrets.unseal(&key.secret).map_err(|_| {
                s3_error!(InternalError, "the access key's secret cannot be opened")
            })?;
        if self.app.auth.should_touch(access_key) {
            let store = self.app.store.clone();
            let ak = access_key.to_string();
            tokio::spawn(async move {
                if let Err(e) = store.access_key_touch(&ak).await {
                    tracing::debug!(error = %e, "cannot record access key use");
                }
            });
        }
        Ok(SecretKey::from(secret))
    }
}
