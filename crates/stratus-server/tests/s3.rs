//! Object storage with real S3 clients: boto3 and the aws CLI (tests/s3/clients.py) against
//! the Stratus S3 endpoint, with access keys of two departments.

mod common;

use common::*;
use serde_json::{json, Value};
use stratus_client::Client;

/// A member of `project` with an access key bound to it: (access key, secret).
async fn key_for(
    ts: &TestServer,
    sec: &Client,
    name: &str,
    vdc: &str,
    project: &str,
) -> (String, String) {
    let (_, member) = user_with_role(
        ts,
        sec,
        name,
        Some(vdc),
        Some(("member", "project", project)),
    )
    .await;
    let k: Value = member
        .post("/v1/access-keys", &json!({"project_id": project}))
        .await
        .unwrap();
    (
        k["access_key"]["id"].as_str().unwrap().to_string(),
        k["secret_access_key"].as_str().unwrap().to_string(),
    )
}

async fn run_clients(ts: &TestServer, a: &(String, String), b: &(String, String), args: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/clients.py");
    let work = ts.dir.join("s3-work");
    std::fs::create_dir_all(&work).unwrap();
    // Async: the server runs on this test's runtime and must keep serving meanwhile.
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args(args)
        .env(
            "STRATUS_S3",
            format!("http://{}", ts.server.as_ref().unwrap().s3_addr.unwrap()),
        )
        .env("AK_A", &a.0)
        .env("SK_A", &a.1)
        .env("AK_B", &b.0)
        .env("SK_B", &b.1)
        .env("WORK", &work)
        .env("USER_B", "s3b")
        .output()
        .await
        .expect("python3 runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "S3 client session failed:\n{text}");
    eprintln!("{text}");
}

fn usage(q: &Value, resource: &str) -> i64 {
    q["levels"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == resource)
        .unwrap()["used"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn real_s3_clients_run_a_department_session() {
    let ts = TestServer::start_with(|c| c.s3.domain = Some("s3.gd.gov.test".into())).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let ka = key_for(&ts, &sec, "s3a", &a.child, &a.project).await;
    let kb = key_for(&ts, &sec, "s3b", &b.child, &b.project).await;
    run_clients(&ts, &ka, &kb, &[]).await;

    // Usage is counted per project and checks out against the real objects.
    let q: Value = admin
        .get(&format!("/v1/projects/{}/quota", a.project), &[])
        .await
        .unwrap();
    assert_eq!(usage(&q, "buckets"), 2);
    assert!(usage(&q, "objects") > 10);
    assert!(usage(&q, "object_storage_bytes") > 10 << 20);
    let qb: Value = admin
        .get(&format!("/v1/projects/{}/quota", b.project), &[])
        .await
        .unwrap();
    assert_eq!(
        (usage(&qb, "buckets"), usage(&qb, "objects")),
        (0, 0),
        "project B deleted everything"
    );
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");

    // Lifecycle rules, applied by the worker with a clock 31 days ahead.
    run_clients(&ts, &ka, &kb, &["lifecycle-setup"]).await;
    let app = ts.server.as_ref().unwrap().app.clone();
    let blobs = stratus_server::s3::storage::FsBlobStore::open(ts.dir.join("objects")).unwrap();
    let applied = stratus_server::s3::lifecycle::run_once(
        &app,
        &blobs,
        chrono::Utc::now() + chrono::Duration::days(31),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            applied.expired,
            applied.noncurrent_removed,
            applied.uploads_aborted
        ),
        (1, 1, 1),
        "{applied:?}"
    );
    run_clients(&ts, &ka, &kb, &["lifecycle-check"]).await;
    let q: Value = admin
        .get(&format!("/v1/projects/{}/quota", a.project), &[])
        .await
        .unwrap();

    // An object quota: one more object fits, the next is refused with QuotaExceeded.
    let n = usage(&q, "objects");
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", a.project),
            &json!({"limits": {"objects": n + 1}}),
        )
        .await
        .unwrap();
    run_clients(&ts, &ka, &kb, &["quota"]).await;

    // Operators see buckets with usage; other departments do not see them at all.
    let buckets: Vec<Value> = admin.get("/v1/buckets", &[]).await.unwrap();
    let dept_a = buckets
        .iter()
        .find(|b| b["name"] == "dept-a")
        .cloned()
        .unwrap();
    assert_eq!(dept_a["project_id"], a.project.as_str());
    assert!(dept_a["used_objects"].as_i64().unwrap() > 10);
    // Request counts reach the store within seconds.
    let mut counted = dept_a.clone();
    for _ in 0..40 {
        if counted["read_requests"].as_i64() > Some(20)
            && counted["write_requests"].as_i64() > Some(20)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        counted = admin
            .get(&format!("/v1/buckets/{}", id(&dept_a)), &[])
            .await
            .unwrap();
    }
    assert!(counted["read_requests"].as_i64() > Some(20), "{counted}");
    assert!(counted["write_requests"].as_i64() > Some(20), "{counted}");
    let (_, viewer_b) = user_with_role(
        &ts,
        &sec,
        "vb",
        Some(&b.child),
        Some(("viewer", "project", &b.project)),
    )
    .await;
    let seen: Vec<Value> = viewer_b.get("/v1/buckets", &[]).await.unwrap();
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(
        status(
            viewer_b
                .get::<Value>(&format!("/v1/buckets/{}", id(&dept_a)), &[])
                .await
        ),
        404
    );
    // A bucket's own limit applies even when the project has room.
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", a.project),
            &json!({"limits": {"objects": null}}),
        )
        .await
        .unwrap();
    let used = admin
        .get::<Value>(&format!("/v1/buckets/{}", id(&dept_a)), &[])
        .await
        .unwrap()["used_objects"]
        .as_i64()
        .unwrap();
    let e = admin
        .put::<Value>(
            &format!("/v1/buckets/{}/quota", id(&dept_a)),
            &json!({"objects": -5}),
        )
        .await
        .unwrap_err();
    assert!(e.message.starts_with("objects"), "{}", e.message);
    let q: Value = admin
        .put(
            &format!("/v1/buckets/{}/quota", id(&dept_a)),
            &json!({"objects": used + 1}),
        )
        .await
        .unwrap();
    assert_eq!(q["quota_objects"], used + 1);
    run_clients(&ts, &ka, &kb, &["bucket-quota"]).await;

    // Deleted and replaced objects leave no data files behind.
    let files = walk(&ts.dir.join("objects").join("blobs"));
    let q: Value = admin
        .get(&format!("/v1/projects/{}/quota", a.project), &[])
        .await
        .unwrap();
    assert_eq!(
        files as i64,
        usage(&q, "objects") - delete_markers(&ts).await
    );
    ts.stop().await;
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

async fn delete_markers(ts: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE delete_marker = 1")
        .fetch_one(&ts.server.as_ref().unwrap().app.store.db.read)
        .await
        .unwrap()
}
