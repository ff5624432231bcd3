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
    /// Run the host agent: join a control plane and run its guests here with QEMU.
    #[command(long_about = AGENT_ABOUT)]
    Agent(AgentArgs),
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
    /// Address of the S3-compatible object storage endpoint [default 127.0.0.1:9000].
    #[arg(long, env = "STRATUS_S3_LISTEN")]
    s3_listen: Option<SocketAddr>,
    /// Do not run the all-in-one host agent in this process (hosts join with `stratus agent`).
    #[arg(long, env = "STRATUS_NO_LOCAL_AGENT")]
    no_local_agent: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

const AGENT_ABOUT: &str = "\
Run the host agent: join a control plane and run the guests it places here with QEMU.

The first start joins the control plane with a join token (an administrator creates one)
and keeps the host's identity in <state-dir>/agent.json (mode 0600); later starts reuse it
and need no token. The agent long-polls the host's desired state, builds, starts, stops and
deletes guests to match it, and reports their state, counters and console output.

Guests run as daemonized QEMU processes: stopping or restarting the agent (SIGINT/SIGTERM)
leaves them running, and a restarted agent finds them again.

Examples:
  stratus agent --join https://cloud.example.gov --token jt_...
  stratus agent --state-dir /srv/stratus-agent --hypervisor kvm --vnc-listen 10.0.0.5";

#[derive(Debug, Args)]
struct AgentArgs {
    /// Control plane URL to join (optional once joined: <state-dir>/agent.json has it).
    #[arg(long = "join", value_name = "URL", env = "STRATUS_AGENT_JOIN")]
    join: Option<String>,
    /// Join token; needed only for the first start.
    #[arg(
        long,
        value_name = "T",
        env = "STRATUS_AGENT_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Directory for the identity, cached images and instance files.
    #[arg(
        long,
        value_name = "DIR",
        env = "STRATUS_AGENT_STATE_DIR",
        default_value = "/var/lib/stratus/agent"
    )]
    state_dir: PathBuf,
    /// Accelerator: `auto` boots a probe guest to find out whether KVM really works (the
    /// result is cached in the state directory); `kvm` or `tcg` force one.
    #[arg(long, value_name = "auto|kvm|tcg", env = "STRATUS_AGENT_HYPERVISOR", default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    hypervisor: String,
    /// Address VNC consoles listen on (one TCP port per guest from 5900, password-protected).
    #[arg(
        long,
        value_name = "ADDR",
        env = "STRATUS_AGENT_VNC_LISTEN",
        default_value = "0.0.0.0"
    )]
    vnc_listen: String,
    /// Hostname reported to the control plane [default: the system's].
    #[arg(long, value_name = "NAME", env = "STRATUS_AGENT_HOSTNAME")]
    hostname: Option<String>,
    /// Where volume backups are kept (other storage than the volumes', e.g. a mount)
    /// [default: <state-dir>/backups].
    #[arg(long, value_name = "DIR", env = "STRATUS_AGENT_BACKUP_DIR")]
    backup_dir: Option<PathBuf>,
    /// This host's address on the network between hosts: other hosts' VXLAN tunnels for
    /// subnets that span hosts end here (none: subnets stay on this host).
    #[arg(long, value_name = "ADDR", env = "STRATUS_AGENT_TUNNEL_IP")]
    tunnel_ip: Option<std::net::Ipv4Addr>,
    /// Scale-test instrument, not for production: instead of a real agent, join N simulated
    /// hosts that report every desired instance in its desired state without running guests.
    #[arg(long, value_name = "N", env = "STRATUS_AGENT_SIMULATE")]
    simulate: Option<usize>,
    /// Test instrument: make a step fail (agent.image, agent.disk, agent.cidata,
    /// agent.start, agent.volume, agent.attach, agent.backup).
    #[arg(
        long = "fault",
        hide = true,
        env = "STRATUS_AGENT_FAULTS",
        value_delimiter = ','
    )]
    faults: Vec<String>,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    use stratus_agent::accel::Accel;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATUS_AGENT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(n) = a.simulate {
        let server = a
            .join
            .ok_or_else(|| anyhow::anyhow!("--simulate needs --join <URL>"))?;
        let token = a
            .token
            .ok_or_else(|| anyhow::anyhow!("--simulate needs --token <T>"))?;
        return stratus_agent::sim::run_simulated(
            &server,
            &token,
            n,
            &a.state_dir,
            shutdown_signal(),
        )
        .await;
    }
    let cfg = stratus_agent::agent::AgentConfig {
        server: a.join.unwrap_or_default(),
        join_token: a.token,
        state_dir: a.state_dir,
        hypervisor: match a.hypervisor.as_str() {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        },
        vnc_listen: a.vnc_listen,
        hostname: a.hostname,
        faults: a.faults,
        backup_dir: a.backup_dir,
        tunnel_ip: a.tunnel_ip.map(|t| t.to_string()),
    };
    stratus_agent::agent::run(cfg, shutdown_signal()).await
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
    if let Some(l) = a.s3_listen {
        cfg.s3.listen = Some(l);
    }
    if a.no_local_agent {
        cfg.local_agent.enabled = false;
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
    if let Some(a) = server.s3_addr {
        println!("S3 endpoint on http://{a}");
    }
    server.run_until_signal().await
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::Agent(a) => agent(a).await,
        Command::Client(cmd) => cli::run(cli.global, cmd).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
