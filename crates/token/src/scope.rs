//! Scopes: `resource:action`, where actions are ordered `read < write < admin`.
//!
//! A grant of `orders:admin` implies `orders:write` and `orders:read`; a grant on the resource `*`
//! covers every resource except the reserved `tokentrail` resource, so that a broad data token
//! never becomes an administrator of tokentrail itself by accident. The reserved resource takes
//! two actions of its own: `tokentrail:admin` (the admin API) and `tokentrail:verify` (the verify
//! endpoint); admin implies verify.

use std::fmt;
use std::str::FromStr;

/// The resource that names tokentrail's own API; never covered by `*`.
pub const RESERVED_RESOURCE: &str = "tokentrail";
/// Longest resource name accepted.
pub const MAX_RESOURCE_LEN: usize = 64;

/// What may be done to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Read access.
    Read,
    /// Write access (implies read).
    Write,
    /// Administrative access (implies write and read; on `tokentrail`, implies verify).
    Admin,
    /// Calling the verify endpoint; only on the `tokentrail` resource.
    Verify,
}

impl Action {
    /// The action's name as written in scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Admin => "admin",
            Action::Verify => "verify",
        }
    }

    /// Parses an action name.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "read" => Some(Action::Read),
            "write" => Some(Action::Write),
            "admin" => Some(Action::Admin),
            "verify" => Some(Action::Verify),
            _ => None,
        }
    }

    /// Whether holding `self` on a resource permits `required` on the same resource.
    pub fn implies(self, required: Action) -> bool {
        match (self, required) {
            (Action::Admin, _) => true,
            (Action::Write, Action::Read | Action::Write) => true,
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `resource:action` pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    resource: String,
    action: Action,
}

/// Why a scope string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// No `:` separator.
    #[error("scope {0:?} must have the form resource:action (for example orders:read)")]
    MissingColon(String),
    /// Empty resource.
    #[error("scope {0:?} has an empty resource")]
    EmptyResource(String),
    /// Resource too long.
    #[error("scope {0:?} has a resource longer than 64 characters")]
    ResourceTooLong(String),
    /// Bad character in the resource.
    #[error("scope {0:?}: the resource may contain only lowercase letters, digits, '_', '-' and '.', or be '*'")]
    BadResource(String),
    /// Unknown action.
    #[error("scope {0:?}: unknown action {1:?} (expected read, write or admin)")]
    BadAction(String, String),
    /// An action that does not fit the resource.
    #[error("scope {0:?}: the tokentrail resource takes only the actions admin and verify")]
    ReservedAction(String),
}

impl Scope {
    /// Builds a scope from parts, validating the resource.
    pub fn new(resource: &str, action: Action) -> Result<Scope, ScopeError> {
        Scope::parse(&format!("{resource}:{}", action.as_str()))
    }

    /// Parses `resource:action`.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        let (resource, action) = s.rsplit_once(':').ok_or_else(|| ScopeError::MissingColon(s.to_owned()))?;
        if resource.is_empty() {
            return Err(ScopeError::EmptyResource(s.to_owned()));
        }
        if resource.len() > MAX_RESOURCE_LEN {
            return Err(ScopeError::ResourceTooLong(s.to_owned()));
        }
        let valid_name = resource.as_bytes()[0].is_ascii_alphanumeric()
            && resource
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'));
        if resource != "*" && !valid_name {
            return Err(ScopeError::BadResource(s.to_owned()));
        }
        let action = match Action::parse(action) {
            Some(a) if (resource == RESERVED_RESOURCE) == matches!(a, Action::Verify) => a,
            Some(Action::Admin) if resource == RESERVED_RESOURCE => Action::Admin,
            Some(_) if resource == RESERVED_RESOURCE => {
                return Err(ScopeError::ReservedAction(s.to_owned()));
            }
            _ => return Err(ScopeError::BadAction(s.to_owned(), action.to_owned())),
        };
        Ok(Scope { resource: resource.to_owned(), action })
    }

    /// The resource (`*` for any).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Whether holding `self` permits what `required` asks for.
    pub fn implies(&self, required: &Scope) -> bool {
        let resource_ok =
            self.resource == required.resource || (self.resource == "*" && required.resource != RESERVED_RESOURCE);
        resource_ok && self.action.implies(required.action)
    }

    /// The scope that administers tokentrail's own API.
    pub fn tokentrail_admin() -> Scope {
        Scope { resource: RESERVED_RESOURCE.to_owned(), action: Action::Admin }
    }

    /// The scope a service needs to call the verify endpoint.
    pub fn tokentrail_verify() -> Scope {
        Scope { resource: RESERVED_RESOURCE.to_owned(), action: Action::Verify }
    }
}

