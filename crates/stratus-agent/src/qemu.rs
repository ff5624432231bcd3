//! One QEMU process per instance, driven over QMP.
//!
//! Every instance has a directory holding its overlay disk, config drive, serial console
//! log and pid file, and a QMP socket; its VNC console listens on TCP (password required). QEMU runs daemonized, so the agent can restart
//! without touching running guests: it finds them again through the pid file and socket.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::process::Command;
use uuid::Uuid;

use crate::accel::Accel;
use crate::qmp::{Qmp, QmpError};

/// What a guest is made of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VmSpec {
    pub id: Uuid,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub accel: Accel,
    /// qcow2 overlay holding the root disk.
    pub root_disk: PathBuf,
    /// NoCloud config drive, attached read-only.
    pub cidata: Option<PathBuf>,
    /// Where the VNC console listens (TCP, password required): an IP address…
    pub vnc_listen: String,
    /// …and a port, at least [`VNC_BASE_PORT`] (QEMU counts displays from there).
    pub vnc_port: u16,
}

/// VNC display 0.
pub const VNC_BASE_PORT: u16 = 5900;

/// `addr:display` for QEMU's `-vnc` option (IPv6 addresses in brackets).
fn vnc_address(listen: &str, port: u16) -> String {
    let display = port.saturating_sub(VNC_BASE_PORT);
    if listen.contains(':') && !listen.starts_with('[') {
        format!("[{listen}]:{display}")
    } else {
        format!("{listen}:{display}")
    }
}

/// A VNC port at or above [`VNC_BASE_PORT`] that nothing listens on (tried by binding),
/// skipping `taken` (ports of other guests that may be stopped right now).
pub fn free_vnc_port(listen: &str, taken: &[u16]) -> std::io::Result<u16> {
    let ip: std::net::IpAddr = listen
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("VNC listen address {listen:?}: {e}"),
            )
        })?;
    (VNC_BASE_PORT..VNC_BASE_PORT + 1000)
        .filter(|p| !taken.contains(p))
        .find(|p| vnc_port_free(ip, *p))
        .ok_or_else(|| std::io::Error::other("no free VNC port in 5900-6899"))
}

/// True if nothing listens on `ip:port` right now.
pub fn vnc_port_free(ip: std::net::IpAddr, port: u16) -> bool {
    std::net::TcpListener::bind((ip, port)).is_ok()
}

/// The files of one instance. Sockets live apart, under `<state>/s/`, with short names:
/// unix socket paths must stay under 108 bytes.
#[derive(Debug, Clone)]
pub struct VmDir(pub PathBuf, PathBuf);

impl VmDir {
    pub fn new(state_dir: &Path, id: Uuid) -> VmDir {
        VmDir(
            state_dir.join("instances").join(id.to_string()),
            state_dir.join("s").join(id.simple().to_string()),
        )
    }
    /// Create the instance and socket directories.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.0)?;
        std::fs::create_dir_all(self.1.parent().unwrap_or(Path::new("/")))
    }
    pub fn qmp(&self) -> PathBuf {
        self.1.with_extension("qmp")
    }
    /// The VNC socket of earlier versions (VNC now listens on TCP); removed with the rest.
    pub fn vnc(&self) -> PathBuf {
        self.1.with_extension("vnc")
    }
    pub fn console(&self) -> PathBuf {
        self.0.join("console.log")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.0.join("qemu.pid")
    }
    pub fn root_disk(&self) -> PathBuf {
        self.0.join("root.qcow2")
    }
    pub fn cidata(&self) -> PathBuf {
        self.0.join("cidata.img")
    }
    /// Memory and device state while suspended.
    pub fn saved_state(&self) -> PathBuf {
        self.0.join("suspended.state")
    }
}

/// What QEMU says about the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// No QEMU process.
    Off,
    Running,
    Paused,
    /// QEMU is up but the guest is not running (shut down, crashed, migrating…).
    Other,
}

/// Raw counters; rates come from two samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VmCounters {
    /// CPU time QEMU used, in seconds (all vCPU and I/O threads).
    pub cpu_seconds: f64,
    /// Resident memory of the QEMU process, bytes.
    pub rss_bytes: u64,
    /// Memory the guest has (balloon), bytes.
    pub guest_memory_bytes: u64,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub disk_read_ops: u64,
    pub disk_write_ops: u64,
}

