//! The Stratus control plane: `stratus serve`.
//!
//! Layers, each with one job: [`http`] (parse, authenticate, audit, map errors) →
//! [`app`] (authorization, validation, rules) → [`store`] (SQL, quotas in the same
//! transaction as the rows they count).

pub mod app;
pub mod auth;
pub mod authz;
pub mod calllog;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod metrics;
pub mod ratelimit;
pub mod s3;
pub mod secrets;
pub mod store;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use stratus_api::ScopeType;
use tokio::net::TcpListener;

pub use config::Config;

use crate::app::App;
use crate::auth::{generate_password, hash_password, Authenticator};
use crate::store::{NewUser, Store};

/// A running control plane.
pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The all-in-one agent, when `local_agent.enabled`.
    agent: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The S3 endpoint's address, when `s3.listen` is set.
    pub s3_addr: Option<SocketAddr>,
    s3: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Stop accepting, finish in-flight requests, and return.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        // The agent stops its loops; guests keep running (the next start finds them).
        if let Some(agent) = self.agent {
            match agent.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "local agent ended with an error"),
                Err(e) => tracing::warn!(error = %e, "local agent task failed"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(s3) = self.s3 {
            s3.await??;
        }
        self.task.await??;
        Ok(())
    }

    /// Serve until the process is told to stop (Ctrl-C or SIGTERM).
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        ctrl_c.await?;
        tracing::info!("shutting down");
        self.stop().await
    }
}

/// The three separated platform accounts created on first start.
const BOOTSTRAP_ACCOUNTS: [(&str, &str, &str); 3] = [
    (
        "admin",
        authz::PLATFORM_ADMIN,
        "Platform administrator (系统管理员)",
    ),
    (
        "secadmin",
        authz::SECURITY_ADMIN,
        "Security administrator (安全管理员)",
    ),
    ("auditor", authz::AUDITOR, "Auditor (审计管理员)"),
];

fn initial_password(
    cfg: &config::BootstrapConfig,
    account: &str,
) -> anyhow::Result<Option<String>> {
    let (value, file) = match account {
        "admin" => (&cfg.admin_password, &cfg.admin_password_file),
        "secadmin" => (&cfg.secadmin_password, &cfg.secadmin_password_file),
        _ => (&cfg.auditor_password, &cfg.auditor_password_file),
    };
    if let Some(v) = value {
        return Ok(Some(v.clone()));
    }
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("bootstrap: cannot read {}", f.display()))?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
    }
    Ok(None)
}

/// On an empty store, create the admin, security admin and auditor accounts. Passwords come
/// from the configuration, or are generated and printed once to standard output.
async fn bootstrap(store: &Store, cfg: &config::BootstrapConfig) -> anyhow::Result<()> {
    if store
        .user_count()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        > 0
    {
        return Ok(());
    }
    let policy = store
        .password_policy_get()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut printed = Vec::new();
    for (name, role, display) in BOOTSTRAP_ACCOUNTS {
        let password = match initial_password(cfg, name)? {
            Some(p) => {
                validate::password(&format!("bootstrap.{name}_password"), &p, &policy, name)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                p
            }
            None => {
                let p = generate_password();
                printed.push((name, p.clone()));
                p
            }
        };
        let hash = hash_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
        let user = store
            .user_create(NewUser {
                name,
                password_hash: &hash,
                vdc_id: None,
                display_name: display,
                email: "",
                description: "",
            })
            .await
            .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
        store
            .grant_create(user.id, role, ScopeType::Platform, None)
            .await
            .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
    }
    if !printed.is_empty() {
        println!("Stratus initialised. Initial passwords (shown once; change them with `stratus passwd`):");
        for (name, p) in printed {
            println!("  {name:<9} {p}");
        }
    }
    Ok(())
}

