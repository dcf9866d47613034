//! A tenant's users: the user aggregate, the request shapes and their validation, and the
//! tenant admin's endpoints. Passwords are Argon2id hashes in the `users` table, never in
//! an event: events are immutable and copied to Kafka and Elasticsearch.

pub mod aggregate;
pub mod handlers;
pub mod input;

pub use aggregate::{parse_role, role_name};
pub use handlers::{User, router};
pub use input::{NewUser, UserInput};