const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// The QEMU command line of a spec.
pub fn command_line(spec: &VmSpec, dir: &VmDir, incoming: bool) -> Vec<String> {
    let cpu = match spec.accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    };
    let mut a: Vec<String> = vec![
        "-name".into(),
        format!("guest={},debug-threads=on", spec.id),
        "-uuid".into(),
        spec.id.to_string(),
        "-machine".into(),
        format!("pc,accel={}", spec.accel.as_str()),
        "-cpu".into(),
        cpu.into(),
        "-smp".into(),
        spec.vcpus.to_string(),
        "-m".into(),
        format!("{}M", spec.memory_mib),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-vga".into(),
        "std".into(),
        "-vnc".into(),
        format!(
            "{},password=on",
            vnc_address(&spec.vnc_listen, spec.vnc_port)
        ),
        "-chardev".into(),
        format!("file,id=console,path={},append=on", dir.console().display()),
        "-serial".into(),
        "chardev:console".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", dir.qmp().display()),
        "-pidfile".into(),
        dir.pidfile().display().to_string(),
        "-daemonize".into(),
        // seccomp: no obsolete syscalls, no scheduler/affinity changes. (`spawn=deny` and
        // `elevateprivileges=deny` block the fork and setsid that -daemonize needs.)
        "-sandbox".into(),
        "on,obsolete=deny,resourcecontrol=deny".into(),
        "-drive".into(),
        format!(
            "file={},if=none,id=root,format=qcow2,discard=unmap",
            spec.root_disk.display()
        ),
        "-device".into(),
        "virtio-blk-pci,drive=root,id=root-disk,bootindex=1".into(),
        "-device".into(),
        "virtio-balloon-pci,id=balloon".into(),
    ];
    if let Some(c) = &spec.cidata {
        a.extend([
            "-drive".into(),
            format!(
                "file={},if=none,id=cidata,format=raw,readonly=on",
                c.display()
            ),
            "-device".into(),
            "virtio-blk-pci,drive=cidata,id=cidata-disk".into(),
        ]);
    }
    if incoming {
        a.extend(["-incoming".into(), "defer".into()]);
    }
    a
}

fn pid_alive(pid: u32, id: Uuid) -> bool {
    // The pid must still be our QEMU (pids are reused).
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(&id.to_string()))
        .unwrap_or(false)
}

/// The pid of the instance's QEMU, if it runs.
pub fn pid(dir: &VmDir, id: Uuid) -> Option<u32> {
    let text = std::fs::read_to_string(dir.pidfile()).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    pid_alive(pid, id).then_some(pid)
}

pub async fn qmp(dir: &VmDir) -> Result<Qmp, QmpError> {
    Qmp::connect(&dir.qmp(), QMP_TIMEOUT).await
}

