//! Configuration errors: every problem names the key, where the value came from and what was
//! expected, so that one run of `tokentrail config check` is enough to fix a file.
//!
//! Errors are collected, never returned early: [`ConfigErrors`] holds all of them.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value (or a problem with it) came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default (or, for `node`, the hostname the caller passed in).
    Default,
    /// The TOML file. `line` and `column` are 1-based and absent when the problem concerns the
    /// whole file (it is missing, unreadable or not UTF-8).
    File {
        /// The path as given to `--config`.
        path: PathBuf,
        /// Line of the offending key or value.
        line: Option<usize>,
        /// Column (in characters) of the offending key or value.
        column: Option<usize>,
    },
    /// A `TOKENTRAIL_*` environment variable.
    Env {
        /// The variable's name, for example `TOKENTRAIL_LISTEN`.
        var: String,
    },
    /// A command-line flag.
    Flag {
        /// The flag as typed, for example `--log-level`.
        name: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line, column } => {
                write!(f, "{}", path.display())?;
                if let Some(line) = line {
                    write!(f, ":{line}")?;
                    if let Some(column) = column {
                        write!(f, ":{column}")?;
                    }
                }
                Ok(())
            }
            Origin::Env { var } => write!(f, "env {var}"),
            Origin::Flag { name } => write!(f, "flag {name}"),
        }
    }
}

/// The class of a configuration problem; [`ErrorKind::code`] is stable and searchable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file is missing, unreadable or not UTF-8.
    Unreadable,
    /// The file is not valid TOML.
    Syntax,
    /// A key, table or `TOKENTRAIL_*` variable that tokentrail does not know.
    UnknownKey,
    /// A value of the wrong TOML type (a number where a string is expected, …).
    WrongType,
    /// A value of the right type that is malformed or out of range.
    InvalidValue,
    /// Values that are valid alone but contradict each other.
    Conflict,
}

impl ErrorKind {
    /// A stable identifier, for documentation and scripts.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Unreadable => "config_unreadable",
            ErrorKind::Syntax => "config_syntax",
            ErrorKind::UnknownKey => "config_unknown_key",
            ErrorKind::WrongType => "config_wrong_type",
            ErrorKind::InvalidValue => "config_invalid_value",
            ErrorKind::Conflict => "config_conflict",
        }
    }
}

/// One configuration problem.
///
/// Displayed as `<origin>: <key>: <message>`, for example
/// `tokentrail.toml:4:1: tokens.prefx: unknown key (did you mean tokens.prefix?)`. The key part
/// is left out when the problem has no key (a syntax error, an unknown environment variable).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {}{message}", key_part(.key))]
pub struct ConfigError {
    /// The dotted key path (`tokens.default_lifetime`), or empty when there is none.
    pub key: String,
    /// Where the offending value came from.
    pub origin: Origin,
    /// The class of problem.
    pub kind: ErrorKind,
    /// What is wrong and what is expected.
    pub message: String,
}

fn key_part(key: &str) -> String {
    if key.is_empty() { String::new() } else { format!("{key}: ") }
}

/// Every problem found while loading a configuration, in the order of the pipeline (file, in
/// file order; environment, by variable name; flags, in the order given; validation).
///
/// Displayed as one error per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn lines(errors: &[ConfigError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}
