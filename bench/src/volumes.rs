//! Block storage benchmark (issue: block storage).
//!
//! Inside a real guest (the tiny image under QEMU, TCG here) with a volume of each tier
//! attached through the API: 4 KiB random read and write IOPS and 1 MiB sequential read and
//! write throughput (`stratus-io`, direct I/O, one request at a time), beside the same tool
//! and `fio` on the host's own disk, in the same directory the pool uses, measured in the same
//! run — the physical limit. Also the latency of attach and detach: API call → `in_use` /
//! `available`, and → the disk visible / gone inside the guest.
//!
//! Usage: volume-bench [--image target/images/tiny.qcow2] [--secs 4] [--io PATH-to-stratus-io]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stratus_agent::console::SerialShell;
use uuid::Uuid;

#[path = "common.rs"]
mod common;
use common::*;

/// One measurement: IOPS and MB/s.
#[derive(Debug, Clone, Copy, Default)]
struct Io {
    iops: f64,
    mbps: f64,
}

fn parse_io(line: &str) -> anyhow::Result<Io> {
    let field = |k: &str| -> anyhow::Result<f64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {k} in {line:?}"))
    };
    Ok(Io {
        iops: field("iops=")?,
        mbps: field("mbps=")?,
    })
}

/// The four patterns, as (label, stratus-io mode, block size).
const PATTERNS: [(&str, &str, u32); 4] = [
    ("4k rand read", "randread", 4096),
    ("4k rand write", "randwrite", 4096),
    ("1M seq read", "read", 1 << 20),
    ("1M seq write", "write", 1 << 20),
];
/// The part of each disk the patterns run over (written first, so reads read data).
const SPAN_MIB: u32 = 256;

