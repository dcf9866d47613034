//! The tenant registry's events. A tenant's stream is `tenant-<tenant id>`, in its own
//! tenant's partition of the store.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::{EventType, domain_events};
use crate::values::TenantName;

domain_events! {
    /// What happens to a tenant.
    pub enum TenantEvent for "tenant" {
        Registered(TenantRegistered),
        Suspended(TenantSuspended),
        Reactivated(TenantReactivated),
    }
}

/// A tenant was registered by a platform admin and is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TenantRegistered {
    pub name: TenantName,
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
