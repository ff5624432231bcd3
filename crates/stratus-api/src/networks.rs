//! Networking: VPCs, subnets, ports, security groups, network ACLs (the virtual firewall),
//! elastic IPs, VPC peering and the external network — and the part of the agent protocol
//! that carries them.
//!
//! Addresses travel as text in their usual notation (`10.0.1.0/24`, `10.0.1.5`,
//! `fa:16:3e:00:00:01`); the control plane validates them and owns the address plan (IPAM).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

// ---------------------------------------------------------------- external network

/// The provider ("public") network of a zone: where SNAT and elastic IPs come from. Each
/// host attaches its VPC routers to `bridge`, a Linux bridge on the host that an operator
/// connects to the real uplink.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExternalNetwork {
    pub id: Uuid,
    pub name: String,
    pub availability_zone: String,
    pub cidr: String,
    pub gateway_ip: String,
    /// Addresses handed out for SNAT and elastic IPs: `first`–`last` within `cidr`.
    pub pool_start: String,
    pub pool_end: String,
    pub bridge: String,
    /// Addresses of the pool in use (SNAT of VPC routers and elastic IPs).
    pub used: i64,
    pub total: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalNetworkCreate {
    pub name: String,
    /// Default: the local agent's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub cidr: String,
    pub gateway_ip: String,
    pub pool_start: String,
    pub pool_end: String,
    /// Host bridge name (1–15 characters; default `br-ext`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

// ---------------------------------------------------------------- VPCs and subnets

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkStatus {
    /// Being built on its hosts.
    Building,
    Active,
    Deleting,
    /// A host could not build it (see `status_reason`); it is retried.
    Error,
}

impl NetworkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkStatus::Building => "building",
            NetworkStatus::Active => "active",
            NetworkStatus::Deleting => "deleting",
            NetworkStatus::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<NetworkStatus> {
        [
            NetworkStatus::Building,
            NetworkStatus::Active,
            NetworkStatus::Deleting,
            NetworkStatus::Error,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A virtual private cloud: an isolated network of a project, with its router.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Vpc {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    /// The address space its subnets come from (e.g. `10.0.0.0/16`).
    pub cidr: String,
    pub availability_zone: String,
    /// SNAT: the one public address the VPC's instances without an elastic IP share to
    /// reach the external network (none until `snat` is enabled).
    pub snat_enabled: bool,
    pub snat_ip: Option<String>,
    pub external_network_id: Option<Uuid>,
    pub status: NetworkStatus,
    pub status_reason: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcCreate {
    pub project_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// An IPv4 private range, /8 to /28 (RFC 1918 or 100.64.0.0/10).
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Give the VPC a shared public address for outbound traffic (SNAT).
    #[serde(default)]
    pub snat: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Turn SNAT on (takes an address from the external network's pool) or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NetworkFilter {
    pub project_id: Option<Uuid>,
    pub vpc_id: Option<Uuid>,
    pub subnet_id: Option<Uuid>,
    pub instance_id: Option<Uuid>,
}

/// An address range of a VPC: one L2 segment with a gateway on the VPC's router.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Subnet {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub vpc_id: Uuid,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub cidr: String,
    pub gateway_ip: String,
    pub dhcp_enabled: bool,
    pub dns_servers: Vec<String>,
    /// Ranges fixed addresses are picked from: `[start, end]`, inclusive.
    pub allocation_pools: Vec<AddressRange>,
    /// The network ACL that filters traffic into and out of it, if any.
    pub acl_id: Option<Uuid>,
    pub ports_used: i64,
    pub addresses_total: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AddressRange {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetCreate {
    pub vpc_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Inside the VPC's range, /16 to /29, not overlapping its other subnets.
    pub cidr: String,
    /// Default: the first address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ip: Option<String>,
    #[serde(default = "yes")]
    pub dhcp_enabled: bool,
    #[serde(default)]
    pub dns_servers: Vec<String>,
    /// Default: every address but the network, gateway and broadcast addresses.
    #[serde(default)]
    pub allocation_pools: Vec<AddressRange>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_enabled: Option<bool>,
    /// Associate a network ACL (null: none; absent: unchanged).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub acl_id: Option<Option<Uuid>>,
}

/// A field that may be absent (outer `None`), null (`Some(None)`) or set.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

// ---------------------------------------------------------------- ports

/// A virtual NIC on a subnet, with a fixed address; an instance has one per network it is in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Port {
    pub id: Uuid,
    pub name: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub vpc_id: Uuid,
    pub subnet_id: Uuid,
    pub mac: String,
    pub ip: String,
    pub instance_id: Option<Uuid>,
    pub security_group_ids: Vec<Uuid>,
    /// The elastic IP bound to it, if any.
    pub elastic_ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortCreate {
    pub subnet_id: Uuid,
    #[serde(default)]
    pub name: String,
    /// A free address of the subnet's pools (default: the lowest free one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Default: the project's default group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group_ids: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Replace the port's groups (applied to the running instance at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group_ids: Option<Vec<Uuid>>,
}

/// A NIC of a new instance: a subnet (a port is made) or an existing free port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group_ids: Option<Vec<Uuid>>,
}

// ---------------------------------------------------------------- security groups

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Traffic to the instance (or into the subnet).
    Ingress,
    /// Traffic from it (or out of the subnet).
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    Icmp,
}

/// A stateful security group: replies to allowed traffic always pass. Instances in a group
/// reach each other (the default group's rules say so); other ingress is dropped unless a
/// rule allows it; egress is allowed unless the group's egress rules say otherwise.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecurityGroup {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    /// The project's default group (made with the project's first VPC; cannot be deleted).
    pub default: bool,
    pub rules: Vec<SecurityGroupRule>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SecurityGroupRule {
    pub id: Uuid,
    pub direction: Direction,
    pub protocol: Protocol,
    /// TCP/UDP destination ports, inclusive (absent: all).
    pub port_min: Option<i64>,
    pub port_max: Option<i64>,
    /// Peer addresses (absent with no `remote_group_id`: anywhere).
    pub remote_cidr: Option<String>,
    /// Peer: the members of this group (of the same project).
    pub remote_group_id: Option<Uuid>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupCreate {
    pub project_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupRuleCreate {
    pub direction: Direction,
    #[serde(default = "any_protocol")]
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_group_id: Option<Uuid>,
    #[serde(default)]
    pub description: String,
}

fn any_protocol() -> Protocol {
    Protocol::Any
}

// ---------------------------------------------------------------- network ACLs

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AclAction {
    Allow,
    Deny,
}

/// The virtual firewall of subnets (spec 5.2.3.3): ordered allow/deny rules on the traffic
/// that enters or leaves the subnets it is associated with (through the VPC's router).
/// Stateless: return traffic needs its own rule. The first matching rule decides; traffic
/// no rule matches is allowed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NetworkAcl {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub vpc_id: Uuid,
    pub rules: Vec<AclRule>,
    pub subnet_ids: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AclRule {
    /// Lower first, 1–32766.
    pub priority: i64,
    pub action: AclAction,
    pub direction: Direction,
    pub protocol: Protocol,
    /// The other side's addresses (absent: any).
    pub cidr: Option<String>,
    /// Destination ports for TCP/UDP (absent: all).
    pub port_min: Option<i64>,
    pub port_max: Option<i64>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkAclCreate {
    pub vpc_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub rules: Vec<AclRule>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkAclUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Replace all rules (applied at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<AclRule>>,
}

// ---------------------------------------------------------------- elastic IPs

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ElasticIp {
    pub id: Uuid,
    pub project_id: Uuid,
    pub vdc_id: Uuid,
    pub external_network_id: Uuid,
    pub address: String,
    /// Bound to this port (1:1 NAT), if any.
    pub port_id: Option<Uuid>,
    pub instance_id: Option<Uuid>,
    pub fixed_ip: Option<String>,
    pub vpc_id: Option<Uuid>,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticIpCreate {
    pub project_id: Uuid,
    /// Default: the zone's external network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_network_id: Option<Uuid>,
    #[serde(default)]
    pub description: String,
}

/// Bind to a port (`port_id`), or the first port of an instance (`instance_id`); null both
/// to unbind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticIpBind {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Uuid>,
}

// ---------------------------------------------------------------- peering

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeeringStatus {
    /// Asked for by the requester's side; the other side must accept.
    PendingAcceptance,
    Active,
    Rejected,
}

impl PeeringStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PeeringStatus::PendingAcceptance => "pending_acceptance",
            PeeringStatus::Active => "active",
            PeeringStatus::Rejected => "rejected",
        }
    }
}

/// Two VPCs that route to each other on their private addresses (non-overlapping ranges).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VpcPeering {
    pub id: Uuid,
    pub name: String,
    pub requester_vpc_id: Uuid,
    pub requester_project_id: Uuid,
    pub accepter_vpc_id: Uuid,
    pub accepter_project_id: Uuid,
    pub status: PeeringStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcPeeringCreate {
    pub name: String,
    pub requester_vpc_id: Uuid,
    pub accepter_vpc_id: Uuid,
}

// ---------------------------------------------------------------- topology

/// A VPC as a graph for the console to draw: nodes (router, subnets, ports, instances,
/// elastic IPs, peered VPCs) and the edges between them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Topology {
    pub vpc_id: Uuid,
    pub nodes: Vec<TopologyNode>,
    pub edges: Vec<TopologyEdge>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopologyNode {
    pub id: Uuid,
    /// `router`, `subnet`, `port`, `instance`, `elastic_ip`, `peer_vpc` or `external`.
    pub kind: String,
    pub name: String,
    /// An address or range to print beside it.
    pub label: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopologyEdge {
    pub from: Uuid,
    pub to: Uuid,
}

// ---------------------------------------------------------------- agent protocol

/// A host's network: the VPCs it has ports of (or routes for), the security groups of those
/// ports, the peerings between those VPCs, and the external network its routers use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredNetwork {
    pub vpcs: Vec<DesiredVpc>,
    pub security_groups: Vec<DesiredSecurityGroup>,
    pub peerings: Vec<DesiredPeering>,
    pub external: Option<DesiredExternal>,
    /// This host's address for VXLAN (other hosts' ports of a subnet are reached through it).
    #[serde(default)]
    pub tunnel_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredExternal {
    pub id: Uuid,
    pub bridge: String,
    pub cidr: String,
    pub gateway_ip: String,
}

/// A VPC on this host: its router (a network namespace with a leg on every subnet), its
/// subnets and their ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredVpc {
    pub id: Uuid,
    /// Bumped whenever anything of this VPC changes.
    pub generation: i64,
    pub cidr: String,
    /// This host runs the VPC's router (gateways, DHCP, metadata, SNAT, elastic IPs); other
    /// hosts with ports of it only carry its subnets (bridges and VXLAN).
    pub router: bool,
    pub subnets: Vec<DesiredSubnet>,
    /// The router's address on the external network for SNAT (`a.b.c.d/len`), if enabled.
    pub snat_ip: Option<String>,
    pub elastic_ips: Vec<DesiredElasticIp>,
    /// Remove everything of it from the host; report `gone`.
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredSubnet {
    pub id: Uuid,
    pub cidr: String,
    pub gateway_ip: String,
    pub dhcp_enabled: bool,
    pub dns_servers: Vec<String>,
    /// VXLAN network identifier (unique per subnet).
    pub vni: i64,
    /// Other hosts' tunnel addresses with ports on this subnet.
    pub remote_vteps: Vec<String>,
    pub ports: Vec<DesiredPort>,
    /// The ordered rules of the subnet's network ACL (empty: none).
    pub acl: Vec<AclRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredPort {
    pub id: Uuid,
    pub mac: String,
    pub ip: String,
    /// The instance it belongs to (it is on this host when the instance is).
    pub instance_id: Option<Uuid>,
    /// True when the port's instance runs on this host (its tap is plugged here).
    pub local: bool,
    pub security_group_ids: Vec<Uuid>,
    /// What the router's metadata service tells the port's instance when that instance runs
    /// on another host (a local instance's comes with the instance itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PortMetadata>,
}

/// An instance's metadata as a router on another host serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PortMetadata {
    pub hostname: String,
    pub ssh_keys: Vec<String>,
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredSecurityGroup {
    pub id: Uuid,
    pub rules: Vec<SecurityGroupRule>,
    /// The fixed addresses of every port in the group (for rules naming it as the remote).
    pub member_ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredElasticIp {
    pub id: Uuid,
    /// `a.b.c.d/len` on the external network.
    pub address: String,
    pub fixed_ip: String,
    pub port_id: Uuid,
}

/// Routes between two VPC routers: both on this host (a veth pair joins them), or one here
/// and one on the host `remote` names (a point-to-point VXLAN link joins them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredPeering {
    pub id: Uuid,
    pub vpc_a: Uuid,
    pub vpc_b: Uuid,
    /// The subnets each side routes to the other.
    pub cidrs_a: Vec<String>,
    pub cidrs_b: Vec<String>,
    /// A /30 (link-local range 169.254.0.0/16) for the link between the routers: `a` takes
    /// the first address, `b` the second.
    pub link_cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<PeeringRemote>,
}

/// The far end of a peering whose other router runs on another host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeeringRemote {
    /// The other router host's tunnel address.
    pub vtep: String,
    /// The VXLAN network identifier of the link (distinct from every subnet's).
    pub vni: u32,
}

/// A NIC of an instance, plugged into its subnet's bridge on this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredNic {
    pub port_id: Uuid,
    pub mac: String,
    pub vpc_id: Uuid,
    pub subnet_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkState {
    Ready,
    Error,
    Gone,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VpcReport {
    pub id: Uuid,
    pub generation: i64,
    pub state: NetworkState,
    #[serde(default)]
    pub error: Option<String>,
}
