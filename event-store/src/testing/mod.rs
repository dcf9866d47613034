//! Test harness (feature `testing`): a scratch database per test, and [`fixtures`]:
//! realistic events to fill it with.
//!
//! Each [`ScratchDatabase`] is a fresh database in the running cluster, migrated by the
//! owner role, reached by tests through the app role exactly as the services reach
//! theirs. It is dropped when the value is. Needs `DATABASE_ADMIN_URL` and `DATABASE_URL`
//! (`./dev test` sets both).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool};

use crate::migrations::MIGRATOR;

pub mod fixtures;

/// A migrated database of its own for one test.
#[derive(Debug)]
pub struct ScratchDatabase {
    name: String,
    admin: PgConnectOptions,
    app: PgConnectOptions,
}

/// A variable `./dev test` sets; its absence means the tests were started some other way.
pub fn env_url(variable: &str) -> String {
    std::env::var(variable)
        .unwrap_or_else(|_| panic!("{variable} is not set: run the tests through `./dev test`"))
}

fn env_options(variable: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(&env_url(variable))
        .unwrap_or_else(|e| panic!("{variable} is not a valid URL: {e}"))
}

/// A free TCP port on 127.0.0.1 (bound, then released for the caller to use), for
/// processes a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl ScratchDatabase {
    /// Creates and migrates a database named `chronicle_test_<uuid>`.
    pub async fn create() -> Self {
        let admin =
            env_options("DATABASE_ADMIN_URL").log_statements(tracing::log::LevelFilter::Trace);
        let app = env_options("DATABASE_URL").log_statements(tracing::log::LevelFilter::Trace);
        let name = format!("chronicle_test_{}", uuid::Uuid::now_v7().simple());

        let mut conn = PgConnection::connect_with(&admin)
            .await
            .expect("connect as the owner role");
        // The name is ours (a UUID), never input: safe to splice.
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the scratch database (the owner role needs CREATEDB)");
        conn.close().await.ok();

        let database = Self {
            admin: admin.database(&name),
            app: app.database(&name),
            name,
        };
        let mut owner = database.owner_connection().await;
        MIGRATOR
            .run(&mut owner)
            .await
            .expect("migrate the scratch database");
        owner.close().await.ok();
        database
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The app role's URL for this database, for processes the test starts.
    pub fn app_url(&self) -> String {
        self.url_of("DATABASE_URL")
    }

    /// The relay role's URL for this database.
    pub fn relay_url(&self) -> String {
        self.url_of("CHRONICLE_RELAY_DATABASE_URL")
    }

    /// The projector role's URL for this database.
    pub fn projector_url(&self) -> String {
        self.url_of("CHRONICLE_PROJECTOR_DATABASE_URL")
    }

    /// The owner role's URL for this database (replays create tables with it).
    pub fn admin_url(&self) -> String {
        self.url_of("DATABASE_ADMIN_URL")
    }

    /// The URL in `variable` (a `./dev env` one), pointed at this database.
    fn url_of(&self, variable: &str) -> String {
        let url = env_url(variable);
        match url.rsplit_once('/') {
            Some((server, _database)) => format!("{server}/{}", self.name),
            None => panic!("{variable} has no database part: {url}"),
        }
    }

    /// A pool of `chronicle_app` connections, the role the command API uses.
    pub async fn app_pool(&self, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.app.clone())
            .await
            .expect("connect as the app role")
    }

    /// A pool of the relay's role: the reader of the global log.
    pub async fn relay_pool(&self, max_connections: u32) -> PgPool {
        self.pool_of(&self.relay_url(), max_connections).await
    }

    /// A pool of the projector's role.
    pub async fn projector_pool(&self, max_connections: u32) -> PgPool {
        self.pool_of(&self.projector_url(), max_connections).await
    }

    async fn pool_of(&self, url: &str, max_connections: u32) -> PgPool {
        let options = PgConnectOptions::from_str(url)
            .unwrap_or_else(|e| panic!("{url} is not a valid URL: {e}"))
            .log_statements(tracing::log::LevelFilter::Trace);
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("connect as {url}: {e}"))
    }

    /// A connection as `chronicle_owner`, for checking what even the owner cannot do.
    pub async fn owner_connection(&self) -> PgConnection {
        PgConnection::connect_with(&self.admin)
            .await
            .expect("connect as the owner role")
    }
}

impl Drop for ScratchDatabase {
    /// Drops the database from a thread of its own: `Drop` cannot await, and the test's
    /// runtime may be shutting down. `WITH (FORCE)` ends the test's still-open
    /// connections (the owner role is a member of `pg_signal_backend` for this).
    fn drop(&mut self) {
        let admin = self.admin.clone().database("postgres");
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect_with(&admin).await?;
                sqlx::raw_sql(AssertSqlSafe(statement))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if let Ok(Err(error)) = dropped {
            // Left for `./dev test`, which drops leftover chronicle_test_* databases.
            eprintln!("could not drop scratch database {}: {error}", self.name);
        }
    }
}
