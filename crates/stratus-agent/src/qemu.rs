//! One QEMU process per instance, driven over QMP.
//!
//! Every instance has a directory holding its overlay disk, config drive, serial console
//! log and pid file, and a QMP socket and a serial console socket; its VNC console listens
//! on TCP (password required). QEMU runs daemonized, so the agent can restart without
//! touching running guests: it finds them again through the pid file and socket.
//!
//! Data volumes are `virtio-blk-pci` devices straight on a volume's format node (see
//! [`crate::pool::Nodes`]): given on the command line when QEMU starts, hot-plugged and
//! unplugged over QMP while it runs, throttled on the device's BlockBackend.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::process::Command;
use uuid::Uuid;

use crate::accel::Accel;
use crate::pool::Nodes;
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
    /// Data volumes, in the order the guest sees them.
    #[serde(default)]
    pub volumes: Vec<VolumeDisk>,
    /// Boot from this volume instead of `root_disk`.
    #[serde(default)]
    pub boot: Option<VolumeDisk>,
    /// NICs, in the order the guest sees them (their taps exist before QEMU starts).
    #[serde(default)]
    pub nics: Vec<NicDevice>,
}

/// A guest NIC: a virtio-net device on a tap of the host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NicDevice {
    pub tap: String,
    pub mac: String,
}

/// NICs a guest may have. They sit on fixed PCI slots from [`NIC_FIRST_SLOT`] on, so
/// their addresses (and the guest's interface names) do not depend on how many volumes
/// are plugged; root disk, balloon, config drive and up to 10 volumes take the automatic
/// slots below (3–15), more volumes the slots after the NICs.
pub const MAX_NICS: usize = 16;
pub const NIC_FIRST_SLOT: usize = 0x10;

/// A data volume as one guest's disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeDisk {
    pub volume_id: Uuid,
    /// The block node tree ([`crate::pool::StoragePool::blockdev`]) as JSON text.
    pub blockdev: String,
    /// The serial the guest sees.
    pub serial: String,
    /// Other guests may write it too (`share-rw=on`).
    pub shareable: bool,
}

impl VolumeDisk {
    fn nodes(&self) -> Nodes {
        Nodes::of(self.volume_id)
    }
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
    /// The interactive serial console (a unix socket; its output also goes to
    /// [`VmDir::console`]).
    pub fn serial(&self) -> PathBuf {
        self.1.with_extension("serial")
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
        // A socket for interactive use; the log file records everything even with no client.
        format!(
            "socket,id=console,path={},server=on,wait=off,logfile={},logappend=on",
            dir.serial().display(),
            dir.console().display()
        ),
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
    ];
    match &spec.boot {
        // Named like a data volume, so the volume's QMP operations (grow, snapshot, backup,
        // limits) reach it the same way.
        Some(b) => a.extend([
            "-blockdev".into(),
            b.blockdev.clone(),
            "-device".into(),
            format!("{},bootindex=1", volume_device_option(b)),
        ]),
        None => a.extend([
            "-drive".into(),
            format!(
                "file={},if=none,id=root,format=qcow2,discard=unmap",
                spec.root_disk.display()
            ),
            "-device".into(),
            "virtio-blk-pci,drive=root,id=root-disk,bootindex=1".into(),
        ]),
    }
    a.extend(["-device".into(), "virtio-balloon-pci,id=balloon".into()]);
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
    for (i, n) in spec.nics.iter().enumerate() {
        // No vhost (this kernel has no vhost-net) and no scripts: the agent made the tap.
        a.extend([
            "-netdev".into(),
            format!(
                "tap,id=net{i},ifname={},script=no,downscript=no",
                opt_escape(&n.tap)
            ),
            "-device".into(),
            format!(
                "virtio-net-pci,netdev=net{i},mac={},id=nic{i},addr={:#x}",
                opt_escape(&n.mac),
                NIC_FIRST_SLOT + i
            ),
        ]);
    }
    for v in &spec.volumes {
        a.extend([
            "-blockdev".into(),
            v.blockdev.clone(),
            "-device".into(),
            volume_device_option(v),
        ]);
    }
    if incoming {
        a.extend(["-incoming".into(), "defer".into()]);
    }
    a
}

/// QEMU's option syntax: a comma inside a value is written twice.
fn opt_escape(v: &str) -> String {
    v.replace(',', ",,")
}

