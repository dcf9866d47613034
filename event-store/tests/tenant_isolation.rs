//! Row-level security: through the app role, a tenant sees and writes only its own rows,
//! an unscoped connection sees nothing, and a pooled connection never carries one
//! request's tenant into the next.

use event_store::testing::ScratchDatabase;
use event_store::testing::fixtures::{
    customer_stream, metadata, read_global_log_until, registered, tenant,
};
use event_store::{EventStore, ExpectedVersion};
use sqlx::{Connection, Row};

async fn backend_pid(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
        .get::<i32, _>(0)
}

async fn count_events(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_tenant_cannot_read_or_write_another_tenants_rows() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(2).await);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let acme_stream = customer_stream();
    store
        .append_to_stream(
            &acme,
            &acme_stream,
            ExpectedVersion::NoStream,
            vec![registered("Acme One")],
        )
        .await
        .unwrap();
    store
        .append_to_stream(
            &globex,
            &customer_stream(),
            ExpectedVersion::NoStream,
            vec![registered("Globex One")],
        )
        .await
        .unwrap();

    // Reading: even naming the other tenant explicitly finds nothing.
    let mut tx = store.begin(&globex).await.unwrap();
    let tenants: Vec<String> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM events")
        .fetch_all(tx.connection())
        .await
        .unwrap();
    assert_eq!(tenants, vec!["globex".to_owned()]);
    let acme_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = 'acme'")
        .fetch_one(tx.connection())
        .await
        .unwrap();
    assert_eq!(acme_rows, 0);
    let stolen = tx.read_stream(&acme_stream, 1, 10).await.unwrap();
    assert!(stolen.is_empty(), "globex read acme's stream");
    tx.commit().await.unwrap();

    // Writing: a row for acme inserted under globex's scope is refused by WITH CHECK.
    let mut tx = store.begin(&globex).await.unwrap();
    let forged = sqlx::query(
        "INSERT INTO events (tenant_id, stream_id, stream_version, event_id, event_type, schema_version, payload, metadata)
         VALUES ('acme', $1, 2, gen_random_uuid(), 'CustomerArchived', 1, '{}', $2)",
    )
    .bind(acme_stream.as_str())
    .bind(serde_json::to_value(metadata()).unwrap())
    .execute(tx.connection())
    .await
    .unwrap_err();
    assert_eq!(
        forged.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{forged}"
    );
    tx.rollback().await.unwrap();

    // Nor can globex move acme's stream version.
    let mut tx = store.begin(&globex).await.unwrap();
    let moved = sqlx::query("UPDATE streams SET version = 99 WHERE tenant_id = 'acme'")
        .execute(tx.connection())
        .await
        .unwrap();
    assert_eq!(moved.rows_affected(), 0);
    tx.commit().await.unwrap();
    assert_eq!(
        store
            .read_stream(&acme, &acme_stream, 1, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn without_a_tenant_nothing_is_visible_or_writable() {
    let db = ScratchDatabase::create().await;
    let pool = db.app_pool(1).await;
    let store = EventStore::new(pool.clone());
    store
        .append_to_stream(
            &tenant("acme"),
            &customer_stream(),
            ExpectedVersion::NoStream,
            vec![registered("Acme")],
        )
        .await
        .unwrap();

    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(count_events(&mut conn).await, 0, "no tenant set, no rows");
    let streams: i64 = sqlx::query_scalar("SELECT count(*) FROM streams")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(streams, 0);

    // A session-level (not transaction-local) empty setting is no wildcard either.
    sqlx::query("SELECT set_config('app.tenant_id', '', false)")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(count_events(&mut conn).await, 0);

    let insert = sqlx::query(
        "INSERT INTO streams (tenant_id, stream_id, version) VALUES ('acme', 'customer-x', 1)",
    )
    .execute(&mut *conn)
    .await
    .unwrap_err();
    assert_eq!(
        insert.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501")
    );
}

#[tokio::test]
async fn a_single_pooled_connection_never_carries_a_tenant_into_the_next_request() {
    let db = ScratchDatabase::create().await;
    let pool = db.app_pool(1).await; // ONE connection: every request reuses it.
    let store = EventStore::new(pool.clone());
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let acme_stream = customer_stream();
    store
        .append_to_stream(
            &acme,
            &acme_stream,
            ExpectedVersion::NoStream,
            vec![registered("Acme")],
        )
        .await
        .unwrap();
    store
        .append_to_stream(
            &globex,
            &customer_stream(),
            ExpectedVersion::NoStream,
            vec![registered("Globex")],
        )
        .await
        .unwrap();

    // Request 1, for acme.
    let mut tx = store.begin(&acme).await.unwrap();
    let first_pid = backend_pid(tx.connection()).await;
    let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM events")
        .fetch_all(tx.connection())
        .await
        .unwrap();
    assert_eq!(seen, vec!["acme".to_owned()]);
    tx.commit().await.unwrap();

    // Request 2, for globex, on the very same connection.
    let mut tx = store.begin(&globex).await.unwrap();
    assert_eq!(
        backend_pid(tx.connection()).await,
        first_pid,
        "the pool has one connection"
    );
    let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM events")
        .fetch_all(tx.connection())
        .await
        .unwrap();
    assert_eq!(
        seen,
        vec!["globex".to_owned()],
        "acme's context leaked into globex's request"
    );
    assert!(
        tx.read_stream(&acme_stream, 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();

    // A request that forgets to scope itself, after both: sees nothing at all.
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(backend_pid(&mut conn).await, first_pid);
    let setting: Option<String> =
        sqlx::query_scalar("SELECT current_setting('app.tenant_id', true)")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert!(
        setting.unwrap_or_default().is_empty(),
        "the tenant setting outlived its transaction"
    );
    assert_eq!(count_events(&mut conn).await, 0);

    // An aborted request does not leave its tenant behind either.
    drop(conn);
    let tx = store.begin(&acme).await.unwrap();
    tx.rollback().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(count_events(&mut conn).await, 0);
}

#[tokio::test]
async fn the_global_log_is_the_only_cross_tenant_read_and_the_api_role_cannot_make_it() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(2).await);
    for name in ["acme", "globex"] {
        store
            .append_to_stream(
                &tenant(name),
                &customer_stream(),
                ExpectedVersion::NoStream,
                vec![registered(name)],
            )
            .await
            .unwrap();
    }
    // The projector's role reads it through the function, the relay's through the view.
    let projector = EventStore::new(db.projector_pool(1).await);
    let log = read_global_log_until(&projector, 2).await;
    let mut tenants: Vec<String> = log.iter().map(|e| e.event.tenant_id.to_string()).collect();
    tenants.sort();
    assert_eq!(tenants, vec!["acme", "globex"]);
    let relay = EventStore::new(db.relay_pool(1).await);
    let raw = relay
        .read_global_log_raw(event_store::LogPosition::START, 10)
        .await
        .unwrap();
    assert_eq!(raw.len(), 2);

    // The API's role can neither: not the function, not the view, not the checkpoint.
    let mut app = store.pool().acquire().await.unwrap();
    for statement in [
        "SELECT * FROM read_global_log('0'::xid8, 0, 10)",
        "SELECT * FROM global_log",
        "SELECT * FROM event_tenants()",
        "SELECT * FROM relay_checkpoints",
        "UPDATE relay_wakeup SET listening = true",
    ] {
        let refused = sqlx::query(statement).execute(&mut *app).await.unwrap_err();
        assert_eq!(
            refused
                .as_database_error()
                .and_then(|e| e.code())
                .as_deref(),
            Some("42501"),
            "the app role may not: {statement}"
        );
    }
    // Nor does the switch the function flips help it (it is honoured for the owner only),
    // and the projector's role outside the function sees one tenant at a time like any.
    sqlx::query("SELECT set_config('chronicle.global_log_reader', 'on', false)")
        .execute(&mut *app)
        .await
        .unwrap();
    assert_eq!(count_events(&mut app).await, 0);
    let mut projector_conn = projector.pool().acquire().await.unwrap();
    assert_eq!(count_events(&mut projector_conn).await, 0);

    // And a plain owner session without it sees nothing either.
    let mut owner = db.owner_connection().await;
    assert_eq!(count_events(&mut owner).await, 0);
    owner.close().await.unwrap();
}

#[tokio::test]
async fn the_app_role_is_neither_owner_superuser_nor_exempt_from_row_security() {
    let db = ScratchDatabase::create().await;
    let pool = db.app_pool(1).await;
    let row = sqlx::query(
        "SELECT r.rolsuper, r.rolbypassrls, c.relowner = r.oid AS owns_events,
                c.relrowsecurity, c.relforcerowsecurity
         FROM pg_roles r, pg_class c WHERE r.rolname = current_user AND c.relname = 'events'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!row.get::<bool, _>("rolsuper"));
    assert!(!row.get::<bool, _>("rolbypassrls"));
    assert!(!row.get::<bool, _>("owns_events"));
    assert!(row.get::<bool, _>("relrowsecurity"));
    assert!(row.get::<bool, _>("relforcerowsecurity"));

    // Every table with a tenant_id column has forced row-level security: a new
    // tenant table that forgets it fails here.
    let unprotected: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
         WHERE c.relkind = 'r' AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        unprotected.is_empty(),
        "tenant tables without forced RLS: {unprotected:?}"
    );
}
