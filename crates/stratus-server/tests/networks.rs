//! Networking in the control plane: the address plan, validation, the desired network a
//! host's agent gets, reports, peering acceptance and tenant isolation — driven by a
//! scripted agent so every report is explicit. (Real namespaces, nftables and guests are
//! in `guest_networks.rs`.)

mod common;

use common::*;
use serde_json::{json, Value};
use stratus_client::{Auth, Client};

struct Agent {
    c: Client,
    host_id: String,
    facts: Value,
}

impl Agent {
    async fn join(ts: &TestServer, admin: &Client, name: &str) -> Agent {
        Agent::join_at(ts, admin, name, "192.0.2.10").await
    }

    async fn join_at(ts: &TestServer, admin: &Client, name: &str, tunnel_ip: &str) -> Agent {
        let t: Value = admin
            .post("/v1/hosts/join-tokens", &json!({}))
            .await
            .unwrap();
        let facts = json!({"hostname": name, "cpus": 16, "memory_mib": 65536, "disk_gib": 1000,
            "hypervisor": "tcg", "agent_version": "test", "tunnel_ip": tunnel_ip});
        let j: Value = Client::new(&ts.url, Auth::Token(t["token"].as_str().unwrap().into()))
            .post("/v1/agent/join", &json!({"facts": facts}))
            .await
            .unwrap();
        Agent {
            c: Client::new(
                &ts.url,
                Auth::Token(j["credential"].as_str().unwrap().into()),
            ),
            host_id: j["host_id"].as_str().unwrap().into(),
            facts,
        }
    }

    async fn report(&self, instances: Value, vpcs: Value) {
        let _: Value = self
            .c
            .post(
                "/v1/agent/report",
                &json!({"facts": self.facts, "instances": instances, "vpcs": vpcs}),
            )
            .await
            .unwrap();
    }

    async fn desired(&self) -> Value {
        self.c
            .get("/v1/agent/desired", &[("after", "0".to_string())])
            .await
            .unwrap()
    }

