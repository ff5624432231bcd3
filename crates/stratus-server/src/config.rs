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
    pub compute: ComputeConfig,
    /// Block storage (volumes, snapshots, backups).
    pub storage: StorageConfig,
    /// Deleted instances, volumes and buckets kept for a while (off by default).
    pub recycle_bin: RecycleBinConfig,
    /// The S3-compatible object storage endpoint.
    pub s3: S3Config,
    /// Usage records (话单), their files, and rating.
    pub metering: MeteringConfig,
    /// Metrics: the embedded time-series store.
    pub monitoring: MonitoringConfig,
    /// The agent `stratus serve` runs in the same process (all-in-one mode).
    pub local_agent: LocalAgentConfig,
    /// Test instrument: named failure points to trigger (e.g. `create.schedule`). Never set
    /// in production; documented in docs/operations.md.
    pub faults: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Volume GiB that may be allocated per GiB of a host's pool (volumes are sparse: thin
    /// provisioning, like Cinder's max_over_subscription_ratio).
    pub volume_allocation_ratio: f64,
    /// How often backup policies are checked for due runs, in seconds.
    pub backup_check_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            volume_allocation_ratio: 20.0,
            backup_check_secs: 60,
        }
    }
}

/// The recycle bin (spec 8.3.8 (6)): instances and volumes deleted through the API, and
/// buckets deleted through S3, are kept (stopped, still holding their quota) for
/// `retention_secs` and can be restored; then they are purged. 0 turns it off: deletes are
/// final at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecycleBinConfig {
    pub retention_secs: u64,
    /// How often expired entries are purged, in seconds.
    pub purge_check_secs: u64,
}

impl Default for RecycleBinConfig {
    fn default() -> Self {
        RecycleBinConfig {
            retention_secs: 0,
            purge_check_secs: 60,
        }
    }
}

/// Metering: resource events become hourly usage records, priced as each hour closes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringConfig {
    /// How often new events are applied and due hours closed, in seconds.
    pub tick_secs: u64,
    /// An hour closes (and is priced and exported) this many seconds after it ends, so
    /// events committed late still count in it.
    pub close_grace_secs: u64,
    /// Write each closed hour's records as CSV and JSON files here, for the operations
    /// management system to collect. Default: `<data_dir>/usage`.
    pub export_dir: Option<PathBuf>,
    /// Set false to write no files (records stay queryable through the API).
    pub export: bool,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        MeteringConfig {
            tick_secs: 30,
            close_grace_secs: 120,
            export_dir: None,
            export: true,
        }
    }
}

/// Monitoring: where metrics are kept and for how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// The time-series store's directory. Default: `<data_dir>/tsdb`.
    pub dir: Option<PathBuf>,
    /// Samples are kept this many days (1 to 3650).
    pub retention_days: u64,
    /// The store's log is folded into a snapshot once it holds this many MiB.
    pub checkpoint_mb: u64,
    /// Alert rules are evaluated every this many seconds (1 to 3600).
    pub rule_interval_secs: u64,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            dir: None,
            retention_days: 15,
            checkpoint_mb: 64,
            rule_interval_secs: 15,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Address of the S3 endpoint; unset turns object storage off.
    pub listen: Option<SocketAddr>,
    /// Base domain for virtual-host-style addressing (`<bucket>.<domain>`); path-style
    /// requests always work.
    pub domain: Option<String>,
    /// How often bucket lifecycle rules are applied, in seconds.
    pub lifecycle_interval_secs: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9000))),
            domain: None,
            lifecycle_interval_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    /// vCPUs that may be allocated per physical CPU (spec 8.3.2.5: overcommit).
    pub cpu_allocation_ratio: f64,
    /// Memory that may be allocated per MiB of host memory.
    pub ram_allocation_ratio: f64,
    /// Root-disk GiB that may be allocated per GiB of host disk (overlays are sparse).
    pub disk_allocation_ratio: f64,
    /// `spread` (emptiest host first) or `pack` (fullest host that fits first).
    pub placement: String,
    /// A host whose agent has not reported for this long is `down`.
    pub host_down_after_secs: i64,
    /// How often agents report (heartbeat, state, metrics), in seconds.
    pub report_interval_secs: i64,
    /// Where image files live. Default: `<data_dir>/images`.
    pub images_dir: Option<PathBuf>,
    /// Largest image upload accepted, in bytes (default 1 TiB).
    pub max_image_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalAgentConfig {
    pub enabled: bool,
    /// Default: `<data_dir>/agent`.
    pub state_dir: Option<PathBuf>,
    /// `auto` (boot probe), `kvm` or `tcg`.
    pub hypervisor: String,
    /// Address the instances' VNC consoles listen on.
    pub vnc_listen: String,
    pub availability_zone: String,
    /// Where volume backups are kept. Default: `<state_dir>/backups`.
    pub backup_dir: Option<PathBuf>,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            cpu_allocation_ratio: 4.0,
            ram_allocation_ratio: 1.5,
            disk_allocation_ratio: 4.0,
            placement: "spread".into(),
            host_down_after_secs: 60,
            report_interval_secs: 10,
            images_dir: None,
            max_image_bytes: 1 << 40,
        }
    }
}

