//! Matching: many requests against one policy, and which route each gets (or none).

use expect_test::expect;
use policy::Policy;

use crate::describe;

const POLICY: &str = r#"
[[route]]
method = ["GET", "HEAD"]
path = "/v1/patients/{id}"
resource = "patients"
action = "read"
sensitivity = ["phi"]

[[route]]
method = "GET"
path = "/v1/patients/search"
resource = "patients"
action = "read"
sensitivity = ["phi", "pii"]

[[route]]
method = "*"
path = "/v1/patients/{id}"
resource = "patients"
action = "write"
sensitivity = ["phi"]

[[route]]
method = "GET"
path = "/v1/patients"
resource = "patients"
action = "read"

[[route]]
method = "GET"
path = "/v1/patients/{id}/notes/{note}"
resource = "notes"
action = "read"
sensitivity = ["phi"]

[[route]]
method = "GET"
path = "/v1/{collection}/{id}"
resource = "generic"
action = "read"

[[route]]
method = "GET"
path = "/v1/files/*"
resource = "files"
action = "read"
on_audit_failure = "allow"

[[route]]
method = "GET"
path = "/v1/files/{name}"
resource = "files"
action = "write"

[[route]]
method = "GET"
path = "/v1/files/public/*"
resource = "public"
action = "read"

[[route]]
method = "GET"
path = "/v1/{a}/b/*"
resource = "ab"
action = "read"

[[route]]
method = "GET"
path = "/v1/a/{b}/*"
resource = "ab"
action = "write"

[[route]]
method = "*"
path = "/v1/admin/*"
resource = "api"
action = "admin"

[[route]]
method = "GET"
path = "/"
resource = "root"
action = "read"

[[route]]
method = "M-SEARCH"
path = "/v1/caf%C3%A9"
resource = "cafe"
action = "read"
"#;

const REQUESTS: &[(&str, &str)] = &[
    ("GET", "/v1/patients/42"),
    ("HEAD", "/v1/patients/42"),
    ("DELETE", "/v1/patients/42"),
    ("get", "/v1/patients/42"),
    ("GET", "/v1/patients/search"),
    ("POST", "/v1/patients/search"),
    ("GET", "/v1/patients"),
    ("GET", "/v1/patients/"),
    ("GET", "/v1/patients?page=2"),
    ("POST", "/v1/patients"),
    ("GET", "/v1/patients/42/notes/7"),
    ("GET", "/v1/patients/42/notes/7/"),
    ("GET", "/v1/patients/42/notes"),
    ("GET", "/v1/orders/9"),
    ("GET", "/V1/patients/42"),
    ("GET", "/v1/files"),
    ("GET", "/v1/files/"),
    ("GET", "/v1/files/a.txt"),
    ("GET", "/v1/files/a/b/c.txt"),
    ("GET", "/v1/files/public"),
    ("GET", "/v1/files/public/x/y"),
    ("GET", "/v1/a/b/c"),
    ("GET", "/v1/a/b"),
    ("GET", "/v1/x/b/c"),
    ("DELETE", "/v1/admin"),
    ("PATCH", "/v1/admin/users/3"),
    ("BREW", "/v1/admin/users/3"),
    ("GET", "/"),
    ("GET", "/?x=1"),
    ("POST", "/"),
    ("M-SEARCH", "/v1/caf%C3%A9"),
    ("M-SEARCH", "/v1/café"),
    ("GET", "/v1/patients/%34%32"),
    ("GET", "/v1/patients/42%20"),
    ("GET", "/v1/patients/..%2Fadmin"),
    ("GET", "/v1/patients/../admin"),
    ("GET", "/v1/patients/./42"),
    ("GET", "/v1//patients/42"),
    ("GET", "/v1/patients/42;jsessionid=x"),
    ("GET", "/v1/patients/42\\..\\admin"),
    ("GET", "v1/patients/42"),
    ("GET", ""),
    ("GET", "*"),
    ("GET", "/v2/anything"),
];

