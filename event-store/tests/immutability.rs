//! Stored events are never rewritten: not by the app role (no privilege), not by the
//! owner (triggers refuse).

use event_store::testing::ScratchDatabase;
use event_store::testing::fixtures::{customer_stream, registered, tenant};
use event_store::{EventStore, ExpectedVersion};
use sqlx::Connection;

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

#[tokio::test]
async fn the_app_role_cannot_update_delete_or_truncate_events() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(1).await);
    let acme = tenant("acme");
    let stream = customer_stream();
    store
        .append_to_stream(
            &acme,
            &stream,
            ExpectedVersion::NoStream,
            vec![registered("Original")],
        )
        .await
        .unwrap();

    for statement in [
        "UPDATE events SET payload = '{\"name\": \"Rewritten\"}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        // Scoped to the owning tenant, so row-level security is not what stops it.
        let mut tx = store.begin(&acme).await.unwrap();
        let error = sqlx::query(statement)
            .execute(tx.connection())
            .await
            .unwrap_err();
        assert_eq!(
            sqlstate(&error).as_deref(),
            Some("42501"),
            "{statement}: {error}"
        );
        tx.rollback().await.unwrap();
    }

    let events = store.read_stream(&acme, &stream, 1, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload["name"], "Original");
}

#[tokio::test]
async fn even_the_owner_cannot_update_delete_or_truncate_events() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(1).await);
    let acme = tenant("acme");
    let stream = customer_stream();
    store
        .append_to_stream(
            &acme,
            &stream,
            ExpectedVersion::NoStream,
            vec![registered("Original")],
        )
        .await
        .unwrap();

    let mut owner = db.owner_connection().await;
    for statement in [
        "UPDATE events SET payload = '{\"name\": \"Rewritten\"}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let mut tx = owner.begin().await.unwrap();
        // The owner sees rows only as a scoped tenant too; scope it so the statement
        // reaches the row and the trigger is what refuses it.
        sqlx::query("SELECT set_config('app.tenant_id', 'acme', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let error = sqlx::query(statement).execute(&mut *tx).await.unwrap_err();
        assert_eq!(
            sqlstate(&error).as_deref(),
            Some("23001"),
            "{statement}: {error}"
        );
        assert!(
            error.to_string().contains("events are immutable"),
            "{error}"
        );
        tx.rollback().await.unwrap();
    }
    owner.close().await.unwrap();

    let events = store.read_stream(&acme, &stream, 1, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload["name"], "Original");
}
