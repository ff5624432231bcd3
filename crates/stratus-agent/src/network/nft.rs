//! The nftables rulesets, generated whole: each is one file that replaces its table in one
//! transaction (`table X` / `delete table X` / `table X { … }`), so a change applies in
//! one step and nothing stale remains.
//!
//! - The router's `ip stratus` table (in its namespace): isolation (only subnet ↔ subnet,
//!   subnet ↔ peering, subnet → external and replies or DNAT'ed traffic back are
//!   forwarded), the network ACLs of each subnet leg (stateless, first match by priority,
//!   no match → allow), SNAT and the elastic IPs' 1:1 NAT.
//! - The host's security-group tables `inet stratus_<tag>` and `bridge stratus_<tag>`.
//!   This kernel has no `nf_conntrack_bridge`, so stateful filtering happens in the `inet`
//!   family, which sees bridged IPv4 through `br_netfilter` — but there `iifname` and
//!   `oifname` are the bridge, not its port. A port is therefore named by its bridge and
//!   fixed address (`bridge . ip` keys), which the bridge family makes trustworthy:
//!   anti-spoofing per tap (its MAC and IP only) and, towards a tap, only IPv4 addressed
//!   to its own address (or broadcast/multicast). Conntrack zones per bridge keep
//!   overlapping VPC ranges apart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use stratus_api::{AclAction, AclRule, Direction, Protocol, SecurityGroupRule};
use uuid::Uuid;

use super::addr::{prefix, Cidr};
use super::names;

fn ports(min: Option<i64>, max: Option<i64>) -> anyhow::Result<Option<String>> {
    let (lo, hi) = match (min, max) {
        (None, None) => return Ok(None),
        (Some(a), None) | (None, Some(a)) => (a, a),
        (Some(a), Some(b)) => (a, b),
    };
    anyhow::ensure!(
        (0..=65535).contains(&lo) && (0..=65535).contains(&hi) && lo <= hi,
        "bad port range {lo}-{hi}"
    );
    Ok(Some(if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }))
}

/// The protocol and destination-port part of a rule.
fn l4(protocol: Protocol, min: Option<i64>, max: Option<i64>) -> anyhow::Result<String> {
    let p = ports(min, max)?;
    Ok(match (protocol, p) {
        (Protocol::Any, None) => String::new(),
        (Protocol::Any, Some(p)) => format!("meta l4proto {{ tcp, udp }} th dport {p} "),
        (Protocol::Tcp, None) => "meta l4proto tcp ".into(),
        (Protocol::Tcp, Some(p)) => format!("tcp dport {p} "),
        (Protocol::Udp, None) => "meta l4proto udp ".into(),
        (Protocol::Udp, Some(p)) => format!("udp dport {p} "),
        (Protocol::Icmp, _) => "meta l4proto icmp ".into(),
    })
}

/// `ip saddr 10.0.0.0/8 ` (nothing for "anywhere").
fn peer(dir: &str, cidr: Option<&str>) -> anyhow::Result<String> {
    match cidr {
        None => Ok(String::new()),
        Some(c) => {
            let c = prefix(c)?;
            Ok(if c.len == 0 {
                String::new()
            } else {
                format!("ip {dir} {} ", c.net_string())
            })
        }
    }
}

fn replace_table(out: &mut String, family: &str, name: &str) {
    let _ = writeln!(out, "table {family} {name}\ndelete table {family} {name}");
}

// ------------------------------------------------------------------ router

/// One subnet leg of a router, as its rules see it.
pub struct RouterLeg<'a> {
    pub iface: String,
    pub cidr: Cidr,
    pub acl: &'a [AclRule],
}

/// The router's external side: SNAT address and elastic IPs (`address → fixed`).
pub struct RouterExternal {
    pub snat: Option<Ipv4Addr>,
    pub eips: Vec<(Ipv4Addr, Ipv4Addr)>,
}

fn acl_chain(
    out: &mut String,
    name: &str,
    rules: &[AclRule],
    dir: Direction,
) -> anyhow::Result<()> {
    let mut sorted: Vec<&AclRule> = rules.iter().filter(|r| r.direction == dir).collect();
    sorted.sort_by_key(|r| r.priority);
    let _ = writeln!(out, "  chain {name} {{");
    let side = if dir == Direction::Ingress {
        "saddr"
    } else {
        "daddr"
    };
    for r in sorted {
        let verdict = match r.action {
            // Allowed here, but the other subnet's ACL may still have a say.
            AclAction::Allow => "return",
            AclAction::Deny => "drop",
        };
        let _ = writeln!(
            out,
            "    {}{}{verdict}",
            peer(side, r.cidr.as_deref())?,
            l4(r.protocol, r.port_min, r.port_max)?
        );
    }
    let _ = writeln!(out, "  }}");
    Ok(())
}

