//! The integration tests of the whole product: real servers (in this process and as the
//! `tokentrail` binary) on port 0 with temporary data directories, driven over HTTP and through
//! the CLI. One binary, so the workspace links once (STYLE.md, habit 6).

mod cli;
mod crash;
mod detection;
mod gateway;
mod http;
mod investigate;
mod ledger;
mod nginx;
mod reports;
mod restart;
mod secrets;
mod testkit;
mod upstream;
