//! Hosts and the agent protocol: join, desired state (long poll), reports.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};
use stratus_api::{
    AgentJoin, AgentJoined, AgentReport, DesiredState, GuestCounters, Host, HostUpdate,
    InstanceMetrics, JoinToken, JoinTokenCreate,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{require_global, App};
use crate::authz::{Perm, Principal};
use crate::error::{Error, Result};
use crate::store::Observed;
use crate::validate;

/// How long a desired-state request waits for a change before answering anyway.
pub const LONG_POLL: Duration = Duration::from_secs(25);
/// How long a woken long poll waits for further changes before answering.
const COALESCE: Duration = Duration::from_millis(50);

/// The last counters of a guest, when they came, and the rates they gave.
type Sample = (chrono::DateTime<Utc>, GuestCounters, InstanceMetrics);

/// In-memory coordination with agents: wake-ups for long polls and the latest guest
/// counters (rates need two samples).
#[derive(Default)]
pub struct AgentHub {
    wake: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
    samples: Mutex<HashMap<Uuid, Sample>>,
}

impl AgentHub {
    /// Wake the host's long poll: its desired state changed.
    pub fn notify(&self, host: Uuid) {
        if let Ok(mut m) = self.wake.lock() {
            m.entry(host)
                .or_insert_with(|| watch::channel(0).0)
                .send_modify(|v| *v += 1);
        }
    }

    /// Wake every waiting long poll (a change whose hosts were bumped in the store).
    pub fn notify_all(&self) {
        if let Ok(m) = self.wake.lock() {
            for tx in m.values() {
                tx.send_modify(|v| *v += 1);
            }
        }
    }

    fn subscribe(&self, host: Uuid) -> Option<watch::Receiver<u64>> {
        let mut m = self.wake.lock().ok()?;
        Some(
            m.entry(host)
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
        )
    }

    fn sample(&self, id: Uuid, c: &GuestCounters) {
        let now = Utc::now();
        let Ok(mut m) = self.samples.lock() else {
            return;
        };
        let metrics = match m.get(&id) {
            Some((t, prev, _)) => {
                let dt = (now - *t).num_milliseconds() as f64 / 1000.0;
                let rate = |a: i64, b: i64| {
                    if dt > 0.0 && a >= b {
                        (a - b) as f64 / dt
                    } else {
                        0.0
                    }
                };
                InstanceMetrics {
                    sampled_at: Some(now),
                    cpu_percent: if dt > 0.0 && c.cpu_seconds >= prev.cpu_seconds {
                        (c.cpu_seconds - prev.cpu_seconds) / dt * 100.0
                    } else {
                        0.0
                    },
                    memory_bytes: c.memory_bytes,
                    memory_used_bytes: c.rss_bytes.min(c.memory_bytes.max(c.rss_bytes)),
                    disk_read_bytes_per_sec: rate(c.disk_read_bytes, prev.disk_read_bytes),
                    disk_write_bytes_per_sec: rate(c.disk_write_bytes, prev.disk_write_bytes),
                    disk_read_ops_per_sec: rate(c.disk_read_ops, prev.disk_read_ops),
                    disk_write_ops_per_sec: rate(c.disk_write_ops, prev.disk_write_ops),
                    network_in_bytes_per_sec: rate(c.net_rx_bytes, prev.net_rx_bytes),
                    network_out_bytes_per_sec: rate(c.net_tx_bytes, prev.net_tx_bytes),
                }
            }
            None => InstanceMetrics {
                sampled_at: Some(now),
                memory_bytes: c.memory_bytes,
                memory_used_bytes: c.rss_bytes,
                ..Default::default()
            },
        };
        m.insert(id, (now, c.clone(), metrics));
    }

    pub fn metrics(&self, id: Uuid) -> InstanceMetrics {
        self.samples
            .lock()
            .ok()
            .and_then(|m| m.get(&id).map(|s| s.2.clone()))
            .unwrap_or_default()
    }

    pub fn forget(&self, id: Uuid) {
        if let Ok(mut m) = self.samples.lock() {
            m.remove(&id);
        }
    }
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

// ---------------------------------------------------------------- operator API

pub async fn join_token_create(app: &App, p: &Principal, b: JoinTokenCreate) -> Result<JoinToken> {
    require_global(p, Perm::HostWrite)?;
    let hours = b.valid_hours.unwrap_or(24);
    if !(1..=720).contains(&hours) {
        return Err(Error::invalid("valid_hours", "must be between 1 and 720"));
    }
    let az = b.availability_zone.unwrap_or_else(|| "az1".into());
    validate::login_name("availability_zone", &az)?;
    let token = format!("stj_{}", random_secret());
    let expires_at = Utc::now() + chrono::Duration::hours(hours);
    app.store
        .join_token_create(&sha256_hex(&token), &az, expires_at, &p.name)
        .await?;
    Ok(JoinToken {
        token,
        availability_zone: az,
        expires_at,
    })
}

pub async fn host_list(app: &App, p: &Principal) -> Result<Vec<Host>> {
    require_global(p, Perm::SystemRead)?;
    app.store.host_list(&app.config.compute).await
}

pub async fn host_view(app: &App, p: &Principal, id: Uuid) -> Result<Host> {
    if !p.has_global(Perm::SystemRead) {
        return Err(Error::not_found("host", id));
    }
    app.store
        .host_get(id, &app.config.compute)
        .await?
        .ok_or_else(|| Error::not_found("host", id))
}

pub async fn host_update(app: &App, p: &Principal, id: Uuid, b: HostUpdate) -> Result<Host> {
    host_view(app, p, id).await?;
    require_global(p, Perm::HostWrite)?;
    if let Some(r) = &b.disabled_reason {
        validate::description("disabled_reason", r)?;
    }
    if let Some(az) = &b.availability_zone {
        validate::login_name("availability_zone", az)?;
    }
    app.store
        .host_update(
            id,
            b.enabled,
            b.disabled_reason.as_deref(),
            b.availability_zone.as_deref(),
        )
        .await?;
    host_view(app, p, id).await
}

pub async fn host_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let h = host_view(app, p, id).await?;
    require_global(p, Perm::HostWrite)?;
    if h.instance_count > 0 {
        return Err(Error::conflict(format!(
            "host {} still has {} instance(s); move or delete them first",
            h.name, h.instance_count
        )));
    }
    app.store.host_delete(id).await
}

// ---------------------------------------------------------------- agent protocol

/// The host a credential belongs to; 401 otherwise.
pub async fn agent_host(app: &App, credential: &str) -> Result<Uuid> {
    app.store
        .host_by_credential(&sha256_hex(credential))
        .await?
        .ok_or_else(|| {
            Error::Unauthenticated("the agent credential is unknown (was the host removed?)".into())
        })
}

pub async fn agent_join(app: &App, token: &str, b: AgentJoin) -> Result<AgentJoined> {
    let az = app
        .store
        .join_token_zone(&sha256_hex(token))
        .await?
        .ok_or_else(|| Error::Unauthenticated("the join token is unknown or expired".into()))?;
    validate_facts(&b.facts)?;
    let credential = format!("sth_{}", random_secret());
    let host = app
        .store
        .host_create(&az, &sha256_hex(&credential), &b.facts, &app.config.compute)
        .await?;
    tracing::info!(host = %host.id, name = host.name, az, "host joined");
    Ok(AgentJoined {
        host_id: host.id,
        credential,
    })
}

/// A join token for the all-in-one agent inside `stratus serve` (valid one hour).
pub async fn local_join_token(app: &App, az: &str) -> Result<String> {
    let token = format!("stj_{}", random_secret());
    app.store
        .join_token_create(
            &sha256_hex(&token),
            az,
            Utc::now() + chrono::Duration::hours(1),
            "stratus serve",
        )
        .await?;
    Ok(token)
}

fn validate_facts(f: &stratus_api::HostFacts) -> Result<()> {
    if f.hostname.is_empty() || f.hostname.len() > 253 {
        return Err(Error::invalid("facts.hostname", "must be 1–253 characters"));
    }
    if f.cpus < 0 || f.memory_mib < 0 || f.disk_gib < 0 {
        return Err(Error::invalid("facts", "sizes must not be negative"));
    }
    Ok(())
}

pub async fn agent_desired(app: &App, host: Uuid, after: i64) -> Result<DesiredState> {
    let deadline = Instant::now() + LONG_POLL;
    let mut rx = app.hub.subscribe(host);
    loop {
        let generation = app.store.host_generation(host).await?;
        if generation > after {
            // Changes come in bursts (a create of many instances): gather them into one
            // answer instead of one per change.
            tokio::time::sleep(COALESCE).await;
            let generation = app.store.host_generation(host).await?;
            return desired_state(app, host, generation).await;
        }
        if Instant::now() >= deadline {
            return desired_state(app, host, generation).await;
        }
        // Woken by this process's changes; the 1 s tick covers other control-plane
        // processes sharing the database.
        let tick = Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now()));
        match rx.as_mut() {
            Some(r) => {
                let _ = tokio::time::timeout(tick, r.changed()).await;
            }
            None => tokio::time::sleep(tick).await,
        }
    }
}

