//! Optimistic concurrency on one stream under contention, against real PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;

use event_store::testing::ScratchDatabase;
use event_store::testing::fixtures::{customer_stream, registered, renamed, tenant};
use event_store::{EventStore, EventStoreError, ExpectedVersion};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_writers_at_one_version_have_exactly_one_winner() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(16).await);
    let acme = tenant("acme");
    let stream = customer_stream();

    let attempts: Vec<_> = (0..16)
        .map(|i| {
            let (store, acme, stream) = (store.clone(), acme.clone(), stream.clone());
            tokio::spawn(async move {
                store
                    .append_to_stream(
                        &acme,
                        &stream,
                        ExpectedVersion::NoStream,
                        vec![registered(&format!("Writer {i}"))],
                    )
                    .await
            })
        })
        .collect();

    let mut winners = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(result) => {
                winners += 1;
                assert_eq!(result.next_expected_version, 1);
            }
            Err(EventStoreError::Concurrency {
                expected, actual, ..
            }) => {
                assert_eq!(expected, ExpectedVersion::NoStream);
                assert_eq!(actual, 1, "the loser learns the winner's version");
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(
        store
            .read_stream(&acme, &stream, 1, 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Every task keeps reading the version and appending at it; each version is won by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_stream_has_one_winner_per_version_and_no_gaps() {
    const TASKS: usize = 12;
    const ATTEMPTS_PER_TASK: usize = 15;

    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(TASKS as u32).await);
    let acme = tenant("acme");
    let stream = customer_stream();
    store
        .append_to_stream(
            &acme,
            &stream,
            ExpectedVersion::NoStream,
            vec![registered("Contended")],
        )
        .await
        .unwrap();
    let store = Arc::new(store);

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, acme, stream) = (store.clone(), acme.clone(), stream.clone());
            tokio::spawn(async move {
                let mut won_versions = Vec::new();
                let mut conflicts = 0;
                for attempt in 0..ATTEMPTS_PER_TASK {
                    let mut tx = store.begin(&acme).await.unwrap();
                    let current = tx.stream_version(&stream).await.unwrap();
                    tx.commit().await.unwrap();
                    let event = renamed(&format!("Task {task} attempt {attempt}"));
                    match store
                        .append_to_stream(
                            &acme,
                            &stream,
                            ExpectedVersion::Exact(current),
                            vec![event],
                        )
                        .await
                    {
                        Ok(result) => won_versions.push(result.next_expected_version),
                        Err(EventStoreError::Concurrency { .. }) => conflicts += 1,
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
                (won_versions, conflicts)
            })
        })
        .collect();

    let mut all_won = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (won, lost) = task.await.unwrap();
        all_won.extend(won);
        conflicts += lost;
    }

    let unique: BTreeSet<u64> = all_won.iter().copied().collect();
    assert_eq!(
        unique.len(),
        all_won.len(),
        "a version was won twice: {all_won:?}"
    );
    let successful = all_won.len() as u64;
    assert_eq!(
        unique,
        (2..=successful + 1).collect(),
        "versions won are contiguous after the first"
    );
    assert_eq!(all_won.len() + conflicts, TASKS * ATTEMPTS_PER_TASK);
    assert!(
        conflicts > 0,
        "the test produced no contention; it proves nothing"
    );

    let mut tx = store.begin(&acme).await.unwrap();
    let final_version = tx.stream_version(&stream).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        final_version,
        successful + 1,
        "final version = initial event + successful appends"
    );

    let events = store.read_stream(&acme, &stream, 1, 10_000).await.unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=final_version).collect::<Vec<_>>());
}

#[tokio::test]
async fn expected_versions_are_checked_and_batches_land_together() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(2).await);
    let acme = tenant("acme");
    let stream = customer_stream();

    let missing = store
        .append_to_stream(
            &acme,
            &stream,
            ExpectedVersion::Exact(3),
            vec![registered("A")],
        )
        .await;
    assert!(matches!(
        missing,
        Err(EventStoreError::Concurrency { actual: 0, .. })
    ));

    let batch = vec![registered("A"), renamed("B"), renamed("C")];
    let appended = store
        .append_to_stream(&acme, &stream, ExpectedVersion::NoStream, batch)
        .await
        .unwrap();
    assert_eq!(appended.next_expected_version, 3);
    assert_eq!(appended.global_positions.len(), 3);
    assert!(appended.global_positions.windows(2).all(|w| w[0] < w[1]));

    let again = store
        .append_to_stream(
            &acme,
            &stream,
            ExpectedVersion::NoStream,
            vec![renamed("D")],
        )
        .await;
    assert!(matches!(
        again,
        Err(EventStoreError::Concurrency { actual: 3, .. })
    ));
    let stale = store
        .append_to_stream(
            &acme,
            &stream,
            ExpectedVersion::Exact(2),
            vec![renamed("D")],
        )
        .await;
    assert!(matches!(
        stale,
        Err(EventStoreError::Concurrency { actual: 3, .. })
    ));

    let any = store
        .append_to_stream(&acme, &stream, ExpectedVersion::Any, vec![renamed("E")])
        .await
        .unwrap();
    assert_eq!(any.next_expected_version, 4);
    let fresh = customer_stream();
    let any_new = store
        .append_to_stream(&acme, &fresh, ExpectedVersion::Any, vec![registered("F")])
        .await
        .unwrap();
    assert_eq!(any_new.next_expected_version, 1);

    let from_three = store.read_stream(&acme, &stream, 3, 100).await.unwrap();
    assert_eq!(
        from_three
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(from_three[0].event_type, "CustomerUpdated");
    assert_eq!(from_three[0].tenant_id, acme);
}

#[tokio::test]
async fn invalid_appends_are_refused_and_store_nothing() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(2).await);
    let acme = tenant("acme");
    let stream = customer_stream();

    let empty = store
        .append_to_stream(&acme, &stream, ExpectedVersion::Any, vec![])
        .await;
    assert!(matches!(empty, Err(EventStoreError::NothingToAppend)));

    let tenant_stream = event_store::StreamId::for_aggregate("tenant", "acme").unwrap();
    let wrong = store
        .append_to_stream(
            &acme,
            &tenant_stream,
            ExpectedVersion::Any,
            vec![registered("A")],
        )
        .await;
    assert!(matches!(
        wrong,
        Err(EventStoreError::WrongStream {
            aggregate: "customer",
            ..
        })
    ));

    let first = registered("A");
    let reused_id = first.clone();
    store
        .append_to_stream(&acme, &stream, ExpectedVersion::NoStream, vec![first])
        .await
        .unwrap();
    let other = customer_stream();
    let duplicate = store
        .append_to_stream(&acme, &other, ExpectedVersion::NoStream, vec![reused_id])
        .await;
    assert!(matches!(
        duplicate,
        Err(EventStoreError::DuplicateEventId { .. })
    ));

    assert!(
        store
            .read_stream(&acme, &other, 1, 10)
            .await
            .unwrap()
            .is_empty(),
        "the failed append left nothing"
    );
    assert_eq!(
        store
            .read_stream(&acme, &stream, 1, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
