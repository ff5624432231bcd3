//! The real `stratus` binary: the CLI end to end, and `kill -9` during a burst of writes.

#[path = "../../stratus-server/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_stratus");

/// Start `stratus serve` on port 0 and read the address it prints.
fn spawn_server(dir: &std::path::Path, database: &str) -> (Child, String) {
    spawn_server_with(dir, database, None)
}

/// With a configuration file, the server also runs its local agent (as configured there).
fn spawn_server_with(
    dir: &std::path::Path,
    database: &str,
    config: Option<&std::path::Path>,
) -> (Child, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve");
    match config {
        Some(c) => cmd.arg("--config").arg(c),
        None => cmd.arg("--no-local-agent"),
    };
    let mut child = cmd
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database",
            database,
            "--rate-limit",
            "0",
            "--s3-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--admin-password",
            ADMIN_PW,
            "--secadmin-password",
            SECADMIN_PW,
            "--auditor-password",
            AUDITOR_PW,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stratus serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("Stratus listening on ") {
            break rest.trim().to_string();
        }
    };
    let s3 = lines
        .next()
        .and_then(|l| l.ok())
        .and_then(|l| {
            l.strip_prefix("S3 endpoint on ")
                .map(|r| r.trim().to_string())
        })
        .unwrap_or_default();
    S3_URL.with(|u| *u.borrow_mut() = s3);
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

