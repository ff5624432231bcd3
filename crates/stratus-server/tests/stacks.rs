//! Orchestration stacks through the API: a template with a VPC, subnet, security group,
//! two real (TCG) instances, a volume attached to one and an elastic IP — made, updated
//! (a volume added, a flavor changed, the address removed) and deleted with nothing left;
//! failed creates that roll back or keep what they made; invalid templates rejected with
//! where the error is; and who may see a stack.

mod common;

use common::*;
use serde_json::{json, Value};
use stratus_agent::network::testing::Outside;
use stratus_client::Client;

/// Wait for a stack to come to rest; its view.
async fn settled(c: &Client, id: &str, secs: u64) -> Value {
    wait(&format!("stack {id} to settle"), secs, || async {
        let s: Value = c.get(&format!("/v1/stacks/{id}"), &[]).await.unwrap();
        (!["creating", "updating", "deleting", "rolling_back"]
            .contains(&s["status"].as_str().unwrap()))
        .then_some(s)
    })
    .await
}

async fn gone(c: &Client, id: &str, secs: u64) {
    wait(&format!("stack {id} to go"), secs, || async {
        match c.get::<Value>(&format!("/v1/stacks/{id}"), &[]).await {
            Ok(_) => None,
            Err(e) => (status::<Value>(Err(e)) == 404).then_some(()),
        }
    })
    .await
}

fn resource<'a>(stack: &'a Value, name: &str) -> &'a Value {
    stack["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no resource {name} in {stack}"))
}

fn rid(stack: &Value, name: &str) -> String {
    resource(stack, name)["id"].as_str().unwrap().to_string()
}

fn output(stack: &Value, name: &str) -> Value {
    stack["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .map(|o| o["value"].clone())
        .unwrap_or(Value::Null)
}

async fn items(c: &Client, path: &str, project: &str) -> Vec<Value> {
    list_all(c, path, vec![("project_id", project.to_string())]).await
}

/// The project's quota use: (resource, used) for every line.
async fn used(c: &Client, project: &str) -> Vec<(String, i64)> {
    let q: Value = c
        .get(&format!("/v1/projects/{project}/quota"), &[])
        .await
        .unwrap();
    q["levels"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["resource"].as_str().unwrap().to_string(),
                l["used"].as_i64().unwrap(),
            )
        })
        .collect()
}

const WEB: &str = "\
template_version: 2026-12-01
description: a web tier and its database
parameters:
  flavor:
    type: string
    default: tiny.1c256m
  data_size:
    type: number
    default: 1
    min: 1
resources:
  net:
    type: Stratus::VPC
    properties:
      cidr: 10.20.0.0/16
  sub:
    type: Stratus::Subnet
    properties:
      vpc: {get_resource: net}
      cidr: 10.20.1.0/24
  sg:
    type: Stratus::SecurityGroup
    properties:
      rules:
        - {direction: ingress, protocol: tcp, port_min: 22, port_max: 22}
  web:
    type: Stratus::Instance
    properties:
      flavor: {get_param: flavor}
      image: tiny
      subnet: {get_resource: sub}
      security_groups: [{get_resource: sg}]
  db:
    type: Stratus::Instance
    properties:
      flavor: tiny.1c256m
      image: tiny
      subnet: {get_resource: sub}
  data:
    type: Stratus::Volume
    properties:
      size_gib: {get_param: data_size}
  data_on_db:
    type: Stratus::VolumeAttachment
    properties:
      instance: {get_resource: db}
      volume: {get_resource: data}
  public:
    type: Stratus::ElasticIP
    properties:
      external_network: EXT
      instance: {get_resource: web}
outputs:
  web_ip:
    value: {get_attr: [web, ip]}
  public_ip:
    value: {get_attr: [public, address]}
  data_volume:
    value: {get_resource: data}
";

