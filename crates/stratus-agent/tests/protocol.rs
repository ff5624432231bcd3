//! The agent loop and the simulated agent against a scripted stand-in for the control
//! plane's `/v1/agent/*` endpoints (the real ones live in stratus-server).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::desired_instance;
use sha2::{Digest, Sha256};
use stratus_agent::accel::Accel;
use stratus_agent::agent::{self, AgentConfig};
use stratus_api::{
    ActualState, AgentJoin, AgentJoined, AgentReport, DesiredAttachment, DesiredBackup,
    DesiredInstance, DesiredNetwork, DesiredPower, DesiredState, DesiredSubnet, DesiredVolume,
    DesiredVpc, NetworkState, VolumeFormat, VolumeState,
};
use tokio::sync::watch;
use uuid::Uuid;

#[derive(Default)]
struct Cp {
    joins: Vec<AgentJoin>,
    reports: Vec<(Uuid, AgentReport)>,
    images: HashMap<Uuid, Vec<u8>>,
    uploads: HashMap<Uuid, Vec<u8>>,
    /// host id by credential
    hosts: HashMap<String, Uuid>,
}

#[derive(Clone)]
struct Fake {
    cp: Arc<Mutex<Cp>>,
    desired: watch::Sender<DesiredState>,
}

fn error(status: StatusCode, code: &str) -> (StatusCode, Json<serde_json::Value>) {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": code, "request_id": "r1"}})),
    )
}

type Reply<T> = Result<T, (StatusCode, Json<serde_json::Value>)>;

fn host(f: &Fake, h: &HeaderMap) -> Reply<Uuid> {
    let cred = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    f.cp.lock()
        .unwrap()
        .hosts
        .get(cred)
        .copied()
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "unauthenticated"))
}

async fn join(
    State(f): State<Fake>,
    h: HeaderMap,
    Json(j): Json<AgentJoin>,
) -> Reply<Json<AgentJoined>> {
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer jt-secret") {
        return Err(error(StatusCode::UNAUTHORIZED, "unauthenticated"));
    }
    let id = Uuid::new_v4();
    let credential = format!("cred-{}", id.simple());
    let mut cp = f.cp.lock().unwrap();
    cp.joins.push(j);
    cp.hosts.insert(credential.clone(), id);
    Ok(Json(AgentJoined {
        host_id: id,
        credential,
    }))
}

async fn desired(
    State(f): State<Fake>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, i64>>,
) -> Reply<Json<DesiredState>> {
    host(&f, &h)?;
    let after = q.get("after").copied().unwrap_or(0);
    let mut rx = f.desired.subscribe();
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        rx.wait_for(|d| d.generation > after),
    )
    .await;
    let d = rx.borrow().clone();
    Ok(Json(d))
}

async fn report(
    State(f): State<Fake>,
    h: HeaderMap,
    Json(r): Json<AgentReport>,
) -> Reply<StatusCode> {
    let id = host(&f, &h)?;
    f.cp.lock().unwrap().reports.push((id, r));
    Ok(StatusCode::NO_CONTENT)
}

async fn image_get(State(f): State<Fake>, h: HeaderMap, Path(id): Path<Uuid>) -> Reply<Vec<u8>> {
    host(&f, &h)?;
    let img = f.cp.lock().unwrap().images.get(&id).cloned();
    img.ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found"))
}

