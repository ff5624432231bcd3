//! VPC networking with real guests (TCG), namespaces, bridges, nftables and dnsmasq: DHCP,
//! isolation and peering, security groups and ACLs, SNAT and elastic IPs to an "external"
//! namespace, metadata, agent restarts and drift repair, cleanup. Needs root. Guests boot
//! a few per test and serve every check; commands run in them over the serial console.
//! Prints measured numbers (`bench:` lines) for the benchmark notes.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{fixture, wait_console, Fixture, Shell};
use stratus_agent::agent::{Host, Instance};
use stratus_agent::network::testing::{plug, Outside};
use stratus_agent::network::{names, sys, Network};
use stratus_agent::qemu::VmDir;
use stratus_api::{
    AclAction, AclRule, DesiredElasticIp, DesiredExternal, DesiredInstance, DesiredNetwork,
    DesiredNic, DesiredPeering, DesiredPort, DesiredPower, DesiredSecurityGroup, DesiredSubnet,
    DesiredVpc, Direction, NetworkState, PeeringRemote, Protocol, SecurityGroupRule, VpcReport,
};
use uuid::Uuid;

// ------------------------------------------------------------------ building blocks

fn mac(id: Uuid) -> String {
    let b = id.as_bytes();
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

fn port(id: Uuid, ip: &str, instance: Option<Uuid>, groups: &[Uuid]) -> DesiredPort {
    DesiredPort {
        id,
        mac: mac(id),
        ip: ip.into(),
        instance_id: instance,
        local: true,
        security_group_ids: groups.to_vec(),
        metadata: None,
    }
}

fn subnet(id: Uuid, net: &str, ports: Vec<DesiredPort>) -> DesiredSubnet {
    DesiredSubnet {
        id,
        cidr: format!("{net}.0/24"),
        gateway_ip: format!("{net}.1"),
        dhcp_enabled: true,
        dns_servers: vec![],
        vni: 1000,
        remote_vteps: vec![],
        ports,
        acl: vec![],
    }
}

fn vpc(id: Uuid, cidr: &str, subnets: Vec<DesiredSubnet>) -> DesiredVpc {
    DesiredVpc {
        id,
        generation: 1,
        cidr: cidr.into(),
        router: true,
        subnets,
        snat_ip: None,
        elastic_ips: vec![],
        deleted: false,
    }
}

fn rule(direction: Direction, protocol: Protocol, port: Option<i64>) -> SecurityGroupRule {
    SecurityGroupRule {
        id: Uuid::new_v4(),
        direction,
        protocol,
        port_min: port,
        port_max: port,
        remote_cidr: None,
        remote_group_id: None,
        description: String::new(),
    }
}

fn from_cidr(mut r: SecurityGroupRule, cidr: &str) -> SecurityGroupRule {
    r.remote_cidr = Some(cidr.into());
    r
}

fn from_group(mut r: SecurityGroupRule, g: Uuid) -> SecurityGroupRule {
    r.remote_group_id = Some(g);
    r
}

fn acl(
    priority: i64,
    action: AclAction,
    protocol: Protocol,
    cidr: Option<&str>,
    port: Option<i64>,
) -> AclRule {
    AclRule {
        priority,
        action,
        direction: Direction::Ingress,
        protocol,
        cidr: cidr.map(str::to_string),
        port_min: port,
        port_max: port,
        description: String::new(),
    }
}

fn group(id: Uuid, rules: Vec<SecurityGroupRule>, members: &[&str]) -> DesiredSecurityGroup {
    DesiredSecurityGroup {
        id,
        rules,
        member_ips: members.iter().map(|m| m.to_string()).collect(),
    }
}

/// Converge; every VPC must come out ready (or gone when deleted). Returns how long it took.
async fn apply(net: &Network, d: &mut DesiredNetwork, inst: &[DesiredInstance]) -> Duration {
    for v in &mut d.vpcs {
        v.generation += 1;
    }
    let t = Instant::now();
    let reports = net.converge(d, inst).await;
    let took = t.elapsed();
    check_reports(d, &reports);
    took
}

fn check_reports(d: &DesiredNetwork, reports: &[VpcReport]) {
    assert_eq!(reports.len(), d.vpcs.len(), "{reports:?}");
    for v in &d.vpcs {
        let r = reports.iter().find(|r| r.id == v.id).unwrap();
        let want = if v.deleted {
            NetworkState::Gone
        } else {
            NetworkState::Ready
        };
        assert_eq!((r.state, r.generation), (want, v.generation), "{r:?}");
    }
}

/// A guest with NICs, booted; waits until every NIC got its address by DHCP.
struct Vm {
    inst: Instance,
    d: DesiredInstance,
    sh: Shell,
}

fn nic(p: &DesiredPort, vpc_id: Uuid, subnet_id: Uuid) -> DesiredNic {
    DesiredNic {
        port_id: p.id,
        mac: p.mac.clone(),
        vpc_id,
        subnet_id,
    }
}

async fn boot(fx: &Fixture, host: &Host, id: Uuid, name: &str, nics: Vec<DesiredNic>) -> Vm {
    let mut d = fx.desired(id, name);
    d.nics = nics;
    let inst = Instance::open(host, id).await;
    inst.converge(host, &d).await;
    let r = common::report(&inst).await;
    assert!(r.error.is_none(), "{r:?}");
    let mut console = String::new();
    wait_console(&inst, &mut console, "STRATUS-READY", 1).await;
    let sh = Shell::connect(&inst.dir().serial()).await;
    Vm { inst, d, sh }
}

/// Wait until the guest has `ips` (its DHCP client configures them; its messages go
/// nowhere, so the shell is asked).
async fn wait_dhcp(vm: &mut Vm, ips: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = vm.sh.run("ip -4 addr show", Duration::from_secs(60)).await;
        if ips.iter().all(|ip| out.contains(&format!("inet {ip}/"))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no DHCP lease for {ips:?}:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `nc` from the guest to `ip:port`: what the listener sent (empty if it could not connect).
async fn tcp(sh: &mut Shell, ip: &str, port: u16) -> String {
    sh.run(
        &format!("echo x | nc -w 2 {ip} {port} 2>&1"),
        Duration::from_secs(20),
    )
    .await
}

async fn open(sh: &mut Shell, ip: &str, port: u16) -> bool {
    tcp(sh, ip, port).await.contains("OPEN")
}

async fn ping(sh: &mut Shell, ip: &str) -> bool {
    sh.run(
        &format!("ping -c 1 -W 2 {ip} 2>&1"),
        Duration::from_secs(20),
    )
    .await
    .contains(" 0% packet loss")
}

/// Serve `OPEN<port> <hostname>` on `port` in the guest (busybox nc, persistent).
async fn serve(sh: &mut Shell, port: u16) {
    sh.sh(&format!(
        "printf '#!/bin/sh\\necho OPEN{port} $(hostname)\\n' > /tmp/o{port}; chmod +x /tmp/o{port}; (nc -ll -p {port} -e /tmp/o{port} >/dev/null 2>&1 &)"
    ))
    .await;
}

/// Removes what a test made even when it fails midway (guests, devices, namespaces,
/// dnsmasqs, tables), by name: nothing of other tests is touched.
struct Guard {
    state_dir: PathBuf,
    ids: Vec<Uuid>,
    vms: Vec<(VmDir, Uuid)>,
    links: Vec<String>,
}

impl Guard {
    fn new(state_dir: &Path) -> Guard {
        std::fs::create_dir_all(state_dir).unwrap();
        Guard {
            state_dir: std::fs::canonicalize(state_dir).unwrap(),
            ids: Vec::new(),
            vms: Vec::new(),
            links: Vec::new(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let ip = |args: &[&str]| {
            let _ = std::process::Command::new("ip")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status();
        };
        for (dir, id) in &self.vms {
            if let Some(pid) = stratus_agent::qemu::pid(dir, *id) {
                sys::signal(pid, libc::SIGKILL);
            }
        }
        let dhcp = self.state_dir.join("network/dhcp");
        for p in sys::pids_with(&dhcp.to_string_lossy()) {
            sys::signal(p, libc::SIGKILL);
        }
        for id in &self.ids {
            for n in names::host_devices(*id) {
                if Path::new("/sys/class/net").join(&n).exists() {
                    ip(&["link", "del", "dev", &n]);
                }
            }
            if Path::new("/run/netns").join(names::netns(*id)).exists() {
                ip(&["netns", "del", &names::netns(*id)]);
            }
        }
        for l in &self.links {
            ip(&["link", "del", "dev", l]);
        }
        let table = names::sg_table(&names::agent_tag(&self.state_dir));
        for fam in ["inet", "bridge"] {
            let _ = std::process::Command::new("nft")
                .args(["delete", "table", fam, &table])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Nothing of these ids is left: no namespace, device, dnsmasq or table of the agent.
async fn nothing_left(state_dir: &Path, ids: &[Uuid]) {
    let links = sys::links(None).await.unwrap();
    let spaces = sys::netns_list().await.unwrap();
    for id in ids {
        for n in names::host_devices(*id) {
            assert!(!links.contains_key(&n), "{n} is left");
        }
        assert!(
            !spaces.contains(&names::netns(*id)),
            "namespace of {id} is left"
        );
    }
    let state_dir = std::fs::canonicalize(state_dir).unwrap();
    let dhcp = state_dir.join("network/dhcp");
    assert!(
        sys::pids_with(&dhcp.to_string_lossy()).is_empty(),
        "a dnsmasq is left"
    );
    let table = names::sg_table(&names::agent_tag(&state_dir));
    for fam in ["inet", "bridge"] {
        assert!(
            sys::nft_list(None, fam, &table).await.unwrap().is_none(),
            "table {fam} {table} is left"
        );
    }
}

/// Run a command line (words split on spaces); its stdout.
async fn run_line(c: &str) -> anyhow::Result<String> {
    let a: Vec<&str> = c.split_whitespace().collect();
    sys::run(a[0], &a[1..]).await
}

/// Another "host" for traffic between hosts: a namespace joined to this one by a veth pair
/// (the underlay: `here` this host's end, `there` the other's); removed on drop.
struct OtherHost {
    ns: String,
    wire: String,
    here: String,
    there: String,
}

impl OtherHost {
    /// `tag` keeps names unique; the underlay is a /30 of `10.<net>.0.0/16`.
    async fn new(tag: &str, net: u8) -> anyhow::Result<OtherHost> {
        let x = u8::from_str_radix(&tag[..2], 16)?;
        let h = OtherHost {
            ns: format!("stest-h{tag}"),
            wire: format!("vt{tag}"),
            here: format!("10.{net}.{x}.1"),
            there: format!("10.{net}.{x}.2"),
        };
        sys::ip(None, &["netns", "add", &h.ns]).await?;
        let (ns, wire) = (&h.ns, &h.wire);
        for c in [
            format!("ip link add {wire} type veth peer name eth0 netns {ns}"),
            format!("ip addr add {}/30 dev {wire}", h.here),
            format!("ip link set {wire} up"),
            format!("ip -n {ns} addr add {}/30 dev eth0", h.there),
            format!("ip -n {ns} link set eth0 up"),
        ] {
            run_line(&c).await?;
        }
        Ok(h)
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        for args in [["netns", "del", &self.ns], ["link", "del", &self.wire]] {
            let _ = std::process::Command::new("ip")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn ifindex(name: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).unwrap_or_default()
}

fn master(name: &str) -> Option<String> {
    std::fs::read_link(format!("/sys/class/net/{name}/master"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

async fn delete_vms(host: &Host, vms: &mut [&mut Vm]) {
    for vm in vms.iter_mut() {
        vm.d.generation += 1;
        vm.d.power = DesiredPower::Deleted;
        vm.inst.converge(host, &vm.d).await;
        assert!(vm.inst.is_gone().await);
    }
}

// ------------------------------------------------------------------ tests

/// Two VMs of one subnet get their addresses by DHCP and reach each other; a VM of
/// another VPC cannot, until a peering (and not after it is removed); security groups
/// (CIDR and same-group rules, a change on the running VM) and an ACL deny over an SG allow.
#[tokio::test]
async fn isolation_peering_security_groups_acl() {
    let fx = fixture().await;
    let host = fx.host("net1", &[]);
    let mut guard = Guard::new(&host.state_dir);
    let net = Network::new(&host.state_dir).unwrap();

    let (v1, s1, v2, s2) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let (p1, p2, p3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (ga, gssh, gb) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    guard.ids.extend([v1, s1, v2, s2, p1, p2, p3]);
    let ports1 = vec![
        port(p1, "10.31.1.11", None, &[ga, gssh]),
        port(p2, "10.31.1.12", None, &[ga]),
    ];
    let ports2 = vec![port(p3, "10.32.1.11", None, &[gb])];
    let ssh_rule = from_cidr(
        rule(Direction::Ingress, Protocol::Tcp, Some(22)),
        "10.32.1.0/24",
    );
    let mut d = DesiredNetwork {
        vpcs: vec![
            vpc(
                v1,
                "10.31.0.0/16",
                vec![subnet(s1, "10.31.1", ports1.clone())],
            ),
            vpc(
                v2,
                "10.32.0.0/16",
                vec![subnet(s2, "10.32.1", ports2.clone())],
            ),
        ],
        security_groups: vec![
            group(
                ga,
                vec![from_group(
                    rule(Direction::Ingress, Protocol::Any, None),
                    ga,
                )],
                &["10.31.1.11", "10.31.1.12"],
            ),
            group(gssh, vec![ssh_rule.clone()], &["10.31.1.11"]),
            group(
                gb,
                vec![from_group(
                    rule(Direction::Ingress, Protocol::Any, None),
                    gb,
                )],
                &["10.32.1.11"],
            ),
        ],
        ..DesiredNetwork::default()
    };
    let first = apply(&net, &mut d, &[]).await;
    eprintln!(
        "bench: first converge of 2 VPCs: {:.3} s",
        first.as_secs_f64()
    );

    let (i1, i2, i3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for i in [i1, i2, i3] {
        guard.vms.push((VmDir::new(&host.state_dir, i), i));
        guard.ids.push(i);
    }
    let (mut vm1, mut vm2, mut vm3) = tokio::join!(
        boot(&fx, &host, i1, "vm1", vec![nic(&ports1[0], v1, s1)]),
        boot(&fx, &host, i2, "vm2", vec![nic(&ports1[1], v1, s1)]),
        boot(&fx, &host, i3, "vm3", vec![nic(&ports2[0], v2, s2)]),
    );
    let instances = vec![vm1.d.clone(), vm2.d.clone(), vm3.d.clone()];
    // The taps exist now: plugged (they were, the bridges being there), MTU set.
    apply(&net, &mut d, &instances).await;
    let t = Instant::now();
    tokio::join!(
        wait_dhcp(&mut vm1, &["10.31.1.11"]),
        wait_dhcp(&mut vm2, &["10.31.1.12"]),
        wait_dhcp(&mut vm3, &["10.32.1.11"]),
    );
    eprintln!(
        "bench: 3 guests booted and got DHCP leases {:.1} s after the converge",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        vm1.sh
            .sh("ip -4 addr show eth0 | grep -c 10.31.1.11/24")
            .await,
        "1"
    );
    assert!(vm1
        .sh
        .sh("ip route")
        .await
        .contains("default via 10.31.1.1"));

    // Same subnet, same group: they reach each other.
    assert!(ping(&mut vm1.sh, "10.31.1.12").await);
    let out = vm1.sh.sh("ping -c 10 -i 0.2 10.31.1.12 | tail -n 1").await;
    eprintln!("bench: ping RTT VM to VM, same subnet (TCG): {out}");
    assert!(ping(&mut vm2.sh, "10.31.1.11").await);
    serve(&mut vm1.sh, 22).await;
    serve(&mut vm1.sh, 23).await;
    assert!(
        open(&mut vm2.sh, "10.31.1.11", 23).await,
        "same-group traffic flows"
    );

    // Another VPC: isolated (no route between routers).
    assert!(!ping(&mut vm3.sh, "10.31.1.1").await);
    assert!(!open(&mut vm3.sh, "10.31.1.11", 22).await);

    // Peering: routes both ways; vm1's groups allow tcp/22 from VPC 2's subnet only.
    d.peerings = vec![DesiredPeering {
        id: Uuid::new_v4(),
        vpc_a: v1,
        vpc_b: v2,
        cidrs_a: vec!["10.31.1.0/24".into()],
        cidrs_b: vec!["10.32.1.0/24".into()],
        link_cidr: "169.254.31.0/30".into(),
        remote: None,
    }];
    apply(&net, &mut d, &instances).await;
    assert!(
        open(&mut vm3.sh, "10.31.1.11", 22).await,
        "allowed by the group's CIDR rule"
    );
    assert!(
        !open(&mut vm3.sh, "10.31.1.11", 23).await,
        "no rule allows tcp/23 from there"
    );
    assert!(
        !open(&mut vm3.sh, "10.31.1.12", 23).await,
        "vm2 has no such rule"
    );

    // An ACL deny on vm1's subnet beats the group's allow; without it, it flows again.
    d.vpcs[0].subnets[0].acl = vec![
        acl(
            10,
            AclAction::Deny,
            Protocol::Tcp,
            Some("10.32.0.0/16"),
            Some(22),
        ),
        acl(20, AclAction::Allow, Protocol::Any, None, None),
    ];
    apply(&net, &mut d, &instances).await;
    assert!(
        !open(&mut vm3.sh, "10.31.1.11", 22).await,
        "the ACL denies it"
    );
    assert!(
        open(&mut vm2.sh, "10.31.1.11", 22).await,
        "the ACL is about traffic through the router"
    );
    d.vpcs[0].subnets[0].acl.clear();
    apply(&net, &mut d, &instances).await;
    assert!(open(&mut vm3.sh, "10.31.1.11", 22).await);

    // Removing the rule closes the port on the running VM.
    d.security_groups[1].rules.clear();
    let took = apply(&net, &mut d, &instances).await;
    eprintln!(
        "bench: security-group change applied to a running VM in {:.3} s (whole converge)",
        took.as_secs_f64()
    );
    assert!(
        !open(&mut vm3.sh, "10.31.1.11", 22).await,
        "rule removed: new connections fail"
    );
    d.security_groups[1].rules = vec![ssh_rule.clone()];
    apply(&net, &mut d, &instances).await;
    assert!(open(&mut vm3.sh, "10.31.1.11", 22).await);

    // Anti-spoofing: another source address from vm2 gets nowhere.
    vm2.sh.sh("ip addr add 10.31.1.99/24 dev eth0").await;
    assert!(!vm2
        .sh
        .sh("ping -c 1 -W 2 -I 10.31.1.99 10.31.1.1 2>&1")
        .await
        .contains(" 0% packet loss"));
    vm2.sh.sh("ip addr del 10.31.1.99/24 dev eth0").await;

    // Peering removed: unreachable again, link and routes gone.
    d.peerings.clear();
    apply(&net, &mut d, &instances).await;
    assert!(!open(&mut vm3.sh, "10.31.1.11", 22).await);
    let links = sys::links(Some(&names::netns(v1))).await.unwrap();
    assert!(!links.keys().any(|l| l.starts_with("pr")), "{links:?}");

    // Everything deleted: nothing is left.
    delete_vms(&host, &mut [&mut vm1, &mut vm2, &mut vm3]).await;
    for v in &mut d.vpcs {
        v.deleted = true;
    }
    apply(&net, &mut d, &[]).await;
    nothing_left(&host.state_dir, &guard.ids).await;
    d.vpcs.clear();
    assert!(
        net.converge(&d, &[]).await.is_empty(),
        "gone VPCs are forgotten"
    );
}

/// A 1,000-rule group loads in well under a second; VXLAN devices with head-end
/// replication lists follow the desired remote tunnel ends; a restarted agent sweeps what
/// it made for VPCs no longer desired, and leaves look-alikes that are not its own.
#[tokio::test]
async fn thousand_rules_vxlan_and_sweep() {
    let root = std::env::temp_dir().join(format!("stratus-net-{}", Uuid::new_v4().simple()));
    let state = root.join("host");
    let mut guard = Guard::new(&state);
    let net = Network::new(&state).unwrap();
    let (v, s, p, g) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    guard.ids.extend([v, s, p]);
    let mut sub = subnet(s, "10.34.1", vec![port(p, "10.34.1.11", None, &[g])]);
    sub.remote_vteps = vec!["127.0.0.2".into(), "127.0.0.3".into()];
    sub.vni = 4242;
    let mut d = DesiredNetwork {
        vpcs: vec![vpc(v, "10.34.0.0/16", vec![sub])],
        security_groups: vec![group(
            g,
            vec![rule(Direction::Ingress, Protocol::Icmp, None)],
            &["10.34.1.11"],
        )],
        tunnel_ip: Some("127.0.0.1".into()),
        ..DesiredNetwork::default()
    };
    let took = apply(&net, &mut d, &[]).await;
    eprintln!(
        "bench: first converge of a VPC: {:.3} s",
        took.as_secs_f64()
    );
    let took = apply(&net, &mut d, &[]).await;
    eprintln!(
        "bench: converge with nothing to change: {:.3} s",
        took.as_secs_f64()
    );

    // VXLAN: VNI, local end, port, MTU, and one all-zero FDB entry per remote host.
    let vx = names::vxlan(s);
    let l = sys::links(None).await.unwrap().remove(&vx).unwrap();
    assert_eq!(l.vxlan, Some((4242, "127.0.0.1".into(), 4789)));
    assert_eq!(
        (l.mtu, l.master.as_deref()),
        (1450, Some(names::bridge(s).as_str()))
    );
    let mut flood = sys::flood_list(&vx).await.unwrap();
    flood.sort();
    assert_eq!(flood, ["127.0.0.2", "127.0.0.3"]);
    d.vpcs[0].subnets[0].remote_vteps = vec!["127.0.0.3".into(), "127.0.0.4".into()];
    apply(&net, &mut d, &[]).await;
    let mut flood = sys::flood_list(&vx).await.unwrap();
    flood.sort();
    assert_eq!(flood, ["127.0.0.3", "127.0.0.4"]);

    // A new port: dnsmasq re-reads its hosts (SIGHUP), it is not restarted.
    let pidfile = std::fs::canonicalize(&state)
        .unwrap()
        .join(format!("network/dhcp/{s}.pid"));
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let p2 = Uuid::new_v4();
    guard.ids.push(p2);
    d.vpcs[0].subnets[0]
        .ports
        .push(port(p2, "10.34.1.12", None, &[g]));
    apply(&net, &mut d, &[]).await;
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), pid);
    let hosts = std::fs::read_to_string(pidfile.with_extension("hosts")).unwrap();
    assert!(
        hosts.contains(&format!("{},10.34.1.12", mac(p2))),
        "{hosts}"
    );
    let log = pidfile.with_extension("log");
    let t = Instant::now();
    while std::fs::read_to_string(&log)
        .unwrap()
        .matches(".hosts")
        .count()
        < 2
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "dnsmasq did not re-read its hosts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A VPC whose router runs on another host: only its subnet's bridge is here.
    let (v2, s2) = (Uuid::new_v4(), Uuid::new_v4());
    guard.ids.extend([v2, s2]);
    let mut remote = vpc(v2, "10.36.0.0/16", vec![subnet(s2, "10.36.1", vec![])]);
    remote.router = false;
    d.vpcs.push(remote);
    apply(&net, &mut d, &[]).await;
    assert!(sys::links(None)
        .await
        .unwrap()
        .contains_key(&names::bridge(s2)));
    assert!(!sys::netns_list().await.unwrap().contains(&names::netns(v2)));
    d.vpcs.pop();

    // 1,000 rules (distinct ports and sources) in one group.
    d.security_groups[0].rules = (0..1000)
        .map(|i| {
            from_cidr(
                rule(Direction::Ingress, Protocol::Tcp, Some(1000 + i)),
                &format!("10.{}.{}.0/24", 100 + i / 250, i % 250),
            )
        })
        .collect();
    let took = apply(&net, &mut d, &[]).await;
    eprintln!(
        "bench: 1,000-rule security group applied in {:.3} s (whole converge)",
        took.as_secs_f64()
    );
    let table = names::sg_table(net.tag());
    let listed = sys::nft_list(None, "inet", &table).await.unwrap().unwrap();
    assert!(
        listed.contains("tcp dport 1999 accept"),
        "the last rule is loaded"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A restart with the VPC gone from the desired state: swept. A look-alike bridge
    // without this agent's tag stays.
    let other = format!("stb{}", &Uuid::new_v4().simple().to_string()[..10]);
    guard.links.push(other.clone());
    sys::ip(None, &["link", "add", "name", &other, "type", "bridge"])
        .await
        .unwrap();
    drop(net);
    let net = Network::new(&state).unwrap();
    d.vpcs.clear();
    d.security_groups.clear();
    assert!(net.converge(&d, &[]).await.is_empty());
    nothing_left(&state, &[v, s, p, v2, s2]).await;
    assert!(
        sys::links(None).await.unwrap().contains_key(&other),
        "not ours: left alone"
    );
    sys::link_del(None, &other).await.unwrap();
    drop(guard);
    let _ = std::fs::remove_dir_all(root);
}

/// SNAT and elastic IPs towards an "external" namespace (and an EIP moved to another VM),
/// metadata answering each guest with its own data only, an agent restart that rebuilds
/// nothing and repairs drift, and deletion that leaves nothing behind.
#[tokio::test]
async fn external_metadata_restart_cleanup() {
    let fx = fixture().await;
    let host = fx.host("net2", &[]);
    let mut guard = Guard::new(&host.state_dir);
    let net = Network::new(&host.state_dir).unwrap();
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let ext_bridge = format!("sx{tag}");
    guard.links.push(ext_bridge.clone());
    // The uplink's other side: the external gateway, which also stands for the internet.
    let outside = Outside::create(tag, &ext_bridge, "203.0.113.1/24")
        .await
        .unwrap();

    let (v, s) = (Uuid::new_v4(), Uuid::new_v4());
    let (q1, q2, g) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (ia, ib) = (Uuid::new_v4(), Uuid::new_v4());
    guard.ids.extend([v, s, q1, q2, ia, ib]);
    for i in [ia, ib] {
        guard.vms.push((VmDir::new(&host.state_dir, i), i));
    }
    let ports = vec![
        port(q1, "10.33.1.11", Some(ia), &[g]),
        port(q2, "10.33.1.12", Some(ib), &[g]),
    ];
    let mut d3 = vpc(v, "10.33.0.0/16", vec![subnet(s, "10.33.1", ports.clone())]);
    d3.snat_ip = Some("203.0.113.2/24".into());
    let eip = DesiredElasticIp {
        id: Uuid::new_v4(),
        address: "203.0.113.10/24".into(),
        fixed_ip: "10.33.1.11".into(),
        port_id: q1,
    };
    d3.elastic_ips = vec![eip.clone()];
    let mut d = DesiredNetwork {
        vpcs: vec![d3],
        security_groups: vec![group(
            g,
            vec![
                from_cidr(
                    rule(Direction::Ingress, Protocol::Tcp, Some(22)),
                    "203.0.113.0/24",
                ),
                from_group(rule(Direction::Ingress, Protocol::Any, None), g),
            ],
            &["10.33.1.11", "10.33.1.12"],
        )],
        external: Some(DesiredExternal {
            id: Uuid::new_v4(),
            bridge: ext_bridge.clone(),
            cidr: "203.0.113.0/24".into(),
            gateway_ip: "203.0.113.1".into(),
        }),
        ..DesiredNetwork::default()
    };
    apply(&net, &mut d, &[]).await;
    let (mut a, mut b) = tokio::join!(
        boot(&fx, &host, ia, "vma", vec![nic(&ports[0], v, s)]),
        boot(&fx, &host, ib, "vmb", vec![nic(&ports[1], v, s)]),
    );
    let instances = vec![a.d.clone(), b.d.clone()];
    apply(&net, &mut d, &instances).await;
    tokio::join!(
        wait_dhcp(&mut a, &["10.33.1.11"]),
        wait_dhcp(&mut b, &["10.33.1.12"])
    );

    // Metadata: each guest gets its own.
    let get = |p: &str| {
        format!("echo -e 'GET {p} HTTP/1.0\\r\\n\\r\\n' | nc 169.254.169.254 80 | tail -n 1")
    };
    assert_eq!(a.sh.sh(&get("/latest/meta-data/hostname")).await, "vma");
    assert_eq!(b.sh.sh(&get("/latest/meta-data/hostname")).await, "vmb");
    assert_eq!(
        a.sh.sh(&get("/latest/meta-data/instance-id")).await,
        ia.to_string()
    );
    assert_eq!(
        b.sh.sh(&get("/latest/meta-data/local-ipv4")).await,
        "10.33.1.12"
    );
    assert_eq!(
        a.sh.sh(&get("/latest/meta-data/public-keys/0/openssh-key"))
            .await,
        "ssh-ed25519 AAAAC3NzaTest test@stratus"
    );
    let json = b.sh.sh(&get("/openstack/latest/meta_data.json")).await;
    assert!(
        json.contains(&ib.to_string()) && !json.contains(&ia.to_string()),
        "{json}"
    );
    // An address that is no port's: nothing.
    let unknown = sys::run(
        "ip",
        &["netns", "exec", &names::netns(v), "busybox", "sh", "-c",
          "echo -e 'GET /latest/meta-data/hostname HTTP/1.0\\r\\n\\r\\n' | busybox nc 169.254.169.254 80 | head -n 1"],
    )
    .await
    .unwrap();
    assert!(unknown.contains("404"), "{unknown}");

    // SNAT: vmb leaves with the VPC's address, vma (elastic IP) with its own.
    let listener = outside.listen(8080).await.unwrap();
    for (vm, want) in [(&mut b, "203.0.113.2"), (&mut a, "203.0.113.10")] {
        let (sent, accepted) = tokio::join!(
            vm.sh
                .sh("echo hi | nc -w 3 203.0.113.1 8080 >/dev/null 2>&1; echo done"),
            async {
                // Closed at once, so the guest's nc ends.
                let (conn, peer) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
                    .await
                    .expect("no connection from the guest")
                    .unwrap();
                drop(conn);
                peer
            },
        );
        assert_eq!(sent, "done");
        assert_eq!(accepted.ip().to_string(), want);
    }

    // The elastic IP reaches vma from outside; bound to vmb's port it reaches vmb.
    serve(&mut a.sh, 22).await;
    serve(&mut b.sh, 22).await;
    let eip_addr: std::net::SocketAddr = "203.0.113.10:22".parse().unwrap();
    let got = outside
        .fetch(eip_addr, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(got.contains("OPEN22 vma"), "{got}");
    assert!(
        outside
            .fetch("203.0.113.2:22".parse().unwrap(), Duration::from_secs(2))
            .await
            .is_err(),
        "SNAT address lets nothing in"
    );
    d.vpcs[0].elastic_ips = vec![DesiredElasticIp {
        fixed_ip: "10.33.1.12".into(),
        port_id: q2,
        ..eip.clone()
    }];
    let t = Instant::now();
    apply(&net, &mut d, &instances).await;
    let got = outside
        .fetch(eip_addr, Duration::from_secs(5))
        .await
        .unwrap();
    eprintln!(
        "bench: elastic IP moved to another VM, reachable there {:.3} s after the change",
        t.elapsed().as_secs_f64()
    );
    assert!(got.contains("OPEN22 vmb"), "{got}");

    // Restart: a new agent on the same state rebuilds nothing that is right.
    let dhcp_pid = || {
        std::fs::read_to_string(host.state_dir.join(format!("network/dhcp/{s}.pid")))
            .unwrap()
            .trim()
            .to_string()
    };
    let (pid, br) = (dhcp_pid(), names::bridge(s));
    let idx = (
        ifindex(&br),
        ifindex(&names::leg_host(s)),
        ifindex(&names::tap(q1)),
    );
    drop(net);
    let net = Network::new(&host.state_dir).unwrap();
    let (ping_during, _) = tokio::join!(
        a.sh.run(
            "ping -c 20 -i 0.1 10.33.1.12 2>&1 | grep transmitted",
            Duration::from_secs(30)
        ),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            apply(&net, &mut d, &instances).await
        },
    );
    assert!(ping_during.contains(" 0% packet loss"), "{ping_during}");
    assert_eq!(dhcp_pid(), pid, "dnsmasq was not restarted");
    assert_eq!(
        idx,
        (
            ifindex(&br),
            ifindex(&names::leg_host(s)),
            ifindex(&names::tap(q1))
        )
    );

    // Drift: a bridge deleted and dnsmasq killed by hand are repaired by the next converge.
    sys::link_del(None, &br).await.unwrap();
    sys::signal(pid.parse().unwrap(), libc::SIGKILL);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!ping(&mut a.sh, "10.33.1.1").await);
    apply(&net, &mut d, &instances).await;
    assert_ne!(dhcp_pid(), pid);
    assert_eq!(
        master(&names::tap(q1)).as_deref(),
        Some(br.as_str()),
        "tap plugged again"
    );
    assert!(ping(&mut a.sh, "10.33.1.12").await);
    assert!(
        a.sh.sh("udhcpc -i eth0 -n -q -t 3 -T 1 -s /tmp/udhcpc.script 2>&1; echo rc=$?")
            .await
            .contains("rc=0"),
        "DHCP answers again"
    );
    let got = outside
        .fetch(eip_addr, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(got.contains("OPEN22 vmb"), "{got}");

    // Delete everything: nothing of it is left.
    delete_vms(&host, &mut [&mut a, &mut b]).await;
    d.vpcs[0].deleted = true;
    apply(&net, &mut d, &[]).await;
    nothing_left(&host.state_dir, &guard.ids).await;
    d.vpcs.clear();
    assert!(net.converge(&d, &[]).await.is_empty());
    assert!(!host
        .state_dir
        .join(format!("network/vpcs/{v}.json"))
        .exists());
    drop(outside);
}

/// A subnet spanning two hosts: the other host is a namespace with its own VXLAN device
/// and bridge (as its agent would make them), its "instance" an address on that bridge.
/// It gets its lease from the router here over the tunnel and reaches the gateway.
#[tokio::test]
async fn vxlan_between_hosts() {
    let root = std::env::temp_dir().join(format!("stratus-net-{}", Uuid::new_v4().simple()));
    let state = root.join("host");
    let mut guard = Guard::new(&state);
    let net = Network::new(&state).unwrap();
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let host2 = OtherHost::new(tag, 99).await.unwrap();
    let (other, here, there) = (&host2.ns, &host2.here, &host2.there);
    let sh = |args: Vec<String>| async move {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        sys::run(a[0], &a[1..]).await
    };
    let v = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let (vpc_id, s, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    guard.ids.extend([vpc_id, s, p]);
    let mut far = port(p, "10.37.1.20", None, &[]);
    far.local = false;
    let mut sub = subnet(s, "10.37.1", vec![far.clone()]);
    sub.vni = 4343;
    sub.remote_vteps = vec![there.clone()];
    let mut d = DesiredNetwork {
        vpcs: vec![vpc(vpc_id, "10.37.0.0/16", vec![sub])],
        tunnel_ip: Some(here.clone()),
        ..DesiredNetwork::default()
    };
    let result = async {
        apply(&net, &mut d, &[]).await;
        // The other host's side of the subnet, as its agent makes it.
        for c in [
            format!("ip -n {other} link add vx0 type vxlan id 4343 local {there} dstport 4789 nolearning"),
            format!("ip netns exec {other} bridge fdb append 00:00:00:00:00:00 dev vx0 dst {here}"),
            format!("ip -n {other} link add br0 address {} type bridge", far.mac),
            format!("ip -n {other} link set vx0 master br0 up"),
            format!("ip -n {other} link set br0 up"),
        ] {
            sh(v(&c)).await?;
        }
        // udhcpc tells on stderr.
        let mut dhcp = v(&format!("ip netns exec {other} busybox sh -c"));
        dhcp.push("busybox udhcpc -i br0 -n -q -t 5 -T 1 -s /bin/true 2>&1".into());
        let lease = sh(dhcp).await.unwrap_or_else(|e| format!("{e:#}"));
        sh(v(&format!("ip -n {other} addr add 10.37.1.20/24 dev br0"))).await?;
        let ping = sh(v(&format!("ip netns exec {other} busybox ping -c 2 -W 2 10.37.1.1"))).await?;
        anyhow::Ok((lease, ping))
    }
    .await;
    let (lease, ping) = result.unwrap();
    assert!(
        lease.contains("10.37.1.20"),
        "no lease over the tunnel: {lease}"
    );
    assert!(ping.contains(" 0% packet loss"), "{ping}");
    d.vpcs[0].deleted = true;
    apply(&net, &mut d, &[]).await;
    nothing_left(&state, &[vpc_id, s, p]).await;
    drop(guard);
    let _ = std::fs::remove_dir_all(root);
}

/// A peering whose other router runs on another host: a point-to-point VXLAN link from the
/// router here to that host (a namespace with its own underlay address, VXLAN device and
/// the far VPC's address, as its agent would make them). An "instance" of the VPC here
/// (a namespace on its port's tap) and the far side reach each other; the link follows the
/// far host's address when it changes and goes with the peering.
#[tokio::test]
async fn peering_between_hosts() {
    let root = std::env::temp_dir().join(format!("stratus-net-{}", Uuid::new_v4().simple()));
    let state = root.join("host");
    let mut guard = Guard::new(&state);
    let net = Network::new(&state).unwrap();
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let inst = format!("stest-i{tag}");
    let host2 = OtherHost::new(tag, 98).await.unwrap();
    let (other, here, there) = (&host2.ns, host2.here.clone(), host2.there.clone());
    let sh = |c: String| async move { run_line(&c).await };
    let (vpc_id, s, p, g, far_vpc) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    guard.ids.extend([vpc_id, s, p]);
    let rules = vec![
        rule(Direction::Egress, Protocol::Any, None),
        from_cidr(
            rule(Direction::Ingress, Protocol::Icmp, None),
            "10.42.0.0/16",
        ),
    ];
    let peering = Uuid::new_v4();
    let mut d = DesiredNetwork {
        vpcs: vec![vpc(
            vpc_id,
            "10.41.0.0/16",
            vec![subnet(s, "10.41.1", vec![port(p, "10.41.1.5", None, &[g])])],
        )],
        security_groups: vec![group(g, rules, &["10.41.1.5"])],
        peerings: vec![DesiredPeering {
            id: peering,
            vpc_a: vpc_id,
            vpc_b: far_vpc,
            cidrs_a: vec!["10.41.1.0/24".into()],
            cidrs_b: vec!["10.42.1.0/24".into()],
            link_cidr: "169.254.41.0/30".into(),
            remote: Some(PeeringRemote {
                vtep: there.clone(),
                vni: 8_400_001,
            }),
        }],
        tunnel_ip: Some(here.clone()),
        ..DesiredNetwork::default()
    };
    let router = names::netns(vpc_id);
    let link = names::peering(peering);
    let result = async {
        // The far router's end of the link.
        for c in [
            format!("ip -n {other} link add vxp type vxlan id 8400001 local {there} remote {here} dstport 4789 nolearning"),
            format!("ip -n {other} addr add 169.254.41.2/30 dev vxp"),
            format!("ip -n {other} link set vxp mtu 1450 up"),
            format!("ip -n {other} addr add 10.42.1.5/32 dev lo"),
            format!("ip -n {other} link set lo up"),
            format!("ip -n {other} route add 10.41.1.0/24 via 169.254.41.1 dev vxp"),
        ] {
            sh(c).await?;
        }
        apply(&net, &mut d, &[]).await;
        plug(
            &inst,
            &names::tap(p),
            Some(&names::bridge(s)),
            Some(&mac(p)),
            "10.41.1.5/24",
            Some("10.41.1.1"),
        )
        .await?;
        let l = sys::links(Some(&router)).await?.remove(&link);
        let out = sh(format!("ip netns exec {inst} busybox ping -c 2 -W 2 10.42.1.5")).await?;
        let back = sh(format!(
            "ip netns exec {other} busybox ping -c 2 -W 2 -I 10.42.1.5 10.41.1.5"
        ))
        .await?;
        // Converging again changes nothing; a new address of the far host remakes the link.
        let ifindex = |ns: String| async move {
            sh(format!("ip -n {ns} -o link show {}", names::peering(peering)))
                .await
                .map(|o| o.split(':').next().unwrap_or_default().to_string())
        };
        let before = ifindex(router.clone()).await?;
        apply(&net, &mut d, &[]).await;
        let same = ifindex(router.clone()).await? == before;
        d.peerings[0].remote.as_mut().unwrap().vtep = "10.98.255.2".into();
        apply(&net, &mut d, &[]).await;
        let moved = sys::links(Some(&router)).await?.remove(&link);
        d.peerings.clear();
        apply(&net, &mut d, &[]).await;
        let gone = !sys::links(Some(&router)).await?.contains_key(&link);
        anyhow::Ok((l, out, back, same, moved, gone))
    }
    .await;
    let _ = sys::ip(None, &["netns", "del", &inst]).await;
    let (l, out, back, same, moved, gone) = result.unwrap();
    let l = l.expect("the peering link is in the router");
    assert_eq!(l.kind, "vxlan");
    assert_eq!(l.vxlan, Some((8_400_001, here.clone(), 4789)));
    assert_eq!(l.vxlan_remote.as_deref(), Some(there.as_str()));
    assert_eq!(l.mtu, 1450);
    assert!(out.contains(" 0% packet loss"), "to the far VPC: {out}");
    assert!(back.contains(" 0% packet loss"), "from the far VPC: {back}");
    assert!(same, "an unchanged peering keeps its link");
    assert_eq!(
        moved.and_then(|l| l.vxlan_remote).as_deref(),
        Some("10.98.255.2")
    );
    assert!(gone, "the link goes with the peering");
    d.vpcs[0].deleted = true;
    apply(&net, &mut d, &[]).await;
    nothing_left(&state, &[vpc_id, s, p]).await;
    drop(guard);
    let _ = std::fs::remove_dir_all(root);
}
