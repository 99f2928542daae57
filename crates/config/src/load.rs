//! The pipeline: defaults -> TOML file -> `TOKENTRAIL_*` environment -> flags -> validation.
//!
//! Each layer is applied in full even when an earlier one had problems, and every problem is
//! collected, so one run reports everything. Reading the file is the only I/O here: the
//! environment and the flags are inputs, so tests never touch the process environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use crate::error::{ConfigError, ConfigErrors, ErrorKind, Origin};
use crate::schema::{Config, Defaults, KEYS, Key, cross_checks};
use crate::value::{Input, a_type};

/// Prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "TOKENTRAIL_";

/// `TOKENTRAIL_*` variables that belong to the CLI client, not to the configuration; they are
/// ignored rather than reported as unknown.
pub const CLIENT_ENV_VARS: &[&str] =
    &["TOKENTRAIL_ADDR", "TOKENTRAIL_TOKEN", "TOKENTRAIL_TOKEN_FILE", "TOKENTRAIL_CONFIG"];

/// The environment variable for a key path: `tokens.default_lifetime` ->
/// `TOKENTRAIL_TOKENS_DEFAULT_LIFETIME`.
pub fn env_var(path: &str) -> String {
    format!("{ENV_PREFIX}{}", path.replace('.', "_").to_ascii_uppercase())
}

/// The flag name for a key path, as the CLI should spell it: `log.level` -> `--log-level`,
/// `data_dir` -> `--data-dir`. Used to name flags in error messages.
pub fn flag_name(path: &str) -> String {
    format!("--{}", path.replace(['.', '_'], "-"))
}

/// Every configuration key path, in documentation order.
pub fn key_paths() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|k| k.path)
}

/// Loads the configuration: defaults, then the TOML `file` if given, then the `TOKENTRAIL_*`
/// variables in `env`, then `flags`, then validation.
///
/// - `env` is the process environment as the caller read it (for example
///   `std::env::vars_os()` converted with `to_string_lossy`); variables without the
///   `TOKENTRAIL_` prefix and the client variables in [`CLIENT_ENV_VARS`] are ignored, any other
///   `TOKENTRAIL_*` variable must be a key's [`env_var`].
/// - `flags` are `(key path, value)` pairs for the flags the user actually gave, for example
///   `("data_dir", "/var/lib/tokentrail")` for `--data-dir`; values are parsed like environment
///   values. Errors name the flag as [`flag_name`] spells it.
///
/// Returns every problem found, not just the first.
pub fn load(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &[(&str, String)],
    defaults: Defaults,
) -> Result<Config, ConfigErrors> {
    let mut loader = Loader::new(&defaults);
    if let Some(path) = file {
        loader.file(path);
    }
    loader.env(env);
    loader.flags(flags);
    loader.finish()
}

/// Loads a file alone, without environment or flags, for `tokentrail config check FILE`.
pub fn check_file(path: &Path) -> Result<Config, ConfigErrors> {
    load(Some(path), &[], &[], Defaults::default())
}

/// The configuration being built, where each key's value came from, and the problems so far.
struct Loader {
    config: Config,
    origins: BTreeMap<&'static str, Origin>,
    errors: Vec<ConfigError>,
}

impl Loader {
    fn new(defaults: &Defaults) -> Loader {
        Loader { config: Config::defaults(defaults), origins: BTreeMap::new(), errors: Vec::new() }
    }

    fn error(&mut self, key: &str, origin: Origin, kind: ErrorKind, message: String) {
        self.errors.push(ConfigError { key: key.to_owned(), origin, kind, message });
    }

    fn set(&mut self, key: &Key, input: Input<'_, '_>, origin: Origin) {
        match (key.set)(&mut self.config, input) {
            Ok(()) => {
                self.origins.insert(key.path, origin);
            }
            Err((kind, message)) => self.error(key.path, origin, kind, message),
        }
    }

