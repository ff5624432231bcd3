//! Secrets at rest. Access-key secrets must be readable by the server (HMAC verification
//! needs them), so they are sealed with ChaCha20-Poly1305 under a master key that lives in
//! a file outside the store: a copy of the database alone reveals no secret.

use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

use crate::error::{Error, Result};

const PREFIX: &str = "v1:";

pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl SecretBox {
    /// Load the 32-byte master key, creating it (mode 0600, written atomically) on first use.
    pub fn open_or_create(path: &Path) -> anyhow::Result<SecretBox> {
        let key = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, &key)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
                }
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, path)?;
                key
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "master_key_file: cannot read {}: {e}",
                    path.display()
                ))
            }
        };
        anyhow::ensure!(
            key.len() == 32,
            "master_key_file: {} must hold exactly 32 bytes",
            path.display()
        );
        Ok(SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    pub fn seal(&self, plaintext: &str) -> Result<String> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .map_err(|_| Error::internal("cannot seal a secret"))?;
        let mut out = nonce.to_vec();
        out.extend(ct);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    pub fn unseal(&self, stored: &str) -> Result<String> {
        let raw = stored
            .strip_prefix(PREFIX)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|r| r.len() > 12)
            .ok_or_else(|| Error::internal("stored secret is not sealed"))?;
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(&raw[..12]), &raw[12..])
            .map_err(|_| Error::internal("stored secret does not open with this master key"))?;
        String::from_utf8(pt).map_err(|_| Error::internal("stored secret is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_the_same_key() {
        let dir = std::env::temp_dir().join(format!("stratus-secret-{}", uuid::Uuid::new_v4()));
        let a = SecretBox::open_or_create(&dir.join("a.key")).unwrap();
        let sealed = a.seal("s3cr3t").unwrap();
        assert!(sealed.starts_with("v1:") && !sealed.contains("s3cr3t"));
        assert_eq!(a.unseal(&sealed).unwrap(), "s3cr3t");
        let again = SecretBox::open_or_create(&dir.join("a.key")).unwrap();
        assert_eq!(
            again.unseal(&sealed).unwrap(),
            "s3cr3t",
            "the key file persists"
        );
        let b = SecretBox::open_or_create(&dir.join("b.key")).unwrap();
        assert!(b.unseal(&sealed).is_err());
        assert!(a.unseal("plain").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