/// All-in-one mode: run a host agent in this process, joined to this control plane.
async fn start_local_agent(
    app: &Arc<App>,
    addr: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let la = &app.config.local_agent;
    let state_dir = la
        .state_dir
        .clone()
        .unwrap_or_else(|| app.config.data_dir.join("agent"));
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let mut cfg = stratus_agent::agent::AgentConfig::new(
        format!("http://{host}:{}", addr.port()),
        &state_dir,
    );
    // A host that joined before keeps its identity; a new one joins with a fresh token.
    if !state_dir.join("agent.json").exists() {
        cfg.join_token = Some(
            app::hosts::local_join_token(app, &la.availability_zone)
                .await
                .map_err(|e| anyhow::anyhow!("local agent join token: {e}"))?,
        );
    }
    cfg.hypervisor = match la.hypervisor.as_str() {
        "kvm" => Some(stratus_agent::accel::Accel::Kvm),
        "tcg" => Some(stratus_agent::accel::Accel::Tcg),
        _ => None,
    };
    cfg.vnc_listen = la.vnc_listen.clone();
    cfg.backup_dir = la.backup_dir.clone();
    cfg.faults = app
        .config
        .faults
        .iter()
        .filter(|f| f.starts_with("agent."))
        .cloned()
        .collect();
    Ok(tokio::spawn(async move {
        stratus_agent::agent::run(cfg, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
    }))
}

/// Open the store, migrate, bootstrap, bind and start serving in the background.
pub async fn start(config: Config) -> anyhow::Result<Server> {
    config.validate()?;
    tokio::fs::create_dir_all(&config.data_dir)
        .await
        .with_context(|| format!("data_dir: cannot create {}", config.data_dir.display()))?;
    let db = db::Db::connect(
        &config.database_url(),
        config.database_max_connections,
        &config.sqlite_synchronous,
    )
    .await?;
    let store = Store::new(db);
    bootstrap(&store, &config.bootstrap).await?;
    store
        .flavor_seed_builtins()
        .await
        .map_err(|e| anyhow::anyhow!("seeding flavors: {e}"))?;
    store
        .volume_type_seed_builtins()
        .await
        .map_err(|e| anyhow::anyhow!("seeding volume types: {e}"))?;
    let calls = calllog::CallLog::open(&config.data_dir.join("logs")).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", config.listen))?;
    let addr = listener.local_addr()?;
    let master_key = config
        .master_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("master.key"));
    let secrets = Arc::new(secrets::SecretBox::open_or_create(&master_key)?);
    let tsdb = app::monitoring::open(&config)?;
    let app = Arc::new(App {
        store,
        hub: app::hosts::AgentHub::default(),
        tsdb,
        secrets: secrets.clone(),
        auth: Authenticator::new(
            Duration::from_secs(config.auth_cache_secs),
            config.signature_max_skew_secs,
            config.region.clone(),
            secrets,
        ),
        limiter: ratelimit::RateLimiter::new(
            config.rate_limit.requests_per_second,
            config.rate_limit.burst,
        ),
        metrics: metrics::Metrics::default(),
        calls,
        config,
    });
    let router = http::router(app.clone());
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        // No Nagle: a response written as headers then body must not wait for the
        // client's delayed ACK (that costs ~40 ms per small answer).
        axum::serve(
            axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            }),
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })
        .await
    });
    // Orders interrupted by the last stop: approved ones are provisioned, half-made ones
    // undone.
    if let Err(e) = app::requests::resume(&app).await {
        tracing::warn!(error = %e, "cannot resume orders");
    }
    app::recycle::spawn_purger(app.clone());
    app::metering::spawn(app.clone());
    app::monitoring::spawn(app.clone(), tx.subscribe());
    app::monitoring::notify::spawn(app.clone(), tx.subscribe());
    // Stacks interrupted mid-action: deletes and rollbacks go on, the rest are failed.
    if let Err(e) = app::stacks::resume(&app).await {
        tracing::warn!(error = %e, "cannot resume stacks");
    }
    // Expired sessions are pruned hourly.
    let pruner = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            if let Err(e) = pruner.store.token_prune().await {
                tracing::warn!(error = %e, "cannot prune expired sessions");
            }
        }
    });
    // Backup policies: due runs start backups and prune old copies.
    let scheduler = app.clone();
    let mut stop_backups = tx.subscribe();
    tokio::spawn(async move {
        let every = Duration::from_secs(scheduler.config.storage.backup_check_secs);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop_backups.wait_for(|s| *s) => return,
            }
            if let Err(e) =
                app::volumes::backup_policies_run_due(&scheduler, chrono::Utc::now()).await
            {
                tracing::warn!(error = %e, "running backup policies failed");
            }
        }
    });
    tracing::info!(%addr, database = app.store.db.backend.as_str(), "Stratus control plane listening");
    let (s3_addr, s3) = match app.config.s3.listen {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .with_context(|| format!("s3.listen: cannot bind {a}"))?;
            let addr = l.local_addr()?;
            tracing::info!(%addr, "S3 endpoint listening");
            (
                Some(addr),
                Some(s3::serve(app.clone(), l, tx.subscribe()).await?),
            )
        }
        None => (None, None),
    };
    let agent = if app.config.local_agent.enabled {
        Some(start_local_agent(&app, addr, tx.subscribe()).await?)
    } else {
        None
    };
    Ok(Server {
        addr,
        app,
        shutdown: tx,
        task,
        agent,
        s3_addr,
        s3,
    })
}
