//! IPv4 address arithmetic for the address plan: CIDRs, ranges, private space.
//! Addresses are `u32` in the store (so uniqueness and ordering are plain integer ones).

use std::net::Ipv4Addr;

use crate::error::{Error, Result};

/// `a.b.c.d/len` with the host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub net: u32,
    pub len: u8,
}

impl Cidr {
    /// Parse and validate: the prefix within `lens`, no host bits set.
    pub fn parse(field: &str, s: &str, lens: std::ops::RangeInclusive<u8>) -> Result<Cidr> {
        let bad = |why: &str| Error::invalid(field, why);
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| bad("must be an IPv4 CIDR like 10.0.0.0/16"))?;
        let ip: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("must be an IPv4 CIDR like 10.0.0.0/16"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| lens.contains(l))
            .ok_or_else(|| {
                bad(&format!(
                    "the prefix length must be between /{} and /{}",
                    lens.start(),
                    lens.end()
                ))
            })?;
        let net = u32::from(ip);
        let c = Cidr { net, len };
        if net & !c.mask() != 0 {
            return Err(bad(&format!(
                "has host bits set; did you mean {}?",
                Cidr {
                    net: net & c.mask(),
                    len
                }
            )));
        }
        Ok(c)
    }

    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }

    pub fn last(&self) -> u32 {
        self.net | !self.mask()
    }

    pub fn contains(&self, ip: u32) -> bool {
        ip & self.mask() == self.net
    }

    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains(other.net)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.net) || other.contains(self.net)
    }

    /// Addresses usable by hosts: all but the network and broadcast addresses.
    pub fn hosts(&self) -> (u32, u32) {
        (self.net + 1, self.last() - 1)
    }

    /// RFC 1918 or shared (100.64.0.0/10) space: what a VPC may use.
    pub fn is_private(&self) -> bool {
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
        ]
        .iter()
        .filter_map(|s| Cidr::parse("", s, 0..=32).ok())
        .any(|p| p.contains_cidr(self))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.net), self.len)
    }
}

pub fn parse_ip(field: &str, s: &str) -> Result<u32> {
    s.parse::<Ipv4Addr>()
        .map(u32::from)
        .map_err(|_| Error::invalid(field, &format!("{s:?} is not an IPv4 address")))
}

pub fn ip_text(n: u32) -> String {
    Ipv4Addr::from(n).to_string()
}

/// The lowest address of `pools` (inclusive ranges, in order) not in `used` (sorted).
pub fn lowest_free(pools: &[(u32, u32)], used: &[u32]) -> Option<u32> {
    for &(start, end) in pools {
        let mut candidate = start;
        // `used` is sorted: walk past what is taken below and inside this range.
        let from = used.partition_point(|u| *u < start);
        for &u in &used[from..] {
            if u > end || u > candidate {
                break;
            }
            if u == candidate {
                candidate = candidate.checked_add(1)?;
            }
        }
        if candidate <= end {
            return Some(candidate);
        }
    }
    None
}

/// A locally administered unicast MAC from 16 random bits… and 24 more (fa:16:3e is the
/// OpenStack prefix guests and tools recognise as virtual).
pub fn random_mac() -> String {
    let b = uuid::Uuid::new_v4();
    let r = b.as_bytes();
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", r[0], r[1], r[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_contain_and_overlap() {
        let v = Cidr::parse("cidr", "10.0.0.0/16", 8..=28).unwrap();
        let s = Cidr::parse("cidr", "10.0.1.0/24", 8..=28).unwrap();
        assert!(v.contains_cidr(&s) && v.overlaps(&s) && s.overlaps(&v));
        assert!(!s.contains_cidr(&v));
        assert_eq!(
            s.hosts(),
            (
                parse_ip("", "10.0.1.1").unwrap(),
                parse_ip("", "10.0.1.254").unwrap()
            )
        );
        assert!(Cidr::parse("cidr", "10.0.1.5/24", 8..=28)
            .unwrap_err()
            .to_string()
            .contains("10.0.1.0/24"));
        assert!(Cidr::parse("cidr", "10.0.0.0/4", 8..=28).is_err());
        assert!(Cidr::parse("cidr", "nonsense", 8..=28).is_err());
        assert!(v.is_private());
        assert!(!Cidr::parse("c", "8.8.8.0/24", 8..=28).unwrap().is_private());
        let other = Cidr::parse("c", "10.1.0.0/16", 8..=28).unwrap();
        assert!(!v.overlaps(&other));
    }

    #[test]
    fn the_lowest_free_address_skips_what_is_used() {
        assert_eq!(lowest_free(&[(10, 20)], &[]), Some(10));
        assert_eq!(lowest_free(&[(10, 20)], &[10, 11, 13]), Some(12));
        assert_eq!(lowest_free(&[(10, 12)], &[10, 11, 12]), None);
        assert_eq!(
            lowest_free(&[(10, 11), (30, 40)], &[5, 10, 11, 30]),
            Some(31)
        );
        assert_eq!(lowest_free(&[(10, 20)], &[1, 2, 25]), Some(10));
    }
}
