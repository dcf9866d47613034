//! The user aggregate: pure, folded from the stream `user-<id>`.

use schemas::{DisplayName, RoleName, UserEvent, Username};
use uuid::Uuid;

use crate::commands::Aggregate;

/// A user as its stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    pub user_id: Uuid,
    pub username: Username,
    pub display_name: DisplayName,
    pub role: RoleName,
    pub active: bool,
}

impl Aggregate for UserState {
    type Event = UserEvent;

    fn apply(state: Option<Self>, event: &UserEvent) -> Option<Self> {
        match (state, event) {
            (_, UserEvent::Registered(registered)) => Some(Self {
                user_id: registered.user_id,
                username: registered.username.clone(),
                display_name: registered.display_name.clone(),
                role: registered.role.clone(),
                active: true,
            }),
            (Some(user), UserEvent::Updated(updated)) => Some(Self {
                display_name: updated
                    .display_name
                    .clone()
                    .unwrap_or(user.display_name.clone()),
                role: updated.role.clone().unwrap_or(user.role.clone()),
                ..user
            }),
            (Some(user), UserEvent::Deactivated(_)) => Some(Self {
                active: false,
                ..user
            }),
            (Some(user), UserEvent::Reactivated(_)) => Some(Self {
                active: true,
                ..user
            }),
            (Some(user), UserEvent::PasswordChanged(_)) => Some(user),
            (None, _) => None,
        }
    }
}
