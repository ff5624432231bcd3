//! Networking benchmark (issue: networking).
//!
//! The Stratus data path between two "VMs" — network namespaces plugged into the subnet
//! bridges the agent builds, exactly where instance taps go (named as the agent names taps,
//! with the ports' MAC and address, so the security-group tables apply to them) — beside a
//! plain veth pair between two namespaces, measured in the same run with iperf3 and ping:
//! same subnet (bridge + security groups) and across subnets (through the VPC's router
//! namespace and its nftables table). Then the time for the agent to apply a security-group
//! change, and a group of 1,000 rules, on the running host.
//!
//! Usage: network-bench [--secs 5]

use std::time::{Duration, Instant};

use stratus_agent::network::testing::plug;
use stratus_agent::network::{names, sys, Network};
use stratus_api::{
    DesiredNetwork, DesiredPort, DesiredSecurityGroup, DesiredSubnet, DesiredVpc, Direction,
    Protocol, SecurityGroupRule,
};
use uuid::Uuid;

mod common;
use common::arg;

struct Vm {
    ns: String,
    port: Uuid,
    mac: String,
    ip: String,
    subnet: Uuid,
    gateway: String,
}

fn rule(id: Uuid, protocol: Protocol, port: Option<i64>, group: Option<Uuid>) -> SecurityGroupRule {
    SecurityGroupRule {
        id,
        direction: Direction::Ingress,
        protocol,
        port_min: port,
        port_max: port,
        remote_cidr: None,
        remote_group_id: group,
        description: String::new(),
    }
}

fn desired(
    vpc: Uuid,
    group: Uuid,
    vms: &[Vm],
    rules: Vec<SecurityGroupRule>,
    deleted: bool,
) -> DesiredNetwork {
    let subnets: Vec<DesiredSubnet> = [("10.9.1.0/24", "10.9.1.1"), ("10.9.2.0/24", "10.9.2.1")]
        .iter()
        .enumerate()
        .map(|(i, (cidr, gw))| {
            let id = vms
                .iter()
                .find(|v| v.gateway == *gw)
                .map(|v| v.subnet)
                .unwrap_or_default();
            DesiredSubnet {
                id,
                cidr: cidr.to_string(),
                gateway_ip: gw.to_string(),
                dhcp_enabled: false,
                dns_servers: vec![],
                vni: 9000 + i as i64,
                remote_vteps: vec![],
                ports: vms
                    .iter()
                    .filter(|v| v.subnet == id)
                    .map(|v| DesiredPort {
                        id: v.port,
                        mac: v.mac.clone(),
                        ip: v.ip.clone(),
                        instance_id: None,
                        local: true,
                        security_group_ids: vec![group],
                        metadata: None,
                    })
                    .collect(),
                acl: vec![],
            }
        })
        .collect();
    DesiredNetwork {
        vpcs: vec![DesiredVpc {
            id: vpc,
            generation: 1,
            cidr: "10.9.0.0/16".into(),
            router: true,
            subnets,
            snat_ip: None,
            elastic_ips: vec![],
            deleted,
        }],
        security_groups: vec![DesiredSecurityGroup {
            id: group,
            rules,
            member_ips: vms.iter().map(|v| v.ip.clone()).collect(),
        }],
        peerings: vec![],
        external: None,
        tunnel_ip: None,
    }
}

async fn exec(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut a = vec!["netns", "exec", ns];
    a.extend_from_slice(args);
    sys::run("ip", &a).await
}

/// iperf3 throughput (Gbit/s) from `client` to `server_ip`, where a server runs.
async fn iperf(client: &str, server_ip: &str, secs: u32) -> anyhow::Result<f64> {
    let out = exec(
        client,
        &["iperf3", "-c", server_ip, "-t", &secs.to_string(), "-J"],
    )
    .await?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
        / 1e9)
}

