//! Users of a tenant. A user's stream is `user-<user id>`. Password hashes are kept out of
//! events on purpose: events are immutable and replicated to Kafka and Elasticsearch.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::RoleName;
use crate::event::{EventType, domain_events};
use crate::values::{DisplayName, Username};

domain_events! {
    /// What happens to a user.
    pub enum UserEvent for "user" {
        Registered(UserRegistered),
        Updated(UserUpdated),
        Deactivated(UserDeactivated),
        Reactivated(UserReactivated),
        PasswordChanged(UserPasswordChanged),
    }
}

/// A user was added to a tenant. The role is a built-in one (`admin`, `member`, `viewer`)
/// or one the tenant defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub username: Username,
    pub display_name: DisplayName,
    pub role: RoleName,
}

impl EventType for UserRegistered {
    const NAME: &'static str = "UserRegistered";
    const VERSION: u32 = 1;
}

/// A tenant admin changed a user's display name or role (only what changed is named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<DisplayName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleName>,
    /// The role before, when the role changed: the audit log reads "from, to".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_role: Option<RoleName>,
}

impl EventType for UserUpdated {
    const NAME: &'static str = "UserUpdated";
    const VERSION: u32 = 1;
}

/// A user may no longer log in; their tokens and sessions stop working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserDeactivated {}

impl EventType for UserDeactivated {
    const NAME: &'static str = "UserDeactivated";
    const VERSION: u32 = 1;
}

/// A deactivated user may log in again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserReactivated {}

impl EventType for UserReactivated {
    const NAME: &'static str = "UserReactivated";
    const VERSION: u32 = 1;
}

/// A user's password changed (never the password or its hash: events are replicated). By
/// the user, with the old one, or reset by an admin; either way their sessions end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserPasswordChanged {
    /// True when an admin reset it, false when the user changed their own.
    pub reset_by_admin: bool,
}

impl EventType for UserPasswordChanged {
    const NAME: &'static str = "UserPasswordChanged";
    const VERSION: u32 = 1;
}
