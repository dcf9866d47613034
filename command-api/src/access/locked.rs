//! What a role allows and what a user may do, read inside a command's transaction with the
//! role's row locked until commit. The in-memory registry (`super::roles`) may be a second
//! behind a change made on another instance: good enough to authorise a request, not to
//! decide what a command may grant. A role widened meanwhile is seen widened here, and a
//! change to it waits for this transaction (or this waits for it).

use event_store::TenantTransaction;
use schemas::{Permissions, RoleName};
use uuid::Uuid;

use super::roles::permissions_of;

/// How a role's row is held until commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Read to grant or compare: nobody changes or removes the role meanwhile.
    Share,
    /// Read to change or remove the role itself.
    Update,
}

/// What `role` allows in the transaction's tenant; `None` when the tenant has no such role.
pub async fn role_permissions(
    tx: &mut TenantTransaction<'_>,
    role: &RoleName,
    hold: Hold,
) -> Result<Option<Permissions>, sqlx::Error> {
    if let Some(builtin) = role.builtin_permissions() {
        return Ok(Some(builtin));
    }
    let statement = match hold {
        Hold::Share => "SELECT permissions FROM roles WHERE tenant_id = $1 AND name = $2 FOR SHARE",
        Hold::Update => {
            "SELECT permissions FROM roles WHERE tenant_id = $1 AND name = $2 FOR UPDATE"
        }
    };
    let tenant = tx.tenant().as_str().to_owned();
    let names: Option<Vec<String>> = sqlx::query_scalar(statement)
        .bind(tenant)
        .bind(role.as_str())
        .fetch_optional(tx.connection())
        .await?;
    Ok(names.as_deref().map(permissions_of))
}

/// What `user` of the transaction's tenant may do now: their role as their row says, and
/// that role's permissions from its row, shared-locked. Nothing for an unknown user.
pub async fn user_permissions(
    tx: &mut TenantTransaction<'_>,
    user: Uuid,
) -> Result<Permissions, sqlx::Error> {
    let tenant = tx.tenant().as_str().to_owned();
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM users WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant)
            .bind(user)
            .fetch_optional(tx.connection())
            .await?;
    let Some(role) = role else {
        return Ok(Permissions::NONE);
    };
    Ok(role_permissions(tx, &RoleName::from(role), Hold::Share)
        .await?
        .unwrap_or(Permissions::NONE))
}
