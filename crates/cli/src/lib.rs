//! The `tokentrail` command line: a client of the admin API, offline commands, and `serve`.
//!
//! The binary (`main.rs`) parses arguments and maps failures to exit codes (0 ok, 1 failure,
//! 2 usage); this library holds the pieces tests use directly: the API client and the output
//! formatting.

pub mod client;
pub mod investigate;
pub mod offline;
pub mod output;
