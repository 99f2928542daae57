//! Path templates: literal segments, `{name}` segments that match any one segment, and a trailing
//! `/*` that matches zero or more segments.
//!
//! A template is checked once, when the policy is parsed, so that matching never meets a
//! malformed one. A literal segment must be a segment that requests may use at all (see the `path`
//! module): a template that could only match refused paths is an error, not a dead route.

use std::fmt;

use crate::path;

/// Most segments a template may have (the wildcard not counted). Real APIs use far fewer; the
/// limit bounds the work of matching and the depth of the route index.
pub const MAX_SEGMENTS: usize = 32;

/// One segment of a template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches exactly this raw (not percent-decoded) text.
    Literal(String),
    /// `{name}`: matches any one non-empty segment and captures it under `name`.
    Param(String),
}

/// A parsed path template such as `/v1/patients/{id}` or `/static/*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    text: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

/// A problem in a template: the byte offset in the template text, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TemplateProblem {
    pub(crate) offset: usize,
    pub(crate) message: String,
}

impl Template {
    /// Parses a template, reporting every problem in it.
    pub(crate) fn parse(text: &str) -> Result<Template, Vec<TemplateProblem>> {
        let mut problems = Vec::new();
        let mut problem = |offset: usize, message: String| problems.push(TemplateProblem { offset, message });
        if text.is_empty() {
            problem(0, "empty template: write \"/\" for the root or \"/*\" for every path".to_owned());
            return Err(problems);
        }
        if !text.starts_with('/') {
            problem(0, format!("template {text:?} must start with /"));
            return Err(problems);
        }
        if let Some(q) = text.find('?') {
            problem(q, "a template has no query string: the query string is ignored when matching".to_owned());
            return Err(problems);
        }
        let mut template = Template { text: text.to_owned(), segments: Vec::new(), wildcard: false };
        if text == "/" {
            return Ok(template);
        }
        if text.ends_with('/') {
            let message = "remove the trailing slash: a request's trailing slash is ignored, so /a matches /a/ too";
            problem(text.len() - 1, message.to_owned());
        }
        let body = text.strip_suffix('/').unwrap_or(text);
        let mut offset = 1;
        let count = body[1..].split('/').count();
        for (i, segment) in body[1..].split('/').enumerate() {
            let last = i + 1 == count;
            if let Some(message) = segment_problem(segment, last, &template.segments) {
                problem(offset, message);
            } else if segment == "*" {
                template.wildcard = true;
            } else if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                template.segments.push(Segment::Param(name.to_owned()));
            } else {
                template.segments.push(Segment::Literal(segment.to_owned()));
            }
            offset += segment.len() + 1;
        }
        if template.segments.len() > MAX_SEGMENTS {
            problem(
                0,
                format!("template has {} segments; at most {MAX_SEGMENTS} are allowed", template.segments.len()),
            );
        }
        if problems.is_empty() { Ok(template) } else { Err(problems) }
    }

    /// The template as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The literal and parameter segments, without the wildcard.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the template ends in `/*`.
    pub fn has_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether this template alone matches a request path (normalized as the policy does).
    ///
    /// This ignores every other route; use [`crate::Policy::matches`] to find the route that
    /// applies. It exists for tests and as the baseline of the benchmark.
    pub fn matches(&self, path: &str) -> bool {
        let Some(mut rest) = path::normalize(path) else { return false };
        for segment in &self.segments {
            if rest.is_empty() {
                return false;
            }
            let (first, tail) = path::first_segment(rest);
            if let Segment::Literal(literal) = segment
                && literal != first
            {
                return false;
            }
            rest = tail;
        }
        rest.is_empty() || self.wildcard
    }

    /// How specific this template is for a normalized path it matches: per path segment 3 for a
    /// literal, 2 for a parameter, 1 for the wildcard, then 1 if the template ends exactly or 0 if
    /// its wildcard matched nothing. Greater (lexicographically) is more specific. The route index
    /// implements this order; tests compare against it.
    #[cfg(test)]
    pub(crate) fn rank(&self, normalized: &str) -> Vec<u8> {
        let count = if normalized.is_empty() { 0 } else { normalized[1..].split('/').count() };
        let mut rank: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 3,
                Segment::Param(_) => 2,
            })
            .collect();
        rank.resize(count.max(rank.len()), 1);
        rank.push(u8::from(!self.wildcard));
        rank
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What is wrong with one segment of a template, given the segments before it.
fn segment_problem(segment: &str, last: bool, before: &[Segment]) -> Option<String> {
    if segment == "*" {
        return (!last).then(|| "`*` must be the last segment: a trailing /* matches zero or more segments".to_owned());
    }
    if segment.contains('*') {
        return Some(format!("{segment:?}: `*` is allowed only as the whole last segment (/*)"));
    }
    let opens = segment.contains('{');
    let closes = segment.contains('}');
    if opens || closes {
        let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            return Some(if opens && !closes {
                format!("{segment:?}: unclosed `{{`")
            } else if closes && !opens {
                format!("{segment:?}: `}}` without `{{`")
            } else {
                format!("{segment:?}: a parameter must be a whole segment, such as {{id}}")
            });
        };
        if name.is_empty() {
            return Some("`{}`: a parameter needs a name, such as {id}".to_owned());
        }
        let valid = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Some(format!(
                "{segment:?}: a parameter name is ASCII letters, digits and _, not starting with a digit"
            ));
        }
        if before.iter().any(|s| matches!(s, Segment::Param(p) if p == name)) {
            return Some(format!("parameter {{{name}}} appears twice in this template"));
        }
        return None;
    }
    path::segment_problem(segment).map(|why| match why {
        "empty segment" => {
            "empty segment (`//`): requests with one are refused, so this route could never match".to_owned()
        }
        why => format!("{segment:?}: {why}: requests with it are refused, so this route could never match"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn template_table() {
        let inputs = [
            "/",
            "/*",
            "/v1/patients/{id}",
            "/v1/patients/{patient_id}/notes/{note_id}",
            "/static/*",
            "/v1/{_x1}/*",
            "/v1/caf%C3%A9",
            "",
            "v1/patients",
            "/v1/patients/",
            "/v1/{}",
            "/v1/{a",
            "/v1/a}",
            "/v1/x{a}",
            "/v1/{a}x",
            "/v1/{a{b}}",
            "/v1/{1a}",
            "/v1/{a-b}",
            "/*/x",
            "/v1/*/*",
            "/v1/a*",
            "/v1/{id}/x/{id}",
            "/v1//x",
            "/v1/../x",
            "/v1/%2e/x",
            "/v1/a;b",
            "/v1?x=1",
            "/{a/b}",
        ];
        let got: String = inputs
            .iter()
            .map(|t| match Template::parse(t) {
                Ok(t) => format!("{:?} -> ok {:?} wildcard={}\n", t.as_str(), t.segments(), t.has_wildcard()),
                Err(problems) => {
                    let list: Vec<String> = problems.iter().map(|p| format!("@{} {}", p.offset, p.message)).collect();
                    format!("{t:?} -> {}\n", list.join("; "))
                }
            })
            .collect();
        expect![[r#"
            "/" -> ok [] wildcard=false
            "/*" -> ok [] wildcard=true
            "/v1/patients/{id}" -> ok [Literal("v1"), Literal("patients"), Param("id")] wildcard=false
            "/v1/patients/{patient_id}/notes/{note_id}" -> ok [Literal("v1"), Literal("patients"), Param("patient_id"), Literal("notes"), Param("note_id")] wildcard=false
            "/static/*" -> ok [Literal("static")] wildcard=true
            "/v1/{_x1}/*" -> ok [Literal("v1"), Param("_x1")] wildcard=true
            "/v1/caf%C3%A9" -> ok [Literal("v1"), Literal("caf%C3%A9")] wildcard=false
            "" -> @0 empty template: write "/" for the root or "/*" for every path
            "v1/patients" -> @0 template "v1/patients" must start with /
            "/v1/patients/" -> @12 remove the trailing slash: a request's trailing slash is ignored, so /a matches /a/ too
            "/v1/{}" -> @4 `{}`: a parameter needs a name, such as {id}
            "/v1/{a" -> @4 "{a": unclosed `{`
            "/v1/a}" -> @4 "a}": `}` without `{`
            "/v1/x{a}" -> @4 "x{a}": a parameter must be a whole segment, such as {id}
            "/v1/{a}x" -> @4 "{a}x": a parameter must be a whole segment, such as {id}
            "/v1/{a{b}}" -> @4 "{a{b}}": a parameter name is ASCII letters, digits and _, not starting with a digit
            "/v1/{1a}" -> @4 "{1a}": a parameter name is ASCII letters, digits and _, not starting with a digit
            "/v1/{a-b}" -> @4 "{a-b}": a parameter name is ASCII letters, digits and _, not starting with a digit
            "/*/x" -> @1 `*` must be the last segment: a trailing /* matches zero or more segments
            "/v1/*/*" -> @4 `*` must be the last segment: a trailing /* matches zero or more segments
            "/v1/a*" -> @4 "a*": `*` is allowed only as the whole last segment (/*)
            "/v1/{id}/x/{id}" -> @11 parameter {id} appears twice in this template
            "/v1//x" -> @4 empty segment (`//`): requests with one are refused, so this route could never match
            "/v1/../x" -> @4 "..": dot segment: requests with it are refused, so this route could never match
            "/v1/%2e/x" -> @4 "%2e": percent-escape of a character that must not be escaped: requests with it are refused, so this route could never match
            "/v1/a;b" -> @4 "a;b": character not allowed in a path: requests with it are refused, so this route could never match
            "/v1?x=1" -> @3 a template has no query string: the query string is ignored when matching
            "/{a/b}" -> @1 "{a": unclosed `{`; @4 "b}": `}` without `{`
        "#]].assert_eq(&got);
    }

    #[test]
    fn single_template_matching() {
        let t = Template::parse("/v1/patients/{id}").unwrap();
        assert!(t.matches("/v1/patients/42"));
        assert!(t.matches("/v1/patients/42/"));
        assert!(t.matches("/v1/patients/42?full=1"));
        assert!(!t.matches("/v1/patients"));
        assert!(!t.matches("/v1/patients/42/notes"));
        assert!(!t.matches("/v1/patients/../42"));
        let w = Template::parse("/static/*").unwrap();
        assert!(w.matches("/static"));
        assert!(w.matches("/static/a/b/c"));
        assert!(!w.matches("/statics"));
        let root = Template::parse("/").unwrap();
        assert!(root.matches("/"));
        assert!(!root.matches("/a"));
    }
}