    fn file(&mut self, path: &Path) {
        let whole_file = Origin::File { path: path.to_owned(), line: None, column: None };
        let text = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    let message = "cannot read the config file: it is not UTF-8".to_owned();
                    return self.error("", whole_file, ErrorKind::Unreadable, message);
                }
            },
            Err(e) => {
                let message = if e.kind() == std::io::ErrorKind::NotFound {
                    "config file not found".to_owned()
                } else {
                    format!("cannot read the config file: {e}")
                };
                return self.error("", whole_file, ErrorKind::Unreadable, message);
            }
        };
        let file = File { path, text: &text };
        let (table, syntax_errors) = DeTable::parse_recoverable(&text);
        if !syntax_errors.is_empty() {
            // A recovered document can hold fragments that would produce confusing follow-on
            // errors, so a file with syntax errors reports only those.
            for e in syntax_errors {
                let span = e.span().unwrap_or(0..0);
                let mut message = e.message().to_owned();
                // Quote the offending text when it is short, for example the duplicated key.
                let at = text.get(span.clone()).map(str::trim).unwrap_or_default();
                if !at.is_empty() && at.len() <= 40 && !at.contains('\n') {
                    message.push_str(&format!(" (at `{at}`)"));
                }
                self.error("", file.origin(span.start), ErrorKind::Syntax, message);
            }
            return;
        }
        let first = self.errors.len();
        self.table(&file, "", table.get_ref());
        // The table is walked in key order; report in file order instead.
        self.errors[first..].sort_by_key(|e| match e.origin {
            Origin::File { line, column, .. } => (line, column),
            _ => (None, None),
        });
    }

    /// Applies one TOML table whose dotted path is `prefix` (empty for the document).
    fn table(&mut self, file: &File<'_>, prefix: &str, table: &DeTable<'_>) {
        for (name, value) in table.iter() {
            let path = join(prefix, name.get_ref());
            if let Some(key) = find(&path) {
                self.set(key, Input::Toml(value.get_ref()), file.origin(value.span().start));
            } else if is_section(&path) {
                match value.get_ref() {
                    DeValue::Table(inner) => self.table(file, &path, inner),
                    other => {
                        let message = format!(
                            "expected a table with the keys {}, found {}",
                            children(&path).join(", "),
                            a_type(other)
                        );
                        let origin = file.origin(value.span().start);
                        self.error(&path, origin, ErrorKind::WrongType, message);
                    }
                }
            } else {
                let origin = file.origin(name.span().start);
                let what = if value.get_ref().is_table() { "table" } else { "key" };
                let message = unknown(what, prefix, &path);
                self.error(&path, origin, ErrorKind::UnknownKey, message);
            }
        }
    }

    fn env(&mut self, env: &[(String, String)]) {
        let mut vars: Vec<_> = env
            .iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX) && !CLIENT_ENV_VARS.contains(&name.as_str()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in vars {
            let origin = Origin::Env { var: name.clone() };
            match KEYS.iter().find(|k| env_var(k.path) == *name) {
                Some(key) => self.set(key, Input::Text(value), origin),
                None => {
                    let known: Vec<String> = KEYS.iter().map(|k| env_var(k.path)).collect();
                    let mut message = "not a configuration variable".to_owned();
                    match diag::suggest(name, known.iter().map(String::as_str), 3) {
                        Some(s) => message.push_str(&format!(" (did you mean {s}?)")),
                        None => message.push_str(&format!("; known: {}", known.join(", "))),
                    }
                    self.error("", origin, ErrorKind::UnknownKey, message);
                }
            }
        }
    }

    fn flags(&mut self, flags: &[(&str, String)]) {
        for (path, value) in flags {
            let origin = Origin::Flag { name: flag_name(path) };
            match find(path) {
                Some(key) => self.set(key, Input::Text(value), origin),
                None => {
                    let message = "not a configuration key (a bug in the command line)".to_owned();
                    self.error(path, origin, ErrorKind::UnknownKey, message);
                }
            }
        }
    }

    fn finish(mut self) -> Result<Config, ConfigErrors> {
        for conflict in cross_checks(&self.config) {
            // Blame the first key the user actually set: that is the one they can change.
            let blamed = conflict
                .keys
                .iter()
                .find(|k| self.origins.contains_key(*k))
                .or(conflict.keys.first())
                .copied()
                .unwrap_or_default();
            let origin = self.origins.get(blamed).cloned().unwrap_or(Origin::Default);
            self.error(blamed, origin, ErrorKind::Conflict, conflict.message);
        }
        if self.errors.is_empty() { Ok(self.config) } else { Err(ConfigErrors(self.errors)) }
    }
}

/// The file being applied, for turning byte offsets into origins.
struct File<'a> {
    path: &'a Path,
    text: &'a str,
}

impl File<'_> {
    fn origin(&self, offset: usize) -> Origin {
        let (line, column) = diag::position(self.text, offset);
        Origin::File { path: PathBuf::from(self.path), line: Some(line), column: Some(column) }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") }
}

fn find(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// Whether `path` is a table that holds keys, such as `tokens`.
fn is_section(path: &str) -> bool {
    KEYS.iter().any(|k| k.path.strip_prefix(path).is_some_and(|rest| rest.starts_with('.')))
}

/// The names directly inside a table (keys and sub-tables), in registry order.
fn children(prefix: &str) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for key in KEYS {
        let rest = if prefix.is_empty() {
            Some(key.path)
        } else {
            key.path.strip_prefix(prefix).and_then(|r| r.strip_prefix('.'))
        };
        if let Some(name) = rest.and_then(|r| r.split('.').next())
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

/// The message for an unknown key or table (`what`): a close match if there is one, otherwise
/// what is allowed.
fn unknown(what: &str, prefix: &str, path: &str) -> String {
    let siblings = children(prefix);
    let full = |name: &str| join(prefix, name);
    let candidates: Vec<String> = siblings.iter().map(|n| full(n)).collect();
    match diag::suggest(path, candidates.iter().map(String::as_str), 3) {
        Some(s) => format!("unknown {what} (did you mean {s}?)"),
        None if prefix.is_empty() => {
            format!("unknown {what}; expected one of: {}", siblings.join(", "))
        }
        None => format!("unknown {what}; [{prefix}] has: {}", siblings.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_of_tables() {
        assert_eq!(children("tokens").len(), 4);
        assert!(children("").contains(&"log"));
        assert!(!is_section("tokens.prefix"));
        assert!(is_section("tokens"));
        assert!(!is_section("token"));
    }

    #[test]
    fn names_are_derived_from_paths() {
        assert_eq!(env_var("tokens.default_lifetime"), "TOKENTRAIL_TOKENS_DEFAULT_LIFETIME");
        assert_eq!(env_var("data_dir"), "TOKENTRAIL_DATA_DIR");
        assert_eq!(flag_name("data_dir"), "--data-dir");
        assert_eq!(flag_name("log.level"), "--log-level");
    }

    #[test]
    fn env_var_names_are_unique_and_not_client_vars() {
        let mut names: Vec<String> = key_paths().map(env_var).collect();
        for name in &names {
            assert!(!CLIENT_ENV_VARS.contains(&name.as_str()), "{name} is a client variable");
        }
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "two keys map to one environment variable");
    }
}
