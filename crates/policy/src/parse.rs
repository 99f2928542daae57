//! From TOML text to a checked [`Policy`]: every key of every table is looked at, every problem
//! is recorded with its position, and nothing stops at the first error.
//!
//! The TOML is read with `toml`'s spanned document (`DeTable`), not with serde, because serde
//! stops at the first problem and loses positions; a policy check must list everything wrong
//! with a file in one run, each at its line and column.

use std::ops::Range;

use token::{Action, Scope, ScopeError};
use toml::de::{DeTable, DeValue};

use crate::error::{ErrorKind, PolicyError, PolicyErrors};
use crate::index::Index;
use crate::policy::{DEFAULT_ROUTE_TEXT, Methods, OnAuditFailure, Policy, Route};
use crate::template::Template;

const TOP_KEYS: &[&str] = &["default", "route"];
const ROUTE_KEYS: &[&str] = &["method", "path", "resource", "action", "sensitivity", "on_audit_failure"];
const DEFAULT_KEYS: &[&str] = &["decision", "resource", "action", "sensitivity", "on_audit_failure"];

/// Longest sensitivity label accepted.
const MAX_LABEL_LEN: usize = 64;

type Spanned<'a, 'i> = &'a toml::Spanned<DeValue<'i>>;

pub(crate) fn parse(text: &str, source_name: &str) -> Result<Policy, PolicyErrors> {
    let mut parser = Parser { text, source_name, errors: Vec::new() };
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        // A recovered document can hold fragments that would produce confusing follow-on errors,
        // so a file with syntax errors reports only those (as the config crate does).
        for e in syntax_errors {
            let span = e.span().unwrap_or(0..0);
            let mut message = e.message().trim_end().to_owned();
            let at = text.get(span.clone()).map(str::trim).unwrap_or_default();
            if !at.is_empty() && at.len() <= 40 && !at.contains('\n') {
                message.push_str(&format!(" (at `{at}`)"));
            }
            parser.error(span.start, "", ErrorKind::Syntax, message);
        }
        return Err(parser.finish());
    }

    let mut routes: Vec<(Route, usize)> = Vec::new();
    let mut default = None;
    for (key, value) in document.get_ref().iter() {
        match key.get_ref().as_ref() {
            "route" => match value.get_ref() {
                DeValue::Array(items) => {
                    for item in items.iter() {
                        match item.get_ref() {
                            DeValue::Table(table) => routes.extend(parser.route(table, item.span())),
                            other => {
                                let message = format!("expected a table ([[route]]), found {}", a_type(other));
                                parser.error(item.span().start, "route", ErrorKind::WrongType, message);
                            }
                        }
                    }
                }
                DeValue::Table(_) => {
                    let message = "routes are an array of tables: write [[route]], not [route]".to_owned();
                    parser.error(value.span().start, "route", ErrorKind::WrongType, message);
                }
                other => {
                    let message = format!("expected routes as [[route]] tables, found {}", a_type(other));
                    parser.error(value.span().start, "route", ErrorKind::WrongType, message);
                }
            },
            "default" => match value.get_ref() {
                DeValue::Table(table) => default = parser.default(table, value.span()),
                other => {
                    let message = format!("expected a table ([default]), found {}", a_type(other));
                    parser.error(value.span().start, "default", ErrorKind::WrongType, message);
                }
            },
            name => parser.unknown(key.span().start, "", name, TOP_KEYS),
        }
    }

    // Routes are in file order (an array keeps it), so of two ambiguous routes the later one is
    // reported, pointing at the earlier.
    let mut index = Index::default();
    for (id, (route, path_offset)) in routes.iter().enumerate() {
        if let Some((other, method)) = index.insert(id, route) {
            let other = &routes[other].0;
            let requests =
                if method == "*" { "requests of every method".to_owned() } else { format!("{method} requests") };
            let message = format!(
                "{} is ambiguous with {} at line {}: both take {requests} to the same paths (the templates differ \
                 at most in parameter names), so one of them would never be used",
                route.text, other.text, other.line
            );
            parser.error(*path_offset, "route.path", ErrorKind::Ambiguous, message);
        }
    }

    if !parser.errors.is_empty() {
        return Err(parser.finish());
    }
    let routes = routes.into_iter().map(|(route, _)| route).collect();
    Ok(Policy::new(source_name, routes, default, index))
}

