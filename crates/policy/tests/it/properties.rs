//! Properties over arbitrary input: neither matching nor parsing panics, whatever arrives.

use policy::Policy;
use proptest::prelude::*;

fn example() -> Policy {
    let text = include_str!("../../examples/policy.toml");
    Policy::parse(text, "policy.toml").expect("the example policy parses")
}

proptest! {
    #[test]
    fn matching_never_panics_on_arbitrary_paths(method in "\\PC{0,8}", path in "\\PC{0,80}") {
        let policy = example();
        let _ = policy.matches(&method, &path);
        if let Some(m) = policy.resolve(&method, &path) {
            let _ = m.params().count();
            let _ = m.rest();
        }
    }

    #[test]
    fn matching_never_panics_on_path_like_input(path in "(/|[a-z%0-9.;?\\\\]{0,4}|\\{|\\}){0,12}") {
        let policy = example();
        for method in ["GET", "*", ""] {
            if let Some(m) = policy.resolve(method, &path) {
                let _ = m.params().count();
                let _ = m.rest();
            }
        }
    }

    #[test]
    fn parsing_never_panics(text in "\\PC{0,200}") {
        let _ = Policy::parse(&text, "fuzz.toml");
    }

    #[test]
    fn parsing_route_like_text_never_panics(
        method in "[A-Za-z*]{0,5}",
        path in "[/a-z{}*%.]{0,16}",
        resource in "[a-z*:]{0,6}",
    ) {
        let text = format!(
            "[[route]]\nmethod = {method:?}\npath = {path:?}\nresource = {resource:?}\naction = \"read\"\n"
        );
        let _ = Policy::parse(&text, "fuzz.toml");
    }
}