pub fn router_ruleset(
    legs: &[RouterLeg<'_>],
    ext: Option<&RouterExternal>,
) -> anyhow::Result<String> {
    let t = names::ROUTER_TABLE;
    let e = names::EXT_ROUTER;
    let (sn, pr) = (names::LEG_ROUTER_PREFIX, names::PEERING_PREFIX);
    let mut out = String::new();
    replace_table(&mut out, "ip", t);
    let _ = writeln!(out, "table ip {t} {{");
    // Nothing from the external network reaches the router itself but replies and ICMP
    // (DHCP and metadata listen on the subnet side only).
    let _ = writeln!(
        out,
        "  chain input {{\n    type filter hook input priority filter; policy accept;\n    \
         iifname \"{e}\" ct state established,related accept\n    \
         iifname \"{e}\" meta l4proto icmp accept\n    iifname \"{e}\" drop\n  }}"
    );
    // A peering link across hosts is VXLAN (MTU 1450) while local subnets may carry 1500:
    // connections through it agree on a segment size that fits instead of relying on
    // fragmentation-needed messages making it back.
    let _ = writeln!(
        out,
        "  chain forward {{\n    type filter hook forward priority filter; policy drop;\n    \
         oifname \"{pr}*\" tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu"
    );
    let with_acl: Vec<&RouterLeg> = legs.iter().filter(|l| !l.acl.is_empty()).collect();
    if !with_acl.is_empty() {
        let map = |p: &str| {
            with_acl
                .iter()
                .map(|l| format!("\"{}\" : jump {p}{}", l.iface, l.iface))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "    iifname vmap {{ {} }}", map("ae"));
        let _ = writeln!(out, "    oifname vmap {{ {} }}", map("ai"));
    }
    let _ = writeln!(
        out,
        "    iifname \"{sn}*\" oifname \"{sn}*\" accept\n    \
         iifname \"{sn}*\" oifname \"{pr}*\" accept\n    \
         iifname \"{pr}*\" oifname \"{sn}*\" accept\n    \
         iifname \"{sn}*\" oifname \"{e}\" accept\n    \
         iifname \"{e}\" oifname \"{sn}*\" ct state established,related accept\n    \
         iifname \"{e}\" oifname \"{sn}*\" ct status dnat accept\n  }}"
    );
    for l in &with_acl {
        acl_chain(
            &mut out,
            &format!("ae{}", l.iface),
            l.acl,
            Direction::Egress,
        )?;
        acl_chain(
            &mut out,
            &format!("ai{}", l.iface),
            l.acl,
            Direction::Ingress,
        )?;
    }
    if let Some(x) = ext {
        let _ = writeln!(
            out,
            "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;"
        );
        if !x.eips.is_empty() {
            let m: Vec<String> = x.eips.iter().map(|(a, f)| format!("{a} : {f}")).collect();
            let _ = writeln!(
                out,
                "    iifname \"{e}\" dnat to ip daddr map {{ {} }}",
                m.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;"
        );
        if !x.eips.is_empty() {
            let m: Vec<String> = x.eips.iter().map(|(a, f)| format!("{f} : {a}")).collect();
            let _ = writeln!(
                out,
                "    oifname \"{e}\" snat to ip saddr map {{ {} }}",
                m.join(", ")
            );
        }
        if let (Some(s), false) = (x.snat, legs.is_empty()) {
            let nets: BTreeSet<String> = legs.iter().map(|l| l.cidr.net_string()).collect();
            let nets: Vec<String> = nets.into_iter().collect();
            let _ = writeln!(
                out,
                "    oifname \"{e}\" ip saddr {{ {} }} snat to {s}",
                nets.join(", ")
            );
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}");
    Ok(out)
}

// ------------------------------------------------------------------ security groups

/// A local port as the security-group tables see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SgPort {
    pub tap: String,
    pub bridge: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub subnet: Cidr,
    pub gateway: Ipv4Addr,
    pub groups: Vec<Uuid>,
}

/// A group's rules and members.
pub struct SgGroup<'a> {
    pub rules: &'a [SecurityGroupRule],
    pub members: &'a [String],
}

fn group_chain(
    out: &mut String,
    name: &str,
    rules: &[SecurityGroupRule],
    dir: Direction,
    groups: &BTreeMap<Uuid, SgGroup<'_>>,
) -> anyhow::Result<()> {
    let side = if dir == Direction::Ingress {
        "saddr"
    } else {
        "daddr"
    };
    let _ = writeln!(out, "  chain {name} {{");
    for r in rules.iter().filter(|r| r.direction == dir) {
        let mut m = peer(side, r.remote_cidr.as_deref())?;
        if let Some(g) = r.remote_group_id {
            match groups.get(&g) {
                Some(rg) if !rg.members.is_empty() => {
                    let _ = write!(m, "ip {side} @m{} ", names::short(g));
                }
                // A group without members (or unknown here) matches no peer.
                _ => continue,
            }
        }
        let _ = writeln!(
            out,
            "    {m}{}accept",
            l4(r.protocol, r.port_min, r.port_max)?
        );
    }
    let _ = writeln!(out, "  }}");
    Ok(())
}

/// A conntrack zone per bridge (1–65535, from its name), so two VPCs with the same range
/// never share connection state.
fn zone(bridge: &str) -> u16 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(bridge.as_bytes());
    (u16::from_be_bytes([d[0], d[1]]) % 65534) + 1
}