thread_local! {
    /// The S3 endpoint of the server this thread spawned last.
    static S3_URL: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn cli(
    url: &str,
    cfg: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("STRATUS_ENDPOINT", url)
        .env("STRATUS_CONFIG", cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test]
async fn cli_builds_a_department_end_to_end() {
    let dir = temp_dir();
    let (mut server, url) = spawn_server(&dir, &fresh_database().await);
    let cfg = dir.join("cli.toml");
    let run = |args: &[&str], stdin: Option<&str>| cli(&url, &cfg, args, stdin);

    let (ok, out, err) = run(
        &["login", "-u", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PW}\n")),
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("Logged in as admin"));
    let (ok, out, _) = run(&["-o", "json", "org", "create", "省数据局"], None);
    assert!(ok);
    let org = json_of(&out)["id"].as_str().unwrap().to_string();
    let mut parent = String::new();
    for level in 1..=5 {
        let args: Vec<String> = if level == 1 {
            vec![
                "-o".into(),
                "json".into(),
                "vdc".into(),
                "create".into(),
                format!("L{level}"),
                "--org".into(),
                org.clone(),
            ]
        } else {
            vec![
                "-o".into(),
                "json".into(),
                "vdc".into(),
                "create".into(),
                format!("L{level}"),
                "--parent".into(),
                parent.clone(),
            ]
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = run(&args, None);
        assert!(ok, "{err}");
        parent = json_of(&out)["id"].as_str().unwrap().to_string();
    }
    let (ok, _, _) = run(&["project", "create", "web", "--vdc", &parent], None);
    assert!(ok);
    let (ok, out, _) = run(&["vdc", "tree"], None);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(
        lines[4].starts_with("        L5 (VDC L5") && lines[5].contains("• web (project"),
        "{out}"
    );
    let (ok, out, _) = run(
        &[
            "quota",
            "set",
            "--vdc",
            &parent,
            "vcpus=16",
            "projects=unlimited",
        ],
        None,
    );
    assert!(ok, "{out}");
    assert!(out.contains("vcpus") && out.contains("16"), "{out}");
    let (ok, out, _) = run(&["-o", "yaml", "quota", "show", "--vdc", &parent], None);
    assert!(ok && out.contains("resource: \"vcpus\""), "{out}");
    // The reference flavors are there; a custom one can be added for this VDC.
    let (ok, out, _) = run(&["flavor", "list"], None);
    assert!(
        ok && out.contains("basic.2c4g") && out.contains("compute.32c128g"),
        "{out}"
    );
    let (ok, out, err) = run(
        &[
            "-o",
            "json",
            "flavor",
            "create",
            "dept.4c8g",
            "--vcpus",
            "4",
            "--memory-mib",
            "8192",
            "--disk-gib",
            "50",
            "--vdc",
            &parent,
        ],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(json_of(&out)["vdc_ids"][0].as_str(), Some(parent.as_str()));
    // Errors are clear and exit non-zero.
    let (ok, _, err) = run(&["quota", "set", "--vdc", &parent, "gpus=1"], None);
    assert!(!ok && err.contains("gpus: unknown resource"), "{err}");
    let (ok, _, err) = run(&["org", "create", ""], None);
    assert!(
        !ok && err.contains("name: must not be empty") && err.contains("HTTP 400"),
        "{err}"
    );
    // The security admin creates a user; the auditor sees it in the audit log.
    let (ok, _, _) = run(
        &["login", "-u", "secadmin", "--password-stdin"],
        Some(&format!("{SECADMIN_PW}\n")),
    );
    assert!(ok);
    let (ok, out, err) = run(
        &[
            "-o",
            "json",
            "user",
            "create",
            "wangwu",
            "--vdc",
            &parent,
            "--password-stdin",
        ],
        Some(&format!("{USER_PW}\n")),
    );
    assert!(ok, "{err}");
    let uid = json_of(&out)["id"].as_str().unwrap().to_string();
    let (ok, _, err) = run(
        &[
            "grant", "create", "--user", &uid, "--role", "member", "--vdc", &parent,
        ],
        None,
    );
    assert!(ok, "{err}");
    let (ok, _, _) = run(
        &["login", "-u", "auditor", "--password-stdin"],
        Some(&format!("{AUDITOR_PW}\n")),
    );
    assert!(ok);
    let (ok, out, _) = run(&["audit", "list", "--operation", "user_create"], None);
    assert!(
        ok && out.contains("secadmin") && out.contains("success"),
        "{out}"
    );
    let csv = dir.join("audit.csv");
    let (ok, _, err) = run(&["audit", "export", "--file", csv.to_str().unwrap()], None);
    assert!(ok, "{err}");
    assert!(std::fs::read_to_string(&csv).unwrap().lines().count() > 10);
    // Access keys: a program signs its requests instead of holding a session.
    let (ok, _, _) = run(
        &["login", "-u", "wangwu", "--password-stdin"],
        Some(&format!("{USER_PW}\n")),
    );
    assert!(ok);
    let (ok, out, _) = run(
        &[
            "-o",
            "json",
            "accesskey",
            "create",
            "--description",
            "batch job",
        ],
        None,
    );
    assert!(ok);
    let key = json_of(&out);
    let signed = Command::new(BIN)
        .args(["-o", "json", "whoami"])
        .env("STRATUS_ENDPOINT", &url)
        .env("STRATUS_CONFIG", dir.join("none.toml"))
        .env(
            "STRATUS_ACCESS_KEY",
            key["access_key"]["id"].as_str().unwrap(),
        )
        .env(
            "STRATUS_SECRET_KEY",
            key["secret_access_key"].as_str().unwrap(),
        )
        .output()
        .unwrap();
    let who = json_of(&String::from_utf8_lossy(&signed.stdout));
    assert_eq!(
        (who["user"]["name"].as_str(), who["auth_method"].as_str()),
        (Some("wangwu"), Some("access_key"))
    );
    let (ok, _, _) = run(&["logout"], None);
    assert!(ok);
    let (ok, _, err) = run(&["whoami"], None);
    assert!(!ok && err.contains("HTTP 401"), "{err}");
    server.kill().unwrap();
    let _ = server.wait();
}

/// Kill the server with SIGKILL in the middle of a burst of project creates, restart it on
/// the same store, and check that every acknowledged create survived and that the quota
/// counters equal the real number of projects.
#[tokio::test]
async fn kill_9_during_a_burst_loses_no_acknowledged_write() {
    let dir = temp_dir();
    let database = fresh_database().await;
    let (mut server, url) = spawn_server(&dir, &database);
    let ts = TestServer {
        server: None,
        url: url.clone(),
        dir: dir.clone(),
        config: test_config(&dir, String::new()),
    };
    let admin = Arc::new(ts.admin().await);
    let t = tree(&admin, "crash").await;
    let _: Value = admin
        .put(
            &format!("/v1/vdcs/{}/quota", t.top),
            &json!({"limits": {"projects": 100000}}),
        )
        .await
        .unwrap();
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (c, ack, vdc) = (admin.clone(), acknowledged.clone(), t.child.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}");
                match c
                    .post::<Value>("/v1/projects", &json!({"vdc_id": vdc, "name": name}))
                    .await
                {
                    Ok(_) => ack.lock().unwrap().push(name),
                    Err(_) => break,
                }
            }
        }));
    }
    // Let the burst run, then kill without warning.
    while acknowledged.lock().unwrap().len() < 150 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill().unwrap();
    let _ = server.wait();
    for w in writers {
        let _ = w.await;
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= 150);

    let (mut server, url) = spawn_server(&dir, &database);
    let ts = TestServer {
        server: None,
        url,
        dir: dir.clone(),
        config: test_config(&dir, String::new()),
    };
    let admin = ts.admin().await;
    let q = vec![("vdc_id", t.child.clone()), ("limit", "1000".to_string())];
    let names: std::collections::HashSet<String> = list_all(&admin, "/v1/projects", q)
        .await
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    for name in &acked {
        assert!(names.contains(name), "acknowledged project {name} was lost");
    }
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
    let quota: Value = admin
        .get(&format!("/v1/vdcs/{}/quota", t.top), &[])
        .await
        .unwrap();
    let used = quota["levels"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == "projects")
        .unwrap()["used"]
        .as_i64()
        .unwrap();
    assert_eq!(
        used as usize,
        names.len(),
        "the top VDC counts every project below it, the tree's first one included"
    );
    server.kill().unwrap();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The compute commands against `stratus serve` with its local agent: image upload from a
