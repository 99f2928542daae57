//! The route policy: which scope a request needs, and how sensitive it is, from its method and
//! path.
//!
//! A policy is a TOML file of routes (`method`, a path template such as `/v1/patients/{id}`, the
//! `resource` and `action` a token must hold, optional `sensitivity` labels and the
//! `on_audit_failure` mode) and an optional `[default]` for requests no route matches. See
//! `docs/policy.md` for the format, the precedence rules and how paths are normalized.
//!
//! [`Policy::parse`] checks a whole file and reports every problem at once with its line and
//! column; [`Policy::matches`] and [`Policy::resolve`] find the route for a request through an
//! index built at load time, cheap enough to run on every request.
//!
//! Pure apart from [`Policy::load`], which reads the file: no async, no clock, no logging.
//! Reloading (on SIGHUP or on change) is the caller's job: parse the new file, and keep the old
//! policy when it has errors.

mod error;
mod index;
mod parse;
mod path;
mod policy;
mod template;

pub use error::{ErrorKind, PolicyError, PolicyErrors};
pub use policy::{DEFAULT_ROUTE_TEXT, Match, Methods, OnAuditFailure, Params, Policy, Route};
pub use template::{MAX_SEGMENTS, Segment, Template};
