//! The tenant aggregate: pure, folded from the stream `tenant-<id>` (in the tenant's own
//! partition of the store). The `tenants` registry row is kept beside it. `decide` holds
//! the rules of a tenant's life: set up pending, activated once, taken back if nobody
//! finished it, suspended and reactivated only once set up.

use event_store::{StreamId, TenantId};
use schemas::{
    DomainEvent, TenantActivated, TenantEvent, TenantName, TenantReactivated, TenantRegistered,
    TenantSignupAbandoned, TenantSuspended,
};

use super::registry::TenantStatus;
use crate::commands::Aggregate;

/// The tenant's stream, `tenant-<id>`: its life and its roles.
pub(crate) fn tenant_stream(id: &TenantId) -> StreamId {
    StreamId::for_aggregate(TenantEvent::AGGREGATE, id).expect("tenant ids make valid stream ids")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantState {
    pub name: TenantName,
    pub status: TenantStatus,
}

impl Aggregate for TenantState {
    type Event = TenantEvent;

    fn apply(state: Option<Self>, event: &TenantEvent) -> Option<Self> {
        match (state, event) {
            (_, TenantEvent::Registered(registered)) => Some(Self {
                name: registered.name.clone(),
                status: if registered.pending {
                    TenantStatus::Pending
                } else {
                    TenantStatus::Active
                },
            }),
            (Some(tenant), TenantEvent::Suspended(_)) => Some(Self {
                status: TenantStatus::Suspended,
                ..tenant
            }),
            (Some(tenant), TenantEvent::Reactivated(_) | TenantEvent::Activated(_)) => Some(Self {
                status: TenantStatus::Active,
                ..tenant
            }),
            // Taken back: the id may be registered again.
            (_, TenantEvent::SignupAbandoned(_)) => None,
            (
                Some(tenant),
                TenantEvent::RoleDefined(_)
                | TenantEvent::RoleChanged(_)
                | TenantEvent::RoleRemoved(_),
            ) => Some(tenant),
            (None, _) => None,
        }
    }
}

/// What may happen to a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    /// Step 1 of a set-up: registered `pending`, nobody can log in yet.
    Register {
        name: TenantName,
        /// Whether a pending set-up of this id, if there is one, was started by this very
        /// request (its fingerprint, read from the tenant's row in the command's
        /// transaction): a retry of it resumes, any other request is refused.
        started_here: bool,
    },
    /// Step 3 of a set-up: the tenant goes live.
    Activate,
    /// The compensation of a set-up nobody finished.
    Abandon {
        reason: String,
    },
    Suspend,
    Reactivate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("no such tenant")]
    NotFound,
    #[error("the tenant already exists")]
    AlreadyExists,
    #[error("the tenant is still being set up")]
    StillSettingUp,
    #[error("the set-up was abandoned; start again")]
    Abandoned,
    #[error("the tenant is being set up by another request")]
    SetUpByAnother,
}