fn volume_device_option(v: &VolumeDisk) -> String {
    let n = v.nodes();
    let mut o = format!(
        "virtio-blk-pci,drive={},id={},serial={}",
        n.format,
        n.device,
        opt_escape(&v.serial)
    );
    if v.shareable {
        o.push_str(",share-rw=on");
    }
    o
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

// ------------------------------------------------------------------ volumes over QMP
//
// QEMU serves one QMP client at a time, so every call below holds its connection only for
// one command: waits poll with fresh connections and the reporter is not shut out.

async fn exec(dir: &VmDir, command: &str, arguments: Value) -> Result<Value, QmpError> {
    qmp(dir).await?.execute(command, Some(arguments)).await
}

/// Limit a volume's device to `max_iops` operations and `max_mbps` MB/s (reads and
/// writes together; 0 = unlimited).
pub async fn set_throttle(
    dir: &VmDir,
    volume: Uuid,
    max_iops: i64,
    max_mbps: i64,
) -> anyhow::Result<()> {
    let n = Nodes::of(volume);
    exec(
        dir,
        "block_set_io_throttle",
        json!({
            // The BlockBackend's QOM path: the plain device id is not accepted.
            "id": format!("/machine/peripheral/{}/virtio-backend", n.device),
            "bps": max_mbps.max(0).saturating_mul(1_000_000),
            "bps_rd": 0,
            "bps_wr": 0,
            "iops": max_iops.max(0),
            "iops_rd": 0,
            "iops_wr": 0,
        }),
    )
    .await
    .context("block_set_io_throttle")?;
    Ok(())
}

/// Add a volume's nodes and its disk device to the running guest.
pub async fn hot_plug(dir: &VmDir, v: &VolumeDisk) -> anyhow::Result<()> {
    let n = v.nodes();
    let node: Value = serde_json::from_str(&v.blockdev).context("the volume's block node")?;
    // Nodes left by an unplug that timed out (the guest let go later) are in the way.
    if has_node(dir, &n.format).await? {
        exec(dir, "blockdev-del", json!({"node-name": n.format}))
            .await
            .context("removing the volume's old node")?;
    }
    exec(dir, "blockdev-add", node)
        .await
        .context("blockdev-add")?;
    let mut dev = json!({
        "driver": "virtio-blk-pci",
        "id": n.device,
        "drive": n.format,
        "serial": v.serial,
    });
    if v.shareable {
        dev["share-rw"] = json!(true);
    }
    if let Err(e) = exec(dir, "device_add", dev).await {
        let _ = exec(dir, "blockdev-del", json!({"node-name": n.format})).await;
        return Err(e).context("device_add");
    }
    Ok(())
}

/// Ids of the guest's devices that were given ids (`/machine/peripheral`).
pub async fn peripherals(dir: &VmDir) -> anyhow::Result<Vec<String>> {
    let list = exec(dir, "qom-list", json!({"path": "/machine/peripheral"})).await?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect())
}

async fn has_node(dir: &VmDir, node: &str) -> anyhow::Result<bool> {
    let nodes = exec(dir, "query-named-block-nodes", json!({"flat": true})).await?;
    Ok(nodes
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n["node-name"] == node))
}

/// Unplug a volume's disk: ask the guest to release it, wait until it has (at most
/// `timeout`), then remove the nodes. Safe to repeat after a timeout.
pub async fn hot_unplug(dir: &VmDir, volume: Uuid, timeout: Duration) -> anyhow::Result<()> {
    let n = Nodes::of(volume);
    let deadline = Instant::now() + timeout;
    if peripherals(dir).await?.contains(&n.device) {
        // A repeated request while the first is pending is refused; the wait below counts.
        if let Err(e) = exec(dir, "device_del", json!({"id": n.device})).await {
            tracing::debug!(%volume, "device_del: {e}");
        }
        while peripherals(dir).await?.contains(&n.device) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the guest did not release the disk within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The device leaves the QOM tree a moment before its BlockBackend lets go of the node
    // (measured: a throttled disk's node was still "in use" right after).
    while has_node(dir, &n.format).await? {
        match exec(dir, "blockdev-del", json!({"node-name": n.format})).await {
            Ok(_) => break,
            Err(QmpError::Command { desc, .. })
                if desc.contains("in use") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).context("blockdev-del"),
        }
    }
    Ok(())
}

