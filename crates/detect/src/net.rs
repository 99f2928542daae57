//! Networks of addresses: IPv4 /24 and IPv6 /48 by default, so that address churn inside one
//! network (DHCP, NAT pools, cloud egress) is not a new network.

use std::net::IpAddr;

/// The network of an address at the given prefix lengths, as text (`10.1.2.0/24`).
pub fn network(ip: &str, v4_prefix: u8, v6_prefix: u8) -> Option<String> {
    let ip: IpAddr = ip.parse().ok()?;
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let p = v4_prefix.min(32);
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            Some(format!("{}/{p}", std::net::Ipv4Addr::from(bits & mask)))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let p = v6_prefix.min(128);
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            Some(format!("{}/{p}", std::net::Ipv6Addr::from(bits & mask)))
        }
    }
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
    }
}
