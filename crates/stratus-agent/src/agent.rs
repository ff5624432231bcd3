//! The host agent: joins the control plane, long-polls the host's desired state, converges
//! every instance on it with the QEMU data plane, and reports what actually runs.
//!
//! Each instance has a worker: instances converge in parallel, one instance's steps one at a
//! time. What was applied is kept in `<state_dir>/instances/<id>/applied.json` (written
//! atomically), so a restarted agent carries on where it stopped; QEMU runs daemonized, so
//! guests keep running while the agent is down or the control plane unreachable.
//!
//! An instance converges when its desired generation changes, once after the agent starts
//! (so guests that should run are started again after a host reboot), and again after a
//! backoff when converging a built instance failed. A guest that powers itself off is
//! reported `stopped`; the agent does not restart it on its own.
//!
//! Volumes and backups in the desired state have workers of their own ([`crate::volumes`]).
//! An instance's data volumes are part of its converge: cold-plugged when QEMU starts,
//! hot-plugged and unplugged while it runs (never while suspended: the saved device state
//! must match), with the volumes' locks held so that no volume operation runs meanwhile.
//! Which volumes a running QEMU has is kept in `applied.json` (`attached`), where the volume
//! workers look for the QEMU to send online operations to.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use stratus_api::{
    ActualState, AgentReport, AttachmentError, DesiredAttachment, DesiredInstance, DesiredNetwork,
    DesiredNic, DesiredPower, DesiredState, GuestCounters, HostFacts, InstanceReport,
};
use tokio::sync::{watch, Mutex, Notify};
use uuid::Uuid;

use crate::accel::{self, Accel};
use crate::client::{AgentClient, Backoff, HashingFile};
use crate::identity;
use crate::network::{self, Network};
use crate::pool::{LocalPool, Nodes, StoragePool};
use crate::qemu::{self, PowerState, VmDir, VmSpec};
use crate::volumes::{Backup, Volume};
use crate::workers::Workers;
use crate::{cidata, disk, volumes};

/// Console output sent per instance and report, at most.
pub const CONSOLE_CHUNK: usize = 64 << 10;

/// Fault injection points (a test instrument): a build step named here fails after doing
/// its work, so the cleanup is exercised.
pub const FAULTS: [&str; 7] = [
    "agent.image",
    "agent.disk",
    "agent.cidata",
    "agent.start",
    "agent.volume",
    "agent.attach",
    "agent.backup",
];

/// How long a guest may take to release a hot-unplugged disk before the detach is
/// reported as failed (the disk then stays attached).
pub const UNPLUG_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Control plane URL; may be empty once the host has joined (`agent.json` has it).
    pub server: String,
    /// Needed only to join (when `<state_dir>/agent.json` does not exist yet).
    pub join_token: Option<String>,
    pub state_dir: PathBuf,
    /// `None`: probe which accelerator really boots guests (cached in the state dir).
    pub hypervisor: Option<Accel>,
    /// Address VNC consoles listen on (default `0.0.0.0`).
    pub vnc_listen: String,
    /// Reported hostname; default the system's.
    pub hostname: Option<String>,
    /// Injected faults, see [`FAULTS`] (tests only).
    pub faults: Vec<String>,
    /// Where backup copies of volumes are kept; default `<state_dir>/backups`.
    pub backup_dir: Option<PathBuf>,
    /// This host's address for VXLAN tunnels, reported to the control plane (none: the
    /// host's subnets do not span hosts).
    pub tunnel_ip: Option<String>,
}

impl AgentConfig {
    pub fn new(server: impl Into<String>, state_dir: impl Into<PathBuf>) -> AgentConfig {
        AgentConfig {
            server: server.into(),
            join_token: None,
            state_dir: state_dir.into(),
            hypervisor: None,
            vnc_listen: "0.0.0.0".into(),
            hostname: None,
            faults: Vec::new(),
            backup_dir: None,
            tunnel_ip: None,
        }
    }
}

// ------------------------------------------------------------------ images

/// Where base images come from and captured images go.
#[derive(Debug, Clone)]
pub enum ImageStore {
    /// The control plane (`/v1/agent/images/{id}`).
    Server(AgentClient),
    /// A directory of `<image id>.qcow2` files (tests and air-gapped bring-up).
    Local(PathBuf),
}

impl ImageStore {
    async fn fetch(&self, image_id: Uuid, sha256: &str, dst: &Path) -> anyhow::Result<()> {
        match self {
            ImageStore::Server(c) => Ok(c.image_download(image_id, sha256, dst).await?),
            ImageStore::Local(dir) => {
                use tokio::io::AsyncReadExt;
                let src = dir.join(format!("{image_id}.qcow2"));
                let mut f = tokio::fs::File::open(&src)
                    .await
                    .with_context(|| src.display().to_string())?;
                let mut sink = HashingFile::create(dst).await?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    sink.write(&buf[..n]).await?;
                }
                Ok(sink.finish(sha256).await?)
            }
        }
    }

    async fn store(&self, image_id: Uuid, src: &Path) -> anyhow::Result<()> {
        match self {
            ImageStore::Server(c) => Ok(c.image_upload(image_id, src).await?),
            ImageStore::Local(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                let dst = dir.join(format!("{image_id}.qcow2"));
                let tmp = dst.with_extension("storing");
                tokio::fs::copy(src, &tmp).await?;
                tokio::fs::rename(&tmp, &dst).await?;
                Ok(())
            }
        }
    }
}

// ------------------------------------------------------------------ host

/// What all instances and volumes of this host share: directories, accelerator, VNC
/// ports, images, the storage pool and the per-volume locks.
pub struct Host {
    pub state_dir: PathBuf,
    pub accel: Accel,
    pub vnc_listen: String,
    pub faults: Vec<String>,
    pub images: ImageStore,
    /// Where volumes live (a [`LocalPool`] in `<state_dir>/volumes` by default).
    pub pool: Arc<dyn StoragePool>,
    /// Where backup copies live (`<state_dir>/backups` by default).
    pub backup_dir: PathBuf,
    image_locks: StdMutex<HashMap<Uuid, Arc<Mutex<()>>>>,
    volume_locks: StdMutex<HashMap<Uuid, Arc<Mutex<()>>>>,
    vnc_ports: StdMutex<HashMap<Uuid, u16>>,
}

