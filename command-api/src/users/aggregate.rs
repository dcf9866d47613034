//! The user aggregate: pure, folded from the stream `user-<id>`. `decide` holds every rule
//! about a tenant's users; what it needs beyond the stream (the permissions of the roles
//! involved, how many other admins the tenant keeps) is read in the command's transaction
//! and handed in as [`UserFacts`]. Nothing here touches a database.
//!
//! The rules:
//! - one may only grant what one holds: the role given must have no permission the actor
//!   lacks (a user manager cannot make an admin);
//! - one may only act on a user one covers: the user's current role must have no
//!   permission the actor lacks (nor reset an admin's password to take the account), except
//!   for one's own password change, which proves the old password instead;
//! - an admin's reset is for others: one's own password is changed with the old one
//!   (`POST /v1/auth/password`, throttled as a login), never reset;
//! - the last active admin of a tenant can be neither demoted nor deactivated.

use schemas::{
    DisplayName, Permission, Permissions, RoleName, UserDeactivated, UserEvent,
    UserPasswordChanged, UserReactivated, UserRegistered, UserUpdated, Username,
};
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    Register(Registration),
    Change(UserChange),
}

/// A new user's fields (the stream is new: a fresh id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub user_id: Uuid,
    pub username: Username,
    pub display_name: DisplayName,
    pub role: RoleName,
}

impl From<Registration> for UserRegistered {
    fn from(new: Registration) -> Self {
        Self {
            user_id: new.user_id,
            username: new.username,
            display_name: new.display_name,
            role: new.role,
        }
    }
}

/// What changes about an existing user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// Only what is given changes.
    Update {
        display_name: Option<DisplayName>,
        role: Option<RoleName>,
    },
    Deactivate,
    Reactivate,
    /// A new password: the user's own change (old password checked by the caller), or an
    /// admin's reset.
    SetPassword {
        reset_by_admin: bool,
    },
}

/// What the rules need beyond the stream, read in the command's transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFacts {
    /// What the acting user's role allows now (its row, locked).
    pub actor: Permissions,
    /// Whether the acting user is the user acted on.
    pub acting_on_self: bool,
    /// The permissions of the roles the command involves (the user's current one, the one
    /// given), as their locked rows say. A role missing here is not a role of the tenant.
    pub roles: Vec<(RoleName, Permissions)>,
    /// Active admins of the tenant other than this user, counted under the tenant's admin
    /// lock (only read when the user is an admin: `None` otherwise).
    pub other_active_admins: Option<u64>,
}

impl UserFacts {
    fn permissions_of(&self, role: &RoleName) -> Option<Permissions> {
        self.roles
            .iter()
            .find(|(name, _)| name == role)
            .map(|(_, permissions)| *permissions)
    }

    /// 403 unless the actor holds every permission of `role` (422 when there is no such role).
    fn may_grant(&self, role: &RoleName) -> Result<(), UserError> {
        let granted = self
            .permissions_of(role)
            .ok_or_else(|| UserError::UnknownRole(role.clone()))?;
        self.holds(granted)
    }

    fn holds(&self, permissions: Permissions) -> Result<(), UserError> {
        let missing = self.actor.missing(permissions);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(UserError::CannotGrant(missing))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("no such user")]
    NotFound,
    #[error("`{0}` is not a role of this tenant (see GET /v1/roles)")]
    UnknownRole(RoleName),
    #[error("cannot grant permissions one does not hold")]
    CannotGrant(Vec<Permission>),
    #[error("the last active admin of a tenant cannot be demoted or deactivated")]
    LastAdmin,
    #[error("use POST /v1/auth/password to change your own password (it needs the current one)")]
    OwnPasswordReset,
}

