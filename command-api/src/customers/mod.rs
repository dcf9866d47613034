//! Customers: the pure aggregate, the request shapes and their validation, the commands,
//! and the reads served by the projections with the shapes the API gives them.

pub mod aggregate;
pub mod handlers;
pub mod input;
pub mod reads;
pub mod resources;