impl Host {
    /// `state_dir` is created and made absolute (overlays refer to cached base images by path).
    pub fn new(
        state_dir: &Path,
        accel: Accel,
        vnc_listen: &str,
        faults: Vec<String>,
        images: ImageStore,
    ) -> anyhow::Result<Host> {
        std::fs::create_dir_all(state_dir.join("instances"))
            .with_context(|| state_dir.display().to_string())?;
        std::fs::create_dir_all(state_dir.join("images"))?;
        let state_dir = std::fs::canonicalize(state_dir)?;
        let backup_dir = state_dir.join("backups");
        std::fs::create_dir_all(&backup_dir)?;
        Ok(Host {
            pool: Arc::new(LocalPool::new(&state_dir.join("volumes"))?),
            backup_dir,
            state_dir,
            accel,
            vnc_listen: vnc_listen.to_string(),
            faults,
            images,
            image_locks: StdMutex::default(),
            volume_locks: StdMutex::default(),
            vnc_ports: StdMutex::default(),
        })
    }

    /// Keep backup copies in `dir` instead of `<state_dir>/backups`.
    pub fn with_backup_dir(mut self, dir: &Path) -> anyhow::Result<Host> {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        self.backup_dir = std::fs::canonicalize(dir)?;
        Ok(self)
    }

    /// Hold the locks of `volumes` (in one order, so holders of several never deadlock):
    /// all work on a volume — its own converge, backups, attach and detach — is serial.
    pub async fn lock_volumes(&self, volumes: &[Uuid]) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut ids = volumes.to_vec();
        ids.sort();
        ids.dedup();
        let locks: Vec<Arc<Mutex<()>>> = {
            let mut table = self.volume_locks.lock().unwrap_or_else(|p| p.into_inner());
            ids.iter()
                .map(|id| table.entry(*id).or_default().clone())
                .collect()
        };
        let mut held = Vec::with_capacity(locks.len());
        for l in locks {
            held.push(l.lock_owned().await);
        }
        held
    }

    pub(crate) fn fault(&self, name: &str) -> anyhow::Result<()> {
        if self.faults.iter().any(|f| f == name) {
            anyhow::bail!("injected fault at {name}");
        }
        Ok(())
    }

    /// The cached base image, downloaded (once, even for parallel builds) if missing.
    pub(crate) async fn image(&self, image_id: Uuid, sha256: &str) -> anyhow::Result<PathBuf> {
        let path = self
            .state_dir
            .join("images")
            .join(format!("{image_id}.qcow2"));
        let lock = self
            .image_locks
            .lock()
            .map_err(|_| anyhow::anyhow!("image lock poisoned"))?
            .entry(image_id)
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            self.images.fetch(image_id, sha256, &path).await?;
        }
        Ok(path)
    }

    /// A VNC port for `id`: the one it had if still free, else a new free one.
    fn vnc_port(&self, id: Uuid, previous: Option<u16>) -> anyhow::Result<u16> {
        let mut ports = self
            .vnc_ports
            .lock()
            .map_err(|_| anyhow::anyhow!("port table poisoned"))?;
        let taken: Vec<u16> = ports
            .iter()
            .filter(|(k, _)| **k != id)
            .map(|(_, p)| *p)
            .collect();
        let ip: std::net::IpAddr = self
            .vnc_listen
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .with_context(|| format!("VNC listen address {:?}", self.vnc_listen))?;
        let port = match previous {
            Some(p) if !taken.contains(&p) && qemu::vnc_port_free(ip, p) => p,
            _ => qemu::free_vnc_port(&self.vnc_listen, &taken)?,
        };
        ports.insert(id, port);
        Ok(port)
    }

    fn remember_port(&self, id: Uuid, port: Option<u16>) {
        if let Ok(mut ports) = self.vnc_ports.lock() {
            match port {
                Some(p) => ports.insert(id, p),
                None => ports.remove(&id),
            };
        }
    }
}

// ------------------------------------------------------------------ one instance

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Capture {
    image_id: Uuid,
    error: Option<String>,
}

/// What was applied to one instance (`applied.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    version: u32,
    /// The last desired instance converged to, without its console password.
    desired: Option<DesiredInstance>,
    /// Its generation (also set after a failure: the outcome of that generation).
    generation: i64,
    /// Disks and config drive exist.
    built: bool,
    error: Option<String>,
    /// Deleted: no process, no files (kept in memory only).
    gone: bool,
    soft_reboots: i64,
    hard_reboots: i64,
    console_serial: i64,
    vnc_port: Option<u16>,
    /// Console log bytes the control plane acknowledged.
    console_offset: u64,
    root_disk_gib: i64,
    capture: Option<Capture>,
    /// Volumes the guest's QEMU has (running, paused, or in the saved state of a suspended
    /// guest), as attached: the volume workers find a volume's running users here.
    #[serde(default)]
    attached: Vec<DesiredAttachment>,
    /// Attachments or detachments that failed in the last converge.
    #[serde(default)]
    volume_errors: Vec<AttachmentError>,
    /// The volume the guest boots from (its root disk), while QEMU has it open.
    #[serde(default)]
    boot: Option<DesiredAttachment>,
}

const RECORD_VERSION: u32 = 1;

/// One instance on this host: its files, its applied record, its last reported state.
pub struct Instance {
    pub id: Uuid,
    dir: VmDir,
    rec: Mutex<Applied>,
    /// Held while converging: one step at a time.
    work: Mutex<()>,
    busy: AtomicBool,
    building: AtomicBool,
    /// The state reported while the instance is busy (the one seen last when idle).
    last_state: StdMutex<ActualState>,
}

/// `n` GiB in bytes (sizes must be positive).
pub(crate) fn gib(n: i64) -> anyhow::Result<u64> {
    u64::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(1 << 30))
        .ok_or_else(|| anyhow::anyhow!("invalid size {n} GiB"))
}

fn wants_running(p: DesiredPower) -> bool {
    matches!(p, DesiredPower::Running | DesiredPower::Paused)
}

/// Cut console bytes at a character boundary (an incomplete UTF-8 sequence at the end is
/// left for the next report). Returns the text and how many bytes it covers.
fn console_text(bytes: &[u8]) -> (String, usize) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), bytes.len()),
        Err(e) if e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4 => {
            let n = e.valid_up_to();
            (String::from_utf8_lossy(&bytes[..n]).into_owned(), n)
        }
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), bytes.len()),
    }
}