pub fn host_ruleset(
    tag: &str,
    ports: &[SgPort],
    groups: &BTreeMap<Uuid, SgGroup<'_>>,
) -> anyhow::Result<String> {
    let t = names::sg_table(tag);
    let mut out = String::new();
    replace_table(&mut out, "inet", &t);
    replace_table(&mut out, "bridge", &t);

    // ---- inet: stateful filtering
    let _ = writeln!(out, "table inet {t} {{");
    let used: BTreeSet<Uuid> = ports
        .iter()
        .flat_map(|p| p.groups.iter().copied())
        .collect();
    // Sets of the groups rules name as their remote.
    let remote: BTreeSet<Uuid> = used
        .iter()
        .filter_map(|g| groups.get(g))
        .flat_map(|g| g.rules.iter().filter_map(|r| r.remote_group_id))
        .collect();
    for g in &remote {
        let Some(grp) = groups.get(g) else { continue };
        if grp.members.is_empty() {
            continue;
        }
        let mut ips = BTreeSet::new();
        for m in grp.members {
            ips.insert(prefix(m)?.net_string());
        }
        let ips: Vec<String> = ips.into_iter().collect();
        let _ = writeln!(
            out,
            "  set m{} {{\n    type ipv4_addr; flags interval; auto-merge;\n    elements = {{ {} }}\n  }}",
            names::short(*g),
            ips.join(", ")
        );
    }
    let bridges: BTreeSet<&str> = ports.iter().map(|p| p.bridge.as_str()).collect();
    if !bridges.is_empty() {
        let m: Vec<String> = bridges
            .iter()
            .map(|b| format!("\"{b}\" : {}", zone(b)))
            .collect();
        let _ = writeln!(
            out,
            "  chain raw {{\n    type filter hook prerouting priority raw; policy accept;\n    \
             ct zone set iifname map {{ {} }}\n  }}",
            m.join(", ")
        );
    }
    let vmap = |chain: &str| {
        ports
            .iter()
            .map(|p| format!("\"{}\" . {} : jump {chain}{}", p.bridge, p.ip, p.tap))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // After conntrack (-200): egress from a port, keyed by the bridge and its source.
    let _ = writeln!(
        out,
        "  chain pre {{\n    type filter hook prerouting priority -150; policy accept;\n    \
         ct state established,related accept"
    );
    if !ports.is_empty() {
        let _ = writeln!(out, "    iifname . ip saddr vmap {{ {} }}", vmap("e"));
    }
    let _ = writeln!(
        out,
        "  }}\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    \
         ct state established,related accept"
    );
    if !ports.is_empty() {
        let _ = writeln!(out, "    oifname . ip daddr vmap {{ {} }}", vmap("i"));
    }
    let _ = writeln!(out, "  }}");
    for p in ports {
        let mut mine: Vec<Uuid> = p
            .groups
            .iter()
            .copied()
            .filter(|g| groups.contains_key(g))
            .collect();
        mine.sort();
        mine.dedup();
        let egress_rules = mine.iter().any(|g| {
            groups[g]
                .rules
                .iter()
                .any(|r| r.direction == Direction::Egress)
        });
        // Egress: boot traffic (DHCP, metadata, the gateway) always passes; with no egress
        // rules in its groups, everything does.
        let _ = writeln!(
            out,
            "  chain e{} {{\n    udp sport 68 udp dport 67 accept\n    \
             ip daddr 169.254.169.254 tcp dport 80 accept\n    ip daddr {} accept",
            p.tap, p.gateway
        );
        if egress_rules {
            for g in &mine {
                let _ = writeln!(out, "    jump ge{}", names::short(*g));
            }
            let _ = writeln!(out, "    drop");
        } else {
            let _ = writeln!(out, "    accept");
        }
        let _ = writeln!(out, "  }}");
        let _ = writeln!(
            out,
            "  chain i{} {{\n    udp sport 67 udp dport 68 accept",
            p.tap
        );
        for g in &mine {
            let _ = writeln!(out, "    jump gi{}", names::short(*g));
        }
        let _ = writeln!(out, "    drop\n  }}");
    }
    for g in &used {
        let Some(grp) = groups.get(g) else { continue };
        group_chain(
            &mut out,
            &format!("gi{}", names::short(*g)),
            grp.rules,
            Direction::Ingress,
            groups,
        )?;
        group_chain(
            &mut out,
            &format!("ge{}", names::short(*g)),
            grp.rules,
            Direction::Egress,
            groups,
        )?;
    }
    let _ = writeln!(out, "}}");

    // ---- bridge: anti-spoofing, and towards a tap only what is addressed to it
    let _ = writeln!(
        out,
        "table bridge {t} {{\n  chain pre {{\n    type filter hook prerouting priority -300; policy accept;"
    );
    if !ports.is_empty() {
        let m: Vec<String> = ports
            .iter()
            .map(|p| format!("\"{0}\" : jump s{0}", p.tap))
            .collect();
        let _ = writeln!(out, "    iifname vmap {{ {} }}", m.join(", "));
    }
    let _ = writeln!(
        out,
        "  }}\n  chain forward {{\n    type filter hook forward priority -300; policy accept;"
    );
    if !ports.is_empty() {
        let m: Vec<String> = ports
            .iter()
            .map(|p| format!("\"{0}\" : jump d{0}", p.tap))
            .collect();
        let _ = writeln!(out, "    oifname vmap {{ {} }}", m.join(", "));
    }
    let _ = writeln!(out, "  }}");
    for p in ports {
        let _ = writeln!(
            out,
            "  chain s{tap} {{\n    ether saddr != {mac} drop\n    \
             ether type arp arp saddr ether != {mac} drop\n    \
             ether type arp arp saddr ip != {{ {ip}, 0.0.0.0 }} drop\n    \
             ether type arp accept\n    \
             ether type ip ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept\n    \
             ether type ip ip saddr {ip} accept\n    drop\n  }}",
            tap = p.tap,
            mac = p.mac,
            ip = p.ip
        );
        let _ = writeln!(
            out,
            "  chain d{tap} {{\n    ether type ip ip daddr != {{ {ip}, 255.255.255.255, {bc}, 224.0.0.0/4 }} drop\n  }}",
            tap = p.tap,
            ip = p.ip,
            bc = p.subnet.broadcast()
        );
    }
    let _ = writeln!(out, "}}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        dir: Direction,
        proto: Protocol,
        port: Option<i64>,
        cidr: Option<&str>,
        group: Option<Uuid>,
    ) -> SecurityGroupRule {
        SecurityGroupRule {
            id: Uuid::new_v4(),
            direction: dir,
            protocol: proto,
            port_min: port,
            port_max: port,
            remote_cidr: cidr.map(str::to_string),
            remote_group_id: group,
            description: String::new(),
        }
    }

    pub(crate) fn sample_host() -> String {
        let g = Uuid::parse_str("aaaaaaaaaa0000000000000000000001").unwrap();
        let rules = vec![
            rule(
                Direction::Ingress,
                Protocol::Tcp,
                Some(22),
                Some("10.0.0.0/24"),
                None,
            ),
            rule(Direction::Ingress, Protocol::Any, None, None, Some(g)),
            rule(
                Direction::Egress,
                Protocol::Udp,
                Some(53),
                Some("0.0.0.0/0"),
                None,
            ),
        ];
        let members = vec!["10.0.1.5".to_string(), "10.0.1.6".to_string()];
        let mut groups = BTreeMap::new();
        groups.insert(
            g,
            SgGroup {
                rules: &rules,
                members: &members,
            },
        );
        let port = SgPort {
            tap: "stt0123456789".into(),
            bridge: "stb0123456789".into(),
            mac: "fa:16:3e:00:00:01".into(),
            ip: "10.0.1.5".parse().unwrap(),
            subnet: Cidr::parse("10.0.1.0/24").unwrap(),
            gateway: "10.0.1.1".parse().unwrap(),
            groups: vec![g],
        };
        host_ruleset("abcd1234", &[port], &groups).unwrap()
    }

    #[test]
    fn host_ruleset_shape() {
        let r = sample_host();
        assert!(
            r.contains("ip saddr 10.0.0.0/24 tcp dport 22 accept"),
            "{r}"
        );
        assert!(r.contains("ip saddr @maaaaaaaaaa accept"), "{r}");
        assert!(r.contains("udp dport 53 accept"), "{r}");
        assert!(
            r.contains("\"stb0123456789\" . 10.0.1.5 : jump istt0123456789"),
            "{r}"
        );
        assert!(r.contains("jump geaaaaaaaaaa\n    drop"), "{r}");
        assert!(r.contains("ether saddr != fa:16:3e:00:00:01 drop"), "{r}");
    }

    fn sample_acl() -> Vec<AclRule> {
        vec![
            AclRule {
                priority: 20,
                action: AclAction::Allow,
                direction: Direction::Ingress,
                protocol: Protocol::Any,
                cidr: None,
                port_min: None,
                port_max: None,
                description: String::new(),
            },
            AclRule {
                priority: 10,
                action: AclAction::Deny,
                direction: Direction::Ingress,
                protocol: Protocol::Tcp,
                cidr: Some("192.0.2.0/24".into()),
                port_min: Some(22),
                port_max: Some(25),
                description: String::new(),
            },
        ]
    }

    fn sample_router(acl: &[AclRule]) -> anyhow::Result<String> {
        let legs = [RouterLeg {
            iface: "sn0123456789".into(),
            cidr: Cidr::parse("10.0.1.1/24").unwrap(),
            acl,
        }];
        let ext = RouterExternal {
            snat: Some("203.0.113.2".parse().unwrap()),
            eips: vec![("203.0.113.10".parse().unwrap(), "10.0.1.5".parse().unwrap())],
        };
        router_ruleset(&legs, Some(&ext))
    }

    #[test]
    fn acl_order_and_ports() {
        let acl = sample_acl();
        let legs = [RouterLeg {
            iface: "sn0123456789".into(),
            cidr: Cidr::parse("10.0.1.1/24").unwrap(),
            acl: &acl,
        }];
        let ext = RouterExternal {
            snat: Some("203.0.113.2".parse().unwrap()),
            eips: vec![("203.0.113.10".parse().unwrap(), "10.0.1.5".parse().unwrap())],
        };
        let r = router_ruleset(&legs, Some(&ext)).unwrap();
        let deny = r
            .find("ip saddr 192.0.2.0/24 tcp dport 22-25 drop")
            .unwrap();
        let allow = r.find("    return").unwrap();
        assert!(deny < allow, "{r}");
        assert!(
            r.contains("dnat to ip daddr map { 203.0.113.10 : 10.0.1.5 }"),
            "{r}"
        );
        assert!(
            r.contains("snat to ip saddr map { 10.0.1.5 : 203.0.113.10 }"),
            "{r}"
        );
        assert!(
            r.contains("ip saddr { 10.0.1.0/24 } snat to 203.0.113.2"),
            "{r}"
        );
        let bad = [AclRule {
            port_min: Some(70000),
            ..acl[1].clone()
        }];
        let legs = [RouterLeg {
            acl: &bad,
            ..legs.into_iter().next().unwrap()
        }];
        assert!(router_ruleset(&legs, None).is_err());
    }

    /// `nft -c` accepts what is generated (needs nft; skipped where it is missing).
    #[tokio::test]
    async fn nft_accepts_the_rulesets() {
        if super::super::sys::run("nft", &["--version"]).await.is_err() {
            eprintln!("nft missing: not checked");
            return;
        }
        for text in [sample_host(), sample_router(&sample_acl()).unwrap()] {
            let path = std::env::temp_dir().join(format!("nft-{}.nft", Uuid::new_v4().simple()));
            // `-c` checks without applying; the delete of a missing table is fine there.
            std::fs::write(&path, &text).unwrap();
            let r = super::super::sys::run("nft", &["-c", "-f", path.to_str().unwrap()]).await;
            std::fs::remove_file(&path).unwrap();
            r.unwrap();
        }
    }
}
