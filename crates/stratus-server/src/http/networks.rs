//! Handlers for networking: external networks, VPCs, subnets, ports, security groups,
//! network ACLs, elastic IPs and peering.

use axum::extract::State;
use axum::http::StatusCode;
use stratus_api::*;
use uuid::Uuid;

use super::extract::{Ctx, Json, Path, Query};
use super::{created, Created, Ok};
use crate::app::{self, AppRef};
use crate::error::Result;

/// The external (provider) networks SNAT and elastic IPs come from.
#[utoipa::path(get, path = "/v1/external-networks", operation_id = "external_network_list", tag = "networks",
    responses((status = 200, body = Vec<ExternalNetwork>), (status = "default", body = ErrorBody)))]
pub async fn external_network_list(
    State(app): State<AppRef>,
    ctx: Ctx,
) -> Ok<Vec<ExternalNetwork>> {
    Ok(axum::Json(
        app::networks::external_network_list(&app, &ctx.p).await?,
    ))
}

/// Define a zone's external network and its public address pool (operators).
#[utoipa::path(post, path = "/v1/external-networks", operation_id = "external_network_create", tag = "networks",
    request_body = ExternalNetworkCreate, responses((status = 201, body = ExternalNetwork), (status = "default", body = ErrorBody)))]
pub async fn external_network_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<ExternalNetworkCreate>,
) -> Created<ExternalNetwork> {
    created(app::networks::external_network_create(&app, &ctx.p, b).await?)
}

/// Delete an external network no address of which is in use.
#[utoipa::path(delete, path = "/v1/external-networks/{id}", operation_id = "external_network_delete", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn external_network_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::networks::external_network_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/vpcs", operation_id = "vpc_list", tag = "networks",
    params(ListParams, NetworkFilter), responses((status = 200, body = Page<Vpc>), (status = "default", body = ErrorBody)))]