async fn host_peer(io_tool: &Path, dir: &Path, secs: u32) -> anyhow::Result<(Vec<Io>, Vec<Io>)> {
    let file = dir.join("host-peer.img");
    let layout = tokio::process::Command::new("dd")
        .args([
            "if=/dev/urandom",
            "bs=1M",
            &format!("count={SPAN_MIB}"),
            "oflag=direct",
        ])
        .arg(format!("of={}", file.display()))
        .output()
        .await?;
    anyhow::ensure!(
        layout.status.success(),
        "dd: {}",
        String::from_utf8_lossy(&layout.stderr)
    );
    let mut ours = Vec::new();
    let mut fio = Vec::new();
    for (_, mode, bs) in PATTERNS {
        let out = tokio::process::Command::new(io_tool)
            .arg(&file)
            .args([mode, &bs.to_string(), &secs.to_string()])
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "stratus-io: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ours.push(parse_io(&String::from_utf8_lossy(&out.stdout))?);
        let out = tokio::process::Command::new("fio")
            .args([
                "--name=peer",
                "--ioengine=psync",
                "--direct=1",
                "--iodepth=1",
                "--time_based",
                &format!("--runtime={secs}"),
                &format!("--rw={mode}"),
                &format!("--bs={bs}"),
                &format!("--size={SPAN_MIB}M"),
                "--output-format=json",
            ])
            .arg(format!("--filename={}", file.display()))
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "fio: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let job = &v["jobs"][0];
        let side = if mode.contains("write") {
            &job["write"]
        } else {
            &job["read"]
        };
        fio.push(Io {
            iops: side["iops"].as_f64().unwrap_or(0.0),
            mbps: side["bw_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        });
    }
    let _ = tokio::fs::remove_file(&file).await;
    Ok((ours, fio))
}

async fn settle(api: &Api, path: &str, want: &str) -> anyhow::Result<Value> {
    let t = Instant::now();
    loop {
        let v = api.get(path).await?;
        anyhow::ensure!(v["status"] != "error", "{path} failed: {v}");
        if v["status"] == want && v["task"].is_null() {
            return Ok(v);
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(180),
            "{path} did not become {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Run a command in the guest (its serial console).
async fn sh(shell: &mut SerialShell, cmd: &str) -> anyhow::Result<String> {
    shell.run(cmd, Duration::from_secs(120)).await
}

/// Poll the guest until a disk with `serial` is there (`present`) or gone.
async fn guest_disk(
    shell: &mut SerialShell,
    serial: &str,
    present: bool,
) -> anyhow::Result<String> {
    let cmd = format!(
        "for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = {serial} ] && echo ${{d##*/}}; done; true"
    );
    let t = Instant::now();
    loop {
        let out = sh(shell, &cmd).await?;
        let dev = out
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("vd"))
            .map(str::to_string);
        match (present, dev) {
            (true, Some(d)) => return Ok(d),
            (false, None) => return Ok(String::new()),
            _ => {}
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "disk {serial} did not change"
        );
    }
}

fn p50(v: &[Duration]) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2)
        .copied()
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let image = std::fs::canonicalize(PathBuf::from(
        arg("--image").unwrap_or_else(|| "target/images/tiny.qcow2".into()),
    ))?;
    let secs: u32 = arg("--secs").map(|v| v.parse()).transpose()?.unwrap_or(4);
    let io_tool = PathBuf::from(arg("--io").unwrap_or_else(|| "target/stratus-io".into()));
    let dir = std::env::temp_dir().join(format!("stratus-bench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;

    let (host_ours, host_fio) = host_peer(&io_tool, &dir, secs).await?;

    let mut cfg = config(&dir, "sqlite")?;
    cfg.local_agent.enabled = true;
    cfg.local_agent.hypervisor = "tcg".into();
    cfg.compute.report_interval_secs = 2;
    let server = stratus_server::start(cfg).await?;
    let api = Api::login(&format!("http://{}", server.addr)).await?;
    let project = api.project().await?;
    tiny_guest_setup(&api, &image).await?;
    let v = api
        .post(
            "/v1/instances",
            json!({"name": "iobench", "project_id": project, "flavor": "tiny.1c256m", "image": "tiny"}),
        )
        .await?;
    let vm = v[0]["id"].as_str().unwrap_or_default().to_string();
    settle(&api, &format!("/v1/instances/{vm}"), "running").await?;
    let console = dir
        .join("agent")
        .join("instances")
        .join(&vm)
        .join("console.log");
    let t = Instant::now();
    while !std::fs::read_to_string(&console).is_ok_and(|c| c.contains("STRATUS-READY")) {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "the guest did not boot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sock = dir
        .join("agent")
        .join("s")
        .join(format!("{}.serial", vm.replace('-', "")));
    let mut shell = SerialShell::connect(&sock).await?;

    let mut results = Vec::new();
    let (mut attach_api, mut attach_guest, mut detach_api, mut detach_guest) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for tier in ["normal", "high", "ultra"] {
        let v = api
            .post(
                "/v1/volumes",
                json!({"name": tier, "project_id": project, "size_gib": 1, "volume_type": tier}),
            )
            .await?;
        let vid = v[0]["id"].as_str().unwrap_or_default().to_string();
        let vol = settle(&api, &format!("/v1/volumes/{vid}"), "available").await?;
        let serial = vid.replace('-', "")[..20].to_string();
        let t = Instant::now();
        api.post(
            &format!("/v1/volumes/{vid}/attach"),
            json!({"instance_id": vm}),
        )
        .await?;
        let path = format!("/v1/volumes/{vid}");
        let (a, g) = tokio::join!(
            async { settle(&api, &path, "in_use").await.map(|_| t.elapsed()) },
            async {
                guest_disk(&mut shell, &serial, true)
                    .await
                    .map(|d| (d, t.elapsed()))
            },
        );
        attach_api.push(a?);
        let (dev, seen) = g?;
        attach_guest.push(seen);
        // Lay the span out first: reads of never-written blocks would not touch the disk.
        sh(
            &mut shell,
            &format!("stratus-io /dev/{dev} write 1048576 0 {SPAN_MIB} >/dev/null"),
        )
        .await?;
        let mut row = Vec::new();
        for (_, mode, bs) in PATTERNS {
            let out = sh(
                &mut shell,
                &format!("stratus-io /dev/{dev} {mode} {bs} {secs} {SPAN_MIB}"),
            )
            .await?;
            row.push(parse_io(out.lines().last().unwrap_or(""))?);
        }
        results.push((
            tier,
            vol["max_iops"].as_i64().unwrap_or(0),
            vol["max_mbps"].as_i64().unwrap_or(0),
            row,
        ));
        let t = Instant::now();
        api.post(&format!("/v1/volumes/{vid}/detach"), json!({}))
            .await?;
        let (a, g) = tokio::join!(
            async { settle(&api, &path, "available").await.map(|_| t.elapsed()) },
            async {
                guest_disk(&mut shell, &serial, false)
                    .await
                    .map(|_| t.elapsed())
            },
        );
        detach_api.push(a?);
        detach_guest.push(g?);
        api.call(reqwest::Method::DELETE, &format!("/v1/volumes/{vid}"), None)
            .await?;
    }

    println!("\nVolume I/O inside the guest (stratus-io, direct, 1 outstanding request, {secs} s each, over {SPAN_MIB} MiB)");
    println!(
        "{:<34} {:>9} {:>9} | {:>12} {:>12} {:>12} {:>12}",
        "disk", "limit", "limit", "4k randread", "4k randwrite", "1M seq read", "1M seq write"
    );
    println!(
        "{:<34} {:>9} {:>9} | {:>12} {:>12} {:>12} {:>12}",
        "", "IOPS", "MB/s", "IOPS", "IOPS", "MB/s", "MB/s"
    );
    let line = |name: &str, li: String, lm: String, r: &[Io]| {
        println!(
            "{:<34} {:>9} {:>9} | {:>12.0} {:>12.0} {:>12.1} {:>12.1}",
            name, li, lm, r[0].iops, r[1].iops, r[2].mbps, r[3].mbps
        )
    };
    for (tier, iops, mbps, r) in &results {
        line(
            &format!("guest, {tier} volume"),
            iops.to_string(),
            mbps.to_string(),
            r,
        );
    }
    line(
        "host disk, stratus-io (peer)",
        "-".into(),
        "-".into(),
        &host_ours,
    );
    line(
        "host disk, fio psync (peer)",
        "-".into(),
        "-".into(),
        &host_fio,
    );
    println!("\nAttach and detach (3 volumes, p50 ms)");
    println!(
        "attach: API call -> in_use {:>8.0}   -> disk in the guest {:>8.0}",
        p50(&attach_api),
        p50(&attach_guest)
    );
    println!(
        "detach: API call -> available {:>5.0}   -> disk gone from the guest {:>5.0}",
        p50(&detach_api),
        p50(&detach_guest)
    );

    api.call(
        reqwest::Method::DELETE,
        &format!("/v1/instances/{vm}"),
        None,
    )
    .await?;
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
