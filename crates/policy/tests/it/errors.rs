//! Parse errors: files with many problems, every one reported at once with its line and column.

use expect_test::expect;
use policy::Policy;

use crate::render;

fn check(text: &str) -> String {
    render(&Policy::parse(text, "policy.toml"))
}

#[test]
fn every_problem_in_one_file_is_reported_with_its_position() {
    let text = r#"
colour = "blue"

[default]
decision = "maybe"
resorce = "api"

[[route]]
methd = "GET"
path = "/v1/patients/{id}"
resource = "patients"
action = "read"

[[route]]
method = "get"
path = "/v1/{}/x/{a"
resource = "Patients"
action = "fly"
sensitivity = ["PHI", "phi", "phi", 7]
on_audit_failure = "maybe"

[[route]]
method = ["GET", "GET", "*", "PO ST", 3]
path = "/*/x"
resource = "tokentrail"
action = "admin"

[[route]]
method = "POST"
path = "/v1/{id}/notes/{id}"
resource = "*"
action = "verify"

[[route]]
method = []
path = 42
resource = ""
action = "write"
sensitivity = "phi"

[[route]]
path = "/v1/x/"

[[route]]
method = "GET"
path = "/v1//a/../%2e/b;c/*"
resource = "a b"
action = "read"

[[route]]
method = "GET"
path = "/v1/patients/{id}"
resource = "patients"
action = "read"
extra = true
"#;
    expect![[r#"
        policy.toml:2:1: colour: unknown key; expected one of: default, route  [policy_unknown_key]
        policy.toml:5:12: default.decision: "maybe": expected "deny" or "allow"  [policy_invalid_value]
        policy.toml:6:1: default.resorce: unknown key (did you mean resource?)  [policy_unknown_key]
        policy.toml:8:1: route.method: this [[route]] has no method: add one such as method = "GET" (or "*" for any method)  [policy_missing_key]
        policy.toml:9:1: route.methd: unknown key (did you mean method?)  [policy_unknown_key]
        policy.toml:15:10: route.method: "get": methods are case-sensitive (RFC 9110) and clients send them in uppercase; write "GET"  [policy_invalid_value]
        policy.toml:16:13: route.path: template "/v1/{}/x/{a": `{}`: a parameter needs a name, such as {id}  [policy_invalid_value]
        policy.toml:16:18: route.path: template "/v1/{}/x/{a": "{a": unclosed `{`  [policy_invalid_value]
        policy.toml:17:12: route.resource: resource "Patients": a resource is lowercase letters, digits, '_', '-' and '.', starting with a letter or digit  [policy_invalid_value]
        policy.toml:18:10: route.action: unknown action "fly": expected read, write or admin  [policy_invalid_value]
        policy.toml:19:16: route.sensitivity: label "PHI": a label is 1 to 64 lowercase letters, digits, '_' and '-', such as "phi"  [policy_invalid_value]
        policy.toml:19:30: route.sensitivity: label "phi" is listed twice  [policy_invalid_value]
        policy.toml:19:37: route.sensitivity: expected a label such as "phi", found an integer  [policy_wrong_type]
        policy.toml:20:20: route.on_audit_failure: "maybe": expected "deny" or "allow"  [policy_invalid_value]
        policy.toml:23:18: route.method: "GET" is listed twice  [policy_invalid_value]
        policy.toml:23:25: route.method: "*" already means every method; write method = "*" alone  [policy_invalid_value]
        policy.toml:23:30: route.method: "PO ST" is not a method: expected uppercase letters, digits, '-' and '_', such as "GET", or "*" for any  [policy_invalid_value]
        policy.toml:23:39: route.method: expected a method such as "GET", found an integer  [policy_wrong_type]
        policy.toml:24:10: route.path: template "/*/x": `*` must be the last segment: a trailing /* matches zero or more segments  [policy_invalid_value]
        policy.toml:25:12: route.resource: the "tokentrail" resource is reserved for tokentrail's own API and cannot be required by a route  [policy_invalid_value]
        policy.toml:30:24: route.path: template "/v1/{id}/notes/{id}": parameter {id} appears twice in this template  [policy_invalid_value]
        policy.toml:31:12: route.resource: a route requires one named resource; "*" is for grants (*:read), not for routes  [policy_invalid_value]
        policy.toml:32:10: route.action: unknown action "verify": expected read, write or admin  [policy_invalid_value]
        policy.toml:35:10: route.method: an empty list of methods matches nothing; write "*" for any method  [policy_invalid_value]
        policy.toml:36:8: route.path: expected a path template such as "/v1/patients/{id}", found an integer  [policy_wrong_type]
        policy.toml:37:12: route.resource: empty resource  [policy_invalid_value]
        policy.toml:39:15: route.sensitivity: expected a list of labels such as ["phi"], found a string  [policy_wrong_type]
        policy.toml:41:1: route.method: this [[route]] has no method: add one such as method = "GET" (or "*" for any method)  [policy_missing_key]
        policy.toml:41:1: route.resource: this [[route]] has no resource: add the resource a token needs, such as resource = "patients"  [policy_missing_key]
        policy.toml:41:1: route.action: this [[route]] has no action: add the action a token needs: action = "read", "write" or "admin"  [policy_missing_key]
        policy.toml:42:14: route.path: template "/v1/x/": remove the trailing slash: a request's trailing slash is ignored, so /a matches /a/ too  [policy_invalid_value]
        policy.toml:46:13: route.path: template "/v1//a/../%2e/b;c/*": empty segment (`//`): requests with one are refused, so this route could never match  [policy_invalid_value]
        policy.toml:46:16: route.path: template "/v1//a/../%2e/b;c/*": "..": dot segment: requests with it are refused, so this route could never match  [policy_invalid_value]
        policy.toml:46:19: route.path: template "/v1//a/../%2e/b;c/*": "%2e": percent-escape of a character that must not be escaped: requests with it are refused, so this route could never match  [policy_invalid_value]
        policy.toml:46:23: route.path: template "/v1//a/../%2e/b;c/*": "b;c": character not allowed in a path: requests with it are refused, so this route could never match  [policy_invalid_value]
        policy.toml:47:12: route.resource: resource "a b": a resource is lowercase letters, digits, '_', '-' and '.', starting with a letter or digit  [policy_invalid_value]
        policy.toml:55:1: route.extra: unknown key; expected one of: method, path, resource, action, sensitivity, on_audit_failure  [policy_unknown_key]
    "#]].assert_eq(&check(text));
}

#[test]
fn ambiguous_routes_are_reported_at_the_later_one() {
    let text = r#"
[[route]]
method = ["GET", "HEAD"]
path = "/v1/patients/{id}"
resource = "patients"
action = "read"

[[route]]
method = "GET"
path = "/v1/patients/{patient}"
resource = "patients"
action = "write"

[[route]]
method = "*"
path = "/v1/files/*"
resource = "files"
action = "read"

[[route]]
method = "*"
path = "/v1/files/*"
resource = "files"
action = "write"

# Not ambiguous: an explicit method beats "*" on the same template, a wildcard differs from an
# exact end, a parameter differs from a literal, and different methods do not overlap.
[[route]]
method = "PUT"
path = "/v1/files/*"
resource = "files"
action = "write"

[[route]]
method = "GET"
path = "/v1/files"
resource = "files"
action = "read"

[[route]]
method = "GET"
path = "/v1/patients/search"
resource = "patients"
action = "read"

[[route]]
method = "DELETE"
path = "/v1/patients/{id}"
resource = "patients"
action = "admin"
"#;
    expect![[r#"
        policy.toml:10:8: route.path: GET /v1/patients/{patient} is ambiguous with GET,HEAD /v1/patients/{id} at line 2: both take GET requests to the same paths (the templates differ at most in parameter names), so one of them would never be used  [policy_ambiguous_route]
        policy.toml:22:8: route.path: * /v1/files/* is ambiguous with * /v1/files/* at line 14: both take requests of every method to the same paths (the templates differ at most in parameter names), so one of them would never be used  [policy_ambiguous_route]
    "#]].assert_eq(&check(text));
}

#[test]
fn default_table_problems() {
    let cases = [
        "[default]\ndecision = \"allow\"\n",
        "[default]\ndecision = \"allow\"\nresource = \"tokentrail\"\naction = \"admin\"\n",
        "[default]\ndecision = \"deny\"\nresource = \"api\"\naction = \"read\"\n",
        "[default]\nresource = \"api\"\naction = \"read\"\n",
        "[default]\naction = \"deny\"\n",
        "[default]\ndecision = \"allow\"\naction = \"allow\"\nresource = \"api\"\n",
        "[default]\ndecision = true\n",
        "default = \"deny\"\n",
        "[default]\ndecision = \"allow\"\nresource = \"api\"\naction = \"read\"\nsensitivity = [\"public\"]\n",
    ];
    let got: String = cases.iter().map(|c| format!("--- {c:?}\n{}", check(c))).collect();
    expect![[r#"
        --- "[default]\ndecision = \"allow\"\n"
        policy.toml:1:1: default.resource: this [default] has no resource: add the resource unmatched requests need (decision = "allow"), such as resource = "api"  [policy_missing_key]
        policy.toml:1:1: default.action: this [default] has no action: add the action unmatched requests need (decision = "allow"): action = "read", "write" or "admin"  [policy_missing_key]
        --- "[default]\ndecision = \"allow\"\nresource = \"tokentrail\"\naction = \"admin\"\n"
        policy.toml:3:12: default.resource: the "tokentrail" resource is reserved for tokentrail's own API and cannot be required by a route  [policy_invalid_value]
        --- "[default]\ndecision = \"deny\"\nresource = \"api\"\naction = \"read\"\n"
        policy.toml:3:1: default.resource: applies only with decision = "allow"; a denying default needs nothing else  [policy_conflict]
        policy.toml:4:1: default.action: applies only with decision = "allow"; a denying default needs nothing else  [policy_conflict]
        --- "[default]\nresource = \"api\"\naction = \"read\"\n"
        policy.toml:2:1: default.resource: applies only with decision = "allow", and [default] has no decision (unmatched requests are denied unless decision = "allow")  [policy_conflict]
        policy.toml:3:1: default.action: applies only with decision = "allow", and [default] has no decision (unmatched requests are denied unless decision = "allow")  [policy_conflict]
        --- "[default]\naction = \"deny\"\n"
        policy.toml:2:10: default.action: "deny" is not an action: in [default], action is what the default requires (read, write or admin); write decision = "deny" instead  [policy_invalid_value]
        --- "[default]\ndecision = \"allow\"\naction = \"allow\"\nresource = \"api\"\n"
        policy.toml:3:10: default.action: "allow" is not an action: in [default], action is what the default requires (read, write or admin); write decision = "allow" instead  [policy_invalid_value]
        --- "[default]\ndecision = true\n"
        policy.toml:2:12: default.decision: expected "deny" or "allow", found a boolean  [policy_wrong_type]
        --- "default = \"deny\"\n"
        policy.toml:1:11: default: expected a table ([default]), found a string  [policy_wrong_type]
        --- "[default]\ndecision = \"allow\"\nresource = \"api\"\naction = \"read\"\nsensitivity = [\"public\"]\n"
        ok: 0 routes
    "#]].assert_eq(&got);
}

#[test]
fn structural_problems() {
    let cases = [
        "",
        "# only a comment\n",
        "[route]\nmethod = \"GET\"\n",
        "route = 3\n",
        "route = [1, {method = \"GET\", path = \"/a\", resource = \"a\", action = \"read\"}]\n",
        "[[rout]]\nmethod = \"GET\"\n",
        "[[route]]\n",
        "[[route]]\nmethod = \"GET\"\npath = \"/v1/\\u0070atients/{}\"\nresource = \"p\"\naction = \"read\"\n",
    ];
    let got: String = cases.iter().map(|c| format!("--- {c:?}\n{}", check(c))).collect();
    expect![[r##"
        --- ""
        ok: 0 routes
        --- "# only a comment\n"
        ok: 0 routes
        --- "[route]\nmethod = \"GET\"\n"
        policy.toml:1:1: route: routes are an array of tables: write [[route]], not [route]  [policy_wrong_type]
        --- "route = 3\n"
        policy.toml:1:9: route: expected routes as [[route]] tables, found an integer  [policy_wrong_type]
        --- "route = [1, {method = \"GET\", path = \"/a\", resource = \"a\", action = \"read\"}]\n"
        policy.toml:1:10: route: expected a table ([[route]]), found an integer  [policy_wrong_type]
        --- "[[rout]]\nmethod = \"GET\"\n"
        policy.toml:1:3: rout: unknown key (did you mean route?)  [policy_unknown_key]
        --- "[[route]]\n"
        policy.toml:1:1: route.method: this [[route]] has no method: add one such as method = "GET" (or "*" for any method)  [policy_missing_key]
        policy.toml:1:1: route.path: this [[route]] has no path: add a template such as path = "/v1/patients/{id}"  [policy_missing_key]
        policy.toml:1:1: route.resource: this [[route]] has no resource: add the resource a token needs, such as resource = "patients"  [policy_missing_key]
        policy.toml:1:1: route.action: this [[route]] has no action: add the action a token needs: action = "read", "write" or "admin"  [policy_missing_key]
        --- "[[route]]\nmethod = \"GET\"\npath = \"/v1/\\u0070atients/{}\"\nresource = \"p\"\naction = \"read\"\n"
        policy.toml:3:8: route.path: template "/v1/patients/{}": `{}`: a parameter needs a name, such as {id}  [policy_invalid_value]
    "##]].assert_eq(&got);
}

#[test]
fn syntax_errors_are_reported_alone() {
    let text = "[[route]]\nmethod = \"GET\"\nmethod = \"POST\"\npath = /v1\nbogus = \n";
    expect![[r#"
        policy.toml:3:1: duplicate key (at `method`)  [policy_syntax]
        policy.toml:4:8: string values must be quoted, expected literal string (at `/v1`)  [policy_syntax]
        policy.toml:5:9: string values must be quoted, expected literal string  [policy_syntax]
    "#]]
    .assert_eq(&check(text));
}

#[test]
fn load_reports_unreadable_files() {
    let dir = tempdir();
    let missing = dir.join("missing.toml");
    let got = render(&Policy::load(&missing)).replace(&format!("{}/", dir.display()), "");
    expect![[r#"
        missing.toml: policy file not found  [policy_unreadable]
    "#]]
    .assert_eq(&got);

    let binary = dir.join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let got = render(&Policy::load(&binary)).replace(&format!("{}/", dir.display()), "");
    expect![[r#"
        binary.toml: cannot read the policy file: it is not UTF-8  [policy_unreadable]
    "#]]
    .assert_eq(&got);

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[route]]\nmethod = \"get\"\n").unwrap();
    let got = render(&Policy::load(&bad)).replace(&format!("{}/", dir.display()), "");
    expect![[r#"
        bad.toml:1:1: route.path: this [[route]] has no path: add a template such as path = "/v1/patients/{id}"  [policy_missing_key]
        bad.toml:1:1: route.resource: this [[route]] has no resource: add the resource a token needs, such as resource = "patients"  [policy_missing_key]
        bad.toml:1:1: route.action: this [[route]] has no action: add the action a token needs: action = "read", "write" or "admin"  [policy_missing_key]
        bad.toml:2:10: route.method: "get": methods are case-sensitive (RFC 9110) and clients send them in uppercase; write "GET"  [policy_invalid_value]
    "#]].assert_eq(&got);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory in the space cargo sets aside for integration tests (no tempfile dependency
/// for this one test).
fn tempdir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("policy-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a test directory");
    dir
}
