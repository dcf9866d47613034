//! The user aggregate: pure, folded from the stream `user-<id>`.

use schemas::{DisplayName, Role, UserEvent, Username};
use uuid::Uuid;

use crate::commands::Aggregate;

/// A user as its stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    pub user_id: Uuid,
    pub username: Username,
    pub display_name: DisplayName,
    pub role: Role,
}

impl Aggregate for UserState {
    type Event = UserEvent;

    fn apply(state: Option<Self>, event: &UserEvent) -> Option<Self> {
        match (state, event) {
            (_, UserEvent::Registered(registered)) => Some(Self {
                user_id: registered.user_id,
                username: registered.username.clone(),
                display_name: registered.display_name.clone(),
                role: registered.role,
            }),
        }
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::PlatformAdmin => "platform_admin",
        Role::Admin => "admin",
        Role::Member => "member",
        Role::Viewer => "viewer",
    }
}

/// A tenant role by its stored or requested name.
pub fn parse_role(role: &str) -> Option<Role> {
    match role {
        "admin" => Some(Role::Admin),
        "member" => Some(Role::Member),
        "viewer" => Some(Role::Viewer),
        _ => None,
    }
}
