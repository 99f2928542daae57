//! The documentation stays true: the example policy parses, and so does every TOML example in
//! docs/policy.md that is not marked as showing an error.

use std::path::PathBuf;

use policy::Policy;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn example_policy_parses() {
    let policy = Policy::load(&crate_dir().join("examples/policy.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(policy.routes().len() >= 10);
    assert!(policy.default_route().is_none());
    let m = policy.resolve("GET", "/v1/patients/search").unwrap();
    assert_eq!(m.text(), "GET /v1/patients/search");
    assert!(policy.resolve("GET", "/v1/unknown").is_none());
}

/// The fenced blocks of docs/policy.md: (language, body).
fn blocks() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(crate_dir().join("../../docs/policy.md")).expect("docs/policy.md is readable");
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            out.push((lang.to_owned(), body.iter().map(|l| format!("{l}\n")).collect()));
        }
    }
    out
}

#[test]
fn toml_examples_in_policy_md_parse_and_errors_are_as_shown() {
    let blocks = blocks();
    let mut checked = 0;
    for (i, (lang, body)) in blocks.iter().enumerate() {
        if lang != "toml" {
            continue;
        }
        checked += 1;
        let result = Policy::parse(body, "policy.toml");
        if body.starts_with("# error") {
            let errors = result.expect_err("an example marked `# error` parses");
            let (_, shown) = blocks.get(i + 1).filter(|(lang, _)| lang == "text").expect("a text block follows");
            assert_eq!(format!("{errors}\n"), *shown, "the errors shown in docs/policy.md are out of date");
        } else if let Err(e) = result {
            panic!("an example in docs/policy.md does not parse:\n{body}\n{e}");
        }
    }
    assert!(checked >= 4, "found only {checked} TOML examples in docs/policy.md");
}

/// The example whose text contains `marker`.
fn example(marker: &str) -> Policy {
    let (_, body) =
        blocks().into_iter().find(|(lang, body)| lang == "toml" && body.contains(marker)).expect("the example exists");
    Policy::parse(&body, "policy.md").unwrap_or_else(|e| panic!("{e}"))
}

/// What the examples' prose says about them.
#[test]
fn examples_in_policy_md_do_what_the_text_says() {
    let needs = |policy: &Policy, method: &str, path: &str| {
        policy.resolve(method, path).map(|m| format!("{} {}", m.text(), m.scope()))
    };
    let clinic = example("/healthz");
    assert_eq!(needs(&clinic, "GET", "/v1/patients/42").as_deref(), Some("GET,HEAD /v1/patients/{id} patients:read"));
    assert_eq!(needs(&clinic, "GET", "/v1/patients/search").as_deref(), Some("GET /v1/patients/search patients:read"));
    assert_eq!(
        needs(&clinic, "GET", "/v1/patients/42/labs/2026/cbc.pdf").as_deref(),
        Some("GET /v1/patients/{id}/labs/* labs:read")
    );
    assert_eq!(needs(&clinic, "POST", "/v1/patients/42"), None);
    assert_eq!(needs(&clinic, "GET", "/v1/billing"), None);

    let stats = example("resource = \"stats\"");
    assert_eq!(needs(&stats, "GET", "/v1/stats/influenza/2026").as_deref(), Some("* /* stats:read"));
    assert_eq!(needs(&stats, "GET", "/v1/cases/17").as_deref(), Some("GET /v1/cases/{id} cases:read"));
    assert_eq!(needs(&stats, "POST", "/v1/cases/17").as_deref(), Some("* /v1/cases/* cases:write"));
    assert_eq!(needs(&stats, "GET", "/v1/cases/%31%37"), None);
    assert_eq!(needs(&stats, "GET", "/v1/stats/../cases/17"), None);
}
