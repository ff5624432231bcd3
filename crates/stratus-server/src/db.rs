//! The store's connection pools and its forward-only migrations.
//!
//! One set of SQL serves SQLite and PostgreSQL through sqlx's `Any` driver: numbered `$N`
//! parameters, text UUIDs and times, 0/1 booleans. SQLite gets one writer connection (its
//! writes are serial anyway; a single writer never sees `SQLITE_BUSY`) and a few readers.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone)]
pub struct Db {
    pub backend: Backend,
    /// For writes and read-modify-write transactions.
    pub write: AnyPool,
    /// For plain reads; on PostgreSQL the same pool as `write`.
    pub read: AnyPool,
}

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Append new migrations at the end; never edit one that has shipped.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "identity",
        sqlite: include_str!("../migrations/sqlite/0001_identity.sql"),
        postgres: include_str!("../migrations/postgres/0001_identity.sql"),
    },
    Migration {
        version: 2,
        name: "flavors",
        sqlite: include_str!("../migrations/sqlite/0002_flavors.sql"),
        postgres: include_str!("../migrations/postgres/0002_flavors.sql"),
    },
    Migration {
        version: 3,
        name: "compute",
        sqlite: include_str!("../migrations/sqlite/0003_compute.sql"),
        postgres: include_str!("../migrations/postgres/0003_compute.sql"),
    },
    Migration {
        version: 4,
        name: "object_storage",
        sqlite: include_str!("../migrations/sqlite/0004_object_storage.sql"),
        postgres: include_str!("../migrations/postgres/0004_object_storage.sql"),
    },
    Migration {
        version: 5,
        name: "volumes",
        sqlite: include_str!("../migrations/sqlite/0005_volumes.sql"),
        postgres: include_str!("../migrations/postgres/0005_volumes.sql"),
    },
    Migration {
        version: 6,
        name: "networks",
        sqlite: include_str!("../migrations/sqlite/0006_networks.sql"),
        postgres: include_str!("../migrations/postgres/0006_networks.sql"),
    },
    Migration {
        version: 7,
        name: "catalog",
        sqlite: include_str!("../migrations/sqlite/0007_catalog.sql"),
        postgres: include_str!("../migrations/postgres/0007_catalog.sql"),
    },
    Migration {
        version: 8,
        name: "stacks",
        sqlite: include_str!("../migrations/sqlite/0008_stacks.sql"),
        postgres: include_str!("../migrations/postgres/0008_stacks.sql"),
    },
    Migration {
        version: 9,
        name: "metering",
        sqlite: include_str!("../migrations/sqlite/0009_metering.sql"),
        postgres: include_str!("../migrations/postgres/0009_metering.sql"),
    },
    Migration {
        version: 10,
        name: "reports",
        sqlite: include_str!("../migrations/sqlite/0010_reports.sql"),
        postgres: include_str!("../migrations/postgres/0010_reports.sql"),
    },
    Migration {
        version: 11,
        name: "subscriptions",
        sqlite: include_str!("../migrations/sqlite/0011_subscriptions.sql"),
        postgres: include_str!("../migrations/postgres/0011_subscriptions.sql"),
    },
    Migration {
        version: 12,
        name: "usage_daily",
        sqlite: include_str!("../migrations/sqlite/0012_usage_daily.sql"),
        postgres: include_str!("../migrations/postgres/0012_usage_daily.sql"),
    },
    Migration {
        version: 13,
        name: "alerts",
        sqlite: include_str!("../migrations/sqlite/0013_alerts.sql"),
        postgres: include_str!("../migrations/postgres/0013_alerts.sql"),
    },
];

/// Per-connection SQLite settings; only the writer switches the file to WAL.
async fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    synchronous: String,
    writer: bool,
) -> Result<(), sqlx::Error> {
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    if writer {
        conn.execute("PRAGMA journal_mode = WAL").await?;
    }
    conn.execute(format!("PRAGMA synchronous = {synchronous}").as_str())
        .await?;
    Ok(())
}

impl Db {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        sqlite_synchronous: &str,
    ) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("database: unsupported URL scheme (want sqlite:// or postgres://)");
        };
        let opts = AnyConnectOptions::from_str(url).context("database: invalid URL")?;
        let db = match backend {
            Backend::Sqlite => {
                let sync = sqlite_synchronous.to_ascii_uppercase();
                let sync_r = sync.clone();
                let write = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(move |conn, _| {
                        Box::pin(sqlite_pragmas(conn, sync.clone(), true))
                    })
                    .connect_with(opts.clone())
                    .await
                    .context("database: cannot open SQLite store")?;
                // The writer switched the file to WAL before any reader opens it.
                let read = AnyPoolOptions::new()
                    .max_connections(max_connections.clamp(1, 8))
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |conn, _| {
                        Box::pin(sqlite_pragmas(conn, sync_r.clone(), false))
                    })
                    .connect_with(opts)
                    .await
                    .context("database: cannot open SQLite store for reading")?;
                Db {
                    backend,
                    write,
                    read,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .context("database: cannot connect to PostgreSQL")?;
                Db {
                    backend,
                    write: pool.clone(),
                    read: pool,
                }
            }
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Apply every migration not yet recorded, each in its own transaction.
    async fn migrate(&self) -> anyhow::Result<()> {
        self.write
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )
            .await
            .context("migrations: cannot create schema_migrations")?;
        for m in MIGRATIONS {
            let mut tx = self.write.begin().await?;
            let done: Option<(i64,)> =
                sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(m.version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            let sql = match self.backend {
                Backend::Sqlite => m.sqlite,
                Backend::Postgres => m.postgres,
            };
            tx.execute(sql)
                .await
                .with_context(|| format!("migration {} ({}) failed", m.version, m.name))?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(crate::store::now_text())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(version = m.version, name = m.name, "applied migration");
        }
        Ok(())
    }
}