/// The text being parsed and the problems found so far.
struct Parser<'t> {
    text: &'t str,
    source_name: &'t str,
    errors: Vec<PolicyError>,
}

/// The values of a route or `[default]` table that are common to both, as far as they were valid.
#[derive(Default)]
struct Common {
    resource: Option<(String, Range<usize>)>,
    action: Option<(Action, Range<usize>)>,
    /// A key that is present but invalid; suppresses "missing" errors for it.
    bad_resource: bool,
    bad_action: bool,
    sensitivity: Vec<String>,
    on_audit_failure: OnAuditFailure,
}

impl Parser<'_> {
    fn error(&mut self, offset: usize, key: &str, kind: ErrorKind, message: String) {
        let (line, column) = diag::position(self.text, offset);
        self.errors.push(PolicyError {
            source_name: self.source_name.to_owned(),
            line: Some(line),
            column: Some(column),
            key: key.to_owned(),
            kind,
            message,
        });
    }

    fn finish(mut self) -> PolicyErrors {
        // Tables are walked in key order; report in file order instead.
        self.errors.sort_by_key(|e| (e.line, e.column));
        PolicyErrors(self.errors)
    }

    fn unknown(&mut self, offset: usize, table: &str, name: &str, known: &[&str]) {
        let path = if table.is_empty() { name.to_owned() } else { format!("{table}.{name}") };
        let message = match diag::suggest(name, known.iter().copied(), 2) {
            Some(s) => format!("unknown key (did you mean {s}?)"),
            None => format!("unknown key; expected one of: {}", known.join(", ")),
        };
        self.error(offset, &path, ErrorKind::UnknownKey, message);
    }

    fn wrong_type(&mut self, value: Spanned<'_, '_>, key: &str, expected: &str) {
        let message = format!("expected {expected}, found {}", a_type(value.get_ref()));
        self.error(value.span().start, key, ErrorKind::WrongType, message);
    }

    fn string<'v>(&mut self, value: &'v toml::Spanned<DeValue<'_>>, key: &str, expected: &str) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(value, key, expected);
                None
            }
        }
    }

    /// Reads the keys a route and `[default]` share; returns `false` for any other key.
    fn common(&mut self, table: &str, name: &str, value: Spanned<'_, '_>, common: &mut Common) -> bool {
        let key = format!("{table}.{name}");
        match name {
            "resource" => {
                common.bad_resource = true;
                if let Some(resource) = self.string(value, &key, "a resource name such as \"patients\"") {
                    match check_resource(resource) {
                        Ok(()) => {
                            common.resource = Some((resource.to_owned(), value.span()));
                            common.bad_resource = false;
                        }
                        Err(message) => self.error(value.span().start, &key, ErrorKind::InvalidValue, message),
                    }
                }
            }
            "action" => {
                common.bad_action = true;
                if let Some(action) = self.string(value, &key, "an action: read, write or admin") {
                    match Action::parse(action) {
                        Some(a @ (Action::Read | Action::Write | Action::Admin)) => {
                            common.action = Some((a, value.span()));
                            common.bad_action = false;
                        }
                        _ => {
                            let mut message = format!("unknown action {action:?}: expected read, write or admin");
                            if table == "default" && matches!(action, "deny" | "allow") {
                                message = format!(
                                    "{action:?} is not an action: in [default], action is what the default \
                                     requires (read, write or admin); write decision = {action:?} instead"
                                );
                            }
                            self.error(value.span().start, &key, ErrorKind::InvalidValue, message);
                        }
                    }
                }
            }
            "sensitivity" => common.sensitivity = self.labels(value, &key),
            "on_audit_failure" => {
                if let Some(mode) = self.string(value, &key, "\"deny\" or \"allow\"") {
                    match mode {
                        "deny" => common.on_audit_failure = OnAuditFailure::Deny,
                        "allow" => common.on_audit_failure = OnAuditFailure::Allow,
                        other => {
                            let message = format!("{other:?}: expected \"deny\" or \"allow\"");
                            self.error(value.span().start, &key, ErrorKind::InvalidValue, message);
                        }
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// Checks one `[[route]]`; returns it with the offset of its path (where ambiguity is
    /// reported), or `None` after recording its problems.
    fn route(&mut self, table: &DeTable<'_>, header: Range<usize>) -> Option<(Route, usize)> {
        let errors_before = self.errors.len();
        let mut common = Common::default();
        let mut methods = None;
        let mut bad_methods = false;
        let mut template = None;
        let mut bad_template = false;
        for (name, value) in table.iter() {
            let name_str = name.get_ref().as_ref();
            match name_str {
                "method" => {
                    methods = self.methods(value);
                    bad_methods = methods.is_none();
                }
                "path" => {
                    template = self.template(value).map(|t| (t, value.span().start));
                    bad_template = template.is_none();
                }
                _ => {
                    if !self.common("route", name_str, value, &mut common) {
                        self.unknown(name.span().start, "route", name_str, ROUTE_KEYS);
                    }
                }
            }
        }
        let at = header.start;
        if methods.is_none() && !bad_methods {
            self.missing(at, "route.method", "one such as method = \"GET\" (or \"*\" for any method)");
        }
        if template.is_none() && !bad_template {
            self.missing(at, "route.path", "a template such as path = \"/v1/patients/{id}\"");
        }
        if common.resource.is_none() && !common.bad_resource {
            self.missing(at, "route.resource", "the resource a token needs, such as resource = \"patients\"");
        }
        if common.action.is_none() && !common.bad_action {
            self.missing(at, "route.action", "the action a token needs: action = \"read\", \"write\" or \"admin\"");
        }
        if self.errors.len() > errors_before {
            return None;
        }
        let (methods, (template, path_offset)) = (methods?, template?);
        let scope = Scope::new(&common.resource?.0, common.action?.0).ok()?;
        let route = Route {
            text: format!("{methods} {template}"),
            methods,
            template,
            scope,
            sensitivity: common.sensitivity,
            on_audit_failure: common.on_audit_failure,
            line: diag::position(self.text, at).0,
            is_default: false,
        };
        Some((route, path_offset))
    }

    /// Records that `key` is absent from the table whose header is at `offset`; `add` says what
    /// to write.
    fn missing(&mut self, offset: usize, key: &str, add: &str) {
        let (table, name) = key.split_once('.').unwrap_or(("", key));
        let header = if table == "route" { "[[route]]" } else { "[default]" };
        let message = format!("this {header} has no {name}: add {add}");
        self.error(offset, key, ErrorKind::MissingKey, message);
    }

    /// Checks `[default]`: `None` for deny (also after problems, which are recorded), the default
    /// route for allow.
    fn default(&mut self, table: &DeTable<'_>, header: Range<usize>) -> Option<Route> {
        let errors_before = self.errors.len();
        let mut common = Common::default();
        let mut allow = None;
        let mut decision_given = false;
        let mut allow_only: Vec<(&str, usize)> = Vec::new();
        for (name, value) in table.iter() {
            let name_str = name.get_ref().as_ref();
            if name_str == "decision" {
                decision_given = true;
                if let Some(decision) = self.string(value, "default.decision", "\"deny\" or \"allow\"") {
                    match decision {
                        "deny" => allow = Some(false),
                        "allow" => allow = Some(true),
                        other => {
                            let message = format!("{other:?}: expected \"deny\" or \"allow\"");
                            self.error(value.span().start, "default.decision", ErrorKind::InvalidValue, message);
                        }
                    }
                }
            } else {
                let before = self.errors.len();
                if !self.common("default", name_str, value, &mut common) {
                    self.unknown(name.span().start, "default", name_str, DEFAULT_KEYS);
                } else if self.errors.len() == before {
                    // Only valid values are blamed for needing decision = "allow": an invalid one
                    // already has its error.
                    allow_only.push((name_str, name.span().start));
                }
            }
        }
        match allow {
            Some(true) => {
                if common.resource.is_none() && !common.bad_resource {
                    let what =
                        "the resource unmatched requests need (decision = \"allow\"), such as resource = \"api\"";
                    self.missing(header.start, "default.resource", what);
                }
                if common.action.is_none() && !common.bad_action {
                    let what = "the action unmatched requests need (decision = \"allow\"): action = \"read\", \"write\" or \"admin\"";
                    self.missing(header.start, "default.action", what);
                }
            }
            Some(false) => {
                for (name, offset) in allow_only {
                    let message = "applies only with decision = \"allow\"; a denying default needs nothing else";
                    self.error(offset, &format!("default.{name}"), ErrorKind::Conflict, message.to_owned());
                }
            }
            None if !decision_given => {
                for (name, offset) in allow_only {
                    let message = "applies only with decision = \"allow\", and [default] has no decision \
                                   (unmatched requests are denied unless decision = \"allow\")";
                    self.error(offset, &format!("default.{name}"), ErrorKind::Conflict, message.to_owned());
                }
            }
            None => {}
        }
        if self.errors.len() > errors_before || allow != Some(true) {
            return None;
        }
        let scope = Scope::new(&common.resource?.0, common.action?.0).ok()?;
        let template = Template::parse("/*").ok()?;
        Some(Route {
            text: DEFAULT_ROUTE_TEXT.to_owned(),
            methods: Methods::Any,
            template,
            scope,
            sensitivity: common.sensitivity,
            on_audit_failure: common.on_audit_failure,
            line: diag::position(self.text, header.start).0,
            is_default: true,
        })
    }

    fn methods(&mut self, value: Spanned<'_, '_>) -> Option<Methods> {
        const EXPECTED: &str = "a method such as \"GET\", \"*\" for any, or a list such as [\"GET\", \"HEAD\"]";
        let key = "route.method";
        match value.get_ref() {
            DeValue::String(s) if s == "*" => Some(Methods::Any),
            DeValue::String(s) => match check_method(s) {
                Ok(()) => Some(Methods::Only(vec![s.to_string()])),
                Err(message) => {
                    self.error(value.span().start, key, ErrorKind::InvalidValue, message);
                    None
                }
            },
            DeValue::Array(items) if items.is_empty() => {
                let message = "an empty list of methods matches nothing; write \"*\" for any method".to_owned();
                self.error(value.span().start, key, ErrorKind::InvalidValue, message);
                None
            }
            DeValue::Array(items) => {
                let mut methods: Vec<String> = Vec::new();
                let mut ok = true;
                for item in items.iter() {
                    let Some(method) = self.string(item, key, "a method such as \"GET\"") else {
                        ok = false;
                        continue;
                    };
                    let problem = if method == "*" {
                        Err("\"*\" already means every method; write method = \"*\" alone".to_owned())
                    } else if methods.iter().any(|m| m == method) {
                        Err(format!("{method:?} is listed twice"))
                    } else {
                        check_method(method)
                    };
                    match problem {
                        Ok(()) => methods.push(method.to_owned()),
                        Err(message) => {
                            self.error(item.span().start, key, ErrorKind::InvalidValue, message);
                            ok = false;
                        }
                    }
                }
                ok.then_some(Methods::Only(methods))
            }
            _ => {
                self.wrong_type(value, key, EXPECTED);
                None
            }
        }
    }

    fn template(&mut self, value: Spanned<'_, '_>) -> Option<Template> {
        let text = self.string(value, "route.path", "a path template such as \"/v1/patients/{id}\"")?;
        match Template::parse(text) {
            Ok(template) => Some(template),
            Err(problems) => {
                // Point into the string when it is written plainly, so that the column is that of
                // the offending segment; otherwise (escapes, multi-line strings) at the string.
                let span = value.span();
                let raw = self.text.get(span.clone()).unwrap_or_default();
                let plain = raw.len() == text.len() + 2 && raw.get(1..raw.len() - 1) == Some(text);
                for problem in problems {
                    let offset = if plain { span.start + 1 + problem.offset } else { span.start };
                    let message = format!("template {text:?}: {}", problem.message);
                    self.error(offset, "route.path", ErrorKind::InvalidValue, message);
                }
                None
            }
        }
    }

    fn labels(&mut self, value: Spanned<'_, '_>, key: &str) -> Vec<String> {
        const EXPECTED: &str = "a list of labels such as [\"phi\"]";
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(value, key, EXPECTED);
            return Vec::new();
        };
        let mut labels: Vec<String> = Vec::new();
        for item in items.iter() {
            let Some(label) = self.string(item, key, "a label such as \"phi\"") else { continue };
            let valid = !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
            let problem = if !valid {
                Some(format!(
                    "label {label:?}: a label is 1 to {MAX_LABEL_LEN} lowercase letters, digits, '_' and '-', \
                     such as \"phi\""
                ))
            } else if labels.iter().any(|l| l == label) {
                Some(format!("label {label:?} is listed twice"))
            } else {
                None
            };
            match problem {
                Some(message) => self.error(item.span().start, key, ErrorKind::InvalidValue, message),
                None => labels.push(label.to_owned()),
            }
        }
        labels
    }
}

/// Why a method name is not acceptable. Methods are compared case-sensitively (RFC 9110 §9.1), so
/// a lowercase method in a policy is a mistake: it would never match what clients send.
fn check_method(method: &str) -> Result<(), String> {
    let valid = |m: &str| {
        !m.is_empty()
            && m.len() <= 32
            && m.starts_with(|c: char| c.is_ascii_uppercase())
            && m.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if valid(method) {
        return Ok(());
    }
    let upper = method.to_ascii_uppercase();
    if valid(&upper) {
        return Err(format!(
            "{method:?}: methods are case-sensitive (RFC 9110) and clients send them in uppercase; write {upper:?}"
        ));
    }
    Err(format!(
        "{method:?} is not a method: expected uppercase letters, digits, '-' and '_', such as \"GET\", or \"*\" \
         for any"
    ))
}

/// Why a route's resource is not acceptable. `tokentrail` names tokentrail's own API, whose scopes
/// only tokentrail's endpoints check; `*` is a wildcard for grants, not something to require.
fn check_resource(resource: &str) -> Result<(), String> {
    if resource == token::scope::RESERVED_RESOURCE {
        return Err(format!(
            "the {resource:?} resource is reserved for tokentrail's own API and cannot be required by a route"
        ));
    }
    if resource == "*" {
        return Err("a route requires one named resource; \"*\" is for grants (*:read), not for routes".to_owned());
    }
    match Scope::new(resource, Action::Read) {
        Ok(_) => Ok(()),
        Err(ScopeError::EmptyResource(_)) => Err("empty resource".to_owned()),
        Err(ScopeError::ResourceTooLong(_)) => {
            Err(format!("resource {resource:?} is longer than {} characters", token::scope::MAX_RESOURCE_LEN))
        }
        Err(ScopeError::BadResource(_)) => Err(format!(
            "resource {resource:?}: a resource is lowercase letters, digits, '_', '-' and '.', starting with a \
             letter or digit"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The TOML type of a value with its article: "an integer", "a string".
fn a_type(value: &DeValue<'_>) -> String {
    let ty = value.type_str();
    let article = if ty.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {ty}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_typos_only() {
        assert_eq!(diag::suggest("methd", ROUTE_KEYS.iter().copied(), 2), Some("method"));
        assert_eq!(diag::suggest("sensitivty", ROUTE_KEYS.iter().copied(), 2), Some("sensitivity"));
        assert_eq!(diag::suggest("color", ROUTE_KEYS.iter().copied(), 2), None);
    }
}
