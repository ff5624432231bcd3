//! Every command the network module runs (iproute2's `ip` and `bridge`, `nft`, `arping`),
//! and the few system calls it makes (entering a namespace on a helper thread, sysctls).
//!
//! iproute2 rather than netlink from Rust: most of the work happens inside router
//! namespaces, where `ip -n <ns>` is one argument, while a netlink socket per namespace
//! would need a thread that enters it for every call; state is read back as JSON (`-j`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use serde_json::Value;
use tokio::process::Command;

/// Run `prog args…`; its stdout, or an error with its stderr.
pub async fn run(prog: &str, args: &[&str]) -> anyhow::Result<String> {
    run_input(prog, args, None).await
}

/// [`run`] with `input` on stdin.
pub async fn run_input(prog: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {prog} (is it installed?)"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        stdin.write_all(text.as_bytes()).await?;
        drop(stdin);
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        anyhow::bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn with_ns<'a>(ns: Option<&'a str>, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = Vec::with_capacity(args.len() + 2);
    if let Some(ns) = ns {
        v.extend(["-n", ns]);
    }
    v.extend_from_slice(args);
    v
}

/// `ip [-n ns] args…`
pub async fn ip(ns: Option<&str>, args: &[&str]) -> anyhow::Result<()> {
    run("ip", &with_ns(ns, args)).await.map(|_| ())
}

async fn ip_json(ns: Option<&str>, args: &[&str]) -> anyhow::Result<Vec<Value>> {
    let mut a = vec!["-j"];
    a.extend(with_ns(ns, args));
    let out = run("ip", &a).await?;
    if out.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&out).with_context(|| format!("ip {}: not JSON", args.join(" ")))
}

/// A network device as `ip -d link` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Link {
    pub name: String,
    /// `bridge`, `veth`, `vxlan`, `tun`…
    pub kind: String,
    pub master: Option<String>,
    pub up: bool,
    /// Lower layer up (a tap without a process attached has no carrier).
    pub carrier: bool,
    pub mtu: u32,
    pub alias: Option<String>,
    pub mac: String,
    /// vxlan: its VNI, local address and port.
    pub vxlan: Option<(u32, String, u16)>,
    /// vxlan: its one remote end, if it has one (else the FDB's flood list says).
    pub vxlan_remote: Option<String>,
}

/// The devices of the host (`None`) or of a namespace, by name.
pub async fn links(ns: Option<&str>) -> anyhow::Result<HashMap<String, Link>> {
    let mut out = HashMap::new();
    for l in ip_json(ns, &["-d", "link", "show"]).await? {
        let Some(name) = l["ifname"].as_str() else {
            continue;
        };
        let flags: Vec<&str> = l["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let info = &l["linkinfo"];
        let kind = info["info_kind"].as_str().unwrap_or_default().to_string();
        let vxlan = (kind == "vxlan").then(|| {
            let d = &info["info_data"];
            (
                d["id"].as_u64().unwrap_or(0) as u32,
                d["local"].as_str().unwrap_or_default().to_string(),
                d["port"].as_u64().unwrap_or(0) as u16,
            )
        });
        let vxlan_remote = info["info_data"]["remote"].as_str().map(str::to_string);
        out.insert(
            name.to_string(),
            Link {
                name: name.to_string(),
                kind,
                master: l["master"].as_str().map(str::to_string),
                up: flags.contains(&"UP"),
                carrier: flags.contains(&"LOWER_UP"),
                mtu: l["mtu"].as_u64().unwrap_or(0) as u32,
                alias: l["ifalias"].as_str().map(str::to_string),
                mac: l["address"].as_str().unwrap_or_default().to_string(),
                vxlan,
                vxlan_remote,
            },
        );
    }
    Ok(out)
}

/// IPv4 addresses (`a.b.c.d/len`) per device.
pub async fn addrs(ns: Option<&str>) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for l in ip_json(ns, &["-4", "addr", "show"]).await? {
        let Some(name) = l["ifname"].as_str() else {
            continue;
        };
        let list = out.entry(name.to_string()).or_default();
        for a in l["addr_info"].as_array().into_iter().flatten() {
            if let (Some(ip), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                list.push(format!("{ip}/{len}"));
            }
        }
    }
    Ok(out)
}

/// A route of the main table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// `default` or `a.b.c.d/len` (host routes as `a.b.c.d/32`).
    pub dst: String,
    pub via: Option<String>,
    pub dev: String,
}

pub async fn routes(ns: Option<&str>) -> anyhow::Result<Vec<Route>> {
    Ok(ip_json(ns, &["-4", "route", "show"])
        .await?
        .iter()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            let dst = if dst == "default" || dst.contains('/') {
                dst.to_string()
            } else {
                format!("{dst}/32")
            };
            Some(Route {
                dst,
                via: r["gateway"].as_str().map(str::to_string),
                dev: r["dev"].as_str()?.to_string(),
            })
        })
        .collect())
}

