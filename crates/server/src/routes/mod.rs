//! HTTP handlers, one module per area. Handlers translate between wire types and engine calls;
//! they hold no business rules.

pub mod access;
pub mod audit;
pub mod findings;
pub mod health;
pub mod ledger;
pub mod reports;
pub mod tokens;
