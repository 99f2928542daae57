//! Networks of addresses: IPv4 /24 and IPv6 /48 by default, so that address churn inside one
//! network (DHCP, NAT pools, cloud egress) is not a new network.
//!
//! Detectors key their state by [`Net`], a small copyable value, and format it as text only when
//! they report; formatting a network per event was a measurable share of detection time.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

thread_local! {
    /// The last address text parsed on this thread and what it parsed to: several detectors look
    /// at the same event's address one after the other, and parsing it each time was a tenth of
    /// detection time. A cache of one entry cannot change a result, only skip repeating it.
    static LAST: std::cell::RefCell<(String, Option<IpAddr>)> = const { std::cell::RefCell::new((String::new(), None)) };
}

/// `ip.parse()`, remembering the last text parsed on this thread.
fn parse_cached(ip: &str) -> Option<IpAddr> {
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != ip {
            last.0.clear();
            last.0.push_str(ip);
            last.1 = ip.parse().ok();
        }
        last.1
    })
}

/// A network: an address masked to a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Net {
    /// An IPv4 network: masked address and prefix length.
    V4(u32, u8),
    /// An IPv6 network: masked address and prefix length.
    V6(u128, u8),
}

impl Net {
    /// The network of an address at the given prefix lengths (IPv4-mapped IPv6 addresses are
    /// IPv4); `None` when the text is not an address.
    pub fn of(ip: &str, v4_prefix: u8, v6_prefix: u8) -> Option<Net> {
        Some(Net::of_addr(parse_cached(ip)?, v4_prefix, v6_prefix))
    }

    /// The network of a parsed address.
    pub fn of_addr(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Net {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let p = v4_prefix.min(32);
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                Net::V4(u32::from(v4) & mask, p)
            }
            IpAddr::V6(v6) => {
                let p = v6_prefix.min(128);
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                Net::V6(u128::from(v6) & mask, p)
            }
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Net::V4(bits, p) => write!(f, "{}/{p}", Ipv4Addr::from(bits)),
            Net::V6(bits, p) => write!(f, "{}/{p}", Ipv6Addr::from(bits)),
        }
    }
}

/// The network of an address at the given prefix lengths, as text (`10.1.2.0/24`).
pub fn network(ip: &str, v4_prefix: u8, v6_prefix: u8) -> Option<String> {
    Net::of(ip, v4_prefix, v6_prefix).map(|n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert_eq!(network("10.1.2.3", 24, 48).as_deref(), Some("10.1.2.0/24"));
        assert_eq!(network("::ffff:10.1.2.3", 24, 48).as_deref(), Some("10.1.2.0/24"));
        assert_eq!(network("2001:db8:1:2::5", 24, 48).as_deref(), Some("2001:db8:1::/48"));
        assert_eq!(network("not an ip", 24, 48), None);
        assert_eq!(Net::of("10.1.2.3", 24, 48), Net::of("10.1.2.200", 24, 48));
        assert_ne!(Net::of("10.1.2.3", 24, 48), Net::of("10.1.3.3", 24, 48));
    }
}