async fn desired_state(app: &App, host: Uuid, generation: i64) -> Result<DesiredState> {
    let rows = app.store.instance_rows_on_host(host).await?;
    let mut attachments = app.store.attachments_on_host(host).await?;
    let mut nics = app.store.nics_on_host(host).await?;
    let now = Utc::now();
    let mut instances = Vec::with_capacity(rows.len());
    for r in &rows {
        let password = match (&r.console_password, r.console_expires_at) {
            (Some(sealed), Some(exp)) if exp > now => app.secrets.unseal(sealed).ok(),
            _ => None,
        };
        let mut d = crate::store::desired(r, password);
        d.volumes = attachments.data.remove(&r.api.id).unwrap_or_default();
        d.boot_volume = attachments.boot.remove(&r.api.id).and_then(|mut b| b.pop());
        d.nics = nics.remove(&r.api.id).unwrap_or_default();
        instances.push(d);
    }
    let mut snapshots = app.store.snapshot_ids_on_host(host).await?;
    let volumes = app
        .store
        .volume_rows_on_host(host)
        .await?
        .iter()
        .map(|v| crate::store::desired_volume(v, snapshots.remove(&v.api.id).unwrap_or_default()))
        .collect();
    Ok(DesiredState {
        generation,
        instances,
        volumes,
        backups: app.store.backups_on_host(host).await?,
        network: app.store.network_desired(host).await?,
        report_interval_secs: app.config.compute.report_interval_secs,
    })
}