pub async fn vpc_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<NetworkFilter>,
) -> Ok<Page<Vpc>> {
    Ok(axum::Json(
        app::networks::vpc_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Create a VPC (with the project's default security group the first time); its router
/// runs on a host of the zone.
#[utoipa::path(post, path = "/v1/vpcs", operation_id = "vpc_create", tag = "networks",
    request_body = VpcCreate, responses((status = 201, body = Vpc), (status = "default", body = ErrorBody)))]
pub async fn vpc_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<VpcCreate>,
) -> Created<Vpc> {
    created(app::networks::vpc_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/vpcs/{id}", operation_id = "vpc_view", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 200, body = Vpc), (status = "default", body = ErrorBody)))]
pub async fn vpc_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Vpc> {
    Ok(axum::Json(app::networks::vpc_view(&app, &ctx.p, id).await?))
}

#[utoipa::path(patch, path = "/v1/vpcs/{id}", operation_id = "vpc_update", tag = "networks",
    params(("id" = Uuid, Path)), request_body = VpcUpdate, responses((status = 200, body = Vpc), (status = "default", body = ErrorBody)))]
pub async fn vpc_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<VpcUpdate>,
) -> Ok<Vpc> {
    Ok(axum::Json(
        app::networks::vpc_update(&app, &ctx.p, id, b).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/vpcs/{id}", operation_id = "vpc_delete", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 202), (status = "default", body = ErrorBody)))]
pub async fn vpc_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::networks::vpc_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// The VPC as a graph for drawing: router, subnets, ports, instances, elastic IPs, peers.
#[utoipa::path(get, path = "/v1/vpcs/{id}/topology", operation_id = "vpc_topology", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 200, body = Topology), (status = "default", body = ErrorBody)))]
pub async fn vpc_topology(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<Topology> {
    Ok(axum::Json(
        app::networks::vpc_topology(&app, &ctx.p, id).await?,
    ))
}

#[utoipa::path(get, path = "/v1/subnets", operation_id = "subnet_list", tag = "networks",
    params(ListParams, NetworkFilter), responses((status = 200, body = Page<Subnet>), (status = "default", body = ErrorBody)))]
pub async fn subnet_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<NetworkFilter>,
) -> Ok<Page<Subnet>> {
    Ok(axum::Json(
        app::networks::subnet_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Create a subnet of a VPC (its gateway on the VPC's router, DHCP by default).
#[utoipa::path(post, path = "/v1/subnets", operation_id = "subnet_create", tag = "networks",
    request_body = SubnetCreate, responses((status = 201, body = Subnet), (status = "default", body = ErrorBody)))]
pub async fn subnet_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<SubnetCreate>,
) -> Created<Subnet> {
    created(app::networks::subnet_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/subnets/{id}", operation_id = "subnet_view", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 200, body = Subnet), (status = "default", body = ErrorBody)))]
pub async fn subnet_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Subnet> {
    Ok(axum::Json(
        app::networks::subnet_view(&app, &ctx.p, id).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/subnets/{id}", operation_id = "subnet_update", tag = "networks",
    params(("id" = Uuid, Path)), request_body = SubnetUpdate, responses((status = 200, body = Subnet), (status = "default", body = ErrorBody)))]
pub async fn subnet_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<SubnetUpdate>,
) -> Ok<Subnet> {
    Ok(axum::Json(
        app::networks::subnet_update(&app, &ctx.p, id, b).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/subnets/{id}", operation_id = "subnet_delete", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn subnet_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::networks::subnet_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/ports", operation_id = "port_list", tag = "networks",
    params(ListParams, NetworkFilter), responses((status = 200, body = Page<Port>), (status = "default", body = ErrorBody)))]
pub async fn port_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<NetworkFilter>,
) -> Ok<Page<Port>> {
    Ok(axum::Json(
        app::networks::port_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Create a port (a NIC with a fixed address) to give to an instance later.
#[utoipa::path(post, path = "/v1/ports", operation_id = "port_create", tag = "networks",
    request_body = PortCreate, responses((status = 201, body = Port), (status = "default", body = ErrorBody)))]
pub async fn port_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<PortCreate>,
) -> Created<Port> {
    created(app::networks::port_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/ports/{id}", operation_id = "port_view", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 200, body = Port), (status = "default", body = ErrorBody)))]
pub async fn port_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<Port> {
    Ok(axum::Json(
        app::networks::port_view(&app, &ctx.p, id).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/ports/{id}", operation_id = "port_update", tag = "networks",
    params(("id" = Uuid, Path)), request_body = PortUpdate, responses((status = 200, body = Port), (status = "default", body = ErrorBody)))]
pub async fn port_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<PortUpdate>,
) -> Ok<Port> {
    Ok(axum::Json(
        app::networks::port_update(&app, &ctx.p, id, b).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/ports/{id}", operation_id = "port_delete", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn port_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::networks::port_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/security-groups", operation_id = "security_group_list", tag = "security-groups",
    params(ListParams, NetworkFilter), responses((status = 200, body = Page<SecurityGroup>), (status = "default", body = ErrorBody)))]
pub async fn security_group_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<NetworkFilter>,
) -> Ok<Page<SecurityGroup>> {
    Ok(axum::Json(
        app::networks::security_group_list(&app, &ctx.p, q, f).await?,
    ))
}

#[utoipa::path(post, path = "/v1/security-groups", operation_id = "security_group_create", tag = "security-groups",
    request_body = SecurityGroupCreate, responses((status = 201, body = SecurityGroup), (status = "default", body = ErrorBody)))]
pub async fn security_group_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<SecurityGroupCreate>,
) -> Created<SecurityGroup> {
    created(app::networks::security_group_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/security-groups/{id}", operation_id = "security_group_view", tag = "security-groups",
    params(("id" = Uuid, Path)), responses((status = 200, body = SecurityGroup), (status = "default", body = ErrorBody)))]
pub async fn security_group_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<SecurityGroup> {
    Ok(axum::Json(
        app::networks::security_group_view(&app, &ctx.p, id).await?,
    ))
}

/// Delete a group no port uses (not the default group).
#[utoipa::path(delete, path = "/v1/security-groups/{id}", operation_id = "security_group_delete", tag = "security-groups",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn security_group_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::networks::security_group_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a rule; running instances get it at once.
#[utoipa::path(post, path = "/v1/security-groups/{id}/rules", operation_id = "security_group_rule_create", tag = "security-groups",
    params(("id" = Uuid, Path)), request_body = SecurityGroupRuleCreate, responses((status = 201, body = SecurityGroup), (status = "default", body = ErrorBody)))]
pub async fn security_group_rule_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<SecurityGroupRuleCreate>,
) -> Created<SecurityGroup> {
    created(app::networks::security_group_rule_create(&app, &ctx.p, id, b).await?)
}

