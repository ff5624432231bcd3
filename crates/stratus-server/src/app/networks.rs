//! Networking (spec 5.2.3): VPCs and their routers, subnets and the address plan, ports,
//! security groups, network ACLs (the virtual firewall), elastic IPs and SNAT from the
//! external network, VPC peering, and the topology of a VPC.
//!
//! The control plane owns every address (spec 8.3.4.3 (5)); each host's agent builds the
//! namespaces, bridges, nftables rules and DHCP servers that make it real.

use chrono::Utc;
use stratus_api::{
    AclRule, Direction, ElasticIp, ElasticIpBind, ElasticIpCreate, ExternalNetwork,
    ExternalNetworkCreate, ListParams, NetworkAcl, NetworkAclCreate, NetworkAclUpdate,
    NetworkFilter, NicRequest, Page, PeeringStatus, Port, PortCreate, PortUpdate, Protocol,
    SecurityGroup, SecurityGroupCreate, SecurityGroupRule, SecurityGroupRuleCreate, Subnet,
    SubnetCreate, SubnetUpdate, Topology, TopologyEdge, TopologyNode, Vpc, VpcCreate, VpcPeering,
    VpcPeeringCreate, VpcUpdate,
};
use uuid::Uuid;

use super::ipam::{ip_text, parse_ip, Cidr};
use super::{require, require_global, require_seen, App};
use crate::authz::{Perm, Principal, Target};
use crate::error::{Error, Result};
use crate::store::{NewExternalNetwork, NewPort, NewSubnet, NewVpc, Paging, SubnetRow, VpcRow};
use crate::validate;

const SORTABLE: &[&str] = &["created_at", "name"];
/// Spec 5.3.2.1: ≥ 16 NICs per VM.
pub const MAX_NICS: usize = 16;

fn target(project: Uuid, chain: &[Uuid]) -> Target<'_> {
    Target::Project { id: project, chain }
}

fn empty<T>() -> Page<T> {
    Page {
        items: vec![],
        next: None,
    }
}

/// `item` (a `what` `id` of `project`/`vdc`) if the caller sees it; 404 otherwise.
async fn seen<T>(
    app: &App,
    p: &Principal,
    what: &str,
    id: Uuid,
    item: Option<T>,
    owner: impl Fn(&T) -> (Uuid, Uuid),
) -> Result<(T, Vec<Uuid>)> {
    let item = item.ok_or_else(|| Error::not_found(what, id))?;
    let (project, vdc) = owner(&item);
    let chain = app.store.vdc_chain(vdc).await?;
    if !p.can(Perm::ResourceRead, &target(project, &chain)) {
        return Err(Error::not_found(what, id));
    }
    Ok((item, chain))
}

/// `seen`, and the caller may change it (403 when they only see it).
async fn writable<T>(
    app: &App,
    p: &Principal,
    what: &str,
    id: Uuid,
    item: Option<T>,
    owner: impl Fn(&T) -> (Uuid, Uuid),
) -> Result<T> {
    let (item, chain) = seen(app, p, what, id, item, &owner).await?;
    require_seen(
        p,
        Perm::ResourceWrite,
        &target(owner(&item).0, &chain),
        what,
        id,
    )?;
    Ok(item)
}

pub(crate) async fn writable_project(app: &App, p: &Principal, id: Uuid) -> Result<(Uuid, Uuid)> {
    let (project, chain) = app
        .project_visible(p, id)
        .await
        .map_err(|_| Error::not_found("project", id))?;
    require(
        p,
        Perm::ResourceWrite,
        &target(project.id, &chain),
        "project",
        project.id,
    )?;
    Ok((project.id, project.vdc_id))
}

pub async fn vpc_visible(app: &App, p: &Principal, id: Uuid) -> Result<VpcRow> {
    let v = app.store.vpc_get(id).await?;
    Ok(
        seen(app, p, "VPC", id, v, |v| (v.api.project_id, v.api.vdc_id))
            .await?
            .0,
    )
}

pub async fn vpc_writable(app: &App, p: &Principal, id: Uuid) -> Result<VpcRow> {
    let v = app.store.vpc_get(id).await?;
    writable(app, p, "VPC", id, v, |v| (v.api.project_id, v.api.vdc_id)).await
}

pub async fn subnet_visible(app: &App, p: &Principal, id: Uuid) -> Result<SubnetRow> {
    let s = app.store.subnet_get(id).await?;
    Ok(seen(app, p, "subnet", id, s, |s| {
        (s.api.project_id, s.api.vdc_id)
    })
    .await?
    .0)
}

async fn subnet_writable(app: &App, p: &Principal, id: Uuid) -> Result<SubnetRow> {
    let s = app.store.subnet_get(id).await?;
    writable(app, p, "subnet", id, s, |s| {
        (s.api.project_id, s.api.vdc_id)
    })
    .await
}

// ---------------------------------------------------------------- external networks

pub async fn external_network_list(app: &App, _p: &Principal) -> Result<Vec<ExternalNetwork>> {
    app.store.external_network_list().await
}