/// What happens when `command` meets `state` (`None`: the stream is empty), given `facts`.
pub fn decide(
    state: Option<&UserState>,
    command: UserCommand,
    facts: &UserFacts,
) -> Result<Vec<UserEvent>, UserError> {
    match command {
        UserCommand::Register(new) => {
            facts.may_grant(&new.role)?;
            Ok(vec![UserRegistered::from(new).into()])
        }
        UserCommand::Change(change) => {
            decide_change(state.ok_or(UserError::NotFound)?, change, facts)
        }
    }
}

fn decide_change(
    user: &UserState,
    change: UserChange,
    facts: &UserFacts,
) -> Result<Vec<UserEvent>, UserError> {
    if let UserChange::Update {
        role: Some(role), ..
    } = &change
    {
        facts.may_grant(role)?;
    }
    match change {
        UserChange::SetPassword {
            reset_by_admin: true,
        } if facts.acting_on_self => return Err(UserError::OwnPasswordReset),
        // One's own change proves the old password: no cover needed over oneself.
        UserChange::SetPassword {
            reset_by_admin: false,
        } if facts.acting_on_self => {}
        // Whom one may act on: nobody with a permission the actor lacks. A role the
        // tenant no longer has counts as holding everything.
        _ => facts.holds(
            facts
                .permissions_of(&user.role)
                .unwrap_or_else(Permissions::all),
        )?,
    }
    Ok(match change {
        UserChange::Update { display_name, role } => {
            let display_name = display_name.filter(|name| *name != user.display_name);
            let role = role.filter(|role| *role != user.role);
            if display_name.is_none() && role.is_none() {
                Vec::new()
            } else {
                if role.is_some() {
                    keeps_an_admin(user, facts)?;
                }
                let previous_role = role.as_ref().map(|_| user.role.clone());
                vec![
                    UserUpdated {
                        display_name,
                        role,
                        previous_role,
                    }
                    .into(),
                ]
            }
        }
        UserChange::Deactivate if user.active => {
            keeps_an_admin(user, facts)?;
            vec![UserDeactivated {}.into()]
        }
        UserChange::Reactivate if !user.active => vec![UserReactivated {}.into()],
        UserChange::Deactivate | UserChange::Reactivate => Vec::new(),
        UserChange::SetPassword { reset_by_admin } => {
            vec![UserPasswordChanged { reset_by_admin }.into()]
        }
    })
}

/// 409 when `user`, an admin about to stop being one, is the tenant's last active admin.
fn keeps_an_admin(user: &UserState, facts: &UserFacts) -> Result<(), UserError> {
    if user.role.as_str() == RoleName::ADMIN && facts.other_active_admins.unwrap_or(0) == 0 {
        return Err(UserError::LastAdmin);
    }
    Ok(())
}

impl Aggregate for UserState {
    type Event = UserEvent;

    fn apply(state: Option<Self>, event: &UserEvent) -> Option<Self> {
        apply(state, event)
    }
}

