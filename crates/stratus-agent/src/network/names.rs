//! Names of the devices, namespaces and tables the agent makes for VPCs.
//!
//! Linux interface names have at most 15 characters, so every name is a short kind prefix
//! and the first 10 hex digits of the owning object's id (40 bits: a collision between two
//! objects of one host is unlikely, and [`Names::claim`] turns one into an error instead of
//! two objects sharing a device):
//!
//! | what                                   | where          | name                  |
//! |----------------------------------------|----------------|-----------------------|
//! | VPC router                             | namespace      | `stratus-<vpc>`       |
//! | subnet bridge                          | host           | `stb<subnet>`         |
//! | subnet leg, host end (in the bridge)   | host           | `stl<subnet>`         |
//! | subnet leg, router end (gateway)       | router         | `sn<subnet>`          |
//! | VXLAN of a subnet (in the bridge)      | host           | `stx<subnet>`         |
//! | instance NIC                           | host           | `stt<port>`           |
//! | external leg, host end (ext. bridge)   | host           | `ste<vpc>`            |
//! | external leg, router end               | router         | `ext0`                |
//! | peering link (both ends)               | both routers   | `pr<peering>`         |
//! | router rules (NAT, ACLs, isolation)    | router         | nft `ip stratus`      |
//! | security groups                        | host           | nft `inet`/`bridge` `stratus_<agent tag>` |
//!
//! Host devices also carry the alias `stratus:<agent tag>` (the tag is derived from the
//! agent's state directory), and so does each router's `lo`: the sweep after a restart
//! removes only what has this agent's tag, never another agent's (tests run several) nor
//! anything without our prefixes.

use std::collections::HashMap;
use std::path::Path;

use sha2::Digest as _;
use uuid::Uuid;

/// The first 10 hex digits of an id.
pub fn short(id: Uuid) -> String {
    id.simple().to_string()[..10].to_string()
}

pub fn netns(vpc: Uuid) -> String {
    format!("{NETNS_PREFIX}{}", short(vpc))
}
pub fn bridge(subnet: Uuid) -> String {
    format!("stb{}", short(subnet))
}
pub fn leg_host(subnet: Uuid) -> String {
    format!("stl{}", short(subnet))
}
pub fn leg_router(subnet: Uuid) -> String {
    format!("sn{}", short(subnet))
}
pub fn vxlan(subnet: Uuid) -> String {
    format!("stx{}", short(subnet))
}
pub fn tap(port: Uuid) -> String {
    format!("stt{}", short(port))
}
pub fn ext_host(vpc: Uuid) -> String {
    format!("ste{}", short(vpc))
}
pub fn peering(peering: Uuid) -> String {
    format!("pr{}", short(peering))
}

/// Every host device name an id may own (whatever kind of object it is).
pub fn host_devices(id: Uuid) -> [String; 5] {
    [bridge(id), leg_host(id), vxlan(id), tap(id), ext_host(id)]
}

pub const NETNS_PREFIX: &str = "stratus-";
/// The router end of the external leg (inside the router namespace).
pub const EXT_ROUTER: &str = "ext0";
/// The router's table (inside its namespace).
pub const ROUTER_TABLE: &str = "stratus";
/// Router-side names of subnet legs and peering links start so (nft wildcards use them).
pub const LEG_ROUTER_PREFIX: &str = "sn";
pub const PEERING_PREFIX: &str = "pr";

/// True for a host device name this module makes (`st` + kind + 10 hex digits).
pub fn is_ours(name: &str) -> bool {
    let b = name.as_bytes();
    name.len() == 13
        && name.starts_with("st")
        && matches!(b[2], b'b' | b'l' | b'x' | b't' | b'e')
        && name[3..]
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// True for a router namespace name (`stratus-` + 10 hex digits).
pub fn is_our_netns(name: &str) -> bool {
    name.strip_prefix(NETNS_PREFIX).is_some_and(|h| {
        h.len() == 10
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

/// The agent's tag: 8 hex digits of the SHA-256 of its state directory.
pub fn agent_tag(state_dir: &Path) -> String {
    let d = sha2::Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
    hex::encode(&d[..4])
}

/// The alias every host device of this agent carries.
pub fn alias(tag: &str) -> String {
    format!("stratus:{tag}")
}

/// The host security-group tables (`inet` and `bridge` family) of this agent.
pub fn sg_table(tag: &str) -> String {
    format!("stratus_{tag}")
}

/// Short names taken by ids; a second id with the same short name is a collision.
#[derive(Default)]
pub struct Names(HashMap<String, Uuid>);

impl Names {
    /// Claim `short(id)` for `id` (idempotent); fails if another id has it.
    pub fn claim(&mut self, id: Uuid) -> anyhow::Result<()> {
        match self.0.insert(short(id), id) {
            Some(other) if other != id => {
                self.0.insert(short(id), other);
                anyhow::bail!(
                    "{id} and {other} share the first 10 hex digits their device names are made of"
                )
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_are_recognised() {
        let id = Uuid::parse_str("0123456789abcdef0123456789abcdef").unwrap();
        for n in [bridge(id), leg_host(id), vxlan(id), tap(id), ext_host(id)] {
            assert!(n.len() <= 15 && is_ours(&n), "{n}");
        }
        assert!(leg_router(id).len() <= 15 && peering(id).len() <= 15);
        assert_eq!(netns(id), "stratus-0123456789");
        assert!(is_our_netns(&netns(id)));
        assert!(!is_our_netns("stratus-x"));
        for other in [
            "eth0",
            "stb0123",
            "stz0123456789",
            "br-ext",
            "stb0123456789X",
        ] {
            assert!(!is_ours(other), "{other}");
        }
        assert_eq!(agent_tag(Path::new("/a")).len(), 8);
        assert_ne!(agent_tag(Path::new("/a")), agent_tag(Path::new("/b")));
        assert!(sg_table("abcd1234").len() < 32);
    }

    #[test]
    fn collisions_are_detected() {
        let a = Uuid::parse_str("0123456789abcdef0123456789abcdef").unwrap();
        let b = Uuid::parse_str("0123456789ffffff0123456789abcdef").unwrap();
        let mut n = Names::default();
        n.claim(a).unwrap();
        n.claim(a).unwrap();
        assert!(n.claim(b).is_err());
        n.claim(Uuid::new_v4()).unwrap();
    }
}