/// file, key pair, `server create --wait`, console log, stop, image download, delete.
#[tokio::test]
async fn cli_runs_a_real_guest_end_to_end() {
    let dir = temp_dir();
    let conf = dir.join("stratus.toml");
    std::fs::write(
        &conf,
        "[local_agent]\nhypervisor = \"tcg\"\n[compute]\nreport_interval_secs = 2\n",
    )
    .unwrap();
    let (mut server, url) = spawn_server_with(&dir, &fresh_database().await, Some(&conf));
    let cfg = dir.join("cli.toml");
    let run = |args: &[&str]| cli(&url, &cfg, args, None);
    let (ok, _, err) = cli(
        &url,
        &cfg,
        &["login", "-u", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PW}\n")),
    );
    assert!(ok, "{err}");
    let org = json_of(&run(&["-o", "json", "org", "create", "局"]).1)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let vdc = json_of(&run(&["-o", "json", "vdc", "create", "处", "--org", &org]).1)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let project = json_of(&run(&["-o", "json", "project", "create", "网", "--vdc", &vdc]).1)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, _, err) = run(&[
        "flavor",
        "create",
        "tiny.1c256m",
        "--vcpus",
        "1",
        "--memory-mib",
        "256",
        "--disk-gib",
        "1",
    ]);
    assert!(ok, "{err}");

    // A file that is not qcow2: refused, with the reason and how to retry.
    let junk = dir.join("junk.qcow2");
    std::fs::write(&junk, vec![0x42u8; 100_000]).unwrap();
    let (ok, _, err) = run(&[
        "image",
        "create",
        "--name",
        "junk",
        "--format",
        "qcow2",
        "--file",
        junk.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("is not a valid qcow2 image"), "{err}");

    let tiny =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/images/tiny.qcow2");
    let (ok, out, err) = run(&[
        "-o",
        "json",
        "image",
        "create",
        "--name",
        "tiny",
        "--format",
        "qcow2",
        "--file",
        tiny.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let img = json_of(&out);
    assert_eq!(img["status"], "active", "{img}");
    let key = dir.join("id.pub");
    std::fs::write(&key, ssh_key()).unwrap();
    let (ok, _, err) = run(&[
        "keypair",
        "create",
        "--project",
        &project,
        "--name",
        "ops",
        "--public-key-file",
        key.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");

    let (ok, out, err) = run(&[
        "-o",
        "json",
        "server",
        "create",
        "--project",
        &project,
        "--flavor",
        "tiny.1c256m",
        "--image",
        "tiny",
        "--name",
        "cli1",
        "--key-name",
        "ops",
        "--wait",
    ]);
    assert!(ok, "{out}{err}");
    let vm = json_of(&out);
    let vm = if vm.is_array() { vm[0].clone() } else { vm };
    assert_eq!(vm["status"], "running", "{vm}");
    let id = vm["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let (_, log, _) = run(&["server", "console-log", &id]);
        if log.contains("STRATUS-READY hostname=cli1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ready marker: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (ok, out, _) = run(&["server", "list", "--project", &project]);
    assert!(
        ok && out.contains("cli1") && out.contains("running"),
        "{out}"
    );
    let (ok, out, err) = run(&["server", "stop", &id, "--wait"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("stopped"), "{out}");
    let (ok, _, err) = run(&["server", "reboot", &id]);
    assert!(!ok && err.contains("needs it to be running"), "{err}");

    let raw = dir.join("tiny.raw");
    let (ok, _, err) = run(&[
        "image",
        "download",
        img["id"].as_str().unwrap(),
        "--format",
        "raw",
        "--file",
        raw.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::metadata(&raw).unwrap().len(),
        img["virtual_size_bytes"].as_u64().unwrap()
    );

    let (ok, out, err) = run(&["server", "delete", &id, "--wait"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = run(&["server", "show", &id]);
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, out, _) = run(&["-o", "json", "host", "list"]);
    assert!(ok);
    assert_eq!(json_of(&out)[0]["state"], "up");
    server.kill().unwrap();
    let _ = server.wait();
}

/// Kill the server with SIGKILL in the middle of a large S3 upload, restart it on the same
/// data: the object is not there, no partial data remains, usage counts nothing for it.
#[tokio::test]
async fn kill_9_during_an_s3_upload_leaves_no_partial_object() {
    let dir = temp_dir();
    let database = fresh_database().await;
    let (mut server, url) = spawn_server(&dir, &database);
    let s3 = S3_URL.with(|u| u.borrow().clone());
    assert!(s3.starts_with("http://"), "no S3 endpoint: {s3:?}");
    let ts = TestServer {
        server: None,
        url: url.clone(),
        dir: dir.clone(),
        config: test_config(&dir, String::new()),
    };
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let t = tree(&admin, "crash").await;
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "uploader",
        Some(&t.child),
        Some(("member", "project", &t.project)),
    )
    .await;
    let k: Value = member
        .post("/v1/access-keys", &json!({"project_id": t.project}))
        .await
        .unwrap();
    let (ak, sk) = (
        k["access_key"]["id"].as_str().unwrap().to_string(),
        k["secret_access_key"].as_str().unwrap().to_string(),
    );
    let py = |script: &str, endpoint: &str| {
        Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import boto3, os\nfrom botocore.config import Config\n\
                 s3 = boto3.client('s3', endpoint_url='{endpoint}', region_name='gd-1', aws_access_key_id='{ak}', \
                 aws_secret_access_key='{sk}', config=Config(s3={{'addressing_style': 'path'}}, retries={{'max_attempts': 0}}))\n{script}"
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = py("s3.create_bucket(Bucket='crash')\ns3.put_object(Bucket='crash', Key='small', Body=b'kept')", &s3)
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A 512 MiB file: it is still arriving when the server dies.
    let big = dir.join("big.bin");
    {
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(512 << 20).unwrap();
    }
    let uploader = py(
        &format!(
            "s3.upload_file('{}', 'crash', 'big', Config=__import__('boto3').s3.transfer.TransferConfig(multipart_threshold=1 << 40))",
            big.display()
        ),
        &s3,
    );
    // Wait until data is landing in the blob store's temporary directory.
    let tmp = dir.join("objects").join("tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let size: u64 = std::fs::read_dir(&tmp)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if size > 8 << 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never reached the server"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.kill().unwrap();
    let _ = server.wait();
    let _ = uploader.wait_with_output();

    let (mut server, url) = spawn_server(&dir, &database);
    let s3 = S3_URL.with(|u| u.borrow().clone());
    let check = py(
        "from botocore.exceptions import ClientError\n\
         assert s3.get_object(Bucket='crash', Key='small')['Body'].read() == b'kept'\n\
         try:\n    s3.head_object(Bucket='crash', Key='big'); raise SystemExit('the partial object is visible')\n\
         except ClientError as e:\n    assert e.response['Error']['Code'] in ('404', 'NoSuchKey'), e\n\
         assert [o['Key'] for o in s3.list_objects_v2(Bucket='crash')['Contents']] == ['small']",
        &s3,
    )
    .wait_with_output()
    .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let leftovers = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "temporary upload files survived the restart");
    let ts = TestServer {
        server: None,
        url,
        dir: dir.clone(),
        config: test_config(&dir, String::new()),
    };
    let admin = ts.admin().await;
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
    let q: Value = admin
        .get(&format!("/v1/projects/{}/quota", t.project), &[])
        .await
        .unwrap();
    let objects = q["levels"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == "objects")
        .unwrap()["used"]
        .clone();
    assert_eq!(objects, 1);
    server.kill().unwrap();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The catalog from the command line: an administrator publishes a service and an
/// approval flow; a department user requests it; the approver decides from the queue; the
/// order provisions it; bad parameters are refused with the field named. Then a stack from
/// a template file: validated (the error's line shown), made, looked at, deleted.
#[tokio::test]
async fn cli_requests_approves_provisions_and_orchestrates() {
    let dir = temp_dir();
    let (mut server, url) = spawn_server(&dir, &fresh_database().await);
    let (admin_cfg, dept_cfg, boss_cfg) =
        (dir.join("a.toml"), dir.join("d.toml"), dir.join("b.toml"));
    let as_ =
        |cfg: &std::path::Path, args: &[&str], stdin: Option<&str>| cli(&url, cfg, args, stdin);
    let json_ok = |cfg: &std::path::Path, args: &[&str]| {
        let mut a = vec!["-o", "json"];
        a.extend_from_slice(args);
        let (ok, out, err) = cli(&url, cfg, &a, None);
        assert!(ok, "{args:?}: {err}");
        json_of(&out)
    };
    let login = |cfg: &std::path::Path, user: &str, pw: &str| {
        let (ok, out, err) = as_(
            cfg,
            &["login", "-u", user, "--password-stdin"],
            Some(&format!("{pw}\n")),
        );
        assert!(ok, "{out}{err}");
    };
    let sec_cfg = dir.join("s.toml");
    login(&admin_cfg, "admin", ADMIN_PW);
    login(&sec_cfg, "secadmin", SECADMIN_PW);
    let org = json_ok(&admin_cfg, &["org", "create", "交通局"]);
    let vdc = json_ok(
        &admin_cfg,
        &[
            "vdc",
            "create",
            "信息科",
            "--org",
            org["id"].as_str().unwrap(),
        ],
    );
    let vdc = vdc["id"].as_str().unwrap().to_string();
    let project = json_ok(&admin_cfg, &["project", "create", "portal", "--vdc", &vdc]);
    let project = project["id"].as_str().unwrap().to_string();
    let mut users = Vec::new();
    for (name, role) in [("dept", "member"), ("boss", "approver")] {
        let (ok, out, err) = as_(
            &sec_cfg,
            &[
                "-o",
                "json",
                "user",
                "create",
                name,
                "--vdc",
                &vdc,
                "--password-stdin",
            ],
            Some(&format!("{USER_PW}\n")),
        );
        assert!(ok, "{err}");
        let uid = json_of(&out)["id"].as_str().unwrap().to_string();
        json_ok(
            &sec_cfg,
            &[
                "grant", "create", "--user", &uid, "--role", role, "--vdc", &vdc,
            ],
        );
        users.push(uid);
    }
    login(&dept_cfg, "dept", USER_PW);
    login(&boss_cfg, "boss", USER_PW);

    let form = dir.join("form.json");
    std::fs::write(
        &form,
        r#"[{"name": "name"}, {"name": "cidr", "allowed": ["10.10.0.0/16", "10.20.0.0/16"]}]"#,
    )
    .unwrap();
    let svc = json_ok(
        &admin_cfg,
        &[
            "catalog",
            "create",
            "--name",
            "专有网络 VPC",
            "--kind",
            "vpc",
            "--category",
            "network",
            "--form",
            form.to_str().unwrap(),
        ],
    );
    let svc = svc["id"].as_str().unwrap().to_string();
    let levels = dir.join("levels.json");
    std::fs::write(
        &levels,
        format!(
            r#"[{{"name": "科长", "approvers": [{{"user_id": "{}"}}]}}]"#,
            users[1]
        ),
    )
    .unwrap();
    json_ok(
        &admin_cfg,
        &[
            "approval",
            "flow",
            "create",
            "--name",
            "科室审批",
            "--vdc",
            &vdc,
            "--levels",
            levels.to_str().unwrap(),
        ],
    );

    let (ok, out, _) = as_(&dept_cfg, &["catalog", "list"], None);
    assert!(ok && out.contains("专有网络 VPC"), "{out}");
    let (ok, _, err) = as_(
        &dept_cfg,
        &[
            "request",
            "submit",
            "--service",
            &svc,
            "--project",
            &project,
            "--set",
            "name=net",
            "--set",
            "cidr=10.99.0.0/16",
        ],
        None,
    );
    assert!(
        !ok && err.contains("parameters.cidr") && err.contains("HTTP 400"),
        "{err}"
    );
    let r = json_ok(
        &dept_cfg,
        &[
            "request",
            "submit",
            "--service",
            &svc,
            "--project",
            &project,
            "--set",
            "name=net",
            "--set",
            "cidr=10.10.0.0/16",
            "--description",
            "portal network",
        ],
    );
    assert_eq!(r["status"], "approving");
    let rid = r["id"].as_str().unwrap().to_string();
    let (ok, out, _) = as_(&boss_cfg, &["approval", "queue"], None);
    assert!(ok && out.contains(&rid) && out.contains("1/1"), "{out}");
    let (ok, _, err) = as_(&dept_cfg, &["approval", "approve", &rid], None);
    assert!(!ok && err.contains("own request"), "{err}");
    let d = json_ok(
        &boss_cfg,
        &["approval", "approve", &rid, "--comment", "同意"],
    );
    assert_eq!(d["status"], "approved");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = json_ok(&dept_cfg, &["request", "show", &rid]);
        if r["status"] == "completed" {
            break;
        }
        assert!(
            ["approved", "provisioning"].contains(&r["status"].as_str().unwrap()),
            "{r}"
        );
        assert!(std::time::Instant::now() < deadline, "not provisioned: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (ok, out, _) = as_(&dept_cfg, &["order", "list"], None);
    assert!(
        ok && out.contains("completed") && out.contains("net"),
        "{out}"
    );
    let (ok, out, _) = as_(&dept_cfg, &["vpc", "list", "--project", &project], None);
    assert!(ok && out.contains("10.10.0.0/16"), "{out}");

    // Orchestration from the CLI: validate, create and wait, look, delete.
    let template = "parameters:\n  cidr:\n    default: 10.30.0.0/16\nresources:\n  net:\n    type: Stratus::VPC\n    properties:\n      cidr: {get_param: cidr}\n  sub:\n    type: Stratus::Subnet\n    properties:\n      vpc: {get_resource: net}\n      cidr: 10.31.1.0/24\noutputs:\n  subnet_cidr:\n    value: {get_attr: [sub, cidr]}\n";
    let file = dir.join("net.yaml");
    std::fs::write(&file, template).unwrap();
    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        template.replace("Stratus::Subnet", "Stratus::Subnett"),
    )
    .unwrap();
    let (ok, _, err) = as_(
        &dept_cfg,
        &["stack", "validate", "--template", broken.to_str().unwrap()],
        None,
    );
    assert!(
        !ok && err.contains("resources.sub.type (template line 10, column 11)"),
        "{err}"
    );
    let st = json_ok(
        &dept_cfg,
        &[
            "stack",
            "create",
            "portal-net",
            "--project",
            &project,
            "--template",
            file.to_str().unwrap(),
            "--set",
            "cidr=10.31.0.0/16",
            "--wait",
        ],
    );
    assert_eq!(st["status"], "complete", "{st}");
    let sid = st["id"].as_str().unwrap().to_string();
    let (ok, out, _) = as_(&dept_cfg, &["stack", "resources", &sid], None);
    assert!(
        ok && out.contains("Stratus::Subnet") && out.matches("complete").count() == 2,
        "{out}"
    );
    let (ok, out, _) = as_(&dept_cfg, &["stack", "outputs", &sid], None);
    assert!(
        ok && out.contains("subnet_cidr") && out.contains("10.31.1.0/24"),
        "{out}"
    );
    let (ok, out, _) = as_(&dept_cfg, &["stack", "template", &sid], None);
    assert!(ok && out == template, "{out}");
    let (ok, out, _) = as_(&dept_cfg, &["vpc", "list", "--project", &project], None);
    assert!(ok && out.contains("10.31.0.0/16"), "{out}");
    let (ok, out, err) = as_(&dept_cfg, &["stack", "delete", &sid, "--wait"], None);
    assert!(ok && out.contains("Deleted."), "{out}{err}");
    let (ok, out, _) = as_(&dept_cfg, &["vpc", "list", "--project", &project], None);
    assert!(ok && !out.contains("10.31.0.0/16"), "{out}");

    // Prices, an estimate, a bill and a budget through the CLI.
    for (meter, price) in [("vcpu_hours", "0.12"), ("memory_gib_hours", "0.03")] {
        let p = json_ok(&admin_cfg, &["price", "create", meter, price]);
        assert_eq!(p["unit_price"], format!("{price}0000"), "{p}");
    }
    let (ok, out, err) = as_(
        &dept_cfg,
        &["price", "create", "vcpu_hours", "1", "--spec", "basic.2c4g"],
        None,
    );
    assert!(!ok && err.contains("price.write"), "{out}{err}");
    let (ok, out, err) = as_(
        &dept_cfg,
        &[
            "price",
            "estimate",
            "--flavor",
            "basic.2c4g",
            "--hours",
            "10",
        ],
        None,
    );
    // 2 × 0.12 + 4 × 0.03 = 0.36 per hour.
    assert!(
        ok && out.contains("Pay-as-you-go: 0.3600 CNY per hour, 3.60 CNY for 10 hours"),
        "{out}{err}"
    );
    let (ok, out, _) = as_(&dept_cfg, &["usage", "meters"], None);
    assert!(
        ok && out.contains("vcpu_hours") && out.contains("GiB-hour"),
        "{out}"
    );
    let bill = json_ok(&dept_cfg, &["bill", "show", "--project", &project]);
    assert_eq!(bill["scope"], "project", "{bill}");
    let (ok, out, _) = as_(
        &dept_cfg,
        &["bill", "show", "--project", &project, "--export", "csv"],
        None,
    );
    assert!(ok && out.starts_with("project_id,vdc_id"), "{out}");
    // Subscriptions: the CLI reaches the API and carries its errors.
    let (ok, out, err) = as_(
        &dept_cfg,
        &["subscription", "create", &project, "--months", "0"],
        None,
    );
    assert!(
        !ok && err.contains("months: must be a whole number"),
        "{out}{err}"
    );
    let (ok, out, err) = as_(&dept_cfg, &["subscription", "create", &project], None);
    assert!(!ok && err.contains("not found"), "{out}{err}");
    let subs = json_ok(&dept_cfg, &["subscription", "list", "--active"]);
    assert_eq!(subs, json!([]), "{subs}");
    let b = json_ok(&admin_cfg, &["budget", "set", &vdc, "5000"]);
    assert_eq!(b["monthly_limit"], "5000.00", "{b}");
    let r = json_ok(
        &admin_cfg,
        &["report", "resources", "--vdc", &vdc, "--period", "daily"],
    );
    assert_eq!(r["scope"], "vdc", "{r}");
    assert_eq!(r["rows"][0]["vdc_id"], vdc.as_str());
    let s = json_ok(
        &admin_cfg,
        &[
            "report", "schedule", "weekly", "--period", "weekly", "--vdc", &vdc,
        ],
    );
    assert_eq!(s["period"], "weekly", "{s}");

    // A custom metric, an alert rule over it, and a ticket, through the CLI.
    let pushed = json_ok(
        &dept_cfg,
        &[
            "metrics",
            "push",
            "--project",
            &project,
            "jobs_waiting",
            "7",
            "--label",
            "queue=print",
        ],
    );
    assert_eq!(pushed["samples"], 1, "{pushed}");
    let q = json_ok(&dept_cfg, &["metrics", "query", "jobs_waiting"]);
    assert_eq!(q["result"][0]["value"][1], "7", "{q}");
    assert_eq!(q["result"][0]["metric"]["queue"], "print", "{q}");
    let (ok, out, _) = as_(&dept_cfg, &["metrics", "query", "jobs_waiting"], None);
    assert!(ok && out.contains("queue=print"), "{out}");
    let (ok, out, err) = as_(
        &dept_cfg,
        &[
            "alert",
            "rule",
            "create",
            "Jobs",
            "nosuch > 1",
            "--project",
            &project,
        ],
        None,
    );
    assert!(!ok && err.contains("unknown metric nosuch"), "{out}{err}");
    let rule = json_ok(
        &dept_cfg,
        &[
            "alert",
            "rule",
            "create",
            "JobsWaiting",
            "jobs_waiting > 5",
            "--project",
            &project,
            "--severity",
            "minor",
            "--for",
            "1m",
        ],
    );
    assert_eq!(rule["for_secs"], 60, "{rule}");
    let (ok, out, _) = as_(&dept_cfg, &["alert", "rule", "list"], None);
    assert!(ok && out.contains("JobsWaiting"), "{out}");
    let t = json_ok(
        &dept_cfg,
        &[
            "ticket",
            "create",
            "printer queue stuck",
            "--project",
            &project,
        ],
    );
    let tid = t["id"].as_str().unwrap().to_string();
    let t = json_ok(
        &dept_cfg,
        &["ticket", "move", &tid, "in_progress", "--comment", "on it"],
    );
    assert_eq!(t["state"], "in_progress", "{t}");
    assert_eq!(t["assignee"], "dept", "{t}");
    let (ok, out, err) = as_(&dept_cfg, &["ticket", "move", &tid, "closed"], None);
    assert!(!ok && err.contains("cannot become closed"), "{out}{err}");
    server.kill().unwrap();
}