/// The remote addresses of the all-zero FDB entries of a VXLAN device (head-end
/// replication list).
pub async fn flood_list(dev: &str) -> anyhow::Result<Vec<String>> {
    let out = run("bridge", &["-j", "fdb", "show", "dev", dev]).await?;
    let v: Vec<Value> = if out.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&out).context("bridge fdb: not JSON")?
    };
    Ok(v.iter()
        .filter(|e| e["mac"] == "00:00:00:00:00:00")
        .filter_map(|e| e["dst"].as_str().map(str::to_string))
        .collect())
}

pub async fn fdb(op: &str, dev: &str, dst: &str) -> anyhow::Result<()> {
    run(
        "bridge",
        &["fdb", op, "00:00:00:00:00:00", "dev", dev, "dst", dst],
    )
    .await
    .map(|_| ())
}

pub async fn netns_list() -> anyhow::Result<Vec<String>> {
    Ok(ip_json(None, &["netns", "list"])
        .await?
        .iter()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect())
}

/// Delete a device; one that is already gone is fine.
pub async fn link_del(ns: Option<&str>, name: &str) -> anyhow::Result<()> {
    match ip(ns, &["link", "del", "dev", name]).await {
        Err(e) if format!("{e:#}").contains("Cannot find device") => Ok(()),
        other => other,
    }
}

/// A VXLAN device on the host without address learning: its remote ends are the FDB's
/// flood list, or the one `remote` (a point-to-point link).
pub async fn vxlan_add(
    name: &str,
    vni: u32,
    local: std::net::Ipv4Addr,
    remote: Option<std::net::Ipv4Addr>,
    port: u16,
) -> anyhow::Result<()> {
    let (vni, local, port) = (vni.to_string(), local.to_string(), port.to_string());
    let remote = remote.map(|r| r.to_string());
    let mut args = vec![
        "link", "add", name, "type", "vxlan", "id", &vni, "local", &local,
    ];
    if let Some(r) = &remote {
        args.extend(["remote", r.as_str()]);
    }
    args.extend(["dstport", &port, "nolearning"]);
    ip(None, &args).await
}

/// Load an nft ruleset (a whole file: one transaction) in the host or a namespace.
pub async fn nft_load(ns: Option<&str>, ruleset: &str) -> anyhow::Result<()> {
    match ns {
        None => run_input("nft", &["-f", "-"], Some(ruleset)).await,
        Some(ns) => {
            run_input(
                "ip",
                &["netns", "exec", ns, "nft", "-f", "-"],
                Some(ruleset),
            )
            .await
        }
    }
    .map(|_| ())
}

/// `nft list table …` text, or `None` when the table does not exist.
pub async fn nft_list(
    ns: Option<&str>,
    family: &str,
    table: &str,
) -> anyhow::Result<Option<String>> {
    let args = ["list", "table", family, table];
    let r = match ns {
        None => run("nft", &args).await,
        Some(ns) => {
            let mut a = vec!["netns", "exec", ns, "nft"];
            a.extend(args);
            run("ip", &a).await
        }
    };
    match r {
        Ok(t) => Ok(Some(t)),
        Err(e) if format!("{e:#}").contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn nft_delete(ns: Option<&str>, family: &str, table: &str) -> anyhow::Result<()> {
    if nft_list(ns, family, table).await?.is_some() {
        let text = format!("delete table {family} {table}\n");
        nft_load(ns, &text).await?;
    }
    Ok(())
}

/// Gratuitous ARP for `addr` from `dev` in namespace `ns`, so the external network learns
/// at once that the address moved here (best effort: a missing arping is only logged).
pub async fn gratuitous_arp(ns: &str, dev: &str, addr: &str) {
    if let Err(e) = run(
        "ip",
        &[
            "netns", "exec", ns, "arping", "-U", "-c", "1", "-I", dev, addr,
        ],
    )
    .await
    {
        tracing::warn!(ns, addr, "gratuitous ARP: {e:#}");
    }
}

pub fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

/// Run `f` on a helper thread inside namespace `ns` (the thread ends afterwards, so no
/// other code ever runs there). Sockets `f` creates stay in that namespace.
pub async fn in_netns<T, F>(ns: &str, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    let path = netns_path(ns);
    let ns = ns.to_string();
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || -> anyhow::Result<T> {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path).with_context(|| format!("namespace {ns}"))?;
            // SAFETY: a valid namespace fd; setns changes only this thread's namespace,
            // and the thread ends when `f` returns.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("entering namespace {ns}"));
            }
            Ok(f()?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace helper thread panicked"))?
    })
    .await?
}

/// Set sysctls (`net/ipv4/ip_forward` style keys) inside namespace `ns`, or on the host.
pub async fn sysctls(ns: Option<&str>, kv: &[(&str, &str)]) -> anyhow::Result<()> {
    let kv: Vec<(String, String)> = kv
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let write = move || -> std::io::Result<()> {
        for (k, v) in &kv {
            let p = Path::new("/proc/sys").join(k);
            let cur = std::fs::read_to_string(&p)?;
            if cur.trim() != v {
                std::fs::write(&p, v)?;
            }
        }
        Ok(())
    };
    match ns {
        Some(ns) => in_netns(ns, write).await,
        None => tokio::task::spawn_blocking(write)
            .await?
            .context("writing sysctls"),
    }
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Send `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill has no memory effects; the pid was checked to be ours by the caller.
    unsafe { libc::kill(pid, sig) == 0 }
}