/// Remove a rule; running instances lose it at once.
#[utoipa::path(delete, path = "/v1/security-groups/{id}/rules/{rule_id}", operation_id = "security_group_rule_delete", tag = "security-groups",
    params(("id" = Uuid, Path), ("rule_id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn security_group_rule_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path((id, rule_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode> {
    app::networks::security_group_rule_delete(&app, &ctx.p, id, rule_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/network-acls", operation_id = "acl_list", tag = "network-acls",
    params(ListParams, NetworkFilter), responses((status = 200, body = Page<NetworkAcl>), (status = "default", body = ErrorBody)))]
pub async fn acl_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<NetworkFilter>,
) -> Ok<Page<NetworkAcl>> {
    Ok(axum::Json(
        app::networks::acl_list(&app, &ctx.p, q, f).await?,
    ))
}

/// A network ACL (virtual firewall) of a VPC; associate it with subnets (subnet_update).
#[utoipa::path(post, path = "/v1/network-acls", operation_id = "acl_create", tag = "network-acls",
    request_body = NetworkAclCreate, responses((status = 201, body = NetworkAcl), (status = "default", body = ErrorBody)))]
pub async fn acl_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<NetworkAclCreate>,
) -> Created<NetworkAcl> {
    created(app::networks::acl_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/network-acls/{id}", operation_id = "acl_view", tag = "network-acls",
    params(("id" = Uuid, Path)), responses((status = 200, body = NetworkAcl), (status = "default", body = ErrorBody)))]
pub async fn acl_view(State(app): State<AppRef>, ctx: Ctx, Path(id): Path<Uuid>) -> Ok<NetworkAcl> {
    Ok(axum::Json(app::networks::acl_view(&app, &ctx.p, id).await?))
}

#[utoipa::path(patch, path = "/v1/network-acls/{id}", operation_id = "acl_update", tag = "network-acls",
    params(("id" = Uuid, Path)), request_body = NetworkAclUpdate, responses((status = 200, body = NetworkAcl), (status = "default", body = ErrorBody)))]
pub async fn acl_update(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<NetworkAclUpdate>,
) -> Ok<NetworkAcl> {
    Ok(axum::Json(
        app::networks::acl_update(&app, &ctx.p, id, b).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/network-acls/{id}", operation_id = "acl_delete", tag = "network-acls",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn acl_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::networks::acl_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/elastic-ips", operation_id = "elastic_ip_list", tag = "elastic-ips",
    params(ListParams, NetworkFilter), responses((status = 200, body = Page<ElasticIp>), (status = "default", body = ErrorBody)))]
pub async fn elastic_ip_list(
    State(app): State<AppRef>,
    ctx: Ctx,
    Query(q): Query<ListParams>,
    Query(f): Query<NetworkFilter>,
) -> Ok<Page<ElasticIp>> {
    Ok(axum::Json(
        app::networks::elastic_ip_list(&app, &ctx.p, q, f).await?,
    ))
}

/// Allocate an elastic IP from the external network's pool.
#[utoipa::path(post, path = "/v1/elastic-ips", operation_id = "elastic_ip_create", tag = "elastic-ips",
    request_body = ElasticIpCreate, responses((status = 201, body = ElasticIp), (status = "default", body = ErrorBody)))]
