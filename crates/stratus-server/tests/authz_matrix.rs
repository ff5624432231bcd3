//! The authorization matrix: every operation of the OpenAPI document, called by every kind
//! of caller, compared with the golden file `authz_matrix.txt`. An operation missing from
//! the request table below fails the test, so no endpoint ships without its row.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1`.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use stratus_client::{Auth, Client};
use uuid::Uuid;

struct Fixture {
    org: String,
    child: String,
    project: String,
    user: String,
    /// A private raw image of the project, an instance of it (in `error`: no host is up),
    /// a host and a key pair.
    image: String,
    instance: String,
    host: String,
    keypair: String,
    join_token: String,
    /// A bucket of the project (made through the store: buckets come from the S3 endpoint).
    bucket: String,
    /// An available volume on `host`, with an available snapshot and backup, and a backup
    /// policy. (No agent runs here: the store marks them available, as a report would.)
    volume: String,
    snapshot: String,
    backup: String,
    policy: String,
    /// A VPC of the project with a subnet, a free port, a security group, a network ACL,
    /// an elastic IP; a second VPC peered with it; the zone's external network.
    vpc: String,
    subnet: String,
    port: String,
    group: String,
    acl: String,
    eip: String,
    peering: String,
    /// A catalog service (a VPC), its approval flow, and a request for it by the platform
    /// administrator, awaiting approval.
    service: String,
    flow: String,
    request: String,
    store: stratus_server::store::Store,
}

async fn fresh_service(admin: &Client) -> String {
    let s: Value = admin
        .post("/v1/services", &json!({"name": uniq("svc"), "kind": "vpc"}))
        .await
        .unwrap();
    id(&s)
}

/// A request by the platform administrator for the fixture's service, awaiting approval
/// (the default flow: the project's approvers).
async fn fresh_request(admin: &Client, fx: &Fixture) -> String {
    let r: Value = admin
        .post(
            "/v1/requests",
            &json!({"service_id": fx.service, "project_id": fx.project,
                "parameters": {"name": uniq("v"), "cidr": "10.70.0.0/16"}}),
        )
        .await
        .unwrap();
    id(&r)
}

async fn fresh_vpc(admin: &Client, fx: &Fixture, cidr: &str) -> String {
    let v: Value = admin
        .post(
            "/v1/vpcs",
            &json!({"project_id": fx.project, "name": uniq("vpc"), "cidr": cidr}),
        )
        .await
        .unwrap();
    id(&v)
}

/// A VPC to peer with the fixture's: its router is put on the fixture VPC's router host, so
/// that which hosts happen to be up by then (the matrix runs long) cannot turn the peering
/// into a cross-host one this fixture has no tunnel for.
async fn fresh_peer_vpc(admin: &Client, fx: &Fixture, cidr: &str) -> String {
    let other = fresh_vpc(admin, fx, cidr).await;
    sqlx::query(
        "UPDATE vpcs SET router_host_id = (SELECT router_host_id FROM vpcs WHERE id = $1) WHERE id = $2",
    )
    .bind(&fx.vpc)
    .bind(&other)
    .execute(&fx.store.db.write)
    .await
    .unwrap();
    other
}

const ONE_GROUP: &str = "resources:\n  g:\n    type: Stratus::SecurityGroup\n";

/// A stack of one security group, at rest (so updates and deletes are not refused as busy).
async fn fresh_stack(admin: &Client, fx: &Fixture) -> String {
    let s: Value = admin
        .post(
            "/v1/stacks",
            &json!({"project_id": fx.project, "name": uniq("st"), "template": ONE_GROUP}),
        )
        .await
        .unwrap();
    let sid = id(&s);
    wait("the stack", 30, || async {
        let s: Value = admin.get(&format!("/v1/stacks/{sid}"), &[]).await.unwrap();
        (s["status"] == "complete").then_some(())
    })
    .await;
    sid
}

async fn fresh_port(admin: &Client, fx: &Fixture) -> String {
    let p: Value = admin
        .post("/v1/ports", &json!({"subnet_id": fx.subnet}))
        .await
        .unwrap();
    id(&p)
}

async fn sql(store: &stratus_server::store::Store, q: &str, id: &str) {
    sqlx::query(q)
        .bind(id.to_string())
        .execute(&store.db.write)
        .await
        .unwrap();
}

/// A volume of the project, available in the fixture host's pool.
async fn fresh_volume(admin: &Client, fx: &Fixture) -> String {
    let v: Vec<Value> = admin
        .post(
            "/v1/volumes",
            &json!({"name": uniq("vol"), "project_id": fx.project, "size_gib": 1}),
        )
        .await
        .unwrap();
    let vid = id(&v[0]);
    sqlx::query("UPDATE volumes SET status = 'available', host_id = $1 WHERE id = $2")
        .bind(&fx.host)
        .bind(&vid)
        .execute(&fx.store.db.write)
        .await
        .unwrap();
    vid
}

/// A volume in the recycle bin (put there through the store: the matrix's server runs with
/// the bin off, so deletes stay final for the other rows).
async fn fresh_recycled(admin: &Client, fx: &Fixture) -> String {
    let vid = fresh_volume(admin, fx).await;
    let v: Value = admin.get(&format!("/v1/volumes/{vid}"), &[]).await.unwrap();
    let now = chrono::Utc::now().to_rfc3339();
    sqlx::query(
        "INSERT INTO recycle_bin (resource_id, kind, name, project_id, vdc_id, deleted_by, deleted_at, purge_at) \
         VALUES ($1, 'volume', 'v', $2, $3, 'admin', $4, $4)",
    )
    .bind(&vid)
    .bind(&fx.project)
    .bind(v["vdc_id"].as_str().unwrap())
    .bind(&now)
    .execute(&fx.store.db.write)
    .await
    .unwrap();
    vid
}

async fn fresh_snapshot(admin: &Client, fx: &Fixture, volume: &str) -> String {
    let s: Value = admin
        .post(
            "/v1/snapshots",
            &json!({"volume_id": volume, "name": uniq("snap")}),
        )
        .await
        .unwrap();
    sql(
        &fx.store,
        "UPDATE snapshots SET status = 'available' WHERE id = $1",
        &id(&s),
    )
    .await;
    id(&s)
}

async fn fresh_backup(admin: &Client, fx: &Fixture) -> String {
    let b: Value = admin
        .post(
            "/v1/backups",
            &json!({"volume_id": fx.volume, "name": uniq("bk")}),
        )
        .await
        .unwrap();
    sql(
        &fx.store,
        "UPDATE backups SET status = 'available' WHERE id = $1",
        &id(&b),
    )
    .await;
    id(&b)
}

async fn fresh_instance(admin: &Client, fx: &Fixture) -> String {
    let v: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": uniq("vm"), "project_id": fx.project, "flavor": "basic.2c4g", "image": fx.image}),
        )
        .await
        .unwrap();
    id(&v[0])
}

async fn fresh_host(fx: &Fixture) -> String {
    let j: Value = Client::new(&fx_url(), Auth::Token(fx.join_token.clone()))
        .post("/v1/agent/join", &json!({"facts": {"hostname": uniq("h"), "cpus": 4, "memory_mib": 8192, "disk_gib": 100, "hypervisor": "tcg", "agent_version": "test"}}))
        .await
        .unwrap();
    j["host_id"].as_str().unwrap().to_string()
}

