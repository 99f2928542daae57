//! Integration tests for the route policy, in one test binary: parse errors, matching, the
//! example files and documentation, and properties over arbitrary input.

mod docs;
mod errors;
mod matching;
mod properties;

use std::fmt::Write as _;

use policy::{Match, Policy, PolicyErrors};

/// Every error of a failed parse, one per line with its stable code; or `ok` and the routes.
pub(crate) fn render(result: &Result<Policy, PolicyErrors>) -> String {
    let mut out = String::new();
    match result {
        Ok(policy) => {
            let _ = writeln!(out, "ok: {} routes", policy.routes().len());
        }
        Err(errors) => {
            for e in &errors.0 {
                let _ = writeln!(out, "{e}  [{}]", e.kind.code());
            }
        }
    }
    out
}

/// One line for the outcome of matching a request.
pub(crate) fn describe(method: &str, path: &str, found: Option<Match<'_, '_>>) -> String {
    let request = format!("{method} {path}");
    let Some(m) = found else { return format!("{request:<36} -> none\n") };
    let mut line = format!("{request:<36} -> {:<38} {}", m.text(), m.scope());
    if !m.sensitivity().is_empty() {
        let _ = write!(line, " [{}]", m.sensitivity().join(","));
    }
    if m.on_audit_failure() == policy::OnAuditFailure::Allow {
        line.push_str(" audit-fail-open");
    }
    for (name, value) in m.params() {
        let _ = write!(line, " {name}={value}");
    }
    if let Some(rest) = m.rest() {
        let _ = write!(line, " *={rest:?}");
    }
    line.push('\n');
    line
}
