//! `stratus vpc|subnet|port|secgroup|acl|eip|peering|external-network`: the networking
//! commands.

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use stratus_api::*;
use uuid::Uuid;

use crate::cli::{list_pages, opt, Out, Paging};
use crate::client::Client;

const VPC: &[&str] = &["id", "name", "cidr", "status", "snat_ip", "project_id"];
const SUBNET: &[&str] = &[
    "id",
    "name",
    "cidr",
    "gateway_ip",
    "dhcp_enabled",
    "ports_used",
    "addresses_total",
    "acl_id",
];
const PORT: &[&str] = &[
    "id",
    "name",
    "ip",
    "mac",
    "subnet_id",
    "instance_id",
    "elastic_ip",
];
const GROUP: &[&str] = &["id", "name", "default", "project_id"];
const RULE: &[&str] = &[
    "id",
    "direction",
    "protocol",
    "port_min",
    "port_max",
    "remote_cidr",
    "remote_group_id",
];
const ACL: &[&str] = &["id", "name", "vpc_id", "subnet_ids"];
const ACL_RULE: &[&str] = &[
    "priority",
    "action",
    "direction",
    "protocol",
    "cidr",
    "port_min",
    "port_max",
];
const EIP: &[&str] = &[
    "id",
    "address",
    "fixed_ip",
    "instance_id",
    "port_id",
    "project_id",
];
const PEERING: &[&str] = &[
    "id",
    "name",
    "status",
    "requester_vpc_id",
    "accepter_vpc_id",
];
const EXTERNAL: &[&str] = &[
    "id",
    "name",
    "availability_zone",
    "cidr",
    "gateway_ip",
    "pool_start",
    "pool_end",
    "used",
    "total",
    "bridge",
];