impl Instance {
    /// The instance `id`, with what was applied to it before if the agent ran earlier.
    pub async fn open(host: &Host, id: Uuid) -> Instance {
        let dir = VmDir::new(&host.state_dir, id);
        let rec = match tokio::fs::read(dir.0.join("applied.json")).await {
            Ok(b) => serde_json::from_slice::<Applied>(&b).unwrap_or_else(|e| {
                tracing::warn!(%id, "unreadable applied.json, the instance is rebuilt: {e}");
                Applied::default()
            }),
            Err(_) => Applied::default(),
        };
        host.remember_port(id, rec.vnc_port);
        Instance {
            id,
            dir,
            rec: Mutex::new(rec),
            work: Mutex::new(()),
            busy: AtomicBool::new(false),
            building: AtomicBool::new(false),
            last_state: StdMutex::new(ActualState::Building),
        }
    }

    /// The instance directory (overlay, config drive, console log, pid file, record).
    pub fn dir(&self) -> &VmDir {
        &self.dir
    }

    /// True when the last converge left the instance built but in error, or a volume
    /// attach or detach failed (worth a retry).
    pub async fn failed_after_build(&self) -> bool {
        let r = self.rec.lock().await;
        r.built && (r.error.is_some() || !r.volume_errors.is_empty())
    }

    /// Make `rec` the instance's record, in memory and (while the instance directory
    /// exists) in `applied.json`. The console offset is the reporter's: it is kept, except
    /// for a fresh build (a new console log).
    async fn save(&self, rec: &Applied) -> anyhow::Result<()> {
        let mut cur = self.rec.lock().await;
        let mut new = rec.clone();
        new.version = RECORD_VERSION;
        if let Some(d) = new.desired.as_mut() {
            d.console_password = None;
        }
        if new.built {
            new.console_offset = cur.console_offset;
        }
        *cur = new;
        self.write_record(&cur).await
    }

    /// Write `applied.json` (the caller holds the record lock, so writes do not interleave).
    async fn write_record(&self, rec: &Applied) -> anyhow::Result<()> {
        if rec.gone || !tokio::fs::try_exists(&self.dir.0).await.unwrap_or(false) {
            return Ok(());
        }
        identity::write_atomic(
            &self.dir.0.join("applied.json"),
            &serde_json::to_vec_pretty(rec)?,
            0o600,
        )
        .await
        .context("writing applied.json")
    }

    /// Converge to `d`. The outcome (state, error) shows in the next [`Instance::report`].
    pub async fn converge(&self, host: &Host, d: &DesiredInstance) {
        let _work = self.work.lock().await;
        self.busy.store(true, Ordering::SeqCst);
        let mut rec = self.rec.lock().await.clone();
        // Every volume this converge may plug, unplug or start with (or lose, when QEMU
        // stops) stays locked until the record says what the guest has.
        let volumes: Vec<Uuid> = d
            .volumes
            .iter()
            .chain(&rec.attached)
            .chain(&d.boot_volume)
            .map(|a| a.volume_id)
            .collect();
        let _volumes = host.lock_volumes(&volumes).await;
        if d.power == DesiredPower::Deleted {
            let nics: Vec<DesiredNic> = d
                .nics
                .iter()
                .chain(rec.desired.iter().flat_map(|p| &p.nics))
                .cloned()
                .collect();
            let outcome = match self.destroy(host).await {
                Ok(()) => network::tap_remove(&nics)
                    .await
                    .context("removing the taps"),
                e => e,
            };
            rec = Applied {
                generation: d.generation,
                gone: outcome.is_ok(),
                // A failed delete is retried like any failure of a built instance.
                built: outcome.is_err(),
                error: outcome
                    .err()
                    .map(|e| format!("deleting the instance: {e:#}")),
                ..Applied::default()
            };
            *self.rec.lock().await = rec;
        } else {
            if rec.gone {
                rec = Applied::default();
            }
            let skip = !rec.built && rec.error.is_some() && rec.generation == d.generation;
            if !skip {
                if !rec.built {
                    self.building.store(true, Ordering::SeqCst);
                    let built = self.build(host, d, &mut rec).await;
                    self.building.store(false, Ordering::SeqCst);
                    if let Err(e) = built {
                        let msg = format!("{e:#}");
                        tracing::warn!(id = %self.id, "build failed: {msg}");
                        let cleanup = self.destroy(host).await;
                        rec = Applied {
                            generation: d.generation,
                            error: Some(match cleanup {
                                Ok(()) => msg,
                                Err(c) => format!("{msg}; cleaning up also failed: {c:#}"),
                            }),
                            ..Applied::default()
                        };
                        *self.rec.lock().await = rec;
                        self.busy.store(false, Ordering::SeqCst);
                        return;
                    }
                }
                let outcome = self.apply(host, d, &mut rec).await;
                // The state goes first: a report taken between the two must not pair the
                // new record (a finished capture, a new generation) with the old state.
                let state = self.observe().await;
                if let Ok(mut s) = self.last_state.lock() {
                    *s = state;
                }
                rec.generation = d.generation;
                rec.desired = Some(d.clone());
                rec.error = outcome.err().map(|e| {
                    let msg = format!("{e:#}");
                    tracing::warn!(id = %self.id, "converging failed: {msg}");
                    msg
                });
                if let Err(e) = self.save(&rec).await {
                    rec.error = Some(format!("{e:#}"));
                    *self.rec.lock().await = rec;
                }
            }
        }
        let state = self.observe().await;
        if let Ok(mut s) = self.last_state.lock() {
            *s = state;
        }
        self.busy.store(false, Ordering::SeqCst);
    }

