-- Networking: the external network, VPCs with their routers, subnets, ports (IPAM),
-- security groups, network ACLs, elastic IPs and VPC peering.

CREATE TABLE external_networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    availability_zone TEXT NOT NULL,
    cidr TEXT NOT NULL,
    gateway_ip TEXT NOT NULL,
    -- The pool as integers (IPv4), inclusive.
    pool_start INTEGER NOT NULL,
    pool_end INTEGER NOT NULL,
    bridge TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Every address of an external network in use: a VPC's SNAT address or an elastic IP.
-- The primary key is what makes two owners of one address impossible.
CREATE TABLE external_addresses (
    external_network_id TEXT NOT NULL REFERENCES external_networks(id),
    address INTEGER NOT NULL,
    owner_kind TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    PRIMARY KEY (external_network_id, address)
);
CREATE INDEX external_addresses_owner ON external_addresses (owner_id);

CREATE TABLE vpcs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    cidr TEXT NOT NULL,
    availability_zone TEXT NOT NULL,
    external_network_id TEXT,
    -- SNAT address (an integer of external_addresses) when enabled.
    snat_address INTEGER,
    -- The host that runs the VPC's router (chosen when it is first needed).
    router_host_id TEXT,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    generation INTEGER NOT NULL DEFAULT 1,
    applied_generation INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX vpcs_project ON vpcs (project_id, created_at, id);
CREATE INDEX vpcs_created ON vpcs (created_at, id);
CREATE INDEX vpcs_name ON vpcs (name, id);
CREATE INDEX vpcs_router ON vpcs (router_host_id);

CREATE TABLE network_acls (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    vpc_id TEXT NOT NULL REFERENCES vpcs(id),
    rules TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX network_acls_project ON network_acls (project_id, created_at, id);
CREATE INDEX network_acls_created ON network_acls (created_at, id);

CREATE TABLE subnets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    vpc_id TEXT NOT NULL REFERENCES vpcs(id),
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    cidr TEXT NOT NULL,
    gateway_ip TEXT NOT NULL,
    dhcp_enabled INTEGER NOT NULL DEFAULT 1,
    dns_servers TEXT NOT NULL DEFAULT '[]',
    allocation_pools TEXT NOT NULL DEFAULT '[]',
    acl_id TEXT REFERENCES network_acls(id),
    vni INTEGER NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX subnets_vpc ON subnets (vpc_id);
CREATE INDEX subnets_project ON subnets (project_id, created_at, id);
CREATE INDEX subnets_created ON subnets (created_at, id);

CREATE TABLE security_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX security_groups_project ON security_groups (project_id, created_at, id);
CREATE INDEX security_groups_created ON security_groups (created_at, id);

CREATE TABLE security_group_rules (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES security_groups(id),
    direction TEXT NOT NULL,
    protocol TEXT NOT NULL,
    port_min INTEGER,
    port_max INTEGER,
    remote_cidr TEXT,
    remote_group_id TEXT,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX security_group_rules_group ON security_group_rules (group_id, created_at);

CREATE TABLE ports (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    vpc_id TEXT NOT NULL,
    subnet_id TEXT NOT NULL REFERENCES subnets(id),
    mac TEXT NOT NULL UNIQUE,
    ip TEXT NOT NULL,
    -- The address as an integer: one owner per address of a subnet.
    ip_num INTEGER NOT NULL,
    instance_id TEXT,
    -- NIC order on the instance.
    position INTEGER NOT NULL DEFAULT 0,
    -- Made for the instance: it goes with the instance (a port made on its own stays).
    delete_with_instance INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (subnet_id, ip_num)
);
CREATE INDEX ports_instance ON ports (instance_id, position);
CREATE INDEX ports_vpc ON ports (vpc_id);
CREATE INDEX ports_project ON ports (project_id, created_at, id);
CREATE INDEX ports_created ON ports (created_at, id);

CREATE TABLE port_security_groups (
    port_id TEXT NOT NULL REFERENCES ports(id),
    group_id TEXT NOT NULL REFERENCES security_groups(id),
    PRIMARY KEY (port_id, group_id)
);
CREATE INDEX port_security_groups_group ON port_security_groups (group_id);

CREATE TABLE elastic_ips (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    vdc_id TEXT NOT NULL,
    external_network_id TEXT NOT NULL REFERENCES external_networks(id),
    address INTEGER NOT NULL,
    port_id TEXT,
    description TEXT NOT NULL DEFAULT '',
    quota_held INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX elastic_ips_project ON elastic_ips (project_id, created_at, id);
CREATE INDEX elastic_ips_created ON elastic_ips (created_at, id);
CREATE INDEX elastic_ips_port ON elastic_ips (port_id);

CREATE TABLE vpc_peerings (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    requester_vpc_id TEXT NOT NULL REFERENCES vpcs(id),
    requester_project_id TEXT NOT NULL,
    accepter_vpc_id TEXT NOT NULL REFERENCES vpcs(id),
    accepter_project_id TEXT NOT NULL,
    status TEXT NOT NULL,
    -- The n-th /30 of 169.254.0.0/16 for the link between the two routers.
    link_index INTEGER NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX vpc_peerings_requester ON vpc_peerings (requester_vpc_id);
CREATE INDEX vpc_peerings_accepter ON vpc_peerings (accepter_vpc_id);
CREATE INDEX vpc_peerings_created ON vpc_peerings (created_at, id);