#[test]
fn requests_against_one_policy() {
    let policy = Policy::parse(POLICY, "policy.toml").unwrap();
    let got: String =
        REQUESTS.iter().map(|(method, path)| describe(method, path, policy.matches(method, path))).collect();
    expect![[r#"
        GET /v1/patients/42                  -> GET,HEAD /v1/patients/{id}             patients:read [phi] id=42
        HEAD /v1/patients/42                 -> GET,HEAD /v1/patients/{id}             patients:read [phi] id=42
        DELETE /v1/patients/42               -> * /v1/patients/{id}                    patients:write [phi] id=42
        get /v1/patients/42                  -> * /v1/patients/{id}                    patients:write [phi] id=42
        GET /v1/patients/search              -> GET /v1/patients/search                patients:read [phi,pii]
        POST /v1/patients/search             -> * /v1/patients/{id}                    patients:write [phi] id=search
        GET /v1/patients                     -> GET /v1/patients                       patients:read
        GET /v1/patients/                    -> GET /v1/patients                       patients:read
        GET /v1/patients?page=2              -> GET /v1/patients                       patients:read
        POST /v1/patients                    -> none
        GET /v1/patients/42/notes/7          -> GET /v1/patients/{id}/notes/{note}     notes:read [phi] id=42 note=7
        GET /v1/patients/42/notes/7/         -> GET /v1/patients/{id}/notes/{note}     notes:read [phi] id=42 note=7
        GET /v1/patients/42/notes            -> none
        GET /v1/orders/9                     -> GET /v1/{collection}/{id}              generic:read collection=orders id=9
        GET /V1/patients/42                  -> none
        GET /v1/files                        -> GET /v1/files/*                        files:read audit-fail-open *=""
        GET /v1/files/                       -> GET /v1/files/*                        files:read audit-fail-open *=""
        GET /v1/files/a.txt                  -> GET /v1/files/{name}                   files:write name=a.txt
        GET /v1/files/a/b/c.txt              -> GET /v1/files/*                        files:read audit-fail-open *="a/b/c.txt"
        GET /v1/files/public                 -> GET /v1/files/public/*                 public:read *=""
        GET /v1/files/public/x/y             -> GET /v1/files/public/*                 public:read *="x/y"
        GET /v1/a/b/c                        -> GET /v1/a/{b}/*                        ab:write b=b *="c"
        GET /v1/a/b                          -> GET /v1/a/{b}/*                        ab:write b=b *=""
        GET /v1/x/b/c                        -> GET /v1/{a}/b/*                        ab:read a=x *="c"
        DELETE /v1/admin                     -> * /v1/admin/*                          api:admin *=""
        PATCH /v1/admin/users/3              -> * /v1/admin/*                          api:admin *="users/3"
        BREW /v1/admin/users/3               -> * /v1/admin/*                          api:admin *="users/3"
        GET /                                -> GET /                                  root:read
        GET /?x=1                            -> GET /                                  root:read
        POST /                               -> none
        M-SEARCH /v1/caf%C3%A9               -> M-SEARCH /v1/caf%C3%A9                 cafe:read
        M-SEARCH /v1/café                    -> none
        GET /v1/patients/%34%32              -> none
        GET /v1/patients/42%20               -> GET,HEAD /v1/patients/{id}             patients:read [phi] id=42%20
        GET /v1/patients/..%2Fadmin          -> none
        GET /v1/patients/../admin            -> none
        GET /v1/patients/./42                -> none
        GET /v1//patients/42                 -> none
        GET /v1/patients/42;jsessionid=x     -> none
        GET /v1/patients/42\..\admin         -> none
        GET v1/patients/42                   -> none
        GET                                  -> none
        GET *                                -> none
        GET /v2/anything                     -> none
    "#]].assert_eq(&got);
}

#[test]
fn the_default_route_takes_what_no_route_matches() {
    let text = r#"
[default]
decision = "allow"
resource = "api"
action = "read"
sensitivity = ["public"]

[[route]]
method = "GET"
path = "/v1/cases/{id}"
resource = "cases"
action = "read"
sensitivity = ["phi"]
"#;
    let policy = Policy::parse(text, "policy.toml").unwrap();
    let requests = [
        ("GET", "/v1/cases/17"),
        ("POST", "/v1/cases/17"),
        ("GET", "/v1/stats/flu/2026"),
        ("GET", "/"),
        ("GET", "/v1/cases/%31%37"),
        ("GET", "/v1/cases/../stats"),
        ("GET", "/v1//cases/17"),
    ];
    let mut got = String::new();
    for (method, path) in requests {
        let found = policy.resolve(method, path);
        got.push_str(&describe(method, path, found));
        if let Some(m) = found {
            assert_eq!(m.is_default(), m.text() == policy::DEFAULT_ROUTE_TEXT);
        }
    }
    expect![[r#"
        GET /v1/cases/17                     -> GET /v1/cases/{id}                     cases:read [phi] id=17
        POST /v1/cases/17                    -> * /*                                   api:read [public] *="v1/cases/17"
        GET /v1/stats/flu/2026               -> * /*                                   api:read [public] *="v1/stats/flu/2026"
        GET /                                -> * /*                                   api:read [public] *=""
        GET /v1/cases/%31%37                 -> none
        GET /v1/cases/../stats               -> none
        GET /v1//cases/17                    -> none
    "#]].assert_eq(&got);
    assert!(policy.matches("GET", "/v1/stats").is_none(), "matches ignores the default");
}

#[test]
fn an_empty_policy_denies_everything() {
    for policy in [Policy::parse("", "empty.toml").unwrap(), Policy::default()] {
        assert!(policy.routes().is_empty());
        assert!(policy.default_route().is_none());
        assert!(policy.resolve("GET", "/").is_none());
        assert!(policy.resolve("GET", "/v1/anything").is_none());
    }
}

#[test]
fn a_match_gives_what_decide_needs() {
    let policy = Policy::parse(POLICY, "policy.toml").unwrap();
    let m = policy.matches("GET", "/v1/patients/42/notes/7?x=1").unwrap();
    assert_eq!(m.text(), "GET /v1/patients/{id}/notes/{note}");
    assert_eq!(m.scope(), &token::Scope::parse("notes:read").unwrap());
    assert_eq!(m.param("id"), Some("42"));
    assert_eq!(m.param("note"), Some("7"));
    assert_eq!(m.param("other"), None);
    assert_eq!(m.rest(), None);
    assert_eq!(m.route().line(), 29);
    assert!(!m.is_default());
    assert_eq!(m.route().template().as_str(), "/v1/patients/{id}/notes/{note}");
}

#[test]
fn a_policy_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Policy>();
}