/// Average round trip (ms) of 100 pings.
async fn rtt(client: &str, ip: &str) -> anyhow::Result<f64> {
    let out = exec(client, &["ping", "-c", "100", "-i", "0.01", "-q", ip]).await?;
    // rtt min/avg/max/mdev = 0.030/0.045/0.101/0.010 ms
    out.lines()
        .find_map(|l| l.split_once(" = ").map(|(_, v)| v.to_string()))
        .and_then(|v| v.split('/').nth(1).and_then(|a| a.parse().ok()))
        .ok_or_else(|| anyhow::anyhow!("no rtt in {out:?}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let secs: u32 = arg("--secs").map(|v| v.parse()).transpose()?.unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("stratus-netbench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let net = Network::new(&dir)?;
    let (vpc, group, s1, s2) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let tag = &Uuid::new_v4().simple().to_string()[..6];
    let vms: Vec<Vm> = [
        (s1, "10.9.1.2", "10.9.1.1"),
        (s1, "10.9.1.3", "10.9.1.1"),
        (s2, "10.9.2.2", "10.9.2.1"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (s, ip, gw))| Vm {
        ns: format!("snb{tag}{i}"),
        port: Uuid::new_v4(),
        mac: format!("fa:16:3e:00:09:{:02x}", i + 1),
        ip: ip.to_string(),
        subnet: *s,
        gateway: gw.to_string(),
    })
    .collect();
    let (pa, pb) = (format!("snp{tag}a"), format!("snp{tag}b"));
    let res = measure(&net, secs, vpc, group, &vms, tag, (&pa, &pb)).await;

    // Clean up: the VPC goes; then the namespaces of this run.
    net.converge(&desired(vpc, group, &vms, vec![], true), &[])
        .await;
    for ns in vms
        .iter()
        .map(|v| v.ns.clone())
        .chain([pa.clone(), pb.clone()])
    {
        let _ = exec(&ns, &["pkill", "iperf3"]).await;
        let _ = sys::ip(None, &["netns", "del", &ns]).await;
    }
    for v in &vms {
        let _ = sys::ip(None, &["link", "del", "dev", &names::tap(v.port)]).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    res
}

/// Everything measured, between the setup and the cleanup (which runs whatever happens here).
async fn measure(
    net: &Network,
    secs: u32,
    vpc: Uuid,
    group: Uuid,
    vms: &[Vm],
    tag: &str,
    (pa, pb): (&str, &str),
) -> anyhow::Result<()> {
    let same_group = vec![rule(Uuid::new_v4(), Protocol::Any, None, Some(group))];
    let t = Instant::now();
    let reports = net
        .converge(&desired(vpc, group, vms, same_group.clone(), false), &[])
        .await;
    let first = t.elapsed();
    anyhow::ensure!(
        reports.iter().all(|r| r.error.is_none()),
        "converge failed: {reports:?}"
    );
    for v in vms {
        plug(
            &v.ns,
            &names::tap(v.port),
            Some(&names::bridge(v.subnet)),
            Some(&v.mac),
            &format!("{}/24", v.ip),
            Some(&v.gateway),
        )
        .await?;
    }
    // The peer: a plain veth pair between two namespaces.
    plug(pa, &format!("snq{tag}"), None, None, "10.99.0.1/30", None).await?;
    sys::ip(None, &["netns", "add", pb]).await?;
    sys::ip(
        None,
        &["link", "set", "dev", &format!("snq{tag}"), "netns", pb],
    )
    .await?;
    sys::ip(
        Some(pb),
        &["addr", "add", "10.99.0.2/30", "dev", &format!("snq{tag}")],
    )
    .await?;
    sys::ip(
        Some(pb),
        &["link", "set", "dev", &format!("snq{tag}"), "up"],
    )
    .await?;
    sys::ip(Some(pb), &["link", "set", "dev", "lo", "up"]).await?;
    // iperf3 servers.
    for ns in [vms[1].ns.as_str(), vms[2].ns.as_str(), pb] {
        exec(ns, &["iperf3", "-s", "-D"]).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = vec![
        (
            "plain veth pair (peer)",
            iperf(pa, "10.99.0.2", secs).await?,
            rtt(pa, "10.99.0.2").await?,
        ),
        (
            "Stratus: same subnet (bridge + groups)",
            iperf(&vms[0].ns, &vms[1].ip, secs).await?,
            rtt(&vms[0].ns, &vms[1].ip).await?,
        ),
        (
            "Stratus: across subnets (router)",
            iperf(&vms[0].ns, &vms[2].ip, secs).await?,
            rtt(&vms[0].ns, &vms[2].ip).await?,
        ),
    ];

    // A rule change on the running host, then a group of 1,000 rules.
    let mut one_more = same_group.clone();
    one_more.push(rule(Uuid::new_v4(), Protocol::Tcp, Some(8443), None));
    let t = Instant::now();
    net.converge(&desired(vpc, group, vms, one_more, false), &[])
        .await;
    let change = t.elapsed();
    let mut thousand = same_group.clone();
    thousand.extend((0..1000).map(|i| rule(Uuid::new_v4(), Protocol::Tcp, Some(10_000 + i), None)));
    let t = Instant::now();
    let r = net
        .converge(&desired(vpc, group, vms, thousand, false), &[])
        .await;
    let big = t.elapsed();
    anyhow::ensure!(
        r.iter().all(|r| r.error.is_none()),
        "1,000 rules failed: {r:?}"
    );
    // Still passing traffic with the big group.
    let after = iperf(&vms[0].ns, &vms[1].ip, 2).await?;
    let t = Instant::now();
    net.converge(&desired(vpc, group, vms, same_group.clone(), false), &[])
        .await;
    let idle = {
        let t2 = Instant::now();
        net.converge(&desired(vpc, group, vms, same_group.clone(), false), &[])
            .await;
        t2.elapsed()
    };
    let back = t.elapsed() - idle;

    println!("\nThroughput and latency ({secs} s iperf3 TCP, 100 pings; namespaces stand for VMs)");
    println!(
        "{:<42} {:>12} {:>12} {:>10}",
        "path", "Gbit/s", "rtt avg ms", "vs peer"
    );
    for (name, gbps, ms) in &rows {
        println!(
            "{name:<42} {gbps:>12.2} {ms:>12.3} {:>9.0}%",
            gbps / rows[0].1 * 100.0
        );
    }
    println!("\nApplying security groups on the running host (one converge, nftables replaced atomically)");
    println!(
        "first converge (router, bridges, tables)        {:>8.0} ms",
        first.as_secs_f64() * 1000.0
    );
    println!(
        "one rule added                                  {:>8.0} ms",
        change.as_secs_f64() * 1000.0
    );
    println!(
        "a group of 1,000 rules                          {:>8.0} ms",
        big.as_secs_f64() * 1000.0
    );
    println!(
        "back to one rule                                {:>8.0} ms",
        back.as_secs_f64() * 1000.0
    );
    println!(
        "converge with nothing to change                 {:>8.0} ms",
        idle.as_secs_f64() * 1000.0
    );
    println!("throughput with the 1,000-rule group in place   {after:>8.2} Gbit/s");

    Ok(())
}
