//! Where the CLI finds its endpoint and credentials: flags, then `STRATUS_*` environment
//! variables, then `~/.config/stratus/config.toml` (or `$STRATUS_CONFIG`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::client::Auth;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub region: Option<String>,
}

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

pub fn path() -> PathBuf {
    if let Ok(p) = std::env::var("STRATUS_CONFIG") {
        return PathBuf::from(p);
    }
    let base = std::env::var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".config")
        });
    base.join("stratus").join("config.toml")
}

impl Settings {
    pub fn load() -> anyhow::Result<Settings> {
        let p = path();
        let mut s = match std::fs::read_to_string(&p) {
            Ok(text) => {
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
            }
            Err(_) => Settings::default(),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        s.endpoint = env("STRATUS_ENDPOINT").or(s.endpoint);
        s.token = env("STRATUS_TOKEN").or(s.token);
        s.access_key = env("STRATUS_ACCESS_KEY").or(s.access_key);
        s.secret_key = env("STRATUS_SECRET_KEY").or(s.secret_key);
        s.region = env("STRATUS_REGION").or(s.region);
        Ok(s)
    }

    /// Save with owner-only permissions: the file holds a session token.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let p = path();
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = p.with_extension("toml.tmp");
        std::fs::write(&tmp, toml::to_string(self)?)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, &p)?;
        Ok(p)
    }

    pub fn endpoint(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
    }

    /// Access keys win over a stored token when both are present.
    pub fn auth(&self) -> Auth {
        match (&self.access_key, &self.secret_key, &self.token) {
            (Some(a), Some(s), _) => Auth::Key {
                access_key: a.clone(),
                secret_key: s.clone(),
                region: self.region.clone().unwrap_or_else(|| "gd-1".into()),
            },
            (_, _, Some(t)) => Auth::Token(t.clone()),
            _ => Auth::None,
        }
    }
}
