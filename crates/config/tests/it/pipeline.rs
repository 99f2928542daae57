//! Data-driven tests of the pipeline: input on the left, rendered outcome on the right.
//! Update the snapshots with `UPDATE_EXPECT=1 cargo test -p config`, then read the diff.

use expect_test::expect;

use crate::{run, run_with};
use config::{Defaults, ErrorKind};

#[test]
fn defaults_with_nothing_given() {
    expect![[r#"
        data_dir = "./tokentrail-data"
        listen = "127.0.0.1:8720"
        node = "local"
        log.format = "text"
        log.level = "info"
        tokens.prefix = "ttk"
        tokens.default_lifetime = "90d"
        tokens.max_lifetime = "365d"
        tokens.max_rotation_grace = "1w"
        limits.max_body_bytes = 65536
        ledger.durability = "durable"
        ledger.checkpoint_interval = "1s"
        ledger.queue_capacity = 10000
        policy = ""
        gateway.upstream = ""
        gateway.listen = "127.0.0.1:8721"
        gateway.credential_header = ""
        gateway.trusted_proxies = []
        gateway.audit_timeout = "2s"
        gateway.failed_attempts = "60/min"
        detect.enabled = true
        detect.replay_days = 35
        detect.max_keys = 100000
        detect.min_history_events = 100
        detect.min_history_days = 7
        detect.trusted_networks = []
        detect.off_hours_sensitive_only = true
        detect.business_hours = "Mon-Fri 07-20"
        detect.timezone = "UTC"
        detect.brute_force_threshold = 20
        detect.dormant_days = 30
        detect.enumeration_min_ids = 50
        detect.volume_min_requests = 200
        detect.off_hours_evening_margin_hours = 3
        detect.new_network_back_and_forth = "4h"
        detect.new_network_quiet_days = 30
        alerts.webhook_url = ""
        alerts.webhook_secret = ""
        alerts.webhook_min_severity = "medium"
        alerts.syslog = ""
        alerts.syslog_min_severity = "medium"
        alerts.file = ""
        alerts.file_min_severity = "low"
        reports.window = "90d"
        reports.unused_for = "30d"
        reports.max_secret_age = "90d"
    "#]]
    .assert_eq(&run(None, &[], &[]));
}

#[test]
fn node_defaults_to_the_hostname_given() {
    let node = |hostname: Option<&str>| {
        let defaults = Defaults { hostname: hostname.map(str::to_owned) };
        config::load(None, &[], &[], defaults).unwrap().node
    };
    assert_eq!(node(Some("gw-1.example.com")), "gw-1.example.com");
    assert_eq!(node(None), "local");
    assert_eq!(node(Some("")), "local", "an unusable hostname falls back");
    assert_eq!(node(Some("bad name")), "local", "an unusable hostname falls back");
}

#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(run(Some(""), &[], &[]), run(None, &[], &[]));
}

#[test]
fn file_only() {
    let file = r#"
data_dir = "/var/lib/tokentrail"
listen = "[::1]:9000"
node = "gw-1"

[log]
format = "json"
level = "info,tokentrail=debug"

[tokens]
prefix = "acme"
default_lifetime = "30d"
max_lifetime = "52w"
max_rotation_grace = "12h"

[limits]
max_body_bytes = 0x10000_0
"#;
    expect![[r#"
        data_dir = "/var/lib/tokentrail"
        listen = "[::1]:9000"
        node = "gw-1"
        log.format = "json"
        log.level = "info,tokentrail=debug"
        tokens.prefix = "acme"
        tokens.default_lifetime = "30d"
        tokens.max_lifetime = "52w"
        tokens.max_rotation_grace = "12h"
        limits.max_body_bytes = 1048576
        ledger.durability = "durable"
        ledger.checkpoint_interval = "1s"
        ledger.queue_capacity = 10000
        policy = ""
        gateway.upstream = ""
        gateway.listen = "127.0.0.1:8721"
        gateway.credential_header = ""
        gateway.trusted_proxies = []
        gateway.audit_timeout = "2s"
        gateway.failed_attempts = "60/min"
        detect.enabled = true
        detect.replay_days = 35
        detect.max_keys = 100000
        detect.min_history_events = 100
        detect.min_history_days = 7
        detect.trusted_networks = []
        detect.off_hours_sensitive_only = true
        detect.business_hours = "Mon-Fri 07-20"
        detect.timezone = "UTC"
        detect.brute_force_threshold = 20
        detect.dormant_days = 30
        detect.enumeration_min_ids = 50
        detect.volume_min_requests = 200
        detect.off_hours_evening_margin_hours = 3
        detect.new_network_back_and_forth = "4h"
        detect.new_network_quiet_days = 30
        alerts.webhook_url = ""
        alerts.webhook_secret = ""
        alerts.webhook_min_severity = "medium"
        alerts.syslog = ""
        alerts.syslog_min_severity = "medium"
        alerts.file = ""
        alerts.file_min_severity = "low"
        reports.window = "90d"
        reports.unused_for = "30d"
        reports.max_secret_age = "90d"
    "#]]
    .assert_eq(&run(Some(file), &[], &[]));
}

#[test]
fn dotted_keys_and_inline_tables() {
    let file = r#"
tokens.prefix = "acme"
log = { format = "json" }
"#;
    expect![[r#"
        data_dir = "./tokentrail-data"
        listen = "127.0.0.1:8720"
        node = "local"
        log.format = "json"
        log.level = "info"
        tokens.prefix = "acme"
        tokens.default_lifetime = "90d"
        tokens.max_lifetime = "365d"
        tokens.max_rotation_grace = "1w"
        limits.max_body_bytes = 65536
        ledger.durability = "durable"
        ledger.checkpoint_interval = "1s"
        ledger.queue_capacity = 10000
        policy = ""
        gateway.upstream = ""
        gateway.listen = "127.0.0.1:8721"
        gateway.credential_header = ""
        gateway.trusted_proxies = []
        gateway.audit_timeout = "2s"
        gateway.failed_attempts = "60/min"
        detect.enabled = true
        detect.replay_days = 35
        detect.max_keys = 100000
        detect.min_history_events = 100
        detect.min_history_days = 7
        detect.trusted_networks = []
        detect.off_hours_sensitive_only = true
        detect.business_hours = "Mon-Fri 07-20"
        detect.timezone = "UTC"
        detect.brute_force_threshold = 20
        detect.dormant_days = 30
        detect.enumeration_min_ids = 50
        detect.volume_min_requests = 200
        detect.off_hours_evening_margin_hours = 3
        detect.new_network_back_and_forth = "4h"
        detect.new_network_quiet_days = 30
        alerts.webhook_url = ""
        alerts.webhook_secret = ""
        alerts.webhook_min_severity = "medium"
        alerts.syslog = ""
        alerts.syslog_min_severity = "medium"
        alerts.file = ""
        alerts.file_min_severity = "low"
        reports.window = "90d"
        reports.unused_for = "30d"
        reports.max_secret_age = "90d"
    "#]]
    .assert_eq(&run(Some(file), &[], &[]));
}

#[test]
fn env_overrides_file() {
    let file = r#"
listen = "127.0.0.1:1"
[tokens]
prefix = "fromfile"
max_lifetime = "30d"
"#;
    let env = [
        ("TOKENTRAIL_LISTEN", "0.0.0.0:8720"),
        ("TOKENTRAIL_TOKENS_PREFIX", "fromenv"),
        ("TOKENTRAIL_LIMITS_MAX_BODY_BYTES", "2048"),
        ("TOKENTRAIL_TOKENS_DEFAULT_LIFETIME", "7d"),
        ("PATH", "/usr/bin"),
    ];
    expect![[r#"
        data_dir = "./tokentrail-data"
        listen = "0.0.0.0:8720"
        node = "local"
        log.format = "text"
        log.level = "info"
        tokens.prefix = "fromenv"
        tokens.default_lifetime = "1w"
        tokens.max_lifetime = "30d"
        tokens.max_rotation_grace = "1w"
        limits.max_body_bytes = 2048
        ledger.durability = "durable"
        ledger.checkpoint_interval = "1s"
        ledger.queue_capacity = 10000
        policy = ""
        gateway.upstream = ""
        gateway.listen = "127.0.0.1:8721"
        gateway.credential_header = ""
        gateway.trusted_proxies = []
        gateway.audit_timeout = "2s"
        gateway.failed_attempts = "60/min"
        detect.enabled = true
        detect.replay_days = 35
        detect.max_keys = 100000
        detect.min_history_events = 100
        detect.min_history_days = 7
        detect.trusted_networks = []
        detect.off_hours_sensitive_only = true
        detect.business_hours = "Mon-Fri 07-20"
        detect.timezone = "UTC"
        detect.brute_force_threshold = 20
        detect.dormant_days = 30
        detect.enumeration_min_ids = 50
        detect.volume_min_requests = 200
        detect.off_hours_evening_margin_hours = 3
        detect.new_network_back_and_forth = "4h"
        detect.new_network_quiet_days = 30
        alerts.webhook_url = ""
        alerts.webhook_secret = ""
        alerts.webhook_min_severity = "medium"
        alerts.syslog = ""
        alerts.syslog_min_severity = "medium"
        alerts.file = ""
        alerts.file_min_severity = "low"
        reports.window = "90d"
        reports.unused_for = "30d"
        reports.max_secret_age = "90d"
    "#]]
    .assert_eq(&run(Some(file), &env, &[]));
}

#[test]
fn flags_override_env() {
    let file = r#"
data_dir = "/from/file"
[log]
level = "warn"
"#;
    let env = [
        ("TOKENTRAIL_DATA_DIR", "/from/env"),
        ("TOKENTRAIL_LOG_FORMAT", "json"),
        ("TOKENTRAIL_LOG_LEVEL", "debug"),
        ("TOKENTRAIL_NODE", "env-node"),
    ];
    let flags = [("data_dir", "/from/flag"), ("log.level", "trace"), ("node", "flag-node")];
    expect![[r#"
        data_dir = "/from/flag"
        listen = "127.0.0.1:8720"
        node = "flag-node"
        log.format = "json"
        log.level = "trace"
        tokens.prefix = "ttk"
        tokens.default_lifetime = "90d"
        tokens.max_lifetime = "365d"
        tokens.max_rotation_grace = "1w"
        limits.max_body_bytes = 65536
        ledger.durability = "durable"
        ledger.checkpoint_interval = "1s"
        ledger.queue_capacity = 10000
        policy = ""
        gateway.upstream = ""
        gateway.listen = "127.0.0.1:8721"
        gateway.credential_header = ""
        gateway.trusted_proxies = []
        gateway.audit_timeout = "2s"
        gateway.failed_attempts = "60/min"
        detect.enabled = true
        detect.replay_days = 35
        detect.max_keys = 100000
        detect.min_history_events = 100
        detect.min_history_days = 7
        detect.trusted_networks = []
        detect.off_hours_sensitive_only = true
        detect.business_hours = "Mon-Fri 07-20"
        detect.timezone = "UTC"
        detect.brute_force_threshold = 20
        detect.dormant_days = 30
        detect.enumeration_min_ids = 50
        detect.volume_min_requests = 200
        detect.off_hours_evening_margin_hours = 3
        detect.new_network_back_and_forth = "4h"
        detect.new_network_quiet_days = 30
        alerts.webhook_url = ""
        alerts.webhook_secret = ""
        alerts.webhook_min_severity = "medium"
        alerts.syslog = ""
        alerts.syslog_min_severity = "medium"
        alerts.file = ""
        alerts.file_min_severity = "low"
        reports.window = "90d"
        reports.unused_for = "30d"
        reports.max_secret_age = "90d"
    "#]]
    .assert_eq(&run(Some(file), &env, &flags));
}

#[test]
fn unknown_key_in_file() {
    let file = r#"
listen = "127.0.0.1:8720"
listne = "127.0.0.1:8720"
colour = "blue"
"#;
    expect![[r#"
        tokentrail.toml:3:1: listne: unknown key (did you mean listen?)  [config_unknown_key]
        tokentrail.toml:4:1: colour: unknown key; expected one of: data_dir, listen, node, log, tokens, limits, ledger, policy, gateway, detect, alerts, reports  [config_unknown_key]
    "#]]
    .assert_eq(&run(Some(file), &[], &[]));
}

#[test]
fn unknown_key_in_a_nested_table() {
    let file = r#"
[tokens]
prefx = "acme"
colour = "blue"

[tokens.extra]
a = 1

[gateway]
upstream = "http://localhost:3000"
"#;
    expect![[r#"
        tokentrail.toml:3:1: tokens.prefx: unknown key (did you mean tokens.prefix?)  [config_unknown_key]
        tokentrail.toml:4:1: tokens.colour: unknown key; [tokens] has: prefix, default_lifetime, max_lifetime, max_rotation_grace  [config_unknown_key]
        tokentrail.toml:6:9: tokens.extra: unknown table; [tokens] has: prefix, default_lifetime, max_lifetime, max_rotation_grace  [config_unknown_key]
    "#]]
    .assert_eq(&run(Some(file), &[], &[]));
}

#[test]
fn unknown_tokentrail_env_var() {
    let env = [
        ("TOKENTRAIL_LISTN", "127.0.0.1:1"),
        ("TOKENTRAIL_FROBNICATE", "http://x"),
        // The client's variables and other programs' variables are not configuration.
        ("TOKENTRAIL_ADDR", "http://127.0.0.1:8720"),
        ("TOKENTRAIL_TOKEN", "ttk_x"),
        ("TOKENTRAIL_TOKEN_FILE", "/tmp/t"),
        ("TOKENTRAIL_CONFIG", "/etc/tokentrail.toml"),
        ("HOME", "/root"),
        ("tokentrail_listen", "lowercase is not ours"),
    ];
    expect![[r#"
        env TOKENTRAIL_FROBNICATE: not a configuration variable; known: TOKENTRAIL_DATA_DIR, TOKENTRAIL_LISTEN, TOKENTRAIL_NODE, TOKENTRAIL_LOG_FORMAT, TOKENTRAIL_LOG_LEVEL, TOKENTRAIL_TOKENS_PREFIX, TOKENTRAIL_TOKENS_DEFAULT_LIFETIME, TOKENTRAIL_TOKENS_MAX_LIFETIME, TOKENTRAIL_TOKENS_MAX_ROTATION_GRACE, TOKENTRAIL_LIMITS_MAX_BODY_BYTES, TOKENTRAIL_LEDGER_DURABILITY, TOKENTRAIL_LEDGER_CHECKPOINT_INTERVAL, TOKENTRAIL_LEDGER_QUEUE_CAPACITY, TOKENTRAIL_POLICY, TOKENTRAIL_GATEWAY_UPSTREAM, TOKENTRAIL_GATEWAY_LISTEN, TOKENTRAIL_GATEWAY_CREDENTIAL_HEADER, TOKENTRAIL_GATEWAY_TRUSTED_PROXIES, TOKENTRAIL_GATEWAY_AUDIT_TIMEOUT, TOKENTRAIL_GATEWAY_FAILED_ATTEMPTS, TOKENTRAIL_DETECT_ENABLED, TOKENTRAIL_DETECT_REPLAY_DAYS, TOKENTRAIL_DETECT_MAX_KEYS, TOKENTRAIL_DETECT_MIN_HISTORY_EVENTS, TOKENTRAIL_DETECT_MIN_HISTORY_DAYS, TOKENTRAIL_DETECT_TRUSTED_NETWORKS, TOKENTRAIL_DETECT_OFF_HOURS_SENSITIVE_ONLY, TOKENTRAIL_DETECT_BUSINESS_HOURS, TOKENTRAIL_DETECT_TIMEZONE, TOKENTRAIL_DETECT_BRUTE_FORCE_THRESHOLD, TOKENTRAIL_DETECT_DORMANT_DAYS, TOKENTRAIL_DETECT_ENUMERATION_MIN_IDS, TOKENTRAIL_DETECT_VOLUME_MIN_REQUESTS, TOKENTRAIL_DETECT_OFF_HOURS_EVENING_MARGIN_HOURS, TOKENTRAIL_DETECT_NEW_NETWORK_BACK_AND_FORTH, TOKENTRAIL_DETECT_NEW_NETWORK_QUIET_DAYS, TOKENTRAIL_ALERTS_WEBHOOK_URL, TOKENTRAIL_ALERTS_WEBHOOK_SECRET, TOKENTRAIL_ALERTS_WEBHOOK_MIN_SEVERITY, TOKENTRAIL_ALERTS_SYSLOG, TOKENTRAIL_ALERTS_SYSLOG_MIN_SEVERITY, TOKENTRAIL_ALERTS_FILE, TOKENTRAIL_ALERTS_FILE_MIN_SEVERITY, TOKENTRAIL_REPORTS_WINDOW, TOKENTRAIL_REPORTS_UNUSED_FOR, TOKENTRAIL_REPORTS_MAX_SECRET_AGE  [config_unknown_key]
        env TOKENTRAIL_LISTN: not a configuration variable (did you mean TOKENTRAIL_LISTEN?)  [config_unknown_key]
    "#]]
    .assert_eq(&run(None, &env, &[]));
}

#[test]
fn unknown_flag_key() {
    expect![[r#"
        flag --colour: colour: not a configuration key (a bug in the command line)  [config_unknown_key]
    "#]]
    .assert_eq(&run(None, &[], &[("colour", "blue")]));
}

#[test]
fn wrong_types() {
    let file = r#"
data_dir = 42
listen = 8720
node = true
log = "json"

[tokens]
prefix = ["ttk"]
default_lifetime = 90
max_lifetime = 1979-05-27

[limits]
max_body_bytes = "64KiB"
"#;
    expect![[r#"
        tokentrail.toml:2:12: data_dir: expected a path (a string), found an integer  [config_wrong_type]
        tokentrail.toml:3:10: listen: expected an IP address and port such as "127.0.0.1:8720", found an integer  [config_wrong_type]
        tokentrail.toml:4:8: node: expected a string, found a boolean  [config_wrong_type]
        tokentrail.toml:5:7: log: expected a table with the keys format, level, found a string  [config_wrong_type]
        tokentrail.toml:8:10: tokens.prefix: expected a token prefix such as "ttk" (a string), found an array  [config_wrong_type]
        tokentrail.toml:9:20: tokens.default_lifetime: expected a duration such as "90d" (a string), found an integer  [config_wrong_type]
        tokentrail.toml:10:16: tokens.max_lifetime: expected a duration such as "90d" (a string), found a datetime  [config_wrong_type]
        tokentrail.toml:13:18: limits.max_body_bytes: expected a whole number (an integer), found a string  [config_wrong_type]
    "#]]
    .assert_eq(&run(Some(file), &[], &[]));
}

#[test]
fn bad_durations() {
    let file = r#"
[tokens]
default_lifetime = "90"
max_lifetime = "1 year"
max_rotation_grace = "0s"
"#;
    let env = [("TOKENTRAIL_TOKENS_MAX_LIFETIME", "-5d")];
    expect![[r#"
        tokentrail.toml:3:20: tokens.default_lifetime: "90" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)  [config_invalid_value]
        tokentrail.toml:4:16: tokens.max_lifetime: "1 year" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)  [config_invalid_value]
        tokentrail.toml:5:22: tokens.max_rotation_grace: "0s" is out of range (between 1s and 100 years)  [config_invalid_value]
        env TOKENTRAIL_TOKENS_MAX_LIFETIME: tokens.max_lifetime: "-5d" is not a duration: use a whole number and a unit s, m, h, d or w (for example 30d)  [config_invalid_value]
    "#]]
    .assert_eq(&run(Some(file), &env, &[]));
}

#[test]
fn default_lifetime_longer_than_max_lifetime() {
    // Blamed on default_lifetime when the user set it...
    let file = "[tokens]\ndefault_lifetime = \"400d\"\n";
    expect![[r#"
        tokentrail.toml:2:20: tokens.default_lifetime: tokens.default_lifetime (400d) is longer than tokens.max_lifetime (365d): expected the default lifetime to be at most the maximum  [config_conflict]
    "#]]
    .assert_eq(&run(Some(file), &[], &[]));
    // ...and on max_lifetime when only that was set, since that is the value to change.
    expect![[r#"
        env TOKENTRAIL_TOKENS_MAX_LIFETIME: tokens.max_lifetime: tokens.default_lifetime (90d) is longer than tokens.max_lifetime (30d): expected the default lifetime to be at most the maximum  [config_conflict]
    "#]]
    .assert_eq(&run(None, &[("TOKENTRAIL_TOKENS_MAX_LIFETIME", "30d")], &[]));
    // Equal is allowed.
    let ok = run(None, &[("TOKENTRAIL_TOKENS_DEFAULT_LIFETIME", "365d")], &[]);
    assert!(ok.contains("tokens.default_lifetime = \"365d\""), "{ok}");
}

#[test]
fn bad_listen_address() {
    let file = "listen = \"localhost:8720\"\n";
    let flags = [("listen", "127.0.0.1")];
    expect![[r#"
        tokentrail.toml:1:10: listen: "localhost:8720" is not an IP address and port: expected for example "127.0.0.1:8720" or "[::1]:8720" (host names are not resolved)  [config_invalid_value]
        flag --listen: listen: "127.0.0.1" is not an IP address and port: expected for example "127.0.0.1:8720" or "[::1]:8720" (host names are not resolved)  [config_invalid_value]
    "#]]
    .assert_eq(&run(Some(file), &[], &flags));
}

#[test]
fn bad_prefix() {
    let file = "[tokens]\nprefix = \"TTK\"\n";
    let env = [("TOKENTRAIL_TOKENS_PREFIX", "t")];
    expect![[r#"
        tokentrail.toml:2:10: tokens.prefix: "TTK" is not a valid prefix: token prefix must be 2 to 16 characters: a lowercase letter, then lowercase letters or digits  [config_invalid_value]
        env TOKENTRAIL_TOKENS_PREFIX: tokens.prefix: "t" is not a valid prefix: token prefix must be 2 to 16 characters: a lowercase letter, then lowercase letters or digits  [config_invalid_value]
    "#]]
    .assert_eq(&run(Some(file), &env, &[]));
}

#[test]
fn out_of_range_and_malformed_values() {
    let file = r#"
node = ""
[log]
format = "yaml"
level = "info; rm -rf"
[limits]
max_body_bytes = -1
"#;
    let env = [("TOKENTRAIL_LIMITS_MAX_BODY_BYTES", "100"), ("TOKENTRAIL_DATA_DIR", "")];
    let flags = [("log.format", "JSON")];
    expect![[r#"
        tokentrail.toml:2:8: node: "" is not a node name: expected 1 to 253 characters without spaces  [config_invalid_value]
        tokentrail.toml:4:10: log.format: "yaml" is not a log format: expected "text" or "json"  [config_invalid_value]
        tokentrail.toml:5:9: log.level: "info; rm -rf" is not a log filter: expected a directive such as "info" or "info,tokentrail=debug" (letters, digits and _ = , : . -)  [config_invalid_value]
        tokentrail.toml:7:18: limits.max_body_bytes: -1 is out of range: expected a whole number from 0 up  [config_invalid_value]
        env TOKENTRAIL_DATA_DIR: data_dir: the path is empty; expected a directory path  [config_invalid_value]
        env TOKENTRAIL_LIMITS_MAX_BODY_BYTES: limits.max_body_bytes: 100 is out of range: expected between 1024 and 16777216 (16 MiB)  [config_invalid_value]
        flag --log-format: log.format: "JSON" is not a log format: expected "text" or "json"  [config_invalid_value]
    "#]]
    .assert_eq(&run(Some(file), &env, &flags));
}

#[test]
fn body_size_limits_are_inclusive() {
    let at = |n: &str| run(None, &[("TOKENTRAIL_LIMITS_MAX_BODY_BYTES", n)], &[]);
    assert!(at("1024").contains("limits.max_body_bytes = 1024"));
    assert!(at("16777216").contains("limits.max_body_bytes = 16777216"));
    assert!(at("1023").contains("config_invalid_value"));
    assert!(at("16777217").contains("config_invalid_value"));
}

#[test]
fn several_errors_at_once() {
    let file = r#"
colour = "blue"

[tokens]
max_lifetime = 365

[limits]
max_body_bytes = 99999999
"#;
    let env = [("TOKENTRAIL_LISTEN", "nowhere"), ("TOKENTRAIL_LOGLEVEL", "debug")];
    let flags = [("log.format", "xml")];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokentrail.toml");
    std::fs::write(&path, file).unwrap();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let flags: Vec<(&str, String)> = flags.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let errors = config::load(Some(&path), &env, &flags, Defaults::default()).unwrap_err();

    let got: Vec<(&str, ErrorKind)> = errors.0.iter().map(|e| (e.key.as_str(), e.kind)).collect();
    let want = [
        ("colour", ErrorKind::UnknownKey),
        ("tokens.max_lifetime", ErrorKind::WrongType),
        ("limits.max_body_bytes", ErrorKind::InvalidValue),
        ("listen", ErrorKind::InvalidValue),
        ("", ErrorKind::UnknownKey),
        ("log.format", ErrorKind::InvalidValue),
    ];
    assert_eq!(got, want);
    // Each names where it came from.
    assert!(matches!(&errors.0[0].origin, config::Origin::File { line: Some(2), .. }));
    assert!(matches!(&errors.0[3].origin, config::Origin::Env { var } if var == "TOKENTRAIL_LISTEN"));
    assert!(matches!(&errors.0[5].origin, config::Origin::Flag { name } if name == "--log-format"));
    // Display is one line per error.
    let shown = errors.to_string().replace(&format!("{}/", dir.path().display()), "");
    expect![[r#"
        tokentrail.toml:2:1: colour: unknown key; expected one of: data_dir, listen, node, log, tokens, limits, ledger, policy, gateway, detect, alerts, reports
        tokentrail.toml:5:16: tokens.max_lifetime: expected a duration such as "90d" (a string), found an integer
        tokentrail.toml:8:18: limits.max_body_bytes: 99999999 is out of range: expected between 1024 and 16777216 (16 MiB)
        env TOKENTRAIL_LISTEN: listen: "nowhere" is not an IP address and port: expected for example "127.0.0.1:8720" or "[::1]:8720" (host names are not resolved)
        env TOKENTRAIL_LOGLEVEL: not a configuration variable (did you mean TOKENTRAIL_LOG_LEVEL?)
        flag --log-format: log.format: "xml" is not a log format: expected "text" or "json""#]]
    .assert_eq(&shown);
}

#[test]
fn syntax_errors_have_line_and_column() {
    let file = "listen = \"127.0.0.1:8720\"\n[tokens\nprefix = \"ttk\"\nprefix = \"x\"\n";
    expect![[r#"
        tokentrail.toml:2:8: unclosed table, expected `]`  [config_syntax]
    "#]]
    .assert_eq(&run(Some(file), &[], &[]));
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let file = "listen = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n";
    expect![[r#"
        tokentrail.toml:2:1: duplicate key (at `listen`)  [config_syntax]
    "#]]
    .assert_eq(&run(Some(file), &[], &[]));
}

#[test]
fn missing_file_names_the_path() {
    let errors = config::check_file(std::path::Path::new("/nonexistent/tokentrail.toml")).unwrap_err();
    expect![[r#"
        /nonexistent/tokentrail.toml: config file not found"#]]
    .assert_eq(&errors.to_string());
    assert_eq!(errors.0[0].kind, ErrorKind::Unreadable);
}

#[test]
fn non_utf8_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, b"listen = \"\xff\"\n").unwrap();
    let errors = config::check_file(&path).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].kind, ErrorKind::Unreadable);
    assert!(errors.to_string().ends_with("bad.toml: cannot read the config file: it is not UTF-8"));
}

#[test]
fn problems_in_file_env_and_flags_are_all_reported_even_when_later_layers_fix_them() {
    // A bad value in the file is an error even if the environment overrides it: the file is
    // still wrong, and `config check` on it would say so.
    let out = run_with(
        Some("listen = \"bad\"\n"),
        &[("TOKENTRAIL_LISTEN", "127.0.0.1:1")],
        &[],
        Defaults { hostname: Some("h".to_owned()) },
    );
    expect![[r#"
        tokentrail.toml:1:10: listen: "bad" is not an IP address and port: expected for example "127.0.0.1:8720" or "[::1]:8720" (host names are not resolved)  [config_invalid_value]
    "#]]
    .assert_eq(&out);
}
