//! The policy and what matching hands back: [`Policy`], its [`Route`]s, and the [`Match`] of a
//! request (the route, and the parameters captured from the path).
//!
//! Matching allocates nothing: a [`Match`] borrows the route from the policy and the path from the
//! caller, and reads parameters out of the path only when asked.

use std::fmt;
use std::path::Path;

use token::Scope;

use crate::error::{ErrorKind, PolicyError, PolicyErrors};
use crate::index::Index;
use crate::path;
use crate::template::{Segment, Template};

/// The route text of the default route (`[default] decision = "allow"`), as events show it.
pub const DEFAULT_ROUTE_TEXT: &str = "* /*";

/// The methods a route applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Methods {
    /// `"*"`: every method, including ones the policy never names.
    Any,
    /// These methods, compared case-sensitively (RFC 9110 §9.1); never empty, no duplicates.
    Only(Vec<String>),
}

impl Methods {
    /// Whether a request with `method` is covered.
    pub fn contains(&self, method: &str) -> bool {
        match self {
            Methods::Any => true,
            Methods::Only(methods) => methods.iter().any(|m| m == method),
        }
    }
}

impl fmt::Display for Methods {
    /// `*`, `GET`, or `GET,HEAD` for a list (in the order written).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Methods::Any => f.write_str("*"),
            Methods::Only(methods) => f.write_str(&methods.join(",")),
        }
    }
}

/// What a route does when the audit ledger cannot record the decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnAuditFailure {
    /// Answer 503 with reason `audit_unavailable` and forward nothing (the default).
    #[default]
    Deny,
    /// Forward, and spool the event until the ledger can write again.
    Allow,
}

impl OnAuditFailure {
    /// The mode as written in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            OnAuditFailure::Deny => "deny",
            OnAuditFailure::Allow => "allow",
        }
    }
}

/// One route of the policy, or the default route of `[default] decision = "allow"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub(crate) text: String,
    pub(crate) methods: Methods,
    pub(crate) template: Template,
    pub(crate) scope: Scope,
    pub(crate) sensitivity: Vec<String>,
    pub(crate) on_audit_failure: OnAuditFailure,
    pub(crate) line: usize,
    pub(crate) is_default: bool,
}

impl Route {
    /// The route as events name it: methods and template, such as `GET /v1/patients/{id}`,
    /// `GET,HEAD /v1/files/*`, `* /v1/admin/*`, or [`DEFAULT_ROUTE_TEXT`] for the default route.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The methods the route applies to.
    pub fn methods(&self) -> &Methods {
        &self.methods
    }

    /// The path template.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The scope a token needs for this route (`resource:action`); never on the reserved
    /// `tokentrail` resource and never on `*`.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The sensitivity labels, in the order written (`phi`, `pii`, …); possibly empty.
    pub fn sensitivity(&self) -> &[String] {
        &self.sensitivity
    }

    /// What to do when the audit ledger cannot record a decision on this route.
    pub fn on_audit_failure(&self) -> OnAuditFailure {
        self.on_audit_failure
    }

    /// The line of the route's `[[route]]` header (or of `[default]`) in the policy file.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Whether this is the default route rather than one of the `[[route]]`s.
    pub fn is_default(&self) -> bool {
        self.is_default
    }
}

/// A route policy, parsed, checked and indexed. Cheap to share between threads (it is immutable);
/// to reload, parse a new one and swap it in.
#[derive(Clone, Debug)]
pub struct Policy {
    source_name: String,
    routes: Vec<Route>,
    default: Option<Route>,
    index: Index,
}

impl Default for Policy {
    /// The empty policy: no routes, and every request is denied with `route_not_found`.
    fn default() -> Policy {
        Policy { source_name: String::new(), routes: Vec::new(), default: None, index: Index::default() }
    }
}

impl Policy {
    /// Parses and checks a policy. `source_name` (usually the file's path) prefixes every error.
    ///
    /// Returns every problem in the file at once, each with its line and column, in file order.
    pub fn parse(text: &str, source_name: &str) -> Result<Policy, PolicyErrors> {
        crate::parse::parse(text, source_name)
    }