impl Default for LocalAgentConfig {
    fn default() -> Self {
        LocalAgentConfig {
            enabled: true,
            state_dir: None,
            hypervisor: "auto".into(),
            vnc_listen: "127.0.0.1".into(),
            availability_zone: "az1".into(),
            backup_dir: None,
        }
    }
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
            compute: ComputeConfig::default(),
            storage: StorageConfig::default(),
            recycle_bin: RecycleBinConfig::default(),
            metering: MeteringConfig::default(),
            monitoring: MonitoringConfig::default(),
            s3: S3Config::default(),
            local_agent: LocalAgentConfig::default(),
            faults: Vec::new(),
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
        anyhow::ensure!(
            (1..=3650).contains(&self.monitoring.retention_days),
            "monitoring.retention_days: must be between 1 and 3650"
        );
        anyhow::ensure!(
            self.monitoring.checkpoint_mb >= 1,
            "monitoring.checkpoint_mb: must be at least 1"
        );
        anyhow::ensure!(
            (1..=3600).contains(&self.monitoring.rule_interval_secs),
            "monitoring.rule_interval_secs: must be between 1 and 3600"
        );
        let c = &self.compute;
        for (name, v) in [
            ("compute.cpu_allocation_ratio", c.cpu_allocation_ratio),
            ("compute.ram_allocation_ratio", c.ram_allocation_ratio),
            ("compute.disk_allocation_ratio", c.disk_allocation_ratio),
        ] {
            anyhow::ensure!(
                (0.1..=64.0).contains(&v),
                "{name}: must be between 0.1 and 64"
            );
        }
        anyhow::ensure!(
            matches!(c.placement.as_str(), "spread" | "pack"),
            "compute.placement: must be spread or pack"
        );
        anyhow::ensure!(
            c.report_interval_secs >= 1 && c.host_down_after_secs > c.report_interval_secs,
            "compute.host_down_after_secs: must be longer than report_interval_secs (>= 1)"
        );
        anyhow::ensure!(
            (0.1..=10_000.0).contains(&self.storage.volume_allocation_ratio),
            "storage.volume_allocation_ratio: must be between 0.1 and 10000"
        );
        anyhow::ensure!(
            self.storage.backup_check_secs >= 1,
            "storage.backup_check_secs: must be at least 1"
        );
        anyhow::ensure!(
            matches!(self.local_agent.hypervisor.as_str(), "auto" | "kvm" | "tcg"),
            "local_agent.hypervisor: must be auto, kvm or tcg"
        );
        Ok(())
    }

    pub fn images_dir(&self) -> PathBuf {
        self.compute
            .images_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("images"))
    }

    pub fn fault(&self, point: &str) -> bool {
        self.faults.iter().any(|f| f == point)
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
