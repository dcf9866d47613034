//! A tenant's users: the user aggregate (every rule about users), the request shapes and
//! their validation, the commands of the pipeline, the administration endpoints
//! (permission `users:manage`) and the reads. Passwords are Argon2id hashes in the `users`
//! table, never in an event: events are immutable and copied to Kafka and Elasticsearch.

pub mod aggregate;
pub mod commands;
pub mod handlers;
pub mod input;
pub mod reads;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub use input::{NewUser, UserInput};
pub use reads::User;

pub fn router() -> OpenApiRouter<AppState> {
    handlers::router().merge(reads::router())
}