async fn image_put(
    State(f): State<Fake>,
    h: HeaderMap,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Reply<StatusCode> {
    host(&f, &h)?;
    let sum = hex::encode(Sha256::digest(&body));
    if h.get("x-checksum-sha256").and_then(|v| v.to_str().ok()) != Some(sum.as_str()) {
        return Err(error(StatusCode::BAD_REQUEST, "invalid_argument"));
    }
    f.cp.lock().unwrap().uploads.insert(id, body.to_vec());
    Ok(StatusCode::NO_CONTENT)
}

async fn fake_cp() -> (Fake, String) {
    let (tx, _) = watch::channel(DesiredState {
        generation: 1,
        instances: vec![],
        report_interval_secs: 1,
        ..DesiredState::default()
    });
    let f = Fake {
        cp: Arc::default(),
        desired: tx,
    };
    let app = Router::new()
        .route("/v1/agent/join", post(join))
        .route("/v1/agent/desired", get(desired))
        .route("/v1/agent/report", post(report))
        .route("/v1/agent/images/{id}", get(image_get).put(image_put))
        .layer(DefaultBodyLimit::disable())
        .with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (f, url)
}

impl Fake {
    fn set(&self, instances: Vec<DesiredInstance>) {
        self.desired.send_modify(|d| {
            d.generation += 1;
            d.instances = instances;
        });
    }

    fn set_network(&self, network: DesiredNetwork) {
        self.desired.send_modify(|d| {
            d.generation += 1;
            d.network = network;
        });
    }

    fn set_storage(&self, volumes: Vec<DesiredVolume>, backups: Vec<DesiredBackup>) {
        self.desired.send_modify(|d| {
            d.generation += 1;
            d.volumes = volumes;
            d.backups = backups;
        });
    }

    /// Wait until a report satisfies `pred`.
    async fn wait_report(&self, what: &str, pred: impl Fn(&AgentReport) -> bool) -> AgentReport {
        self.wait_report_from(0, what, pred).await
    }

    /// Wait until a report after the first `from` ones satisfies `pred`.
    async fn wait_report_from(
        &self,
        from: usize,
        what: &str,
        pred: impl Fn(&AgentReport) -> bool,
    ) -> AgentReport {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some((_, r)) = self.cp.lock().unwrap().reports[from..]
                .iter()
                .rev()
                .find(|(_, r)| pred(r))
            {
                return r.clone();
            }
            assert!(Instant::now() < deadline, "no report with {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn console(&self, id: Uuid) -> String {
        self.cp
            .lock()
            .unwrap()
            .reports
            .iter()
            .flat_map(|(_, r)| r.instances.iter())
            .filter(|i| i.id == id)
            .filter_map(|i| i.console_append.clone())
            .collect()
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stratus-{tag}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn volume_state(r: &AgentReport, id: Uuid) -> Option<VolumeState> {
    r.volumes.iter().find(|v| v.id == id).map(|v| v.state)
}

fn state_of(r: &AgentReport, id: Uuid) -> Option<ActualState> {
    r.instances.iter().find(|i| i.id == id).map(|i| i.state)
}

#[tokio::test]
async fn simulated_hosts_report_the_desired_state_and_keep_their_identity() {
    let (f, url) = fake_cp().await;
    let dir = temp_dir("sim");
    let id = Uuid::new_v4();
    f.set(vec![desired_instance(id, Uuid::new_v4(), "")]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sim = tokio::spawn({
        let (url, dir) = (url.clone(), dir.clone());
        async move {
            stratus_agent::sim::run_simulated(&url, "jt-secret", 3, &dir, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let r = f
        .wait_report("a running instance", |r| {
            state_of(r, id) == Some(ActualState::Running)
        })
        .await;
    assert!(r.facts.simulated && r.facts.hypervisor == "sim", "{r:?}");
    let mut d = desired_instance(id, Uuid::new_v4(), "");
    d.generation = 2;
    d.power = DesiredPower::Deleted;
    f.set(vec![d]);
    f.wait_report("a gone instance", |r| {
        state_of(r, id) == Some(ActualState::Gone)
    })
    .await;
    let _ = stop.send(());
    sim.await.unwrap().unwrap();
    assert_eq!(f.cp.lock().unwrap().joins.len(), 3);
    for n in 0..3 {
        assert!(dir.join(format!("sim-{n}/agent.json")).exists());
    }
    // A second run reuses the identities: no new joins, even with a wrong token.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let before = f.cp.lock().unwrap().reports.len();
    let sim = tokio::spawn({
        let (url, dir) = (url.clone(), dir.clone());
        async move {
            stratus_agent::sim::run_simulated(&url, "wrong", 3, &dir, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.cp.lock().unwrap().reports.len() < before + 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    sim.await.unwrap().unwrap();
    assert_eq!(f.cp.lock().unwrap().joins.len(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn agent_joins_runs_captures_and_deletes_an_instance() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let image = root.join("target/images/tiny.qcow2");
    assert!(
        std::process::Command::new(root.join("scripts/build-tiny-image"))
            .arg(&image)
            .status()
            .unwrap()
            .success()
    );
    let (f, url) = fake_cp().await;
    let bytes = std::fs::read(&image).unwrap();
    let sha = hex::encode(Sha256::digest(&bytes));
    let image_id = Uuid::new_v4();
    f.cp.lock().unwrap().images.insert(image_id, bytes);
    let dir = temp_dir("agent");

    let start = |token: Option<&str>| {
        let mut cfg = AgentConfig::new(url.clone(), dir.clone());
        cfg.join_token = token.map(str::to_string);
        cfg.hypervisor = Some(Accel::Tcg);
        cfg.vnc_listen = "127.0.0.1".into();
        cfg.tunnel_ip = Some("127.0.0.1".into());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(agent::run(cfg, async {
            let _ = stopped.await;
        }));
        (stop, task)
    };

    // Without an identity, a token is needed.
    let err = agent::run(
        AgentConfig {
            hypervisor: Some(Accel::Tcg),
            ..AgentConfig::new(url.clone(), dir.clone())
        },
        async {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("join token"), "{err}");

    let (stop, task) = start(Some("jt-secret"));
    // A volume first, then an instance that has it attached.
    let mut vol = DesiredVolume {
        id: Uuid::new_v4(),
        generation: 1,
        size_gib: 1,
        format: VolumeFormat::Qcow2,
        source: None,
        snapshots: vec![],
        revert: None,
        deleted: false,
    };
    f.set_storage(vec![vol.clone()], vec![]);
    let r = f
        .wait_report("a ready volume", |r| {
            volume_state(r, vol.id) == Some(VolumeState::Ready)
        })
        .await;
    assert!(r.facts.volume_pool_gib > 0, "{:?}", r.facts);
    assert_eq!(r.facts.tunnel_ip, "127.0.0.1");

    // A VPC: its router is built and reported ready at its generation, then gone.
    let subnet = Uuid::new_v4();
    let mut vpc = DesiredVpc {
        id: Uuid::new_v4(),
        generation: 1,
        cidr: "10.35.0.0/16".into(),
        router: true,
        subnets: vec![DesiredSubnet {
            id: subnet,
            cidr: "10.35.1.0/24".into(),
            gateway_ip: "10.35.1.1".into(),
            dhcp_enabled: true,
            dns_servers: vec![],
            vni: 7,
            remote_vteps: vec![],
            ports: vec![],
            acl: vec![],
        }],
        snat_ip: None,
        elastic_ips: vec![],
        deleted: false,
    };
    let vpc_state = |r: &AgentReport, g: i64| {
        r.vpcs
            .iter()
            .find(|v| v.id == vpc.id && v.generation == g)
            .map(|v| v.state)
    };
    f.set_network(DesiredNetwork {
        vpcs: vec![vpc.clone()],
        ..DesiredNetwork::default()
    });
    f.wait_report("a ready VPC", |r| {
        vpc_state(r, 1) == Some(NetworkState::Ready)
    })
    .await;
    let bridge = stratus_agent::network::names::bridge(subnet);
    assert!(std::path::Path::new("/sys/class/net")
        .join(&bridge)
        .exists());
    vpc.generation = 2;
    vpc.deleted = true;
    f.set_network(DesiredNetwork {
        vpcs: vec![vpc.clone()],
        ..DesiredNetwork::default()
    });
    f.wait_report("a gone VPC", |r| {
        vpc_state(r, 2) == Some(NetworkState::Gone)
    })
    .await;
    assert!(!std::path::Path::new("/sys/class/net")
        .join(&bridge)
        .exists());
    f.set_network(DesiredNetwork::default());
    let id = Uuid::new_v4();
    let mut d = desired_instance(id, image_id, &sha);
    d.volumes = vec![DesiredAttachment {
        volume_id: vol.id,
        serial: "vol-one".into(),
        format: VolumeFormat::Qcow2,
        shareable: false,
        max_iops: 800,
        max_mbps: 100,
    }];
    f.set(vec![d.clone()]);
    let r = f
        .wait_report("a running instance", |r| {
            state_of(r, id) == Some(ActualState::Running)
        })
        .await;
    let inst = r.instances.iter().find(|i| i.id == id).unwrap();
    assert_eq!(inst.volumes, vec![vol.id], "{inst:?}");
    assert!(inst.volume_errors.is_empty(), "{inst:?}");
    assert_eq!(r.facts.hypervisor, "tcg");
    assert!(!r.facts.simulated && r.facts.cpus >= 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f.console(id).contains("STRATUS-READY hostname=vm-one") {
        assert!(Instant::now() < deadline, "{}", f.console(id));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = std::fs::read_to_string(dir.join(format!("instances/{id}/qemu.pid"))).unwrap();

    // The agent stops; the guest keeps running; a restarted agent needs no token.
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{}", pid.trim())).exists());
    let (stop, task) = start(None);
    let n = f.cp.lock().unwrap().reports.len();
    let r = f
        .wait_report_from(n, "a report after the restart", |r| {
            state_of(r, id) == Some(ActualState::Running)
                && volume_state(r, vol.id) == Some(VolumeState::Ready)
        })
        .await;
    assert_eq!(r.instances[0].volumes, vec![vol.id]);
    assert_eq!(f.cp.lock().unwrap().joins.len(), 1);
    assert_eq!(
        std::fs::read_to_string(dir.join(format!("instances/{id}/qemu.pid"))).unwrap(),
        pid,
        "the restart did not touch the guest"
    );
    // Console output is sent once.
    assert_eq!(f.console(id).matches("STRATUS-READY").count(), 1);

    // Stop and capture: the image arrives with its checksum checked.
    let captured = Uuid::new_v4();
    d.generation = 2;
    d.power = DesiredPower::Stopped;
    d.capture_image_id = Some(captured);
    f.set(vec![d.clone()]);
    let r = f
        .wait_report("a captured image", |r| {
            r.instances
                .iter()
                .any(|i| i.capture_image_id == Some(captured))
        })
        .await;
    assert_eq!(state_of(&r, id), Some(ActualState::Stopped));
    let up =
        f.cp.lock()
            .unwrap()
            .uploads
            .get(&captured)
            .cloned()
            .unwrap();
    assert_eq!(&up[..4], b"QFI\xfb", "a qcow2 file");
    // Stopped: still reported with the volume its next start attaches; a backup of it.
    assert_eq!(r.instances[0].volumes, vec![vol.id]);
    let backup = DesiredBackup {
        id: Uuid::new_v4(),
        volume_id: vol.id,
        deleted: false,
    };
    f.set_storage(vec![vol.clone()], vec![backup.clone()]);
    f.wait_report("a backup", |r| {
        r.backups
            .iter()
            .any(|b| b.id == backup.id && b.state == VolumeState::Ready)
    })
    .await;

    // Delete, then the instance leaves the desired state and the reports.
    d.generation = 3;
    d.power = DesiredPower::Deleted;
    f.set(vec![d.clone()]);
    f.wait_report("a gone instance", |r| {
        state_of(r, id) == Some(ActualState::Gone)
    })
    .await;
    assert!(!dir.join(format!("instances/{id}")).exists());
    vol.generation = 2;
    vol.deleted = true;
    f.set_storage(
        vec![vol.clone()],
        vec![DesiredBackup {
            deleted: true,
            ..backup
        }],
    );
    f.wait_report("a gone volume and backup", |r| {
        volume_state(r, vol.id) == Some(VolumeState::Gone)
            && r.backups.iter().all(|b| b.state == VolumeState::Gone)
    })
    .await;
    assert!(!dir.join(format!("volumes/{}.qcow2", vol.id)).exists());
    f.set_storage(vec![], vec![]);
    f.set(vec![]);
    let n = f.cp.lock().unwrap().reports.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reports = f.cp.lock().unwrap().reports.clone();
        if reports[n..].iter().any(|(_, r)| r.instances.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
