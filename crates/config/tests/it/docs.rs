//! The documentation stays true: the annotated example is the defaults, and every key is
//! documented with its environment variable.

use std::path::PathBuf;

fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

#[test]
fn example_file_parses_and_equals_the_defaults() {
    let path = docs_dir().join("config.example.toml");
    let loaded = config::check_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded, config::Config::default());
}

#[test]
fn example_file_shows_every_key_and_its_variable() {
    let text = std::fs::read_to_string(docs_dir().join("config.example.toml")).unwrap();
    for path in config::key_paths() {
        let name = path.rsplit('.').next().unwrap();
        assert!(text.contains(&format!("{name} = ")), "config.example.toml lacks {path}");
        let var = config::env_var(path);
        assert!(text.contains(&var), "config.example.toml lacks {var}");
    }
}

#[test]
fn configuration_md_documents_every_key_and_its_variable() {
    let text = std::fs::read_to_string(docs_dir().join("configuration.md")).unwrap();
    for path in config::key_paths() {
        assert!(text.contains(&format!("### `{path}`")), "configuration.md lacks a {path} section");
        let var = config::env_var(path);
        assert!(text.contains(&format!("`{var}`")), "configuration.md lacks {var}");
    }
    for var in config::CLIENT_ENV_VARS {
        assert!(text.contains(var), "configuration.md does not say {var} is ignored");
    }
}