pub async fn external_network_create(
    app: &App,
    p: &Principal,
    b: ExternalNetworkCreate,
) -> Result<ExternalNetwork> {
    require_global(p, Perm::HostWrite)?;
    validate::login_name("name", &b.name)?;
    let cidr = Cidr::parse("cidr", &b.cidr, 8..=30)?;
    let gw = parse_ip("gateway_ip", &b.gateway_ip)?;
    let (lo, hi) = cidr.hosts();
    if !(lo..=hi).contains(&gw) {
        return Err(Error::invalid(
            "gateway_ip",
            &format!("must be a host address of {cidr}"),
        ));
    }
    let start = parse_ip("pool_start", &b.pool_start)?;
    let end = parse_ip("pool_end", &b.pool_end)?;
    if !(lo..=hi).contains(&start) || !(lo..=hi).contains(&end) || start > end {
        return Err(Error::invalid(
            "pool_start",
            &format!("the pool must be a range of host addresses of {cidr}, start ≤ end"),
        ));
    }
    if (start..=end).contains(&gw) {
        return Err(Error::invalid(
            "pool_start",
            "the pool must not contain the gateway",
        ));
    }
    let bridge = b.bridge.unwrap_or_else(|| "br-ext".into());
    if bridge.is_empty()
        || bridge.len() > 15
        || !bridge
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(Error::invalid(
            "bridge",
            "must be a Linux interface name: 1–15 letters, digits, '-', '_', '.'",
        ));
    }
    let az = b
        .availability_zone
        .unwrap_or_else(|| app.config.local_agent.availability_zone.clone());
    validate::login_name("availability_zone", &az)?;
    if app
        .store
        .external_network_list()
        .await?
        .iter()
        .any(|e| e.availability_zone == az)
    {
        return Err(Error::conflict(format!(
            "availability zone {az} already has an external network"
        )));
    }
    app.store
        .external_network_create(&NewExternalNetwork {
            name: b.name,
            availability_zone: az,
            cidr: cidr.to_string(),
            gateway_ip: ip_text(gw),
            pool: (start, end),
            bridge,
        })
        .await
}

pub async fn external_network_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    require_global(p, Perm::HostWrite)?;
    app.store
        .external_network_get(id)
        .await?
        .ok_or_else(|| Error::not_found("external network", id))?;
    app.store.external_network_delete(id).await
}

/// The external network of a zone, as (id, pool), or a 400 naming `field`.
async fn zone_external(app: &App, az: &str, field: &str) -> Result<(Uuid, (u32, u32))> {
    let e = app
        .store
        .external_network_list()
        .await?
        .into_iter()
        .find(|e| e.availability_zone == az)
        .ok_or_else(|| {
            Error::invalid(
                field,
                &format!(
                    "availability zone {az} has no external network (an operator creates one)"
                ),
            )
        })?;
    Ok((
        e.id,
        (
            parse_ip("pool_start", &e.pool_start)?,
            parse_ip("pool_end", &e.pool_end)?,
        ),
    ))
}

// ---------------------------------------------------------------- VPCs

pub async fn vpc_create(app: &App, p: &Principal, b: VpcCreate) -> Result<Vpc> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    let cidr = Cidr::parse("cidr", &b.cidr, 8..=28)?;
    if !cidr.is_private() {
        return Err(Error::invalid(
            "cidr",
            "must be private address space (10/8, 172.16/12, 192.168/16 or 100.64/10)",
        ));
    }
    let (project, vdc) = writable_project(app, p, b.project_id).await?;
    let az = b
        .availability_zone
        .unwrap_or_else(|| app.config.local_agent.availability_zone.clone());
    validate::login_name("availability_zone", &az)?;
    let snat = if b.snat {
        Some(zone_external(app, &az, "snat").await?)
    } else {
        None
    };
    let router = app
        .store
        .router_host_pick(&az, project, app.config.compute.host_down_after_secs)
        .await?;
    let id = Uuid::new_v4();
    app.store
        .vpc_create(
            &NewVpc {
                id,
                project_id: project,
                vdc_id: vdc,
                name: b.name,
                description: b.description,
                cidr: cidr.to_string(),
                availability_zone: az,
                snat,
                created_by: p.name.clone(),
            },
            router,
        )
        .await?;
    notify(app, router);
    vpc_view(app, p, id).await
}

fn notify(app: &App, host: Option<Uuid>) {
    if let Some(h) = host {
        app.hub.notify(h);
    }
}

/// Wake every agent: a network change may concern several hosts (the store bumped their
/// generations; the wake-up only saves them the one-second re-check).
fn notify_all(app: &App) {
    app.hub.notify_all();
}

