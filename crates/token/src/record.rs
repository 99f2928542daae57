//! The stored form of a token: grants, constraints and lifecycle, with only a keyed hash of its
//! secret. Nothing here can reconstruct a token.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use jiff::Timestamp;

use crate::duration::RateLimit;
use crate::scope::Scope;
use crate::secret::SecretHash;

/// A token as the authority keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRecord {
    /// Public id (the middle part of the token string).
    pub id: String,
    /// Short human name.
    pub name: String,
    /// Who answers for this token (a person, team or service).
    pub owner: String,
    /// Free text: what the token is for.
    pub description: String,
    /// Key/value labels.
    pub labels: BTreeMap<String, String>,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Creation time.
    pub created_at: Timestamp,
    /// The admin token id that created it (`bootstrap` for the first admin token).
    pub created_by: String,
    /// Last change of grants, constraints or metadata.
    pub updated_at: Timestamp,
    /// Expiry; `None` only when no expiry was asked for explicitly.
    pub expires_at: Option<Timestamp>,
    /// Not valid before this time.
    pub not_before: Option<Timestamp>,
    /// Networks the token may be used from; empty means anywhere.
    pub allowed_cidrs: Vec<IpNet>,
    /// Optional request budget.
    pub rate_limit: Option<RateLimit>,
    /// Last time a request with this token was allowed or denied after resolving it.
    pub last_used_at: Option<Timestamp>,
    /// Revocation time.
    pub revoked_at: Option<Timestamp>,
    /// The admin token id that revoked it.
    pub revoked_by: Option<String>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
    /// Keyed hash of the current secret.
    pub secret_hash: SecretHash,
    /// When the current secret was issued (creation or last rotation).
    pub secret_created_at: Timestamp,
    /// The previous secret during a rotation grace period, and when that grace ends.
    pub previous_secret: Option<(SecretHash, Timestamp)>,
    /// Optimistic-concurrency counter: every stored change increments it, and a change based on
    /// an older revision is refused.
    pub revision: u64,
    /// Shadow mode: proposed narrower scopes. Decisions still use `scopes`; a request these
    /// would deny is flagged. Empty: no shadow.
    pub shadow_scopes: Vec<Scope>,
}

/// A token's state at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenState {
    /// Usable now.
    Active,
    /// Revoked (final).
    Revoked,
    /// Past its expiry.
    Expired,
    /// Before its `not_before`.
    NotYetValid,
}

impl TokenState {
    /// All states, in display order.
    pub const ALL: [TokenState; 4] =
        [TokenState::Active, TokenState::Revoked, TokenState::Expired, TokenState::NotYetValid];

    /// The state's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Revoked => "revoked",
            TokenState::Expired => "expired",
            TokenState::NotYetValid => "not_yet_valid",
        }
    }

    /// Parses a state name.
    pub fn parse(s: &str) -> Option<TokenState> {
        TokenState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl TokenRecord {
    /// The state at `now`; revocation wins over expiry, expiry over not-yet-valid.
    pub fn state(&self, now: Timestamp) -> TokenState {
        if self.revoked_at.is_some() {
            TokenState::Revoked
        } else if self.expires_at.is_some_and(|e| now >= e) {
            TokenState::Expired
        } else if self.not_before.is_some_and(|nb| now < nb) {
            TokenState::NotYetValid
        } else {
            TokenState::Active
        }
    }

    /// Whether `secret_hash` is the current secret, or the previous one within its grace period.
    /// Both comparisons always run, in constant time.
    pub fn secret_matches(&self, presented: &SecretHash, now: Timestamp) -> bool {
        let current = self.secret_hash.matches(presented);
        let previous = match &self.previous_secret {
            Some((hash, until)) => hash.matches(presented) && now < *until,
            None => false,
        };
        current | previous
    }

    /// Whether `ip` is inside the allowed networks (always, when none are configured).
    pub fn ip_allowed(&self, ip: Option<IpAddr>) -> bool {
        if self.allowed_cidrs.is_empty() {
            return true;
        }
        match ip {
            Some(ip) => cidr_contains(&self.allowed_cidrs, ip),
            None => false,
        }
    }
}

/// Whether any network in `nets` contains `ip`; IPv4-mapped IPv6 addresses count as IPv4.
pub fn cidr_contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

/// Why a network was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not an address or network.
    #[error("{0:?} is not an IP network: use CIDR notation such as 10.0.0.0/8 or 2001:db8::/32")]
    Syntax(String),
    /// Host bits are set below the prefix.
    #[error("{0:?} has host bits set; did you mean {1}?")]
    HostBits(String, IpNet),
}

/// Parses a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address (`/32` or `/128`).
///
/// A network with host bits set (`10.0.0.1/8`) is rejected: it usually hides a typo.
pub fn parse_cidr(s: &str) -> Result<IpNet, CidrError> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    let net: IpNet = s.parse().map_err(|_| CidrError::Syntax(s.to_owned()))?;
    if net.addr() != net.network() {
        return Err(CidrError::HostBits(s.to_owned(), net.trunc()));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn cidr_table() {
        let nets: Vec<IpNet> =
            ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"].iter().map(|s| parse_cidr(s).unwrap()).collect();
        let got: String = [
            "10.1.2.3",
            "11.0.0.1",
            "192.168.1.7",
            "192.168.1.8",
            "2001:db8:1::5",
            "2001:db9::1",
            "::ffff:10.9.9.9",
            "::1",
        ]
        .iter()
        .map(|ip| format!("{ip} {}\n", cidr_contains(&nets, ip.parse().unwrap())))
        .collect();
        expect![[r#"
            10.1.2.3 true
            11.0.0.1 false
            192.168.1.7 true
            192.168.1.8 false
            2001:db8:1::5 true
            2001:db9::1 false
            ::ffff:10.9.9.9 true
            ::1 false
        "#]]
        .assert_eq(&got);
    }

    #[test]
    fn cidr_parse_errors() {
        let got: String = ["10.0.0.0/8", "10.0.0.1/8", "10.0.0.0/33", "banana", "fe80::1/10", "::/0", ""]
            .iter()
            .map(|s| match parse_cidr(s) {
                Ok(n) => format!("{s:?} ok {n}\n"),
                Err(e) => format!("{s:?} {e}\n"),
            })
            .collect();
        expect![[r#"
            "10.0.0.0/8" ok 10.0.0.0/8
            "10.0.0.1/8" "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?
            "10.0.0.0/33" "10.0.0.0/33" is not an IP network: use CIDR notation such as 10.0.0.0/8 or 2001:db8::/32
            "banana" "banana" is not an IP network: use CIDR notation such as 10.0.0.0/8 or 2001:db8::/32
            "fe80::1/10" "fe80::1/10" has host bits set; did you mean fe80::/10?
            "::/0" ok ::/0
            "" "" is not an IP network: use CIDR notation such as 10.0.0.0/8 or 2001:db8::/32
        "#]]
        .assert_eq(&got);
    }
}
