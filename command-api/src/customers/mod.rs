//! Customers: the pure aggregate, the request shapes and their validation, the handlers.

pub mod aggregate;
pub mod handlers;
pub mod input;