static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
fn fx_url() -> String {
    URL.get().cloned().unwrap_or_default()
}

/// A number that differs from call to call (distinct rules and address ranges).
fn rand_port() -> i64 {
    (Uuid::new_v4().as_u128() % 1_000_000) as i64
}

/// A price for one hour of its own, somewhere in the next few centuries (never overlapping
/// another's period).
fn fresh_price_body() -> Value {
    let from = chrono::DateTime::parse_from_rfc3339("2100-01-01T00:00:00Z").unwrap()
        + chrono::Duration::hours(rand_port());
    json!({"meter": "eip_hours", "unit_price": "0.01", "effective_from": from,
        "effective_to": from + chrono::Duration::hours(1)})
}

async fn fresh_price(admin: &Client) -> String {
    let p: Value = admin.post("/v1/prices", &fresh_price_body()).await.unwrap();
    id(&p)
}

async fn fresh_rule(admin: &Client, fx: &Fixture) -> String {
    let r: Value = admin
        .post(
            "/v1/alert-rules",
            &json!({"name": uniq("r"), "expr": "stratus_instance_memory_bytes > 1e15",
                "severity": "minor", "project_id": fx.project}),
        )
        .await
        .unwrap();
    id(&r)
}

/// A firing alert of the fixture's project, posted as another system would.
async fn fresh_alert(admin: &Client, fx: &Fixture) -> String {
    let a: Value = admin
        .post(
            "/v1/alerts",
            &json!({"name": uniq("a"), "source": "zabbix", "severity": "minor",
                "project_id": fx.project}),
        )
        .await
        .unwrap();
    id(&a)
}

async fn fresh_ticket(admin: &Client, fx: &Fixture) -> String {
    let t: Value = admin
        .post(
            "/v1/tickets",
            &json!({"title": uniq("t"), "project_id": fx.project}),
        )
        .await
        .unwrap();
    id(&t)
}

async fn fresh_silence(admin: &Client, fx: &Fixture) -> String {
    let s: Value = admin
        .post(
            "/v1/silences",
            &json!({"matchers": {"alertname": uniq("a")}, "ends_at": tomorrow(),
                "project_id": fx.project}),
        )
        .await
        .unwrap();
    id(&s)
}

async fn fresh_channel(admin: &Client, fx: &Fixture) -> String {
    let c: Value = admin
        .post(
            "/v1/notify-channels",
            &json!({"name": uniq("c"), "kind": "webhook", "target": "http://127.0.0.1:9/",
                "vdc_id": fx.child}),
        )
        .await
        .unwrap();
    id(&c)
}

async fn fresh_schedule(admin: &Client, fx: &Fixture) -> String {
    let s: Value = admin
        .post(
            "/v1/report-schedules",
            &json!({"name": uniq("r"), "period": "monthly", "vdc_id": fx.child}),
        )
        .await
        .unwrap();
    id(&s)
}

/// A report of the child VDC as a schedule leaves it (written through the store).
async fn fresh_report(admin: &Client, fx: &Fixture) -> String {
    let r: Value = admin
        .get(
            "/v1/reports/resources",
            &[("vdc_id", fx.child.clone()), ("period", "daily".into())],
        )
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let info = stratus_api::ReportInfo {
        id: Uuid::new_v4(),
        schedule_id: None,
        name: uniq("rep"),
        vdc_id: Some(Uuid::parse_str(&fx.child).unwrap()),
        period_start: now,
        period_end: now,
        generated_at: now,
    };
    fx.store.report_insert(&info, &r.to_string()).await.unwrap();
    info.id.to_string()
}

/// An elastic IP of the project, with a monthly price in force (put there the first time).
async fn fresh_monthly_eip(admin: &Client, fx: &Fixture) -> String {
    let _: Result<Value, _> = admin
        .post(
            "/v1/prices",
            &json!({"meter": "eip_hours", "billing": "monthly", "unit_price": "1",
                "effective_from": "2000-01-01T00:00:00Z"}),
        )
        .await;
    let e: Value = admin
        .post("/v1/elastic-ips", &json!({"project_id": fx.project}))
        .await
        .unwrap();
    id(&e)
}

/// An elastic IP of the project bought for a month.
async fn fresh_subscription(admin: &Client, fx: &Fixture) -> String {
    let eip = fresh_monthly_eip(admin, fx).await;
    let s: Value = admin
        .post(
            "/v1/subscriptions",
            &json!({"resource_id": eip, "months": 1}),
        )
        .await
        .unwrap();
    id(&s)
}

async fn fresh_budget(admin: &Client, fx: &Fixture) {
    let _: Value = admin
        .put(
            &format!("/v1/vdcs/{}/budget", fx.child),
            &json!({"monthly_limit": "1000"}),
        )
        .await
        .unwrap();
}