#[tokio::test]
async fn a_template_of_real_resources_is_made_changed_and_removed() {
    let ts = TestServer::start_with(tcg_guests).await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    tiny_guest_setup(&admin).await;
    let _: Value = post(
        &admin,
        "/v1/flavors",
        json!({"name": "tiny.1c320m", "vcpus": 1, "memory_mib": 320, "disk_gib": 1}),
    )
    .await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let bridge = format!("bx{tag}");
    let _outside = Outside::create(&tag, &bridge, "203.0.113.1/24")
        .await
        .unwrap();
    let ext = post(
        &admin,
        "/v1/external-networks",
        json!({"name": "internet", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1",
            "pool_start": "203.0.113.10", "pool_end": "203.0.113.20", "bridge": bridge}),
    )
    .await;
    let (_, dept) = user_with_role(
        &ts,
        &sec,
        "dept",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, outsider) = user_with_role(
        &ts,
        &sec,
        "other",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    let template = WEB.replace("EXT", &id(&ext));
    let quota_before = used(&admin, &a.project).await;

    // Validation shows the waves: independent resources together, in dependency order.
    let info = post(
        &dept,
        "/v1/templates/validate",
        json!({"template": template}),
    )
    .await;
    assert_eq!(
        info["waves"],
        json!([
            ["net", "sg", "data"],
            ["sub"],
            ["web", "db"],
            ["data_on_db", "public"]
        ])
    );

    let made = post(
        &dept,
        "/v1/stacks",
        json!({"project_id": a.project, "name": "web", "template": template}),
    )
    .await;
    assert_eq!(made["status"], "creating");
    let sid = id(&made);
    // One action at a time.
    let (st, msg) = fails(
        dept.put(&format!("/v1/stacks/{sid}"), &json!({"template": template}))
            .await,
    )
    .await;
    assert_eq!(st, 409, "{msg}");
    // Other departments do not see it.
    let (st, _) = fails(outsider.get(&format!("/v1/stacks/{sid}"), &[]).await).await;
    assert_eq!(st, 404);
    let theirs: Vec<Value> = list_all(&outsider, "/v1/stacks", vec![]).await;
    assert!(theirs.is_empty());

    let stack = settled(&dept, &sid, 420).await;
    assert_eq!(stack["status"], "complete", "{stack}");
    for r in stack["resources"].as_array().unwrap() {
        assert_eq!(r["status"], "complete", "{r}");
    }
    // Real resources, wired as the template says.
    let web: Value = dept
        .get(&format!("/v1/instances/{}", rid(&stack, "web")), &[])
        .await
        .unwrap();
    assert_eq!(web["status"], "running");
    assert_eq!(web["name"], "web-web");
    let ip = web["addresses"][0].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.20.1."), "{web}");
    assert_eq!(output(&stack, "web_ip"), json!(ip));
    let db: Value = dept
        .get(&format!("/v1/instances/{}", rid(&stack, "db")), &[])
        .await
        .unwrap();
    assert_eq!(db["status"], "running");
    let vol: Value = dept
        .get(&format!("/v1/volumes/{}", rid(&stack, "data")), &[])
        .await
        .unwrap();
    assert_eq!(vol["status"], "in_use");
    assert_eq!(vol["attachments"][0]["instance_id"], db["id"]);
    assert_eq!(output(&stack, "data_volume"), vol["id"]);
    let eip: Value = dept
        .get(&format!("/v1/elastic-ips/{}", rid(&stack, "public")), &[])
        .await
        .unwrap();
    assert!(eip["port_id"].is_string(), "{eip}");
    assert_eq!(output(&stack, "public_ip"), eip["address"]);
    let sg: Value = dept
        .get(&format!("/v1/security-groups/{}", rid(&stack, "sg")), &[])
        .await
        .unwrap();
    assert_eq!(sg["rules"].as_array().unwrap().len(), 1);
    assert_eq!(sg["rules"][0]["port_min"], 22);
    // The template as given, by the stack's id.
    let t: Value = dept
        .get(&format!("/v1/stacks/{sid}/template"), &[])
        .await
        .unwrap();
    assert_eq!(t["template"], json!(template));
    assert_eq!(t["parameters"]["data_size"], 1);

    // Changes a type cannot make in place are refused up front, naming the property.
    let (st, msg) = fails(
        dept.put(
            &format!("/v1/stacks/{sid}"),
            &json!({"template": template.replace("cidr: 10.20.1.0/24", "cidr: 10.20.2.0/24")}),
        )
        .await,
    )
    .await;
    assert_eq!(st, 400, "{msg}");
    assert!(
        msg.contains("resources.sub.properties.cidr (template line 20")
            && msg.contains("cannot be changed in place"),
        "{msg}"
    );

    // Update: a second volume, a bigger flavor for web, port 80 open, no elastic IP.
    let public_start = template.find("  public:\n").unwrap();
    let outputs_start = template.find("outputs:\n").unwrap();
    let changed = format!(
        "{}  logs:\n    type: Stratus::Volume\n    properties:\n      size_gib: 1\n{}",
        &template[..public_start],
        &template[outputs_start..]
    )
    .replace(
        "        - {direction: ingress, protocol: tcp, port_min: 22, port_max: 22}\n",
        "        - {direction: ingress, protocol: tcp, port_min: 22, port_max: 22}\n        - {direction: ingress, protocol: tcp, port_min: 80, port_max: 80}\n",
    )
    .replace(
        "  public_ip:\n    value: {get_attr: [public, address]}\n",
        "",
    );
    let up = dept
        .put::<Value>(
            &format!("/v1/stacks/{sid}"),
            &json!({"template": changed, "parameters": {"flavor": "tiny.1c320m"}}),
        )
        .await
        .unwrap();
    assert_eq!(up["status"], "updating");
    let stack = settled(&dept, &sid, 420).await;
    assert_eq!(stack["status"], "complete", "{stack}");
    let web2: Value = dept
        .get(&format!("/v1/instances/{}", rid(&stack, "web")), &[])
        .await
        .unwrap();
    assert_eq!(web2["id"], web["id"], "changed in place, not replaced");
    assert_eq!(web2["flavor_name"], "tiny.1c320m");
    assert_eq!(web2["memory_mib"], 320);
    assert_eq!(web2["status"], "running");
    let logs: Value = dept
        .get(&format!("/v1/volumes/{}", rid(&stack, "logs")), &[])
        .await
        .unwrap();
    assert_eq!(logs["status"], "available");
    let sg: Value = dept
        .get(&format!("/v1/security-groups/{}", rid(&stack, "sg")), &[])
        .await
        .unwrap();
    assert_eq!(sg["rules"].as_array().unwrap().len(), 2);
    let (st, _) = fails(
        dept.get(
            &format!("/v1/elastic-ips/{}", eip["id"].as_str().unwrap()),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(
        st, 404,
        "the address the template no longer names is released"
    );
    assert!(stack["resources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["name"] != "public"));
    assert_eq!(stack["parameters"]["flavor"], "tiny.1c320m");
    assert_eq!(stack["parameters"]["data_size"], 1, "kept");
    let db2: Value = dept
        .get(&format!("/v1/instances/{}", rid(&stack, "db")), &[])
        .await
        .unwrap();
    assert_eq!(db2["launched_at"], db["launched_at"], "untouched");

    // Every resource made or removed is in the audit log, as the department user.
    let auditor = ts.auditor().await;
    let events: Value = auditor
        .get(
            "/v1/audit-events",
            &[("operation", "stack_resource_create".into())],
        )
        .await
        .unwrap();
    let events = events["items"].as_array().unwrap();
    assert_eq!(events.len(), 9, "8 made, then the new volume");
    assert!(events.iter().all(|e| e["user_name"] == "dept"));

    // Delete: everything, in reverse order; nothing is left, the quota is free again.
    let (st, _) = fails(
        outsider
            .delete_json::<Value>(&format!("/v1/stacks/{sid}"))
            .await,
    )
    .await;
    assert_eq!(st, 404);
    let del: Value = dept
        .delete_json(&format!("/v1/stacks/{sid}"))
        .await
        .unwrap();
    assert_eq!(del["status"], "deleting");
    gone(&dept, &sid, 300).await;
    for path in [
        "/v1/instances",
        "/v1/volumes",
        "/v1/vpcs",
        "/v1/subnets",
        "/v1/elastic-ips",
    ] {
        assert!(
            items(&dept, path, &a.project).await.is_empty(),
            "{path} still has something"
        );
    }
    let groups = items(&dept, "/v1/security-groups", &a.project).await;
    assert!(groups.iter().all(|g| g["name"] == "default"), "{groups:?}");
    // (The project's default group, made with its first instance, stays with the project.)
    let mut after = used(&admin, &a.project).await;
    let no_groups = |v: &mut Vec<(String, i64)>| v.retain(|(r, _)| r != "security_groups");
    no_groups(&mut after);
    let mut before = quota_before;
    no_groups(&mut before);
    assert_eq!(after, before, "the quota is as before");
    ts.stop().await;
}

const TWO_VPCS: &str = "\
resources:
  first:
    type: Stratus::VPC
    properties:
      cidr: 10.1.0.0/16
  first_sub:
    type: Stratus::Subnet
    properties:
      vpc: {get_resource: first}
      cidr: 10.1.1.0/24
  second:
    type: Stratus::VPC
    properties:
      cidr: 10.2.0.0/16
      name: second
    depends_on: first_sub
";

/// The project may hold one VPC: the second fails. By default everything made is removed;
/// with `on_failure: keep` it stays for a look, and deleting the stack removes it.
#[tokio::test]
async fn a_failed_create_rolls_back_or_keeps_what_it_made() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", a.project),
            &json!({"limits": {"vpcs": 1}}),
        )
        .await
        .unwrap();
    let s = post(
        &admin,
        "/v1/stacks",
        json!({"project_id": a.project, "name": "two", "template": TWO_VPCS}),
    )
    .await;
    let s = settled(&admin, &id(&s), 60).await;
    assert_eq!(s["status"], "rolled_back", "{s}");
    let reason = s["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("resource second (Stratus::VPC) failed") && reason.contains("quota"),
        "{reason}"
    );
    assert!(reason.contains("rolled back (2 removed)"), "{reason}");
    assert!(s["resources"].as_array().unwrap().is_empty(), "{s}");
    assert!(items(&admin, "/v1/vpcs", &a.project).await.is_empty());
    // The name is still the stack's until it is deleted.
    let (st, _) = fails(
        admin
            .post(
                "/v1/stacks",
                &json!({"project_id": a.project, "name": "two", "template": TWO_VPCS}),
            )
            .await,
    )
    .await;
    assert_eq!(st, 409);
    let _: Value = admin
        .delete_json(&format!("/v1/stacks/{}", id(&s)))
        .await
        .unwrap();
    gone(&admin, &id(&s), 30).await;

    let k = post(
        &admin,
        "/v1/stacks",
        json!({"project_id": a.project, "name": "kept", "template": TWO_VPCS,
            "on_failure": "keep"}),
    )
    .await;
    let k = settled(&admin, &id(&k), 60).await;
    assert_eq!(k["status"], "failed", "{k}");
    assert_eq!(resource(&k, "first")["status"], "complete");
    assert_eq!(resource(&k, "first_sub")["status"], "complete");
    let second = resource(&k, "second");
    assert_eq!(second["status"], "failed");
    assert!(
        second["status_reason"].as_str().unwrap().contains("quota"),
        "{second}"
    );
    let vpcs = items(&admin, "/v1/vpcs", &a.project).await;
    assert_eq!(vpcs.len(), 1);
    assert_eq!(vpcs[0]["id"], resource(&k, "first")["id"]);
    let _: Value = admin
        .delete_json(&format!("/v1/stacks/{}", id(&k)))
        .await
        .unwrap();
    gone(&admin, &id(&k), 30).await;
    assert!(items(&admin, "/v1/vpcs", &a.project).await.is_empty());
    assert!(items(&admin, "/v1/subnets", &a.project).await.is_empty());
    ts.stop().await;
}

/// Invalid templates and parameters are refused before anything is made, with the field,
/// its line and column, and the reason.
#[tokio::test]
async fn invalid_templates_say_where_the_error_is() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let cases: &[(String, &str)] = &[
        (
            TWO_VPCS.replace("      cidr: 10.1.0.0/16\n", "      cidr: 10.1.0.0/16\n    depends_on: second\n"),
            "resources.first (template line 2, column 3): dependency cycle: first → second → first_sub → first",
        ),
        (
            TWO_VPCS.replace("type: Stratus::Subnet", "type: OS::Neutron::Subnet"),
            "resources.first_sub.type (template line 7, column 11): unknown resource type \"OS::Neutron::Subnet\"",
        ),
        (
            TWO_VPCS.replace("{get_resource: first}", "{get_resource: frist}"),
            "resources.first_sub.properties.vpc (template line 9, column 12): refers to resource \"frist\", which the template does not define",
        ),
        (
            TWO_VPCS.replace("      cidr: 10.1.1.0/24\n", "      cidr: 10.1.1.0/24\n    depends_on: first_sub\n"),
            "resources.first_sub (template line 6, column 3): refers to itself",
        ),
        (
            TWO_VPCS.replace("depends_on: first_sub", "depends_on: [nothing]"),
            "resources.second.depends_on (template line 16, column 18): refers to resource \"nothing\"",
        ),
        (
            TWO_VPCS.replace("      name: second\n", "      name: [a, b]\n"),
            "resources.second.properties.name (template line 15, column 13): must be a single value",
        ),
        (
            "resources:\n  sg:\n    type: Stratus::SecurityGroup\n    properties:\n      rules:\n        - {direction: sideways}\n".into(),
            "resources.sg.properties.rules[0] (template line 6, column 11)",
        ),
        (
            "resources:\n  a:\n    type: Stratus::Bucket\n   properties: {}\n".into(),
            "template (template line 4",
        ),
    ];
    for (text, want) in cases {
        let (st, msg) = fails(
            admin
                .post::<Value>("/v1/templates/validate", &json!({"template": text}))
                .await,
        )
        .await;
        assert_eq!(st, 400, "{msg}");
        assert!(msg.contains(want), "wanted {want:?} in {msg:?}");
        // The same refusal when making a stack, and nothing is made.
        let (st, _) = fails(
            admin
                .post::<Value>(
                    "/v1/stacks",
                    &json!({"project_id": a.project, "name": "bad", "template": text}),
                )
                .await,
        )
        .await;
        assert_eq!(st, 400);
    }
    let with_param = "parameters:\n  size:\n    type: number\n    max: 4\nresources:\n  v:\n    type: Stratus::Volume\n    properties:\n      size_gib: {get_param: size}\n";
    for (params, want) in [
        (json!({}), "parameters.size: is required"),
        (json!({"size": 5}), "parameters.size: must be between"),
        (
            json!({"size": 2, "colour": "red"}),
            "parameters.colour: the template has no such parameter",
        ),
        (json!({"size": "two"}), "parameters.size: must be a number"),
    ] {
        let (st, msg) = fails(
            admin
                .post::<Value>(
                    "/v1/templates/validate",
                    &json!({"template": with_param, "parameters": params}),
                )
                .await,
        )
        .await;
        assert_eq!(st, 400, "{msg}");
        assert!(msg.contains(want), "wanted {want:?} in {msg:?}");
    }
    let (st, msg) = fails(
        admin
            .post::<Value>(
                "/v1/templates/validate",
                &json!({"template": with_param.replace("{get_param: size}", "{get_param: name}")}),
            )
            .await,
    )
    .await;
    assert_eq!(st, 400, "{msg}");
    let stacks: Vec<Value> = list_all(&admin, "/v1/stacks", vec![]).await;
    assert!(stacks.is_empty());
    ts.stop().await;
}

/// Approve a request (one level) and wait for its order to finish.
async fn approved(approver: &Client, requester: &Client, r: &Value) -> Value {
    post(
        approver,
        &format!("/v1/requests/{}/approve", id(r)),
        json!({}),
    )
    .await;
    wait("the order", 60, || async {
        let r: Value = requester
            .get(&format!("/v1/requests/{}", id(r)), &[])
            .await
            .unwrap();
        (r["status"] == "completed" || r["status"] == "failed").then_some(r)
    })
    .await
}

const NET_SERVICE: &str = "\
parameters:
  cidr:
    type: string
    default: 10.40.0.0/16
resources:
  net:
    type: Stratus::VPC
    properties:
      cidr: {get_param: cidr}
  sub:
    type: Stratus::Subnet
    properties:
      vpc: {get_resource: net}
      cidr: 10.40.1.0/24
";

/// A template published as a catalog service: its parameters join the form, an approved
/// request makes the stack, a release request removes it, and a failing one leaves nothing.
#[tokio::test]
async fn a_template_published_as_a_service_is_ordered_and_released() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let (_, member) = user_with_role(
        &ts,
        &sec,
        "member1",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, vadm) = user_with_role(
        &ts,
        &sec,
        "vadm",
        Some(&a.top),
        Some(("vdc_admin", "vdc", &a.top)),
    )
    .await;
    let svc = |body: Value| {
        let admin = &admin;
        async move { admin.post::<Value>("/v1/services", &body).await }
    };
    for (body, want) in [
        (
            json!({"name": "x", "kind": "template"}),
            "template: a template service needs its orchestration template",
        ),
        (
            json!({"name": "x", "kind": "vpc", "template": NET_SERVICE}),
            "template: only template services take a template",
        ),
        (
            json!({"name": "x", "kind": "template", "template": NET_SERVICE.replace("Stratus::VPC", "VPC")}),
            "resources.net.type (template line 7, column 11)",
        ),
        (
            json!({"name": "x", "kind": "template", "template": NET_SERVICE,
                "parameters": [{"name": "size"}]}),
            "parameters[0].name",
        ),
        (
            json!({"name": "x", "kind": "template",
                "template": NET_SERVICE.replace("parameters:\n", "parameters:\n  name:\n    default: x\n")}),
            "cannot take a parameter called name",
        ),
    ] {
        let (st, msg) = fails(svc(body).await).await;
        assert_eq!(st, 400, "{msg}");
        assert!(msg.contains(want), "wanted {want:?} in {msg}");
    }
    let service = svc(json!({"name": "VPC with a subnet", "kind": "template",
        "template": NET_SERVICE,
        "parameters": [{"name": "cidr", "allowed": ["10.40.0.0/16", "10.40.0.0/17"]}]}))
    .await
    .unwrap();
    assert_eq!(service["template"], NET_SERVICE);
    let names: Vec<&str> = service["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cidr", "name"], "the stack's name is asked for");

    let ask = |params: Value| json!({"service_id": id(&service), "project_id": a.project, "parameters": params});
    let (st, msg) = fails(
        member
            .post::<Value>(
                "/v1/requests",
                &ask(json!({"name": "portal", "cidr": "10.99.0.0/16"})),
            )
            .await,
    )
    .await;
    assert_eq!(st, 400);
    assert!(msg.contains("parameters.cidr"), "{msg}");
    let r = post(
        &member,
        "/v1/requests",
        ask(json!({"name": "portal", "cidr": "10.40.0.0/17"})),
    )
    .await;
    let done = approved(&vadm, &member, &r).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["resources"][0]["type"], "stack");
    let sid = done["resources"][0]["id"].as_str().unwrap().to_string();
    let stack: Value = member.get(&format!("/v1/stacks/{sid}"), &[]).await.unwrap();
    assert_eq!(stack["status"], "complete");
    assert_eq!(stack["name"], "portal");
    assert_eq!(stack["parameters"]["cidr"], "10.40.0.0/17");
    let vpcs = items(&member, "/v1/vpcs", &a.project).await;
    assert_eq!(vpcs.len(), 1);
    assert_eq!(vpcs[0]["cidr"], "10.40.0.0/17");

    // Release through a request: the whole stack goes.
    let rel = post(
        &member,
        "/v1/requests",
        json!({"action": "release", "resource_id": sid, "project_id": a.project}),
    )
    .await;
    let done = approved(&vadm, &member, &rel).await;
    assert_eq!(done["status"], "completed", "{done}");
    gone(&member, &sid, 30).await;
    assert!(items(&member, "/v1/vpcs", &a.project).await.is_empty());

    // No VPC allowed: the order fails with the stack's reason, and no stack is left.
    let _: Value = admin
        .put(
            &format!("/v1/projects/{}/quota", a.project),
            &json!({"limits": {"vpcs": 0}}),
        )
        .await
        .unwrap();
    let r = post(&member, "/v1/requests", ask(json!({"name": "portal2"}))).await;
    let done = approved(&vadm, &member, &r).await;
    assert_eq!(done["status"], "failed", "{done}");
    let reason = done["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("resource net (Stratus::VPC) failed") && reason.contains("quota"),
        "{reason}"
    );
    let stacks: Vec<Value> = list_all(&member, "/v1/stacks", vec![]).await;
    assert!(stacks.is_empty(), "{stacks:?}");
    ts.stop().await;
}

