//! Request paths as the matcher sees them, and the paths it refuses to see at all.
//!
//! Matching works on the raw bytes of the path. It never percent-decodes, never resolves `.` or
//! `..`, and never merges slashes: each of those is a place where a gateway and the upstream
//! behind it can disagree about which resource a request names, and a disagreement is a bypass
//! (the gateway checks the scope of `/public/..%2Fadmin`, the upstream serves `/admin`). Instead, a
//! path that different servers could read differently is refused: it matches no route, not even
//! the default, and the caller answers `route_not_found`. Refused are:
//!
//! - paths that do not start with `/` (absolute-form targets, `*`);
//! - empty segments (`/a//b`), and `.` and `..` segments;
//! - a raw `;` (servers such as Tomcat cut path parameters off a segment, so `/admin;x` is
//!   `/admin` to them and `..;` is `..`), a raw `\` (a separator on some servers), `#`, spaces and
//!   control characters;
//! - percent-escapes that are malformed, or that encode a character that has no business being
//!   encoded: an unreserved character (`%61` for `a`, `%2E` for `.`), `/`, `\`, `;`, NUL, or `%`
//!   itself (`%2561` becomes `a` for an upstream that decodes twice). RFC 3986 §6.2.2.2 says an
//!   escaped unreserved character is the plain character, so an upstream may decode it and route
//!   elsewhere; legitimate clients do not send these.
//!
//! This is close to what Spring Security's `StrictHttpFirewall` refuses by default, for the same
//! reasons.
//!
//! Other escapes (`%20`, `%C3%A9`) are kept and matched as written, never decoded, which also
//! rules out double-decoding tricks. The query string (from the first `?`) is ignored, and so is
//! one trailing slash, so `/v1/patients/` needs exactly what `/v1/patients` needs: an upstream
//! that treats the two alike cannot be reached through the one the policy forgot.

/// The part of `path` that is matched: without query string and trailing slash, starting with `/`
/// (or empty for the root `/`); `None` when the path is refused (see the module documentation).
pub(crate) fn normalize(path: &str) -> Option<&str> {
    // One pass over the bytes: this runs on every request. `segment_problem` states the same rules
    // segment by segment; a test checks that the two agree.
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let mut start = 1;
    let mut i = 1;
    loop {
        match bytes.get(i).copied() {
            Some(b'/') => {
                let segment = &bytes[start..i];
                if segment.is_empty() || is_dot_segment(segment) {
                    return None;
                }
                start = i + 1;
            }
            None | Some(b'?') => {
                let segment = &bytes[start..i];
                if is_dot_segment(segment) {
                    return None;
                }
                // An empty last segment is the root (`/`) or a trailing slash, which is dropped.
                return Some(if segment.is_empty() { &path[..i - 1] } else { &path[..i] });
            }
            Some(b'%') => {
                if !escape_ok(bytes.get(i + 1).copied(), bytes.get(i + 2).copied()) {
                    return None;
                }
                i += 3;
                continue;
            }
            Some(b';' | b'\\' | b'#' | b' ') => return None,
            Some(b) if b.is_ascii_control() => return None,
            Some(_) => {}
        }
        i += 1;
    }
}

/// Splits a normalized, non-empty rest of a path (`/a/b`) into its first segment and the rest
/// (`a`, `/b`).
pub(crate) fn first_segment(rest: &str) -> (&str, &str) {
    let bytes = rest.as_bytes();
    let start = usize::from(bytes.first() == Some(&b'/'));
    let mut i = start;
    // A plain loop: segments are short, so this beats a general substring search.
    while i < bytes.len() && bytes[i] != b'/' {
        i += 1;
    }
    (&rest[start..i], &rest[i..])
}

fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