pub async fn elastic_ip_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<ElasticIpCreate>,
) -> Created<ElasticIp> {
    created(app::networks::elastic_ip_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/elastic-ips/{id}", operation_id = "elastic_ip_view", tag = "elastic-ips",
    params(("id" = Uuid, Path)), responses((status = 200, body = ElasticIp), (status = "default", body = ErrorBody)))]
pub async fn elastic_ip_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<ElasticIp> {
    Ok(axum::Json(
        app::networks::elastic_ip_view(&app, &ctx.p, id).await?,
    ))
}

/// Bind to a port or an instance (moving it keeps the address), or unbind with neither.
#[utoipa::path(put, path = "/v1/elastic-ips/{id}/binding", operation_id = "elastic_ip_bind", tag = "elastic-ips",
    params(("id" = Uuid, Path)), request_body = ElasticIpBind, responses((status = 200, body = ElasticIp), (status = "default", body = ErrorBody)))]
pub async fn elastic_ip_bind(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Json(b): Json<ElasticIpBind>,
) -> Ok<ElasticIp> {
    Ok(axum::Json(
        app::networks::elastic_ip_bind(&app, &ctx.p, id, b).await?,
    ))
}

/// Release an unbound elastic IP.
#[utoipa::path(delete, path = "/v1/elastic-ips/{id}", operation_id = "elastic_ip_delete", tag = "elastic-ips",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn elastic_ip_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::networks::elastic_ip_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Peerings of VPCs you can see (either side).
#[utoipa::path(get, path = "/v1/vpc-peerings", operation_id = "peering_list", tag = "networks",
    responses((status = 200, body = Vec<VpcPeering>), (status = "default", body = ErrorBody)))]
pub async fn peering_list(State(app): State<AppRef>, ctx: Ctx) -> Ok<Vec<VpcPeering>> {
    Ok(axum::Json(app::networks::peering_list(&app, &ctx.p).await?))
}

/// Ask to peer two VPCs; active at once when you may change both, else pending the other side.
#[utoipa::path(post, path = "/v1/vpc-peerings", operation_id = "peering_create", tag = "networks",
    request_body = VpcPeeringCreate, responses((status = 201, body = VpcPeering), (status = "default", body = ErrorBody)))]
pub async fn peering_create(
    State(app): State<AppRef>,
    ctx: Ctx,
    Json(b): Json<VpcPeeringCreate>,
) -> Created<VpcPeering> {
    created(app::networks::peering_create(&app, &ctx.p, b).await?)
}

#[utoipa::path(get, path = "/v1/vpc-peerings/{id}", operation_id = "peering_view", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 200, body = VpcPeering), (status = "default", body = ErrorBody)))]
pub async fn peering_view(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<VpcPeering> {
    Ok(axum::Json(
        app::networks::peering_view(&app, &ctx.p, id).await?,
    ))
}

/// The other side accepts: the VPCs route to each other.
#[utoipa::path(post, path = "/v1/vpc-peerings/{id}/accept", operation_id = "peering_accept", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 200, body = VpcPeering), (status = "default", body = ErrorBody)))]
pub async fn peering_accept(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<VpcPeering> {
    Ok(axum::Json(
        app::networks::peering_answer(&app, &ctx.p, id, true).await?,
    ))
}

#[utoipa::path(post, path = "/v1/vpc-peerings/{id}/reject", operation_id = "peering_reject", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 200, body = VpcPeering), (status = "default", body = ErrorBody)))]
pub async fn peering_reject(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Ok<VpcPeering> {
    Ok(axum::Json(
        app::networks::peering_answer(&app, &ctx.p, id, false).await?,
    ))
}

/// Either side ends a peering; the routes go at once.
#[utoipa::path(delete, path = "/v1/vpc-peerings/{id}", operation_id = "peering_delete", tag = "networks",
    params(("id" = Uuid, Path)), responses((status = 204), (status = "default", body = ErrorBody)))]
pub async fn peering_delete(
    State(app): State<AppRef>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    app::networks::peering_delete(&app, &ctx.p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
