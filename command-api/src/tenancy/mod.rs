//! Tenants: the aggregate, the registry every request consults, and the platform admin's
//! endpoints.

pub mod aggregate;
pub mod handlers;
pub mod registry;

pub use registry::{Tenant, TenantRegistry, TenantStatus};