/// Whether the two bytes after a `%` are an escape that may be matched as written.
fn escape_ok(hi: Option<u8>, lo: Option<u8>) -> bool {
    let (Some(hi), Some(lo)) = (hi.and_then(hex), lo.and_then(hex)) else { return false };
    let decoded = hi << 4 | lo;
    !(decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\' | b';' | b'%' | 0))
}

/// Why a single raw segment is refused, or `None` when it may be matched.
pub(crate) fn segment_problem(segment: &str) -> Option<&'static str> {
    if segment.is_empty() {
        return Some("empty segment");
    }
    if segment == "." || segment == ".." {
        return Some("dot segment");
    }
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if !escape_ok(bytes.get(i + 1).copied(), bytes.get(i + 2).copied()) {
                    let valid_hex = bytes.get(i + 1).and_then(|b| hex(*b)).is_some()
                        && bytes.get(i + 2).and_then(|b| hex(*b)).is_some();
                    return Some(if valid_hex {
                        "percent-escape of a character that must not be escaped"
                    } else {
                        "malformed percent-escape"
                    });
                }
                i += 3;
                continue;
            }
            b';' | b'\\' | b'#' | b' ' => return Some("character not allowed in a path"),
            b if b.is_ascii_control() => return Some("control character"),
            _ => {}
        }
        i += 1;
    }
    None
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn normalization_table() {
        let inputs = [
            "/",
            "",
            "/v1/patients",
            "/v1/patients/",
            "/v1/patients//",
            "//",
            "///",
            "/v1//patients",
            "/v1/patients?x=1",
            "/v1/patients/?x=/../..",
            "?x",
            "v1/patients",
            "*",
            "http://host/v1",
            "/v1/./patients",
            "/v1/../admin",
            "/v1/..;/admin",
            "/v1/.;x/admin",
            "/v1/...",
            "/v1/.hidden",
            "/v1/a..b",
            "/v1/%2e%2e/admin",
            "/v1/%2E/admin",
            "/v1/a%2Fb",
            "/v1/a%2fb",
            "/v1/a%5Cb",
            "/v1/a%00b",
            "/v1/%61dmin",
            "/v1/a%7e",
            "/v1/a%20b",
            "/v1/caf%C3%A9",
            "/v1/a%2",
            "/v1/a%zz",
            "/v1/a%",
            "/v1/a\\b",
            "/v1/a#b",
            "/v1/a b",
            "/v1/a\tb",
            "/v1/é",
            "/v1/a;b=c",
            "/v1/a%3Bb",
            "/v1/%2561dmin",
            "/v1/a%3Fb",
            "/v1/a%2Bb",
        ];
        let got: String = inputs
            .iter()
            .map(|p| match normalize(p) {
                Some(n) => format!("{p:?} -> {n:?}\n"),
                None => format!("{p:?} -> refused\n"),
            })
            .collect();
        expect![[r#"
            "/" -> ""
            "" -> refused
            "/v1/patients" -> "/v1/patients"
            "/v1/patients/" -> "/v1/patients"
            "/v1/patients//" -> refused
            "//" -> refused
            "///" -> refused
            "/v1//patients" -> refused
            "/v1/patients?x=1" -> "/v1/patients"
            "/v1/patients/?x=/../.." -> "/v1/patients"
            "?x" -> refused
            "v1/patients" -> refused
            "*" -> refused
            "http://host/v1" -> refused
            "/v1/./patients" -> refused
            "/v1/../admin" -> refused
            "/v1/..;/admin" -> refused
            "/v1/.;x/admin" -> refused
            "/v1/..." -> "/v1/..."
            "/v1/.hidden" -> "/v1/.hidden"
            "/v1/a..b" -> "/v1/a..b"
            "/v1/%2e%2e/admin" -> refused
            "/v1/%2E/admin" -> refused
            "/v1/a%2Fb" -> refused
            "/v1/a%2fb" -> refused
            "/v1/a%5Cb" -> refused
            "/v1/a%00b" -> refused
            "/v1/%61dmin" -> refused
            "/v1/a%7e" -> refused
            "/v1/a%20b" -> "/v1/a%20b"
            "/v1/caf%C3%A9" -> "/v1/caf%C3%A9"
            "/v1/a%2" -> refused
            "/v1/a%zz" -> refused
            "/v1/a%" -> refused
            "/v1/a\\b" -> refused
            "/v1/a#b" -> refused
            "/v1/a b" -> refused
            "/v1/a\tb" -> refused
            "/v1/é" -> "/v1/é"
            "/v1/a;b=c" -> refused
            "/v1/a%3Bb" -> refused
            "/v1/%2561dmin" -> refused
            "/v1/a%3Fb" -> "/v1/a%3Fb"
            "/v1/a%2Bb" -> "/v1/a%2Bb"
        "#]]
        .assert_eq(&got);
    }

    /// The rules as plainly as possible: split, then check each segment.
    fn reference(path: &str) -> Option<&str> {
        let path = path.split('?').next().unwrap_or(path);
        let body = path.strip_prefix('/')?;
        let body = match body.strip_suffix('/') {
            Some("") => return None,
            Some(b) => b,
            None => body,
        };
        if body.is_empty() {
            return Some("");
        }
        body.split('/').all(|s| segment_problem(s).is_none()).then(|| &path[..body.len() + 1])
    }

    proptest::proptest! {
        #[test]
        fn one_pass_agrees_with_the_segment_rules(path in "(/|[a-z.;?%#\\\\ \t]|%[0-9a-fA-F]{0,2}|é){0,12}") {
            proptest::prop_assert_eq!(normalize(&path), reference(&path));
        }
    }

    #[test]
    fn first_segments() {
        assert_eq!(first_segment("/a/b/c"), ("a", "/b/c"));
        assert_eq!(first_segment("/a"), ("a", ""));
    }
}