pub async fn vpc_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: NetworkFilter,
) -> Result<Page<Vpc>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(empty());
    }
    let (items, next) = app
        .store
        .vpc_list(&vis, f.project_id, q.name.as_deref(), &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn vpc_view(app: &App, p: &Principal, id: Uuid) -> Result<Vpc> {
    Ok(vpc_visible(app, p, id).await?.api)
}

pub async fn vpc_update(app: &App, p: &Principal, id: Uuid, b: VpcUpdate) -> Result<Vpc> {
    let v = vpc_writable(app, p, id).await?;
    if let Some(n) = &b.name {
        validate::name("name", n)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    app.store
        .name_description_update("vpcs", id, b.name.as_deref(), b.description.as_deref())
        .await?;
    if let Some(on) = b.snat {
        if on != v.api.snat_enabled {
            let to = if on {
                Some(zone_external(app, &v.api.availability_zone, "snat").await?)
            } else {
                None
            };
            app.store.vpc_snat(id, to).await?;
            notify_all(app);
        }
    }
    vpc_view(app, p, id).await
}

pub async fn vpc_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let v = vpc_writable(app, p, id).await?;
    app.store.vpc_delete(id).await?;
    notify(app, v.router_host_id);
    Ok(())
}

// ---------------------------------------------------------------- subnets

fn parse_dns(field: &str, servers: &[String]) -> Result<Vec<String>> {
    if servers.len() > 4 {
        return Err(Error::invalid(field, "at most 4 DNS servers"));
    }
    servers
        .iter()
        .map(|s| parse_ip(field, s).map(ip_text))
        .collect()
}

pub async fn subnet_create(app: &App, p: &Principal, b: SubnetCreate) -> Result<Subnet> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    let v = vpc_writable(app, p, b.vpc_id).await?;
    let vpc_cidr = Cidr::parse("cidr", &v.api.cidr, 0..=32)?;
    let cidr = Cidr::parse("cidr", &b.cidr, 16..=29)?;
    if !vpc_cidr.contains_cidr(&cidr) {
        return Err(Error::invalid(
            "cidr",
            &format!("{cidr} is not inside the VPC's range {vpc_cidr}"),
        ));
    }
    let (lo, hi) = cidr.hosts();
    let gateway = match &b.gateway_ip {
        Some(g) => parse_ip("gateway_ip", g)?,
        None => lo,
    };
    if !(lo..=hi).contains(&gateway) {
        return Err(Error::invalid(
            "gateway_ip",
            &format!("{} is not a host address of {cidr}", ip_text(gateway)),
        ));
    }
    let pools: Vec<(u32, u32)> = if b.allocation_pools.is_empty() {
        // Every host address but the gateway.
        [(lo, gateway.saturating_sub(1)), (gateway + 1, hi)]
            .into_iter()
            .filter(|(s, e)| s <= e && *s >= lo && *e <= hi)
            .collect()
    } else {
        let mut out = Vec::new();
        for r in &b.allocation_pools {
            let s = parse_ip("allocation_pools", &r.start)?;
            let e = parse_ip("allocation_pools", &r.end)?;
            if s > e || s < lo || e > hi {
                return Err(Error::invalid(
                    "allocation_pools",
                    &format!(
                        "{}–{} is not a range of host addresses of {cidr}",
                        r.start, r.end
                    ),
                ));
            }
            if (s..=e).contains(&gateway) {
                return Err(Error::invalid(
                    "allocation_pools",
                    &format!(
                        "{}–{} contains the gateway {}",
                        r.start,
                        r.end,
                        ip_text(gateway)
                    ),
                ));
            }
            if out.iter().any(|(a, z): &(u32, u32)| s <= *z && *a <= e) {
                return Err(Error::invalid("allocation_pools", "the ranges overlap"));
            }
            out.push((s, e));
        }
        out.sort();
        out
    };
    let dns = parse_dns("dns_servers", &b.dns_servers)?;
    let id = Uuid::new_v4();
    app.store
        .subnet_create(&NewSubnet {
            id,
            vpc: v.api.id,
            project_id: v.api.project_id,
            vdc_id: v.api.vdc_id,
            name: b.name,
            description: b.description,
            cidr,
            gateway,
            dhcp_enabled: b.dhcp_enabled,
            dns_servers: dns,
            pools,
        })
        .await?;
    notify_all(app);
    subnet_view(app, p, id).await
}

pub async fn subnet_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: NetworkFilter,
) -> Result<Page<Subnet>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(empty());
    }
    let (items, next) = app
        .store
        .subnet_list(&vis, f.project_id, f.vpc_id, q.name.as_deref(), &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn subnet_view(app: &App, p: &Principal, id: Uuid) -> Result<Subnet> {
    Ok(subnet_visible(app, p, id).await?.api)
}

pub async fn subnet_update(app: &App, p: &Principal, id: Uuid, b: SubnetUpdate) -> Result<Subnet> {
    let s = subnet_writable(app, p, id).await?;
    if let Some(n) = &b.name {
        validate::name("name", n)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    let dns = b
        .dns_servers
        .as_deref()
        .map(|d| parse_dns("dns_servers", d))
        .transpose()?;
    if let Some(Some(acl)) = b.acl_id {
        let a = app.store.acl_get(acl).await?;
        let (a, _) = seen(app, p, "network ACL", acl, a, |a| (a.project_id, a.vdc_id))
            .await
            .map_err(|_| Error::invalid("acl_id", &format!("no network ACL {acl}")))?;
        if a.vpc_id != s.api.vpc_id {
            return Err(Error::invalid(
                "acl_id",
                "the network ACL belongs to another VPC",
            ));
        }
    }
    app.store
        .name_description_update("subnets", id, b.name.as_deref(), b.description.as_deref())
        .await?;
    app.store
        .subnet_update(id, dns.as_deref(), b.dhcp_enabled, b.acl_id)
        .await?;
    notify_all(app);
    subnet_view(app, p, id).await
}

pub async fn subnet_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    subnet_writable(app, p, id).await?;
    app.store.subnet_delete(id).await?;
    notify_all(app);
    Ok(())
}

// ---------------------------------------------------------------- ports

/// Security groups a port of `project` may have (the project's own).
async fn check_groups(app: &App, project: Uuid, groups: &[Uuid]) -> Result<Vec<Uuid>> {
    if groups.len() > 5 {
        return Err(Error::invalid(
            "security_group_ids",
            "at most 5 groups per port",
        ));
    }
    let mut out = Vec::new();
    for g in groups {
        match app.store.security_group_get(*g).await? {
            Some(sg) if sg.project_id == project => {
                if !out.contains(g) {
                    out.push(*g);
                }
            }
            _ => {
                return Err(Error::invalid(
                    "security_group_ids",
                    &format!("no security group {g} in this project"),
                ))
            }
        }
    }
    Ok(out)
}

/// A fixed address asked for on `s`: a host address of the subnet, not its gateway.
fn check_fixed_ip(s: &SubnetRow, ip: &str) -> Result<u32> {
    let n = parse_ip("ip", ip)?;
    let c = Cidr::parse("cidr", &s.api.cidr, 0..=32)?;
    let (lo, hi) = c.hosts();
    if !(lo..=hi).contains(&n) || ip_text(n) == s.api.gateway_ip {
        return Err(Error::invalid(
            "ip",
            &format!(
                "{ip} is not a free host address of {} (the gateway is {})",
                c, s.api.gateway_ip
            ),
        ));
    }
    Ok(n)
}

pub async fn port_create(app: &App, p: &Principal, b: PortCreate) -> Result<Port> {
    let s = subnet_writable(app, p, b.subnet_id).await?;
    if b.name.len() > 255 {
        return Err(Error::invalid("name", "must be at most 255 characters"));
    }
    let ip =
        b.ip.as_deref()
            .map(|ip| check_fixed_ip(&s, ip))
            .transpose()?;
    let groups = match &b.security_group_ids {
        Some(g) => Some(check_groups(app, s.api.project_id, g).await?),
        None => None,
    };
    let id = Uuid::new_v4();
    app.store
        .port_create(&[NewPort {
            id,
            name: b.name,
            subnet_id: s.api.id,
            ip,
            security_groups: groups,
            instance: None,
        }])
        .await?;
    notify_all(app);
    port_view(app, p, id).await
}

pub async fn port_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: NetworkFilter,
) -> Result<Page<Port>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(empty());
    }
    let (items, next) = app.store.port_list(&vis, &f, &paging).await?;
    Ok(Page { items, next })
}