    /// Kill QEMU and remove every file of the instance.
    async fn destroy(&self, host: &Host) -> anyhow::Result<()> {
        qemu::stop(&self.dir, self.id, Duration::ZERO).await?;
        match tokio::fs::remove_dir_all(&self.dir.0).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).context("removing the instance directory")
            }
            _ => {}
        }
        for sock in [self.dir.qmp(), self.dir.vnc(), self.dir.serial()] {
            let _ = tokio::fs::remove_file(sock).await;
        }
        host.remember_port(self.id, None);
        Ok(())
    }

    async fn build(
        &self,
        host: &Host,
        d: &DesiredInstance,
        rec: &mut Applied,
    ) -> anyhow::Result<()> {
        // Leftovers of a build the agent did not finish (it was killed) go first.
        self.destroy(host)
            .await
            .context("cleaning up an earlier build")?;
        self.dir
            .create()
            .context("creating the instance directory")?;
        *rec = Applied {
            generation: rec.generation,
            root_disk_gib: d.root_disk_gib,
            ..Applied::default()
        };
        self.save(rec).await?;

        match &d.boot_volume {
            // The root disk is a volume of the pool: nothing to download or copy.
            Some(boot) => {
                volume_disk(host, boot)
                    .await
                    .with_context(|| format!("the boot volume {}", boot.volume_id))?;
            }
            None => {
                let image = async {
                    let path = host.image(d.image_id, &d.image_sha256).await?;
                    host.fault("agent.image")?;
                    anyhow::Ok(path)
                }
                .await
                .with_context(|| format!("downloading image {}", d.image_id))?;

                async {
                    let size = gib(d.root_disk_gib)?;
                    let base = disk::info(&image, Some("qcow2")).await?;
                    anyhow::ensure!(
                        size >= base.virtual_size,
                        "{} GiB is smaller than the image ({} bytes)",
                        d.root_disk_gib,
                        base.virtual_size
                    );
                    disk::overlay(&image, &self.dir.root_disk(), size).await?;
                    host.fault("agent.disk")
                }
                .await
                .context("creating the root disk")?;
            }
        }

        async {
            cidata::build(
                &self.dir.0.join("cidata"),
                &self.dir.cidata(),
                &cidata::Metadata {
                    instance_id: &self.id.to_string(),
                    hostname: &d.hostname,
                    ssh_keys: &d.ssh_keys,
                    user_data: d.user_data.as_deref().map(str::as_bytes),
                },
            )
            .await?;
            host.fault("agent.cidata")
        }
        .await
        .context("building the config drive")?;

        if wants_running(d.power) {
            async {
                self.start_vm(host, d, rec).await?;
                host.fault("agent.start")
            }
            .await
            .context("starting QEMU")?;
        }
        rec.built = true;
        self.save(rec).await
    }

    /// Start QEMU with the desired size (resuming a suspended guest).
    async fn start_vm(
        &self,
        host: &Host,
        d: &DesiredInstance,
        rec: &mut Applied,
    ) -> anyhow::Result<()> {
        if d.boot_volume.is_none()
            && d.root_disk_gib > rec.root_disk_gib
            && !self.dir.saved_state().exists()
        {
            disk::resize(&self.dir.root_disk(), "qcow2", gib(d.root_disk_gib)?)
                .await
                .context("growing the root disk")?;
            rec.root_disk_gib = d.root_disk_gib;
        }
        let boot = match &d.boot_volume {
            Some(b) => Some(
                volume_disk(host, b)
                    .await
                    .with_context(|| format!("the boot volume {}", b.volume_id))?,
            ),
            None => None,
        };
        let vcpus = u32::try_from(d.vcpus)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| anyhow::anyhow!("invalid vCPU count {}", d.vcpus))?;
        let memory_mib = u64::try_from(d.memory_mib)
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| anyhow::anyhow!("invalid memory size {} MiB", d.memory_mib))?;
        // A suspended guest resumes with the disks it was saved with (the device state
        // must match); any other start attaches what is desired now.
        let resuming = self.dir.saved_state().exists();
        let wanted = if resuming {
            rec.attached.clone()
        } else {
            d.volumes.clone()
        };
        let mut attach = Vec::with_capacity(wanted.len());
        let mut disks = Vec::with_capacity(wanted.len());
        rec.volume_errors.clear();
        for a in wanted {
            match volume_disk(host, &a).await {
                Ok(disk) => {
                    disks.push(disk);
                    attach.push(a);
                }
                Err(e) => rec.volume_errors.push(AttachmentError {
                    volume_id: a.volume_id,
                    error: format!("attaching: {e:#}"),
                }),
            }
        }
        anyhow::ensure!(
            d.nics.len() <= qemu::MAX_NICS,
            "{} NICs: at most {} are supported",
            d.nics.len(),
            qemu::MAX_NICS
        );
        let mut nics = Vec::with_capacity(d.nics.len());
        for n in &d.nics {
            let tap = network::tap_ensure(&host.state_dir, n)
                .await
                .with_context(|| format!("the tap of port {}", n.port_id))?;
            nics.push(qemu::NicDevice {
                tap,
                mac: network::addr::mac(&n.mac)?,
            });
        }
        let mut previous = rec.vnc_port;
        let mut attempt = 0;
        loop {
            let port = host.vnc_port(self.id, previous)?;
            rec.vnc_port = Some(port);
            self.save(rec).await?;
            let spec = VmSpec {
                id: self.id,
                vcpus,
                memory_mib,
                accel: host.accel,
                root_disk: self.dir.root_disk(),
                cidata: Some(self.dir.cidata()),
                vnc_listen: host.vnc_listen.clone(),
                vnc_port: port,
                volumes: disks.clone(),
                boot: boot.clone(),
                nics: nics.clone(),
            };
            let started = qemu::start(&spec, &self.dir, true).await;
            if started.is_ok() {
                rec.attached = attach.clone();
                rec.boot = d.boot_volume.clone();
                if let Some(b) = &d.boot_volume {
                    qemu::set_throttle(&self.dir, b.volume_id, b.max_iops, b.max_mbps)
                        .await
                        .context("limiting the boot volume's I/O")?;
                }
                for a in &attach {
                    if let Err(e) =
                        qemu::set_throttle(&self.dir, a.volume_id, a.max_iops, a.max_mbps).await
                    {
                        rec.volume_errors.push(AttachmentError {
                            volume_id: a.volume_id,
                            error: format!("limiting I/O: {e:#}"),
                        });
                    }
                }
            }
            match started {
                // Another process took the port between the check and QEMU's bind.
                Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                    tracing::info!(id = %self.id, port, "VNC port taken, trying another");
                    previous = None;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Reboots, power, console password and capture of a built instance.
    async fn apply(
        &self,
        host: &Host,
        d: &DesiredInstance,
        rec: &mut Applied,
    ) -> anyhow::Result<()> {
        let graceful = Duration::from_secs(u64::try_from(d.stop_timeout_secs).unwrap_or(0));
        let up = |s: PowerState| s != PowerState::Off;

        let state = qemu::power_state(&self.dir, self.id).await;
        if state == PowerState::Off
            && !self.dir.saved_state().exists()
            && d.root_disk_gib > rec.root_disk_gib
        {
            disk::resize(&self.dir.root_disk(), "qcow2", gib(d.root_disk_gib)?)
                .await
                .context("growing the root disk")?;
            rec.root_disk_gib = d.root_disk_gib;
        }
        if d.hard_reboots > rec.hard_reboots {
            if up(state) {
                qemu::reset(&self.dir).await.context("hard reboot")?;
            }
            rec.hard_reboots = d.hard_reboots;
        }
        if d.soft_reboots > rec.soft_reboots {
            if up(state) {
                qemu::stop(&self.dir, self.id, graceful)
                    .await
                    .context("soft reboot: stopping")?;
                if wants_running(d.power) {
                    self.start_vm(host, d, rec)
                        .await
                        .context("soft reboot: starting")?;
                }
            }
            rec.soft_reboots = d.soft_reboots;
        }

        let state = qemu::power_state(&self.dir, self.id).await;
        match d.power {
            DesiredPower::Running | DesiredPower::Paused => {
                match state {
                    PowerState::Off => self.start_vm(host, d, rec).await.context("starting")?,
                    PowerState::Other => {
                        // QEMU is up but the guest is not (it crashed): start it afresh.
                        qemu::stop(&self.dir, self.id, Duration::ZERO).await?;
                        self.start_vm(host, d, rec).await.context("starting")?;
                    }
                    PowerState::Running | PowerState::Paused => {}
                }
                let now = qemu::power_state(&self.dir, self.id).await;
                if d.power == DesiredPower::Running && now == PowerState::Paused {
                    qemu::unpause(&self.dir).await.context("unpausing")?;
                } else if d.power == DesiredPower::Paused && now == PowerState::Running {
                    qemu::pause(&self.dir).await.context("pausing")?;
                }
            }
            DesiredPower::Stopped => {
                qemu::stop(&self.dir, self.id, graceful)
                    .await
                    .context("stopping")?;
                // A suspended guest that is stopped loses its saved memory.
                match tokio::fs::remove_file(self.dir.saved_state()).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).context("discarding the saved state")
                    }
                    _ => {}
                }
            }
            DesiredPower::Suspended => {
                if up(state) {
                    qemu::suspend(&self.dir, self.id)
                        .await
                        .context("suspending")?;
                }
            }
            DesiredPower::Deleted => {}
        }
        self.sync_volumes(host, d, rec).await;

        if d.console_serial > rec.console_serial {
            match &d.console_password {
                Some(pw) if up(qemu::power_state(&self.dir, self.id).await) => {
                    qemu::set_vnc_password(
                        &self.dir,
                        pw,
                        d.console_expires_at.map(|t| t.timestamp()),
                    )
                    .await
                    .context("setting the console password")?;
                    rec.console_serial = d.console_serial;
                }
                Some(_) => {} // not running: set once it runs (next converge)
                None => rec.console_serial = d.console_serial,
            }
        }

        if let Some(image_id) = d.capture_image_id {
            if rec.capture.as_ref().map(|c| c.image_id) != Some(image_id) {
                let stopped = qemu::power_state(&self.dir, self.id).await == PowerState::Off
                    && !self.dir.saved_state().exists();
                let outcome = if stopped {
                    self.capture(host, image_id, d.boot_volume.as_ref()).await
                } else {
                    Err(anyhow::anyhow!(
                        "the instance must be stopped to capture it"
                    ))
                };
                rec.capture = Some(Capture {
                    image_id,
                    error: outcome
                        .err()
                        .map(|e| format!("capturing image {image_id}: {e:#}")),
                });
            }
        }
        Ok(())
    }

    /// Make the guest's disks match the desired attachments: while QEMU runs, hot-unplug
    /// what is no longer listed, hot-plug what is missing (in order) and re-apply changed
    /// limits. A stopped guest has nothing attached (its next start attaches the desired
    /// ones); a suspended one keeps what its saved state has. Failures are reported per
    /// volume, not as the instance's error.
    async fn sync_volumes(&self, host: &Host, d: &DesiredInstance, rec: &mut Applied) {
        match qemu::power_state(&self.dir, self.id).await {
            PowerState::Running | PowerState::Paused => {}
            PowerState::Off => {
                if !self.dir.saved_state().exists() {
                    rec.attached.clear();
                }
                return;
            }
            PowerState::Other => return,
        }
        let mut errors = Vec::new();
        // What QEMU really has: a device missing there (removed behind our back, or a
        // timed-out unplug the guest finished later) is plugged again if still wanted.
        let devices = match qemu::peripherals(&self.dir).await {
            Ok(devices) => devices,
            Err(e) => {
                rec.volume_errors = vec![AttachmentError {
                    volume_id: Uuid::nil(),
                    error: format!("listing the guest's devices: {e:#}"),
                }];
                return;
            }
        };
        rec.attached
            .retain(|a| devices.contains(&Nodes::of(a.volume_id).device));
        let gone: Vec<Uuid> = rec
            .attached
            .iter()
            .filter(|a| !d.volumes.iter().any(|w| w.volume_id == a.volume_id))
            .map(|a| a.volume_id)
            .collect();
        for v in gone {
            let t = std::time::Instant::now();
            match qemu::hot_unplug(&self.dir, v, UNPLUG_TIMEOUT).await {
                Ok(()) => {
                    tracing::info!(id = %self.id, volume = %v, took = ?t.elapsed(), "volume detached");
                    rec.attached.retain(|a| a.volume_id != v);
                }
                Err(e) => errors.push(AttachmentError {
                    volume_id: v,
                    error: format!("detaching: {e:#}"),
                }),
            }
        }
        for want in &d.volumes {
            if let Some(have) = rec
                .attached
                .iter_mut()
                .find(|a| a.volume_id == want.volume_id)
            {
                if (have.max_iops, have.max_mbps) != (want.max_iops, want.max_mbps) {
                    match qemu::set_throttle(
                        &self.dir,
                        want.volume_id,
                        want.max_iops,
                        want.max_mbps,
                    )
                    .await
                    {
                        Ok(()) => {
                            have.max_iops = want.max_iops;
                            have.max_mbps = want.max_mbps;
                        }
                        Err(e) => errors.push(AttachmentError {
                            volume_id: want.volume_id,
                            error: format!("limiting I/O: {e:#}"),
                        }),
                    }
                }
                continue;
            }
            let t = std::time::Instant::now();
            // Plugged before the agent stopped, but not recorded: adopted, limits re-applied.
            let plugged = if devices.contains(&Nodes::of(want.volume_id).device) {
                qemu::set_throttle(&self.dir, want.volume_id, want.max_iops, want.max_mbps).await
            } else {
                self.hot_plug(host, want).await
            };
            match plugged {
                Ok(()) => {
                    tracing::info!(id = %self.id, volume = %want.volume_id, took = ?t.elapsed(), "volume attached");
                    rec.attached.push(want.clone());
                }
                Err(e) => errors.push(AttachmentError {
                    volume_id: want.volume_id,
                    error: format!("attaching: {e:#}"),
                }),
            }
        }
        rec.volume_errors = errors;
    }

    /// Plug one volume into the running guest, limits included; undone if any step fails.
    async fn hot_plug(&self, host: &Host, a: &DesiredAttachment) -> anyhow::Result<()> {
        let disk = volume_disk(host, a).await?;
        qemu::hot_plug(&self.dir, &disk).await?;
        let limited = async {
            qemu::set_throttle(&self.dir, a.volume_id, a.max_iops, a.max_mbps).await?;
            host.fault("agent.attach")
        }
        .await;
        if let Err(e) = limited {
            if let Err(u) = qemu::hot_unplug(&self.dir, a.volume_id, UNPLUG_TIMEOUT).await {
                return Err(e.context(format!("undoing the attach also failed: {u:#}")));
            }
            return Err(e);
        }
        Ok(())
    }

    /// A standalone qcow2 of the root disk (backing chain flattened, or the boot volume's
    /// data), stored as `image_id`.
    async fn capture(
        &self,
        host: &Host,
        image_id: Uuid,
        boot: Option<&DesiredAttachment>,
    ) -> anyhow::Result<()> {
        let dir = host.state_dir.join("captures");
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = dir.join(format!("{image_id}.qcow2"));
        let result = async {
            match boot {
                Some(b) => host
                    .pool
                    .export(b.volume_id, b.format, &tmp)
                    .await
                    .context("exporting the boot volume")?,
                None => disk::convert(&self.dir.root_disk(), "qcow2", &tmp, "qcow2")
                    .await
                    .context("qemu-img convert")?,
            }
            host.images.store(image_id, &tmp).await.context("uploading")
        }
        .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        result
    }

    /// What the instance is now, from QEMU (not while converging: see `last_state`).
    async fn observe(&self) -> ActualState {
        let rec = self.rec.lock().await.clone();
        if rec.gone {
            return ActualState::Gone;
        }
        if rec.error.is_some() {
            return ActualState::Error;
        }
        if !rec.built {
            return ActualState::Building;
        }
        match qemu::power_state(&self.dir, self.id).await {
            PowerState::Off if self.dir.saved_state().exists() => ActualState::Suspended,
            PowerState::Off => ActualState::Stopped,
            PowerState::Running => ActualState::Running,
            PowerState::Paused => ActualState::Paused,
            // QEMU up but the guest not running: starting, shutting down or crashed.
            PowerState::Other => ActualState::Error,
        }
    }

    /// The instance's report and the console offset it was made from (for
    /// [`Instance::acknowledge`]).
    pub async fn report(&self) -> (InstanceReport, ConsoleMark) {
        let busy = self.busy.load(Ordering::SeqCst);
        let state = if self.building.load(Ordering::SeqCst) {
            ActualState::Building
        } else if busy {
            self.last_state
                .lock()
                .map(|s| *s)
                .unwrap_or(ActualState::Building)
        } else {
            let s = self.observe().await;
            if let Ok(mut l) = self.last_state.lock() {
                *l = s;
            }
            s
        };
        let rec = self.rec.lock().await.clone();
        let counters = if state == ActualState::Running && !busy {
            qemu::counters(&self.dir, self.id)
                .await
                .ok()
                .map(|c| GuestCounters {
                    cpu_seconds: c.cpu_seconds,
                    memory_bytes: i64::try_from(c.guest_memory_bytes).unwrap_or(i64::MAX),
                    rss_bytes: i64::try_from(c.rss_bytes).unwrap_or(i64::MAX),
                    disk_read_bytes: i64::try_from(c.disk_read_bytes).unwrap_or(i64::MAX),
                    disk_write_bytes: i64::try_from(c.disk_write_bytes).unwrap_or(i64::MAX),
                    disk_read_ops: i64::try_from(c.disk_read_ops).unwrap_or(i64::MAX),
                    disk_write_ops: i64::try_from(c.disk_write_ops).unwrap_or(i64::MAX),
                    net_rx_bytes: 0,
                    net_tx_bytes: 0,
                })
        } else {
            None
        };
        let mut mark = ConsoleMark {
            from: rec.console_offset,
            len: 0,
        };
        let mut console_append = None;
        if rec.built && !rec.gone {
            if let Ok(bytes) = read_range(&self.dir.console(), rec.console_offset).await {
                let (text, n) = console_text(&bytes);
                if n > 0 {
                    mark.len = n as u64;
                    console_append = Some(text);
                }
            }
        }
        let (capture_image_id, capture_error) = match &rec.capture {
            Some(Capture {
                image_id,
                error: None,
            }) => (Some(*image_id), None),
            // The image id goes with the error, so the control plane knows which failed.
            Some(Capture {
                image_id,
                error: Some(e),
            }) => (Some(*image_id), Some(e.clone())),
            None => (None, None),
        };
        let report = InstanceReport {
            id: self.id,
            generation: rec.generation,
            state,
            error: if state == ActualState::Error {
                Some(
                    rec.error
                        .clone()
                        .unwrap_or_else(|| "QEMU runs but the guest does not".into()),
                )
            } else {
                None
            },
            soft_reboots: rec.soft_reboots,
            hard_reboots: rec.hard_reboots,
            console_serial: rec.console_serial,
            vnc_port: if rec.built && !rec.gone {
                rec.vnc_port.map(i64::from)
            } else {
                None
            },
            counters,
            console_append,
            capture_image_id,
            capture_error,
            volumes: match state {
                // Nothing runs: the volumes its next start attaches.
                ActualState::Stopped | ActualState::Error | ActualState::Building => rec
                    .desired
                    .as_ref()
                    .map(|d| d.volumes.iter().map(|a| a.volume_id).collect())
                    .unwrap_or_default(),
                ActualState::Gone => Vec::new(),
                _ => rec.attached.iter().map(|a| a.volume_id).collect(),
            },
            volume_errors: rec.volume_errors.clone(),
        };
        (report, mark)
    }

    /// The control plane has the console bytes of `mark`: do not send them again.
    pub async fn acknowledge(&self, mark: ConsoleMark) {
        if mark.len == 0 {
            return;
        }
        let mut rec = self.rec.lock().await;
        if rec.console_offset != mark.from || rec.gone || !rec.built {
            return;
        }
        rec.console_offset = mark.from + mark.len;
        if let Err(e) = self.write_record(&rec).await {
            tracing::warn!(id = %self.id, "saving the console offset: {e:#}");
        }
    }

    /// True once deleted (no process, no files).
    pub async fn is_gone(&self) -> bool {
        self.rec.lock().await.gone
    }
}

