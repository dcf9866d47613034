//! The tenant aggregate: pure, folded from the stream `tenant-<id>` (in the tenant's own
//! partition of the store). The `tenants` registry row is kept beside it.

use schemas::{TenantEvent, TenantName};

use super::registry::TenantStatus;
use crate::commands::Aggregate;

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
