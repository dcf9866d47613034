//! Customers: the pure aggregate, the request shapes and their validation, the command
//! handlers, and the reads served by the projections.

pub mod aggregate;
pub mod handlers;
pub mod input;
pub mod reads;