/// A volume as a guest disk (it must be ready in the host's pool).
async fn volume_disk(host: &Host, a: &DesiredAttachment) -> anyhow::Result<qemu::VolumeDisk> {
    let format = volumes::ready_format(host, a.volume_id).await?;
    Ok(qemu::VolumeDisk {
        volume_id: a.volume_id,
        blockdev: host.pool.blockdev(a.volume_id, format).to_string(),
        serial: a.serial.clone(),
        shareable: a.shareable || format == stratus_api::VolumeFormat::Raw,
    })
}

/// The instance directories of running guests whose QEMU has `volume` open, from their
/// records (the caller holds the volume's lock, so they are current).
pub(crate) async fn running_with(host: &Host, volume: Uuid) -> Vec<VmDir> {
    let mut out = Vec::new();
    for id in local_instances(&host.state_dir) {
        let dir = VmDir::new(&host.state_dir, id);
        let Ok(bytes) = tokio::fs::read(dir.0.join("applied.json")).await else {
            continue;
        };
        let Ok(rec) = serde_json::from_slice::<Applied>(&bytes) else {
            continue;
        };
        let has = rec
            .attached
            .iter()
            .chain(&rec.boot)
            .any(|a| a.volume_id == volume);
        if has && qemu::pid(&dir, id).is_some() {
            out.push(dir);
        }
    }
    out
}

