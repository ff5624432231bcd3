//! DHCP for a subnet: one dnsmasq per subnet with DHCP enabled, inside the VPC's router
//! namespace on the subnet's leg, handing out static leases only (one `mac,ip` line per
//! port in its hosts file; no dynamic range). Its files live under
//! `<state>/network/dhcp/<subnet>.*`. A change of ports rewrites the hosts file and sends
//! SIGHUP (dnsmasq re-reads it, no restart); a change of anything else restarts it; a
//! dnsmasq that died is started again.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use uuid::Uuid;

use super::sys;
use crate::identity::write_atomic;

#[derive(Debug, Clone, PartialEq)]
pub struct DhcpPlan {
    pub subnet: Uuid,
    /// The router end of the subnet's leg.
    pub interface: String,
    pub network: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub mtu: u32,
    /// `(mac, ip)` per port.
    pub hosts: Vec<(String, Ipv4Addr)>,
}

pub struct Files {
    pub conf: PathBuf,
    pub hosts: PathBuf,
    pub pid: PathBuf,
    pub leases: PathBuf,
    pub log: PathBuf,
}

impl Files {
    pub fn of(dir: &Path, subnet: Uuid) -> Files {
        let f = |ext: &str| dir.join(format!("{subnet}.{ext}"));
        Files {
            conf: f("conf"),
            hosts: f("hosts"),
            pid: f("pid"),
            leases: f("leases"),
            log: f("log"),
        }
    }
}

impl DhcpPlan {
    pub fn conf(&self, f: &Files) -> String {
        let dns = if self.dns.is_empty() {
            // An option without a value: dnsmasq sends none.
            "dhcp-option=option:dns-server".to_string()
        } else {
            let d: Vec<String> = self.dns.iter().map(Ipv4Addr::to_string).collect();
            format!("dhcp-option=option:dns-server,{}", d.join(","))
        };
        format!(
            "# stratus: DHCP of subnet {subnet}\n\
             port=0\n\
             interface={iface}\n\
             bind-interfaces\n\
             dhcp-range={net},static,{mask},12h\n\
             dhcp-hostsfile={hosts}\n\
             dhcp-leasefile={leases}\n\
             pid-file={pid}\n\
             log-facility={log}\n\
             dhcp-authoritative\n\
             dhcp-option=option:router,{gw}\n\
             {dns}\n\
             dhcp-option=option:mtu,{mtu}\n",
            subnet = self.subnet,
            iface = self.interface,
            net = self.network,
            mask = self.netmask,
            hosts = f.hosts.display(),
            leases = f.leases.display(),
            pid = f.pid.display(),
            log = f.log.display(),
            gw = self.gateway,
            mtu = self.mtu,
        )
    }

    pub fn hosts(&self) -> String {
        self.hosts
            .iter()
            .map(|(mac, ip)| format!("{mac},{ip}\n"))
            .collect()
    }
}

/// The pid of the subnet's dnsmasq, if it runs (and is ours: its command line names our
/// configuration file).
pub fn pid(f: &Files) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(&f.pid).ok()?.trim().parse().ok()?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmd)
        .contains(&*f.conf.to_string_lossy())
        .then_some(pid)
}

async fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<bool> {
    if tokio::fs::read_to_string(path).await.ok().as_deref() == Some(text) {
        return Ok(false);
    }
    // dnsmasq drops root after start and re-reads the hosts file as nobody.
    write_atomic(path, text.as_bytes(), 0o644)
        .await
        .with_context(|| path.display().to_string())?;
    Ok(true)
}

/// Make the subnet's dnsmasq run with `plan` in namespace `ns`; returns what it did
/// (`"started"`, `"reloaded"`, `"restarted"` or `""` when all was right).
pub async fn ensure(dir: &Path, ns: &str, plan: &DhcpPlan) -> anyhow::Result<&'static str> {
    tokio::fs::create_dir_all(dir).await?;
    let f = Files::of(dir, plan.subnet);
    let hosts_changed = write_if_changed(&f.hosts, &plan.hosts()).await?;
    let conf_changed = write_if_changed(&f.conf, &plan.conf(&f)).await?;
    let running = pid(&f);
    match running {
        Some(p) if !conf_changed => {
            if hosts_changed {
                sys::signal(p, libc::SIGHUP);
                return Ok("reloaded");
            }
            Ok("")
        }
        _ => {
            if let Some(p) = running {
                kill(p, &f).await;
            }
            start(ns, &f).await?;
            Ok(if running.is_some() {
                "restarted"
            } else {
                "started"
            })
        }
    }
}

async fn start(ns: &str, f: &Files) -> anyhow::Result<()> {
    let _ = tokio::fs::remove_file(&f.pid).await;
    let conf = format!("--conf-file={}", f.conf.display());
    // dnsmasq forks; the parent exits once the child runs (with an error if it cannot).
    sys::run("ip", &["netns", "exec", ns, "dnsmasq", &conf])
        .await
        .context("starting dnsmasq")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid(f).is_none() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "dnsmasq started but wrote no pid file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn kill(pid: u32, f: &Files) {
    sys::signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while self::pid(f).is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if self::pid(f).is_some() {
        sys::signal(pid, libc::SIGKILL);
    }
}

/// Stop the subnet's dnsmasq and remove its files.
pub async fn stop(dir: &Path, subnet: Uuid) {
    let f = Files::of(dir, subnet);
    if let Some(p) = pid(&f) {
        kill(p, &f).await;
    }
    // One started by an earlier agent whose pid file is gone.
    for p in sys::pids_with(&f.conf.to_string_lossy()) {
        if std::fs::read(format!("/proc/{p}/comm"))
            .map(|c| c.starts_with(b"dnsmasq"))
            .unwrap_or(false)
        {
            sys::signal(p, libc::SIGKILL);
        }
    }
    for p in [&f.conf, &f.hosts, &f.pid, &f.leases, &f.log] {
        let _ = tokio::fs::remove_file(p).await;
    }
}

/// Subnets that have DHCP files in `dir` (for the sweep).
pub fn known(dir: &Path) -> Vec<Uuid> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name();
            let n = n.to_str()?;
            n.strip_suffix(".conf")?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_static_leases_only() {
        let p = DhcpPlan {
            subnet: Uuid::nil(),
            interface: "sn0123456789".into(),
            network: "10.0.1.0".parse().unwrap(),
            netmask: "255.255.255.0".parse().unwrap(),
            gateway: "10.0.1.1".parse().unwrap(),
            dns: vec![],
            mtu: 1450,
            hosts: vec![("fa:16:3e:00:00:01".into(), "10.0.1.5".parse().unwrap())],
        };
        let f = Files::of(Path::new("/s"), Uuid::nil());
        let c = p.conf(&f);
        assert!(
            c.contains("dhcp-range=10.0.1.0,static,255.255.255.0,12h"),
            "{c}"
        );
        assert!(c.contains("dhcp-option=option:dns-server\n"), "{c}");
        assert!(c.contains("dhcp-option=option:mtu,1450"), "{c}");
        assert!(c.contains("interface=sn0123456789"), "{c}");
        assert_eq!(p.hosts(), "fa:16:3e:00:00:01,10.0.1.5\n");
        let with_dns = DhcpPlan {
            dns: vec!["192.0.2.53".parse().unwrap()],
            ..p
        };
        assert!(with_dns.conf(&f).contains("dns-server,192.0.2.53\n"));
    }
}
