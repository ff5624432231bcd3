//! Networking rows: external networks and their addresses, VPCs, subnets, ports (the
//! address plan), security groups, network ACLs, elastic IPs and peerings — and the desired
//! network each host's agent converges to.
//!
//! Address ownership is enforced by unique keys, not by checks: one port per address of a
//! subnet (`ports (subnet_id, ip_num)`), one owner per external address
//! (`external_addresses` primary key). Allocation picks the lowest free address and retries
//! when a concurrent allocation took it first.

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::Row;
use stratus_api::{
    AclRule, AddressRange, DesiredElasticIp, DesiredExternal, DesiredNetwork, DesiredNic,
    DesiredPeering, DesiredPort, DesiredSecurityGroup, DesiredSubnet, DesiredVpc, Direction,
    ElasticIp, ExternalNetwork, NetworkAcl, NetworkStatus, PeeringRemote, PeeringStatus, Port,
    PortMetadata, Protocol, QuotaResource, SecurityGroup, SecurityGroupRule, Subnet, Vpc,
    VpcPeering,
};
use uuid::Uuid;

use super::instances::{metering_event, vdc_chain_tx, Tx};
use super::quotas::QuotaDelta;
use super::{
    col_bool, col_i64, col_opt_str, col_opt_uuid, col_str, col_time, col_uuid, is_unique_violation,
    now_text, time_text, Arg, Conds, Paging, Store,
};
use crate::app::ipam::{ip_text, lowest_free, Cidr};
use crate::authz::Visibility;
use crate::error::{Error, Result};

/// A port as the desired network needs it: (id, subnet, MAC, address, instance, host).
type PortPlace = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn one(resource: QuotaResource, sign: i64) -> [QuotaDelta; 1] {
    [QuotaDelta {
        resource,
        amount: sign,
    }]
}

async fn chain_of(tx: &mut Tx, project: Uuid, vdc: Uuid) -> Result<Vec<Uuid>> {
    let mut chain = vec![project];
    chain.extend(vdc_chain_tx(tx, vdc).await?);
    Ok(chain)
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

fn protocol_str(p: Protocol) -> &'static str {
    match p {
        Protocol::Any => "any",
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
    }
}

fn parse_protocol(s: &str) -> Protocol {
    match s {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        _ => Protocol::Any,
    }
}

// ---------------------------------------------------------------- row mapping

const EXT_COLS: &str = "e.id, e.name, e.availability_zone, e.cidr, e.gateway_ip, e.pool_start, \
    e.pool_end, e.bridge, e.created_at, \
    (SELECT COUNT(*) FROM external_addresses a WHERE a.external_network_id = e.id) AS used";

fn external_from_row(r: &AnyRow) -> Result<ExternalNetwork> {
    let (start, end) = (col_i64(r, "pool_start")?, col_i64(r, "pool_end")?);
    Ok(ExternalNetwork {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        availability_zone: col_str(r, "availability_zone")?,
        cidr: col_str(r, "cidr")?,
        gateway_ip: col_str(r, "gateway_ip")?,
        pool_start: ip_text(start as u32),
        pool_end: ip_text(end as u32),
        bridge: col_str(r, "bridge")?,
        used: col_i64(r, "used")?,
        total: end - start + 1,
        created_at: col_time(r, "created_at")?,
    })
}

const VPC_COLS: &str = "id, name, description, project_id, vdc_id, cidr, availability_zone, \
    external_network_id, snat_address, router_host_id, status, status_reason, generation, \
    applied_generation, deleted, created_at, updated_at";

/// A VPC with what only the store needs.
#[derive(Debug, Clone)]
pub struct VpcRow {
    pub api: Vpc,
    pub snat_address: Option<u32>,
    pub router_host_id: Option<Uuid>,
    pub generation: i64,
    pub deleted: bool,
}

fn vpc_from_row(r: &AnyRow) -> Result<VpcRow> {
    let status = col_str(r, "status")?;
    let snat: Option<i64> = r.try_get("snat_address")?;
    Ok(VpcRow {
        api: Vpc {
            id: col_uuid(r, "id")?,
            name: col_str(r, "name")?,
            description: col_str(r, "description")?,
            project_id: col_uuid(r, "project_id")?,
            vdc_id: col_uuid(r, "vdc_id")?,
            cidr: col_str(r, "cidr")?,
            availability_zone: col_str(r, "availability_zone")?,
            snat_enabled: snat.is_some(),
            snat_ip: snat.map(|a| ip_text(a as u32)),
            external_network_id: col_opt_uuid(r, "external_network_id")?,
            status: NetworkStatus::parse(&status)
                .ok_or_else(|| Error::internal(format!("bad VPC status {status:?}")))?,
            status_reason: col_str(r, "status_reason")?,
            created_at: col_time(r, "created_at")?,
            updated_at: col_time(r, "updated_at")?,
        },
        snat_address: snat.map(|a| a as u32),
        router_host_id: col_opt_uuid(r, "router_host_id")?,
        generation: col_i64(r, "generation")?,
        deleted: col_bool(r, "deleted")?,
    })
}

const SUBNET_COLS: &str = "s.id, s.name, s.description, s.vpc_id, s.project_id, s.vdc_id, s.cidr, \
    s.gateway_ip, s.dhcp_enabled, s.dns_servers, s.allocation_pools, s.acl_id, s.vni, s.created_at, \
    s.updated_at, (SELECT COUNT(*) FROM ports p WHERE p.subnet_id = s.id) AS ports_used";

/// A subnet with its VXLAN id.
#[derive(Debug, Clone)]
pub struct SubnetRow {
    pub api: Subnet,
    pub vni: i64,
}

fn subnet_from_row(r: &AnyRow) -> Result<SubnetRow> {
    let pools: Vec<AddressRange> =
        serde_json::from_str(&col_str(r, "allocation_pools")?).unwrap_or_default();
    let total = pools
        .iter()
        .filter_map(|p| {
            let s = p.start.parse::<std::net::Ipv4Addr>().ok()?;
            let e = p.end.parse::<std::net::Ipv4Addr>().ok()?;
            Some(i64::from(u32::from(e)) - i64::from(u32::from(s)) + 1)
        })
        .sum();
    Ok(SubnetRow {
        api: Subnet {
            id: col_uuid(r, "id")?,
            name: col_str(r, "name")?,
            description: col_str(r, "description")?,
            vpc_id: col_uuid(r, "vpc_id")?,
            project_id: col_uuid(r, "project_id")?,
            vdc_id: col_uuid(r, "vdc_id")?,
            cidr: col_str(r, "cidr")?,
            gateway_ip: col_str(r, "gateway_ip")?,
            dhcp_enabled: col_bool(r, "dhcp_enabled")?,
            dns_servers: serde_json::from_str(&col_str(r, "dns_servers")?).unwrap_or_default(),
            allocation_pools: pools,
            acl_id: col_opt_uuid(r, "acl_id")?,
            ports_used: col_i64(r, "ports_used")?,
            addresses_total: total,
            created_at: col_time(r, "created_at")?,
            updated_at: col_time(r, "updated_at")?,
        },
        vni: col_i64(r, "vni")?,
    })
}

const PORT_COLS: &str =
    "p.id, p.name, p.project_id, p.vdc_id, p.vpc_id, p.subnet_id, p.mac, p.ip, \
    p.ip_num, p.instance_id, p.position, p.delete_with_instance, p.created_at, p.updated_at, \
    (SELECT e.address FROM elastic_ips e WHERE e.port_id = p.id) AS eip";

fn port_from_row(r: &AnyRow) -> Result<Port> {
    let eip: Option<i64> = r.try_get("eip")?;
    Ok(Port {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        project_id: col_uuid(r, "project_id")?,
        vdc_id: col_uuid(r, "vdc_id")?,
        vpc_id: col_uuid(r, "vpc_id")?,
        subnet_id: col_uuid(r, "subnet_id")?,
        mac: col_str(r, "mac")?,
        ip: col_str(r, "ip")?,
        instance_id: col_opt_uuid(r, "instance_id")?,
        security_group_ids: Vec::new(),
        elastic_ip: eip.map(|a| ip_text(a as u32)),
        created_at: col_time(r, "created_at")?,
        updated_at: col_time(r, "updated_at")?,
    })
}

const SG_COLS: &str =
    "id, name, description, project_id, vdc_id, is_default, created_at, updated_at";

fn sg_from_row(r: &AnyRow) -> Result<SecurityGroup> {
    Ok(SecurityGroup {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        description: col_str(r, "description")?,
        project_id: col_uuid(r, "project_id")?,
        vdc_id: col_uuid(r, "vdc_id")?,
        default: col_bool(r, "is_default")?,
        rules: Vec::new(),
        created_at: col_time(r, "created_at")?,
        updated_at: col_time(r, "updated_at")?,
    })
}