pub async fn agent_report(app: &App, host: Uuid, r: AgentReport) -> Result<()> {
    validate_facts(&r.facts)?;
    app.store.host_heartbeat(host, &r.facts).await?;
    if let Some(h) = &r.host {
        super::monitoring::ingest_host(app, host, &r.facts.hostname, h);
    }
    let rows: HashMap<Uuid, _> = app
        .store
        .instance_rows_on_host(host)
        .await?
        .into_iter()
        .map(|row| (row.api.id, row))
        .collect();
    let mut wake = false;
    let mut attachments = app.store.attachments_of_host(host).await?;
    for ir in &r.instances {
        let Some(row) = rows.get(&ir.id) else {
            continue;
        };
        if let Some(att) = attachments.remove(&ir.id) {
            if app.store.attachments_observe(ir.id, att, ir).await? {
                wake = true;
            }
        }
        if let Some(text) = ir.console_append.as_deref().filter(|t| !t.is_empty()) {
            app.store.instance_console_append(ir.id, text).await?;
        }
        if let Some(c) = &ir.counters {
            app.hub.sample(ir.id, c);
            let owner = super::monitoring::GuestOwner {
                instance: ir.id,
                project: row.api.project_id,
                vdc: row.api.vdc_id,
                host,
            };
            super::monitoring::ingest_guest(app, &owner, c);
        }
        if let (Some(img), Some(cap)) = (ir.capture_image_id, row.capture_image_id) {
            if img == cap {
                if let Some(e) = &ir.capture_error {
                    super::images::capture_failed(app, img, e).await?;
                }
                app.store.instance_capture_done(ir.id).await?;
                wake = true;
            }
        }
        match app.store.instance_observe(row, ir).await? {
            Observed::BuildFailed(reason) => {
                tracing::warn!(instance = %ir.id, reason, "build failed on the host; unwinding");
                app.store.instance_fail_build(ir.id, &reason).await?;
                wake = true;
            }
            Observed::ResizeFailed => {
                app.store
                    .instance_resize_unwind(ir.id, &app.config.compute)
                    .await?;
                wake = true;
            }
            Observed::Gone => {
                app.hub.forget(ir.id);
                wake = true;
            }
            Observed::Updated | Observed::Nothing => {}
        }
    }
    if !r.volumes.is_empty() {
        let volumes: HashMap<Uuid, _> = app
            .store
            .volume_rows_on_host(host)
            .await?
            .into_iter()
            .map(|v| (v.api.id, v))
            .collect();
        for vr in &r.volumes {
            if let Some(row) = volumes.get(&vr.id) {
                app.store.volume_observe(row, vr).await?;
                // A volume that went (or whose snapshots went) changes the desired state.
                if row.deleted || row.api.status == stratus_api::VolumeStatus::Deleting {
                    wake = true;
                }
            }
        }
    }
    app.store.backups_observe(host, &r.backups).await?;
    for vr in &r.vpcs {
        if app.store.vpc_observe(host, vr).await? {
            wake = true;
        }
    }
    if wake {
        app.hub.notify(host);
    }
    Ok(())
}
