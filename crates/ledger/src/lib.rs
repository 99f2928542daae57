//! Audit ledger core.