fn rule_from_row(r: &AnyRow) -> Result<(Uuid, SecurityGroupRule)> {
    Ok((
        col_uuid(r, "group_id")?,
        SecurityGroupRule {
            id: col_uuid(r, "id")?,
            direction: if col_str(r, "direction")? == "egress" {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            protocol: parse_protocol(&col_str(r, "protocol")?),
            port_min: r.try_get("port_min")?,
            port_max: r.try_get("port_max")?,
            remote_cidr: col_opt_str(r, "remote_cidr")?,
            remote_group_id: col_opt_uuid(r, "remote_group_id")?,
            description: col_str(r, "description")?,
        },
    ))
}

const ACL_COLS: &str =
    "id, name, description, project_id, vdc_id, vpc_id, rules, created_at, updated_at";

fn acl_from_row(r: &AnyRow) -> Result<NetworkAcl> {
    Ok(NetworkAcl {
        id: col_uuid(r, "id")?,
        name: col_str(r, "name")?,
        description: col_str(r, "description")?,
        project_id: col_uuid(r, "project_id")?,
        vdc_id: col_uuid(r, "vdc_id")?,
        vpc_id: col_uuid(r, "vpc_id")?,
        rules: serde_json::from_str(&col_str(r, "rules")?).unwrap_or_default(),
        subnet_ids: Vec::new(),
        created_at: col_time(r, "created_at")?,
        updated_at: col_time(r, "updated_at")?,
    })
}

const EIP_COLS: &str =
    "e.id, e.project_id, e.vdc_id, e.external_network_id, e.address, e.port_id, \
    e.description, e.created_at, e.updated_at, p.instance_id, p.ip AS fixed_ip, p.vpc_id";

const EIP_FROM: &str = "elastic_ips e LEFT JOIN ports p ON p.id = e.port_id";

fn eip_from_row(r: &AnyRow) -> Result<ElasticIp> {
    let address: i64 = col_i64(r, "address")?;
    Ok(ElasticIp {
        id: col_uuid(r, "id")?,
        project_id: col_uuid(r, "project_id")?,
        vdc_id: col_uuid(r, "vdc_id")?,
        external_network_id: col_uuid(r, "external_network_id")?,
        address: ip_text(address as u32),
        port_id: col_opt_uuid(r, "port_id")?,
        instance_id: col_opt_uuid(r, "instance_id")?,
        fixed_ip: col_opt_str(r, "fixed_ip")?,
        vpc_id: col_opt_uuid(r, "vpc_id")?,
        description: col_str(r, "description")?,
        created_at: col_time(r, "created_at")?,
        updated_at: col_time(r, "updated_at")?,
    })
}

const PEER_COLS: &str = "id, name, requester_vpc_id, requester_project_id, accepter_vpc_id, \
    accepter_project_id, status, link_index, created_by, created_at, updated_at";

fn peering_from_row(r: &AnyRow) -> Result<(VpcPeering, i64)> {
    let status = match col_str(r, "status")?.as_str() {
        "active" => PeeringStatus::Active,
        "rejected" => PeeringStatus::Rejected,
        _ => PeeringStatus::PendingAcceptance,
    };
    Ok((
        VpcPeering {
            id: col_uuid(r, "id")?,
            name: col_str(r, "name")?,
            requester_vpc_id: col_uuid(r, "requester_vpc_id")?,
            requester_project_id: col_uuid(r, "requester_project_id")?,
            accepter_vpc_id: col_uuid(r, "accepter_vpc_id")?,
            accepter_project_id: col_uuid(r, "accepter_project_id")?,
            status,
            created_at: col_time(r, "created_at")?,
            updated_at: col_time(r, "updated_at")?,
        },
        col_i64(r, "link_index")?,
    ))
}

/// VNIs of peering links across hosts: the upper half of the 24-bit space, far from the
/// subnets' (numbered up from 4096).
const PEERING_VNI_BASE: u32 = 1 << 23;

/// The /30 of 169.254.0.0/16 a peering's routers talk over.
fn link_cidr(index: i64) -> String {
    let base = (169u32 << 24) | (254 << 16);
    format!("{}/30", ip_text(base + 4 * (index as u32 % 16384)))
}

// ---------------------------------------------------------------- new rows

pub struct NewExternalNetwork {
    pub name: String,
    pub availability_zone: String,
    pub cidr: String,
    pub gateway_ip: String,
    pub pool: (u32, u32),
    pub bridge: String,
}

pub struct NewVpc {
    pub id: Uuid,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub name: String,
    pub description: String,
    pub cidr: String,
    pub availability_zone: String,
    /// SNAT from this external network.
    pub snat: Option<(Uuid, (u32, u32))>,
    pub created_by: String,
}

pub struct NewSubnet {
    pub id: Uuid,
    pub vpc: Uuid,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub name: String,
    pub description: String,
    pub cidr: Cidr,
    pub gateway: u32,
    pub dhcp_enabled: bool,
    pub dns_servers: Vec<String>,
    pub pools: Vec<(u32, u32)>,
}

/// A port to make on a subnet: an address (or the lowest free one), groups, an owner.
pub struct NewPort {
    pub id: Uuid,
    pub name: String,
    pub subnet_id: Uuid,
    pub ip: Option<u32>,
    pub security_groups: Option<Vec<Uuid>>,
    pub instance: Option<(Uuid, i64)>,
}

impl Store {
    // ------------------------------------------------------------ external networks

    pub async fn external_network_create(&self, n: &NewExternalNetwork) -> Result<ExternalNetwork> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO external_networks (id, name, availability_zone, cidr, gateway_ip, pool_start, \
             pool_end, bridge, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.to_string())
        .bind(&n.name)
        .bind(&n.availability_zone)
        .bind(&n.cidr)
        .bind(&n.gateway_ip)
        .bind(i64::from(n.pool.0))
        .bind(i64::from(n.pool.1))
        .bind(&n.bridge)
        .bind(now_text())
        .execute(&self.db.write)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("name: an external network named {:?} exists", n.name))
            } else {
                e.into()
            }
        })?;
        self.external_network_get(id)
            .await?
            .ok_or_else(|| Error::internal("external network vanished after insert"))
    }

    pub async fn external_network_list(&self) -> Result<Vec<ExternalNetwork>> {
        let rows = sqlx::query(&format!(
            "SELECT {EXT_COLS} FROM external_networks e ORDER BY e.availability_zone, e.name"
        ))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(external_from_row).collect()
    }

    pub async fn external_network_get(&self, id: Uuid) -> Result<Option<ExternalNetwork>> {
        let row = sqlx::query(&format!(
            "SELECT {EXT_COLS} FROM external_networks e WHERE e.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| external_from_row(&r)).transpose()
    }

    pub async fn external_network_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM external_addresses WHERE external_network_id = $1",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if used > 0 {
            return Err(Error::conflict(format!(
                "external network {id} has {used} address(es) in use (elastic IPs, SNAT)"
            )));
        }
        sqlx::query("DELETE FROM external_networks WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ VPCs

    /// A VPC and (the first time in a project) the project's default security group, with
    /// their quota, and the SNAT address when asked; the router goes to `router_host`.
    pub async fn vpc_create(&self, n: &NewVpc, router_host: Option<Uuid>) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let chain = chain_of(&mut tx, n.project_id, n.vdc_id).await?;
        Store::quota_charge(&mut tx, &chain, &one(QuotaResource::Vpcs, 1)).await?;
        default_group_tx(&mut tx, n.project_id, n.vdc_id, &chain).await?;
        let now = now_text();
        sqlx::query(
            "INSERT INTO vpcs (id, name, description, project_id, vdc_id, cidr, availability_zone, \
             router_host_id, status, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
        )
        .bind(n.id.to_string())
        .bind(&n.name)
        .bind(&n.description)
        .bind(n.project_id.to_string())
        .bind(n.vdc_id.to_string())
        .bind(&n.cidr)
        .bind(&n.availability_zone)
        .bind(router_host.map(|h| h.to_string()))
        // Nothing to build until a host runs its router.
        .bind(if router_host.is_some() { "building" } else { "active" })
        .bind(&n.created_by)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        if let Some((net, pool)) = n.snat {
            set_snat_tx(&mut tx, n.id, Some((net, pool))).await?;
        }
        bump_vpc_tx(&mut tx, n.id).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn vpc_get(&self, id: Uuid) -> Result<Option<VpcRow>> {
        let row = sqlx::query(&format!("SELECT {VPC_COLS} FROM vpcs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| vpc_from_row(&r)).transpose()
    }

    pub async fn vpc_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<Vpc>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "");
        if let Some(p) = project {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        if let Some(n) = name {
            c.and(super::NAME_LIKE, [super::like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(&format!("SELECT {VPC_COLS} FROM vpcs"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(|r| vpc_from_row(r).map(|v| v.api))
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    /// Turn SNAT on (an address from `net`) or off.
    pub async fn vpc_snat(&self, id: Uuid, to: Option<(Uuid, (u32, u32))>) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        set_snat_tx(&mut tx, id, to).await?;
        bump_vpc_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Delete a VPC without subnets. With a router on a host it goes once the host reports
    /// it gone; otherwise at once. Returns true when the row is gone.
    pub async fn vpc_delete(&self, id: Uuid) -> Result<bool> {
        let mut tx = self.db.write.begin().await?;
        let v = vpc_get_tx(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found("VPC", id))?;
        if v.deleted {
            return Ok(false);
        }
        let subnets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subnets WHERE vpc_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if subnets > 0 {
            return Err(Error::conflict(format!(
                "VPC {id} has {subnets} subnet(s); delete them first"
            )));
        }
        let peerings: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vpc_peerings WHERE requester_vpc_id = $1 OR accepter_vpc_id = $1",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if peerings > 0 {
            return Err(Error::conflict(format!(
                "VPC {id} has {peerings} peering(s); delete them first"
            )));
        }
        let acls: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM network_acls WHERE vpc_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if acls > 0 {
            return Err(Error::conflict(format!(
                "VPC {id} has {acls} network ACL(s); delete them first"
            )));
        }
        if v.router_host_id.is_none() {
            finalize_vpc_tx(&mut tx, &v).await?;
            tx.commit().await?;
            return Ok(true);
        }
        sqlx::query(
            "UPDATE vpcs SET deleted = 1, status = 'deleting', updated_at = $1 WHERE id = $2",
        )
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        bump_vpc_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(false)
    }

    /// What a host reports about a VPC: its router host's report settles the status.
    pub async fn vpc_observe(&self, host: Uuid, r: &stratus_api::VpcReport) -> Result<bool> {
        use stratus_api::NetworkState as S;
        let mut tx = self.db.write.begin().await?;
        let Some(v) = vpc_get_tx(&mut tx, r.id).await? else {
            return Ok(false);
        };
        if v.router_host_id != Some(host) {
            return Ok(false);
        }
        let (status, reason) = match r.state {
            S::Gone if v.deleted => {
                finalize_vpc_tx(&mut tx, &v).await?;
                tx.commit().await?;
                return Ok(true);
            }
            S::Gone => return Ok(false),
            S::Ready if r.generation >= v.generation && !v.deleted => ("active", String::new()),
            S::Error if !v.deleted => (
                "error",
                r.error
                    .clone()
                    .unwrap_or_else(|| "the host failed to build it".into()),
            ),
            _ => return Ok(false),
        };
        if status == v.api.status.as_str() && reason == v.api.status_reason {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE vpcs SET status = $1, status_reason = $2, applied_generation = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(status)
        .bind(&reason)
        .bind(r.generation)
        .bind(now_text())
        .bind(r.id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(false)
    }

    /// Give a VPC's router to `host` if it has none yet (its first instance's host).
    pub async fn vpc_router_adopt(&self, vpc: Uuid, host: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let done = sqlx::query(
            "UPDATE vpcs SET router_host_id = $1, status = 'building', updated_at = $2 \
             WHERE id = $3 AND router_host_id IS NULL",
        )
        .bind(host.to_string())
        .bind(now_text())
        .bind(vpc.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            bump_vpc_tx(&mut tx, vpc).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The host that should run a new VPC's router: an enabled, live host of the zone —
    /// one already running routers of the same project first (a department's VPCs then
    /// peer over a veth pair rather than a tunnel between hosts), else the one running the
    /// fewest routers.
    pub async fn router_host_pick(
        &self,
        az: &str,
        project: Uuid,
        down_after_secs: i64,
    ) -> Result<Option<Uuid>> {
        let cutoff = time_text(chrono::Utc::now() - chrono::Duration::seconds(down_after_secs));
        let id: Option<String> = sqlx::query_scalar(
            "SELECT h.id FROM hosts h WHERE h.enabled = 1 AND h.availability_zone = $1 \
             AND h.last_heartbeat_at >= $2 ORDER BY \
             (SELECT COUNT(*) FROM vpcs v WHERE v.router_host_id = h.id AND v.project_id = $3) DESC, \
             (SELECT COUNT(*) FROM vpcs v WHERE v.router_host_id = h.id), h.id LIMIT 1",
        )
        .bind(az)
        .bind(&cutoff)
        .bind(project.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        Ok(id.and_then(|s| Uuid::parse_str(&s).ok()))
    }

    // ------------------------------------------------------------ subnets

    pub async fn subnet_create(&self, n: &NewSubnet) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let v = vpc_get_tx(&mut tx, n.vpc)
            .await?
            .ok_or_else(|| Error::not_found("VPC", n.vpc))?;
        if v.deleted {
            return Err(Error::conflict(format!("VPC {} is being deleted", n.vpc)));
        }
        let others: Vec<(String, String)> =
            sqlx::query_as("SELECT id, cidr FROM subnets WHERE vpc_id = $1")
                .bind(n.vpc.to_string())
                .fetch_all(&mut *tx)
                .await?;
        for (sid, c) in others {
            if let Ok(other) = Cidr::parse("cidr", &c, 0..=32) {
                if other.overlaps(&n.cidr) {
                    return Err(Error::invalid(
                        "cidr",
                        &format!("{} overlaps subnet {sid} ({c}) of the VPC", n.cidr),
                    ));
                }
            }
        }
        let vni: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(MAX(vni), 4095) AS BIGINT) FROM subnets")
                .fetch_one(&mut *tx)
                .await?;
        let pools: Vec<AddressRange> = n
            .pools
            .iter()
            .map(|(s, e)| AddressRange {
                start: ip_text(*s),
                end: ip_text(*e),
            })
            .collect();
        let now = now_text();
        sqlx::query(
            "INSERT INTO subnets (id, name, description, vpc_id, project_id, vdc_id, cidr, gateway_ip, \
             dhcp_enabled, dns_servers, allocation_pools, vni, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
        )
        .bind(n.id.to_string())
        .bind(&n.name)
        .bind(&n.description)
        .bind(n.vpc.to_string())
        .bind(n.project_id.to_string())
        .bind(n.vdc_id.to_string())
        .bind(n.cidr.to_string())
        .bind(ip_text(n.gateway))
        .bind(n.dhcp_enabled as i64)
        .bind(serde_json::to_string(&n.dns_servers).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&pools).unwrap_or_else(|_| "[]".into()))
        .bind(vni + 1)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        bump_vpc_tx(&mut tx, n.vpc).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn subnet_get(&self, id: Uuid) -> Result<Option<SubnetRow>> {
        let row = sqlx::query(&format!(
            "SELECT {SUBNET_COLS} FROM subnets s WHERE s.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| subnet_from_row(&r)).transpose()
    }

    pub async fn subnet_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
        vpc: Option<Uuid>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<Subnet>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "s.");
        if let Some(p) = project {
            c.and("s.project_id = ?", [Arg::from(p)]);
        }
        if let Some(v) = vpc {
            c.and("s.vpc_id = ?", [Arg::from(v)]);
        }
        if let Some(n) = name {
            c.and("s.name LIKE ? ESCAPE '\\'", [super::like_contains(n)]);
        }
        let (tail, targs) = paging.apply_to(&mut c, "s.", "s.id");
        let (sql, args) = c.render(
            &format!("SELECT {SUBNET_COLS} FROM subnets s"),
            &tail,
            targs,
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows
            .iter()
            .map(|r| subnet_from_row(r).map(|s| s.api))
            .collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    /// Change a subnet's DNS servers, DHCP or network ACL (the caller checked them).
    pub async fn subnet_update(
        &self,
        id: Uuid,
        dns: Option<&[String]>,
        dhcp: Option<bool>,
        acl: Option<Option<Uuid>>,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let vpc: String = sqlx::query_scalar("SELECT vpc_id FROM subnets WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found("subnet", id))?;
        if let Some(d) = dns {
            sqlx::query("UPDATE subnets SET dns_servers = $1 WHERE id = $2")
                .bind(serde_json::to_string(d).unwrap_or_else(|_| "[]".into()))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(d) = dhcp {
            sqlx::query("UPDATE subnets SET dhcp_enabled = $1 WHERE id = $2")
                .bind(d as i64)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(a) = acl {
            sqlx::query("UPDATE subnets SET acl_id = $1 WHERE id = $2")
                .bind(a.map(|a| a.to_string()))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE subnets SET updated_at = $1 WHERE id = $2")
            .bind(now_text())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        bump_vpc_tx(&mut tx, parse_id(&vpc)?).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn subnet_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let vpc: String = sqlx::query_scalar("SELECT vpc_id FROM subnets WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found("subnet", id))?;
        let ports: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ports WHERE subnet_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if ports > 0 {
            return Err(Error::conflict(format!(
                "subnet {id} has {ports} port(s); delete their instances or ports first"
            )));
        }
        sqlx::query("DELETE FROM subnets WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        bump_vpc_tx(&mut tx, parse_id(&vpc)?).await?;
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ ports

    /// Make ports (all or none): each takes the asked address or the lowest free one of its
    /// subnet's pools, and its groups (default: the project's default group).
    pub async fn port_create(&self, ports: &[NewPort]) -> Result<()> {
        for attempt in 0..5 {
            let mut tx = self.db.write.begin().await?;
            let mut failed = None;
            for n in ports {
                match port_insert_tx(&mut tx, n).await {
                    Ok(()) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => {
                    tx.commit().await?;
                    return Ok(());
                }
                // Another allocation took the lowest free address first: try again.
                Some(Error::Conflict(m)) if m == "address taken" && attempt < 4 => continue,
                Some(Error::Conflict(m)) if m == "address taken" => {
                    return Err(Error::conflict(
                        "the subnet's addresses are being allocated; retry",
                    ))
                }
                Some(e) => return Err(e),
            }
        }
        Err(Error::Unavailable(
            "address allocation kept colliding; retry".into(),
        ))
    }

    pub async fn port_get(&self, id: Uuid) -> Result<Option<Port>> {
        let row = sqlx::query(&format!("SELECT {PORT_COLS} FROM ports p WHERE p.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        let Some(mut p) = row.map(|r| port_from_row(&r)).transpose()? else {
            return Ok(None);
        };
        p.security_group_ids = self
            .groups_of_ports(&[p.id])
            .await?
            .remove(&p.id)
            .unwrap_or_default();
        Ok(Some(p))
    }

    async fn groups_of_ports(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<Uuid>>> {
        let mut out: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut c = Conds::new();
        c.and(
            Conds::in_list("port_id", ids.len()),
            ids.iter().map(|i| Arg::from(*i)),
        );
        let (sql, args) = c.render(
            "SELECT port_id, group_id FROM port_security_groups",
            "ORDER BY port_id, group_id",
            vec![],
        );
        for r in sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?
        {
            out.entry(col_uuid(&r, "port_id")?)
                .or_default()
                .push(col_uuid(&r, "group_id")?);
        }
        Ok(out)
    }

    pub async fn port_list(
        &self,
        vis: &Visibility,
        f: &stratus_api::NetworkFilter,
        paging: &Paging,
    ) -> Result<(Vec<Port>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "p.");
        if let Some(p) = f.project_id {
            c.and("p.project_id = ?", [Arg::from(p)]);
        }
        if let Some(v) = f.vpc_id {
            c.and("p.vpc_id = ?", [Arg::from(v)]);
        }
        if let Some(s) = f.subnet_id {
            c.and("p.subnet_id = ?", [Arg::from(s)]);
        }
        if let Some(i) = f.instance_id {
            c.and("p.instance_id = ?", [Arg::from(i)]);
        }
        let (tail, targs) = paging.apply_to(&mut c, "p.", "p.id");
        let (sql, args) = c.render(&format!("SELECT {PORT_COLS} FROM ports p"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let mut items = rows.iter().map(port_from_row).collect::<Result<Vec<_>>>()?;
        let ids: Vec<Uuid> = items.iter().map(|p| p.id).collect();
        let mut groups = self.groups_of_ports(&ids).await?;
        for p in &mut items {
            p.security_group_ids = groups.remove(&p.id).unwrap_or_default();
        }
        Ok(paging.page(items))
    }

    /// The ports of an instance, in NIC order.
    pub async fn ports_of_instance(&self, instance: Uuid) -> Result<Vec<Port>> {
        let rows = sqlx::query(&format!(
            "SELECT {PORT_COLS} FROM ports p WHERE p.instance_id = $1 ORDER BY p.position, p.id"
        ))
        .bind(instance.to_string())
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(port_from_row).collect()
    }

    /// Give a port to an instance as its NIC number `position` (a free port of the same
    /// project; checked by the caller).
    pub async fn port_bind(&self, port: Uuid, instance: Uuid, position: i64) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let done = sqlx::query(
            "UPDATE ports SET instance_id = $1, position = $2, updated_at = $3 \
             WHERE id = $4 AND instance_id IS NULL",
        )
        .bind(instance.to_string())
        .bind(position)
        .bind(now_text())
        .bind(port.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::conflict(format!(
                "port {port} is used by another instance"
            )));
        }
        let vpc: String = sqlx::query_scalar("SELECT vpc_id FROM ports WHERE id = $1")
            .bind(port.to_string())
            .fetch_one(&mut *tx)
            .await?;
        bump_vpc_tx(&mut tx, parse_id(&vpc)?).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn port_rename(&self, id: Uuid, name: &str) -> Result<()> {
        sqlx::query("UPDATE ports SET name = $1, updated_at = $2 WHERE id = $3")
            .bind(name)
            .bind(now_text())
            .bind(id.to_string())
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// Replace a port's security groups (applied on its host at once).
    pub async fn port_groups_set(&self, port: Uuid, groups: &[Uuid]) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        sqlx::query("DELETE FROM port_security_groups WHERE port_id = $1")
            .bind(port.to_string())
            .execute(&mut *tx)
            .await?;
        for g in groups {
            sqlx::query("INSERT INTO port_security_groups (port_id, group_id) VALUES ($1, $2)")
                .bind(port.to_string())
                .bind(g.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let vpc: Option<String> = sqlx::query_scalar("SELECT vpc_id FROM ports WHERE id = $1")
            .bind(port.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(v) = vpc {
            bump_vpc_tx(&mut tx, parse_id(&v)?).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn port_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let inst: Option<Option<String>> =
            sqlx::query_scalar("SELECT instance_id FROM ports WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        match inst {
            None => return Err(Error::not_found("port", id)),
            Some(Some(i)) => {
                return Err(Error::conflict(format!(
                    "port {id} is a NIC of instance {i}; delete the instance first"
                )))
            }
            Some(None) => {}
        }
        drop_port_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ security groups

    pub async fn security_group_create(
        &self,
        id: Uuid,
        project: Uuid,
        vdc: Uuid,
        name: &str,
        description: &str,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let chain = chain_of(&mut tx, project, vdc).await?;
        default_group_tx(&mut tx, project, vdc, &chain).await?;
        insert_group_tx(&mut tx, id, project, vdc, name, description, false, &chain).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The project's default group, made if missing.
    pub async fn security_group_default(&self, project: Uuid, vdc: Uuid) -> Result<Uuid> {
        let mut tx = self.db.write.begin().await?;
        let chain = chain_of(&mut tx, project, vdc).await?;
        let id = default_group_tx(&mut tx, project, vdc, &chain).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn security_group_get(&self, id: Uuid) -> Result<Option<SecurityGroup>> {
        let row = sqlx::query(&format!(
            "SELECT {SG_COLS} FROM security_groups WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        let Some(mut g) = row.map(|r| sg_from_row(&r)).transpose()? else {
            return Ok(None);
        };
        g.rules = self
            .rules_of(&[g.id])
            .await?
            .remove(&g.id)
            .unwrap_or_default();
        Ok(Some(g))
    }

    async fn rules_of(&self, groups: &[Uuid]) -> Result<HashMap<Uuid, Vec<SecurityGroupRule>>> {
        let mut out: HashMap<Uuid, Vec<SecurityGroupRule>> = HashMap::new();
        if groups.is_empty() {
            return Ok(out);
        }
        let mut c = Conds::new();
        c.and(
            Conds::in_list("group_id", groups.len()),
            groups.iter().map(|i| Arg::from(*i)),
        );
        let (sql, args) = c.render(
            "SELECT id, group_id, direction, protocol, port_min, port_max, remote_cidr, \
             remote_group_id, description FROM security_group_rules",
            "ORDER BY group_id, created_at, id",
            vec![],
        );
        for r in sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?
        {
            let (g, rule) = rule_from_row(&r)?;
            out.entry(g).or_default().push(rule);
        }
        Ok(out)
    }

    pub async fn security_group_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
        name: Option<&str>,
        paging: &Paging,
    ) -> Result<(Vec<SecurityGroup>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "");
        if let Some(p) = project {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        if let Some(n) = name {
            c.and(super::NAME_LIKE, [super::like_contains(n)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(
            &format!("SELECT {SG_COLS} FROM security_groups"),
            &tail,
            targs,
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let mut items = rows.iter().map(sg_from_row).collect::<Result<Vec<_>>>()?;
        let ids: Vec<Uuid> = items.iter().map(|g| g.id).collect();
        let mut rules = self.rules_of(&ids).await?;
        for g in &mut items {
            g.rules = rules.remove(&g.id).unwrap_or_default();
        }
        Ok(paging.page(items))
    }

    pub async fn security_group_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let Some(g) = sqlx::query(&format!(
            "SELECT {SG_COLS} FROM security_groups WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| sg_from_row(&r))
        .transpose()?
        else {
            return Err(Error::not_found("security group", id));
        };
        if g.default {
            return Err(Error::conflict(format!(
                "security group {id} is the project's default group and cannot be deleted"
            )));
        }
        let used: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM port_security_groups WHERE group_id = $1")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if used > 0 {
            return Err(Error::conflict(format!(
                "security group {id} is used by {used} port(s); take it off them first"
            )));
        }
        let referenced: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM security_group_rules WHERE remote_group_id = $1 AND group_id <> $1",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if referenced > 0 {
            return Err(Error::conflict(format!(
                "security group {id} is the remote group of {referenced} rule(s) of other groups"
            )));
        }
        sqlx::query("DELETE FROM security_group_rules WHERE group_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM security_groups WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let chain = chain_of(&mut tx, g.project_id, g.vdc_id).await?;
        Store::quota_charge(&mut tx, &chain, &one(QuotaResource::SecurityGroups, -1)).await?;
        metering_event(
            &mut tx,
            "security_group",
            id,
            g.project_id,
            g.vdc_id,
            "deleted",
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Add rules to a group (applied on running instances at once).
    pub async fn security_group_rules_add(
        &self,
        group: Uuid,
        rules: &[SecurityGroupRule],
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        for rule in rules {
            insert_rule_tx(&mut tx, group, rule).await?;
        }
        touch_group_tx(&mut tx, group).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn security_group_rule_delete(&self, group: Uuid, rule: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let done = sqlx::query("DELETE FROM security_group_rules WHERE id = $1 AND group_id = $2")
            .bind(rule.to_string())
            .bind(group.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("security group rule", rule));
        }
        touch_group_tx(&mut tx, group).await?;
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ network ACLs

    pub async fn acl_create(&self, a: &NetworkAcl) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO network_acls ({ACL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
        ))
        .bind(a.id.to_string())
        .bind(&a.name)
        .bind(&a.description)
        .bind(a.project_id.to_string())
        .bind(a.vdc_id.to_string())
        .bind(a.vpc_id.to_string())
        .bind(serde_json::to_string(&a.rules).unwrap_or_else(|_| "[]".into()))
        .bind(now_text())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn acl_get(&self, id: Uuid) -> Result<Option<NetworkAcl>> {
        let row = sqlx::query(&format!(
            "SELECT {ACL_COLS} FROM network_acls WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        let Some(mut a) = row.map(|r| acl_from_row(&r)).transpose()? else {
            return Ok(None);
        };
        let subnets: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM subnets WHERE acl_id = $1 ORDER BY id")
                .bind(id.to_string())
                .fetch_all(&self.db.read)
                .await?;
        a.subnet_ids = subnets
            .into_iter()
            .filter_map(|(s,)| Uuid::parse_str(&s).ok())
            .collect();
        Ok(Some(a))
    }

    pub async fn acl_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
        vpc: Option<Uuid>,
        paging: &Paging,
    ) -> Result<(Vec<NetworkAcl>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "");
        if let Some(p) = project {
            c.and("project_id = ?", [Arg::from(p)]);
        }
        if let Some(v) = vpc {
            c.and("vpc_id = ?", [Arg::from(v)]);
        }
        let (tail, targs) = paging.apply(&mut c, "id");
        let (sql, args) = c.render(
            &format!("SELECT {ACL_COLS} FROM network_acls"),
            &tail,
            targs,
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows.iter().map(acl_from_row).collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    pub async fn acl_update(
        &self,
        id: Uuid,
        name: Option<&str>,
        description: Option<&str>,
        rules: Option<&[AclRule]>,
    ) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let vpc: String = sqlx::query_scalar("SELECT vpc_id FROM network_acls WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found("network ACL", id))?;
        sqlx::query(
            "UPDATE network_acls SET name = COALESCE($1, name), description = COALESCE($2, description), \
             rules = COALESCE($3, rules), updated_at = $4 WHERE id = $5",
        )
        .bind(name)
        .bind(description)
        .bind(rules.map(|r| serde_json::to_string(r).unwrap_or_else(|_| "[]".into())))
        .bind(now_text())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        bump_vpc_tx(&mut tx, parse_id(&vpc)?).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn acl_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subnets WHERE acl_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if used > 0 {
            return Err(Error::conflict(format!(
                "network ACL {id} is associated with {used} subnet(s); take it off them first"
            )));
        }
        let done = sqlx::query("DELETE FROM network_acls WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("network ACL", id));
        }
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ elastic IPs

    pub async fn elastic_ip_create(
        &self,
        id: Uuid,
        project: Uuid,
        vdc: Uuid,
        net: Uuid,
        pool: (u32, u32),
        description: &str,
    ) -> Result<()> {
        for attempt in 0..5 {
            let mut tx = self.db.write.begin().await?;
            let chain = chain_of(&mut tx, project, vdc).await?;
            Store::quota_charge(&mut tx, &chain, &one(QuotaResource::ElasticIps, 1)).await?;
            let address = match take_external_tx(&mut tx, net, pool, "elastic_ip", id).await {
                Ok(a) => a,
                Err(Error::Conflict(m)) if m == "address taken" && attempt < 4 => continue,
                Err(e) => return Err(e),
            };
            let now = now_text();
            sqlx::query(
                "INSERT INTO elastic_ips (id, project_id, vdc_id, external_network_id, address, \
                 description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(id.to_string())
            .bind(project.to_string())
            .bind(vdc.to_string())
            .bind(net.to_string())
            .bind(i64::from(address))
            .bind(description)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            metering_event(
                &mut tx,
                "elastic_ip",
                id,
                project,
                vdc,
                "created",
                serde_json::json!({"address": ip_text(address)}),
            )
            .await?;
            tx.commit().await?;
            return Ok(());
        }
        Err(Error::Unavailable(
            "address allocation kept colliding; retry".into(),
        ))
    }

    pub async fn elastic_ip_get(&self, id: Uuid) -> Result<Option<ElasticIp>> {
        let row = sqlx::query(&format!(
            "SELECT {EIP_COLS} FROM {EIP_FROM} WHERE e.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| eip_from_row(&r)).transpose()
    }

    pub async fn elastic_ip_list(
        &self,
        vis: &Visibility,
        project: Option<Uuid>,
        paging: &Paging,
    ) -> Result<(Vec<ElasticIp>, Option<String>)> {
        let mut c = Conds::new();
        super::instances::resource_visible(&mut c, vis, "e.");
        if let Some(p) = project {
            c.and("e.project_id = ?", [Arg::from(p)]);
        }
        let (tail, targs) = paging.apply_to(&mut c, "e.", "e.id");
        let (sql, args) = c.render(&format!("SELECT {EIP_COLS} FROM {EIP_FROM}"), &tail, targs);
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.db.read)
            .await?;
        let items = rows.iter().map(eip_from_row).collect::<Result<Vec<_>>>()?;
        Ok(paging.page(items))
    }

    /// Bind to a port (moving it from another one keeps the address), or unbind (`None`).
    pub async fn elastic_ip_bind(&self, id: Uuid, port: Option<Uuid>) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let old: Option<Option<String>> =
            sqlx::query_scalar("SELECT port_id FROM elastic_ips WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(old) = old else {
            return Err(Error::not_found("elastic IP", id));
        };
        if let Some(p) = port {
            let taken: Option<String> =
                sqlx::query_scalar("SELECT id FROM elastic_ips WHERE port_id = $1 AND id <> $2")
                    .bind(p.to_string())
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(other) = taken {
                return Err(Error::conflict(format!(
                    "port {p} already has elastic IP {other}; unbind it first"
                )));
            }
        }
        sqlx::query("UPDATE elastic_ips SET port_id = $1, updated_at = $2 WHERE id = $3")
            .bind(port.map(|p| p.to_string()))
            .bind(now_text())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let mut vpcs = BTreeSet::new();
        for p in old.iter().cloned().chain(port.map(|p| p.to_string())) {
            if let Some(v) =
                sqlx::query_scalar::<_, String>("SELECT vpc_id FROM ports WHERE id = $1")
                    .bind(&p)
                    .fetch_optional(&mut *tx)
                    .await?
            {
                vpcs.insert(v);
            }
        }
        for v in vpcs {
            bump_vpc_tx(&mut tx, parse_id(&v)?).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn elastic_ip_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {EIP_COLS} FROM {EIP_FROM} WHERE e.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| eip_from_row(&r))
        .transpose()?
        .ok_or_else(|| Error::not_found("elastic IP", id))?;
        if let Some(p) = row.port_id {
            return Err(Error::conflict(format!(
                "elastic IP {} is bound to port {p}; unbind it first",
                row.address
            )));
        }
        drop_eip_tx(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ peering

    pub async fn peering_create(&self, p: &VpcPeering, created_by: &str) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let pair: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vpc_peerings WHERE (requester_vpc_id = $1 AND accepter_vpc_id = $2) \
             OR (requester_vpc_id = $2 AND accepter_vpc_id = $1)",
        )
        .bind(p.requester_vpc_id.to_string())
        .bind(p.accepter_vpc_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if pair > 0 {
            return Err(Error::conflict("these two VPCs already have a peering"));
        }
        let index: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(link_index), -1) AS BIGINT) FROM vpc_peerings",
        )
        .fetch_one(&mut *tx)
        .await?;
        let now = now_text();
        sqlx::query(&format!(
            "INSERT INTO vpc_peerings ({PEER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)"
        ))
        .bind(p.id.to_string())
        .bind(&p.name)
        .bind(p.requester_vpc_id.to_string())
        .bind(p.requester_project_id.to_string())
        .bind(p.accepter_vpc_id.to_string())
        .bind(p.accepter_project_id.to_string())
        .bind(p.status.as_str())
        .bind(index + 1)
        .bind(created_by)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        if p.status == PeeringStatus::Active {
            bump_vpc_tx(&mut tx, p.requester_vpc_id).await?;
            bump_vpc_tx(&mut tx, p.accepter_vpc_id).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn peering_get(&self, id: Uuid) -> Result<Option<VpcPeering>> {
        let row = sqlx::query(&format!(
            "SELECT {PEER_COLS} FROM vpc_peerings WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        Ok(row.map(|r| peering_from_row(&r)).transpose()?.map(|p| p.0))
    }

    /// Peerings either side of which the caller sees.
    pub async fn peering_list(&self, vis: &Visibility) -> Result<Vec<VpcPeering>> {
        let rows = sqlx::query(&format!(
            "SELECT {PEER_COLS} FROM vpc_peerings ORDER BY created_at, id"
        ))
        .fetch_all(&self.db.read)
        .await?;
        let all: Vec<VpcPeering> = rows
            .iter()
            .map(|r| peering_from_row(r).map(|p| p.0))
            .collect::<Result<_>>()?;
        if vis.all {
            return Ok(all);
        }
        let mut out = Vec::new();
        for p in all {
            if self.project_seen(vis, p.requester_project_id).await?
                || self.project_seen(vis, p.accepter_project_id).await?
            {
                out.push(p);
            }
        }
        Ok(out)
    }

    async fn project_seen(&self, vis: &Visibility, project: Uuid) -> Result<bool> {
        if vis.projects.contains(&project) {
            return Ok(true);
        }
        let vdc: Option<String> = sqlx::query_scalar("SELECT vdc_id FROM projects WHERE id = $1")
            .bind(project.to_string())
            .fetch_optional(&self.db.read)
            .await?;
        let Some(vdc) = vdc.and_then(|v| Uuid::parse_str(&v).ok()) else {
            return Ok(false);
        };
        let chain = self.vdc_chain(vdc).await?;
        Ok(chain.iter().any(|v| vis.vdcs.contains(v)))
    }

    pub async fn peering_set_status(&self, id: Uuid, status: PeeringStatus) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let (p, _) = sqlx::query(&format!(
            "SELECT {PEER_COLS} FROM vpc_peerings WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| peering_from_row(&r))
        .transpose()?
        .ok_or_else(|| Error::not_found("VPC peering", id))?;
        if p.status != PeeringStatus::PendingAcceptance {
            return Err(Error::conflict(format!(
                "peering {id} is {}; only a pending one can be accepted or rejected",
                p.status.as_str()
            )));
        }
        sqlx::query("UPDATE vpc_peerings SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now_text())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        bump_vpc_tx(&mut tx, p.requester_vpc_id).await?;
        bump_vpc_tx(&mut tx, p.accepter_vpc_id).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn peering_delete(&self, id: Uuid) -> Result<()> {
        let mut tx = self.db.write.begin().await?;
        let (p, _) = sqlx::query(&format!(
            "SELECT {PEER_COLS} FROM vpc_peerings WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| peering_from_row(&r))
        .transpose()?
        .ok_or_else(|| Error::not_found("VPC peering", id))?;
        sqlx::query("DELETE FROM vpc_peerings WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        bump_vpc_tx(&mut tx, p.requester_vpc_id).await?;
        bump_vpc_tx(&mut tx, p.accepter_vpc_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every other VPC's range a VPC routes to through active peerings.
    pub async fn peered_vpcs(&self, vpc: Uuid) -> Result<Vec<Uuid>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT requester_vpc_id, accepter_vpc_id FROM vpc_peerings WHERE status = 'active' \
             AND (requester_vpc_id = $1 OR accepter_vpc_id = $1)",
        )
        .bind(vpc.to_string())
        .fetch_all(&self.db.read)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(a, b)| {
                let other = if a == vpc.to_string() { b } else { a };
                Uuid::parse_str(&other).ok()
            })
            .collect())
    }

    // ------------------------------------------------------------ instances and networks

    /// Free a deleted instance's ports: those made for it go (their elastic IPs come
    /// unbound), others become free again.
    pub(crate) async fn instance_ports_release_tx(tx: &mut Tx, instance: Uuid) -> Result<()> {
        let ports: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT id, delete_with_instance, vpc_id FROM ports WHERE instance_id = $1",
        )
        .bind(instance.to_string())
        .fetch_all(&mut **tx)
        .await?;
        let mut vpcs = BTreeSet::new();
        for (id, owned, vpc) in ports {
            vpcs.insert(vpc);
            let id = parse_id(&id)?;
            if owned != 0 {
                sqlx::query("UPDATE elastic_ips SET port_id = NULL WHERE port_id = $1")
                    .bind(id.to_string())
                    .execute(&mut **tx)
                    .await?;
                drop_port_tx(tx, id).await?;
            } else {
                sqlx::query("UPDATE ports SET instance_id = NULL, updated_at = $1 WHERE id = $2")
                    .bind(now_text())
                    .bind(id.to_string())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        for v in vpcs {
            bump_vpc_tx(tx, parse_id(&v)?).await?;
        }
        Ok(())
    }

    /// The NICs of every instance on a host.
    pub async fn nics_on_host(&self, host: Uuid) -> Result<HashMap<Uuid, Vec<DesiredNic>>> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT p.instance_id, p.id, p.mac, p.vpc_id, p.subnet_id FROM ports p \
             JOIN instances i ON i.id = p.instance_id WHERE i.host_id = $1 \
             ORDER BY p.instance_id, p.position, p.id",
        )
        .bind(host.to_string())
        .fetch_all(&self.db.read)
        .await?;
        let mut out: HashMap<Uuid, Vec<DesiredNic>> = HashMap::new();
        for (inst, port, mac, vpc, subnet) in rows {
            out.entry(parse_id(&inst)?).or_default().push(DesiredNic {
                port_id: parse_id(&port)?,
                mac,
                vpc_id: parse_id(&vpc)?,
                subnet_id: parse_id(&subnet)?,
            });
        }
        Ok(out)
    }

    /// The network of a host: VPCs whose router it runs or that have ports of its
    /// instances, their security groups, the peerings between its routers, the external
    /// network of its zone.
    /// Metadata of the instances with ports in `vpc` that run on hosts other than `host`.
    async fn remote_port_metadata(
        &self,
        vpc: Uuid,
        host: Uuid,
    ) -> Result<HashMap<Uuid, PortMetadata>> {
        let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT DISTINCT i.id, i.name, i.ssh_keys, i.user_data FROM instances i \
             JOIN ports p ON p.instance_id = i.id \
             WHERE p.vpc_id = $1 AND i.host_id IS NOT NULL AND i.host_id <> $2",
        )
        .bind(vpc.to_string())
        .bind(host.to_string())
        .fetch_all(&self.db.read)
        .await?;
        rows.into_iter()
            .map(|(id, hostname, keys, user_data)| {
                Ok((
                    parse_id(&id)?,
                    PortMetadata {
                        hostname,
                        ssh_keys: serde_json::from_str(&keys).unwrap_or_default(),
                        user_data,
                    },
                ))
            })
            .collect()
    }

    pub async fn network_desired(&self, host: Uuid) -> Result<DesiredNetwork> {
        let facts: Option<(String, String)> =
            sqlx::query_as("SELECT facts, availability_zone FROM hosts WHERE id = $1")
                .bind(host.to_string())
                .fetch_optional(&self.db.read)
                .await?;
        let Some((facts, az)) = facts else {
            return Ok(DesiredNetwork::default());
        };
        let vpc_rows = sqlx::query(&format!(
            "SELECT {VPC_COLS} FROM vpcs WHERE router_host_id = $1 OR id IN \
             (SELECT p.vpc_id FROM ports p JOIN instances i ON i.id = p.instance_id WHERE i.host_id = $1) \
             ORDER BY id"
        ))
        .bind(host.to_string())
        .fetch_all(&self.db.read)
        .await?;
        let vpcs: Vec<VpcRow> = vpc_rows.iter().map(vpc_from_row).collect::<Result<_>>()?;
        // Most hosts of a large cloud have no network of a VPC at a given moment (and every
        // desired-state answer builds this): nothing more to read then.
        if vpcs.is_empty() {
            return Ok(DesiredNetwork::default());
        }
        let facts: stratus_api::HostFacts = serde_json::from_str(&facts).unwrap_or_default();
        // Tunnel addresses of every host, and where each port's instance runs.
        let tunnels: HashMap<String, String> =
            sqlx::query_as::<_, (String, String)>("SELECT id, facts FROM hosts")
                .fetch_all(&self.db.read)
                .await?
                .into_iter()
                .filter_map(|(id, f)| {
                    let f: stratus_api::HostFacts = serde_json::from_str(&f).ok()?;
                    (!f.tunnel_ip.is_empty()).then_some((id, f.tunnel_ip))
                })
                .collect();
        let mut out = DesiredNetwork {
            tunnel_ip: (!facts.tunnel_ip.is_empty()).then_some(facts.tunnel_ip.clone()),
            ..DesiredNetwork::default()
        };
        let mut groups_needed: BTreeSet<Uuid> = BTreeSet::new();
        let mut external: Option<ExternalNetwork> = None;
        for v in &vpcs {
            let subnets = sqlx::query(&format!(
                "SELECT {SUBNET_COLS} FROM subnets s WHERE s.vpc_id = $1 ORDER BY s.id"
            ))
            .bind(v.api.id.to_string())
            .fetch_all(&self.db.read)
            .await?
            .iter()
            .map(subnet_from_row)
            .collect::<Result<Vec<_>>>()?;
            let ports: Vec<PortPlace> =
                sqlx::query_as(
                    "SELECT p.id, p.subnet_id, p.mac, p.ip, p.instance_id, i.host_id FROM ports p \
                     LEFT JOIN instances i ON i.id = p.instance_id WHERE p.vpc_id = $1 ORDER BY p.ip_num",
                )
                .bind(v.api.id.to_string())
                .fetch_all(&self.db.read)
                .await?;
            let port_ids: Vec<Uuid> = ports
                .iter()
                .filter_map(|p| Uuid::parse_str(&p.0).ok())
                .collect();
            let groups = self.groups_of_ports(&port_ids).await?;
            let remote_meta = if v.router_host_id == Some(host) {
                self.remote_port_metadata(v.api.id, host).await?
            } else {
                HashMap::new()
            };
            let acls: HashMap<Uuid, Vec<AclRule>> = sqlx::query_as::<_, (String, String)>(
                "SELECT id, rules FROM network_acls WHERE vpc_id = $1",
            )
            .bind(v.api.id.to_string())
            .fetch_all(&self.db.read)
            .await?
            .into_iter()
            .filter_map(|(id, r)| {
                Some((Uuid::parse_str(&id).ok()?, serde_json::from_str(&r).ok()?))
            })
            .collect();
            let mut desired_subnets = Vec::with_capacity(subnets.len());
            for s in &subnets {
                let mut vteps: BTreeSet<String> = BTreeSet::new();
                let mut dports = Vec::new();
                for (pid, sid, mac, ip, inst, phost) in &ports {
                    if *sid != s.api.id.to_string() {
                        continue;
                    }
                    let pid = parse_id(pid)?;
                    let local = phost.as_deref() == Some(host.to_string().as_str());
                    if let Some(h) = phost.as_deref().filter(|h| *h != host.to_string()) {
                        if let Some(t) = tunnels.get(h) {
                            vteps.insert(t.clone());
                        }
                    }
                    let sgs = groups.get(&pid).cloned().unwrap_or_default();
                    if local {
                        groups_needed.extend(sgs.iter().copied());
                    }
                    let instance_id = inst.as_deref().and_then(|i| Uuid::parse_str(i).ok());
                    // The router serves metadata to instances on every host of the VPC.
                    let metadata = match instance_id {
                        Some(i) if !local && v.router_host_id == Some(host) => {
                            remote_meta.get(&i).cloned()
                        }
                        _ => None,
                    };
                    dports.push(DesiredPort {
                        id: pid,
                        mac: mac.clone(),
                        ip: ip.clone(),
                        instance_id,
                        local,
                        security_group_ids: sgs,
                        metadata,
                    });
                }
                // The router's host is the other end for every host without it.
                if let Some(rh) = v.router_host_id.filter(|r| *r != host) {
                    if let Some(t) = tunnels.get(&rh.to_string()) {
                        vteps.insert(t.clone());
                    }
                }
                vteps.remove(&facts.tunnel_ip);
                desired_subnets.push(DesiredSubnet {
                    id: s.api.id,
                    cidr: s.api.cidr.clone(),
                    gateway_ip: s.api.gateway_ip.clone(),
                    dhcp_enabled: s.api.dhcp_enabled,
                    dns_servers: s.api.dns_servers.clone(),
                    vni: s.vni,
                    remote_vteps: vteps.into_iter().collect(),
                    ports: dports,
                    acl: s
                        .api
                        .acl_id
                        .and_then(|a| acls.get(&a).cloned())
                        .unwrap_or_default(),
                });
            }
            let router = v.router_host_id == Some(host);
            let mut eips = Vec::new();
            let mut snat_ip = None;
            if router {
                let ext = match v.api.external_network_id {
                    Some(e) => self.external_network_get(e).await?,
                    None => None,
                };
                let prefix = ext
                    .as_ref()
                    .and_then(|e| e.cidr.split_once('/').map(|(_, l)| l.to_string()))
                    .unwrap_or_else(|| "32".into());
                snat_ip = v.snat_address.map(|a| format!("{}/{prefix}", ip_text(a)));
                let rows: Vec<(String, i64, String, String, String)> = sqlx::query_as(
                    "SELECT e.id, e.address, p.ip, p.id, e.external_network_id FROM elastic_ips e \
                     JOIN ports p ON p.id = e.port_id WHERE p.vpc_id = $1 ORDER BY e.address",
                )
                .bind(v.api.id.to_string())
                .fetch_all(&self.db.read)
                .await?;
                for (id, address, fixed, port, net) in rows {
                    let len = match self.external_network_get(parse_id(&net)?).await? {
                        Some(n) => {
                            if external.is_none() {
                                external = Some(n.clone());
                            }
                            n.cidr
                                .split_once('/')
                                .map(|(_, l)| l.to_string())
                                .unwrap_or_else(|| "32".into())
                        }
                        None => "32".into(),
                    };
                    eips.push(DesiredElasticIp {
                        id: parse_id(&id)?,
                        address: format!("{}/{len}", ip_text(address as u32)),
                        fixed_ip: fixed,
                        port_id: parse_id(&port)?,
                    });
                }
                if external.is_none() && v.snat_address.is_some() {
                    external = ext;
                }
            }
            out.vpcs.push(DesiredVpc {
                id: v.api.id,
                generation: v.generation,
                cidr: v.api.cidr.clone(),
                router,
                subnets: desired_subnets,
                snat_ip,
                elastic_ips: eips,
                deleted: v.deleted,
            });
        }
        // Groups of local ports, and the groups their rules name as remotes.
        let rules = self
            .rules_of(&groups_needed.iter().copied().collect::<Vec<_>>())
            .await?;
        let remotes: BTreeSet<Uuid> = rules
            .values()
            .flatten()
            .filter_map(|r| r.remote_group_id)
            .collect();
        let all: BTreeSet<Uuid> = groups_needed.union(&remotes).copied().collect();
        let mut rules = self
            .rules_of(&all.iter().copied().collect::<Vec<_>>())
            .await?;
        for g in all {
            let members: Vec<(String,)> = sqlx::query_as(
                "SELECT p.ip FROM ports p JOIN port_security_groups g ON g.port_id = p.id \
                 WHERE g.group_id = $1 ORDER BY p.ip_num",
            )
            .bind(g.to_string())
            .fetch_all(&self.db.read)
            .await?;
            out.security_groups.push(DesiredSecurityGroup {
                id: g,
                rules: rules.remove(&g).unwrap_or_default(),
                member_ips: members.into_iter().map(|(ip,)| ip).collect(),
            });
        }
        // Peerings with a router here: both (a veth pair on this host), or one, the other
        // router's host reached over a VXLAN link.
        let routers: HashSet<Uuid> = vpcs
            .iter()
            .filter(|v| v.router_host_id == Some(host))
            .map(|v| v.api.id)
            .collect();
        let peers = sqlx::query(&format!(
            "SELECT {PEER_COLS} FROM vpc_peerings WHERE status = 'active' ORDER BY id"
        ))
        .fetch_all(&self.db.read)
        .await?;
        for r in &peers {
            let (p, index) = peering_from_row(r)?;
            let (a, b) = (p.requester_vpc_id, p.accepter_vpc_id);
            let (here_a, here_b) = (routers.contains(&a), routers.contains(&b));
            if !here_a && !here_b {
                continue;
            }
            let remote = if here_a && here_b {
                None
            } else {
                let far = if here_a { b } else { a };
                let far_host = self.vpc_get(far).await?.and_then(|v| v.router_host_id);
                // Without the far host's tunnel address there is no link to make (the API
                // refuses such peerings; a host may lose its address later).
                let Some(vtep) = far_host.and_then(|h| tunnels.get(&h.to_string())) else {
                    continue;
                };
                Some(PeeringRemote {
                    vtep: vtep.clone(),
                    vni: PEERING_VNI_BASE + (index as u32 % 16384),
                })
            };
            let (cidrs_a, cidrs_b) = (
                self.subnet_cidrs(a, &out.vpcs).await?,
                self.subnet_cidrs(b, &out.vpcs).await?,
            );
            out.peerings.push(DesiredPeering {
                id: p.id,
                vpc_a: a,
                vpc_b: b,
                cidrs_a,
                cidrs_b,
                link_cidr: link_cidr(index),
                remote,
            });
        }
        // The zone's external network (where this host's routers' uplinks go).
        if external.is_none() {
            external = self
                .external_network_list()
                .await?
                .into_iter()
                .find(|e| e.availability_zone == az);
        }
        out.external = external.map(|e| DesiredExternal {
            id: e.id,
            bridge: e.bridge,
            cidr: e.cidr,
            gateway_ip: e.gateway_ip,
        });
        Ok(out)
    }

    /// The subnet ranges of a VPC: from the desired state being built when it is there,
    /// else from the store (the far side of a peering across hosts).
    async fn subnet_cidrs(&self, vpc: Uuid, built: &[DesiredVpc]) -> Result<Vec<String>> {
        if let Some(v) = built.iter().find(|v| v.id == vpc) {
            return Ok(v.subnets.iter().map(|s| s.cidr.clone()).collect());
        }
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT cidr FROM subnets WHERE vpc_id = $1 ORDER BY id")
                .bind(vpc.to_string())
                .fetch_all(&self.db.read)
                .await?;
        Ok(rows.into_iter().map(|(c,)| c).collect())
    }

    /// Recount of network usage per project (VPCs, elastic IPs, security groups), for the
    /// quota consistency check.
    pub(crate) async fn network_usage(&self) -> Result<Vec<(String, QuotaResource, i64)>> {
        let mut out = Vec::new();
        for (table, res) in [
            ("vpcs", QuotaResource::Vpcs),
            ("elastic_ips", QuotaResource::ElasticIps),
            ("security_groups", QuotaResource::SecurityGroups),
        ] {
            let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
                "SELECT project_id, COUNT(*) FROM {table} GROUP BY project_id"
            ))
            .fetch_all(&self.db.read)
            .await?;
            out.extend(rows.into_iter().map(|(p, n)| (p, res, n)));
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------- helpers in a transaction

fn parse_id(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| Error::internal(format!("bad id {s:?}: {e}")))
}

async fn vpc_get_tx(tx: &mut Tx, id: Uuid) -> Result<Option<VpcRow>> {
    let row = sqlx::query(&format!("SELECT {VPC_COLS} FROM vpcs WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| vpc_from_row(&r)).transpose()
}

/// A VPC changed: its generation moves on, and every host that has it, or routes to it
/// through a peering, re-reads its state.
pub(crate) async fn bump_vpc_tx(tx: &mut Tx, vpc: Uuid) -> Result<()> {
    sqlx::query("UPDATE vpcs SET generation = generation + 1 WHERE id = $1")
        .bind(vpc.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE hosts SET generation = generation + 1 WHERE id IN \
         (SELECT router_host_id FROM vpcs WHERE id = $1 AND router_host_id IS NOT NULL) \
         OR id IN (SELECT i.host_id FROM ports p JOIN instances i ON i.id = p.instance_id \
         WHERE p.vpc_id = $1 AND i.host_id IS NOT NULL) \
         OR id IN (SELECT v.router_host_id FROM vpc_peerings x JOIN vpcs v \
         ON v.id = x.requester_vpc_id OR v.id = x.accepter_vpc_id \
         WHERE (x.requester_vpc_id = $1 OR x.accepter_vpc_id = $1) AND v.router_host_id IS NOT NULL)",
    )
    .bind(vpc.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A security group changed: every host with a port of its project re-reads its state.
async fn touch_group_tx(tx: &mut Tx, group: Uuid) -> Result<()> {
    sqlx::query("UPDATE security_groups SET updated_at = $1 WHERE id = $2")
        .bind(now_text())
        .bind(group.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE hosts SET generation = generation + 1 WHERE id IN \
         (SELECT i.host_id FROM ports p JOIN instances i ON i.id = p.instance_id \
          JOIN security_groups g ON g.project_id = p.project_id WHERE g.id = $1 AND i.host_id IS NOT NULL)",
    )
    .bind(group.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Take the lowest free address of `pool` on `net` for an owner.
async fn take_external_tx(
    tx: &mut Tx,
    net: Uuid,
    pool: (u32, u32),
    kind: &str,
    owner: Uuid,
) -> Result<u32> {
    let used: Vec<(i64,)> = sqlx::query_as(
        "SELECT address FROM external_addresses WHERE external_network_id = $1 ORDER BY address",
    )
    .bind(net.to_string())
    .fetch_all(&mut **tx)
    .await?;
    let used: Vec<u32> = used.into_iter().map(|(a,)| a as u32).collect();
    let address = lowest_free(&[pool], &used).ok_or_else(|| {
        Error::conflict(format!(
            "the external network's pool ({} – {}) has no free address",
            ip_text(pool.0),
            ip_text(pool.1)
        ))
    })?;
    sqlx::query(
        "INSERT INTO external_addresses (external_network_id, address, owner_kind, owner_id) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(net.to_string())
    .bind(i64::from(address))
    .bind(kind)
    .bind(owner.to_string())
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict("address taken")
        } else {
            e.into()
        }
    })?;
    Ok(address)
}

async fn release_external_tx(tx: &mut Tx, net: &str, address: u32) -> Result<()> {
    sqlx::query("DELETE FROM external_addresses WHERE external_network_id = $1 AND address = $2")
        .bind(net)
        .bind(i64::from(address))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// SNAT on (an address of `to`'s pool) or off.
async fn set_snat_tx(tx: &mut Tx, vpc: Uuid, to: Option<(Uuid, (u32, u32))>) -> Result<()> {
    let v = vpc_get_tx(tx, vpc)
        .await?
        .ok_or_else(|| Error::not_found("VPC", vpc))?;
    match (v.snat_address, to) {
        (Some(a), None) => {
            if let Some(net) = v.api.external_network_id {
                release_external_tx(tx, &net.to_string(), a).await?;
            }
            sqlx::query("UPDATE vpcs SET snat_address = NULL, updated_at = $1 WHERE id = $2")
                .bind(now_text())
                .bind(vpc.to_string())
                .execute(&mut **tx)
                .await?;
        }
        (None, Some((net, pool))) => {
            let a = take_external_tx(tx, net, pool, "snat", vpc).await?;
            sqlx::query(
                "UPDATE vpcs SET snat_address = $1, external_network_id = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(i64::from(a))
            .bind(net.to_string())
            .bind(now_text())
            .bind(vpc.to_string())
            .execute(&mut **tx)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

async fn finalize_vpc_tx(tx: &mut Tx, v: &VpcRow) -> Result<()> {
    if let (Some(a), Some(net)) = (v.snat_address, v.api.external_network_id) {
        release_external_tx(tx, &net.to_string(), a).await?;
    }
    bump_vpc_tx(tx, v.api.id).await?;
    sqlx::query("DELETE FROM vpcs WHERE id = $1")
        .bind(v.api.id.to_string())
        .execute(&mut **tx)
        .await?;
    let chain = chain_of(tx, v.api.project_id, v.api.vdc_id).await?;
    Store::quota_charge(tx, &chain, &one(QuotaResource::Vpcs, -1)).await?;
    Ok(())
}

/// The project's default group (made, with its quota, the first time).
async fn default_group_tx(tx: &mut Tx, project: Uuid, vdc: Uuid, chain: &[Uuid]) -> Result<Uuid> {
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT id FROM security_groups WHERE project_id = $1 AND is_default = 1",
    )
    .bind(project.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = existing {
        return parse_id(&id);
    }
    let id = Uuid::new_v4();
    insert_group_tx(
        tx,
        id,
        project,
        vdc,
        "default",
        "The project's default group: members reach each other; other ingress is denied",
        true,
        chain,
    )
    .await?;
    insert_rule_tx(
        tx,
        id,
        &SecurityGroupRule {
            id: Uuid::new_v4(),
            direction: Direction::Ingress,
            protocol: Protocol::Any,
            port_min: None,
            port_max: None,
            remote_cidr: None,
            remote_group_id: Some(id),
            description: "members of this group".into(),
        },
    )
    .await?;
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn insert_group_tx(
    tx: &mut Tx,
    id: Uuid,
    project: Uuid,
    vdc: Uuid,
    name: &str,
    description: &str,
    default: bool,
    chain: &[Uuid],
) -> Result<()> {
    Store::quota_charge(tx, chain, &one(QuotaResource::SecurityGroups, 1)).await?;
    let now = now_text();
    sqlx::query(&format!(
        "INSERT INTO security_groups ({SG_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
    ))
    .bind(id.to_string())
    .bind(name)
    .bind(description)
    .bind(project.to_string())
    .bind(vdc.to_string())
    .bind(default as i64)
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    metering_event(
        tx,
        "security_group",
        id,
        project,
        vdc,
        "created",
        serde_json::json!({}),
    )
    .await
}

async fn insert_rule_tx(tx: &mut Tx, group: Uuid, r: &SecurityGroupRule) -> Result<()> {
    sqlx::query(
        "INSERT INTO security_group_rules (id, group_id, direction, protocol, port_min, port_max, \
         remote_cidr, remote_group_id, description, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(r.id.to_string())
    .bind(group.to_string())
    .bind(direction_str(r.direction))
    .bind(protocol_str(r.protocol))
    .bind(r.port_min)
    .bind(r.port_max)
    .bind(r.remote_cidr.as_deref())
    .bind(r.remote_group_id.map(|g| g.to_string()))
    .bind(&r.description)
    .bind(now_text())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Insert one port: its address (asked for or the lowest free), MAC, groups.
async fn port_insert_tx(tx: &mut Tx, n: &NewPort) -> Result<()> {
    let s = sqlx::query(&format!(
        "SELECT {SUBNET_COLS} FROM subnets s WHERE s.id = $1"
    ))
    .bind(n.subnet_id.to_string())
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| subnet_from_row(&r))
    .transpose()?
    .ok_or_else(|| Error::not_found("subnet", n.subnet_id))?;
    let pools: Vec<(u32, u32)> = s
        .api
        .allocation_pools
        .iter()
        .filter_map(|p| {
            Some((
                u32::from(p.start.parse::<std::net::Ipv4Addr>().ok()?),
                u32::from(p.end.parse::<std::net::Ipv4Addr>().ok()?),
            ))
        })
        .collect();
    let used: Vec<(i64,)> =
        sqlx::query_as("SELECT ip_num FROM ports WHERE subnet_id = $1 ORDER BY ip_num")
            .bind(n.subnet_id.to_string())
            .fetch_all(&mut **tx)
            .await?;
    let used: Vec<u32> = used.into_iter().map(|(a,)| a as u32).collect();
    let ip = match n.ip {
        Some(ip) => {
            if used.contains(&ip) {
                return Err(Error::conflict(format!(
                    "ip: {} is already used in subnet {}",
                    ip_text(ip),
                    n.subnet_id
                )));
            }
            ip
        }
        None => lowest_free(&pools, &used).ok_or_else(|| {
            Error::conflict(format!(
                "subnet {} ({}) has no free address left in its allocation pools",
                n.subnet_id, s.api.cidr
            ))
        })?,
    };
    let groups = match &n.security_groups {
        Some(g) => g.clone(),
        None => {
            let chain = chain_of(tx, s.api.project_id, s.api.vdc_id).await?;
            vec![default_group_tx(tx, s.api.project_id, s.api.vdc_id, &chain).await?]
        }
    };
    let now = now_text();
    sqlx::query(
        "INSERT INTO ports (id, name, project_id, vdc_id, vpc_id, subnet_id, mac, ip, ip_num, instance_id, \
         position, delete_with_instance, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(n.id.to_string())
    .bind(&n.name)
    .bind(s.api.project_id.to_string())
    .bind(s.api.vdc_id.to_string())
    .bind(s.api.vpc_id.to_string())
    .bind(n.subnet_id.to_string())
    .bind(crate::app::ipam::random_mac())
    .bind(ip_text(ip))
    .bind(i64::from(ip))
    .bind(n.instance.map(|(i, _)| i.to_string()))
    .bind(n.instance.map(|(_, p)| p).unwrap_or(0))
    .bind(n.instance.is_some() as i64)
    .bind(&now)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict("address taken")
        } else {
            e.into()
        }
    })?;
    for g in groups {
        sqlx::query("INSERT INTO port_security_groups (port_id, group_id) VALUES ($1, $2)")
            .bind(n.id.to_string())
            .bind(g.to_string())
            .execute(&mut **tx)
            .await?;
    }
    bump_vpc_tx(tx, s.api.vpc_id).await?;
    Ok(())
}

async fn drop_port_tx(tx: &mut Tx, id: Uuid) -> Result<()> {
    let vpc: Option<String> = sqlx::query_scalar("SELECT vpc_id FROM ports WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM port_security_groups WHERE port_id = $1")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE elastic_ips SET port_id = NULL WHERE port_id = $1")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    // The hosts must hear of it before the row (and with it the port's host) is gone.
    if let Some(v) = vpc {
        bump_vpc_tx(tx, parse_id(&v)?).await?;
    }
    sqlx::query("DELETE FROM ports WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn drop_eip_tx(tx: &mut Tx, e: &ElasticIp) -> Result<()> {
    let address = crate::app::ipam::parse_ip("address", &e.address)?;
    release_external_tx(tx, &e.external_network_id.to_string(), address).await?;
    sqlx::query("DELETE FROM elastic_ips WHERE id = $1")
        .bind(e.id.to_string())
        .execute(&mut **tx)
        .await?;
    let chain = chain_of(tx, e.project_id, e.vdc_id).await?;
    Store::quota_charge(tx, &chain, &one(QuotaResource::ElasticIps, -1)).await?;
    metering_event(
        tx,
        "elastic_ip",
        e.id,
        e.project_id,
        e.vdc_id,
        "deleted",
        serde_json::json!({"address": e.address}),
    )
    .await
}

impl super::Sortable for ElasticIp {
    fn sort_value(&self, _column: &str) -> String {
        time_text(self.created_at)
    }
    fn id_text(&self) -> String {
        self.id.to_string()
    }
}
