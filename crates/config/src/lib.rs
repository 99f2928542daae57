//! tokentrail's one configuration pipeline: built-in defaults, then a TOML file (`--config`),
//! then `TOKENTRAIL_*` environment variables, then command-line flags, then validation.
//!
//! Unknown keys are errors and every problem is reported at once, each naming the key, where the
//! value came from (file and line, environment variable, or flag) and what was expected. With no
//! file, no environment and no flags the defaults are a working configuration.
//!
//! This crate reads the configuration file and nothing else: it never reads the process
//! environment, the hostname or the clock. The caller passes those in, so the whole pipeline is
//! testable with plain values. It does not parse command lines either; the CLI maps its flags to
//! key paths (see [`load`]).
//!
//! To add a key, see the `schema` module: a field, a default and one registry line.

mod error;
mod load;
mod schema;
mod value;

pub use error::{ConfigError, ConfigErrors, ErrorKind, Origin};
pub use load::{CLIENT_ENV_VARS, ENV_PREFIX, check_file, env_var, flag_name, key_paths, load};
pub use schema::{
    AlertsConfig, Config, Defaults, DetectSection, Durability, FALLBACK_NODE, GatewayConfig, LedgerConfig,
    LimitsConfig, LogConfig, LogFormat, ReportsConfig, TokenConfig, parse_business_hours,
};