/// Grow an attached volume to `size` bytes (the guest sees the new size at once).
pub async fn block_resize(dir: &VmDir, volume: Uuid, size: u64) -> anyhow::Result<()> {
    exec(
        dir,
        "block_resize",
        json!({"node-name": Nodes::of(volume).format, "size": size}),
    )
    .await
    .context("block_resize")?;
    Ok(())
}

/// Take (`create`) or delete an internal snapshot of an attached qcow2 volume.
pub async fn snapshot_internal(
    dir: &VmDir,
    volume: Uuid,
    name: &str,
    create: bool,
) -> anyhow::Result<()> {
    let command = if create {
        "blockdev-snapshot-internal-sync"
    } else {
        "blockdev-snapshot-delete-internal-sync"
    };
    exec(
        dir,
        command,
        json!({"device": Nodes::of(volume).format, "name": name}),
    )
    .await
    .context(command)?;
    Ok(())
}

/// Copy an attached volume's data as of now into `target` (an existing qcow2 file of the
/// volume's size) with a full backup job; `tag` (≤ 30 characters) names the job and the
/// target node. Waits for the job; the target node is removed in any case.
pub async fn backup(dir: &VmDir, volume: Uuid, target: &Path, tag: &str) -> anyhow::Result<()> {
    let (job, node) = (format!("j{tag}"), format!("b{tag}"));
    exec(
        dir,
        "blockdev-add",
        json!({
            "driver": "qcow2",
            "node-name": node,
            "file": {"driver": "file", "filename": target.display().to_string()},
        }),
    )
    .await
    .context("adding the backup target")?;
    let outcome = async {
        exec(
            dir,
            "blockdev-backup",
            json!({
                "job-id": job,
                "device": Nodes::of(volume).format,
                "target": node,
                "sync": "full",
                // Kept until dismissed, so its outcome can be read after it ends.
                "auto-dismiss": false,
            }),
        )
        .await
        .context("blockdev-backup")?;
        loop {
            let jobs = exec(dir, "query-jobs", json!({})).await?;
            let ours = jobs
                .as_array()
                .into_iter()
                .flatten()
                .find(|j| j["id"] == job.as_str())
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("the backup job disappeared"))?;
            if ours["status"] == "concluded" {
                let _ = exec(dir, "job-dismiss", json!({"id": job})).await;
                return match ours["error"].as_str() {
                    Some(e) => Err(anyhow::anyhow!("backup job: {e}")),
                    None => Ok(()),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    if outcome.is_err() {
        let _ = exec(dir, "job-cancel", json!({"id": job, "force": true})).await;
        let _ = exec(dir, "job-dismiss", json!({"id": job})).await;
    }
    let removed = exec(dir, "blockdev-del", json!({"node-name": node})).await;
    outcome?;
    removed.context("removing the backup target")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nics_sit_on_fixed_slots_without_vhost_or_scripts() {
        let id = Uuid::new_v4();
        let spec = VmSpec {
            id,
            vcpus: 1,
            memory_mib: 256,
            accel: Accel::Tcg,
            root_disk: "/r.qcow2".into(),
            cidata: None,
            vnc_listen: "127.0.0.1".into(),
            vnc_port: 5900,
            volumes: vec![],
            boot: None,
            nics: (0..MAX_NICS)
                .map(|i| NicDevice {
                    tap: format!("stt{i:010x}"),
                    mac: format!("fa:16:3e:00:00:{i:02x}"),
                })
                .collect(),
        };
        let a = command_line(&spec, &VmDir::new(Path::new("/s"), id), false);
        let devs: Vec<&String> = a
            .iter()
            .filter(|x| x.starts_with("virtio-net-pci"))
            .collect();
        assert_eq!(devs.len(), MAX_NICS);
        assert_eq!(
            devs[0],
            "virtio-net-pci,netdev=net0,mac=fa:16:3e:00:00:00,id=nic0,addr=0x10"
        );
        assert!(devs[15].ends_with("addr=0x1f"), "{}", devs[15]);
        let tap = a.iter().find(|x| x.starts_with("tap,")).unwrap();
        assert_eq!(
            tap,
            "tap,id=net0,ifname=stt0000000000,script=no,downscript=no"
        );
        assert!(!a.iter().any(|x| x.contains("vhost")));
    }
}
