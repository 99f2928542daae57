//! Token authority core: the token format, secret hashing, scopes, constraints and the decision
//! function.
//!
//! Pure: no I/O, no async, no clock and no random number generator. Time and randomness are
//! parameters so that every rule here can be tested with fixed inputs.

pub mod base62;
pub mod decide;
pub mod duration;
pub mod format;
pub mod record;
pub mod scope;
pub mod secret;

pub use decide::{Attempt, Constraint, Decision, Explanation, Reason, decide};
pub use duration::{DurationError, RateLimit, format_duration, parse_duration};
pub use format::{CredentialError, ParsedToken, Prefix, TokenString, parse, redact_path};
pub use record::{CidrError, TokenRecord, TokenState, cidr_contains, parse_cidr};
pub use scope::{Action, Scope, ScopeError, covers};
pub use secret::{Pepper, SecretHash};