pub async fn port_view(app: &App, p: &Principal, id: Uuid) -> Result<Port> {
    let port = app.store.port_get(id).await?;
    Ok(seen(app, p, "port", id, port, |x| (x.project_id, x.vdc_id))
        .await?
        .0)
}

pub async fn port_update(app: &App, p: &Principal, id: Uuid, b: PortUpdate) -> Result<Port> {
    let port = app.store.port_get(id).await?;
    let port = writable(app, p, "port", id, port, |x| (x.project_id, x.vdc_id)).await?;
    if let Some(n) = &b.name {
        if n.len() > 255 {
            return Err(Error::invalid("name", "must be at most 255 characters"));
        }
        app.store.port_rename(id, n).await?;
    }
    if let Some(g) = &b.security_group_ids {
        let groups = check_groups(app, port.project_id, g).await?;
        app.store.port_groups_set(id, &groups).await?;
        notify_all(app);
    }
    port_view(app, p, id).await
}

pub async fn port_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let port = app.store.port_get(id).await?;
    writable(app, p, "port", id, port, |x| (x.project_id, x.vdc_id)).await?;
    app.store.port_delete(id).await?;
    notify_all(app);
    Ok(())
}

/// The NICs of new instances, checked: the subnets and ports are the project's, the
/// ports free, the addresses there. Returns, per instance, the ports to make or bind.
pub async fn instance_nics(
    app: &App,
    p: &Principal,
    project: Uuid,
    nics: &[NicRequest],
    count: i64,
) -> Result<Vec<NicPlan>> {
    if nics.len() > MAX_NICS {
        return Err(Error::invalid(
            "nics",
            &format!("at most {MAX_NICS} NICs per instance"),
        ));
    }
    let mut plan = Vec::with_capacity(nics.len());
    let mut needed: std::collections::HashMap<Uuid, i64> = std::collections::HashMap::new();
    for n in nics {
        match (n.subnet_id, n.port_id) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(Error::invalid(
                    "nics",
                    "give each NIC a subnet_id or a port_id",
                ))
            }
            (None, Some(port)) => {
                if count != 1 {
                    return Err(Error::invalid(
                        "count",
                        "must be 1 when a NIC is an existing port",
                    ));
                }
                let existing = app.store.port_get(port).await?;
                let (existing, _) =
                    seen(app, p, "port", port, existing, |x| (x.project_id, x.vdc_id))
                        .await
                        .map_err(|_| Error::invalid("nics", &format!("no port {port}")))?;
                if existing.project_id != project {
                    return Err(Error::invalid(
                        "nics",
                        &format!("port {port} is in another project"),
                    ));
                }
                if existing.instance_id.is_some() {
                    return Err(Error::invalid(
                        "nics",
                        &format!("port {port} is used by another instance"),
                    ));
                }
                plan.push(NicPlan::Existing(port));
            }
            (Some(subnet), None) => {
                let s = subnet_visible(app, p, subnet)
                    .await
                    .map_err(|_| Error::invalid("nics", &format!("no subnet {subnet}")))?;
                if s.api.project_id != project {
                    return Err(Error::invalid(
                        "nics",
                        &format!("subnet {subnet} is in another project"),
                    ));
                }
                if n.ip.is_some() && count != 1 {
                    return Err(Error::invalid(
                        "count",
                        "must be 1 when a NIC asks for a fixed address",
                    ));
                }
                let ip =
                    n.ip.as_deref()
                        .map(|ip| check_fixed_ip(&s, ip))
                        .transpose()?;
                let groups = match &n.security_group_ids {
                    Some(g) => Some(check_groups(app, project, g).await?),
                    None => None,
                };
                *needed.entry(subnet).or_default() += count;
                plan.push(NicPlan::New {
                    subnet,
                    ip,
                    groups,
                    free: s.api.addresses_total - s.api.ports_used,
                });
            }
        }
    }
    // Refuse up front what cannot fit: nothing is made for an instance that cannot get its
    // addresses.
    for item in &plan {
        if let NicPlan::New { subnet, free, .. } = item {
            let want = needed.get(subnet).copied().unwrap_or(0);
            if want > *free {
                return Err(Error::conflict(format!(
                    "subnet {subnet} has {free} free address(es); {want} are needed"
                )));
            }
        }
    }
    Ok(plan)
}

/// One NIC of a new instance: a new port on a subnet, or an existing port.
#[derive(Debug, Clone)]
pub enum NicPlan {
    New {
        subnet: Uuid,
        ip: Option<u32>,
        groups: Option<Vec<Uuid>>,
        free: i64,
    },
    Existing(Uuid),
}

