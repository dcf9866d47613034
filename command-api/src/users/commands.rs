//! The user commands of the one pipeline: registering a user and changing one. Each reads
//! the facts its rules need inside its transaction (see [`super::aggregate`] for the
//! rules), lets the aggregate decide, and keeps the `users` row beside the events.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use event_store::{StreamId, TenantTransaction};
use schemas::{DomainEvent, RoleName, UserEvent, UserRegistered};
use uuid::Uuid;

use super::aggregate::{
    Registration, UserChange, UserCommand, UserError, UserFacts, UserState, decide,
};
use super::input::NewUser;
use super::reads::{User, read_user_row};
use crate::access::locked::{self, Hold};
use crate::auth::Caller;
use crate::auth::sessions::{EndReason, Sessions};
use crate::commands::{Command, Landed, Precondition};
use crate::idempotency::StoredResponse;
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::NotFound => ApiError::NotFound,
            UserError::UnknownRole(_) => {
                ApiError::Validation(vec![FieldError::new("role", error.to_string())])
            }
            UserError::CannotGrant(missing) => ApiError::CannotGrant(missing),
            UserError::LastAdmin => ApiError::Conflict(error.to_string()),
            UserError::OwnPasswordReset => ApiError::Forbidden(
                "use POST /v1/auth/password to change your own password (it needs the current one)",
            ),
        }
    }
}

pub fn user_stream(user_id: Uuid) -> StreamId {
    StreamId::for_aggregate(UserEvent::AGGREGATE, user_id).expect("a uuid makes a valid stream id")
}

/// The permissions of each role in `roles` the tenant has, read from their rows and
/// shared-locked: nobody changes or removes them before this transaction commits.
async fn locked_roles(
    tx: &mut TenantTransaction<'_>,
    roles: Vec<RoleName>,
) -> Result<Vec<(RoleName, schemas::Permissions)>, ApiError> {
    let mut found = Vec::new();
    for role in roles {
        if let Some(permissions) = locked::role_permissions(tx, &role, Hold::Share).await? {
            found.push((role, permissions));
        }
    }
    Ok(found)
}

/// Registers a user: `UserRegistered` on a new stream, the `users` row beside it.
#[derive(Debug)]
pub struct RegisterUser {
    user_id: Uuid,
    user: NewUser,
    password_hash: String,
    facts: UserFacts,
    created_at: Option<DateTime<Utc>>,
}

impl RegisterUser {
    pub fn new(user: NewUser, password_hash: String) -> Self {
        Self {
            user_id: Uuid::now_v7(),
            user,
            password_hash,
            facts: UserFacts::default(),
            created_at: None,
        }
    }

    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    pub fn display_name(&self) -> &str {
        self.user.display_name.as_str()
    }

    fn registration(&self) -> Registration {
        Registration {
            user_id: self.user_id,
            username: self.user.username.clone(),
            display_name: self.user.display_name.clone(),
            role: self.user.role.clone(),
        }
    }

    /// The `users` row, unique per tenant by username: 409 when it is taken.
    pub async fn insert_row(&mut self, tx: &mut TenantTransaction<'_>) -> Result<(), ApiError> {
        let tenant = tx.tenant().as_str().to_owned();
        let inserted = sqlx::query_scalar!(
            r#"INSERT INTO users (tenant_id, user_id, username, display_name, role, password_hash)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (tenant_id, username) DO NOTHING
               RETURNING created_at"#,
            tenant,
            self.user_id,
            self.user.username.as_str(),
            self.user.display_name.as_str(),
            self.user.role.as_str(),
            self.password_hash,
        )
        .fetch_optional(tx.connection())
        .await?;
        let Some(created_at) = inserted else {
            return Err(ApiError::Conflict(format!(
                "the username `{}` is taken in this tenant",
                self.user.username
            )));
        };
        self.created_at = Some(created_at);
        Ok(())
    }

    /// The user as the API shows it.
    pub fn created(&self) -> User {
        let at = self.created_at.unwrap_or_else(Utc::now);
        User {
            id: self.user_id,
            username: self.user.username.to_string(),
            display_name: self.user.display_name.to_string(),
            role: self.user.role.to_string(),
            active: true,
            created_at: at,
            updated_at: at,
        }
    }

    /// The event, for a command that registers a user beside its own stream (a tenant's
    /// first admin, made by whoever sets the tenant up: no grant to check).
    pub fn new_event(&self) -> (StreamId, UserEvent) {
        let event = UserRegistered::from(self.registration());
        (user_stream(self.user_id), event.into())
    }
}

impl Command for RegisterUser {
    type Aggregate = UserState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        user_stream(self.user_id)
    }

    fn precondition(&self) -> Precondition {
        Precondition::NewStream
    }

    async fn read_facts(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        _state: Option<&UserState>,
        caller: &Caller,
    ) -> Result<(), ApiError> {
        self.facts.actor = locked::user_permissions(tx, caller.user_id).await?;
        self.facts.roles = locked_roles(tx, vec![self.user.role.clone()]).await?;
        Ok(())
    }

    fn decide(&mut self, state: Option<&UserState>) -> Result<Vec<UserEvent>, ApiError> {
        let command = UserCommand::Register(self.registration());
        Ok(decide(state, command, &self.facts)?)
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        _landed: &Landed<'_, UserState>,
    ) -> Result<(), ApiError> {
        self.insert_row(tx).await
    }

    fn respond(&self, _landed: &Landed<'_, UserState>) -> Result<StoredResponse, ApiError> {
        Ok(StoredResponse::json(
            StatusCode::CREATED,
            vec![("location".to_owned(), format!("/v1/users/{}", self.user_id))],
            &self.created(),
        ))
    }
}

