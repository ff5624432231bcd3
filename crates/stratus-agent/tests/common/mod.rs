//! Helpers shared by the guest tests: the tiny image, a host converging instances with
//! images from a local directory, the console log, and a shell on the serial console.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stratus_agent::accel::Accel;
use stratus_agent::agent::{Host, ImageStore, Instance};
use stratus_agent::client::sha256_file;
use stratus_api::{DesiredInstance, DesiredPower, InstanceReport};
use uuid::Uuid;

/// The tiny guest image, built from Debian packages by the repository's script.
pub fn tiny_image() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = root.join("target/images/tiny.qcow2");
    let status = std::process::Command::new(root.join("scripts/build-tiny-image"))
        .arg(&out)
        .status()
        .expect("run build-tiny-image");
    assert!(status.success(), "building the tiny image failed");
    out
}

pub struct Fixture {
    pub root: PathBuf,
    pub images: PathBuf,
    pub image_id: Uuid,
    pub sha: String,
}

pub async fn fixture() -> Fixture {
    let root = std::env::temp_dir().join(format!("stratus-agent-conv-{}", Uuid::new_v4().simple()));
    let images = root.join("store");
    std::fs::create_dir_all(&images).unwrap();
    let image_id = Uuid::new_v4();
    let src = tiny_image();
    std::os::unix::fs::symlink(&src, images.join(format!("{image_id}.qcow2"))).unwrap();
    let sha = sha256_file(&src).await.unwrap();
    Fixture {
        root,
        images,
        image_id,
        sha,
    }
}

impl Fixture {
    pub fn host(&self, name: &str, faults: &[&str]) -> Host {
        Host::new(
            &self.root.join(name),
            Accel::Tcg,
            "127.0.0.1",
            faults.iter().map(|f| f.to_string()).collect(),
            ImageStore::Local(self.images.clone()),
        )
        .unwrap()
    }

    pub fn desired(&self, id: Uuid, hostname: &str) -> DesiredInstance {
        DesiredInstance {
            hostname: hostname.into(),
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaTest test@stratus".into()],
            ..desired_instance(id, self.image_id, &self.sha)
        }
    }
}

/// A small running guest of `image_id` named `vm-one`, generation 1, no volumes.
pub fn desired_instance(id: Uuid, image_id: Uuid, sha: &str) -> DesiredInstance {
    DesiredInstance {
        id,
        generation: 1,
        hostname: "vm-one".into(),
        vcpus: 1,
        memory_mib: 256,
        root_disk_gib: 1,
        image_id,
        image_sha256: sha.into(),
        power: DesiredPower::Running,
        stop_timeout_secs: 60,
        soft_reboots: 0,
        hard_reboots: 0,
        ssh_keys: vec![],
        user_data: None,
        console_password: None,
        console_serial: 0,
        console_expires_at: None,
        capture_image_id: None,
        volumes: vec![],
        boot_volume: None,
        nics: vec![],
    }
}

/// Report (and acknowledge) until the console collected so far contains `needle`.
pub async fn wait_console(inst: &Instance, console: &mut String, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (r, mark) = inst.report().await;
        if let Some(text) = r.console_append {
            console.push_str(&text);
        }
        inst.acknowledge(mark).await;
        if console.matches(needle).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} (#{count}) on the console:\n{console}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn report(inst: &Instance) -> InstanceReport {
    inst.report().await.0
}

/// No process mentions `id` on its command line.
pub fn no_process(id: Uuid) -> bool {
    let id = id.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .all(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| !String::from_utf8_lossy(&c).contains(&id))
                .unwrap_or(true)
        })
}

/// A root shell on a guest's serial console (the tiny image leaves one on ttyS0).
pub struct Shell(stratus_agent::console::SerialShell);

impl Shell {
    pub async fn connect(path: &Path) -> Shell {
        Shell(
            stratus_agent::console::SerialShell::connect(path)
                .await
                .unwrap(),
        )
    }

    /// Run `cmd` and return what it printed; the test fails after `timeout`.
    pub async fn run(&mut self, cmd: &str, timeout: Duration) -> String {
        self.0.run(cmd, timeout).await.unwrap()
    }

    /// `run` with a 30 s timeout.
    pub async fn sh(&mut self, cmd: &str) -> String {
        self.run(cmd, Duration::from_secs(30)).await
    }
}