/// Give a new instance its NICs (after its row exists).
pub async fn instance_nics_make(app: &App, instance: Uuid, plan: &[NicPlan]) -> Result<()> {
    let mut new = Vec::new();
    for (i, n) in plan.iter().enumerate() {
        if let NicPlan::New {
            subnet, ip, groups, ..
        } = n
        {
            new.push(NewPort {
                id: Uuid::new_v4(),
                name: String::new(),
                subnet_id: *subnet,
                ip: *ip,
                security_groups: groups.clone(),
                instance: Some((instance, i as i64)),
            });
        }
    }
    if !new.is_empty() {
        app.store.port_create(&new).await?;
    }
    for (i, n) in plan.iter().enumerate() {
        if let NicPlan::Existing(port) = n {
            app.store.port_bind(*port, instance, i as i64).await?;
        }
    }
    Ok(())
}

/// After placement: VPCs of the instance without a router get one on its host.
pub async fn instance_placed(app: &App, instance: Uuid, host: Uuid) -> Result<()> {
    let mut vpcs: Vec<Uuid> = app
        .store
        .ports_of_instance(instance)
        .await?
        .into_iter()
        .map(|p| p.vpc_id)
        .collect();
    vpcs.dedup();
    for v in vpcs {
        app.store.vpc_router_adopt(v, host).await?;
    }
    notify_all(app);
    Ok(())
}

// ---------------------------------------------------------------- security groups

pub async fn security_group_create(
    app: &App,
    p: &Principal,
    b: SecurityGroupCreate,
) -> Result<SecurityGroup> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    if b.name == "default" {
        return Err(Error::invalid(
            "name",
            "\"default\" is the project's default group",
        ));
    }
    let (project, vdc) = writable_project(app, p, b.project_id).await?;
    let id = Uuid::new_v4();
    app.store
        .security_group_create(id, project, vdc, &b.name, &b.description)
        .await?;
    security_group_view(app, p, id).await
}

pub async fn security_group_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: NetworkFilter,
) -> Result<Page<SecurityGroup>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(empty());
    }
    let (items, next) = app
        .store
        .security_group_list(&vis, f.project_id, q.name.as_deref(), &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn security_group_view(app: &App, p: &Principal, id: Uuid) -> Result<SecurityGroup> {
    let g = app.store.security_group_get(id).await?;
    Ok(seen(app, p, "security group", id, g, |g| {
        (g.project_id, g.vdc_id)
    })
    .await?
    .0)
}

async fn group_writable(app: &App, p: &Principal, id: Uuid) -> Result<SecurityGroup> {
    let g = app.store.security_group_get(id).await?;
    writable(app, p, "security group", id, g, |g| {
        (g.project_id, g.vdc_id)
    })
    .await
}

pub async fn security_group_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    group_writable(app, p, id).await?;
    app.store.security_group_delete(id).await
}

fn check_ports(protocol: Protocol, min: Option<i64>, max: Option<i64>) -> Result<()> {
    match (protocol, min, max) {
        (Protocol::Tcp | Protocol::Udp, None, None) => Ok(()),
        (Protocol::Tcp | Protocol::Udp, Some(a), Some(b))
            if (1..=65535).contains(&a) && (a..=65535).contains(&b) =>
        {
            Ok(())
        }
        (Protocol::Tcp | Protocol::Udp, Some(a), None) if (1..=65535).contains(&a) => Ok(()),
        (Protocol::Tcp | Protocol::Udp, _, _) => Err(Error::invalid(
            "port_min",
            "ports are 1–65535 with port_min ≤ port_max",
        )),
        (_, None, None) => Ok(()),
        _ => Err(Error::invalid(
            "port_min",
            "ports apply to tcp and udp only",
        )),
    }
}

pub async fn security_group_rule_create(
    app: &App,
    p: &Principal,
    group: Uuid,
    b: SecurityGroupRuleCreate,
) -> Result<SecurityGroup> {
    let g = group_writable(app, p, group).await?;
    check_ports(b.protocol, b.port_min, b.port_max)?;
    validate::description("description", &b.description)?;
    if b.remote_cidr.is_some() && b.remote_group_id.is_some() {
        return Err(Error::invalid(
            "remote_cidr",
            "give remote_cidr or remote_group_id, not both",
        ));
    }
    let remote_cidr = b
        .remote_cidr
        .as_deref()
        .map(|c| Cidr::parse("remote_cidr", c, 0..=32).map(|c| c.to_string()))
        .transpose()?;
    if let Some(r) = b.remote_group_id {
        match app.store.security_group_get(r).await? {
            Some(rg) if rg.project_id == g.project_id => {}
            _ => {
                return Err(Error::invalid(
                    "remote_group_id",
                    &format!("no security group {r} in this project"),
                ))
            }
        }
    }
    if g.rules.len() >= 1000 {
        return Err(Error::conflict(format!(
            "security group {group} has 1000 rules, the most a group may have"
        )));
    }
    let rule = SecurityGroupRule {
        id: Uuid::new_v4(),
        direction: b.direction,
        protocol: b.protocol,
        port_min: b.port_min,
        port_max: b.port_max.or(b.port_min),
        remote_cidr,
        remote_group_id: b.remote_group_id,
        description: b.description,
    };
    if g.rules.iter().any(|r| {
        (
            r.direction,
            r.protocol,
            r.port_min,
            r.port_max,
            &r.remote_cidr,
            r.remote_group_id,
        ) == (
            rule.direction,
            rule.protocol,
            rule.port_min,
            rule.port_max,
            &rule.remote_cidr,
            rule.remote_group_id,
        )
    }) {
        return Err(Error::conflict("the group already has this rule"));
    }
    app.store.security_group_rules_add(group, &[rule]).await?;
    notify_all(app);
    security_group_view(app, p, group).await
}

