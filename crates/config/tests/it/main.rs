//! Integration tests for the configuration pipeline, in one test binary.

mod docs;
mod pipeline;

use std::fmt::Write as _;

/// Runs the whole pipeline on a file (written to a temporary `tokentrail.toml`), environment and
/// flags, and renders the outcome: the effective configuration, or every error with its code.
/// The temporary directory is left out of file paths so snapshots are stable.
pub(crate) fn run(file: Option<&str>, env: &[(&str, &str)], flags: &[(&str, &str)]) -> String {
    run_with(file, env, flags, config::Defaults::default())
}

pub(crate) fn run_with(
    file: Option<&str>,
    env: &[(&str, &str)],
    flags: &[(&str, &str)],
    defaults: config::Defaults,
) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("tokentrail.toml");
    if let Some(text) = file {
        std::fs::write(&path, text).expect("write the config file");
    }
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let flags: Vec<(&str, String)> = flags.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let result = config::load(file.map(|_| path.as_path()), &env, &flags, defaults);
    render(&result).replace(&format!("{}/", dir.path().display()), "")
}

pub(crate) fn render(result: &Result<config::Config, config::ConfigErrors>) -> String {
    let mut out = String::new();
    match result {
        Ok(config) => {
            for (key, value) in config.entries() {
                let _ = writeln!(out, "{key} = {value}");
            }
        }
        Err(errors) => {
            for e in &errors.0 {
                let _ = writeln!(out, "{e}  [{}]", e.kind.code());
            }
        }
    }
    out
}
