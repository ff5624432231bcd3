//! VPC networking on this host: the agent's half of the network protocol
//! ([`stratus_api::DesiredNetwork`]).
//!
//! Per VPC whose router runs here: a network namespace (the router) with a leg on every
//! subnet (a veth whose router end has the gateway address), forwarding between its own
//! subnets and peerings only, DHCP ([`dhcp`]), metadata ([`metadata`]), SNAT and elastic
//! IPs through a leg on the external bridge, and the subnets' network ACLs, all rules in
//! one nftables table ([`nft`]). Per subnet with ports here: a bridge the instances' taps
//! plug into, and a VXLAN device with head-end replication towards other hosts with ports
//! of it. Security groups are enforced where the taps plug in, in one host-wide pair of
//! tables. Names: [`names`].
//!
//! [`Network::converge`] compares the real system with the desired network and changes
//! only what differs (a deleted bridge or a killed dnsmasq is recreated, what is right is
//! left alone), so it is also the drift repair. What was applied is kept per VPC in
//! `<state>/network/vpcs/<id>.json` (written atomically); the first converge after a start
//! also sweeps what this agent made for VPCs no longer desired. Converges are serial.

pub mod addr;
pub mod dhcp;
pub mod metadata;
pub mod names;
pub mod nft;
pub mod sys;
pub mod testing;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex as StdMutex;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use stratus_api::{
    DesiredInstance, DesiredNetwork, DesiredNic, DesiredSubnet, DesiredVpc, NetworkState, VpcReport,
};
use uuid::Uuid;

use addr::{prefix, Cidr};
use metadata::InstanceMeta;
use sys::Link;

/// MTU of subnets that span hosts: VXLAN over IPv4 adds 50 bytes to a 1500-byte frame.
pub const VXLAN_MTU: u32 = 1450;
pub const DEFAULT_MTU: u32 = 1500;
pub const VXLAN_PORT: u16 = 4789;

/// What was applied to one VPC (`vpcs/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VpcRecord {
    generation: i64,
    state: NetworkState,
    error: Option<String>,
    /// The desired VPC last converged to: its subnets name what to remove later.
    desired: Option<DesiredVpc>,
    /// Hashes of the router table as generated and as nft listed it after loading.
    #[serde(default)]
    nft: Option<(String, String)>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct HostRecord {
    /// Hashes of the security-group ruleset as generated and as nft listed it.
    sg: Option<(String, String)>,
}

#[derive(Default)]
struct Inner {
    swept: bool,
    records: HashMap<Uuid, VpcRecord>,
    host: HostRecord,
    /// The records as last written: unchanged ones are not written again (each write
    /// syncs the disk, slow while guests write).
    written: HashMap<String, Vec<u8>>,
}

impl Inner {
    async fn save(&mut self, path: &Path, bytes: Vec<u8>) -> anyhow::Result<()> {
        let key = path.display().to_string();
        if self.written.get(&key) == Some(&bytes) {
            return Ok(());
        }
        crate::identity::write_atomic(path, &bytes, 0o600)
            .await
            .with_context(|| key.clone())?;
        self.written.insert(key, bytes);
        Ok(())
    }

    async fn forget_file(&mut self, path: &Path) {
        self.written.remove(&path.display().to_string());
        let _ = tokio::fs::remove_file(path).await;
    }
}

/// The host's VPC networking.
pub struct Network {
    dir: PathBuf,
    tag: String,
    work: tokio::sync::Mutex<Inner>,
    metadata: metadata::Servers,
    reports: StdMutex<Vec<VpcReport>>,
}

