//! A tenant's users: the user aggregate, the request shapes and their validation, and the
//! administration endpoints (permission `users:manage`). Passwords are Argon2id hashes in the `users` table, never in
//! an event: events are immutable and copied to Kafka and Elasticsearch.

pub mod aggregate;
pub mod handlers;
pub mod input;

pub use handlers::{User, router};
pub use input::{NewUser, UserInput};