fn uniq(prefix: &str) -> String {
    format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// The request that exercises `op` on objects in organization A; destructive operations get
/// a fresh object each time.
async fn request_for(
    op: &str,
    fx: &Fixture,
    admin: &Client,
    sec: &Client,
) -> Option<(Method, String, Option<Value>)> {
    use Method as M;
    let fresh_user = || async {
        let u: Value = sec
            .post(
                "/v1/users",
                &json!({"name": uniq("u"), "password": USER_PW, "vdc_id": fx.child}),
            )
            .await
            .unwrap();
        id(&u)
    };
    Some(match op {
        "auth_login" => (
            M::POST,
            "/v1/auth/login".into(),
            Some(json!({"name": "admin", "password": ADMIN_PW})),
        ),
        "auth_logout" => (M::POST, "/v1/auth/logout".into(), None),
        "auth_whoami" => (M::GET, "/v1/auth/whoami".into(), None),
        "auth_password_change" => (
            M::POST,
            "/v1/auth/password".into(),
            Some(json!({"current_password": "wrong", "new_password": "Whatever-Passw0rd"})),
        ),
        "password_policy_view" => (M::GET, "/v1/password-policy".into(), None),
        "password_policy_update" => (
            M::PUT,
            "/v1/password-policy".into(),
            Some(serde_json::to_value(stratus_api::PasswordPolicy::default()).unwrap()),
        ),
        "org_list" => (M::GET, "/v1/organizations".into(), None),
        "org_create" => (
            M::POST,
            "/v1/organizations".into(),
            Some(json!({"name": uniq("org")})),
        ),
        "org_view" => (M::GET, format!("/v1/organizations/{}", fx.org), None),
        "org_update" => (
            M::PATCH,
            format!("/v1/organizations/{}", fx.org),
            Some(json!({"description": "x"})),
        ),
        "org_delete" => {
            let o: Value = admin
                .post("/v1/organizations", &json!({"name": uniq("gone")}))
                .await
                .unwrap();
            (M::DELETE, format!("/v1/organizations/{}", id(&o)), None)
        }
        "vdc_list" => (M::GET, "/v1/vdcs".into(), None),
        "vdc_create" => (
            M::POST,
            "/v1/vdcs".into(),
            Some(json!({"parent_id": fx.child, "name": uniq("v")})),
        ),
        "vdc_view" => (M::GET, format!("/v1/vdcs/{}", fx.child), None),
        "vdc_update" => (
            M::PATCH,
            format!("/v1/vdcs/{}", fx.child),
            Some(json!({"description": "x"})),
        ),
        "vdc_delete" => {
            let v: Value = admin
                .post(
                    "/v1/vdcs",
                    &json!({"parent_id": fx.child, "name": uniq("gone")}),
                )
                .await
                .unwrap();
            (M::DELETE, format!("/v1/vdcs/{}", id(&v)), None)
        }
        "vdc_quota_view" => (M::GET, format!("/v1/vdcs/{}/quota", fx.child), None),
        "vdc_quota_update" => (
            M::PUT,
            format!("/v1/vdcs/{}/quota", fx.child),
            Some(json!({"limits": {"vcpus": null}})),
        ),
        "project_list" => (M::GET, "/v1/projects".into(), None),
        "project_create" => (
            M::POST,
            "/v1/projects".into(),
            Some(json!({"vdc_id": fx.child, "name": uniq("p")})),
        ),
        "project_view" => (M::GET, format!("/v1/projects/{}", fx.project), None),
        "project_update" => (
            M::PATCH,
            format!("/v1/projects/{}", fx.project),
            Some(json!({"description": "x"})),
        ),
        "project_delete" => {
            let p: Value = admin
                .post(
                    "/v1/projects",
                    &json!({"vdc_id": fx.child, "name": uniq("gone")}),
                )
                .await
                .unwrap();
            (M::DELETE, format!("/v1/projects/{}", id(&p)), None)
        }
        "project_quota_view" => (M::GET, format!("/v1/projects/{}/quota", fx.project), None),
        "project_quota_update" => (
            M::PUT,
            format!("/v1/projects/{}/quota", fx.project),
            Some(json!({"limits": {"vcpus": null}})),
        ),
        "user_list" => (M::GET, "/v1/users".into(), None),
        "user_create" => (
            M::POST,
            "/v1/users".into(),
            Some(json!({"name": uniq("n"), "password": USER_PW, "vdc_id": fx.child})),
        ),
        "user_view" => (M::GET, format!("/v1/users/{}", fx.user), None),
        "user_update" => (
            M::PATCH,
            format!("/v1/users/{}", fx.user),
            Some(json!({"description": "x"})),
        ),
        "user_delete" => (M::DELETE, format!("/v1/users/{}", fresh_user().await), None),
        "user_password_reset" => (
            M::POST,
            format!("/v1/users/{}/password", fx.user),
            Some(json!({"password": USER_PW})),
        ),
        "user_unlock" => (M::POST, format!("/v1/users/{}/unlock", fx.user), None),
        "role_list" => (M::GET, "/v1/roles".into(), None),
        "grant_list" => (M::GET, "/v1/grants".into(), None),
        "grant_create" => (
            M::POST,
            "/v1/grants".into(),
            Some(
                json!({"user_id": fresh_user().await, "role": "viewer", "scope_type": "vdc", "scope_id": fx.child}),
            ),
        ),
        "grant_delete" => {
            let g: Value = sec
                .post("/v1/grants", &json!({"user_id": fresh_user().await, "role": "viewer", "scope_type": "vdc", "scope_id": fx.child}))
                .await
                .unwrap();
            (M::DELETE, format!("/v1/grants/{}", id(&g)), None)
        }
        "access_key_list" => (M::GET, "/v1/access-keys".into(), None),
        "access_key_create" => (M::POST, "/v1/access-keys".into(), Some(json!({}))),
        "access_key_update" | "access_key_delete" => {
            // A key of the platform admin's: only its owner and the security admin see it.
            let keys: Vec<Value> = admin.get("/v1/access-keys", &[]).await.unwrap();
            for k in keys {
                admin
                    .delete(&format!("/v1/access-keys/{}", k["id"].as_str().unwrap()))
                    .await
                    .unwrap();
            }
            let k: Value = admin.post("/v1/access-keys", &json!({})).await.unwrap();
            let kid = k["access_key"]["id"].as_str().unwrap().to_string();
            if op == "access_key_update" {
                (
                    M::PATCH,
                    format!("/v1/access-keys/{kid}"),
                    Some(json!({"description": "x"})),
                )
            } else {
                (M::DELETE, format!("/v1/access-keys/{kid}"), None)
            }
        }
        "audit_list" => (M::GET, "/v1/audit-events".into(), None),
        "audit_export" => (M::GET, "/v1/audit-events/export".into(), None),
        "quota_consistency_check" => (M::GET, "/v1/system/quota-consistency".into(), None),
        "flavor_list" => (M::GET, "/v1/flavors".into(), None),
        "flavor_create" => (
            M::POST,
            "/v1/flavors".into(),
            Some(json!({"name": uniq("f"), "vcpus": 1, "memory_mib": 512, "disk_gib": 1})),
        ),
        "flavor_view" | "flavor_delete" => {
            // A custom flavor restricted to organization A's child VDC.
            let f: Value = admin
                .post("/v1/flavors", &json!({"name": uniq("f"), "vcpus": 1, "memory_mib": 512, "disk_gib": 1, "vdc_ids": [fx.child]}))
                .await
                .unwrap();
            let m = if op == "flavor_view" {
                M::GET
            } else {
                M::DELETE
            };
            (m, format!("/v1/flavors/{}", id(&f)), None)
        }
        "host_list" => (M::GET, "/v1/hosts".into(), None),
        "host_view" => (M::GET, format!("/v1/hosts/{}", fx.host), None),
        "host_update" => (
            M::PATCH,
            format!("/v1/hosts/{}", fx.host),
            Some(json!({"disabled_reason": ""})),
        ),
        "host_delete" => (
            M::DELETE,
            format!("/v1/hosts/{}", fresh_host(fx).await),
            None,
        ),
        "join_token_create" => (M::POST, "/v1/hosts/join-tokens".into(), Some(json!({}))),
        "image_list" => (M::GET, "/v1/images".into(), None),
        "image_create" => (
            M::POST,
            "/v1/images".into(),
            Some(json!({"name": uniq("img"), "project_id": fx.project, "disk_format": "raw"})),
        ),
        "image_view" => (M::GET, format!("/v1/images/{}", fx.image), None),
        "image_update" => (
            M::PATCH,
            format!("/v1/images/{}", fx.image),
            Some(json!({"description": "x"})),
        ),
        "image_delete" => {
            let i: Value = admin
                .post(
                    "/v1/images",
                    &json!({"name": uniq("gone"), "project_id": fx.project, "disk_format": "raw"}),
                )
                .await
                .unwrap();
            (M::DELETE, format!("/v1/images/{}", id(&i)), None)
        }
        // The image is active, so an upload is refused with 409 by those who may write.
        "image_upload" => (
            M::PUT,
            format!("/v1/images/{}/file", fx.image),
            Some(json!("x")),
        ),
        "image_download" => (M::GET, format!("/v1/images/{}/file", fx.image), None),
        "keypair_list" => (M::GET, "/v1/keypairs".into(), None),
        "keypair_create" => (
            M::POST,
            "/v1/keypairs".into(),
            Some(json!({"name": uniq("k"), "project_id": fx.project, "public_key": ssh_key()})),
        ),
        "keypair_view" => (M::GET, format!("/v1/keypairs/{}", fx.keypair), None),
        "keypair_delete" => {
            let k: Value = admin
                .post(
                    "/v1/keypairs",
                    &json!({"name": uniq("k"), "project_id": fx.project, "public_key": ssh_key()}),
                )
                .await
                .unwrap();
            (M::DELETE, format!("/v1/keypairs/{}", id(&k)), None)
        }
        "instance_list" => (M::GET, "/v1/instances".into(), None),
        "instance_create" => (
            M::POST,
            "/v1/instances".into(),
            Some(
                json!({"name": uniq("vm"), "project_id": fx.project, "flavor": "basic.2c4g", "image": fx.image}),
            ),
        ),
        "instance_view" => (M::GET, format!("/v1/instances/{}", fx.instance), None),
        "instance_update" => (
            M::PATCH,
            format!("/v1/instances/{}", fx.instance),
            Some(json!({"description": "x"})),
        ),
        "instance_delete" => (
            M::DELETE,
            format!("/v1/instances/{}", fresh_instance(admin, fx).await),
            None,
        ),
        // The instance has no host, so those who may act get 409.
        "instance_action" => (
            M::POST,
            format!("/v1/instances/{}/actions", fx.instance),
            Some(json!({"action": "start"})),
        ),
        "instance_tasks" => (M::GET, format!("/v1/instances/{}/tasks", fx.instance), None),
        "instance_console_log" => (
            M::GET,
            format!("/v1/instances/{}/console-log", fx.instance),
            None,
        ),
        "instance_remote_console" => (
            M::POST,
            format!("/v1/instances/{}/remote-console", fx.instance),
            None,
        ),
        "instance_metrics" => (
            M::GET,
            format!("/v1/instances/{}/metrics", fx.instance),
            None,
        ),
        "instance_image_create" => (
            M::POST,
            format!("/v1/instances/{}/image", fx.instance),
            Some(json!({"name": uniq("snap")})),
        ),
        // Agents authenticate with host credentials; user tokens get 401.
        "agent_join" => (
            M::POST,
            "/v1/agent/join".into(),
            Some(
                json!({"facts": {"hostname": "x", "cpus": 1, "memory_mib": 1, "disk_gib": 1, "hypervisor": "tcg", "agent_version": "t"}}),
            ),
        ),
        "agent_desired" => (M::GET, "/v1/agent/desired".into(), None),
        "agent_report" => (
            M::POST,
            "/v1/agent/report".into(),
            Some(
                json!({"facts": {"hostname": "x", "cpus": 1, "memory_mib": 1, "disk_gib": 1, "hypervisor": "tcg", "agent_version": "t"}, "instances": []}),
            ),
        ),
        "agent_image_download" => (M::GET, format!("/v1/agent/images/{}", fx.image), None),
        "agent_image_upload" => (
            M::PUT,
            format!("/v1/agent/images/{}", fx.image),
            Some(json!("x")),
        ),
        "bucket_list" => (M::GET, "/v1/buckets".into(), None),
        "bucket_view" => (M::GET, format!("/v1/buckets/{}", fx.bucket), None),
        "bucket_quota_update" => (
            M::PUT,
            format!("/v1/buckets/{}/quota", fx.bucket),
            Some(json!({"bytes": 1})),
        ),
        "volume_type_list" => (M::GET, "/v1/volume-types".into(), None),
        "volume_type_create" => (
            M::POST,
            "/v1/volume-types".into(),
            Some(json!({"name": uniq("t"), "max_iops": 100, "max_mbps": 10})),
        ),
        "volume_type_delete" => {
            let t: Value = admin
                .post(
                    "/v1/volume-types",
                    &json!({"name": uniq("t"), "max_iops": 100, "max_mbps": 10}),
                )
                .await
                .unwrap();
            (M::DELETE, format!("/v1/volume-types/{}", id(&t)), None)
        }
        "volume_list" => (M::GET, "/v1/volumes".into(), None),
        // No host is up: the new volume goes to `error` (still a 202 to those who may).
        "volume_create" => (
            M::POST,
            "/v1/volumes".into(),
            Some(json!({"name": uniq("vol"), "project_id": fx.project, "size_gib": 1})),
        ),
        "volume_view" => (M::GET, format!("/v1/volumes/{}", fx.volume), None),
        "volume_update" => (
            M::PATCH,
            format!("/v1/volumes/{}", fx.volume),
            Some(json!({"description": "x"})),
        ),
        "volume_delete" => (
            M::DELETE,
            format!("/v1/volumes/{}", fresh_volume(admin, fx).await),
            None,
        ),
        // The instance has no host and is in error: those who may attach get 409.
        "volume_attach" => (
            M::POST,
            format!("/v1/volumes/{}/attach", fx.volume),
            Some(json!({"instance_id": fx.instance})),
        ),
        // Not attached: 409 for those who may detach.
        "volume_detach" => (
            M::POST,
            format!("/v1/volumes/{}/detach", fx.volume),
            Some(json!({})),
        ),
        "volume_extend" => (
            M::POST,
            format!("/v1/volumes/{}/extend", fresh_volume(admin, fx).await),
            Some(json!({"size_gib": 2})),
        ),
        "volume_revert" => {
            let v = fresh_volume(admin, fx).await;
            let s = fresh_snapshot(admin, fx, &v).await;
            (
                M::POST,
                format!("/v1/volumes/{v}/revert"),
                Some(json!({"snapshot_id": s})),
            )
        }
        "snapshot_list" => (M::GET, "/v1/snapshots".into(), None),
        "snapshot_create" => (
            M::POST,
            "/v1/snapshots".into(),
            Some(json!({"volume_id": fx.volume, "name": uniq("snap")})),
        ),
        "snapshot_view" => (M::GET, format!("/v1/snapshots/{}", fx.snapshot), None),
        "snapshot_update" => (
            M::PATCH,
            format!("/v1/snapshots/{}", fx.snapshot),
            Some(json!({"description": "x"})),
        ),
        "snapshot_delete" => (
            M::DELETE,
            format!(
                "/v1/snapshots/{}",
                fresh_snapshot(admin, fx, &fx.volume).await
            ),
            None,
        ),
        "backup_list" => (M::GET, "/v1/backups".into(), None),
        "backup_create" => (
            M::POST,
            "/v1/backups".into(),
            Some(json!({"volume_id": fx.volume, "name": uniq("bk")})),
        ),
        "backup_view" => (M::GET, format!("/v1/backups/{}", fx.backup), None),
        "backup_delete" => (
            M::DELETE,
            format!("/v1/backups/{}", fresh_backup(admin, fx).await),
            None,
        ),
        "backup_policy_list" => (M::GET, "/v1/backup-policies".into(), None),
        "backup_policy_create" => (
            M::POST,
            "/v1/backup-policies".into(),
            Some(
                json!({"project_id": fx.project, "name": uniq("bp"), "interval_hours": 24, "keep": 3}),
            ),
        ),
        "backup_policy_view" => (M::GET, format!("/v1/backup-policies/{}", fx.policy), None),
        "backup_policy_update" => (
            M::PATCH,
            format!("/v1/backup-policies/{}", fx.policy),
            Some(json!({"keep": 4})),
        ),
        "backup_policy_delete" => {
            let bp: Value = admin
                .post("/v1/backup-policies", &json!({"project_id": fx.project, "name": uniq("bp"), "interval_hours": 24, "keep": 3}))
                .await
                .unwrap();
            (M::DELETE, format!("/v1/backup-policies/{}", id(&bp)), None)
        }
        "backup_policy_run" => (
            M::POST,
            format!("/v1/backup-policies/{}/run", fx.policy),
            None,
        ),
        "external_network_list" => (M::GET, "/v1/external-networks".into(), None),
        "external_network_create" => (
            M::POST,
            "/v1/external-networks".into(),
            Some(
                json!({"name": uniq("ext"), "availability_zone": uniq("z"), "cidr": "198.51.100.0/24",
                "gateway_ip": "198.51.100.1", "pool_start": "198.51.100.10", "pool_end": "198.51.100.20"}),
            ),
        ),
        "external_network_delete" => {
            let e: Value = admin
                .post("/v1/external-networks", &json!({"name": uniq("ext"), "availability_zone": uniq("z"),
                    "cidr": "198.51.100.0/24", "gateway_ip": "198.51.100.1", "pool_start": "198.51.100.10",
                    "pool_end": "198.51.100.20"}))
                .await
                .unwrap();
            (M::DELETE, format!("/v1/external-networks/{}", id(&e)), None)
        }
        "vpc_list" => (M::GET, "/v1/vpcs".into(), None),
        "vpc_create" => (
            M::POST,
            "/v1/vpcs".into(),
            Some(json!({"project_id": fx.project, "name": uniq("vpc"), "cidr": "10.50.0.0/16"})),
        ),
        "vpc_view" => (M::GET, format!("/v1/vpcs/{}", fx.vpc), None),
        "vpc_update" => (
            M::PATCH,
            format!("/v1/vpcs/{}", fx.vpc),
            Some(json!({"description": "x"})),
        ),
        "vpc_delete" => (
            M::DELETE,
            format!("/v1/vpcs/{}", fresh_vpc(admin, fx, "10.60.0.0/16").await),
            None,
        ),
        "vpc_topology" => (M::GET, format!("/v1/vpcs/{}/topology", fx.vpc), None),
        "subnet_list" => (M::GET, "/v1/subnets".into(), None),
        "subnet_create" => {
            let v = fresh_vpc(admin, fx, "10.70.0.0/16").await;
            (
                M::POST,
                "/v1/subnets".into(),
                Some(json!({"vpc_id": v, "name": uniq("sn"), "cidr": "10.70.1.0/24"})),
            )
        }
        "subnet_view" => (M::GET, format!("/v1/subnets/{}", fx.subnet), None),
        "subnet_update" => (
            M::PATCH,
            format!("/v1/subnets/{}", fx.subnet),
            Some(json!({"description": "x"})),
        ),
        "subnet_delete" => {
            let v = fresh_vpc(admin, fx, "10.80.0.0/16").await;
            let sn: Value = admin
                .post(
                    "/v1/subnets",
                    &json!({"vpc_id": v, "name": uniq("sn"), "cidr": "10.80.1.0/24"}),
                )
                .await
                .unwrap();
            (M::DELETE, format!("/v1/subnets/{}", id(&sn)), None)
        }
        "port_list" => (M::GET, "/v1/ports".into(), None),
        "port_create" => (
            M::POST,
            "/v1/ports".into(),
            Some(json!({"subnet_id": fx.subnet})),
        ),
        "port_view" => (M::GET, format!("/v1/ports/{}", fx.port), None),
        "port_update" => (
            M::PATCH,
            format!("/v1/ports/{}", fx.port),
            Some(json!({"name": "x"})),
        ),
        "port_delete" => (
            M::DELETE,
            format!("/v1/ports/{}", fresh_port(admin, fx).await),
            None,
        ),
        "security_group_list" => (M::GET, "/v1/security-groups".into(), None),
        "security_group_create" => (
            M::POST,
            "/v1/security-groups".into(),
            Some(json!({"project_id": fx.project, "name": uniq("sg")})),
        ),
        "security_group_view" => (M::GET, format!("/v1/security-groups/{}", fx.group), None),
        "security_group_delete" => {
            let g: Value = admin
                .post(
                    "/v1/security-groups",
                    &json!({"project_id": fx.project, "name": uniq("sg")}),
                )
                .await
                .unwrap();
            (M::DELETE, format!("/v1/security-groups/{}", id(&g)), None)
        }
        "security_group_rule_create" => (
            M::POST,
            format!("/v1/security-groups/{}/rules", fx.group),
            Some(
                json!({"direction": "ingress", "protocol": "tcp", "port_min": 1 + (rand_port() % 60000)}),
            ),
        ),
        "security_group_rule_delete" => {
            let g: Value = admin
                .post(
                    &format!("/v1/security-groups/{}/rules", fx.group),
                    &json!({"direction": "ingress", "protocol": "udp", "port_min": 1 + (rand_port() % 60000)}),
                )
                .await
                .unwrap();
            let rule = g["rules"].as_array().unwrap().last().unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            (
                M::DELETE,
                format!("/v1/security-groups/{}/rules/{rule}", fx.group),
                None,
            )
        }
        "acl_list" => (M::GET, "/v1/network-acls".into(), None),
        "acl_create" => (
            M::POST,
            "/v1/network-acls".into(),
            Some(json!({"vpc_id": fx.vpc, "name": uniq("acl")})),
        ),
        "acl_view" => (M::GET, format!("/v1/network-acls/{}", fx.acl), None),
        "acl_update" => (
            M::PATCH,
            format!("/v1/network-acls/{}", fx.acl),
            Some(json!({"description": "x"})),
        ),
        "acl_delete" => {
            let a: Value = admin
                .post(
                    "/v1/network-acls",
                    &json!({"vpc_id": fx.vpc, "name": uniq("acl")}),
                )
                .await
                .unwrap();
            (M::DELETE, format!("/v1/network-acls/{}", id(&a)), None)
        }
        "elastic_ip_list" => (M::GET, "/v1/elastic-ips".into(), None),
        "elastic_ip_create" => (
            M::POST,
            "/v1/elastic-ips".into(),
            Some(json!({"project_id": fx.project})),
        ),
        "elastic_ip_view" => (M::GET, format!("/v1/elastic-ips/{}", fx.eip), None),
        "elastic_ip_bind" => (
            M::PUT,
            format!("/v1/elastic-ips/{}/binding", fx.eip),
            Some(json!({"port_id": fx.port})),
        ),
        "elastic_ip_delete" => {
            let e: Value = admin
                .post("/v1/elastic-ips", &json!({"project_id": fx.project}))
                .await
                .unwrap();
            (M::DELETE, format!("/v1/elastic-ips/{}", id(&e)), None)
        }
        "meter_list" => (M::GET, "/v1/meters".into(), None),
        "usage_list" => (M::GET, format!("/v1/usage?project_id={}", fx.project), None),
        "usage_status" => (M::GET, "/v1/usage/status".into(), None),
        "price_list" => (M::GET, "/v1/prices".into(), None),
        "price_create" => (M::POST, "/v1/prices".into(), Some(fresh_price_body())),
        "price_view" => (
            M::GET,
            format!("/v1/prices/{}", fresh_price(admin).await),
            None,
        ),
        "price_update" => (
            M::PATCH,
            format!("/v1/prices/{}", fresh_price(admin).await),
            Some(json!({"description": "changed"})),
        ),
        "price_delete" => (
            M::DELETE,
            format!("/v1/prices/{}", fresh_price(admin).await),
            None,
        ),
        "price_estimate" => (
            M::POST,
            "/v1/prices/estimate".into(),
            Some(json!({"flavor": "basic.2c4g"})),
        ),
        "request_estimate" => (
            M::POST,
            "/v1/requests/estimate".into(),
            Some(json!({"service_id": fx.service, "project_id": fx.project,
                "parameters": {"name": "v", "cidr": "10.9.0.0/16"}})),
        ),
        "bill_view" => (M::GET, format!("/v1/bills?project_id={}", fx.project), None),
        "budget_view" => {
            fresh_budget(admin, fx).await;
            (M::GET, format!("/v1/vdcs/{}/budget", fx.child), None)
        }
        // Everyone may query; what they see is scoped to their projects.
        "metrics_query" => (M::GET, "/v1/metrics/query?query=up".into(), None),
        "metrics_query_range" => (
            M::GET,
            "/v1/metrics/query_range?query=up&step=60".into(),
            None,
        ),
        "alert_rule_templates" => (M::GET, "/v1/alert-rule-templates".into(), None),
        "alert_rule_list" => (M::GET, "/v1/alert-rules".into(), None),
        "alert_rule_create" => (
            M::POST,
            "/v1/alert-rules".into(),
            Some(
                json!({"name": uniq("r"), "expr": "stratus_instance_memory_bytes > 1e15",
                "severity": "minor", "project_id": fx.project}),
            ),
        ),
        "alert_rule_view" => (
            M::GET,
            format!("/v1/alert-rules/{}", fresh_rule(admin, fx).await),
            None,
        ),
        "alert_rule_update" => (
            M::PATCH,
            format!("/v1/alert-rules/{}", fresh_rule(admin, fx).await),
            Some(json!({"severity": "major"})),
        ),
        "alert_rule_delete" => (
            M::DELETE,
            format!("/v1/alert-rules/{}", fresh_rule(admin, fx).await),
            None,
        ),
        "alert_list" => (M::GET, "/v1/alerts".into(), None),
        "alert_post" => (
            M::POST,
            "/v1/alerts".into(),
            Some(
                json!({"name": uniq("a"), "source": "zabbix", "severity": "minor",
                "project_id": fx.project}),
            ),
        ),
        "alert_groups" => (M::GET, "/v1/alert-groups?by=severity".into(), None),
        "alert_view" => (
            M::GET,
            format!("/v1/alerts/{}", fresh_alert(admin, fx).await),
            None,
        ),
        "alert_ack" => (
            M::POST,
            format!("/v1/alerts/{}/ack", fresh_alert(admin, fx).await),
            Some(json!({"comment": "mine"})),
        ),
        "alert_notifications" => (
            M::GET,
            format!("/v1/alerts/{}/notifications", fresh_alert(admin, fx).await),
            None,
        ),
        "alert_ticket" => (
            M::POST,
            format!("/v1/alerts/{}/ticket", fresh_alert(admin, fx).await),
            Some(json!({})),
        ),
        "ticket_list" => (M::GET, "/v1/tickets".into(), None),
        "ticket_create" => (
            M::POST,
            "/v1/tickets".into(),
            Some(json!({"title": uniq("t"), "project_id": fx.project})),
        ),
        "ticket_view" => (
            M::GET,
            format!("/v1/tickets/{}", fresh_ticket(admin, fx).await),
            None,
        ),
        "ticket_update" => (
            M::PATCH,
            format!("/v1/tickets/{}", fresh_ticket(admin, fx).await),
            Some(json!({"priority": "minor"})),
        ),
        "ticket_transition" => (
            M::POST,
            format!("/v1/tickets/{}/transition", fresh_ticket(admin, fx).await),
            Some(json!({"state": "claimed"})),
        ),
        "ticket_comment" => (
            M::POST,
            format!("/v1/tickets/{}/comments", fresh_ticket(admin, fx).await),
            Some(json!({"body": "seen"})),
        ),
        "silence_list" => (M::GET, "/v1/silences".into(), None),
        "silence_create" => (
            M::POST,
            "/v1/silences".into(),
            Some(
                json!({"matchers": {"alertname": "x"}, "ends_at": tomorrow(),
                "project_id": fx.project}),
            ),
        ),
        "silence_end" => (
            M::DELETE,
            format!("/v1/silences/{}", fresh_silence(admin, fx).await),
            None,
        ),
        "channel_list" => (M::GET, "/v1/notify-channels".into(), None),
        "channel_create" => (
            M::POST,
            "/v1/notify-channels".into(),
            Some(
                json!({"name": uniq("c"), "kind": "webhook", "target": "http://127.0.0.1:9/",
                "vdc_id": fx.child}),
            ),
        ),
        "channel_view" => (
            M::GET,
            format!("/v1/notify-channels/{}", fresh_channel(admin, fx).await),
            None,
        ),
        "channel_delete" => (
            M::DELETE,
            format!("/v1/notify-channels/{}", fresh_channel(admin, fx).await),
            None,
        ),
        "channel_deliveries" => (
            M::GET,
            format!(
                "/v1/notify-channels/{}/deliveries",
                fresh_channel(admin, fx).await
            ),
            None,
        ),
        "metrics_push" => (
            M::POST,
            "/v1/metrics/push".into(),
            Some(json!({"project_id": fx.project, "samples": [{"name": "m", "value": 1}]})),
        ),
        "subscription_list" => (
            M::GET,
            format!("/v1/subscriptions?project_id={}", fx.project),
            None,
        ),
        "subscription_create" => (
            M::POST,
            "/v1/subscriptions".into(),
            Some(json!({"resource_id": fresh_monthly_eip(admin, fx).await, "months": 1})),
        ),
        "subscription_view" => (
            M::GET,
            format!("/v1/subscriptions/{}", fresh_subscription(admin, fx).await),
            None,
        ),
        "subscription_cancel" => (
            M::DELETE,
            format!("/v1/subscriptions/{}", fresh_subscription(admin, fx).await),
            None,
        ),
        "subscription_renew" => (
            M::POST,
            format!(
                "/v1/subscriptions/{}/renew",
                fresh_subscription(admin, fx).await
            ),
            Some(json!({"months": 1})),
        ),
        "budget_set" => (
            M::PUT,
            format!("/v1/vdcs/{}/budget", fx.child),
            Some(json!({"monthly_limit": "1000"})),
        ),
        "budget_delete" => {
            fresh_budget(admin, fx).await;
            (M::DELETE, format!("/v1/vdcs/{}/budget", fx.child), None)
        }
        "billing_event_list" => (
            M::GET,
            format!("/v1/billing-events?vdc_id={}", fx.child),
            None,
        ),
        "report_resources" => (
            M::GET,
            format!("/v1/reports/resources?vdc_id={}", fx.child),
            None,
        ),
        "report_list" => (M::GET, "/v1/reports".into(), None),
        "report_view" => (
            M::GET,
            format!("/v1/reports/{}", fresh_report(admin, fx).await),
            None,
        ),
        "report_schedule_list" => (M::GET, "/v1/report-schedules".into(), None),
        "report_schedule_create" => (
            M::POST,
            "/v1/report-schedules".into(),
            Some(json!({"name": uniq("r"), "period": "monthly", "vdc_id": fx.child})),
        ),
        "report_schedule_delete" => (
            M::DELETE,
            format!("/v1/report-schedules/{}", fresh_schedule(admin, fx).await),
            None,
        ),
        "recycle_list" => (M::GET, "/v1/recycle-bin".into(), None),
        "recycle_restore" => (
            M::POST,
            format!(
                "/v1/recycle-bin/{}/restore",
                fresh_recycled(admin, fx).await
            ),
            None,
        ),
        "recycle_purge" => (
            M::DELETE,
            format!("/v1/recycle-bin/{}", fresh_recycled(admin, fx).await),
            None,
        ),
        "resource_transfer" => {
            let e: Value = admin
                .post("/v1/elastic-ips", &json!({"project_id": fx.project}))
                .await
                .unwrap();
            let to: Value = admin
                .post(
                    "/v1/projects",
                    &json!({"vdc_id": fx.child, "name": uniq("to")}),
                )
                .await
                .unwrap();
            (
                M::POST,
                "/v1/transfers".into(),
                Some(json!({"resource_id": id(&e), "project_id": id(&to)})),
            )
        }
        "peering_list" => (M::GET, "/v1/vpc-peerings".into(), None),
        "peering_create" => {
            let cidr = format!("10.{}.0.0/16", 100 + rand_port() % 100);
            let other = fresh_peer_vpc(admin, fx, &cidr).await;
            (
                M::POST,
                "/v1/vpc-peerings".into(),
                Some(
                    json!({"name": uniq("peer"), "requester_vpc_id": fx.vpc, "accepter_vpc_id": other}),
                ),
            )
        }
        "peering_view" => (M::GET, format!("/v1/vpc-peerings/{}", fx.peering), None),
        // Already active: those who may answer get 409.
        "peering_accept" => (
            M::POST,
            format!("/v1/vpc-peerings/{}/accept", fx.peering),
            None,
        ),
        "peering_reject" => (
            M::POST,
            format!("/v1/vpc-peerings/{}/reject", fx.peering),
            None,
        ),
        "peering_delete" => {
            let cidr = format!("10.{}.0.0/16", 200 + rand_port() % 50);
            let other = fresh_peer_vpc(admin, fx, &cidr).await;
            let pr: Value = admin
                .post("/v1/vpc-peerings", &json!({"name": uniq("peer"), "requester_vpc_id": fx.vpc, "accepter_vpc_id": other}))
                .await
                .unwrap();
            (M::DELETE, format!("/v1/vpc-peerings/{}", id(&pr)), None)
        }
        "service_kind_list" => (M::GET, "/v1/service-kinds".into(), None),
        "service_list" => (M::GET, "/v1/services".into(), None),
        "service_create" => (
            M::POST,
            "/v1/services".into(),
            Some(json!({"name": uniq("svc"), "kind": "vpc"})),
        ),
        "service_view" => (M::GET, format!("/v1/services/{}", fx.service), None),
        "service_update" => (
            M::PATCH,
            format!("/v1/services/{}", fx.service),
            Some(json!({"description": "x"})),
        ),
        "service_delete" => (
            M::DELETE,
            format!("/v1/services/{}", fresh_service(admin).await),
            None,
        ),
        "approval_flow_list" => (M::GET, "/v1/approval-flows".into(), None),
        "approval_flow_create" => (
            M::POST,
            "/v1/approval-flows".into(),
            Some(
                json!({"name": uniq("f"), "service_id": fresh_service(admin).await,
                "levels": [{"name": "l", "approvers": [{"role": "approver"}]}]}),
            ),
        ),
        "approval_flow_view" => (M::GET, format!("/v1/approval-flows/{}", fx.flow), None),
        "approval_flow_update" => (
            M::PATCH,
            format!("/v1/approval-flows/{}", fx.flow),
            Some(json!({"description": "x"})),
        ),
        "approval_flow_delete" => {
            let f: Value = admin
                .post(
                    "/v1/approval-flows",
                    &json!({"name": uniq("f"), "service_id": fresh_service(admin).await,
                    "levels": [{"name": "l", "approvers": [{"role": "approver"}]}]}),
                )
                .await
                .unwrap();
            (M::DELETE, format!("/v1/approval-flows/{}", id(&f)), None)
        }
        "request_list" => (M::GET, "/v1/requests".into(), None),
        "request_create" => (
            M::POST,
            "/v1/requests".into(),
            Some(json!({"service_id": fx.service, "project_id": fx.project,
                "parameters": {"name": uniq("v"), "cidr": "10.71.0.0/16"}})),
        ),
        "request_view" => (M::GET, format!("/v1/requests/{}", fx.request), None),
        "request_approve" => (
            M::POST,
            format!("/v1/requests/{}/approve", fresh_request(admin, fx).await),
            Some(json!({})),
        ),
        "request_reject" => (
            M::POST,
            format!("/v1/requests/{}/reject", fresh_request(admin, fx).await),
            Some(json!({})),
        ),
        "request_cancel" => (
            M::POST,
            format!("/v1/requests/{}/cancel", fresh_request(admin, fx).await),
            None,
        ),
        "approval_queue" => (M::GET, "/v1/approvals".into(), None),
        "template_validate" => (
            M::POST,
            "/v1/templates/validate".into(),
            Some(json!({"template": ONE_GROUP})),
        ),
        "stack_list" => (M::GET, "/v1/stacks".into(), None),
        "stack_create" => (
            M::POST,
            "/v1/stacks".into(),
            Some(json!({"project_id": fx.project, "name": uniq("st"), "template": ONE_GROUP})),
        ),
        "stack_view" => (
            M::GET,
            format!("/v1/stacks/{}", fresh_stack(admin, fx).await),
            None,
        ),
        "stack_template" => (
            M::GET,
            format!("/v1/stacks/{}/template", fresh_stack(admin, fx).await),
            None,
        ),
        "stack_update" => (
            M::PUT,
            format!("/v1/stacks/{}", fresh_stack(admin, fx).await),
            Some(json!({"template": ONE_GROUP})),
        ),
        "stack_delete" => (
            M::DELETE,
            format!("/v1/stacks/{}", fresh_stack(admin, fx).await),
            None,
        ),
        "health_view" => (M::GET, "/healthz".into(), None),
        "metrics_view" => (M::GET, "/metrics".into(), None),
        _ => return None,
    })
}

const CALLERS: [&str; 9] = [
    "anonymous",
    "platform_admin",
    "security_admin",
    "auditor",
    "vdc_admin",
    "approver",
    "member",
    "viewer",
    "outsider",
];

#[tokio::test]
async fn authorization_matrix_matches_the_golden_file() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let target: Value = sec
        .post(
            "/v1/users",
            &json!({"name": "target", "password": USER_PW, "vdc_id": a.child}),
        )
        .await
        .unwrap();
    let _ = URL.set(ts.url.clone());
    let token: Value = admin
        .post("/v1/hosts/join-tokens", &json!({}))
        .await
        .unwrap();
    let image = raw_image(&admin, Some(&a.project)).await;
    let kp: Value = admin
        .post(
            "/v1/keypairs",
            &json!({"name": "key1", "project_id": a.project, "public_key": ssh_key()}),
        )
        .await
        .unwrap();
    let mut fx = Fixture {
        org: a.org.clone(),
        child: a.child.clone(),
        project: a.project.clone(),
        user: id(&target),
        image: id(&image),
        instance: String::new(),
        host: String::new(),
        keypair: id(&kp),
        join_token: token["token"].as_str().unwrap().to_string(),
        bucket: String::new(),
        volume: String::new(),
        snapshot: String::new(),
        backup: String::new(),
        policy: String::new(),
        vpc: String::new(),
        subnet: String::new(),
        port: String::new(),
        group: String::new(),
        acl: String::new(),
        eip: String::new(),
        peering: String::new(),
        service: String::new(),
        flow: String::new(),
        request: String::new(),
        store: ts.server.as_ref().unwrap().app.store.clone(),
    };
    {
        let store = &ts.server.as_ref().unwrap().app.store;
        let project: Uuid = a.project.parse().unwrap();
        let child: Uuid = a.child.parse().unwrap();
        let mut chain = vec![project];
        chain.extend(store.vdc_chain(child).await.unwrap());
        let b = store
            .bucket_create("matrix-bucket", project, child, &chain, "gd-1", "", "admin")
            .await
            .unwrap();
        fx.bucket = b.id.to_string();
    }
    fx.host = fresh_host(&fx).await;
    fx.instance = fresh_instance(&admin, &fx).await;
    sql(
        &fx.store,
        "UPDATE hosts SET volume_pool_gib = 1000 WHERE id = $1",
        &fx.host,
    )
    .await;
    fx.volume = fresh_volume(&admin, &fx).await;
    fx.snapshot = fresh_snapshot(&admin, &fx, &fx.volume).await;
    fx.backup = fresh_backup(&admin, &fx).await;
    let bp: Value = admin
        .post(
            "/v1/backup-policies",
            &json!({"project_id": fx.project, "name": "nightly", "interval_hours": 24, "keep": 3,
                "volume_ids": [fx.volume]}),
        )
        .await
        .unwrap();
    fx.policy = id(&bp);
    let _: Value = admin
        .post(
            "/v1/external-networks",
            &json!({"name": "public", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1",
                "pool_start": "203.0.113.10", "pool_end": "203.0.113.250"}),
        )
        .await
        .unwrap();
    fx.vpc = fresh_vpc(&admin, &fx, "10.0.0.0/16").await;
    let sn: Value = admin
        .post(
            "/v1/subnets",
            &json!({"vpc_id": fx.vpc, "name": "web", "cidr": "10.0.1.0/24"}),
        )
        .await
        .unwrap();
    fx.subnet = id(&sn);
    fx.port = fresh_port(&admin, &fx).await;
    let g: Value = admin
        .post(
            "/v1/security-groups",
            &json!({"project_id": fx.project, "name": "web"}),
        )
        .await
        .unwrap();
    fx.group = id(&g);
    let acl: Value = admin
        .post(
            "/v1/network-acls",
            &json!({"vpc_id": fx.vpc, "name": "edge"}),
        )
        .await
        .unwrap();
    fx.acl = id(&acl);
    let e: Value = admin
        .post("/v1/elastic-ips", &json!({"project_id": fx.project}))
        .await
        .unwrap();
    fx.eip = id(&e);
    let other = fresh_vpc(&admin, &fx, "10.1.0.0/16").await;
    let pr: Value = admin
        .post(
            "/v1/vpc-peerings",
            &json!({"name": "peer", "requester_vpc_id": fx.vpc, "accepter_vpc_id": other}),
        )
        .await
        .unwrap();
    fx.peering = id(&pr);
    fx.service = fresh_service(&admin).await;
    let f: Value = admin
        .post(
            "/v1/approval-flows",
            &json!({"name": "matrix", "service_id": fresh_service(&admin).await,
                "levels": [{"name": "l", "approvers": [{"role": "approver"}]}]}),
        )
        .await
        .unwrap();
    fx.flow = id(&f);
    fx.request = fresh_request(&admin, &fx).await;
    // Callers: name → how to log in.
    let mut logins: Vec<(&str, Option<(String, String)>)> = vec![
        ("anonymous", None),
        ("platform_admin", Some(("admin".into(), ADMIN_PW.into()))),
        (
            "security_admin",
            Some(("secadmin".into(), SECADMIN_PW.into())),
        ),
        ("auditor", Some(("auditor".into(), AUDITOR_PW.into()))),
    ];
    for (caller, role, scope_type, scope, vdc) in [
        ("vdc_admin", "vdc_admin", "vdc", &a.top, &a.top),
        ("approver", "approver", "vdc", &a.top, &a.top),
        ("member", "member", "project", &a.project, &a.child),
        ("viewer", "viewer", "vdc", &a.top, &a.top),
        ("outsider", "vdc_admin", "vdc", &b.top, &b.top),
    ] {
        user_with_role(
            &ts,
            &sec,
            caller,
            Some(vdc),
            Some((role, scope_type, scope)),
        )
        .await;
        logins.push((caller, Some((caller.to_string(), USER_PW.to_string()))));
    }
    let doc = stratus_server::http::openapi();
    let mut ops: Vec<String> = doc
        .paths
        .paths
        .values()
        .flat_map(|item| [&item.get, &item.post, &item.put, &item.patch, &item.delete])
        .filter_map(|o| o.as_ref().and_then(|o| o.operation_id.clone()))
        .collect();
    ops.sort();
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    for op in &ops {
        let mut row = format!("{op:<26}");
        for (caller, login) in &logins {
            // A fresh session per call, so that logout or a password reset cannot leak into the next row.
            let client = match login {
                None => Client::new(&ts.url, Auth::None),
                Some((n, p)) => ts.login(n, p).await,
            };
            let (method, path, body) = request_for(op, &fx, &admin, &sec).await.unwrap_or_else(|| {
                panic!("operation {op} has no row in the authorization matrix: add it to request_for()")
            });
            let mut req = http.request(method, format!("{}{}", ts.url, path));
            if let Auth::Token(t) = &client.auth {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(&b);
            }
            let status = req.send().await.unwrap().status().as_u16();
            assert!(status < 500, "{op} as {caller}: {status}");
            row.push_str(&format!(" {:>width$}", status, width = caller.len()));
        }
        rows.push(row.trim_end().to_string());
    }
    let header = format!("{:<26} {}", "operation", CALLERS.join(" "));
    let table = format!("{header}\n{}\n", rows.join("\n"));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/authz_matrix.txt");
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        std::fs::write(&path, &table).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(golden == table, "authorization matrix changed; review and rerun with UPDATE_GOLDEN=1.\n--- golden\n{golden}\n--- now\n{table}");
    ts.stop().await;
}

/// A day from now, RFC 3339 (the end of a window that is open now).
fn tomorrow() -> String {
    (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()
}
