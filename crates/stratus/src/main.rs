//! `stratus`: the control plane (`stratus serve`) and the command-line client in one binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use stratus_client::cli::{self, GlobalArgs};
use stratus_server::Config;

#[derive(Debug, Parser)]
#[command(name = "stratus", version, about = "Stratus government cloud platform (政务云平台)", long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: API, embedded store (SQLite) or PostgreSQL.
    Serve(ServeArgs),
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML configuration file (every key is optional; see docs/configuration.md).
    #[arg(long, short = 'c', env = "STRATUS_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default 127.0.0.1:8080].
    #[arg(long, env = "STRATUS_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the embedded store and logs [default /var/lib/stratus].
    #[arg(long, env = "STRATUS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// `sqlite` (embedded, default) or a postgres://user:pass@host/db URL.
    #[arg(long, env = "STRATUS_DATABASE")]
    database: Option<String>,
    /// Initial password of the `admin` account (first start only).
    #[arg(long, env = "STRATUS_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// File holding the initial `admin` password (first start only).
    #[arg(long, env = "STRATUS_ADMIN_PASSWORD_FILE")]
    admin_password_file: Option<PathBuf>,
    /// Initial password of the `secadmin` account (first start only).
    #[arg(long, env = "STRATUS_SECADMIN_PASSWORD", hide_env_values = true)]
    secadmin_password: Option<String>,
    /// Initial password of the `auditor` account (first start only).
    #[arg(long, env = "STRATUS_AUDITOR_PASSWORD", hide_env_values = true)]
    auditor_password: Option<String>,
    /// Steady requests per second per account; 0 turns rate limiting off.
    #[arg(long, env = "STRATUS_RATE_LIMIT")]
    rate_limit: Option<f64>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn load_config(a: &ServeArgs) -> anyhow::Result<Config> {
    let mut cfg = match &a.config {
        Some(p) => Config::from_toml(
            &std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => Config::default(),
    };
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = &a.data_dir {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = &a.database {
        cfg.database = v.clone();
    }
    if let Some(v) = &a.admin_password {
        cfg.bootstrap.admin_password = Some(v.clone());
    }
    if let Some(v) = &a.admin_password_file {
        cfg.bootstrap.admin_password_file = Some(v.clone());
    }
    if let Some(v) = &a.secadmin_password {
        cfg.bootstrap.secadmin_password = Some(v.clone());
    }
    if let Some(v) = &a.auditor_password {
        cfg.bootstrap.auditor_password = Some(v.clone());
    }
    if let Some(v) = a.rate_limit {
        cfg.rate_limit.requests_per_second = v;
    }
    cfg.validate()?;
    Ok(cfg)
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = load_config(&a)?;
    if a.print_config {
        let mut shown = cfg.clone();
        shown.bootstrap = Default::default();
        print!("{}", toml::to_string(&shown)?);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cfg.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let server = stratus_server::start(cfg).await?;
    println!("Stratus listening on http://{}", server.addr);
    server.run_until_signal().await
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Client(cmd) => cli::run(cli.global, cmd).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