fn hash(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

// ------------------------------------------------------------------ plans

/// A subnet's host side (every host with ports of it).
#[derive(Debug, Clone, PartialEq)]
struct SubnetPlan {
    id: Uuid,
    bridge: String,
    mtu: u32,
    /// VXLAN device: name, VNI, local address, remote tunnel addresses.
    vxlan: Option<(String, u32, Ipv4Addr, Vec<Ipv4Addr>)>,
    /// Taps of the ports whose instances run here.
    taps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct LegPlan {
    host: String,
    router: String,
    bridge: String,
    gateway: Cidr,
    mtu: u32,
}

#[derive(Debug, Clone, PartialEq)]
struct ExternalPlan {
    bridge: String,
    host: String,
    /// SNAT address and elastic IPs, `a.b.c.d/len`.
    addresses: Vec<Cidr>,
    gateway: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq)]
struct RouterPlan {
    ns: String,
    legs: Vec<LegPlan>,
    external: Option<ExternalPlan>,
    ruleset: String,
    dhcp: Vec<dhcp::DhcpPlan>,
    metadata: HashMap<Ipv4Addr, InstanceMeta>,
}

#[derive(Debug, Clone, PartialEq)]
struct VpcPlan {
    id: Uuid,
    subnets: Vec<SubnetPlan>,
    router: Option<RouterPlan>,
}

fn subnet_cidr(s: &DesiredSubnet) -> anyhow::Result<(Cidr, Ipv4Addr)> {
    let cidr = Cidr::parse(&s.cidr).with_context(|| format!("subnet {}", s.id))?;
    let gw = addr::ip(&s.gateway_ip).with_context(|| format!("subnet {} gateway", s.id))?;
    anyhow::ensure!(
        cidr.contains(gw),
        "subnet {}: gateway {gw} is outside {cidr}",
        s.id
    );
    Ok((cidr, gw))
}

fn plan_vpc(
    v: &DesiredVpc,
    net: &DesiredNetwork,
    tunnel: Option<Ipv4Addr>,
    instances: &HashMap<Uuid, &DesiredInstance>,
    names: &mut names::Names,
) -> anyhow::Result<VpcPlan> {
    names.claim(v.id)?;
    let mut subnets = Vec::new();
    let mut legs = Vec::new();
    let mut dhcps = Vec::new();
    let mut meta = HashMap::new();
    let mut rlegs = Vec::new();
    for s in &v.subnets {
        names.claim(s.id)?;
        let (cidr, gw) = subnet_cidr(s)?;
        let remotes: Vec<Ipv4Addr> = s
            .remote_vteps
            .iter()
            .map(|r| addr::ip(r))
            .collect::<anyhow::Result<_>>()?;
        let mtu = if remotes.is_empty() {
            DEFAULT_MTU
        } else {
            VXLAN_MTU
        };
        let vxlan = if remotes.is_empty() {
            None
        } else {
            let local = tunnel.ok_or_else(|| {
                anyhow::anyhow!("subnet {} spans hosts but this host has no tunnel_ip", s.id)
            })?;
            let vni = u32::try_from(s.vni)
                .ok()
                .filter(|n| (1..1 << 24).contains(n))
                .ok_or_else(|| anyhow::anyhow!("subnet {}: bad VNI {}", s.id, s.vni))?;
            Some((names::vxlan(s.id), vni, local, remotes))
        };
        let mut taps = Vec::new();
        let mut hosts = Vec::new();
        for p in &s.ports {
            names.claim(p.id)?;
            let mac = addr::mac(&p.mac).with_context(|| format!("port {}", p.id))?;
            let ip = addr::ip(&p.ip).with_context(|| format!("port {}", p.id))?;
            if p.local {
                taps.push(names::tap(p.id));
            }
            hosts.push((mac, ip));
            // A local instance's own data, else what the control plane sent for an instance
            // on another host (this host running the VPC's router).
            if let Some(inst) = p.instance_id.and_then(|i| instances.get(&i)) {
                meta.insert(
                    ip,
                    InstanceMeta {
                        instance_id: inst.id,
                        hostname: inst.hostname.clone(),
                        local_ipv4: ip,
                        ssh_keys: inst.ssh_keys.clone(),
                        user_data: inst.user_data.clone(),
                    },
                );
            } else if let (Some(id), Some(m)) = (p.instance_id, &p.metadata) {
                meta.insert(
                    ip,
                    InstanceMeta {
                        instance_id: id,
                        hostname: m.hostname.clone(),
                        local_ipv4: ip,
                        ssh_keys: m.ssh_keys.clone(),
                        user_data: m.user_data.clone(),
                    },
                );
            }
        }
        taps.sort();
        if v.router {
            let leg = LegPlan {
                host: names::leg_host(s.id),
                router: names::leg_router(s.id),
                bridge: names::bridge(s.id),
                gateway: Cidr {
                    addr: gw,
                    len: cidr.len,
                },
                mtu,
            };
            if s.dhcp_enabled {
                dhcps.push(dhcp::DhcpPlan {
                    subnet: s.id,
                    interface: leg.router.clone(),
                    network: cidr.network(),
                    netmask: cidr.netmask(),
                    gateway: gw,
                    dns: s
                        .dns_servers
                        .iter()
                        .map(|d| addr::ip(d))
                        .collect::<anyhow::Result<_>>()?,
                    mtu,
                    hosts,
                });
            }
            rlegs.push(nft::RouterLeg {
                iface: leg.router.clone(),
                cidr,
                acl: &s.acl,
            });
            legs.push(leg);
        }
        subnets.push(SubnetPlan {
            id: s.id,
            bridge: names::bridge(s.id),
            mtu,
            vxlan,
            taps,
        });
    }
    let router = if v.router {
        let mut eips = Vec::new();
        let mut addresses = Vec::new();
        let snat = match &v.snat_ip {
            Some(s) => {
                let c = Cidr::parse(s).context("snat_ip")?;
                addresses.push(c);
                Some(c.addr)
            }
            None => None,
        };
        for e in &v.elastic_ips {
            let c = prefix(&e.address).with_context(|| format!("elastic IP {}", e.id))?;
            eips.push((c.addr, addr::ip(&e.fixed_ip)?));
            addresses.push(c);
        }
        let external = if addresses.is_empty() {
            None
        } else {
            let x = net.external.as_ref().ok_or_else(|| {
                anyhow::anyhow!(
                    "the VPC has SNAT or elastic IPs but the host has no external network"
                )
            })?;
            anyhow::ensure!(
                !x.bridge.is_empty() && x.bridge.len() <= 15,
                "bad external bridge name {:?}",
                x.bridge
            );
            let ext_net = Cidr::parse(&x.cidr).context("external cidr")?;
            // Addresses given as plain IPs take the external network's prefix.
            for a in &mut addresses {
                if a.len == 32 && ext_net.contains(a.addr) {
                    a.len = ext_net.len;
                }
            }
            Some(ExternalPlan {
                bridge: x.bridge.clone(),
                host: names::ext_host(v.id),
                addresses,
                gateway: addr::ip(&x.gateway_ip).context("external gateway")?,
            })
        };
        let ext_rules = external
            .as_ref()
            .map(|_| nft::RouterExternal { snat, eips });
        Some(RouterPlan {
            ns: names::netns(v.id),
            ruleset: nft::router_ruleset(&rlegs, ext_rules.as_ref())?,
            legs,
            external,
            dhcp: dhcps,
            metadata: meta,
        })
    } else {
        None
    };
    Ok(VpcPlan {
        id: v.id,
        subnets,
        router,
    })
}

// ------------------------------------------------------------------ applying

/// A router's devices after one of them (`changed`) was made again: its old addresses are
/// gone with it.
async fn refresh_router(
    state: &mut BTreeMap<Uuid, RouterState>,
    vpc: Uuid,
    ns: &str,
    changed: &str,
) -> anyhow::Result<()> {
    if let Some(s) = state.get_mut(&vpc) {
        s.0 = sys::links(Some(ns)).await?;
        s.1.remove(changed);
    }
    Ok(())
}

/// One router's end of a peering: its address, the peer's address, the routes via it.
type PeerSide = (Cidr, Ipv4Addr, Vec<String>);
/// A router's devices and their addresses.
type RouterState = (HashMap<String, Link>, HashMap<String, Vec<String>>);

/// One device of the host, or `None`.
async fn link(ns: Option<&str>, name: &str) -> anyhow::Result<Option<Link>> {
    Ok(sys::links(ns).await?.remove(name))
}

async fn set_up(
    ns: Option<&str>,
    name: &str,
    l: &Link,
    mtu: u32,
    master: Option<&str>,
    alias: Option<&str>,
) -> anyhow::Result<()> {
    if l.mtu != mtu {
        sys::ip(ns, &["link", "set", "dev", name, "mtu", &mtu.to_string()]).await?;
    }
    if let Some(m) = master {
        if l.master.as_deref() != Some(m) {
            sys::ip(ns, &["link", "set", "dev", name, "master", m]).await?;
        }
    }
    if let Some(a) = alias {
        if l.alias.as_deref() != Some(a) {
            sys::ip(ns, &["link", "set", "dev", name, "alias", a]).await?;
        }
    }
    if !l.up {
        sys::ip(ns, &["link", "set", "dev", name, "up"]).await?;
    }
    Ok(())
}

impl Network {
    /// The network of the agent whose state directory is `state_dir`.
    pub fn new(state_dir: &Path) -> anyhow::Result<Network> {
        let state_dir =
            std::fs::canonicalize(state_dir).with_context(|| state_dir.display().to_string())?;
        let dir = state_dir.join("network");
        std::fs::create_dir_all(dir.join("vpcs"))?;
        std::fs::create_dir_all(dir.join("dhcp"))?;
        let mut inner = Inner::default();
        for e in std::fs::read_dir(dir.join("vpcs"))?.flatten() {
            let name = e.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<Uuid>().ok())
            else {
                continue;
            };
            match std::fs::read(e.path()).map(|b| serde_json::from_slice::<VpcRecord>(&b)) {
                Ok(Ok(r)) => {
                    inner.records.insert(id, r);
                }
                _ => tracing::warn!(%id, "unreadable VPC record; it is rebuilt"),
            }
        }
        if let Ok(b) = std::fs::read(dir.join("host.json")) {
            inner.host = serde_json::from_slice(&b).unwrap_or_default();
        }
        Ok(Network {
            tag: names::agent_tag(&state_dir),
            dir,
            work: tokio::sync::Mutex::new(inner),
            metadata: metadata::Servers::default(),
            reports: StdMutex::default(),
        })
    }

    /// This agent's tag (see [`names`]).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    fn dhcp_dir(&self) -> PathBuf {
        self.dir.join("dhcp")
    }

    /// The reports of the VPCs of the last converge.
    pub fn reports(&self) -> Vec<VpcReport> {
        self.reports
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// True when the last converge left a VPC in error (worth a retry).
    pub fn failed(&self) -> bool {
        self.reports()
            .iter()
            .any(|r| r.state == NetworkState::Error)
    }

    /// Converge the host to `net` (instances: those of this host, for metadata); returns
    /// the VPCs' reports.
    pub async fn converge(
        &self,
        net: &DesiredNetwork,
        instances: &[DesiredInstance],
    ) -> Vec<VpcReport> {
        let mut inner = self.work.lock().await;
        // A host without VPCs is left as it is (bridge-nf-call-iptables also affects
        // bridges that are not ours).
        let host_err = if net.vpcs.iter().any(|v| !v.deleted) {
            self.prepare_host().await.err().map(|e| format!("{e:#}"))
        } else {
            None
        };
        let tunnel: Result<Option<Ipv4Addr>, String> = net
            .tunnel_ip
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(addr::ip)
            .transpose()
            .map_err(|e| format!("tunnel_ip: {e:#}"));
        let by_id: HashMap<Uuid, &DesiredInstance> = instances.iter().map(|i| (i.id, i)).collect();
        let mut names = names::Names::default();
        let mut errors: HashMap<Uuid, Vec<String>> = HashMap::new();
        let mut plans: HashMap<Uuid, VpcPlan> = HashMap::new();
        let mut vpcs: Vec<&DesiredVpc> = net.vpcs.iter().collect();
        vpcs.sort_by_key(|v| v.id);
        for v in &vpcs {
            let rec = inner.records.get(&v.id).cloned();
            if v.deleted {
                let out = self
                    .teardown(v.id, rec.as_ref().and_then(|r| r.desired.as_ref()), Some(v))
                    .await;
                let r = VpcRecord {
                    generation: v.generation,
                    state: if out.is_ok() {
                        NetworkState::Gone
                    } else {
                        NetworkState::Error
                    },
                    error: out.err().map(|e| format!("deleting: {e:#}")),
                    desired: if rec.is_some() {
                        Some((*v).clone())
                    } else {
                        None
                    },
                    nft: None,
                };
                inner.records.insert(v.id, r);
                continue;
            }
            if let Some(e) = &host_err {
                errors.entry(v.id).or_default().push(e.clone());
                continue;
            }
            let plan = match &tunnel {
                Ok(t) => plan_vpc(v, net, *t, &by_id, &mut names),
                Err(e) => Err(anyhow::anyhow!("{e}")),
            };
            let plan = match plan {
                Ok(p) => p,
                Err(e) => {
                    errors.entry(v.id).or_default().push(format!("{e:#}"));
                    continue;
                }
            };
            let nft_rec = rec.as_ref().and_then(|r| r.nft.clone());
            match self
                .apply_vpc(
                    &plan,
                    rec.as_ref().and_then(|r| r.desired.as_ref()),
                    nft_rec,
                )
                .await
            {
                Ok(nft) => {
                    inner.records.insert(
                        v.id,
                        VpcRecord {
                            generation: v.generation,
                            state: NetworkState::Ready,
                            error: None,
                            desired: Some((*v).clone()),
                            nft,
                        },
                    );
                }
                Err(e) => errors.entry(v.id).or_default().push(format!("{e:#}")),
            }
            plans.insert(v.id, plan);
        }
        for (vpc, e) in self.apply_peerings(net, &plans).await {
            errors.entry(vpc).or_default().push(e);
        }
        if host_err.is_none() {
            let prev = inner.host.sg.clone();
            match self.apply_security_groups(net, prev, !inner.swept).await {
                Ok(h) => inner.host.sg = h,
                Err(e) => {
                    let msg = format!("security groups: {e:#}");
                    for v in vpcs.iter().filter(|v| !v.deleted) {
                        if v.subnets.iter().any(|s| s.ports.iter().any(|p| p.local)) {
                            errors.entry(v.id).or_default().push(msg.clone());
                        }
                    }
                }
            }
        }
        if !inner.swept && host_err.is_none() {
            let records = inner.records.clone();
            match self.sweep(net, instances, &records).await {
                Ok(gone) => {
                    for id in gone {
                        inner.records.remove(&id);
                        inner.forget_file(&self.record_path(id)).await;
                    }
                    inner.swept = true;
                }
                Err(e) => tracing::warn!("sweeping leftovers: {e:#}"),
            }
        }
        for (id, errs) in errors {
            let Some(v) = vpcs.iter().find(|v| v.id == id) else {
                continue;
            };
            let msg = errs.join("; ");
            tracing::warn!(vpc = %id, "network converge failed: {msg}");
            let prev = inner.records.get(&id).cloned();
            inner.records.insert(
                id,
                VpcRecord {
                    generation: v.generation,
                    state: NetworkState::Error,
                    error: Some(msg),
                    // What exists keeps being known (to remove it later), plus what may
                    // have been made of this attempt.
                    desired: Some((*v).clone()),
                    nft: prev.and_then(|p| p.nft),
                },
            );
        }
        // VPCs reported gone and no longer desired are forgotten.
        let wanted: HashSet<Uuid> = net.vpcs.iter().map(|v| v.id).collect();
        let forget: Vec<Uuid> = inner
            .records
            .iter()
            .filter(|(id, r)| !wanted.contains(id) && r.state == NetworkState::Gone)
            .map(|(id, _)| *id)
            .collect();
        for id in forget {
            inner.records.remove(&id);
            inner.forget_file(&self.record_path(id)).await;
        }
        let records: Vec<(Uuid, VpcRecord)> = inner
            .records
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        for (id, r) in records {
            let saved = match serde_json::to_vec_pretty(&r) {
                Ok(b) => inner.save(&self.record_path(id), b).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = saved {
                tracing::warn!(vpc = %id, "saving the VPC record: {e:#}");
            }
        }
        if let Ok(b) = serde_json::to_vec_pretty(&inner.host) {
            if let Err(e) = inner.save(&self.dir.join("host.json"), b).await {
                tracing::warn!("saving the host network record: {e:#}");
            }
        }
        let reports: Vec<VpcReport> = vpcs
            .iter()
            .filter_map(|v| {
                let r = inner.records.get(&v.id)?;
                Some(VpcReport {
                    id: v.id,
                    generation: r.generation,
                    state: r.state,
                    error: r.error.clone(),
                })
            })
            .collect();
        if let Ok(mut r) = self.reports.lock() {
            *r = reports.clone();
        }
        reports
    }

    fn record_path(&self, id: Uuid) -> PathBuf {
        self.dir.join("vpcs").join(format!("{id}.json"))
    }

    /// Bridged IPv4 must pass the `inet` hooks for the security groups to see it.
    async fn prepare_host(&self) -> anyhow::Result<()> {
        if !Path::new("/proc/sys/net/bridge").exists() {
            let _ = sys::run("modprobe", &["br_netfilter"]).await;
        }
        anyhow::ensure!(
            Path::new("/proc/sys/net/bridge").exists(),
            "br_netfilter is not loaded (modprobe br_netfilter)"
        );
        sys::sysctls(None, &[("net/bridge/bridge-nf-call-iptables", "1")])
            .await
            .context("enabling bridge-nf-call-iptables")
    }

    /// Make (or repair) one VPC; returns the router table's hashes.
    async fn apply_vpc(
        &self,
        plan: &VpcPlan,
        before: Option<&DesiredVpc>,
        nft_rec: Option<(String, String)>,
    ) -> anyhow::Result<Option<(String, String)>> {
        let alias = names::alias(&self.tag);
        // Subnets no longer in the VPC go first (their bridges and DHCP).
        if let Some(b) = before {
            for s in &b.subnets {
                if !plan.subnets.iter().any(|p| p.id == s.id) {
                    self.remove_subnet(s.id, &names::netns(plan.id)).await?;
                }
            }
        }
        let mut links = sys::links(None).await?;
        for s in &plan.subnets {
            self.apply_subnet(s, &mut links, &alias)
                .await
                .with_context(|| format!("subnet {}", s.id))?;
        }
        let Some(r) = &plan.router else {
            // The router moved away from this host.
            if before.is_some_and(|b| b.router) {
                self.remove_router(plan.id, before).await?;
            }
            return Ok(None);
        };
        self.ensure_netns(&r.ns).await?;
        let mut rlinks = sys::links(Some(&r.ns)).await?;
        let raddrs = sys::addrs(Some(&r.ns)).await?;
        for leg in &r.legs {
            self.apply_leg(&r.ns, leg, &links, &mut rlinks, &raddrs, &alias)
                .await
                .with_context(|| format!("subnet leg {}", leg.router))?;
        }
        self.apply_external(plan.id, r, &links, &rlinks, &raddrs, &alias)
            .await
            .context("external leg")?;
        let nft = self
            .apply_router_rules(&r.ns, &r.ruleset, nft_rec)
            .await
            .context("router rules")?;
        let dir = self.dhcp_dir();
        for d in &r.dhcp {
            let did = dhcp::ensure(&dir, &r.ns, d)
                .await
                .with_context(|| format!("DHCP of subnet {}", d.subnet))?;
            if !did.is_empty() {
                tracing::info!(vpc = %plan.id, subnet = %d.subnet, "dnsmasq {did}");
            }
        }
        for s in &plan.subnets {
            if !r.dhcp.iter().any(|d| d.subnet == s.id) {
                dhcp::stop(&dir, s.id).await;
            }
        }
        self.metadata
            .ensure(plan.id, &r.ns, r.metadata.clone())
            .await
            .context("metadata service")?;
        Ok(Some(nft))
    }

    async fn apply_subnet(
        &self,
        s: &SubnetPlan,
        links: &mut HashMap<String, Link>,
        alias: &str,
    ) -> anyhow::Result<()> {
        let br = &s.bridge;
        if links.get(br).is_some_and(|l| l.kind != "bridge") {
            sys::link_del(None, br).await?;
            links.remove(br);
        }
        if !links.contains_key(br) {
            sys::ip(None, &["link", "add", "name", br, "type", "bridge"]).await?;
            // The host itself takes no part in tenant networks.
            let _ = sys::sysctls(None, &[(&format!("net/ipv6/conf/{br}/disable_ipv6"), "1")]).await;
            links.insert(br.clone(), link(None, br).await?.unwrap_or_default());
        }
        set_up(None, br, &links[br], s.mtu, None, Some(alias)).await?;
        let vx_name = names::vxlan(s.id);
        match &s.vxlan {
            Some((name, vni, local, remotes)) => {
                let want = (*vni, local.to_string(), VXLAN_PORT);
                if links
                    .get(name)
                    .is_some_and(|l| l.vxlan.as_ref() != Some(&want))
                {
                    sys::link_del(None, name).await?;
                    links.remove(name);
                }
                if !links.contains_key(name) {
                    sys::vxlan_add(name, *vni, *local, None, VXLAN_PORT).await?;
                    links.insert(name.clone(), link(None, name).await?.unwrap_or_default());
                }
                set_up(None, name, &links[name], s.mtu, Some(br), Some(alias)).await?;
                let have: BTreeSet<String> = sys::flood_list(name).await?.into_iter().collect();
                let want: BTreeSet<String> = remotes.iter().map(Ipv4Addr::to_string).collect();
                for r in want.difference(&have) {
                    sys::fdb("append", name, r).await?;
                }
                for r in have.difference(&want) {
                    sys::fdb("del", name, r).await?;
                }
            }
            None => {
                if links.contains_key(&vx_name) {
                    sys::link_del(None, &vx_name).await?;
                }
            }
        }
        for t in &s.taps {
            if let Some(l) = links.get(t) {
                set_up(None, t, l, s.mtu, Some(br), None).await?;
            }
        }
        Ok(())
    }

    async fn ensure_netns(&self, ns: &str) -> anyhow::Result<()> {
        if !sys::netns_list().await?.iter().any(|n| n == ns) {
            sys::ip(None, &["netns", "add", ns]).await?;
        }
        let lo = link(Some(ns), "lo").await?.unwrap_or_default();
        set_up(
            Some(ns),
            "lo",
            &lo,
            lo.mtu,
            None,
            Some(&names::alias(&self.tag)),
        )
        .await?;
        // A router forwards; replies may leave by another leg than requests came in by
        // (peerings), so strict reverse-path filtering would drop them.
        sys::sysctls(
            Some(ns),
            &[
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv4/conf/all/rp_filter", "0"),
                ("net/ipv4/conf/default/rp_filter", "0"),
            ],
        )
        .await?;
        let addrs = sys::addrs(Some(ns)).await?;
        let md = format!("{}/32", metadata::ADDRESS);
        if !addrs.get("lo").is_some_and(|a| a.contains(&md)) {
            sys::ip(Some(ns), &["addr", "add", &md, "dev", "lo"]).await?;
        }
        Ok(())
    }

    async fn apply_leg(
        &self,
        ns: &str,
        leg: &LegPlan,
        links: &HashMap<String, Link>,
        rlinks: &mut HashMap<String, Link>,
        raddrs: &HashMap<String, Vec<String>>,
        alias: &str,
    ) -> anyhow::Result<()> {
        let ok = links.get(&leg.host).is_some_and(|l| l.kind == "veth")
            && rlinks.get(&leg.router).is_some_and(|l| l.kind == "veth");
        if !ok {
            sys::link_del(None, &leg.host).await?;
            sys::link_del(Some(ns), &leg.router).await?;
            sys::ip(
                None,
                &[
                    "link",
                    "add",
                    &leg.host,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &leg.router,
                    "netns",
                    ns,
                ],
            )
            .await?;
            rlinks.insert(
                leg.router.clone(),
                link(Some(ns), &leg.router).await?.unwrap_or_default(),
            );
        }
        let host = match (ok, links.get(&leg.host)) {
            (true, Some(l)) => l.clone(),
            _ => link(None, &leg.host).await?.unwrap_or_default(),
        };
        set_up(
            None,
            &leg.host,
            &host,
            leg.mtu,
            Some(&leg.bridge),
            Some(alias),
        )
        .await?;
        set_up(
            Some(ns),
            &leg.router,
            &rlinks[&leg.router],
            leg.mtu,
            None,
            None,
        )
        .await?;
        let want = leg.gateway.to_string();
        let have = if ok {
            raddrs.get(&leg.router).cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        for a in &have {
            if *a != want {
                sys::ip(Some(ns), &["addr", "del", a, "dev", &leg.router]).await?;
            }
        }
        if !have.contains(&want) {
            sys::ip(Some(ns), &["addr", "add", &want, "dev", &leg.router]).await?;
        }
        Ok(())
    }

    async fn apply_external(
        &self,
        vpc: Uuid,
        r: &RouterPlan,
        links: &HashMap<String, Link>,
        rlinks: &HashMap<String, Link>,
        raddrs: &HashMap<String, Vec<String>>,
        alias: &str,
    ) -> anyhow::Result<()> {
        let host = names::ext_host(vpc);
        let e = names::EXT_ROUTER;
        let Some(x) = &r.external else {
            sys::link_del(None, &host).await?;
            sys::link_del(Some(&r.ns), e).await?;
            return Ok(());
        };
        // The external bridge is the operator's (connected to the uplink); made if missing.
        let br = match links.get(&x.bridge) {
            Some(l) if l.kind == "bridge" => l.clone(),
            Some(_) => anyhow::bail!("{} exists and is not a bridge", x.bridge),
            None => {
                sys::ip(None, &["link", "add", "name", &x.bridge, "type", "bridge"]).await?;
                link(None, &x.bridge).await?.unwrap_or_default()
            }
        };
        if !br.up {
            sys::ip(None, &["link", "set", "dev", &x.bridge, "up"]).await?;
        }
        let ok = links.get(&host).is_some_and(|l| l.kind == "veth") && rlinks.contains_key(e);
        if !ok {
            sys::link_del(None, &host).await?;
            sys::link_del(Some(&r.ns), e).await?;
            sys::ip(
                None,
                &[
                    "link", "add", &host, "type", "veth", "peer", "name", e, "netns", &r.ns,
                ],
            )
            .await?;
        }
        let hl = link(None, &host).await?.unwrap_or_default();
        set_up(None, &host, &hl, DEFAULT_MTU, Some(&x.bridge), Some(alias)).await?;
        let rl = link(Some(&r.ns), e).await?.unwrap_or_default();
        set_up(Some(&r.ns), e, &rl, DEFAULT_MTU, None, None).await?;
        let have: BTreeSet<String> = if ok {
            raddrs
                .get(e)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect()
        } else {
            BTreeSet::new()
        };
        let want: BTreeSet<String> = x.addresses.iter().map(Cidr::to_string).collect();
        for a in have.difference(&want) {
            sys::ip(Some(&r.ns), &["addr", "del", a, "dev", e]).await?;
        }
        for a in want.difference(&have) {
            sys::ip(Some(&r.ns), &["addr", "add", a, "dev", e]).await?;
            // The address may have been another router's a moment ago.
            let ip = a.split('/').next().unwrap_or(a);
            sys::gratuitous_arp(&r.ns, e, ip).await;
        }
        let gw = x.gateway.to_string();
        let routes = sys::routes(Some(&r.ns)).await?;
        if !routes
            .iter()
            .any(|rt| rt.dst == "default" && rt.via.as_deref() == Some(&gw) && rt.dev == e)
        {
            sys::ip(
                Some(&r.ns),
                &["route", "replace", "default", "via", &gw, "dev", e],
            )
            .await?;
        }
        Ok(())
    }

    async fn apply_router_rules(
        &self,
        ns: &str,
        ruleset: &str,
        rec: Option<(String, String)>,
    ) -> anyhow::Result<(String, String)> {
        let want = hash(ruleset);
        if let Some((text, listed)) = &rec {
            if *text == want {
                if let Some(now) = sys::nft_list(Some(ns), "ip", names::ROUTER_TABLE).await? {
                    if hash(&now) == *listed {
                        return Ok((text.clone(), listed.clone()));
                    }
                }
            }
        }
        sys::nft_load(Some(ns), ruleset).await?;
        let listed = sys::nft_list(Some(ns), "ip", names::ROUTER_TABLE)
            .await?
            .unwrap_or_default();
        Ok((want, hash(&listed)))
    }

    async fn remove_subnet(&self, subnet: Uuid, ns: &str) -> anyhow::Result<()> {
        dhcp::stop(&self.dhcp_dir(), subnet).await;
        for l in [
            names::leg_host(subnet),
            names::vxlan(subnet),
            names::bridge(subnet),
        ] {
            sys::link_del(None, &l).await?;
        }
        if sys::netns_list().await?.iter().any(|n| n == ns) {
            sys::link_del(Some(ns), &names::leg_router(subnet)).await?;
        }
        Ok(())
    }

    async fn remove_router(&self, vpc: Uuid, known: Option<&DesiredVpc>) -> anyhow::Result<()> {
        self.metadata.stop(vpc);
        let ns = names::netns(vpc);
        let dir = self.dhcp_dir();
        for s in known.into_iter().flat_map(|v| &v.subnets) {
            dhcp::stop(&dir, s.id).await;
            sys::link_del(None, &names::leg_host(s.id)).await?;
        }
        sys::link_del(None, &names::ext_host(vpc)).await?;
        if sys::netns_list().await?.contains(&ns) {
            sys::ip(None, &["netns", "del", &ns]).await?;
        }
        Ok(())
    }

    /// Remove everything of a VPC (what `before` and `now` name).
    async fn teardown(
        &self,
        vpc: Uuid,
        before: Option<&DesiredVpc>,
        now: Option<&DesiredVpc>,
    ) -> anyhow::Result<()> {
        let mut subnets: BTreeSet<Uuid> = BTreeSet::new();
        for v in before.into_iter().chain(now) {
            subnets.extend(v.subnets.iter().map(|s| s.id));
        }
        let ns = names::netns(vpc);
        for s in &subnets {
            self.remove_subnet(*s, &ns).await?;
        }
        self.remove_router(vpc, None).await
    }

    /// Links between the routers of peered VPCs, their addresses and routes; returns the
    /// errors by VPC.
    async fn apply_peerings(
        &self,
        net: &DesiredNetwork,
        plans: &HashMap<Uuid, VpcPlan>,
    ) -> Vec<(Uuid, String)> {
        let mut errors = Vec::new();
        let routers: BTreeMap<Uuid, String> = plans
            .values()
            .filter_map(|p| p.router.as_ref().map(|r| (p.id, r.ns.clone())))
            .collect();
        // What each router should have: link name → (address, routes via the peer).
        let mut want: BTreeMap<Uuid, BTreeMap<String, PeerSide>> = BTreeMap::new();
        for p in &net.peerings {
            let (here_a, here_b) = (
                routers.contains_key(&p.vpc_a),
                routers.contains_key(&p.vpc_b),
            );
            // Both routers here, or one here and the other's host named.
            if !(here_a && here_b || (here_a || here_b) && p.remote.is_some()) {
                continue;
            }
            let planned = (|| -> anyhow::Result<_> {
                let link = Cidr::parse(&p.link_cidr).context("link_cidr")?;
                anyhow::ensure!(link.len == 30, "link_cidr {} is not a /30", p.link_cidr);
                let base = u32::from(link.network());
                let (a, b) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
                let nets = |c: &[String]| -> anyhow::Result<Vec<String>> {
                    c.iter().map(|c| Ok(Cidr::parse(c)?.net_string())).collect()
                };
                Ok((
                    Cidr { addr: a, len: 30 },
                    Cidr { addr: b, len: 30 },
                    nets(&p.cidrs_b)?,
                    nets(&p.cidrs_a)?,
                ))
            })();
            match planned {
                Ok((a, b, to_b, to_a)) => {
                    let name = names::peering(p.id);
                    if here_a {
                        want.entry(p.vpc_a)
                            .or_default()
                            .insert(name.clone(), (a, b.addr, to_b));
                    }
                    if here_b {
                        want.entry(p.vpc_b)
                            .or_default()
                            .insert(name, (b, a.addr, to_a));
                    }
                }
                Err(e) => {
                    let msg = format!("peering {}: {e:#}", p.id);
                    errors.push((p.vpc_a, msg.clone()));
                    errors.push((p.vpc_b, msg));
                }
            }
        }
        // Links first (a pair spans two routers), then each side's address and routes.
        let mut state: BTreeMap<Uuid, RouterState> = BTreeMap::new();
        for (vpc, ns) in &routers {
            match async {
                Ok::<_, anyhow::Error>((sys::links(Some(ns)).await?, sys::addrs(Some(ns)).await?))
            }
            .await
            {
                Ok(s) => {
                    state.insert(*vpc, s);
                }
                Err(e) => errors.push((*vpc, format!("peering: {e:#}"))),
            }
        }
        for p in &net.peerings {
            let name = names::peering(p.id);
            let wanted = |v: &Uuid| want.get(v).is_some_and(|w| w.contains_key(&name));
            let made = match (routers.get(&p.vpc_a), routers.get(&p.vpc_b)) {
                (Some(na), Some(nb)) if wanted(&p.vpc_a) => {
                    let has = |v: &Uuid| {
                        state
                            .get(v)
                            .and_then(|s| s.0.get(&name))
                            .is_some_and(|l| l.kind == "veth")
                    };
                    if has(&p.vpc_a) && has(&p.vpc_b) {
                        continue;
                    }
                    self.veth_peering(&name, (p.vpc_a, na), (p.vpc_b, nb), &mut state)
                        .await
                }
                (Some(ns), None) | (None, Some(ns)) => {
                    let vpc = if routers.contains_key(&p.vpc_a) {
                        p.vpc_a
                    } else {
                        p.vpc_b
                    };
                    let Some(remote) = p.remote.as_ref().filter(|_| wanted(&vpc)) else {
                        continue;
                    };
                    self.vxlan_peering(&name, remote, net, (vpc, ns), &mut state)
                        .await
                }
                _ => continue,
            };
            if let Err(e) = made {
                let msg = format!("peering {}: {e:#}", p.id);
                errors.push((p.vpc_a, msg.clone()));
                errors.push((p.vpc_b, msg));
            }
        }
        for (vpc, ns) in &routers {
            let Some((links, addrs)) = state.get(vpc) else {
                continue;
            };
            let mine = want.remove(vpc).unwrap_or_default();
            let out = async {
                for l in links.keys() {
                    if l.starts_with(names::PEERING_PREFIX)
                        && l.len() == 12
                        && !mine.contains_key(l)
                    {
                        sys::link_del(Some(ns), l).await?;
                    }
                }
                let routes = sys::routes(Some(ns)).await?;
                for (l, (addr, peer, nets)) in &mine {
                    let Some(link) = links.get(l) else { continue };
                    let mtu = if link.kind == "vxlan" {
                        VXLAN_MTU
                    } else {
                        DEFAULT_MTU
                    };
                    set_up(Some(ns), l, link, mtu, None, None).await?;
                    let a = addr.to_string();
                    let have = addrs.get(l).cloned().unwrap_or_default();
                    if !have.contains(&a) {
                        sys::ip(Some(ns), &["addr", "add", &a, "dev", l]).await?;
                    }
                    let via = peer.to_string();
                    for n in nets {
                        if !routes
                            .iter()
                            .any(|r| r.dst == *n && r.dev == *l && r.via.as_deref() == Some(&via))
                        {
                            sys::ip(Some(ns), &["route", "replace", n, "via", &via, "dev", l])
                                .await?;
                        }
                    }
                    for r in routes
                        .iter()
                        .filter(|r| r.dev == *l && r.via.is_some() && !nets.contains(&r.dst))
                    {
                        sys::ip(Some(ns), &["route", "del", &r.dst, "dev", l]).await?;
                    }
                }
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = out {
                errors.push((*vpc, format!("peering: {e:#}")));
            }
        }
        errors
    }

    /// A veth pair between two routers of this host (made again if either end is missing).
    async fn veth_peering(
        &self,
        name: &str,
        (a, na): (Uuid, &String),
        (b, nb): (Uuid, &String),
        state: &mut BTreeMap<Uuid, RouterState>,
    ) -> anyhow::Result<()> {
        sys::link_del(Some(na), name).await?;
        sys::link_del(Some(nb), name).await?;
        sys::ip(
            None,
            &[
                "link", "add", "name", name, "netns", na, "type", "veth", "peer", "name", name,
                "netns", nb,
            ],
        )
        .await?;
        for (v, ns) in [(a, na), (b, nb)] {
            refresh_router(state, v, ns, name).await?;
        }
        Ok(())
    }

    /// A point-to-point VXLAN link from a router of this host to the router of the same
    /// peering on another host. The device is made on the host, where its UDP socket stays
    /// (the underlay), and moved into the router.
    async fn vxlan_peering(
        &self,
        name: &str,
        remote: &stratus_api::PeeringRemote,
        net: &DesiredNetwork,
        (vpc, ns): (Uuid, &String),
        state: &mut BTreeMap<Uuid, RouterState>,
    ) -> anyhow::Result<()> {
        let local: Ipv4Addr = net
            .tunnel_ip
            .as_deref()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the other router is on another host but this host has no tunnel_ip"
                )
            })?
            .parse()
            .context("tunnel_ip")?;
        let vtep: Ipv4Addr = remote.vtep.parse().context("remote vtep")?;
        let want = (remote.vni, local.to_string(), VXLAN_PORT);
        let current = state.get(&vpc).and_then(|s| s.0.get(name));
        if current.is_some_and(|l| {
            l.vxlan.as_ref() == Some(&want) && l.vxlan_remote.as_deref() == Some(&remote.vtep)
        }) {
            return Ok(());
        }
        sys::link_del(Some(ns), name).await?;
        sys::link_del(None, name).await?;
        sys::vxlan_add(name, remote.vni, local, Some(vtep), VXLAN_PORT).await?;
        sys::ip(None, &["link", "set", "dev", name, "netns", ns]).await?;
        refresh_router(state, vpc, ns, name).await
    }

    /// The host-wide security-group tables; returns their hashes.
    async fn apply_security_groups(
        &self,
        net: &DesiredNetwork,
        prev: Option<(String, String)>,
        first: bool,
    ) -> anyhow::Result<Option<(String, String)>> {
        let mut ports = Vec::new();
        for v in net.vpcs.iter().filter(|v| !v.deleted) {
            for s in &v.subnets {
                let (cidr, gw) = subnet_cidr(s)?;
                for p in s.ports.iter().filter(|p| p.local) {
                    ports.push(nft::SgPort {
                        tap: names::tap(p.id),
                        bridge: names::bridge(s.id),
                        mac: addr::mac(&p.mac)?,
                        ip: addr::ip(&p.ip)?,
                        subnet: cidr,
                        gateway: gw,
                        groups: p.security_group_ids.clone(),
                    });
                }
            }
        }
        ports.sort_by(|a, b| a.tap.cmp(&b.tap));
        let groups: BTreeMap<Uuid, nft::SgGroup> = net
            .security_groups
            .iter()
            .map(|g| {
                (
                    g.id,
                    nft::SgGroup {
                        rules: &g.rules,
                        members: &g.member_ips,
                    },
                )
            })
            .collect();
        let table = names::sg_table(&self.tag);
        if ports.is_empty() {
            // No port here: no tables (nothing of ours is left on an emptied host). Tables
            // this agent may have made are looked for after a start and once loaded.
            if prev.is_none() && !first {
                return Ok(None);
            }
            sys::nft_delete(None, "inet", &table).await?;
            sys::nft_delete(None, "bridge", &table).await?;
            return Ok(None);
        }
        let text = nft::host_ruleset(&self.tag, &ports, &groups)?;
        let want = hash(&text);
        let listing = || async {
            let a = sys::nft_list(None, "inet", &table).await?;
            let b = sys::nft_list(None, "bridge", &table).await?;
            anyhow::Ok(match (a, b) {
                (Some(a), Some(b)) => Some(hash(&(a + &b))),
                _ => None,
            })
        };
        if let Some((t, l)) = &prev {
            if *t == want && listing().await?.as_ref() == Some(l) {
                return Ok(prev);
            }
        }
        let t = std::time::Instant::now();
        sys::nft_load(None, &text).await?;
        tracing::info!(ports = ports.len(), took = ?t.elapsed(), "security groups loaded");
        Ok(Some((want, listing().await?.unwrap_or_default())))
    }

    /// Remove what this agent made (its tag) that no desired VPC or instance owns; returns
    /// the records to forget.
    async fn sweep(
        &self,
        net: &DesiredNetwork,
        instances: &[DesiredInstance],
        records: &HashMap<Uuid, VpcRecord>,
    ) -> anyhow::Result<Vec<Uuid>> {
        let desired: HashSet<Uuid> = net
            .vpcs
            .iter()
            .filter(|v| !v.deleted)
            .map(|v| v.id)
            .collect();
        let mut forget = Vec::new();
        for (id, r) in records {
            if !net.vpcs.iter().any(|v| v.id == *id) {
                self.teardown(*id, r.desired.as_ref(), None).await?;
                forget.push(*id);
            }
        }
        let mut keep: HashSet<String> = HashSet::new();
        let mut keep_subnets: HashSet<Uuid> = HashSet::new();
        for v in net.vpcs.iter().filter(|v| !v.deleted) {
            keep.insert(names::ext_host(v.id));
            for s in &v.subnets {
                keep_subnets.insert(s.id);
                keep.extend([
                    names::bridge(s.id),
                    names::leg_host(s.id),
                    names::vxlan(s.id),
                ]);
                keep.extend(s.ports.iter().map(|p| names::tap(p.id)));
            }
        }
        keep.extend(
            instances
                .iter()
                .flat_map(|i| i.nics.iter().map(|n| names::tap(n.port_id))),
        );
        let alias = names::alias(&self.tag);
        for (name, l) in sys::links(None).await? {
            if !names::is_ours(&name) || l.alias.as_deref() != Some(&alias) || keep.contains(&name)
            {
                continue;
            }
            // A tap a process still holds belongs to a guest the control plane forgot:
            // left alone.
            if l.kind == "tun" && l.carrier {
                continue;
            }
            tracing::info!(device = %name, "removing a leftover device");
            sys::link_del(None, &name).await?;
        }
        let dir = self.dhcp_dir();
        for s in dhcp::known(&dir) {
            if !keep_subnets.contains(&s) {
                dhcp::stop(&dir, s).await;
            }
        }
        let keep_ns: HashSet<String> = desired
            .iter()
            .filter(|id| net.vpcs.iter().any(|v| v.id == **id && v.router))
            .map(|id| names::netns(*id))
            .collect();
        for ns in sys::netns_list().await? {
            if !names::is_our_netns(&ns) || keep_ns.contains(&ns) {
                continue;
            }
            let lo = link(Some(&ns), "lo").await.ok().flatten();
            if lo.and_then(|l| l.alias).as_deref() != Some(&alias) {
                continue;
            }
            tracing::info!(%ns, "removing a leftover router");
            sys::ip(None, &["netns", "del", &ns]).await?;
        }
        Ok(forget)
    }
}