/// Whether any scope in `granted` permits `required`.
pub fn covers(granted: &[Scope], required: &Scope) -> bool {
    granted.iter().any(|g| g.implies(required))
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn parse_table() {
        let inputs = [
            "orders:read",
            "orders:write",
            "orders:admin",
            "*:read",
            "tokentrail:admin",
            "tokentrail:verify",
            "tokentrail:read",
            "orders:verify",
            "*:verify",
            "v2.orders-eu_1:write",
            "orders:fly",
            ":read",
            "a b:read",
            "orders",
            "Orders:read",
            "orders:READ",
            "-x:read",
            "**:read",
            "",
        ];
        let got: String = inputs
            .iter()
            .map(|s| match Scope::parse(s) {
                Ok(scope) => format!("{s:?} -> ok {scope}\n"),
                Err(e) => format!("{s:?} -> {e}\n"),
            })
            .collect();
        expect![[r#"
            "orders:read" -> ok orders:read
            "orders:write" -> ok orders:write
            "orders:admin" -> ok orders:admin
            "*:read" -> ok *:read
            "tokentrail:admin" -> ok tokentrail:admin
            "tokentrail:verify" -> ok tokentrail:verify
            "tokentrail:read" -> scope "tokentrail:read": the tokentrail resource takes only the actions admin and verify
            "orders:verify" -> scope "orders:verify": unknown action "verify" (expected read, write or admin)
            "*:verify" -> scope "*:verify": unknown action "verify" (expected read, write or admin)
            "v2.orders-eu_1:write" -> ok v2.orders-eu_1:write
            "orders:fly" -> scope "orders:fly": unknown action "fly" (expected read, write or admin)
            ":read" -> scope ":read" has an empty resource
            "a b:read" -> scope "a b:read": the resource may contain only lowercase letters, digits, '_', '-' and '.', or be '*'
            "orders" -> scope "orders" must have the form resource:action (for example orders:read)
            "Orders:read" -> scope "Orders:read": the resource may contain only lowercase letters, digits, '_', '-' and '.', or be '*'
            "orders:READ" -> scope "orders:READ": unknown action "READ" (expected read, write or admin)
            "-x:read" -> scope "-x:read": the resource may contain only lowercase letters, digits, '_', '-' and '.', or be '*'
            "**:read" -> scope "**:read": the resource may contain only lowercase letters, digits, '_', '-' and '.', or be '*'
            "" -> scope "" must have the form resource:action (for example orders:read)
        "#]]
        .assert_eq(&got);
    }

    #[test]
    fn implication_table() {
        let granted = [
            "orders:read",
            "orders:write",
            "orders:admin",
            "*:read",
            "*:admin",
            "tokentrail:admin",
            "tokentrail:verify",
        ];
        let required =
            ["orders:read", "orders:write", "orders:admin", "users:read", "tokentrail:admin", "tokentrail:verify"];
        let mut table = format!("{:<14}", "granted\\req");
        for r in required {
            table.push_str(&format!(" {r:>16}"));
        }
        table.push('\n');
        for g in granted {
            let gs = Scope::parse(g).unwrap();
            table.push_str(&format!("{g:<14}"));
            for r in required {
                let yes = gs.implies(&Scope::parse(r).unwrap());
                table.push_str(&format!(" {:>16}", if yes { "yes" } else { "-" }));
            }
            table.push('\n');
        }
        expect![[r#"
            granted\req         orders:read     orders:write     orders:admin       users:read tokentrail:admin tokentrail:verify
            orders:read                 yes                -                -                -                -                -
            orders:write                yes              yes                -                -                -                -
            orders:admin                yes              yes              yes                -                -                -
            *:read                      yes                -                -              yes                -                -
            *:admin                     yes              yes              yes              yes                -                -
            tokentrail:admin                -                -                -                -              yes              yes
            tokentrail:verify                -                -                -                -                -              yes
        "#]]
        .assert_eq(&table);
    }

    #[test]
    fn covers_any_of_the_grants() {
        let granted = vec![Scope::parse("orders:read").unwrap(), Scope::parse("users:write").unwrap()];
        assert!(covers(&granted, &Scope::parse("users:read").unwrap()));
        assert!(!covers(&granted, &Scope::parse("orders:write").unwrap()));
        assert!(!covers(&[], &Scope::parse("orders:read").unwrap()));
    }
}
