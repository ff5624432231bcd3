//! Authentication: passwords (argon2id), session tokens and signed access-key requests.
//!
//! Validated tokens and keys are kept in memory for `auth_cache_secs` so that checking a
//! token costs a hash and a map lookup; logout, password changes, disabling a user and grant
//! changes on this process clear the cache at once (other processes see them after the TTL).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use chrono::{NaiveDateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use stratus_api::sigv4;
use uuid::Uuid;

use crate::authz::Principal;
use crate::error::{Error, Result};
use crate::store::Store;

pub fn hash_password(pw: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("argon2: {e}")))
}

pub fn verify_password(pw: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
}

/// Random bytes as URL-safe base64.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A password that satisfies any policy up to 24 characters: upper, lower, digit, symbol.
pub fn generate_password() -> String {
    format!("St{}-9a", random_token(15))
}

/// An access key id: `AK` and 18 upper-case letters and digits.
pub fn new_access_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut buf = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    let mut id = String::from("AK");
    id.extend(
        buf.iter()
            .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char),
    );
    id
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

struct Cached {
    principal: Principal,
    /// Never trusted past the token's own expiry.
    valid_until: Instant,
}

/// An access key's principal, its bound project, and until when the pair is trusted.
type CachedKey = (Principal, Option<Uuid>, Instant);

pub struct Authenticator {
    ttl: Duration,
    tokens: Mutex<HashMap<String, Cached>>,
    /// Signatures seen within the clock-skew window: a replayed request is refused.
    seen_signatures: Mutex<HashMap<String, Instant>>,
    /// Principals of access keys used by object storage (key id → principal, key project).
    keys: Mutex<HashMap<String, CachedKey>>,
    /// When each access key's `last_used_at` was last written: at most once a minute.
    touched: Mutex<HashMap<String, Instant>>,
    max_skew: chrono::Duration,
    region: String,
    secrets: std::sync::Arc<crate::secrets::SecretBox>,
}

/// What the HTTP layer hands over for a signed request.
pub struct SignedRequest<'a> {
    pub authorization: &'a str,
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a axum::http::HeaderMap,
    pub body: &'a [u8],
    /// A streamed upload: the body is not in memory and may be signed as UNSIGNED-PAYLOAD.
    pub streaming: bool,
}

impl Authenticator {
    pub fn new(
        ttl: Duration,
        max_skew_secs: i64,
        region: String,
        secrets: std::sync::Arc<crate::secrets::SecretBox>,
    ) -> Authenticator {
        Authenticator {
            ttl,
            tokens: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            seen_signatures: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
            max_skew: chrono::Duration::seconds(max_skew_secs),
            region,
            secrets,
        }
    }

    /// Forget every cached session (after a change that may alter someone's rights).
    pub fn invalidate_all(&self) {
        if let Ok(mut t) = self.tokens.lock() {
            t.clear();
        }
        if let Ok(mut k) = self.keys.lock() {
            k.clear();
        }
    }

    /// The user behind an access key (S3 requests; the signature is checked by the S3
    /// layer), with the project the key is bound to. Cached like sessions: `None` for an
    /// unknown or disabled key or user.
    pub async fn key_principal(
        &self,
        store: &Store,
        access_key: &str,
    ) -> Result<Option<(Principal, Option<Uuid>)>> {
        if let Ok(k) = self.keys.lock() {
            if let Some((p, project, until)) = k.get(access_key) {
                if *until > Instant::now() {
                    return Ok(Some((p.clone(), *project)));
                }
            }
        }
        let Some(key) = store.access_key_get(access_key).await? else {
            return Ok(None);
        };
        if !key.key.enabled {
            return Ok(None);
        }
        let Some(p) = Self::principal_load(store, key.key.user_id, "access_key").await? else {
            return Ok(None);
        };
        if let Ok(mut k) = self.keys.lock() {
            if k.len() > 100_000 {
                k.clear();
            }
            k.insert(
                access_key.to_string(),
                (p.clone(), key.key.project_id, Instant::now() + self.ttl),
            );
        }
        Ok(Some((p, key.key.project_id)))
    }

    pub fn invalidate_token(&self, hash: &str) {
        if let Ok(mut t) = self.tokens.lock() {
            t.remove(hash);
        }
    }

    pub async fn principal_load(
        store: &Store,
        user_id: Uuid,
        method: &'static str,
    ) -> Result<Option<Principal>> {
        let Some(user) = store.user_get(user_id).await? else {
            return Ok(None);
        };
        if !user.user.enabled {
            return Ok(None);
        }
        let grants = store.grant_refs_for_user(user_id).await?;
        Ok(Some(Principal {
            user_id,
            name: user.user.name,
            vdc_id: user.user.vdc_id,
            grants,
            auth_method: method,
        }))
    }