// ------------------------------------------------------------------ instance NICs

/// Make the tap of an instance NIC (before QEMU starts: QEMU runs no scripts), plugged
/// into its subnet's bridge if that exists already (else the network converge plugs it).
pub async fn tap_ensure(state_dir: &Path, nic: &DesiredNic) -> anyhow::Result<String> {
    let state_dir = std::fs::canonicalize(state_dir)?;
    let name = names::tap(nic.port_id);
    let links = sys::links(None).await?;
    if links.get(&name).is_some_and(|l| l.kind != "tun") {
        anyhow::bail!("{name} exists and is not a tap");
    }
    if !links.contains_key(&name) {
        sys::ip(None, &["tuntap", "add", "dev", &name, "mode", "tap"]).await?;
    }
    let l = link(None, &name).await?.unwrap_or_default();
    let br = names::bridge(nic.subnet_id);
    let (mtu, master) = match links.get(&br) {
        Some(b) => (b.mtu, Some(br.as_str())),
        None => (l.mtu, None),
    };
    set_up(
        None,
        &name,
        &l,
        mtu,
        master,
        Some(&names::alias(&names::agent_tag(&state_dir))),
    )
    .await?;
    Ok(name)
}

/// Remove the taps of an instance's NICs.
pub async fn tap_remove(nics: &[DesiredNic]) -> anyhow::Result<()> {
    for n in nics {
        sys::link_del(None, &names::tap(n.port_id)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
