//! **Test instruments**, not part of the data plane: the "external world" of a test — a
//! network namespace standing for the uplink's other side (the external gateway, or a host
//! on the internet), attached to the external bridge with an address — and the removal of
//! everything an agent of a test made when the test fails midway.

use std::path::Path;

use super::sys;

/// Remove everything the agent with `state_dir` made on this host: its processes (guests,
/// dnsmasqs: every process whose command line names the directory), then its routers,
/// devices and tables (a converge to nothing by a fresh `Network` on the same state, which
/// also sweeps what its records forgot). Nothing of another agent is touched.
pub async fn remove_all(state_dir: &Path) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(state_dir)?;
    let me = std::process::id();
    let pids: Vec<u32> = sys::pids_with(&dir.to_string_lossy())
        .into_iter()
        .filter(|p| *p != me)
        .collect();
    for p in &pids {
        sys::signal(*p, libc::SIGKILL);
    }
    // A tap still held by a process is left alone by the sweep: wait for them to go.
    for _ in 0..50 {
        if pids
            .iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let net = super::Network::new(&dir)?;
    let reports = net
        .converge(&stratus_api::DesiredNetwork::default(), &[])
        .await;
    match reports.iter().find_map(|r| r.error.clone()) {
        Some(e) => anyhow::bail!("{e}"),
        None => Ok(()),
    }
}

/// A namespace `ns` standing for a guest or a host: `eth0` = `addr` (with `mac` if given,
/// default route via `gw`) on a veth whose other end is `host_end` (on `bridge` if given;
/// named as the agent names a port's tap, it is that port's NIC).
pub async fn plug(
    ns: &str,
    host_end: &str,
    bridge: Option<&str>,
    mac: Option<&str>,
    addr: &str,
    gw: Option<&str>,
) -> anyhow::Result<()> {
    sys::ip(None, &["netns", "add", ns]).await?;
    sys::ip(
        None,
        &[
            "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ],
    )
    .await?;
    if let Some(b) = bridge {
        sys::ip(None, &["link", "set", "dev", host_end, "master", b]).await?;
    }
    sys::ip(None, &["link", "set", "dev", host_end, "up"]).await?;
    if let Some(m) = mac {
        sys::ip(Some(ns), &["link", "set", "dev", "eth0", "address", m]).await?;
    }
    sys::ip(Some(ns), &["addr", "add", addr, "dev", "eth0"]).await?;
    sys::ip(Some(ns), &["link", "set", "dev", "eth0", "up"]).await?;
    sys::ip(Some(ns), &["link", "set", "dev", "lo", "up"]).await?;
    if let Some(g) = gw {
        sys::ip(Some(ns), &["route", "add", "default", "via", g]).await?;
    }
    Ok(())
}

/// A namespace on a bridge of the host with one address; removed on drop (with the bridge
/// if it made it).
pub struct Outside {
    pub ns: String,
    host_end: String,
    made_bridge: Option<String>,
}

impl Outside {
    /// Make namespace `stest-<tag>` attached to `bridge` (made if missing) with `addr`
    /// (`a.b.c.d/len`) on its `eth0`. `tag` (≤ 8 characters) keeps names unique.
    pub async fn create(tag: &str, bridge: &str, addr: &str) -> anyhow::Result<Outside> {
        let ns = format!("stest-{tag}");
        let host_end = format!("xt{tag}");
        let mut o = Outside {
            ns: ns.clone(),
            host_end: host_end.clone(),
            made_bridge: None,
        };
        if !sys::links(None).await?.contains_key(bridge) {
            sys::ip(None, &["link", "add", "name", bridge, "type", "bridge"]).await?;
            o.made_bridge = Some(bridge.to_string());
        }
        sys::ip(None, &["link", "set", "dev", bridge, "up"]).await?;
        sys::ip(None, &["netns", "add", &ns]).await?;
        sys::ip(
            None,
            &[
                "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )
        .await?;
        sys::ip(
            None,
            &["link", "set", "dev", &host_end, "master", bridge, "up"],
        )
        .await?;
        sys::ip(Some(&ns), &["addr", "add", addr, "dev", "eth0"]).await?;
        sys::ip(Some(&ns), &["link", "set", "dev", "eth0", "up"]).await?;
        sys::ip(Some(&ns), &["link", "set", "dev", "lo", "up"]).await?;
        Ok(o)
    }

    /// A TCP listener inside the namespace (what connects to it shows its source
    /// address: the SNAT or elastic IP a guest's traffic left with).
    pub async fn listen(&self, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
        let l = sys::in_netns(&self.ns, move || {
            let l = std::net::TcpListener::bind(("0.0.0.0", port))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .await?;
        Ok(tokio::net::TcpListener::from_std(l)?)
    }

    /// Connect from the namespace to `addr` and return what the other side sends before
    /// it closes (or within `timeout`); an error if the connection fails.
    pub async fn fetch(
        &self,
        addr: std::net::SocketAddr,
        timeout: std::time::Duration,
    ) -> anyhow::Result<String> {
        sys::in_netns(&self.ns, move || {
            use std::io::Read as _;
            let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            let mut out = Vec::new();
            match s.read_to_end(&mut out) {
                Ok(_) => {}
                Err(e) if !out.is_empty() && e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        })
        .await
    }

    /// Run a command inside the namespace; its stdout.
    pub async fn exec(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut a = vec!["netns", "exec", &self.ns];
        a.extend_from_slice(args);
        sys::run("ip", &a).await
    }

    /// Start a command inside the namespace in the background (killed on drop of the
    /// returned child).
    pub fn spawn(&self, args: &[&str]) -> std::io::Result<tokio::process::Child> {
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", "dev", &self.host_end])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
        if let Some(b) = &self.made_bridge {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", "dev", b])
                .status();
        }
    }
}
