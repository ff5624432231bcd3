//! The simulated agent: a **control-plane scale-test instrument**, not a product feature
//! and never a way to run guests.
//!
//! It joins `hosts` fake hosts (facts marked `simulated: true`), long-polls each one's
//! desired state through the same protocol client as the real agent ([`crate::client`]),
//! and reports every desired instance at once in its desired power state (`deleted` →
//! `gone`), every desired volume ready as desired, every backup made and every VPC ready. It starts no QEMU and writes no files except each fake host's identity
//! (`<state_dir>/sim-<n>/agent.json`), so a restarted simulation keeps its hosts.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use stratus_api::{
    ActualState, AgentReport, BackupReport, DesiredBackup, DesiredInstance, DesiredPower,
    DesiredState, DesiredVolume, DesiredVpc, GuestCounters, HostFacts, InstanceReport,
    NetworkState, SnapshotReport, VolumeReport, VolumeState, VpcReport,
};
use tokio::sync::{watch, Notify};

use crate::client::{AgentClient, Backoff};
use crate::identity;

/// The facts of simulated host `n`.
pub fn sim_facts(n: usize) -> HostFacts {
    HostFacts {
        hostname: format!("sim-{n}"),
        cpus: 64,
        memory_mib: 256 * 1024,
        disk_gib: 4 * 1024,
        hypervisor: "sim".into(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        simulated: true,
        console_address: format!("sim-{n}"),
        volume_pool_gib: 4 * 1024,
        tunnel_ip: String::new(),
    }
}

/// What a simulated host reports for a desired instance: exactly what was asked for.
pub fn sim_instance_report(d: &DesiredInstance) -> InstanceReport {
    let state = match d.power {
        DesiredPower::Running => ActualState::Running,
        DesiredPower::Stopped => ActualState::Stopped,
        DesiredPower::Paused => ActualState::Paused,
        DesiredPower::Suspended => ActualState::Suspended,
        DesiredPower::Deleted => ActualState::Gone,
    };
    let alive = state != ActualState::Gone;
    InstanceReport {
        id: d.id,
        generation: d.generation,
        state,
        error: None,
        soft_reboots: d.soft_reboots,
        hard_reboots: d.hard_reboots,
        console_serial: if alive { d.console_serial } else { 0 },
        vnc_port: alive.then_some(5900),
        counters: (state == ActualState::Running).then(|| GuestCounters {
            memory_bytes: d.memory_mib.saturating_mul(1 << 20),
            rss_bytes: d.memory_mib.saturating_mul(1 << 20) / 2,
            ..GuestCounters::default()
        }),
        console_append: None,
        capture_image_id: d.capture_image_id.filter(|_| alive),
        // There is no disk to capture.
        capture_error: d
            .capture_image_id
            .filter(|_| alive)
            .map(|_| "the simulated agent cannot capture images".to_string()),
        volumes: if alive {
            d.volumes.iter().map(|a| a.volume_id).collect()
        } else {
            Vec::new()
        },
        volume_errors: Vec::new(),
    }
}

/// What a simulated host reports for a desired volume: ready at the desired size with
/// the desired snapshots and revert (`deleted` → `gone`).
pub fn sim_volume_report(d: &DesiredVolume) -> VolumeReport {
    VolumeReport {
        id: d.id,
        generation: d.generation,
        state: if d.deleted {
            VolumeState::Gone
        } else {
            VolumeState::Ready
        },
        error: None,
        size_gib: if d.deleted { 0 } else { d.size_gib },
        allocated_bytes: 0,
        snapshots: if d.deleted {
            Vec::new()
        } else {
            d.snapshots
                .iter()
                .map(|s| SnapshotReport {
                    id: *s,
                    error: None,
                })
                .collect()
        },
        revert_serial: d.revert.as_ref().map_or(0, |r| r.serial),
    }
}

/// What a simulated host reports for a desired backup: made (storing nothing), or gone.
pub fn sim_backup_report(d: &DesiredBackup) -> BackupReport {
    BackupReport {
        id: d.id,
        state: if d.deleted {
            VolumeState::Gone
        } else {
            VolumeState::Ready
        },
        error: None,
        stored_bytes: 0,
    }
}

/// What a simulated host reports for a desired VPC: ready at its generation (`deleted` →
/// `gone`).
pub fn sim_vpc_report(d: &DesiredVpc) -> VpcReport {
    VpcReport {
        id: d.id,
        generation: d.generation,
        state: if d.deleted {
            NetworkState::Gone
        } else {
            NetworkState::Ready
        },
        error: None,
    }
}

struct SimHost {
    client: AgentClient,
    facts: HostFacts,
    desired: StdMutex<DesiredState>,
    changed: Notify,
}

impl SimHost {
    fn snapshot(&self) -> DesiredState {
        self.desired
            .lock()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    async fn poll(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut after = 0;
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let r = tokio::select! {
                r = self.client.desired(after) => r,
                _ = stop.changed() => return,
            };
            match r {
                Ok(ds) => {
                    backoff.reset();
                    if ds.generation != after || after == 0 {
                        after = ds.generation;
                        if let Ok(mut d) = self.desired.lock() {
                            *d = ds;
                        }
                        self.changed.notify_one();
                    }
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::debug!(host = %self.facts.hostname, "poll failed: {e:#}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    async fn report_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            let secs = self.snapshot().report_interval_secs.clamp(1, 3600) as u64;
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
                _ = stop.changed() => return,
            }
            loop {
                let ds = self.snapshot();
                let report = AgentReport {
                    facts: self.facts.clone(),
                    // A simulated host has no counters of its own.
                    host: None,
                    instances: ds.instances.iter().map(sim_instance_report).collect(),
                    volumes: ds.volumes.iter().map(sim_volume_report).collect(),
                    backups: ds.backups.iter().map(sim_backup_report).collect(),
                    vpcs: ds.network.vpcs.iter().map(sim_vpc_report).collect(),
                };
                let sent = tokio::select! {
                    r = self.client.report(&report) => r,
                    _ = stop.changed() => return,
                };
                match sent {
                    Ok(()) => {
                        backoff.reset();
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(host = %self.facts.hostname, "report failed: {e:#}");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.next_delay()) => {}
                            _ = stop.changed() => return,
                        }
                    }
                }
            }
        }
    }
}

/// Run `hosts` simulated hosts against `server` until `shutdown` resolves (a control-plane
/// scale-test instrument; see the module documentation).
pub async fn run_simulated(
    server: &str,
    join_token: &str,
    hosts: usize,
    state_dir: &Path,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(hosts > 0, "simulate at least one host");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    // Join a few hosts at a time.
    let mut joined = Vec::with_capacity(hosts);
    for chunk in (0..hosts).collect::<Vec<_>>().chunks(8) {
        let mut js = tokio::task::JoinSet::new();
        for &n in chunk {
            let dir = state_dir.join(format!("sim-{n}"));
            let (server, token) = (server.to_string(), join_token.to_string());
            js.spawn(async move {
                let facts = sim_facts(n);
                let id = identity::load_or_join(&dir, &server, Some(&token), &facts)
                    .await
                    .map_err(|e| anyhow::anyhow!("simulated host {n}: {e:#}"))?;
                anyhow::Ok((facts, id))
            });
        }
        while let Some(r) = js.join_next().await {
            joined.push(r??);
        }
    }
    tracing::info!(hosts, "simulated hosts joined");
    for (facts, id) in joined {
        let host = Arc::new(SimHost {
            client: AgentClient::new(&id.server, &id.credential)?,
            facts,
            desired: StdMutex::default(),
            changed: Notify::new(),
        });
        tasks.spawn(host.clone().poll(stop_rx.clone()));
        tasks.spawn(host.report_loop(stop_rx.clone()));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratus_api::{DesiredAttachment, DesiredRevert, VolumeFormat};

    #[test]
    fn reports_what_was_desired() {
        let vol = uuid::Uuid::new_v4();
        let d = DesiredInstance {
            id: uuid::Uuid::new_v4(),
            generation: 7,
            hostname: "a".into(),
            vcpus: 2,
            memory_mib: 1024,
            root_disk_gib: 10,
            image_id: uuid::Uuid::new_v4(),
            image_sha256: String::new(),
            power: DesiredPower::Running,
            stop_timeout_secs: 30,
            soft_reboots: 2,
            hard_reboots: 1,
            ssh_keys: vec![],
            user_data: None,
            console_password: Some("x".into()),
            console_serial: 3,
            console_expires_at: None,
            capture_image_id: None,
            volumes: vec![DesiredAttachment {
                volume_id: vol,
                serial: "abc".into(),
                format: VolumeFormat::Qcow2,
                shareable: false,
                max_iops: 800,
                max_mbps: 100,
            }],
            boot_volume: None,
            nics: vec![],
        };
        let r = sim_instance_report(&d);
        assert_eq!(
            (r.state, r.generation, r.soft_reboots, r.hard_reboots),
            (ActualState::Running, 7, 2, 1)
        );
        assert_eq!(r.console_serial, 3);
        assert_eq!(r.volumes, vec![vol]);
        assert_eq!(r.counters.unwrap().memory_bytes, 1 << 30);
        let gone = sim_instance_report(&DesiredInstance {
            power: DesiredPower::Deleted,
            ..d
        });
        assert_eq!(gone.state, ActualState::Gone);
        assert!(gone.vnc_port.is_none() && gone.counters.is_none());
        assert!(gone.volumes.is_empty());
    }

    #[test]
    fn volumes_and_backups_are_ready_as_desired() {
        let snap = uuid::Uuid::new_v4();
        let mut v = DesiredVolume {
            id: uuid::Uuid::new_v4(),
            generation: 4,
            size_gib: 20,
            format: VolumeFormat::Qcow2,
            source: None,
            snapshots: vec![snap],
            revert: Some(DesiredRevert {
                serial: 2,
                snapshot_id: snap,
            }),
            deleted: false,
        };
        let r = sim_volume_report(&v);
        assert_eq!(
            (r.state, r.generation, r.size_gib, r.revert_serial),
            (VolumeState::Ready, 4, 20, 2)
        );
        assert_eq!(
            r.snapshots,
            vec![SnapshotReport {
                id: snap,
                error: None
            }]
        );
        assert!(r.error.is_none());
        v.deleted = true;
        v.generation = 5;
        let r = sim_volume_report(&v);
        assert_eq!((r.state, r.generation), (VolumeState::Gone, 5));
        let mut b = DesiredBackup {
            id: uuid::Uuid::new_v4(),
            volume_id: v.id,
            deleted: false,
        };
        let r = sim_backup_report(&b);
        assert_eq!(
            (r.state, r.stored_bytes, r.error),
            (VolumeState::Ready, 0, None)
        );
        b.deleted = true;
        assert_eq!(sim_backup_report(&b).state, VolumeState::Gone);
    }

    #[test]
    fn vpcs_are_ready_at_their_generation() {
        let mut v = DesiredVpc {
            id: uuid::Uuid::new_v4(),
            generation: 9,
            cidr: "10.0.0.0/16".into(),
            router: true,
            subnets: vec![],
            snat_ip: None,
            elastic_ips: vec![],
            deleted: false,
        };
        let r = sim_vpc_report(&v);
        assert_eq!(
            (r.id, r.generation, r.state, r.error),
            (v.id, 9, NetworkState::Ready, None)
        );
        v.deleted = true;
        v.generation = 10;
        let r = sim_vpc_report(&v);
        assert_eq!((r.generation, r.state), (10, NetworkState::Gone));
    }
}