/// The console bytes one report carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsoleMark {
    pub from: u64,
    pub len: u64,
}

/// Up to [`CONSOLE_CHUNK`] bytes of `path` from `offset` (nothing if it is shorter).
async fn read_range(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    if len <= offset {
        return Ok(Vec::new());
    }
    f.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::with_capacity(CONSOLE_CHUNK.min((len - offset) as usize));
    f.take(CONSOLE_CHUNK as u64).read_to_end(&mut buf).await?;
    Ok(buf)
}

// ------------------------------------------------------------------ the agent loop

type Slot = crate::workers::Slot<Instance, DesiredInstance>;

struct Agent {
    host: Arc<Host>,
    client: AgentClient,
    facts: HostFacts,
    slots: StdMutex<HashMap<Uuid, Slot>>,
    volumes: Workers<Volume>,
    backups: Workers<Backup>,
    network: Arc<Network>,
    /// The desired network and the host's instances (for metadata), for the network worker.
    network_tx: watch::Sender<Option<(DesiredNetwork, Vec<DesiredInstance>)>>,
    /// Converge the network again now (an instance made taps).
    network_kick: Arc<Notify>,
    /// The host's tunnel address, when the desired network gives none.
    tunnel_ip: Option<String>,
    changed: Arc<Notify>,
    interval_secs: AtomicU64,
}