pub async fn security_group_rule_delete(
    app: &App,
    p: &Principal,
    group: Uuid,
    rule: Uuid,
) -> Result<()> {
    group_writable(app, p, group).await?;
    app.store.security_group_rule_delete(group, rule).await?;
    notify_all(app);
    Ok(())
}

// ---------------------------------------------------------------- network ACLs

fn check_acl_rules(rules: &[AclRule]) -> Result<Vec<AclRule>> {
    if rules.len() > 200 {
        return Err(Error::invalid("rules", "at most 200 rules per network ACL"));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        if !(1..=32766).contains(&r.priority) {
            return Err(Error::invalid(
                "rules",
                &format!("priority {} is not in 1–32766", r.priority),
            ));
        }
        if !seen.insert((r.priority, r.direction == Direction::Ingress)) {
            return Err(Error::invalid(
                "rules",
                &format!(
                    "two {} rules have priority {}",
                    match r.direction {
                        Direction::Ingress => "ingress",
                        Direction::Egress => "egress",
                    },
                    r.priority
                ),
            ));
        }
        check_ports(r.protocol, r.port_min, r.port_max).map_err(|e| match e {
            Error::InvalidInput(m) => Error::InvalidInput(format!("rules: {m}")),
            other => other,
        })?;
        let cidr = r
            .cidr
            .as_deref()
            .map(|c| Cidr::parse("rules", c, 0..=32).map(|c| c.to_string()))
            .transpose()?;
        out.push(AclRule {
            cidr,
            port_max: r.port_max.or(r.port_min),
            ..r.clone()
        });
    }
    out.sort_by_key(|r| r.priority);
    Ok(out)
}

pub async fn acl_create(app: &App, p: &Principal, b: NetworkAclCreate) -> Result<NetworkAcl> {
    validate::name("name", &b.name)?;
    validate::description("description", &b.description)?;
    let v = vpc_writable(app, p, b.vpc_id).await?;
    let rules = check_acl_rules(&b.rules)?;
    let now = Utc::now();
    let acl = NetworkAcl {
        id: Uuid::new_v4(),
        name: b.name,
        description: b.description,
        project_id: v.api.project_id,
        vdc_id: v.api.vdc_id,
        vpc_id: v.api.id,
        rules,
        subnet_ids: vec![],
        created_at: now,
        updated_at: now,
    };
    app.store.acl_create(&acl).await?;
    acl_view(app, p, acl.id).await
}

pub async fn acl_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: NetworkFilter,
) -> Result<Page<NetworkAcl>> {
    let paging = Paging::parse(q.sort.as_deref(), q.limit, q.next.as_deref(), SORTABLE)?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(empty());
    }
    let (items, next) = app
        .store
        .acl_list(&vis, f.project_id, f.vpc_id, &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn acl_view(app: &App, p: &Principal, id: Uuid) -> Result<NetworkAcl> {
    let a = app.store.acl_get(id).await?;
    Ok(
        seen(app, p, "network ACL", id, a, |a| (a.project_id, a.vdc_id))
            .await?
            .0,
    )
}

pub async fn acl_update(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: NetworkAclUpdate,
) -> Result<NetworkAcl> {
    let a = app.store.acl_get(id).await?;
    writable(app, p, "network ACL", id, a, |a| (a.project_id, a.vdc_id)).await?;
    if let Some(n) = &b.name {
        validate::name("name", n)?;
    }
    if let Some(d) = &b.description {
        validate::description("description", d)?;
    }
    let rules = b.rules.as_deref().map(check_acl_rules).transpose()?;
    app.store
        .acl_update(
            id,
            b.name.as_deref(),
            b.description.as_deref(),
            rules.as_deref(),
        )
        .await?;
    notify_all(app);
    acl_view(app, p, id).await
}

pub async fn acl_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let a = app.store.acl_get(id).await?;
    writable(app, p, "network ACL", id, a, |a| (a.project_id, a.vdc_id)).await?;
    app.store.acl_delete(id).await
}

// ---------------------------------------------------------------- elastic IPs

pub async fn elastic_ip_create(app: &App, p: &Principal, b: ElasticIpCreate) -> Result<ElasticIp> {
    validate::description("description", &b.description)?;
    let (project, vdc) = writable_project(app, p, b.project_id).await?;
    let (net, pool) = match b.external_network_id {
        Some(id) => {
            let e = app.store.external_network_get(id).await?.ok_or_else(|| {
                Error::invalid("external_network_id", &format!("no external network {id}"))
            })?;
            (
                e.id,
                (
                    parse_ip("pool_start", &e.pool_start)?,
                    parse_ip("pool_end", &e.pool_end)?,
                ),
            )
        }
        None => {
            zone_external(
                app,
                &app.config.local_agent.availability_zone,
                "external_network_id",
            )
            .await?
        }
    };
    let id = Uuid::new_v4();
    app.store
        .elastic_ip_create(id, project, vdc, net, pool, &b.description)
        .await?;
    elastic_ip_view(app, p, id).await
}

pub async fn elastic_ip_list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: NetworkFilter,
) -> Result<Page<ElasticIp>> {
    let paging = Paging::parse(
        q.sort.as_deref(),
        q.limit,
        q.next.as_deref(),
        &["created_at"],
    )?;
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(empty());
    }
    let (items, next) = app
        .store
        .elastic_ip_list(&vis, f.project_id, &paging)
        .await?;
    Ok(Page { items, next })
}

