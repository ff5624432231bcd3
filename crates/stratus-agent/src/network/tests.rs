use super::*;
use stratus_api::{DesiredElasticIp, DesiredExternal, DesiredPort};

pub(crate) fn vpc(id: Uuid, subnet: Uuid, port: Uuid, remote: Vec<String>) -> DesiredVpc {
    DesiredVpc {
        id,
        generation: 3,
        cidr: "10.0.0.0/16".into(),
        router: true,
        subnets: vec![DesiredSubnet {
            id: subnet,
            cidr: "10.0.1.0/24".into(),
            gateway_ip: "10.0.1.1".into(),
            dhcp_enabled: true,
            dns_servers: vec![],
            vni: 4242,
            remote_vteps: remote,
            ports: vec![DesiredPort {
                id: port,
                mac: "fa:16:3e:00:00:01".into(),
                ip: "10.0.1.5".into(),
                instance_id: None,
                local: true,
                security_group_ids: vec![],
                metadata: None,
            }],
            acl: vec![],
        }],
        snat_ip: None,
        elastic_ips: vec![],
        deleted: false,
    }
}

#[test]
fn vxlan_plan_and_mtu() {
    let (v, s, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let d = vpc(v, s, p, vec!["192.0.2.2".into(), "192.0.2.3".into()]);
    let net = DesiredNetwork {
        vpcs: vec![d.clone()],
        tunnel_ip: Some("192.0.2.1".into()),
        ..DesiredNetwork::default()
    };
    let mut n = names::Names::default();
    let plan = plan_vpc(
        &d,
        &net,
        Some("192.0.2.1".parse().unwrap()),
        &HashMap::new(),
        &mut n,
    )
    .unwrap();
    let sp = &plan.subnets[0];
    assert_eq!(sp.mtu, VXLAN_MTU);
    let (name, vni, local, remotes) = sp.vxlan.clone().unwrap();
    assert_eq!((name.as_str(), vni), (names::vxlan(s).as_str(), 4242));
    assert_eq!(local.to_string(), "192.0.2.1");
    assert_eq!(remotes.len(), 2);
    assert_eq!(sp.taps, vec![names::tap(p)]);
    let r = plan.router.unwrap();
    assert_eq!(r.dhcp[0].mtu, VXLAN_MTU);
    assert_eq!(r.legs[0].gateway.to_string(), "10.0.1.1/24");
    assert!(r.external.is_none());
    // Spanning hosts needs a tunnel address.
    let mut n = names::Names::default();
    assert!(plan_vpc(&d, &net, None, &HashMap::new(), &mut n).is_err());
    // A single-host subnet has no VXLAN and a full MTU.
    let one = vpc(v, s, p, vec![]);
    let mut n = names::Names::default();
    let plan = plan_vpc(&one, &net, None, &HashMap::new(), &mut n).unwrap();
    assert!(plan.subnets[0].vxlan.is_none());
    assert_eq!(plan.subnets[0].mtu, DEFAULT_MTU);
}

#[test]
fn external_needs_a_network_and_takes_its_prefix() {
    let (v, s, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut d = vpc(v, s, p, vec![]);
    d.elastic_ips = vec![DesiredElasticIp {
        id: Uuid::new_v4(),
        address: "203.0.113.10".into(),
        fixed_ip: "10.0.1.5".into(),
        port_id: p,
    }];
    let mut net = DesiredNetwork {
        vpcs: vec![d.clone()],
        ..DesiredNetwork::default()
    };
    let mut n = names::Names::default();
    assert!(plan_vpc(&d, &net, None, &HashMap::new(), &mut n).is_err());
    net.external = Some(DesiredExternal {
        id: Uuid::new_v4(),
        bridge: "br-ext".into(),
        cidr: "203.0.113.0/24".into(),
        gateway_ip: "203.0.113.1".into(),
    });
    let mut n = names::Names::default();
    let plan = plan_vpc(&d, &net, None, &HashMap::new(), &mut n).unwrap();
    let x = plan.router.unwrap().external.unwrap();
    assert_eq!(x.addresses[0].to_string(), "203.0.113.10/24");
    assert_eq!(x.host, names::ext_host(v));
}

#[test]
fn colliding_ids_are_an_error() {
    let v = Uuid::new_v4();
    let s = Uuid::parse_str("0123456789aaaaaaaaaaaaaaaaaaaaaa").unwrap();
    let p = Uuid::parse_str("0123456789bbbbbbbbbbbbbbbbbbbbbb").unwrap();
    let d = vpc(v, s, p, vec![]);
    let net = DesiredNetwork::default();
    let mut n = names::Names::default();
    let e = plan_vpc(&d, &net, None, &HashMap::new(), &mut n).unwrap_err();
    assert!(format!("{e:#}").contains("share"), "{e:#}");
}

#[test]
fn router_serves_metadata_of_instances_on_other_hosts() {
    let (v, s, p) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut d = vpc(v, s, p, vec!["192.0.2.2".into()]);
    let instance = Uuid::new_v4();
    let port = &mut d.subnets[0].ports[0];
    port.local = false;
    port.instance_id = Some(instance);
    let net = DesiredNetwork {
        vpcs: vec![d.clone()],
        ..DesiredNetwork::default()
    };
    let tunnel = Some("192.0.2.1".parse().unwrap());
    // Without data from the control plane the remote instance is unknown to this router.
    let mut n = names::Names::default();
    let plan = plan_vpc(&d, &net, tunnel, &HashMap::new(), &mut n).unwrap();
    assert!(plan.router.unwrap().metadata.is_empty());
    d.subnets[0].ports[0].metadata = Some(stratus_api::PortMetadata {
        hostname: "far-away".into(),
        ssh_keys: vec!["ssh-ed25519 AAAA k".into()],
        user_data: Some("#cloud-config\n".into()),
    });
    let mut n = names::Names::default();
    let plan = plan_vpc(&d, &net, tunnel, &HashMap::new(), &mut n).unwrap();
    let table = plan.router.unwrap().metadata;
    let m = &table[&"10.0.1.5".parse::<Ipv4Addr>().unwrap()];
    assert_eq!((m.instance_id, m.hostname.as_str()), (instance, "far-away"));
    assert_eq!(
        metadata::document(m, "/latest/meta-data/hostname").map(|d| d.1),
        Some("far-away".to_string())
    );
    assert_eq!(
        metadata::document(m, "/latest/user-data").map(|d| d.1),
        Some("#cloud-config\n".to_string())
    );
}
