//! Audit ledger core: the audit event, its canonical leaf encoding, the RFC 6962 Merkle tree,
//! signed checkpoints and proofs.
//!
//! Pure: no I/O, no SQL, no clock, no random number generator. Storage supplies stored node
//! hashes through a reader; keys and times are parameters.

pub mod checkpoint;
pub mod event;
pub mod leaf;
pub mod merkle;
pub mod note;
