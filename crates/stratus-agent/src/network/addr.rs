//! IPv4 addresses and prefixes as the protocol writes them (`10.0.1.0/24`, `10.0.1.5`,
//! `fa:16:3e:00:00:01`), checked before they reach a command line or a ruleset.

use std::net::Ipv4Addr;

/// An address with a prefix length (`a.b.c.d/len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> anyhow::Result<Cidr> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("{s:?} is not an address with a prefix length"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| anyhow::anyhow!("{s:?}: bad IPv4 address"))?;
        let len: u8 = l
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| anyhow::anyhow!("{s:?}: bad prefix length"))?;
        Ok(Cidr { addr, len })
    }

    fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// `network/len`, as routes and rulesets want it.
    pub fn net_string(self) -> String {
        format!("{}/{}", self.network(), self.len)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

pub fn ip(s: &str) -> anyhow::Result<Ipv4Addr> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is not an IPv4 address"))
}

/// A prefix given as `a.b.c.d/len` or a plain address (a /32).
pub fn prefix(s: &str) -> anyhow::Result<Cidr> {
    if s.contains('/') {
        Cidr::parse(s)
    } else {
        Ok(Cidr {
            addr: ip(s)?,
            len: 32,
        })
    }
}

/// A unicast MAC address, lower case.
pub fn mac(s: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = s.split(':').collect();
    anyhow::ensure!(
        parts.len() == 6
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit())),
        "{s:?} is not a MAC address"
    );
    let m = s.to_ascii_lowercase();
    let first = u8::from_str_radix(&m[..2], 16)?;
    anyhow::ensure!(first & 1 == 0, "{s:?} is a multicast MAC address");
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_computes() {
        let c = Cidr::parse("10.0.1.7/24").unwrap();
        assert_eq!(c.network(), Ipv4Addr::new(10, 0, 1, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 0, 1, 255));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.net_string(), "10.0.1.0/24");
        assert_eq!(c.to_string(), "10.0.1.7/24");
        assert!(c.contains(Ipv4Addr::new(10, 0, 1, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 2, 1)));
        assert_eq!(
            Cidr::parse("0.0.0.0/0").unwrap().network(),
            Ipv4Addr::UNSPECIFIED
        );
        for bad in ["10.0.0.1", "10.0.0.1/33", "x/24", "10.0.0.1/"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(prefix("1.2.3.4").unwrap().len, 32);
        assert_eq!(mac("FA:16:3E:00:00:01").unwrap(), "fa:16:3e:00:00:01");
        assert!(mac("01:00:5e:00:00:01").is_err());
        assert!(mac("fa:16:3e:00:00").is_err());
        assert!(mac("fa:16:3e:00:00:0g").is_err());
    }
}
