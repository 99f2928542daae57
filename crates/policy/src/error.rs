//! Policy errors: every problem names where it is (file, line and column), the key, and what was
//! expected, so that one run of a policy check is enough to fix a file.
//!
//! Errors are collected, never returned early: [`PolicyErrors`] holds all of them, in file order.

use std::fmt;

/// The class of a policy problem; [`ErrorKind::code`] is stable and searchable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file is missing, unreadable or not UTF-8.
    Unreadable,
    /// The file is not valid TOML.
    Syntax,
    /// A key or table the policy format does not know.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong TOML type (a number where a string is expected, …).
    WrongType,
    /// A value of the right type that is malformed: a bad method, template, scope or label.
    InvalidValue,
    /// Values that are valid alone but contradict each other (`resource` without
    /// `decision = "allow"` in `[default]`).
    Conflict,
    /// Two routes that would match exactly the same requests.
    Ambiguous,
}

impl ErrorKind {
    /// A stable identifier, for documentation and scripts.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Unreadable => "policy_unreadable",
            ErrorKind::Syntax => "policy_syntax",
            ErrorKind::UnknownKey => "policy_unknown_key",
            ErrorKind::MissingKey => "policy_missing_key",
            ErrorKind::WrongType => "policy_wrong_type",
            ErrorKind::InvalidValue => "policy_invalid_value",
            ErrorKind::Conflict => "policy_conflict",
            ErrorKind::Ambiguous => "policy_ambiguous_route",
        }
    }
}

/// One policy problem.
///
/// Displayed as `<source>:<line>:<column>: <key>: <message>`, for example
/// `policy.toml:7:10: route.method: "get" is not a method; methods are case-sensitive, write "GET"`.
/// The position is left out when the problem concerns the whole file, the key when there is none.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{message}", location(.source_name, *.line, *.column), key_part(.key))]
pub struct PolicyError {
    /// The name the policy was parsed under, usually its path.
    pub source_name: String,
    /// 1-based line of the offending key, value or table header; `None` for the whole file.
    pub line: Option<usize>,
    /// 1-based column, in characters; `None` for the whole file.
    pub column: Option<usize>,
    /// The key path, such as `route.method` or `default.decision`; empty when there is none.
    pub key: String,
    /// The class of problem.
    pub kind: ErrorKind,
    /// What is wrong and what is expected.
    pub message: String,
}

fn location(source: &str, line: Option<usize>, column: Option<usize>) -> String {
    let mut out = source.to_owned();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
        if let Some(column) = column {
            out.push_str(&format!(":{column}"));
        }
    }
    out.push_str(": ");
    out
}

fn key_part(key: &str) -> String {
    if key.is_empty() { String::new() } else { format!("{key}: ") }
}

/// Every problem found in a policy, in file order. Displayed as one error per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
