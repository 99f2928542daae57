//! The `ledger` integration tests, one binary: the Merkle tree against the RFC definitions and
//! the transparency-dev vectors, checkpoints, and signed notes.

// Helpers outside #[test] functions unwrap too: a test that cannot read its data should fail.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod checkpoint;
mod merkle;
mod note;
mod reference;
mod vectors;