/// Start QEMU for `spec`. With `resume`, the guest continues from its saved state.
pub async fn start(spec: &VmSpec, dir: &VmDir, resume: bool) -> anyhow::Result<()> {
    if pid(dir, spec.id).is_some() {
        return Ok(());
    }
    let _ = tokio::fs::remove_file(dir.qmp()).await;
    let _ = tokio::fs::remove_file(dir.vnc()).await;
    let incoming = resume && dir.saved_state().exists();
    let out = Command::new("qemu-system-x86_64")
        .args(command_line(spec, dir, incoming))
        .stdin(Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        anyhow::bail!(
            "qemu-system-x86_64 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut q = qmp(dir).await?;
    if incoming {
        q.execute(
            "migrate-incoming",
            Some(json!({"uri": format!("file:{}", dir.saved_state().display())})),
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while q.execute("query-status", None).await?["status"] == "inmigrate" {
            anyhow::ensure!(
                Instant::now() < deadline,
                "restoring the saved state took too long"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        q.execute("cont", None).await?;
        tokio::fs::remove_file(dir.saved_state()).await?;
    }
    // A fresh random VNC password: consoles get one-time passwords through the API.
    q.execute(
        "change-vnc-password",
        Some(json!({"password": crate::random_password(8)})),
    )
    .await?;
    Ok(())
}

pub async fn power_state(dir: &VmDir, id: Uuid) -> PowerState {
    if pid(dir, id).is_none() {
        return PowerState::Off;
    }
    match qmp(dir).await {
        Ok(mut q) => match q.execute("query-status", None).await {
            Ok(st) => match st["status"].as_str() {
                Some("running") => PowerState::Running,
                Some("paused") => PowerState::Paused,
                _ => PowerState::Other,
            },
            Err(_) => PowerState::Other,
        },
        Err(_) => PowerState::Other,
    }
}

async fn wait_gone(dir: &VmDir, id: Uuid, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pid(dir, id).is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pid(dir, id).is_none()
}

/// Stop the guest: ACPI power button first; after `graceful` the process is told to quit,
/// and killed if even that fails. Returns true if the guest shut down by itself.
pub async fn stop(dir: &VmDir, id: Uuid, graceful: Duration) -> anyhow::Result<bool> {
    if pid(dir, id).is_none() {
        return Ok(true);
    }
    if !graceful.is_zero() {
        if let Ok(mut q) = qmp(dir).await {
            // -no-shutdown is not set: a guest that powers off ends the QEMU process.
            if q.execute("system_powerdown", None).await.is_ok()
                && wait_gone(dir, id, graceful).await
            {
                return Ok(true);
            }
        }
    }
    if let Ok(mut q) = qmp(dir).await {
        let _ = q.execute("quit", None).await;
    }
    if !wait_gone(dir, id, Duration::from_secs(10)).await {
        if let Some(p) = pid(dir, id) {
            let _ = Command::new("kill")
                .args(["-9", &p.to_string()])
                .status()
                .await;
        }
        anyhow::ensure!(
            wait_gone(dir, id, Duration::from_secs(10)).await,
            "QEMU {id} did not die"
        );
    }
    Ok(false)
}

/// Set the console's VNC password, valid until `expires_at` (seconds since the epoch;
/// `None` = until the next one is set).
pub async fn set_vnc_password(
    dir: &VmDir,
    password: &str,
    expires_at: Option<i64>,
) -> anyhow::Result<()> {
    let mut q = qmp(dir).await?;
    q.execute("change-vnc-password", Some(json!({"password": password})))
        .await?;
    let time = expires_at.map_or_else(|| "never".to_string(), |t| t.to_string());
    q.execute(
        "expire_password",
        Some(json!({"protocol": "vnc", "time": time})),
    )
    .await?;
    Ok(())
}

/// Hard reset (the reset button).
pub async fn reset(dir: &VmDir) -> anyhow::Result<()> {
    qmp(dir).await?.execute("system_reset", None).await?;
    Ok(())
}

pub async fn pause(dir: &VmDir) -> anyhow::Result<()> {
    qmp(dir).await?.execute("stop", None).await?;
    Ok(())
}

pub async fn unpause(dir: &VmDir) -> anyhow::Result<()> {
    qmp(dir).await?.execute("cont", None).await?;
    Ok(())
}

/// Save memory and device state to disk and end the process; [`start`] with `resume`
/// continues where the guest left off.
pub async fn suspend(dir: &VmDir, id: Uuid) -> anyhow::Result<()> {
    let mut q = qmp(dir).await?;
    q.execute("stop", None).await?;
    let tmp = dir.saved_state().with_extension("saving");
    let _ = tokio::fs::remove_file(&tmp).await;
    q.execute(
        "migrate",
        Some(json!({"uri": format!("file:{}", tmp.display())})),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let st = q.execute("query-migrate", None).await?;
        match st["status"].as_str() {
            Some("completed") => break,
            Some("failed") | Some("cancelled") => {
                anyhow::bail!("saving guest state failed: {}", st["error-desc"])
            }
            _ => {}
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "saving guest state took too long"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::fs::rename(&tmp, dir.saved_state()).await?;
    let _ = q.execute("quit", None).await;
    anyhow::ensure!(
        wait_gone(dir, id, Duration::from_secs(10)).await,
        "QEMU did not exit after suspend"
    );
    Ok(())
}

/// A one-time VNC password for the console; valid until the next one is set.
pub async fn vnc_password(dir: &VmDir) -> anyhow::Result<String> {
    let pw = crate::random_password(8);
    qmp(dir)
        .await?
        .execute("change-vnc-password", Some(json!({"password": pw})))
        .await?;
    Ok(pw)
}

/// Counters for the metrics collector.
pub async fn counters(dir: &VmDir, id: Uuid) -> anyhow::Result<VmCounters> {
    let pid = pid(dir, id).ok_or_else(|| anyhow::anyhow!("instance {id} is not running"))?;
    let stat = tokio::fs::read_to_string(format!("/proc/{pid}/stat")).await?;
    // Fields after the parenthesised command: utime is the 14th field, stime the 15th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = tokio::fs::read_to_string(format!("/proc/{pid}/status")).await?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let mut c = VmCounters {
        cpu_seconds: ticks / 100.0,
        rss_bytes: rss_kib * 1024,
        ..Default::default()
    };
    let mut q = qmp(dir).await?;
    if let Ok(b) = q.execute("query-balloon", None).await {
        c.guest_memory_bytes = b["actual"].as_u64().unwrap_or(0);
    }
    if let Ok(stats) = q.execute("query-blockstats", None).await {
        for dev in stats.as_array().into_iter().flatten() {
            let s = &dev["stats"];
            c.disk_read_bytes += s["rd_bytes"].as_u64().unwrap_or(0);
            c.disk_write_bytes += s["wr_bytes"].as_u64().unwrap_or(0);
            c.disk_read_ops += s["rd_operations"].as_u64().unwrap_or(0);
            c.disk_write_ops += s["wr_operations"].as_u64().unwrap_or(0);
        }
    }
    Ok(c)
}

/// The end of the serial console log (at most `max` bytes).
pub async fn console_tail(dir: &VmDir, max: usize) -> anyhow::Result<String> {
    let data = match tokio::fs::read(dir.console()).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let start = data.len().saturating_sub(max);
    Ok(String::from_utf8_lossy(&data[start..]).into_owned())
}