    /// Reads a policy file and parses it. This is the only I/O the crate does.
    pub fn load(path: &Path) -> Result<Policy, PolicyErrors> {
        let source_name = path.display().to_string();
        let unreadable = |message: String| {
            PolicyErrors(vec![PolicyError {
                source_name: source_name.clone(),
                line: None,
                column: None,
                key: String::new(),
                kind: ErrorKind::Unreadable,
                message,
            }])
        };
        let bytes = std::fs::read(path).map_err(|e| {
            unreadable(if e.kind() == std::io::ErrorKind::NotFound {
                "policy file not found".to_owned()
            } else {
                format!("cannot read the policy file: {e}")
            })
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| unreadable("cannot read the policy file: it is not UTF-8".to_owned()))?;
        Policy::parse(&text, &source_name)
    }

    pub(crate) fn new(source_name: &str, routes: Vec<Route>, default: Option<Route>, index: Index) -> Policy {
        Policy { source_name: source_name.to_owned(), routes, default, index }
    }

    /// The name the policy was parsed under.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The routes, in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The default route when `[default]` says `decision = "allow"`; `None` when requests no
    /// route matches are denied (`route_not_found`).
    pub fn default_route(&self) -> Option<&Route> {
        self.default.as_ref()
    }

    /// The most specific `[[route]]` for a request, ignoring the default.
    ///
    /// `method` is compared case-sensitively; `path` is the request path (a query string is
    /// ignored). A path that could be read differently by different servers matches nothing; see
    /// `docs/policy.md` for the precedence and normalization rules.
    pub fn matches<'p, 'r>(&'p self, method: &str, path: &'r str) -> Option<Match<'p, 'r>> {
        let normalized = path::normalize(path)?;
        let id = self.index.find(method, normalized)?;
        Some(Match { route: &self.routes[id], path: normalized })
    }

    /// What a request needs: its most specific route, else the default route when the policy
    /// allows unmatched requests. `None` means deny with reason `route_not_found`.
    ///
    /// Refused paths (see [`Policy::matches`]) get `None` even under a default that allows: the
    /// default must not become the way around a route.
    pub fn resolve<'p, 'r>(&'p self, method: &str, path: &'r str) -> Option<Match<'p, 'r>> {
        let normalized = path::normalize(path)?;
        match self.index.find(method, normalized) {
            Some(id) => Some(Match { route: &self.routes[id], path: normalized }),
            None => self.default.as_ref().map(|route| Match { route, path: normalized }),
        }
    }
}

/// The route a request matched, with the path it matched on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match<'p, 'r> {
    route: &'p Route,
    /// The normalized path: without query string and trailing slash, empty for `/`.
    path: &'r str,
}

impl<'p, 'r> Match<'p, 'r> {
    /// The route.
    pub fn route(&self) -> &'p Route {
        self.route
    }

    /// The route's text for events, such as `GET /v1/patients/{id}`.
    pub fn text(&self) -> &'p str {
        &self.route.text
    }

    /// The scope the request needs: `Some(m.scope())` is `token::Attempt::required`.
    pub fn scope(&self) -> &'p Scope {
        &self.route.scope
    }

    /// The route's sensitivity labels.
    pub fn sensitivity(&self) -> &'p [String] {
        &self.route.sensitivity
    }

    /// The route's audit failure mode.
    pub fn on_audit_failure(&self) -> OnAuditFailure {
        self.route.on_audit_failure
    }

    /// Whether the request fell through to the default route.
    pub fn is_default(&self) -> bool {
        self.route.is_default
    }

    /// The captured `{name}` parameters, in template order, as raw (not percent-decoded) text.
    pub fn params(&self) -> Params<'p, 'r> {
        Params { segments: self.route.template.segments().iter(), rest: self.path }
    }

    /// The raw value of the parameter `name`, if the template has it.
    pub fn param(&self, name: &str) -> Option<&'r str> {
        self.params().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// What the trailing `/*` matched, without its leading slash (`a/b` for `/static/*` and
    /// `/static/a/b`, empty for `/static`); `None` when the template has no wildcard.
    pub fn rest(&self) -> Option<&'r str> {
        if !self.route.template.has_wildcard() {
            return None;
        }
        let mut rest = self.path;
        for _ in self.route.template.segments() {
            rest = path::first_segment(rest).1;
        }
        Some(rest.strip_prefix('/').unwrap_or(rest))
    }
}

/// The parameters of a [`Match`]: `(name, raw value)` pairs in template order.
#[derive(Clone, Debug)]
pub struct Params<'p, 'r> {
    segments: std::slice::Iter<'p, Segment>,
    rest: &'r str,
}

impl<'p, 'r> Iterator for Params<'p, 'r> {
    type Item = (&'p str, &'r str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let segment = self.segments.next()?;
            let (value, tail) = path::first_segment(self.rest);
            self.rest = tail;
            if let Segment::Param(name) = segment {
                return Some((name.as_str(), value));
            }
        }
    }
}