/// How often the network is compared with the desired state when nothing changed (drift
/// repair: a deleted bridge, a killed dnsmasq).
const NETWORK_CHECK: Duration = Duration::from_secs(60);

/// Converge the host's network whenever its desired state changes, every
/// [`NETWORK_CHECK`] to repair drift, and after a backoff when a VPC failed.
async fn network_worker(
    net: Arc<Network>,
    changed: Arc<Notify>,
    kick: Arc<Notify>,
    mut rx: watch::Receiver<Option<(DesiredNetwork, Vec<DesiredInstance>)>>,
) {
    let mut retry = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
    loop {
        let d = rx.borrow_and_update().clone();
        let mut wait = NETWORK_CHECK;
        if let Some((n, instances)) = d {
            net.converge(&n, &instances).await;
            changed.notify_one();
            if net.failed() {
                wait = retry.next_delay();
            } else {
                retry.reset();
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = kick.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Converge one instance whenever its desired state changes (and once at start).
async fn worker(
    agent: Arc<Agent>,
    inst: Arc<Instance>,
    mut rx: watch::Receiver<Option<DesiredInstance>>,
) {
    let mut last: Option<i64> = None;
    let mut retry = Backoff::new(Duration::from_secs(30), Duration::from_secs(300));
    let mut failed = false;
    loop {
        let d = rx.borrow_and_update().clone();
        if let Some(d) = d {
            if failed || last != Some(d.generation) {
                inst.converge(&agent.host, &d).await;
                if !d.nics.is_empty() {
                    // New taps may have missed their bridge (the network converges at the
                    // same time): have them plugged now rather than at the next check.
                    agent.network_kick.notify_one();
                }
                last = Some(d.generation);
                agent.changed.notify_one();
                failed = inst.failed_after_build().await;
                if !failed {
                    retry.reset();
                }
            }
        }
        if failed {
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(retry.next_delay()) => {}
            }
        } else if rx.changed().await.is_err() {
            return;
        }
    }
}

impl Agent {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn add(self: &Arc<Self>, id: Uuid) {
        let inst = Arc::new(Instance::open(&self.host, id).await);
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(worker(self.clone(), inst.clone(), rx));
        self.slots().insert(
            id,
            Slot {
                obj: inst,
                tx,
                task,
                desired: false,
            },
        );
    }

    async fn dispatch(self: &Arc<Self>, ds: DesiredState) {
        self.interval_secs.store(
            ds.report_interval_secs.clamp(1, 3600) as u64,
            Ordering::SeqCst,
        );
        // Volumes and backups have their own workers; an attachment that fails because
        // its volume is not ready yet is retried with the instance's backoff.
        self.volumes
            .dispatch(&self.host, &ds.volumes, &self.changed)
            .await;
        self.backups
            .dispatch(&self.host, &ds.backups, &self.changed)
            .await;
        let mut network = ds.network.clone();
        if network.tunnel_ip.is_none() {
            network.tunnel_ip = self.tunnel_ip.clone();
        }
        self.network_tx
            .send_replace(Some((network, ds.instances.clone())));
        for d in &ds.instances {
            let known = self.slots().contains_key(&d.id);
            if !known {
                self.add(d.id).await;
            }
        }
        let wanted: HashMap<Uuid, &DesiredInstance> =
            ds.instances.iter().map(|d| (d.id, d)).collect();
        let mut forget = Vec::new();
        let candidates: Vec<(Uuid, Arc<Instance>, bool)> = self
            .slots()
            .iter()
            .map(|(id, s)| (*id, s.obj.clone(), s.desired))
            .collect();
        for (id, inst, was_desired) in candidates {
            if wanted.contains_key(&id) {
                continue;
            }
            if inst.is_gone().await {
                forget.push(id);
            } else if was_desired {
                tracing::warn!(%id, "instance no longer in the desired state; left as it is");
            }
        }
        // Instances on disk the control plane does not list are neither touched nor reported.
        crate::workers::hand_out(&mut self.slots(), &forget, &wanted);
        self.changed.notify_one();
    }

    async fn report(&self) -> Result<(), crate::client::ClientError> {
        let insts: Vec<Arc<Instance>> = self
            .slots()
            .values()
            .filter(|s| s.desired)
            .map(|s| s.obj.clone())
            .collect();
        let mut instances = Vec::with_capacity(insts.len());
        let mut marks = Vec::with_capacity(insts.len());
        for i in &insts {
            let (r, m) = i.report().await;
            instances.push(r);
            marks.push(m);
        }
        self.client
            .report(&AgentReport {
                facts: self.facts.clone(),
                host: Some(crate::hostmetrics::read(&self.host.state_dir)),
                instances,
                volumes: self.volumes.reports(&self.host).await,
                backups: self.backups.reports(&self.host).await,
                vpcs: self.network.reports(),
            })
            .await?;
        for (i, m) in insts.iter().zip(marks) {
            i.acknowledge(m).await;
        }
        Ok(())
    }
}

async fn reporter(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let interval = Duration::from_secs(agent.interval_secs.load(Ordering::SeqCst).max(1));
        tokio::select! {
            _ = agent.changed.notified() => {
                // Let a burst of changes go out in one report.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        loop {
            let report = agent.report();
            tokio::pin!(report);
            let sent = tokio::select! {
                r = &mut report => r,
                _ = stop.changed() => {
                    // A report under way may have reached the control plane already: let it
                    // finish and acknowledge its console bytes (for a few seconds at most),
                    // or the next agent would send them again.
                    let _ = tokio::time::timeout(Duration::from_secs(5), report).await;
                    return;
                }
            };
            match sent {
                Ok(()) => {
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!("report failed, retrying in {wait:?}: {e:#}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }
}

/// Instances the agent converged before it (re)started.
fn local_instances(state_dir: &Path) -> Vec<Uuid> {
    std::fs::read_dir(state_dir.join("instances"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("applied.json").exists())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

/// Run the host agent until `shutdown` resolves. Guests keep running when it returns.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    for f in &cfg.faults {
        anyhow::ensure!(
            FAULTS.contains(&f.as_str()),
            "unknown fault {f:?} (known: {})",
            FAULTS.join(", ")
        );
    }
    cfg.vnc_listen
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .with_context(|| format!("VNC listen address {:?}", cfg.vnc_listen))?;
    tokio::fs::create_dir_all(&cfg.state_dir)
        .await
        .with_context(|| cfg.state_dir.display().to_string())?;
    let accel = accel::detect(&cfg.state_dir, cfg.hypervisor)
        .await
        .context("probing the accelerator")?;
    let facts = identity::host_facts(
        &cfg.state_dir,
        cfg.hostname.as_deref(),
        accel.as_str(),
        &cfg.vnc_listen,
    );
    let id = identity::load_or_join(
        &cfg.state_dir,
        &cfg.server,
        cfg.join_token.as_deref(),
        &facts,
    )
    .await?;
    tracing::info!(host_id = %id.host_id, server = %id.server, accel = accel.as_str(), "agent running");
    let client = AgentClient::new(&id.server, &id.credential)?;
    let mut host = Host::new(
        &cfg.state_dir,
        accel,
        &cfg.vnc_listen,
        cfg.faults.clone(),
        ImageStore::Server(client.clone()),
    )?;
    if let Some(dir) = &cfg.backup_dir {
        host = host.with_backup_dir(dir)?;
    }
    let host = Arc::new(host);
    let mut facts = facts;
    facts.volume_pool_gib = host.pool.capacity_gib();
    if let Some(t) = &cfg.tunnel_ip {
        network::addr::ip(t).context("tunnel address")?;
        facts.tunnel_ip = t.clone();
    }
    let net = Arc::new(Network::new(&host.state_dir)?);
    let changed = Arc::new(Notify::new());
    let (network_tx, network_rx) = watch::channel(None);
    let network_kick = Arc::new(Notify::new());
    let network_task = tokio::spawn(network_worker(
        net.clone(),
        changed.clone(),
        network_kick.clone(),
        network_rx,
    ));
    let agent = Arc::new(Agent {
        host: host.clone(),
        client: client.clone(),
        facts,
        slots: StdMutex::default(),
        volumes: Workers::default(),
        backups: Workers::default(),
        network: net,
        network_tx,
        network_kick,
        tunnel_ip: cfg.tunnel_ip.clone(),
        changed,
        interval_secs: AtomicU64::new(30),
    });
    for id in local_instances(&host.state_dir) {
        agent.add(id).await;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let reporter = tokio::spawn(reporter(agent.clone(), stop_rx));
    tokio::pin!(shutdown);
    let mut after = 0i64;
    let mut first = true;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = client.desired(after) => match r {
                Ok(ds) => {
                    backoff.reset();
                    if first || ds.generation != after {
                        first = false;
                        after = ds.generation;
                        agent.dispatch(ds).await;
                    }
                }
                Err(e) => {
                    let wait = if e.is_unauthorized() {
                        Duration::from_secs(60)
                    } else {
                        backoff.next_delay()
                    };
                    tracing::warn!("polling the desired state failed, retrying in {wait:?}: {e:#}");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
    tracing::info!("agent stopping; guests keep running");
    let _ = stop_tx.send(true);
    let _ = reporter.await;
    let slots: Vec<Slot> = agent.slots().drain().map(|(_, s)| s).collect();
    for s in slots {
        s.task.abort();
        let _ = s.task.await;
    }
    agent.volumes.stop().await;
    agent.backups.stop().await;
    network_task.abort();
    let _ = network_task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_cut_at_char_boundary() {
        let s = "héllo".as_bytes();
        assert_eq!(console_text(s), ("héllo".to_string(), s.len()));
        // "é" is two bytes: cutting after its first byte leaves it for the next report.
        assert_eq!(console_text(&s[..2]), ("h".to_string(), 1));
        let bad = b"a\xffb";
        assert_eq!(console_text(bad).1, 3);
    }
}
