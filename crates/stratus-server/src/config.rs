//! Server configuration: one TOML file, every key with a default; flags and env vars override.
//! The reference with every key is docs/configuration.md; `stratus serve --print-config`
//! prints the effective configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the `/v1` API, `/healthz` and `/metrics`.
    pub listen: SocketAddr,
    /// Where the embedded store, logs and generated secrets live.
    pub data_dir: PathBuf,
    /// `sqlite` (embedded, in data_dir) or a `sqlite://…` / `postgres://…` URL.
    pub database: String,
    /// Connections to PostgreSQL (SQLite uses one writer and this many readers).
    pub database_max_connections: u32,
    /// SQLite `synchronous` pragma: `full` survives power loss, `normal` only process crashes.
    pub sqlite_synchronous: String,
    /// 32-byte key that seals access-key secrets in the store; created on first start.
    /// Every control-plane process sharing one database needs the same file.
    /// Default: `<data_dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// Region name used in request-signing scopes.
    pub region: String,
    /// Largest request body accepted on `/v1`, in bytes.
    pub max_body_bytes: usize,
    /// Allowed clock difference for signed requests, in seconds.
    pub signature_max_skew_secs: i64,
    /// How long a validated token or key is trusted from memory before the store is asked again.
    pub auth_cache_secs: u64,
    pub rate_limit: RateLimitConfig,
    pub bootstrap: BootstrapConfig,
    /// `tracing` filter, e.g. `info` or `stratus_server=debug`.
    pub log: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Steady requests per second allowed per account (per source IP when anonymous); 0 disables.
    pub requests_per_second: f64,
    /// Requests an account may send in a burst above the steady rate.
    pub burst: f64,
}

/// Initial passwords of the three built-in accounts (admin, secadmin, auditor) on first start.
/// Each is taken from `<name>_password`, else the file `<name>_password_file`, else generated
/// and printed once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    pub admin_password: Option<String>,
    pub admin_password_file: Option<PathBuf>,
    pub secadmin_password: Option<String>,
    pub secadmin_password_file: Option<PathBuf>,
    pub auditor_password: Option<String>,
    pub auditor_password_file: Option<PathBuf>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_second: 50.0,
            burst: 200.0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("/var/lib/stratus"),
            database: "sqlite".into(),
            database_max_connections: 16,
            sqlite_synchronous: "full".into(),
            master_key_file: None,
            region: "gd-1".into(),
            max_body_bytes: 1 << 20,
            signature_max_skew_secs: 900,
            auth_cache_secs: 10,
            rate_limit: RateLimitConfig::default(),
            bootstrap: BootstrapConfig::default(),
            log: "info".into(),
        }
    }
}

impl Config {
    /// Parse a TOML file; unknown keys are errors so typos do not pass silently.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            matches!(
                self.sqlite_synchronous.as_str(),
                "full" | "normal" | "extra"
            ),
            "sqlite_synchronous: must be full, normal or extra"
        );
        anyhow::ensure!(
            self.max_body_bytes >= 1024,
            "max_body_bytes: must be at least 1024"
        );
        anyhow::ensure!(
            self.database_max_connections >= 1,
            "database_max_connections: must be at least 1"
        );
        anyhow::ensure!(
            self.rate_limit.requests_per_second >= 0.0 && self.rate_limit.burst >= 1.0,
            "rate_limit: requests_per_second must be >= 0 and burst >= 1"
        );
        anyhow::ensure!(!self.region.is_empty(), "region: must not be empty");
        Ok(())
    }

    /// The store URL the database setting stands for.
    pub fn database_url(&self) -> String {
        if self.database == "sqlite" {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("stratus.db").display()
            )
        } else {
            self.database.clone()
        }
    }
}