/// Folds one event into the state.
pub fn apply(state: Option<UserState>, event: &UserEvent) -> Option<UserState> {
    match (state, event) {
        (_, UserEvent::Registered(registered)) => Some(UserState {
            user_id: registered.user_id,
            username: registered.username.clone(),
            display_name: registered.display_name.clone(),
            role: registered.role.clone(),
            active: true,
        }),
        (Some(user), UserEvent::Updated(updated)) => Some(UserState {
            display_name: updated
                .display_name
                .clone()
                .unwrap_or(user.display_name.clone()),
            role: updated.role.clone().unwrap_or(user.role.clone()),
            ..user
        }),
        (Some(user), UserEvent::Deactivated(_)) => Some(UserState {
            active: false,
            ..user
        }),
        (Some(user), UserEvent::Reactivated(_)) => Some(UserState {
            active: true,
            ..user
        }),
        (Some(user), UserEvent::PasswordChanged(_)) => Some(user),
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> RoleName {
        RoleName::parse(name).unwrap()
    }

    fn builtin(name: &str) -> (RoleName, Permissions) {
        let role = role(name);
        let permissions = role.builtin_permissions().unwrap();
        (role, permissions)
    }

    fn admin_facts() -> UserFacts {
        UserFacts {
            actor: Permissions::all(),
            roles: vec![builtin("admin"), builtin("member"), builtin("viewer")],
            other_active_admins: Some(1),
            ..UserFacts::default()
        }
    }

    /// A user manager: `users:manage` and `customers:read`, nothing else.
    fn manager_facts() -> UserFacts {
        UserFacts {
            actor: Permissions::of([Permission::UsersManage, Permission::CustomersRead]),
            ..admin_facts()
        }
    }

    fn registered(role_name: &str) -> UserEvent {
        UserRegistered {
            user_id: Uuid::nil(),
            username: Username::parse("pat").unwrap(),
            display_name: DisplayName::parse("Pat").unwrap(),
            role: role(role_name),
        }
        .into()
    }

    fn given(events: &[UserEvent]) -> Option<UserState> {
        events.iter().fold(None, apply)
    }

    fn register(role_name: &str) -> UserCommand {
        UserCommand::Register(Registration {
            user_id: Uuid::nil(),
            username: Username::parse("pat").unwrap(),
            display_name: DisplayName::parse("Pat").unwrap(),
            role: role(role_name),
        })
    }

    fn give_role(role_name: &str) -> UserCommand {
        UserCommand::Change(UserChange::Update {
            display_name: None,
            role: Some(role(role_name)),
        })
    }

    const DEACTIVATE: UserCommand = UserCommand::Change(UserChange::Deactivate);
    const REACTIVATE: UserCommand = UserCommand::Change(UserChange::Reactivate);

    fn set_password(reset_by_admin: bool) -> UserCommand {
        UserCommand::Change(UserChange::SetPassword { reset_by_admin })
    }

    #[test]
    fn registering_a_user_records_them() {
        let events = decide(None, register("member"), &admin_facts()).unwrap();
        let after = given(&events).unwrap();
        assert_eq!((after.role.as_str(), after.active), ("member", true));
    }

    #[test]
    fn one_cannot_register_a_user_with_more_than_one_holds() {
        let manager = manager_facts();
        let admin = role("admin").builtin_permissions().unwrap();
        assert_eq!(
            decide(None, register("admin"), &manager),
            Err(UserError::CannotGrant(manager.actor.missing(admin)))
        );
        assert!(decide(None, register("viewer"), &manager_facts()).is_ok());
    }

    #[test]
    fn a_role_the_tenant_does_not_have_is_refused() {
        assert_eq!(
            decide(None, register("ghost"), &admin_facts()),
            Err(UserError::UnknownRole(role("ghost")))
        );
        let state = given(&[registered("member")]);
        assert_eq!(
            decide(state.as_ref(), give_role("ghost"), &admin_facts()),
            Err(UserError::UnknownRole(role("ghost")))
        );
    }

    #[test]
    fn a_role_is_granted_as_its_locked_row_says_not_as_it_was() {
        // The role was widened (in the transaction's read of its row) to hold more than
        // the manager does: granting it is refused.
        let mut facts = manager_facts();
        facts.roles.push((
            role("support"),
            Permissions::of([Permission::CustomersRead, Permission::CustomersErase]),
        ));
        let state = given(&[registered("viewer")]);
        assert_eq!(
            decide(state.as_ref(), give_role("support"), &facts),
            Err(UserError::CannotGrant(vec![Permission::CustomersErase]))
        );
    }

    #[test]
    fn one_cannot_act_on_a_user_one_does_not_cover() {
        let admin = given(&[registered("admin")]);
        let facts = manager_facts();
        for command in [give_role("viewer"), DEACTIVATE, set_password(true)] {
            assert!(
                matches!(
                    decide(admin.as_ref(), command.clone(), &facts),
                    Err(UserError::CannotGrant(_))
                ),
                "{command:?}"
            );
        }
    }

    #[test]
    fn a_user_of_a_role_since_removed_counts_as_holding_everything() {
        let state = given(&[registered("gone")]);
        assert!(matches!(
            decide(state.as_ref(), DEACTIVATE, &manager_facts()),
            Err(UserError::CannotGrant(_))
        ));
    }

    #[test]
    fn one_changes_ones_own_password_whatever_one_covers() {
        let state = given(&[registered("admin")]);
        let facts = UserFacts {
            actor: Permissions::NONE,
            acting_on_self: true,
            ..admin_facts()
        };
        let events = decide(state.as_ref(), set_password(false), &facts).unwrap();
        assert!(matches!(&events[..], [UserEvent::PasswordChanged(p)] if !p.reset_by_admin));
    }

    #[test]
    fn an_admin_cannot_reset_their_own_password() {
        let state = given(&[registered("admin")]);
        let facts = UserFacts {
            acting_on_self: true,
            ..admin_facts()
        };
        assert_eq!(
            decide(state.as_ref(), set_password(true), &facts),
            Err(UserError::OwnPasswordReset)
        );
        let other = UserFacts {
            acting_on_self: false,
            ..admin_facts()
        };
        assert!(decide(state.as_ref(), set_password(true), &other).is_ok());
    }

    #[test]
    fn the_last_active_admin_can_be_neither_demoted_nor_deactivated() {
        let state = given(&[registered("admin")]);
        let alone = UserFacts {
            other_active_admins: Some(0),
            ..admin_facts()
        };
        assert_eq!(
            decide(state.as_ref(), give_role("member"), &alone),
            Err(UserError::LastAdmin)
        );
        assert_eq!(
            decide(state.as_ref(), DEACTIVATE, &alone),
            Err(UserError::LastAdmin)
        );
        // Renaming them is no demotion.
        assert!(
            decide(
                state.as_ref(),
                UserCommand::Change(UserChange::Update {
                    display_name: Some(DisplayName::parse("Boss").unwrap()),
                    role: None
                }),
                &alone
            )
            .is_ok()
        );
        // With another admin, both may go.
        assert!(decide(state.as_ref(), give_role("member"), &admin_facts()).is_ok());
        assert!(decide(state.as_ref(), DEACTIVATE, &admin_facts()).is_ok());
    }

    #[test]
    fn an_update_records_only_what_changed() {
        let state = given(&[registered("member")]);
        let events = decide(
            state.as_ref(),
            UserCommand::Change(UserChange::Update {
                display_name: Some(DisplayName::parse("Pat").unwrap()),
                role: Some(role("viewer")),
            }),
            &admin_facts(),
        )
        .unwrap();
        let [UserEvent::Updated(updated)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(updated.display_name, None);
        assert_eq!(updated.role, Some(role("viewer")));
        assert_eq!(updated.previous_role, Some(role("member")));
        assert_eq!(
            decide(state.as_ref(), give_role("member"), &admin_facts()),
            Ok(vec![]),
            "the role they have already"
        );
    }

    #[test]
    fn deactivating_and_reactivating_record_only_a_change() {
        let state = given(&[registered("member")]);
        assert_eq!(
            decide(state.as_ref(), REACTIVATE, &admin_facts()),
            Ok(vec![])
        );
        let events = decide(state.as_ref(), DEACTIVATE, &admin_facts()).unwrap();
        let deactivated = events.iter().fold(state, apply);
        assert!(!deactivated.as_ref().unwrap().active);
        assert_eq!(
            decide(deactivated.as_ref(), DEACTIVATE, &admin_facts()),
            Ok(vec![])
        );
        let events = decide(deactivated.as_ref(), REACTIVATE, &admin_facts()).unwrap();
        assert!(events.iter().fold(deactivated, apply).unwrap().active);
    }

    #[test]
    fn an_unknown_user_cannot_change() {
        assert_eq!(
            decide(None, DEACTIVATE, &admin_facts()),
            Err(UserError::NotFound)
        );
    }
}
