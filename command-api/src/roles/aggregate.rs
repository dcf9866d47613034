//! The rules of a tenant's own roles, pure. Roles live on the tenant's stream (their
//! events are the tenant aggregate's), so `decide` takes the tenant's state; what it needs
//! beyond the stream (the role as its locked row says, who holds it, what the actor may
//! do now) is read in the command's transaction and handed in as [`RoleFacts`].
//!
//! The rules:
//! - built-in roles (`admin`, `member`, `viewer`) are fixed: never changed or removed;
//! - a name is defined once per tenant;
//! - one may only grant what one holds: a role defined or changed has no permission the
//!   actor lacks;
//! - only who holds everything a role holds may reshape or remove it (taking a permission
//!   away is granting less, but not one's to decide over a role above one);
//! - a role still assigned to someone cannot be removed.

use schemas::{
    Permission, Permissions, RoleChanged, RoleDefined, RoleName, RoleRemoved, TenantEvent,
};

use crate::tenancy::aggregate::TenantState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCommand {
    /// Permissions sorted, without duplicates.
    Define {
        name: RoleName,
        permissions: Vec<Permission>,
    },
    /// The whole new set, sorted, without duplicates.
    Change {
        name: RoleName,
        permissions: Vec<Permission>,
    },
    Remove {
        name: RoleName,
    },
}

/// What the rules need beyond the stream, read in the command's transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoleFacts {
    /// What the acting user's role allows now.
    pub actor: Permissions,
    /// The role's permissions as its row says, locked for the change; `None`: the tenant
    /// has no role of this name.
    pub current: Option<Permissions>,
    /// Users of the tenant with the role now.
    pub holders: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error("no such tenant")]
    TenantNotFound,
    #[error("built-in roles cannot be changed")]
    Builtin,
    #[error("the tenant has a role `{0}` already")]
    AlreadyDefined(RoleName),
    #[error("the tenant has no role `{0}`")]
    NotFound(RoleName),
    #[error("cannot grant permissions one does not hold")]
    CannotGrant(Vec<Permission>),
    #[error("{holders} user(s) have the role `{name}`: give them another first")]
    InUse { name: RoleName, holders: u64 },
}

fn holds(actor: Permissions, permissions: Permissions) -> Result<(), RoleError> {
    let missing = actor.missing(permissions);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RoleError::CannotGrant(missing))
    }
}

/// What happens when `command` meets the tenant's `state`, given `facts`.
pub fn decide(
    state: Option<&TenantState>,
    command: RoleCommand,
    facts: &RoleFacts,
) -> Result<Vec<TenantEvent>, RoleError> {
    if state.is_none() {
        return Err(RoleError::TenantNotFound);
    }
    let event: TenantEvent = match command {
        RoleCommand::Define { name, .. }
        | RoleCommand::Change { name, .. }
        | RoleCommand::Remove { name }
            if name.is_builtin() =>
        {
            return Err(RoleError::Builtin);
        }
        RoleCommand::Define { name, permissions } => {
            if facts.current.is_some() {
                return Err(RoleError::AlreadyDefined(name));
            }
            holds(facts.actor, Permissions::of(permissions.iter().copied()))?;
            RoleDefined { name, permissions }.into()
        }
        RoleCommand::Change { name, permissions } => {
            let current = facts
                .current
                .ok_or_else(|| RoleError::NotFound(name.clone()))?;
            holds(facts.actor, Permissions::of(permissions.iter().copied()))?;
            holds(facts.actor, current)?;
            RoleChanged { name, permissions }.into()
        }
        RoleCommand::Remove { name } => {
            let current = facts
                .current
                .ok_or_else(|| RoleError::NotFound(name.clone()))?;
            holds(facts.actor, current)?;
            if facts.holders > 0 {
                return Err(RoleError::InUse {
                    name,
                    holders: facts.holders,
                });
            }
            RoleRemoved { name }.into()
        }
    };
    Ok(vec![event])
}

#[cfg(test)]
mod tests {
    use schemas::{TenantName, TenantRegistered};

    use super::*;
    use crate::commands::Aggregate;

    fn tenant() -> Option<TenantState> {
        let registered: TenantEvent = TenantRegistered {
            name: TenantName::parse("ACME").unwrap(),
            pending: false,
        }
        .into();
        TenantState::apply(None, &registered)
    }

    fn name(name: &str) -> RoleName {
        RoleName::parse(name).unwrap()
    }

    fn admin(current: Option<Permissions>, holders: u64) -> RoleFacts {
        RoleFacts {
            actor: Permissions::all(),
            current,
            holders,
        }
    }