/// A change to an existing user: its event and the row beside it.
#[derive(Debug)]
pub struct ChangeUser {
    user: Uuid,
    change: UserChange,
    /// The new password's hash, for [`UserChange::SetPassword`].
    password_hash: Option<String>,
    facts: UserFacts,
    /// To end the user's sessions.
    sessions: Sessions,
    row: Option<User>,
}

impl ChangeUser {
    pub fn new(app: &AppState, user: Uuid, change: UserChange) -> Self {
        Self {
            user,
            change,
            password_hash: None,
            facts: UserFacts::default(),
            sessions: app.sessions,
            row: None,
        }
    }

    /// The user changed.
    pub fn user(&self) -> Uuid {
        self.user
    }

    pub fn set_password(app: &AppState, user: Uuid, hash: String, reset_by_admin: bool) -> Self {
        Self {
            password_hash: Some(hash),
            ..Self::new(app, user, UserChange::SetPassword { reset_by_admin })
        }
    }
}

impl Command for ChangeUser {
    type Aggregate = UserState;
    const KEEPS_ROWS: bool = true;

    fn stream(&self) -> StreamId {
        user_stream(self.user)
    }

    async fn read_facts(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        state: Option<&UserState>,
        caller: &Caller,
    ) -> Result<(), ApiError> {
        // Nobody there: the decision is a 404, nothing to read.
        let Some(user) = state else {
            return Ok(());
        };
        self.facts.acting_on_self = caller.user_id == self.user;
        if self.facts.acting_on_self
            && self.change
                == (UserChange::SetPassword {
                    reset_by_admin: false,
                })
        {
            // One's own change proves the old password: no permission or role decides it.
            return Ok(());
        }
        let stops_being_admin = matches!(
            self.change,
            UserChange::Update { role: Some(_), .. } | UserChange::Deactivate
        );
        if stops_being_admin && user.role.as_str() == RoleName::ADMIN {
            // First, before any row lock: two admins demoting each other queue here.
            self.facts.other_active_admins = Some(other_active_admins(tx, self.user).await?);
        }
        self.facts.actor = locked::user_permissions(tx, caller.user_id).await?;
        let mut involved = vec![user.role.clone()];
        if let UserChange::Update {
            role: Some(given), ..
        } = &self.change
        {
            involved.push(given.clone());
        }
        self.facts.roles = locked_roles(tx, involved).await?;
        Ok(())
    }

    fn decide(&mut self, state: Option<&UserState>) -> Result<Vec<UserEvent>, ApiError> {
        let command = UserCommand::Change(self.change.clone());
        Ok(decide(state, command, &self.facts)?)
    }

    async fn record(
        &mut self,
        tx: &mut TenantTransaction<'_>,
        landed: &Landed<'_, UserState>,
    ) -> Result<(), ApiError> {
        let tenant = tx.tenant().as_str().to_owned();
        let Some(after) = landed.state else {
            return Err(ApiError::NotFound);
        };
        if !landed.events.is_empty() {
            let valid_after = matches!(
                self.change,
                UserChange::SetPassword { .. } | UserChange::Deactivate
            );
            sqlx::query!(
                "UPDATE users SET display_name = $3, role = $4, active = $5,
                     password_hash = COALESCE($6, password_hash),
                     sessions_valid_after = CASE WHEN $7 THEN date_trunc('second', now()) ELSE sessions_valid_after END,
                     updated_at = now()
                 WHERE tenant_id = $1 AND user_id = $2",
                tenant,
                self.user,
                after.display_name.as_str(),
                after.role.as_str(),
                after.active,
                self.password_hash.as_deref(),
                valid_after
            )
            .execute(tx.connection())
            .await?;
            let reason = match self.change {
                UserChange::Deactivate => Some(EndReason::Deactivated),
                UserChange::SetPassword { .. } => Some(EndReason::PasswordChanged),
                _ => None,
            };
            if let Some(reason) = reason {
                self.sessions
                    .end_all_of_users(tx.connection(), &[self.user], reason)
                    .await?;
            }
        }
        let row = read_user_row(tx, self.user)
            .await?
            .ok_or(ApiError::NotFound)?;
        self.row = Some(row);
        Ok(())
    }

    fn respond(&self, _landed: &Landed<'_, UserState>) -> Result<StoredResponse, ApiError> {
        let user = self.row.as_ref().ok_or(ApiError::NotFound)?;
        Ok(StoredResponse::json(StatusCode::OK, Vec::new(), user))
    }
}

/// Active admins of the tenant besides `user`. Changes to admins serialize on a per-tenant
/// lock, held until commit, so that two concurrent demotions cannot each count the other.
async fn other_active_admins(tx: &mut TenantTransaction<'_>, user: Uuid) -> Result<u64, ApiError> {
    let tenant = tx.tenant().as_str().to_owned();
    let lock = format!("chronicle:admins:{tenant}");
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        lock
    )
    .execute(tx.connection())
    .await?;
    let others = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM users
           WHERE tenant_id = $1 AND role = 'admin' AND active AND user_id <> $2"#,
        tenant,
        user
    )
    .fetch_one(tx.connection())
    .await?;
    Ok(u64::try_from(others).unwrap_or(0))
}