#[derive(Debug, Subcommand)]
pub enum VpcCmd {
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Create a VPC; --snat gives it one shared public address for outbound traffic.
    Create {
        #[arg(long)]
        project: Uuid,
        #[arg(long)]
        name: String,
        /// Private range, e.g. 10.0.0.0/16.
        #[arg(long)]
        cidr: String,
        #[arg(long)]
        snat: bool,
        #[arg(long)]
        az: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    Show {
        id: Uuid,
    },
    /// Rename, describe, or turn SNAT on or off.
    Update {
        id: Uuid,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        snat: Option<bool>,
    },
    Delete {
        id: Uuid,
    },
    /// The VPC's graph: router, subnets, ports, instances, elastic IPs, peers.
    Topology {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubnetCmd {
    List {
        #[arg(long)]
        vpc: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    Create {
        #[arg(long)]
        vpc: Uuid,
        #[arg(long)]
        name: String,
        #[arg(long)]
        cidr: String,
        #[arg(long)]
        gateway: Option<String>,
        #[arg(long)]
        no_dhcp: bool,
        /// DNS server handed out by DHCP (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// Allocation pool START-END (repeatable; default: all but the gateway).
        #[arg(long = "pool")]
        pools: Vec<String>,
    },
    Show {
        id: Uuid,
    },
    Update {
        id: Uuid,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "dns")]
        dns: Vec<String>,
        #[arg(long)]
        dhcp: Option<bool>,
        /// Network ACL to associate (`none` to remove it).
        #[arg(long)]
        acl: Option<String>,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum PortCmd {
    List {
        #[arg(long)]
        subnet: Option<Uuid>,
        #[arg(long)]
        server: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    Create {
        #[arg(long)]
        subnet: Uuid,
        #[arg(long)]
        ip: Option<String>,
        #[arg(long, default_value = "")]
        name: String,
        /// Security group (repeatable; default: the project's default group).
        #[arg(long = "secgroup")]
        groups: Vec<Uuid>,
    },
    Show {
        id: Uuid,
    },
    /// Replace the port's security groups (applied to the running instance at once).
    SetGroups {
        id: Uuid,
        #[arg(long = "secgroup", required = true)]
        groups: Vec<Uuid>,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProtocolArg {
    Any,
    Tcp,
    Udp,
    Icmp,
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Direction {
        match d {
            DirectionArg::Ingress => Direction::Ingress,
            DirectionArg::Egress => Direction::Egress,
        }
    }
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Protocol {
        match p {
            ProtocolArg::Any => Protocol::Any,
            ProtocolArg::Tcp => Protocol::Tcp,
            ProtocolArg::Udp => Protocol::Udp,
            ProtocolArg::Icmp => Protocol::Icmp,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SecgroupCmd {
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    Create {
        #[arg(long)]
        project: Uuid,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// The group and its rules.
    Show {
        id: Uuid,
    },
    Delete {
        id: Uuid,
    },
    /// Allow traffic: `--direction ingress --protocol tcp --port 22 --remote-cidr 10.0.0.0/8`.
    RuleAdd {
        id: Uuid,
        #[arg(long, value_enum, default_value = "ingress")]
        direction: DirectionArg,
        #[arg(long, value_enum, default_value = "any")]
        protocol: ProtocolArg,
        /// A port, or a range FROM-TO.
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        remote_cidr: Option<String>,
        #[arg(long)]
        remote_group: Option<Uuid>,
        #[arg(long, default_value = "")]
        description: String,
    },
    RuleDelete {
        id: Uuid,
        rule: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum AclCmd {
    List {
        #[arg(long)]
        vpc: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// A network ACL of a VPC; rules as JSON (`[{"priority":10,"action":"deny",…}]`).
    Create {
        #[arg(long)]
        vpc: Uuid,
        #[arg(long)]
        name: String,
        #[arg(long)]
        rules: Option<String>,
    },
    Show {
        id: Uuid,
    },
    /// Replace the rules (JSON).
    SetRules {
        id: Uuid,
        #[arg(long)]
        rules: String,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum EipCmd {
    List {
        #[arg(long)]
        project: Option<Uuid>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Allocate an elastic IP from the zone's public pool.
    Create {
        #[arg(long)]
        project: Uuid,
        #[arg(long, default_value = "")]
        description: String,
    },
    Show {
        id: Uuid,
    },
    /// Bind to an instance (its first NIC) or a port; re-binding moves the address.
    Bind {
        id: Uuid,
        #[arg(long, conflicts_with = "port")]
        server: Option<Uuid>,
        #[arg(long)]
        port: Option<Uuid>,
    },
    Unbind {
        id: Uuid,
    },
    /// Release an unbound elastic IP.
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum PeeringCmd {
    List,
    /// Ask to peer two VPCs (the other side accepts unless you may change both).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        vpc: Uuid,
        #[arg(long)]
        peer_vpc: Uuid,
    },
    Show {
        id: Uuid,
    },
    Accept {
        id: Uuid,
    },
    Reject {
        id: Uuid,
    },
    Delete {
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExternalNetworkCmd {
    List,
    /// Define a zone's external network and its public pool (operators).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        cidr: String,
        #[arg(long)]
        gateway: String,
        /// START-END of the addresses handed out for SNAT and elastic IPs.
        #[arg(long)]
        pool: String,
        /// Host bridge the routers' uplinks go on (default br-ext).
        #[arg(long)]
        bridge: Option<String>,
        #[arg(long)]
        az: Option<String>,
    },
    Delete {
        id: Uuid,
    },
}

fn range(field: &str, s: &str) -> anyhow::Result<(String, String)> {
    s.split_once('-')
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .ok_or_else(|| anyhow::anyhow!("--{field}: give START-END"))
}

fn ports_of(p: &Option<String>) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let Some(p) = p else {
        return Ok((None, None));
    };
    let num = |v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| anyhow::anyhow!("--port: {v:?} is not a port number"))
    };
    match p.split_once('-') {
        Some((a, b)) => Ok((Some(num(a)?), Some(num(b)?))),
        None => Ok((Some(num(p)?), None)),
    }
}

fn acl_rules(text: &str) -> anyhow::Result<Vec<AclRule>> {
    serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("--rules: not a JSON list of rules: {e}"))
}

/// GET a list (paged when `paging`), or a single object, and print it.
async fn show(c: &Client, out: &Out, path: &str, cols: &[&str]) -> anyhow::Result<()> {
    out.value(&c.get::<Value>(path, &[]).await?, cols);
    Ok(())
}

async fn delete(c: &Client, out: &Out, what: &str, path: String) -> anyhow::Result<()> {
    c.delete(&path).await?;
    out.done(&format!("Deleted {what}."));
    Ok(())
}

pub(crate) async fn vpc(c: &Client, out: &Out, cmd: VpcCmd) -> anyhow::Result<()> {
    match cmd {
        VpcCmd::List { project, paging } => out.value(
            &list_pages(c, "/v1/vpcs", opt("project_id", project), &paging).await?,
            VPC,
        ),
        VpcCmd::Create {
            project,
            name,
            cidr,
            snat,
            az,
            description,
        } => out.value(
            &c.post::<Value>(
                "/v1/vpcs",
                &VpcCreate {
                    project_id: project,
                    name,
                    description,
                    cidr,
                    availability_zone: az,
                    snat,
                },
            )
            .await?,
            VPC,
        ),
        VpcCmd::Show { id } => show(c, out, &format!("/v1/vpcs/{id}"), VPC).await?,
        VpcCmd::Update {
            id,
            name,
            description,
            snat,
        } => out.value(
            &c.patch::<Value>(
                &format!("/v1/vpcs/{id}"),
                &VpcUpdate {
                    name,
                    description,
                    snat,
                },
            )
            .await?,
            VPC,
        ),
        VpcCmd::Delete { id } => {
            delete(c, out, &format!("VPC {id}"), format!("/v1/vpcs/{id}")).await?
        }
        VpcCmd::Topology { id } => {
            let t: Topology = c.get(&format!("/v1/vpcs/{id}/topology"), &[]).await?;
            if out.format == crate::output::Format::Table {
                print!("{}", render_topology(&t));
            } else {
                out.value(&crate::cli::to_value(&t), &[]);
            }
        }
    }
    Ok(())
}

/// The topology as an indented tree under the router.
fn render_topology(t: &Topology) -> String {
    let node = |id: Uuid| t.nodes.iter().find(|n| n.id == id);
    let children = |id: Uuid| -> Vec<Uuid> {
        t.edges
            .iter()
            .filter(|e| e.from == id)
            .map(|e| e.to)
            .collect()
    };
    fn walk(
        out: &mut String,
        id: Uuid,
        depth: usize,
        node: &dyn Fn(Uuid) -> Option<TopologyNode>,
        children: &dyn Fn(Uuid) -> Vec<Uuid>,
    ) {
        if let Some(n) = node(id) {
            let label = if n.label.is_empty() {
                String::new()
            } else {
                format!("  {}", n.label)
            };
            out.push_str(&format!(
                "{}{} {}{}\n",
                "  ".repeat(depth),
                n.kind,
                n.name,
                label
            ));
        }
        if depth < 6 {
            for c in children(id) {
                walk(out, c, depth + 1, node, children);
            }
        }
    }
    let mut out = String::new();
    walk(&mut out, t.vpc_id, 0, &|id| node(id).cloned(), &children);
    // Elastic IPs point at ports: list them apart.
    for n in t.nodes.iter().filter(|n| n.kind == "elastic_ip") {
        out.push_str(&format!("elastic_ip {} -> {}\n", n.name, n.label));
    }
    out
}

pub(crate) async fn subnet(c: &Client, out: &Out, cmd: SubnetCmd) -> anyhow::Result<()> {
    match cmd {
        SubnetCmd::List { vpc, paging } => out.value(
            &list_pages(c, "/v1/subnets", opt("vpc_id", vpc), &paging).await?,
            SUBNET,
        ),
        SubnetCmd::Create {
            vpc,
            name,
            cidr,
            gateway,
            no_dhcp,
            dns,
            pools,
        } => {
            let allocation_pools = pools
                .iter()
                .map(|p| range("pool", p).map(|(start, end)| AddressRange { start, end }))
                .collect::<anyhow::Result<Vec<_>>>()?;
            out.value(
                &c.post::<Value>(
                    "/v1/subnets",
                    &SubnetCreate {
                        vpc_id: vpc,
                        name,
                        description: String::new(),
                        cidr,
                        gateway_ip: gateway,
                        dhcp_enabled: !no_dhcp,
                        dns_servers: dns,
                        allocation_pools,
                    },
                )
                .await?,
                SUBNET,
            )
        }
        SubnetCmd::Show { id } => show(c, out, &format!("/v1/subnets/{id}"), SUBNET).await?,
        SubnetCmd::Update {
            id,
            name,
            dns,
            dhcp,
            acl,
        } => {
            let acl_id = match acl.as_deref() {
                None => None,
                Some("none") => Some(None),
                Some(a) => {
                    Some(Some(a.parse::<Uuid>().map_err(|_| {
                        anyhow::anyhow!("--acl: give an ACL id or `none`")
                    })?))
                }
            };
            out.value(
                &c.patch::<Value>(
                    &format!("/v1/subnets/{id}"),
                    &SubnetUpdate {
                        name,
                        description: None,
                        dns_servers: (!dns.is_empty()).then_some(dns),
                        dhcp_enabled: dhcp,
                        acl_id,
                    },
                )
                .await?,
                SUBNET,
            )
        }
        SubnetCmd::Delete { id } => {
            delete(c, out, &format!("subnet {id}"), format!("/v1/subnets/{id}")).await?
        }
    }
    Ok(())
}

pub(crate) async fn port(c: &Client, out: &Out, cmd: PortCmd) -> anyhow::Result<()> {
    match cmd {
        PortCmd::List {
            subnet,
            server,
            paging,
        } => {
            let mut q = opt("subnet_id", subnet);
            q.extend(opt("instance_id", server));
            out.value(&list_pages(c, "/v1/ports", q, &paging).await?, PORT)
        }
        PortCmd::Create {
            subnet,
            ip,
            name,
            groups,
        } => out.value(
            &c.post::<Value>(
                "/v1/ports",
                &PortCreate {
                    subnet_id: subnet,
                    name,
                    ip,
                    security_group_ids: (!groups.is_empty()).then_some(groups),
                },
            )
            .await?,
            PORT,
        ),
        PortCmd::Show { id } => show(c, out, &format!("/v1/ports/{id}"), PORT).await?,
        PortCmd::SetGroups { id, groups } => out.value(
            &c.patch::<Value>(
                &format!("/v1/ports/{id}"),
                &PortUpdate {
                    name: None,
                    security_group_ids: Some(groups),
                },
            )
            .await?,
            PORT,
        ),
        PortCmd::Delete { id } => {
            delete(c, out, &format!("port {id}"), format!("/v1/ports/{id}")).await?
        }
    }
    Ok(())
}

pub(crate) async fn secgroup(c: &Client, out: &Out, cmd: SecgroupCmd) -> anyhow::Result<()> {
    match cmd {
        SecgroupCmd::List { project, paging } => out.value(
            &list_pages(
                c,
                "/v1/security-groups",
                opt("project_id", project),
                &paging,
            )
            .await?,
            GROUP,
        ),
        SecgroupCmd::Create {
            project,
            name,
            description,
        } => out.value(
            &c.post::<Value>(
                "/v1/security-groups",
                &SecurityGroupCreate {
                    project_id: project,
                    name,
                    description,
                },
            )
            .await?,
            GROUP,
        ),
        SecgroupCmd::Show { id } => {
            let g: Value = c.get(&format!("/v1/security-groups/{id}"), &[]).await?;
            if out.format == crate::output::Format::Table {
                out.value(&g, GROUP);
                println!("\nRules:");
                out.value(&g["rules"], RULE);
            } else {
                out.value(&g, &[]);
            }
        }
        SecgroupCmd::Delete { id } => {
            delete(
                c,
                out,
                &format!("security group {id}"),
                format!("/v1/security-groups/{id}"),
            )
            .await?
        }
        SecgroupCmd::RuleAdd {
            id,
            direction,
            protocol,
            port,
            remote_cidr,
            remote_group,
            description,
        } => {
            let (port_min, port_max) = ports_of(&port)?;
            let g: Value = c
                .post(
                    &format!("/v1/security-groups/{id}/rules"),
                    &SecurityGroupRuleCreate {
                        direction: direction.into(),
                        protocol: protocol.into(),
                        port_min,
                        port_max,
                        remote_cidr,
                        remote_group_id: remote_group,
                        description,
                    },
                )
                .await?;
            out.value(&g["rules"], RULE)
        }
        SecgroupCmd::RuleDelete { id, rule } => {
            delete(
                c,
                out,
                &format!("rule {rule}"),
                format!("/v1/security-groups/{id}/rules/{rule}"),
            )
            .await?
        }
    }
    Ok(())
}

pub(crate) async fn acl(c: &Client, out: &Out, cmd: AclCmd) -> anyhow::Result<()> {
    match cmd {
        AclCmd::List { vpc, paging } => out.value(
            &list_pages(c, "/v1/network-acls", opt("vpc_id", vpc), &paging).await?,
            ACL,
        ),
        AclCmd::Create { vpc, name, rules } => out.value(
            &c.post::<Value>(
                "/v1/network-acls",
                &NetworkAclCreate {
                    vpc_id: vpc,
                    name,
                    description: String::new(),
                    rules: rules
                        .as_deref()
                        .map(acl_rules)
                        .transpose()?
                        .unwrap_or_default(),
                },
            )
            .await?,
            ACL,
        ),
        AclCmd::Show { id } => {
            let a: Value = c.get(&format!("/v1/network-acls/{id}"), &[]).await?;
            if out.format == crate::output::Format::Table {
                out.value(&a, ACL);
                println!("\nRules (first match wins; no match: allow):");
                out.value(&a["rules"], ACL_RULE);
            } else {
                out.value(&a, &[]);
            }
        }
        AclCmd::SetRules { id, rules } => out.value(
            &c.patch::<Value>(
                &format!("/v1/network-acls/{id}"),
                &NetworkAclUpdate {
                    rules: Some(acl_rules(&rules)?),
                    ..Default::default()
                },
            )
            .await?["rules"],
            ACL_RULE,
        ),
        AclCmd::Delete { id } => {
            delete(
                c,
                out,
                &format!("network ACL {id}"),
                format!("/v1/network-acls/{id}"),
            )
            .await?
        }
    }
    Ok(())
}

pub(crate) async fn eip(c: &Client, out: &Out, cmd: EipCmd) -> anyhow::Result<()> {
    match cmd {
        EipCmd::List { project, paging } => out.value(
            &list_pages(c, "/v1/elastic-ips", opt("project_id", project), &paging).await?,
            EIP,
        ),
        EipCmd::Create {
            project,
            description,
        } => out.value(
            &c.post::<Value>(
                "/v1/elastic-ips",
                &ElasticIpCreate {
                    project_id: project,
                    external_network_id: None,
                    description,
                },
            )
            .await?,
            EIP,
        ),
        EipCmd::Show { id } => show(c, out, &format!("/v1/elastic-ips/{id}"), EIP).await?,
        EipCmd::Bind { id, server, port } => {
            if server.is_none() && port.is_none() {
                anyhow::bail!("give --server or --port (or use `eip unbind`)");
            }
            out.value(
                &c.put::<Value>(
                    &format!("/v1/elastic-ips/{id}/binding"),
                    &ElasticIpBind {
                        port_id: port,
                        instance_id: server,
                    },
                )
                .await?,
                EIP,
            )
        }
        EipCmd::Unbind { id } => out.value(
            &c.put::<Value>(
                &format!("/v1/elastic-ips/{id}/binding"),
                &ElasticIpBind::default(),
            )
            .await?,
            EIP,
        ),
        EipCmd::Delete { id } => {
            delete(
                c,
                out,
                &format!("elastic IP {id}"),
                format!("/v1/elastic-ips/{id}"),
            )
            .await?
        }
    }
    Ok(())
}

pub(crate) async fn peering(c: &Client, out: &Out, cmd: PeeringCmd) -> anyhow::Result<()> {
    match cmd {
        PeeringCmd::List => show(c, out, "/v1/vpc-peerings", PEERING).await?,
        PeeringCmd::Create {
            name,
            vpc,
            peer_vpc,
        } => out.value(
            &c.post::<Value>(
                "/v1/vpc-peerings",
                &VpcPeeringCreate {
                    name,
                    requester_vpc_id: vpc,
                    accepter_vpc_id: peer_vpc,
                },
            )
            .await?,
            PEERING,
        ),
        PeeringCmd::Show { id } => show(c, out, &format!("/v1/vpc-peerings/{id}"), PEERING).await?,
        PeeringCmd::Accept { id } => out.value(
            &c.post::<Value>(&format!("/v1/vpc-peerings/{id}/accept"), &json!({}))
                .await?,
            PEERING,
        ),
        PeeringCmd::Reject { id } => out.value(
            &c.post::<Value>(&format!("/v1/vpc-peerings/{id}/reject"), &json!({}))
                .await?,
            PEERING,
        ),
        PeeringCmd::Delete { id } => {
            delete(
                c,
                out,
                &format!("peering {id}"),
                format!("/v1/vpc-peerings/{id}"),
            )
            .await?
        }
    }
    Ok(())
}

pub(crate) async fn external_network(
    c: &Client,
    out: &Out,
    cmd: ExternalNetworkCmd,
) -> anyhow::Result<()> {
    match cmd {
        ExternalNetworkCmd::List => show(c, out, "/v1/external-networks", EXTERNAL).await?,
        ExternalNetworkCmd::Create {
            name,
            cidr,
            gateway,
            pool,
            bridge,
            az,
        } => {
            let (pool_start, pool_end) = range("pool", &pool)?;
            out.value(
                &c.post::<Value>(
                    "/v1/external-networks",
                    &ExternalNetworkCreate {
                        name,
                        availability_zone: az,
                        cidr,
                        gateway_ip: gateway,
                        pool_start,
                        pool_end,
                        bridge,
                    },
                )
                .await?,
                EXTERNAL,
            )
        }
        ExternalNetworkCmd::Delete { id } => {
            delete(
                c,
                out,
                &format!("external network {id}"),
                format!("/v1/external-networks/{id}"),
            )
            .await?
        }
    }
    Ok(())
}

/// `--nic subnet=<id>[,ip=<addr>]` or `--nic port=<id>` of `server create`.
pub fn parse_nic(s: &str) -> anyhow::Result<NicRequest> {
    let mut nic = NicRequest {
        subnet_id: None,
        port_id: None,
        ip: None,
        security_group_ids: None,
    };
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--nic: give subnet=<id>[,ip=<addr>] or port=<id>"))?;
        let id = || {
            v.parse::<Uuid>()
                .map_err(|_| anyhow::anyhow!("--nic: {k}={v} is not an id"))
        };
        match k {
            "subnet" => nic.subnet_id = Some(id()?),
            "port" => nic.port_id = Some(id()?),
            "ip" => nic.ip = Some(v.to_string()),
            "secgroup" => nic
                .security_group_ids
                .get_or_insert_with(Vec::new)
                .push(id()?),
            other => anyhow::bail!("--nic: unknown key {other:?} (subnet, port, ip, secgroup)"),
        }
    }
    Ok(nic)
}
