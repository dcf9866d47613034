//! The tenant registry's events. A tenant's stream is `tenant-<tenant id>`, in its own
//! tenant's partition of the store.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::access::{Permission, RoleName};
use crate::event::{EventType, domain_events};
use crate::values::TenantName;

domain_events! {
    /// What happens to a tenant.
    pub enum TenantEvent for "tenant" {
        Registered(TenantRegistered),
        Activated(TenantActivated),
        SignupAbandoned(TenantSignupAbandoned),
        Suspended(TenantSuspended),
        Reactivated(TenantReactivated),
        RoleDefined(RoleDefined),
        RoleChanged(RoleChanged),
        RoleRemoved(RoleRemoved),
    }
}

/// A tenant was registered, by a platform admin or by sign-up. Registered `pending`, it is
/// being set up (its aliases, say) and nobody can use it until [`TenantActivated`]; recorded
/// before `pending` existed, it is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TenantRegistered {
    pub name: TenantName,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// A pending tenant's set-up finished: it is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TenantActivated {}

impl EventType for TenantActivated {
    const NAME: &'static str = "TenantActivated";
    const VERSION: u32 = 1;
}

/// A pending tenant whose set-up never finished was taken back: its registry entry and
/// users are gone, and its id may be registered again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TenantSignupAbandoned {
    pub reason: String,
}

impl EventType for TenantSignupAbandoned {
    const NAME: &'static str = "TenantSignupAbandoned";
    const VERSION: u32 = 1;
}

/// A tenant admin defined a role of the tenant's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleDefined {
    pub name: RoleName,
    pub permissions: Vec<Permission>,
}

impl EventType for RoleDefined {
    const NAME: &'static str = "RoleDefined";
    const VERSION: u32 = 1;
}

/// A tenant's role was given another set of permissions (the whole new set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleChanged {
    pub name: RoleName,
    pub permissions: Vec<Permission>,
}

impl EventType for RoleChanged {
    const NAME: &'static str = "RoleChanged";
    const VERSION: u32 = 1;
}

/// A tenant's role was removed (no user had it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleRemoved {
    pub name: RoleName,
}

impl EventType for RoleRemoved {
    const NAME: &'static str = "RoleRemoved";
    const VERSION: u32 = 1;
}

impl EventType for TenantRegistered {
    const NAME: &'static str = "TenantRegistered";
    const VERSION: u32 = 1;
}

/// A tenant was suspended: none of its users can do anything until it is reactivated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TenantSuspended {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl EventType for TenantSuspended {
    const NAME: &'static str = "TenantSuspended";
    const VERSION: u32 = 1;
}

/// A suspended tenant was reactivated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TenantReactivated {}

impl EventType for TenantReactivated {
    const NAME: &'static str = "TenantReactivated";
    const VERSION: u32 = 1;
}