    pub async fn bearer(&self, store: &Store, token: &str) -> Result<Principal> {
        let hash = token_hash(token);
        if let Ok(t) = self.tokens.lock() {
            if let Some(c) = t.get(&hash) {
                if c.valid_until > Instant::now() {
                    return Ok(c.principal.clone());
                }
            }
        }
        let unauth = || {
            Error::Unauthenticated("the token is invalid, expired or revoked; log in again".into())
        };
        let session = store.token_get(&hash).await?.ok_or_else(unauth)?;
        let now = Utc::now();
        if session.revoked || session.expires_at <= now {
            return Err(unauth());
        }
        let principal = Self::principal_load(store, session.user_id, "token")
            .await?
            .ok_or_else(unauth)?;
        let left = (session.expires_at - now).to_std().unwrap_or_default();
        if let Ok(mut t) = self.tokens.lock() {
            if t.len() > 100_000 {
                t.clear();
            }
            t.insert(
                hash,
                Cached {
                    principal: principal.clone(),
                    valid_until: Instant::now() + self.ttl.min(left),
                },
            );
        }
        Ok(principal)
    }

    /// Verify an `AWS4-HMAC-SHA256` signed request against the key's secret.
    pub async fn signed(&self, store: &Store, r: SignedRequest<'_>) -> Result<(Principal, String)> {
        let unauth = |m: &str| Error::Unauthenticated(m.to_string());
        let auth = sigv4::parse_authorization(r.authorization).map_err(|m| unauth(&m))?;
        if auth.service != "stratus" {
            return Err(unauth(
                "authorization: the credential scope's service must be \"stratus\"",
            ));
        }
        if auth.region != self.region {
            return Err(unauth(&format!(
                "authorization: the credential scope's region must be {:?}",
                self.region
            )));
        }
        for required in ["host", "x-amz-date", "x-amz-content-sha256"] {
            if !auth.signed_headers.iter().any(|h| h == required) {
                return Err(unauth(&format!(
                    "authorization: SignedHeaders must include {required}"
                )));
            }
        }
        let header = |name: &str| r.headers.get(name).and_then(|v| v.to_str().ok());
        let amz_date =
            header("x-amz-date").ok_or_else(|| unauth("x-amz-date: header is missing"))?;
        let when = NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
            .map_err(|_| unauth("x-amz-date: must look like 20260101T120000Z"))?
            .and_utc();
        if (Utc::now() - when).abs() > self.max_skew {
            return Err(unauth(
                "x-amz-date: the request time is too far from the server's clock",
            ));
        }
        if !amz_date.starts_with(&auth.date) {
            return Err(unauth(
                "authorization: the credential date does not match x-amz-date",
            ));
        }
        let claimed = header("x-amz-content-sha256")
            .ok_or_else(|| unauth("x-amz-content-sha256: header is missing"))?;
        // Streamed uploads are not hashed up front; they carry their own checksum.
        let unsigned = r.streaming && claimed == "UNSIGNED-PAYLOAD";
        if !unsigned && claimed != sigv4::sha256_hex(r.body) {
            return Err(unauth("x-amz-content-sha256: does not match the body"));
        }
        let mut signed = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            let v = header(name).ok_or_else(|| {
                unauth(&format!("authorization: signed header {name} is missing"))
            })?;
            signed.push((name.clone(), v.to_string()));
        }
        let key = store
            .access_key_get(&auth.access_key)
            .await?
            .filter(|k| k.key.enabled)
            .ok_or_else(|| unauth("the access key does not exist or is disabled"))?;
        let req = sigv4::Request {
            method: r.method,
            raw_path: r.raw_path,
            raw_query: r.raw_query,
            headers: signed,
            payload_hash: claimed,
        };
        let secret = self.secrets.unseal(&key.secret)?;
        let expected = sigv4::signature(&secret, amz_date, &auth.region, &auth.service, &req);
        if !sigv4::signatures_equal(&expected, &auth.signature) {
            return Err(unauth("the request signature does not match"));
        }
        self.remember_signature(&auth.signature)?;
        let principal = Self::principal_load(store, key.key.user_id, "access_key")
            .await?
            .ok_or_else(|| unauth("the access key's user is disabled"))?;
        Ok((principal, key.key.id))
    }

    /// Whether to record this key's use now (the first use, then at most once a minute).
    pub fn should_touch(&self, key: &str) -> bool {
        let now = Instant::now();
        let Ok(mut t) = self.touched.lock() else {
            return false;
        };
        match t.get(key) {
            Some(at) if now.duration_since(*at) < Duration::from_secs(60) => false,
            _ => {
                t.insert(key.to_string(), now);
                true
            }
        }
    }

    fn remember_signature(&self, sig: &str) -> Result<()> {
        let now = Instant::now();
        let keep = self.max_skew.to_std().unwrap_or(Duration::from_secs(900)) * 2;
        let mut seen = self
            .seen_signatures
            .lock()
            .map_err(|_| Error::internal("signature cache poisoned"))?;
        if seen.len() > 10_000 {
            seen.retain(|_, t| now.duration_since(*t) < keep);
        }
        if seen
            .insert(sig.to_string(), now)
            .is_some_and(|t| now.duration_since(t) < keep)
        {
            return Err(Error::Unauthenticated(
                "this signed request was already used (replay)".into(),
            ));
        }
        Ok(())
    }
}
