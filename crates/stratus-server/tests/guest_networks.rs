//! Networking end to end: the control plane with its all-in-one agent, real tiny guests
//! under QEMU (TCG) on real bridges, router namespaces, nftables and dnsmasq, driven through
//! the API, checked from inside the guests (serial console) and from a test namespace that
//! stands for the external network. No traffic leaves the namespaces the test made.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use stratus_agent::console::SerialShell;
use stratus_agent::network::testing::Outside;
use stratus_client::Client;

async fn settle(c: &Client, path: &str, want: &str) -> Value {
    wait(&format!("{path} to be {want}"), 120, || async {
        let v: Value = c.get(path, &[]).await.unwrap();
        assert_ne!(v["status"], "error", "{path} failed: {v}");
        (v["status"] == want && v["task"].is_null()).then_some(v)
    })
    .await
}

async fn gone(c: &Client, path: &str) {
    wait(&format!("{path} to go"), 120, || async {
        c.get::<Value>(path, &[]).await.is_err().then_some(())
    })
    .await
}

/// Run in a guest; the output.
async fn run(sh: &mut SerialShell, cmd: &str) -> String {
    sh.run(cmd, Duration::from_secs(60)).await.unwrap()
}

/// Run in a guest until `ok(output)` holds (or fail after `secs`).
async fn until(sh: &mut SerialShell, what: &str, secs: u64, cmd: &str, ok: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = run(sh, cmd).await;
        if ok(&out) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last output {out:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ping(ip: &str) -> String {
    format!("ping -c 1 -W 2 {ip} >/dev/null 2>&1; echo rc=$?")
}

/// From the external namespace: connect to `ip:port` and read what the other side says.
async fn outside_nc(o: &Outside, ip: &str, port: u16) -> String {
    o.exec(&["busybox", "nc", "-w", "3", ip, &port.to_string()])
        .await
        .unwrap_or_default()
        .trim()
        .to_string()
}

async fn outside_until(o: &Outside, what: &str, ip: &str, port: u16, ok: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = outside_nc(o, ip, port).await;
        if ok(&out) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {out:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn shell(ts: &TestServer, admin: &Client, vm: &str) -> SerialShell {
    wait("the guest to boot", 180, || async {
        let r = admin
            .send_raw(
                reqwest::Method::GET,
                &format!("/v1/instances/{vm}/console-log"),
                &[],
                None,
            )
            .await
            .unwrap();
        String::from_utf8_lossy(&r.body)
            .contains("STRATUS-READY")
            .then_some(())
    })
    .await;
    let sock = ts
        .dir
        .join("agent")
        .join("s")
        .join(format!("{}.serial", vm.replace('-', "")));
    SerialShell::connect(&sock).await.unwrap()
}

/// Host devices and namespaces named after any of `ids` (the agent's naming: a prefix and
/// the id's first 10 hex digits).
fn leftovers(ids: &[&str]) -> Vec<String> {
    let shorts: Vec<String> = ids
        .iter()
        .map(|i| i.replace('-', "")[..10].to_string())
        .collect();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if shorts.iter().any(|s| n.ends_with(s.as_str())) {
            found.push(format!("link {n}"));
        }
    }
    if let Ok(d) = std::fs::read_dir("/run/netns") {
        for e in d.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if shorts.iter().any(|s| n.ends_with(s.as_str())) {
                found.push(format!("netns {n}"));
            }
        }
    }
    found
}

/// dnsmasq processes whose command line mentions `dir`.
fn dnsmasqs(dir: &Path) -> usize {
    let d = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("dnsmasq") && c.contains(&d)
                })
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test]
async fn vpcs_isolate_peer_nat_and_filter_real_guests() {
    let ts = TestServer::start_with(tcg_guests).await;
    let admin = ts.admin().await;
    let t = tree(&admin, "A").await;
    tiny_guest_setup(&admin).await;

    // The external network: a bridge of this test, and a namespace on it as the gateway.
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let bridge = format!("bx{tag}");
    let outside = Outside::create(&tag, &bridge, "203.0.113.1/24")
        .await
        .unwrap();
    let ext = post(
        &admin,
        "/v1/external-networks",
        json!({"name": "internet", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1",
            "pool_start": "203.0.113.10", "pool_end": "203.0.113.20", "bridge": bridge}),
    )
    .await;

    // Two VPCs of the department: A with SNAT and two instances, B with one.
    let va = post(
        &admin,
        "/v1/vpcs",
        json!({"project_id": t.project, "name": "a", "cidr": "10.0.0.0/16", "snat": true}),
    )
    .await;
    let vb = post(
        &admin,
        "/v1/vpcs",
        json!({"project_id": t.project, "name": "b", "cidr": "10.1.0.0/16"}),
    )
    .await;
    let sa = post(
        &admin,
        "/v1/subnets",
        json!({"vpc_id": id(&va), "name": "a1", "cidr": "10.0.1.0/24"}),
    )
    .await;
    let sb = post(
        &admin,
        "/v1/subnets",
        json!({"vpc_id": id(&vb), "name": "b1", "cidr": "10.1.1.0/24"}),
    )
    .await;
    let mut vms = Vec::new();
    for (name, subnet) in [("app1", &sa), ("app2", &sa), ("other", &sb)] {
        let v: Vec<Value> = admin
            .post(
                "/v1/instances",
                &json!({"name": name, "project_id": t.project, "flavor": "tiny.1c256m", "image": "tiny",
                    "nics": [{"subnet_id": id(subnet)}]}),
            )
            .await
            .unwrap();
        vms.push(id(&v[0]));
    }
    let mut ips = Vec::new();
    for vm in &vms {
        let v = settle(&admin, &format!("/v1/instances/{vm}"), "running").await;
        ips.push(v["addresses"][0].as_str().unwrap().to_string());
    }
    assert_eq!(ips, ["10.0.1.2", "10.0.1.3", "10.1.1.2"]);
    for v in [&va, &vb] {
        settle(&admin, &format!("/v1/vpcs/{}", id(v)), "active").await;
    }
    let mut sh1 = shell(&ts, &admin, &vms[0]).await;
    let mut sh2 = shell(&ts, &admin, &vms[1]).await;
    let mut shb = shell(&ts, &admin, &vms[2]).await;
    for (sh, ip) in [
        (&mut sh1, &ips[0]),
        (&mut sh2, &ips[1]),
        (&mut shb, &ips[2]),
    ] {
        until(sh, "the DHCP address", 60, "ip -4 addr show eth0", |o| {
            o.contains(ip.as_str())
        })
        .await;
    }

    // One subnet: the two reach each other (same default group); B's instance cannot.
    until(&mut sh1, "app1 -> app2", 30, &ping(&ips[1]), |o| {
        o.contains("rc=0")
    })
    .await;
    assert!(
        run(&mut shb, &ping(&ips[0])).await.contains("rc=1"),
        "another VPC reached app1"
    );
    // Metadata: each instance gets its own (asked again while a slow TCG guest's first
    // connection is still on its way, as cloud-init does).
    until(
        &mut sh1,
        "app1's own metadata",
        30,
        "printf 'GET /latest/meta-data/hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 169.254.169.254 80",
        |md| md.contains("app1") && !md.contains("app2"),
    )
    .await;
    let own = vms[1].clone();
    until(
        &mut sh2,
        "app2's own instance id",
        30,
        "printf 'GET /latest/meta-data/instance-id HTTP/1.0\\r\\n\\r\\n' | nc -w 3 169.254.169.254 80",
        move |md| md.contains(&own),
    )
    .await;

    // Peering: B reaches A; then not again.
    let pr = post(
        &admin,
        "/v1/vpc-peerings",
        json!({"name": "ab", "requester_vpc_id": id(&va), "accepter_vpc_id": id(&vb)}),
    )
    .await;
    assert_eq!(pr["status"], "active");
    until(
        &mut shb,
        "other -> app1 over the peering",
        60,
        &ping(&ips[0]),
        |o| o.contains("rc=0"),
    )
    .await;
    admin
        .delete(&format!("/v1/vpc-peerings/{}", id(&pr)))
        .await
        .unwrap();
    until(
        &mut shb,
        "the peering to be gone",
        60,
        &ping(&ips[0]),
        |o| o.contains("rc=1"),
    )
    .await;

    // SNAT: app1 reaches the external namespace (which has no route to 10/8: the answer
    // comes back only because the router translated the source).
    let listener = outside
        .spawn(&["busybox", "nc", "-l", "-p", "8080"])
        .unwrap();
    // Sent again until the listener (started through `ip netns exec`) is up.
    until(
        &mut sh1,
        "app1 to reach the outside",
        30,
        "echo hello-from-app1 | nc -w 3 203.0.113.1 8080; echo rc=$?",
        |o| o.contains("rc=0"),
    )
    .await;
    let got = tokio::time::timeout(Duration::from_secs(10), listener.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&got.stdout).contains("hello-from-app1"));

    // An elastic IP and a rule for ssh from the external network: reachable; re-bound, the
    // same address reaches the other instance.
    for sh in [&mut sh1, &mut sh2] {
        run(
            sh,
            "(while true; do nc -l -p 22 -e hostname; done) >/dev/null 2>&1 & true",
        )
        .await;
    }
    let groups: Value = admin
        .get("/v1/security-groups", &[("project_id", t.project.clone())])
        .await
        .unwrap();
    let default = id(&groups["items"][0]);
    let g = post(&admin, &format!("/v1/security-groups/{default}/rules"),
        json!({"direction": "ingress", "protocol": "tcp", "port_min": 22, "remote_cidr": "203.0.113.0/24"})).await;
    let rule = g["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["port_min"] == 22)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let eip = post(
        &admin,
        "/v1/elastic-ips",
        json!({"project_id": t.project, "external_network_id": id(&ext)}),
    )
    .await;
    let addr = eip["address"].as_str().unwrap().to_string();
    let _: Value = admin
        .put(
            &format!("/v1/elastic-ips/{}/binding", id(&eip)),
            &json!({"instance_id": vms[0]}),
        )
        .await
        .unwrap();
    outside_until(
        &outside,
        "ssh to app1 through its elastic IP",
        &addr,
        22,
        |o| o == "app1",
    )
    .await;
    let _: Value = admin
        .put(
            &format!("/v1/elastic-ips/{}/binding", id(&eip)),
            &json!({"instance_id": vms[1]}),
        )
        .await
        .unwrap();
    outside_until(&outside, "the elastic IP moved to app2", &addr, 22, |o| {
        o == "app2"
    })
    .await;

    // A network ACL that denies ssh into the subnet overrides the group's allow.
    let acl = post(&admin, "/v1/network-acls", json!({"vpc_id": id(&va), "name": "edge", "rules": [
        {"priority": 10, "action": "deny", "direction": "ingress", "protocol": "tcp", "cidr": "203.0.113.0/24",
         "port_min": 22, "port_max": 22}]})).await;
    let _: Value = admin
        .patch(
            &format!("/v1/subnets/{}", id(&sa)),
            &json!({"acl_id": id(&acl)}),
        )
        .await
        .unwrap();
    outside_until(&outside, "the ACL to close ssh", &addr, 22, |o| {
        o.is_empty()
    })
    .await;
    let _: Value = admin
        .patch(
            &format!("/v1/subnets/{}", id(&sa)),
            &json!({"acl_id": null}),
        )
        .await
        .unwrap();
    outside_until(&outside, "ssh open again", &addr, 22, |o| o == "app2").await;
    // Removing the rule closes it on the running instance.
    admin
        .delete(&format!("/v1/security-groups/{default}/rules/{rule}"))
        .await
        .unwrap();
    outside_until(&outside, "the group to close ssh", &addr, 22, |o| {
        o.is_empty()
    })
    .await;

    // Clean up through the API: nothing of it is left on the host.
    let ports: Value = admin
        .get("/v1/ports", &[("project_id", t.project.clone())])
        .await
        .unwrap();
    let port_ids: Vec<String> = ports["items"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(port_ids.len(), 3);
    for vm in &vms {
        admin.delete(&format!("/v1/instances/{vm}")).await.unwrap();
    }
    for vm in &vms {
        gone(&admin, &format!("/v1/instances/{vm}")).await;
    }
    let _: Value = admin
        .put(&format!("/v1/elastic-ips/{}/binding", id(&eip)), &json!({}))
        .await
        .unwrap();
    admin
        .delete(&format!("/v1/elastic-ips/{}", id(&eip)))
        .await
        .unwrap();
    admin
        .delete(&format!("/v1/network-acls/{}", id(&acl)))
        .await
        .unwrap();
    for s in [&sa, &sb] {
        admin
            .delete(&format!("/v1/subnets/{}", id(s)))
            .await
            .unwrap();
    }
    for v in [&va, &vb] {
        admin.delete(&format!("/v1/vpcs/{}", id(v))).await.unwrap();
    }
    for v in [&va, &vb] {
        gone(&admin, &format!("/v1/vpcs/{}", id(v))).await;
    }
    admin
        .delete(&format!("/v1/external-networks/{}", id(&ext)))
        .await
        .unwrap();
    let mut ids = vec![id(&va), id(&vb), id(&sa), id(&sb)];
    ids.extend(port_ids);
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let left = leftovers(&ids);
    assert!(left.is_empty(), "left on the host: {left:?}");
    assert_eq!(dnsmasqs(&ts.dir), 0, "dnsmasq left running");
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]), "{report}");
    drop(outside);
    ts.stop().await;
}