/// A control plane that stopped in the middle of stack actions (left as a crash leaves
/// them: the rows say `creating` or `deleting`): on the next start an interrupted create is
/// rolled back — or, when the owner asked to keep what failed, left `failed` — and an
/// interrupted delete goes on.
#[tokio::test]
async fn a_restart_takes_up_interrupted_stacks() {
    let mut ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let make = |name: &'static str, cidr: &'static str, keep: bool| {
        let admin = &admin;
        let project = a.project.clone();
        async move {
            let t = format!(
                "resources:\n  net:\n    type: Stratus::VPC\n    properties:\n      cidr: {cidr}\n  sub:\n    type: Stratus::Subnet\n    properties:\n      vpc: {{get_resource: net}}\n      cidr: {}\n",
                cidr.replace("0.0/16", "1.0/24")
            );
            let s = post(
                admin,
                "/v1/stacks",
                json!({"project_id": project, "name": name, "template": t,
                    "on_failure": if keep { "keep" } else { "rollback" }}),
            )
            .await;
            let s = settled(admin, &id(&s), 30).await;
            assert_eq!(s["status"], "complete", "{s}");
            id(&s)
        }
    };
    let cut = make("cut", "10.61.0.0/16", false).await;
    let kept = make("kept", "10.62.0.0/16", true).await;
    let going = make("going", "10.63.0.0/16", false).await;
    assert_eq!(items(&admin, "/v1/vpcs", &a.project).await.len(), 3);
    let store = &ts.server.as_ref().unwrap().app.store;
    for (sid, status) in [
        (&cut, "creating"),
        (&kept, "creating"),
        (&going, "deleting"),
    ] {
        sqlx::query("UPDATE stacks SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(sid)
            .execute(&store.db.write)
            .await
            .unwrap();
    }
    ts.restart().await;
    let admin = ts.admin().await;

    let s = settled(&admin, &cut, 60).await;
    assert_eq!(s["status"], "rolled_back", "{s}");
    let reason = s["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("interrupted by a restart") && reason.contains("rolled back (2 removed)"),
        "{reason}"
    );
    let s = settled(&admin, &kept, 60).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        s["status_reason"]
            .as_str()
            .unwrap()
            .contains("update or delete"),
        "{s}"
    );
    assert_eq!(s["resources"].as_array().unwrap().len(), 2, "kept: {s}");
    gone(&admin, &going, 60).await;
    let vpcs = items(&admin, "/v1/vpcs", &a.project).await;
    assert_eq!(vpcs.len(), 1, "only the kept stack's VPC is left: {vpcs:?}");
    assert_eq!(vpcs[0]["cidr"], "10.62.0.0/16");
    ts.stop().await;
}