pub async fn elastic_ip_view(app: &App, p: &Principal, id: Uuid) -> Result<ElasticIp> {
    let e = app.store.elastic_ip_get(id).await?;
    Ok(
        seen(app, p, "elastic IP", id, e, |e| (e.project_id, e.vdc_id))
            .await?
            .0,
    )
}

/// Bind to a port or to an instance's first port; with neither, unbind.
pub async fn elastic_ip_bind(
    app: &App,
    p: &Principal,
    id: Uuid,
    b: ElasticIpBind,
) -> Result<ElasticIp> {
    let e = app.store.elastic_ip_get(id).await?;
    let e = writable(app, p, "elastic IP", id, e, |e| (e.project_id, e.vdc_id)).await?;
    let port = match (b.port_id, b.instance_id) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "port_id",
                "give port_id or instance_id, not both",
            ))
        }
        (None, None) => None,
        (Some(port), None) => {
            let x = app.store.port_get(port).await?;
            let (x, _) = seen(app, p, "port", port, x, |x| (x.project_id, x.vdc_id)).await?;
            Some(x)
        }
        (None, Some(inst)) => {
            super::instances::instance_visible(app, p, inst).await?;
            let ports = app.store.ports_of_instance(inst).await?;
            Some(ports.into_iter().next().ok_or_else(|| {
                Error::invalid("instance_id", &format!("instance {inst} has no NIC"))
            })?)
        }
    };
    if let Some(x) = &port {
        if x.project_id != e.project_id {
            return Err(Error::invalid(
                "port_id",
                "the port is in another project than the elastic IP",
            ));
        }
    }
    app.store.elastic_ip_bind(id, port.map(|x| x.id)).await?;
    notify_all(app);
    elastic_ip_view(app, p, id).await
}

pub async fn elastic_ip_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let e = app.store.elastic_ip_get(id).await?;
    writable(app, p, "elastic IP", id, e, |e| (e.project_id, e.vdc_id)).await?;
    app.store.elastic_ip_delete(id).await
}

// ---------------------------------------------------------------- peering

pub async fn peering_create(app: &App, p: &Principal, b: VpcPeeringCreate) -> Result<VpcPeering> {
    validate::name("name", &b.name)?;
    let a = vpc_writable(app, p, b.requester_vpc_id).await?;
    if b.accepter_vpc_id == b.requester_vpc_id {
        return Err(Error::invalid(
            "accepter_vpc_id",
            "a VPC cannot peer with itself",
        ));
    }
    // The other side may be another department's: it must exist, not be seen.
    let other = app
        .store
        .vpc_get(b.accepter_vpc_id)
        .await?
        .filter(|v| !v.deleted)
        .ok_or_else(|| {
            Error::invalid("accepter_vpc_id", &format!("no VPC {}", b.accepter_vpc_id))
        })?;
    let (ca, cb) = (
        Cidr::parse("cidr", &a.api.cidr, 0..=32)?,
        Cidr::parse("cidr", &other.api.cidr, 0..=32)?,
    );
    if ca.overlaps(&cb) {
        return Err(Error::invalid(
            "accepter_vpc_id",
            &format!(
                "the two VPCs' ranges overlap ({ca} and {cb}): peered VPCs need distinct addresses"
            ),
        ));
    }
    // Routers on two hosts are joined by a VXLAN link between the hosts' tunnel addresses.
    if let (Some(ha), Some(hb)) = (a.router_host_id, other.router_host_id) {
        if ha != hb {
            for h in [ha, hb] {
                let tunnel = app
                    .store
                    .host_get(h, &app.config.compute)
                    .await?
                    .map(|h| h.facts.tunnel_ip);
                if tunnel.as_deref().is_none_or(str::is_empty) {
                    return Err(Error::conflict(format!(
                        "the two VPCs' routers are on different hosts and host {h} has no \
                         tunnel address to link them over (stratus agent --tunnel-ip)"
                    )));
                }
            }
        }
    }
    // Someone who may change both sides needs nobody's acceptance.
    let chain = app.store.vdc_chain(other.api.vdc_id).await?;
    let both = p.can(Perm::ResourceWrite, &target(other.api.project_id, &chain));
    let now = Utc::now();
    let peering = VpcPeering {
        id: Uuid::new_v4(),
        name: b.name,
        requester_vpc_id: a.api.id,
        requester_project_id: a.api.project_id,
        accepter_vpc_id: other.api.id,
        accepter_project_id: other.api.project_id,
        status: if both {
            PeeringStatus::Active
        } else {
            PeeringStatus::PendingAcceptance
        },
        created_at: now,
        updated_at: now,
    };
    app.store.peering_create(&peering, &p.name).await?;
    notify_all(app);
    peering_view(app, p, peering.id).await
}

async fn peering_visible(app: &App, p: &Principal, id: Uuid) -> Result<VpcPeering> {
    let x = app
        .store
        .peering_get(id)
        .await?
        .ok_or_else(|| Error::not_found("VPC peering", id))?;
    for (project, vpc) in [
        (x.requester_project_id, x.requester_vpc_id),
        (x.accepter_project_id, x.accepter_vpc_id),
    ] {
        if let Some(v) = app.store.vpc_get(vpc).await? {
            let chain = app.store.vdc_chain(v.api.vdc_id).await?;
            if p.can(Perm::ResourceRead, &target(project, &chain)) {
                return Ok(x);
            }
        }
    }
    Err(Error::not_found("VPC peering", id))
}

/// May the caller change the VPC `vpc` of `project`?
async fn may_write_vpc(app: &App, p: &Principal, vpc: Uuid, project: Uuid) -> Result<bool> {
    let Some(v) = app.store.vpc_get(vpc).await? else {
        return Ok(false);
    };
    let chain = app.store.vdc_chain(v.api.vdc_id).await?;
    Ok(p.can(Perm::ResourceWrite, &target(project, &chain)))
}