    async fn vpc(&self, id: &str) -> Value {
        self.desired().await["network"]["vpcs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Report a VPC built at its current desired generation.
    async fn vpc_ready(&self, id: &str) {
        let w = self.vpc(id).await;
        self.report(
            json!([]),
            json!([{"id": id, "generation": w["generation"], "state": "ready"}]),
        )
        .await;
    }
}

async fn ext_net(admin: &Client) -> Value {
    admin
        .post(
            "/v1/external-networks",
            &json!({"name": "internet", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1",
                "pool_start": "203.0.113.10", "pool_end": "203.0.113.12"}),
        )
        .await
        .unwrap()
}

async fn vpc(c: &Client, project: &str, cidr: &str) -> Value {
    c.post(
        "/v1/vpcs",
        &json!({"project_id": project, "name": "vpc", "cidr": cidr}),
    )
    .await
    .unwrap()
}

async fn subnet(c: &Client, vpc: &str, cidr: &str) -> Value {
    c.post(
        "/v1/subnets",
        &json!({"vpc_id": vpc, "name": "sn", "cidr": cidr}),
    )
    .await
    .unwrap()
}

fn usage(q: &Value, r: &str) -> i64 {
    q["levels"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == r)
        .unwrap()["used"]
        .as_i64()
        .unwrap()
}

async fn consistent(admin: &Client) {
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
}

fn err(r: Result<Value, stratus_client::ClientError>) -> (u16, String) {
    let e = r.unwrap_err();
    (e.status, e.message)
}

#[tokio::test]
async fn bad_network_input_is_refused_and_builds_nothing() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let _agent = Agent::join(&ts, &admin, "cn1").await;
    let bad_vpc = |cidr: &str| json!({"project_id": a.project, "name": "v", "cidr": cidr});
    for (body, field) in [
        (bad_vpc("8.8.0.0/16"), "cidr"),
        (bad_vpc("10.0.0.5/16"), "cidr"),
        (bad_vpc("10.0.0.0/4"), "cidr"),
        (bad_vpc("nonsense"), "cidr"),
        (
            json!({"project_id": a.project, "name": "v", "cidr": "10.0.0.0/16", "snat": true}),
            "snat",
        ),
    ] {
        let (st, m) = err(admin.post("/v1/vpcs", &body).await);
        assert_eq!(st, 400, "{body}: {m}");
        assert!(m.starts_with(field), "{body}: {m}");
    }
    let v = vpc(&admin, &a.project, "10.0.0.0/16").await;
    let vid = id(&v);
    let sn = subnet(&admin, &vid, "10.0.1.0/24").await;
    for (body, field) in [
        (
            json!({"vpc_id": vid, "name": "s", "cidr": "10.1.0.0/24"}),
            "cidr",
        ),
        (
            json!({"vpc_id": vid, "name": "s", "cidr": "10.0.1.128/25"}),
            "cidr",
        ),
        (
            json!({"vpc_id": vid, "name": "s", "cidr": "10.0.2.0/24", "gateway_ip": "10.0.3.1"}),
            "gateway_ip",
        ),
        (
            json!({"vpc_id": vid, "name": "s", "cidr": "10.0.2.0/24", "gateway_ip": "10.0.2.0"}),
            "gateway_ip",
        ),
        (
            json!({"vpc_id": vid, "name": "s", "cidr": "10.0.2.0/24",
            "allocation_pools": [{"start": "10.0.2.1", "end": "10.0.2.20"}]}),
            "allocation_pools",
        ),
        (
            json!({"vpc_id": vid, "name": "s", "cidr": "10.0.2.0/24",
            "allocation_pools": [{"start": "10.0.3.10", "end": "10.0.3.20"}]}),
            "allocation_pools",
        ),
        (
            json!({"vpc_id": vid, "name": "s", "cidr": "10.0.2.0/24", "dns_servers": ["dns.example"]}),
            "dns_servers",
        ),
    ] {
        let (st, m) = err(admin.post("/v1/subnets", &body).await);
        assert_eq!(st, 400, "{body}: {m}");
        assert!(m.starts_with(field), "{body}: {m}");
    }
    // An exhausted pool: a /29 has 5 addresses besides its gateway.
    let small = subnet(&admin, &vid, "10.0.9.0/29").await;
    assert_eq!(small["addresses_total"], 5);
    let mut taken = Vec::new();
    for _ in 0..5 {
        let p: Value = admin
            .post("/v1/ports", &json!({"subnet_id": id(&small)}))
            .await
            .unwrap();
        taken.push(p["ip"].as_str().unwrap().to_string());
    }
    assert_eq!(
        taken,
        ["10.0.9.2", "10.0.9.3", "10.0.9.4", "10.0.9.5", "10.0.9.6"]
    );
    let (st, m) = err(admin
        .post("/v1/ports", &json!({"subnet_id": id(&small)}))
        .await);
    assert_eq!(st, 409, "{m}");
    assert!(m.contains("no free address"), "{m}");
    // A fixed address already taken, or outside the subnet.
    let p1: Value = admin
        .post(
            "/v1/ports",
            &json!({"subnet_id": id(&sn), "ip": "10.0.1.50"}),
        )
        .await
        .unwrap();
    assert_eq!(p1["ip"], "10.0.1.50");
    let (st, m) = err(admin
        .post(
            "/v1/ports",
            &json!({"subnet_id": id(&sn), "ip": "10.0.1.50"}),
        )
        .await);
    assert_eq!(st, 409, "{m}");
    for ip in ["10.0.2.5", "10.0.1.1", "10.0.1.255", "x"] {
        let (st, m) = err(admin
            .post("/v1/ports", &json!({"subnet_id": id(&sn), "ip": ip}))
            .await);
        assert_eq!(st, 400, "{ip}: {m}");
        assert!(m.starts_with("ip"), "{m}");
    }
    // Deleting what is in use.
    let (st, m) = err(admin
        .delete(&format!("/v1/subnets/{}", id(&sn)))
        .await
        .map(|_| Value::Null));
    assert_eq!(st, 409, "{m}");
    assert!(m.contains("port"), "{m}");
    let (st, _) = err(admin
        .delete(&format!("/v1/vpcs/{vid}"))
        .await
        .map(|_| Value::Null));
    assert_eq!(st, 409);
    // Security group rules.
    let g: Value = admin
        .post(
            "/v1/security-groups",
            &json!({"project_id": a.project, "name": "web"}),
        )
        .await
        .unwrap();
    for (body, field) in [
        (
            json!({"direction": "ingress", "protocol": "icmp", "port_min": 22}),
            "port_min",
        ),
        (
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 0}),
            "port_min",
        ),
        (
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 80, "port_max": 22}),
            "port_min",
        ),
        (
            json!({"direction": "ingress", "protocol": "tcp", "remote_cidr": "10.0.0.1/8"}),
            "remote_cidr",
        ),
        (
            json!({"direction": "ingress", "remote_group_id": uuid::Uuid::new_v4()}),
            "remote_group_id",
        ),
        (json!({"direction": "sideways"}), "direction"),
    ] {
        let (st, m) = err(admin
            .post(&format!("/v1/security-groups/{}/rules", id(&g)), &body)
            .await);
        assert_eq!(st, 400, "{body}: {m}");
        assert!(m.contains(field), "{body}: {m}");
    }
    // Network ACL rules.
    let (st, m) = err(admin
        .post("/v1/network-acls", &json!({"vpc_id": vid, "name": "x", "rules": [
            {"priority": 10, "action": "deny", "direction": "ingress", "protocol": "tcp", "cidr": null, "port_min": 22, "port_max": 22},
            {"priority": 10, "action": "allow", "direction": "ingress", "protocol": "any", "cidr": null, "port_min": null, "port_max": null}]}))
        .await);
    assert_eq!(st, 400, "{m}");
    assert!(m.starts_with("rules"), "{m}");
    // An elastic IP needs an external network; a bound one cannot be released.
    let (st, m) = err(admin
        .post("/v1/elastic-ips", &json!({"project_id": a.project}))
        .await);
    assert_eq!(st, 400, "{m}");
    ext_net(&admin).await;
    let e: Value = admin
        .post("/v1/elastic-ips", &json!({"project_id": a.project}))
        .await
        .unwrap();
    let _: Value = admin
        .put(
            &format!("/v1/elastic-ips/{}/binding", id(&e)),
            &json!({"port_id": id(&p1)}),
        )
        .await
        .unwrap();
    let (st, m) = err(admin
        .delete(&format!("/v1/elastic-ips/{}", id(&e)))
        .await
        .map(|_| Value::Null));
    assert_eq!(st, 409, "{m}");
    assert!(m.contains("bound"), "{m}");
    // Peering overlapping ranges.
    let v2 = vpc(&admin, &a.project, "10.0.128.0/17").await;
    let (st, m) = err(admin
        .post(
            "/v1/vpc-peerings",
            &json!({"name": "p", "requester_vpc_id": vid, "accepter_vpc_id": id(&v2)}),
        )
        .await);
    assert_eq!(st, 400, "{m}");
    assert!(m.contains("overlap"), "{m}");
    // The pool of 3 public addresses: one EIP taken, two left; the fourth is refused.
    for _ in 0..2 {
        let _: Value = admin
            .post("/v1/elastic-ips", &json!({"project_id": a.project}))
            .await
            .unwrap();
    }
    let (st, m) = err(admin
        .post("/v1/elastic-ips", &json!({"project_id": a.project}))
        .await);
    assert_eq!(st, 409, "{m}");
    assert!(m.contains("no free address"), "{m}");
    let q: Value = admin
        .get(&format!("/v1/projects/{}/quota", a.project), &[])
        .await
        .unwrap();
    assert_eq!((usage(&q, "vpcs"), usage(&q, "elastic_ips")), (2, 3));
    consistent(&admin).await;
    ts.stop().await;
}

