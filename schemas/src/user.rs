//! Users of a tenant. A user's stream is `user-<user id>`. Password hashes are kept out of
//! events on purpose: events are immutable and replicated to Kafka and Elasticsearch.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{EventType, domain_events};
use crate::values::{DisplayName, Username};

domain_events! {
    /// What happens to a user.
    pub enum UserEvent for "user" {
        Registered(UserRegistered),
    }
}

/// What a tenant user may do; platform admins belong to no tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    PlatformAdmin,
    Admin,
    Member,
    Viewer,
}

/// A user was added to a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub username: Username,
    pub display_name: DisplayName,
    pub role: Role,
}

impl EventType for UserRegistered {
    const NAME: &'static str = "UserRegistered";
    const VERSION: u32 = 1;
}