pub async fn peering_list(app: &App, p: &Principal) -> Result<Vec<VpcPeering>> {
    let vis = p.visibility(Perm::ResourceRead);
    if vis.is_empty() {
        return Ok(vec![]);
    }
    app.store.peering_list(&vis).await
}

pub async fn peering_view(app: &App, p: &Principal, id: Uuid) -> Result<VpcPeering> {
    peering_visible(app, p, id).await
}

/// The accepter's side accepts (`true`) or rejects a pending peering.
pub async fn peering_answer(
    app: &App,
    p: &Principal,
    id: Uuid,
    accept: bool,
) -> Result<VpcPeering> {
    let x = peering_visible(app, p, id).await?;
    if !may_write_vpc(app, p, x.accepter_vpc_id, x.accepter_project_id).await? {
        return Err(Error::Forbidden(
            "only the accepting VPC's project can accept or reject a peering".into(),
        ));
    }
    app.store
        .peering_set_status(
            id,
            if accept {
                PeeringStatus::Active
            } else {
                PeeringStatus::Rejected
            },
        )
        .await?;
    notify_all(app);
    peering_view(app, p, id).await
}

pub async fn peering_delete(app: &App, p: &Principal, id: Uuid) -> Result<()> {
    let x = peering_visible(app, p, id).await?;
    let may = may_write_vpc(app, p, x.requester_vpc_id, x.requester_project_id).await?
        || may_write_vpc(app, p, x.accepter_vpc_id, x.accepter_project_id).await?;
    if !may {
        return Err(Error::Forbidden(
            "only the two VPCs' projects can delete a peering".into(),
        ));
    }
    app.store.peering_delete(id).await?;
    notify_all(app);
    Ok(())
}

// ---------------------------------------------------------------- topology

/// The VPC as a graph: router in the middle, subnets on it, ports on subnets, instances on
/// ports, elastic IPs on ports, peered VPCs and the external network on the router.
pub async fn vpc_topology(app: &App, p: &Principal, id: Uuid) -> Result<Topology> {
    let v = vpc_visible(app, p, id).await?;
    let vis = p.visibility(Perm::ResourceRead);
    let mut nodes = vec![TopologyNode {
        id: v.api.id,
        kind: "router".into(),
        name: format!("{} router", v.api.name),
        label: v.api.cidr.clone(),
    }];
    let mut edges = Vec::new();
    let all = Paging::parse(None, Some(1000), None, SORTABLE)?;
    let (subnets, _) = app
        .store
        .subnet_list(&vis, None, Some(id), None, &all)
        .await?;
    for s in &subnets {
        nodes.push(TopologyNode {
            id: s.id,
            kind: "subnet".into(),
            name: s.name.clone(),
            label: s.cidr.clone(),
        });
        edges.push(TopologyEdge {
            from: v.api.id,
            to: s.id,
        });
    }
    let (ports, _) = app
        .store
        .port_list(
            &vis,
            &NetworkFilter {
                vpc_id: Some(id),
                ..NetworkFilter::default()
            },
            &all,
        )
        .await?;
    let mut instances = std::collections::HashSet::new();
    for port in &ports {
        nodes.push(TopologyNode {
            id: port.id,
            kind: "port".into(),
            name: port.name.clone(),
            label: port.ip.clone(),
        });
        edges.push(TopologyEdge {
            from: port.subnet_id,
            to: port.id,
        });
        if let Some(i) = port.instance_id {
            if instances.insert(i) {
                let name = app
                    .store
                    .instance_get(i)
                    .await?
                    .map(|r| r.api.name)
                    .unwrap_or_default();
                nodes.push(TopologyNode {
                    id: i,
                    kind: "instance".into(),
                    name,
                    label: String::new(),
                });
            }
            edges.push(TopologyEdge {
                from: port.id,
                to: i,
            });
        }
    }
    let (eips, _) = app
        .store
        .elastic_ip_list(
            &vis,
            Some(v.api.project_id),
            &Paging::parse(None, Some(1000), None, &["created_at"])?,
        )
        .await?;
    for e in eips.iter().filter(|e| e.vpc_id == Some(id)) {
        nodes.push(TopologyNode {
            id: e.id,
            kind: "elastic_ip".into(),
            name: e.address.clone(),
            label: e.fixed_ip.clone().unwrap_or_default(),
        });
        if let Some(port) = e.port_id {
            edges.push(TopologyEdge {
                from: e.id,
                to: port,
            });
        }
    }
    if let Some(net) = v.api.external_network_id.filter(|_| v.api.snat_enabled) {
        nodes.push(TopologyNode {
            id: net,
            kind: "external".into(),
            name: "external network".into(),
            label: v.api.snat_ip.clone().unwrap_or_default(),
        });
        edges.push(TopologyEdge {
            from: v.api.id,
            to: net,
        });
    }
    for peer in app.store.peered_vpcs(id).await? {
        let name = match app.store.vpc_get(peer).await? {
            Some(pv) => {
                let chain = app.store.vdc_chain(pv.api.vdc_id).await?;
                if p.can(Perm::ResourceRead, &target(pv.api.project_id, &chain)) {
                    pv.api.name
                } else {
                    "(another department's VPC)".into()
                }
            }
            None => continue,
        };
        nodes.push(TopologyNode {
            id: peer,
            kind: "peer_vpc".into(),
            name,
            label: String::new(),
        });
        edges.push(TopologyEdge {
            from: v.api.id,
            to: peer,
        });
    }
    Ok(Topology {
        vpc_id: id,
        nodes,
        edges,
    })
}