    /// A role manager who may read customers and manage roles, nothing else.
    fn manager(current: Option<Permissions>) -> RoleFacts {
        RoleFacts {
            actor: Permissions::of([Permission::RolesManage, Permission::CustomersRead]),
            current,
            holders: 0,
        }
    }

    fn define(role: &str, permissions: &[Permission]) -> RoleCommand {
        RoleCommand::Define {
            name: name(role),
            permissions: permissions.to_vec(),
        }
    }

    fn change(role: &str, permissions: &[Permission]) -> RoleCommand {
        RoleCommand::Change {
            name: name(role),
            permissions: permissions.to_vec(),
        }
    }

    fn remove(role: &str) -> RoleCommand {
        RoleCommand::Remove { name: name(role) }
    }

    const READ: Permission = Permission::CustomersRead;
    const ERASE: Permission = Permission::CustomersErase;

    #[test]
    fn defining_a_new_role_records_it() {
        let events = decide(
            tenant().as_ref(),
            define("support", &[READ]),
            &admin(None, 0),
        )
        .unwrap();
        assert!(matches!(&events[..], [TenantEvent::RoleDefined(d)] if d.name == name("support")));
    }

    #[test]
    fn a_name_is_defined_once() {
        assert_eq!(
            decide(
                tenant().as_ref(),
                define("support", &[]),
                &admin(Some(Permissions::NONE), 0)
            ),
            Err(RoleError::AlreadyDefined(name("support")))
        );
    }

    #[test]
    fn one_grants_only_what_one_holds() {
        assert_eq!(
            decide(
                tenant().as_ref(),
                define("eraser", &[READ, ERASE]),
                &manager(None)
            ),
            Err(RoleError::CannotGrant(vec![ERASE]))
        );
        assert_eq!(
            decide(
                tenant().as_ref(),
                change("support", &[READ, ERASE]),
                &manager(Some(Permissions::of([READ])))
            ),
            Err(RoleError::CannotGrant(vec![ERASE]))
        );
        assert!(decide(tenant().as_ref(), define("reader", &[READ]), &manager(None)).is_ok());
    }

    #[test]
    fn only_who_holds_a_role_whole_may_reshape_or_remove_it() {
        // The row says the role was widened meanwhile: the manager no longer covers it.
        let widened = manager(Some(Permissions::of([READ, ERASE])));
        assert_eq!(
            decide(tenant().as_ref(), change("support", &[READ]), &widened),
            Err(RoleError::CannotGrant(vec![ERASE]))
        );
        assert_eq!(
            decide(tenant().as_ref(), remove("support"), &widened),
            Err(RoleError::CannotGrant(vec![ERASE]))
        );
    }

    #[test]
    fn built_in_roles_are_fixed() {
        for command in [
            change("admin", &[]),
            remove("viewer"),
            define("member", &[]),
        ] {
            assert_eq!(
                decide(tenant().as_ref(), command, &admin(None, 0)),
                Err(RoleError::Builtin)
            );
        }
    }

    #[test]
    fn a_role_the_tenant_does_not_have_cannot_change_or_go() {
        assert_eq!(
            decide(tenant().as_ref(), change("ghost", &[]), &admin(None, 0)),
            Err(RoleError::NotFound(name("ghost")))
        );
        assert_eq!(
            decide(tenant().as_ref(), remove("ghost"), &admin(None, 0)),
            Err(RoleError::NotFound(name("ghost")))
        );
    }

    #[test]
    fn a_role_in_use_cannot_be_removed() {
        let in_use = admin(Some(Permissions::of([READ])), 2);
        assert_eq!(
            decide(tenant().as_ref(), remove("support"), &in_use),
            Err(RoleError::InUse {
                name: name("support"),
                holders: 2
            })
        );
        let unused = admin(Some(Permissions::of([READ])), 0);
        let events = decide(tenant().as_ref(), remove("support"), &unused).unwrap();
        assert!(matches!(&events[..], [TenantEvent::RoleRemoved(_)]));
    }

    #[test]
    fn changing_a_role_records_its_whole_new_set() {
        let events = decide(
            tenant().as_ref(),
            change("support", &[READ, ERASE]),
            &admin(Some(Permissions::of([READ])), 3),
        )
        .unwrap();
        let [TenantEvent::RoleChanged(changed)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(changed.permissions, vec![READ, ERASE]);
    }

    #[test]
    fn an_unknown_tenant_has_no_roles() {
        assert_eq!(
            decide(None, define("support", &[]), &admin(None, 0)),
            Err(RoleError::TenantNotFound)
        );
    }
}