/// What happens when `command` meets `state` (`None`: no tenant, or one taken back).
pub fn decide(
    state: Option<&TenantState>,
    command: TenantCommand,
) -> Result<Vec<TenantEvent>, TenantError> {
    let status = state.map(|tenant| tenant.status);
    Ok(match (status, command) {
        (None, TenantCommand::Register { name, .. }) => {
            vec![
                TenantRegistered {
                    name,
                    pending: true,
                }
                .into(),
            ]
        }
        // A retry of the request that started the set-up resumes it; no other may.
        (Some(TenantStatus::Pending), TenantCommand::Register { started_here, .. }) => {
            if !started_here {
                return Err(TenantError::SetUpByAnother);
            }
            Vec::new()
        }
        (Some(_), TenantCommand::Register { .. }) => return Err(TenantError::AlreadyExists),
        (Some(TenantStatus::Pending), TenantCommand::Activate) => {
            vec![TenantActivated {}.into()]
        }
        // A concurrent retry finished first.
        (Some(_), TenantCommand::Activate) => Vec::new(),
        (None, TenantCommand::Activate) => return Err(TenantError::Abandoned),
        (Some(TenantStatus::Pending), TenantCommand::Abandon { reason }) => {
            vec![TenantSignupAbandoned { reason }.into()]
        }
        // Finished after all, or gone already: nothing to take back.
        (_, TenantCommand::Abandon { .. }) => Vec::new(),
        (None, TenantCommand::Suspend | TenantCommand::Reactivate) => {
            return Err(TenantError::NotFound);
        }
        (Some(TenantStatus::Pending), TenantCommand::Suspend | TenantCommand::Reactivate) => {
            return Err(TenantError::StillSettingUp);
        }
        (Some(TenantStatus::Suspended), TenantCommand::Suspend)
        | (Some(TenantStatus::Active), TenantCommand::Reactivate) => Vec::new(),
        (Some(_), TenantCommand::Suspend) => vec![TenantSuspended { reason: None }.into()],
        (Some(_), TenantCommand::Reactivate) => vec![TenantReactivated {}.into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> TenantName {
        TenantName::parse("ACME").unwrap()
    }

    fn given(commands: &[TenantCommand]) -> Option<TenantState> {
        commands.iter().fold(None, |state, command| {
            decide(state.as_ref(), command.clone())
                .unwrap()
                .iter()
                .fold(state, TenantState::apply)
        })
    }

    fn registered() -> TenantCommand {
        TenantCommand::Register {
            name: name(),
            started_here: true,
        }
    }

    fn abandon() -> TenantCommand {
        TenantCommand::Abandon {
            reason: "set-up not finished in time".to_owned(),
        }
    }

    #[test]
    fn a_new_tenant_is_registered_pending_and_activated_once() {
        let pending = given(&[registered()]);
        assert_eq!(pending.as_ref().unwrap().status, TenantStatus::Pending);
        let active = given(&[registered(), TenantCommand::Activate]);
        assert_eq!(active.as_ref().unwrap().status, TenantStatus::Active);
        assert_eq!(decide(active.as_ref(), TenantCommand::Activate), Ok(vec![]));
    }

    #[test]
    fn registering_a_pending_tenant_again_resumes_and_an_active_one_is_refused() {
        assert_eq!(
            decide(given(&[registered()]).as_ref(), registered()),
            Ok(vec![])
        );
        assert_eq!(
            decide(
                given(&[registered(), TenantCommand::Activate]).as_ref(),
                registered()
            ),
            Err(TenantError::AlreadyExists)
        );
    }

    #[test]
    fn only_the_request_that_started_a_set_up_may_resume_it() {
        let pending = given(&[registered()]);
        let another = TenantCommand::Register {
            name: name(),
            started_here: false,
        };
        assert_eq!(
            decide(pending.as_ref(), another.clone()),
            Err(TenantError::SetUpByAnother)
        );
        assert_eq!(decide(pending.as_ref(), registered()), Ok(vec![]));
        // With nothing pending, who asks does not matter.
        assert!(matches!(
            &decide(None, another).unwrap()[..],
            [TenantEvent::Registered(_)]
        ));
    }

    #[test]
    fn an_unfinished_set_up_is_taken_back_and_its_id_is_free_again() {
        let taken_back = given(&[registered(), abandon()]);
        assert_eq!(taken_back, None);
        assert_eq!(
            decide(taken_back.as_ref(), TenantCommand::Activate),
            Err(TenantError::Abandoned)
        );
        assert!(matches!(
            &decide(taken_back.as_ref(), registered()).unwrap()[..],
            [TenantEvent::Registered(_)]
        ));
        // A finished one is not taken back.
        let active = given(&[registered(), TenantCommand::Activate]);
        assert_eq!(decide(active.as_ref(), abandon()), Ok(vec![]));
    }

    #[test]
    fn suspending_and_reactivating_record_only_a_change() {
        let active = given(&[registered(), TenantCommand::Activate]);
        assert_eq!(
            decide(active.as_ref(), TenantCommand::Reactivate),
            Ok(vec![])
        );
        let suspended = given(&[
            registered(),
            TenantCommand::Activate,
            TenantCommand::Suspend,
        ]);
        assert_eq!(suspended.as_ref().unwrap().status, TenantStatus::Suspended);
        assert_eq!(
            decide(suspended.as_ref(), TenantCommand::Suspend),
            Ok(vec![])
        );
        assert!(matches!(
            &decide(suspended.as_ref(), TenantCommand::Reactivate).unwrap()[..],
            [TenantEvent::Reactivated(_)]
        ));
    }

    #[test]
    fn a_tenant_being_set_up_or_unknown_cannot_be_suspended() {
        assert_eq!(
            decide(given(&[registered()]).as_ref(), TenantCommand::Suspend),
            Err(TenantError::StillSettingUp)
        );
        assert_eq!(
            decide(None, TenantCommand::Suspend),
            Err(TenantError::NotFound)
        );
    }
}