#[tokio::test]
async fn the_host_gets_the_network_its_instances_need() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let agent = Agent::join(&ts, &admin, "cn1").await;
    ext_net(&admin).await;
    let v: Value = admin
        .post(
            "/v1/vpcs",
            &json!({"project_id": a.project, "name": "gov", "cidr": "10.10.0.0/16", "snat": true}),
        )
        .await
        .unwrap();
    let vid = id(&v);
    assert_eq!(v["status"], "building");
    assert_eq!(v["snat_ip"], "203.0.113.10");
    let hosts: Vec<Value> = admin.get("/v1/hosts", &[]).await.unwrap();
    assert_eq!(
        hosts[0]["id"],
        agent.host_id.as_str(),
        "the router runs on the only host"
    );
    agent.vpc_ready(&vid).await;
    let v: Value = admin.get(&format!("/v1/vpcs/{vid}"), &[]).await.unwrap();
    assert_eq!(v["status"], "active");
    let sn = subnet(&admin, &vid, "10.10.1.0/24").await;
    assert_eq!(sn["gateway_ip"], "10.10.1.1");
    // Two instances with a NIC each: addresses from the pool, the default group.
    let image = raw_image(&admin, Some(&a.project)).await;
    let made: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": "web", "project_id": a.project, "flavor": "basic.2c4g", "image": id(&image),
                "count": 2, "nics": [{"subnet_id": id(&sn)}]}),
        )
        .await
        .unwrap();
    let (i1, i2) = (id(&made[0]), id(&made[1]));
    let d = agent.desired().await;
    let nics: Vec<&Value> = d["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["nics"][0])
        .collect();
    assert_eq!(nics.len(), 2);
    assert!(nics
        .iter()
        .all(|n| n["subnet_id"] == id(&sn) && n["vpc_id"] == vid.as_str()));
    assert!(nics[0]["mac"].as_str().unwrap().starts_with("fa:16:3e:"));
    let net = &d["network"];
    assert_eq!(net["external"]["bridge"], "br-ext");
    assert_eq!(net["tunnel_ip"], "192.0.2.10");
    let dv = net["vpcs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == vid.as_str())
        .unwrap();
    assert_eq!(dv["router"], true);
    assert_eq!(dv["snat_ip"], "203.0.113.10/24");
    let ports = dv["subnets"][0]["ports"].as_array().unwrap();
    let ips: Vec<&str> = ports.iter().map(|p| p["ip"].as_str().unwrap()).collect();
    assert_eq!(ips, ["10.10.1.2", "10.10.1.3"]);
    assert!(ports.iter().all(|p| p["local"] == true));
    let groups = net["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "the default group: {groups:?}");
    assert_eq!(groups[0]["member_ips"], json!(["10.10.1.2", "10.10.1.3"]));
    assert_eq!(groups[0]["rules"][0]["remote_group_id"], groups[0]["id"]);
    let shown: Value = admin
        .get(&format!("/v1/instances/{i1}"), &[])
        .await
        .unwrap();
    assert_eq!(shown["addresses"], json!(["10.10.1.2"]));

    // A rule in the default group reaches the host's desired state.
    let gid = groups[0]["id"].as_str().unwrap().to_string();
    let g: Value = admin
        .post(
            &format!("/v1/security-groups/{gid}/rules"),
            &json!({"direction": "ingress", "protocol": "tcp", "port_min": 22, "remote_cidr": "203.0.113.0/24"}),
        )
        .await
        .unwrap();
    assert_eq!(g["rules"].as_array().unwrap().len(), 2);
    let d = agent.desired().await;
    assert_eq!(
        d["network"]["security_groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The default group cannot go.
    let (st, _) = err(admin
        .delete(&format!("/v1/security-groups/{gid}"))
        .await
        .map(|_| Value::Null));
    assert_eq!(st, 409);

    // An elastic IP on the first instance: 1:1 NAT in the router's desired state; moving it
    // to the second keeps the address.
    let e: Value = admin
        .post("/v1/elastic-ips", &json!({"project_id": a.project}))
        .await
        .unwrap();
    assert_eq!(e["address"], "203.0.113.11");
    let bound: Value = admin
        .put(
            &format!("/v1/elastic-ips/{}/binding", id(&e)),
            &json!({"instance_id": i1}),
        )
        .await
        .unwrap();
    assert_eq!(bound["fixed_ip"], "10.10.1.2");
    let dv = agent.vpc(&vid).await;
    assert_eq!(
        dv["elastic_ips"],
        json!([{"id": id(&e), "address": "203.0.113.11/24", "fixed_ip": "10.10.1.2",
        "port_id": bound["port_id"]}])
    );
    let moved: Value = admin
        .put(
            &format!("/v1/elastic-ips/{}/binding", id(&e)),
            &json!({"instance_id": i2}),
        )
        .await
        .unwrap();
    assert_eq!(
        (moved["address"].as_str(), moved["fixed_ip"].as_str()),
        (Some("203.0.113.11"), Some("10.10.1.3"))
    );
    assert_eq!(
        agent.vpc(&vid).await["elastic_ips"][0]["fixed_ip"],
        "10.10.1.3"
    );

    // A network ACL associated with the subnet.
    let acl: Value = admin
        .post("/v1/network-acls", &json!({"vpc_id": vid, "name": "edge", "rules": [
            {"priority": 20, "action": "allow", "direction": "ingress", "protocol": "any", "cidr": null, "port_min": null, "port_max": null},
            {"priority": 10, "action": "deny", "direction": "ingress", "protocol": "tcp", "cidr": "203.0.113.0/24", "port_min": 23, "port_max": null}]}))
        .await
        .unwrap();
    assert_eq!(acl["rules"][0]["priority"], 10, "kept in priority order");
    let _: Value = admin
        .patch(
            &format!("/v1/subnets/{}", id(&sn)),
            &json!({"acl_id": id(&acl)}),
        )
        .await
        .unwrap();
    let dv = agent.vpc(&vid).await;
    assert_eq!(dv["subnets"][0]["acl"][0]["action"], "deny");
    assert_eq!(dv["subnets"][0]["acl"][0]["port_max"], 23);

    // Topology for the console.
    let t: Value = admin
        .get(&format!("/v1/vpcs/{vid}/topology"), &[])
        .await
        .unwrap();
    let kinds: Vec<&str> = t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    for k in [
        "router",
        "subnet",
        "port",
        "instance",
        "elastic_ip",
        "external",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }

    // Deleting the instances frees their ports (the EIP comes unbound, the address stays).
    for i in [&i1, &i2] {
        admin.delete(&format!("/v1/instances/{i}")).await.unwrap();
        let w = agent.desired().await["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == i.as_str())
            .cloned()
            .unwrap();
        agent
            .report(
                json!([{"id": i, "generation": w["generation"], "state": "gone"}]),
                json!([]),
            )
            .await;
    }
    let ports: Value = admin
        .get("/v1/ports", &[("vpc_id", vid.clone())])
        .await
        .unwrap();
    assert_eq!(ports["items"], json!([]));
    let e: Value = admin
        .get(&format!("/v1/elastic-ips/{}", id(&e)), &[])
        .await
        .unwrap();
    assert!(e["port_id"].is_null());
    assert_eq!(e["address"], "203.0.113.11");
    // Now everything can go: the router is torn down on its host, then the VPC row goes.
    let _: Value = admin
        .patch(
            &format!("/v1/subnets/{}", id(&sn)),
            &json!({"acl_id": null}),
        )
        .await
        .unwrap();
    admin
        .delete(&format!("/v1/network-acls/{}", id(&acl)))
        .await
        .unwrap();
    admin
        .delete(&format!("/v1/subnets/{}", id(&sn)))
        .await
        .unwrap();
    admin
        .delete(&format!("/v1/elastic-ips/{}", id(&e)))
        .await
        .unwrap();
    admin.delete(&format!("/v1/vpcs/{vid}")).await.unwrap();
    let dv = agent.vpc(&vid).await;
    assert_eq!(dv["deleted"], true);
    agent
        .report(
            json!([]),
            json!([{"id": vid, "generation": dv["generation"], "state": "gone"}]),
        )
        .await;
    assert_eq!(
        status(admin.get::<Value>(&format!("/v1/vpcs/{vid}"), &[]).await),
        404
    );
    let ext: Vec<Value> = admin.get("/v1/external-networks", &[]).await.unwrap();
    assert_eq!(ext[0]["used"], 0, "SNAT and EIP addresses given back");
    consistent(&admin).await;
    ts.stop().await;
}

/// A VPC whose router runs on one host and an instance on another: the subnet is carried to
/// the instance's host over VXLAN (each side floods to the other's tunnel address), and the
/// router's host serves the far instance's metadata.
#[tokio::test]
async fn a_vpc_spans_hosts_and_its_router_knows_far_instances() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let cn1 = Agent::join_at(&ts, &admin, "cn1", "192.0.2.10").await;
    let v = vpc(&admin, &a.project, "10.20.0.0/16").await;
    let vid = id(&v);
    let sn = subnet(&admin, &vid, "10.20.1.0/24").await;
    // The instance lands on the second host (the first is closed to new instances).
    let cn2 = Agent::join_at(&ts, &admin, "cn2", "192.0.2.11").await;
    let _: Value = admin
        .patch(
            &format!("/v1/hosts/{}", cn1.host_id),
            &json!({"enabled": false}),
        )
        .await
        .unwrap();
    let image = raw_image(&admin, Some(&a.project)).await;
    let made: Vec<Value> = admin
        .post(
            "/v1/instances",
            &json!({"name": "far", "project_id": a.project, "flavor": "basic.2c4g", "image": id(&image),
                "user_data": "#cloud-config\nhostname: far\n", "nics": [{"subnet_id": id(&sn)}]}),
        )
        .await
        .unwrap();
    assert_eq!(made[0]["host_id"], cn2.host_id.as_str());

    // The router's host: gateway, DHCP and metadata for a port whose tap is elsewhere.
    let on1 = cn1.vpc(&vid).await;
    assert_eq!(on1["router"], true);
    assert_eq!(on1["subnets"][0]["remote_vteps"], json!(["192.0.2.11"]));
    let port = &on1["subnets"][0]["ports"][0];
    assert_eq!(
        (&port["ip"], &port["local"]),
        (&json!("10.20.1.2"), &json!(false))
    );
    assert_eq!(port["metadata"]["hostname"], "far");
    assert_eq!(
        port["metadata"]["user_data"],
        "#cloud-config\nhostname: far\n"
    );
    // The instance's host: the subnet's bridge and tap, no router, nothing of the metadata
    // (its instance brings its own).
    let on2 = cn2.vpc(&vid).await;
    assert_eq!(on2["router"], false);
    assert_eq!(on2["subnets"][0]["remote_vteps"], json!(["192.0.2.10"]));
    let port = &on2["subnets"][0]["ports"][0];
    assert_eq!(port["local"], true);
    assert!(port.get("metadata").is_none(), "{port}");
    assert_eq!(on2["subnets"][0]["vni"], on1["subnets"][0]["vni"]);
}

/// Whether the host's desired state has it run the VPC's router.
async fn router_on(h: &Agent, v: &Value) -> bool {
    h.vpc(&id(v)).await["router"] == true
}

/// Two departments' VPCs get their routers on two hosts; peered, each router host is given
/// the link to the other's tunnel address (a VXLAN id of its own) and the other side's
/// subnets, and learns of a subnet added on the far side. A host without a tunnel address
/// cannot be linked: the peering is refused and says why.
#[tokio::test]
async fn peering_across_router_hosts_links_the_hosts() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let c = tree(&admin, "C").await;
    let cn1 = Agent::join_at(&ts, &admin, "cn1", "192.0.2.10").await;
    let cn2 = Agent::join_at(&ts, &admin, "cn2", "192.0.2.11").await;
    let va = vpc(&admin, &a.project, "10.1.0.0/16").await;
    let vb = vpc(&admin, &b.project, "10.2.0.0/16").await;
    // Where each router runs: the host whose desired state has it as the router.
    let (on_a, on_b) = if router_on(&cn1, &va).await {
        (&cn1, &cn2)
    } else {
        (&cn2, &cn1)
    };
    assert!(
        router_on(on_b, &vb).await,
        "B's router is on the other host"
    );
    subnet(&admin, &id(&va), "10.1.1.0/24").await;
    subnet(&admin, &id(&vb), "10.2.1.0/24").await;
    let p: Value = admin
        .post(
            "/v1/vpc-peerings",
            &json!({"name": "ab", "requester_vpc_id": id(&va), "accepter_vpc_id": id(&vb)}),
        )
        .await
        .unwrap();
    assert_eq!(p["status"], "active", "{p}");
    let peering = |d: Value| d["network"]["peerings"][0].clone();
    let pa = peering(on_a.desired().await);
    let pb = peering(on_b.desired().await);
    assert_eq!(pa["id"], p["id"]);
    assert_eq!(pa["remote"]["vtep"], on_b.facts["tunnel_ip"]);
    assert_eq!(pb["remote"]["vtep"], on_a.facts["tunnel_ip"]);
    assert_eq!(pa["remote"]["vni"], pb["remote"]["vni"]);
    assert!(pa["remote"]["vni"].as_u64().unwrap() >= 1 << 23, "{pa}");
    assert_eq!(
        (&pa["link_cidr"], &pa["vpc_a"]),
        (&pb["link_cidr"], &pb["vpc_a"])
    );
    assert_eq!(pa["cidrs_b"], json!(["10.2.1.0/24"]));
    assert_eq!(pb["cidrs_a"], json!(["10.1.1.0/24"]));
    // A subnet added on B's side reaches A's router host: its state moves on at once.
    let before = on_a.desired().await["generation"].as_i64().unwrap();
    subnet(&admin, &id(&vb), "10.2.2.0/24").await;
    let after: Value = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        on_a.c
            .get::<Value>("/v1/agent/desired", &[("after", before.to_string())]),
    )
    .await
    .expect("A's router host is woken")
    .unwrap();
    let mut cidrs: Vec<String> = serde_json::from_value(peering(after)["cidrs_b"].clone()).unwrap();
    cidrs.sort();
    assert_eq!(cidrs, ["10.2.1.0/24", "10.2.2.0/24"]);

    // A third host with no tunnel address runs C's router: nothing to link over.
    let cn3 = Agent::join_at(&ts, &admin, "cn3", "").await;
    for h in [&cn1, &cn2] {
        let _: Value = admin
            .patch(
                &format!("/v1/hosts/{}", h.host_id),
                &json!({"enabled": false}),
            )
            .await
            .unwrap();
    }
    let vc = vpc(&admin, &c.project, "10.3.0.0/16").await;
    assert!(router_on(&cn3, &vc).await);
    let e = admin
        .post::<Value>(
            "/v1/vpc-peerings",
            &json!({"name": "ac", "requester_vpc_id": id(&va), "accepter_vpc_id": id(&vc)}),
        )
        .await
        .unwrap_err();
    assert_eq!(status::<Value>(Err(e.clone())), 409);
    assert!(e.to_string().contains("tunnel"), "{e}");
}

#[tokio::test]
async fn peering_between_departments_needs_the_other_side_and_isolation_holds() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A").await;
    let b = tree(&admin, "B").await;
    let agent = Agent::join(&ts, &admin, "cn1").await;
    let (_, ua) = user_with_role(
        &ts,
        &sec,
        "ua",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;
    let (_, ub) = user_with_role(
        &ts,
        &sec,
        "ub",
        Some(&b.child),
        Some(("member", "project", &b.project)),
    )
    .await;
    let va = vpc(&ua, &a.project, "10.1.0.0/16").await;
    let vb = vpc(&ub, &b.project, "10.2.0.0/16").await;
    let sa = subnet(&ua, &id(&va), "10.1.1.0/24").await;
    let _sb = subnet(&ub, &id(&vb), "10.2.1.0/24").await;
    let pa: Value = ua
        .post("/v1/ports", &json!({"subnet_id": id(&sa)}))
        .await
        .unwrap();
    let ga: Value = ua
        .post(
            "/v1/security-groups",
            &json!({"project_id": a.project, "name": "db"}),
        )
        .await
        .unwrap();

    // B sees nothing of A's network; touching it is 404.
    for path in [
        "/v1/vpcs",
        "/v1/subnets",
        "/v1/ports",
        "/v1/security-groups",
        "/v1/network-acls",
        "/v1/elastic-ips",
    ] {
        let page: Value = ub.get(path, &[]).await.unwrap();
        let mine = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["project_id"] == b.project.as_str());
        assert!(mine, "{path}: {page}");
    }
    for path in [
        format!("/v1/vpcs/{}", id(&va)),
        format!("/v1/vpcs/{}/topology", id(&va)),
        format!("/v1/subnets/{}", id(&sa)),
        format!("/v1/ports/{}", id(&pa)),
        format!("/v1/security-groups/{}", id(&ga)),
    ] {
        assert_eq!(status(ub.get::<Value>(&path, &[]).await), 404, "{path}");
    }
    assert_eq!(
        status(
            ub.post::<Value>("/v1/ports", &json!({"subnet_id": id(&sa)}))
                .await
        ),
        404
    );
    assert_eq!(
        status(
            ub.post::<Value>(
                &format!("/v1/security-groups/{}/rules", id(&ga)),
                &json!({"direction": "ingress"})
            )
            .await
        ),
        404
    );
    assert_eq!(
        status(
            ub.delete(&format!("/v1/subnets/{}", id(&sa)))
                .await
                .map(|_| ())
        ),
        404
    );
    // B cannot give its instance a NIC on A's subnet.
    let image = raw_image(&admin, Some(&b.project)).await;
    let (st, m) = err(ub
        .post(
            "/v1/instances",
            &json!({"name": "x", "project_id": b.project, "flavor": "basic.2c4g",
            "image": id(&image), "nics": [{"subnet_id": id(&sa)}]}),
        )
        .await);
    assert_eq!(st, 400, "{m}");
    assert!(m.starts_with("nics"), "{m}");

    // A asks to peer with B's VPC: pending until B accepts; A cannot accept for B.
    let pr: Value = ua
        .post(
            "/v1/vpc-peerings",
            &json!({"name": "a-b", "requester_vpc_id": id(&va), "accepter_vpc_id": id(&vb)}),
        )
        .await
        .unwrap();
    assert_eq!(pr["status"], "pending_acceptance");
    assert!(agent.desired().await["network"]["peerings"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        status(
            ua.post::<Value>(&format!("/v1/vpc-peerings/{}/accept", id(&pr)), &json!({}))
                .await
        ),
        403
    );
    let seen: Vec<Value> = ub.get("/v1/vpc-peerings", &[]).await.unwrap();
    assert_eq!(seen.len(), 1, "B sees the request to its VPC");
    let acc: Value = ub
        .post(&format!("/v1/vpc-peerings/{}/accept", id(&pr)), &json!({}))
        .await
        .unwrap();
    assert_eq!(acc["status"], "active");
    let peers = agent.desired().await["network"]["peerings"].clone();
    assert_eq!(peers[0]["cidrs_a"], json!(["10.1.1.0/24"]));
    assert_eq!(peers[0]["cidrs_b"], json!(["10.2.1.0/24"]));
    assert_eq!(peers[0]["link_cidr"], "169.254.0.0/30");
    // B's topology names A's VPC only as another department's.
    let t: Value = ub
        .get(&format!("/v1/vpcs/{}/topology", id(&vb)), &[])
        .await
        .unwrap();
    let peer = t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "peer_vpc")
        .unwrap();
    assert_eq!(peer["name"], "(another department's VPC)");
    // Either side ends it; the routes go.
    ub.delete(&format!("/v1/vpc-peerings/{}", id(&pr)))
        .await
        .unwrap();
    assert!(agent.desired().await["network"]["peerings"]
        .as_array()
        .unwrap()
        .is_empty());
    // Every change is audited.
    let aud = ts.auditor().await;
    let ev: Value = aud
        .get(
            "/v1/audit-events",
            &[("operation", "peering_accept".into())],
        )
        .await
        .unwrap();
    let results: Vec<&str> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["success", "denied"],
        "the refused attempt too: {ev}"
    );
    ts.stop().await;
}
