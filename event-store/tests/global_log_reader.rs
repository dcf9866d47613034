//! The global log reader never skips an event whose transaction commits late.
//!
//! 32 writers append in transactions that sleep a random time before committing (some
//! roll back), so transactions commit in a different order than they took positions. A
//! reader polls the global log all the while. Every committed event must be read exactly
//! once, nothing rolled back may appear, and the reader's order must be one consistent
//! order: checkpoints strictly increasing, each stream's versions ascending.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_store::testing::ScratchDatabase;
use event_store::testing::fixtures::{
    customer_stream, read_global_log_until, registered, renamed, tenant,
};
use event_store::{EventStore, ExpectedVersion, GlobalLogEvent, LogPosition};
use tokio::sync::watch;
use uuid::Uuid;

const WRITERS: usize = 32;
const TRANSACTIONS_PER_WRITER: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_with_late_commits_are_read_exactly_once_in_order() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(WRITERS as u32 + 2).await);
    // The log is read as the projector reads it (the function) and as the relay does (the
    // view); the API's role cannot read it at all.
    let log = EventStore::new(db.projector_pool(2).await);
    let relay = EventStore::new(db.relay_pool(2).await);
    let tenants = [tenant("acme"), tenant("globex")];

    // Positions of committed transactions in the order their commits returned.
    let commit_order: Arc<Mutex<Vec<u64>>> = Arc::default();
    // Set to the number of committed events once every writer has finished.
    let (writers_done, mut done) = watch::channel(None::<usize>);

    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            let reader = Mutex::new(Reader::default());
            // Reading all the while the writers write (the pause is the reader's polling
            // interval, as the relay's)...
            let committed = loop {
                if let Some(committed) = *done.borrow_and_update() {
                    break committed;
                }
                read_to_the_horizon(&log, &reader).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            // ...and then until everything committed has been read. The horizon is
            // cluster-wide: transactions of tests running beside this one can hold it back
            // for a moment, so the reader stops on the count of committed events, not on
            // the first empty page, and the empty page that ends each read would show any
            // duplicate.
            service::eventually(Duration::from_secs(60), || async {
                match read_to_the_horizon(&log, &reader).await {
                    read if read >= committed => Ok(()),
                    read => Err(read),
                }
            })
            .await
            .unwrap_or_else(|read| {
                panic!("the reader read {read} of {committed} committed events in 60 s")
            });
            reader.into_inner().unwrap().read
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            let tenant = tenants[writer % tenants.len()].clone();
            let commit_order = commit_order.clone();
            tokio::spawn(async move {
                let stream = customer_stream();
                let mut committed: Vec<Uuid> = Vec::new();
                for round in 0..TRANSACTIONS_PER_WRITER {
                    let events = if round == 0 {
                        vec![registered(&format!("Writer {writer}"))]
                    } else {
                        (0..1 + fastrand::usize(..3))
                            .map(|i| renamed(&format!("W{writer} R{round} E{i}")))
                            .collect()
                    };
                    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                    let mut tx = store.begin(&tenant).await.unwrap();
                    let appended = tx
                        .append_to_stream(&stream, ExpectedVersion::Any, events)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(..40))).await;
                    // Every seventh transaction after the first aborts: its events must never be read.
                    if round > 0 && fastrand::usize(..7) == 0 {
                        tx.rollback().await.unwrap();
                        continue;
                    }
                    tx.commit().await.unwrap();
                    commit_order
                        .lock()
                        .unwrap()
                        .push(appended.global_positions[0]);
                    committed.extend(ids);
                }
                committed
            })
        })
        .collect();

    let mut committed = HashSet::new();
    for writer in writers {
        committed.extend(writer.await.unwrap());
    }
    writers_done.send(Some(committed.len())).unwrap();
    let read = reader.await.unwrap();

    let order = commit_order.lock().unwrap().clone();
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "no transaction committed out of position order, so the test exercised nothing"
    );

    let read_ids: Vec<Uuid> = read.iter().map(|e| e.event.event_id).collect();
    // The relay's view gives the same log in the same order.
    let mut through_view = Vec::new();
    let mut after = LogPosition::START;
    while through_view.len() < read_ids.len() {
        let page = relay.read_global_log_raw(after, 100).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        through_view.extend(page.iter().map(|e| e.event_id));
    }
    assert_eq!(
        through_view, read_ids,
        "the relay's view reads the same log"
    );
    let unique: HashSet<Uuid> = read_ids.iter().copied().collect();
    assert_eq!(unique.len(), read_ids.len(), "an event was read twice");
    assert_eq!(
        unique, committed,
        "the reader saw exactly the committed events"
    );

    let mut versions_per_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in &read {
        versions_per_stream
            .entry(event.event.stream_id.to_string())
            .or_default()
            .push(event.event.stream_version);
    }
    assert_eq!(versions_per_stream.len(), WRITERS);
    for (stream, versions) in versions_per_stream {
        let expected: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(
            versions, expected,
            "stream {stream} read out of order or with gaps"
        );
    }
}

/// A reader of the global log keeping its checkpoint between reads, as the relay and the
/// projector do.
struct Reader {
    checkpoint: LogPosition,
    read: Vec<GlobalLogEvent>,
}

impl Default for Reader {
    fn default() -> Self {
        Self {
            checkpoint: LogPosition::START,
            read: Vec::new(),
        }
    }
}

/// Reads pages from the reader's checkpoint until one comes back empty; returns how many
/// events the reader has read in all. The lock is never held across a read.
async fn read_to_the_horizon(log: &EventStore, reader: &Mutex<Reader>) -> usize {
    loop {
        let checkpoint = reader.lock().unwrap().checkpoint;
        let page = log.read_global_log(checkpoint, 50).await.unwrap();
        let mut state = reader.lock().unwrap();
        if page.is_empty() {
            return state.read.len();
        }
        for event in &page {
            assert!(
                event.position > state.checkpoint,
                "checkpoints only move forward"
            );
            state.checkpoint = event.position;
        }
        state.read.extend(page);
    }
}

#[tokio::test]
async fn an_open_transaction_holds_back_the_reader_until_it_settles() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(4).await);
    let log = EventStore::new(db.projector_pool(2).await);
    let acme = tenant("acme");

    let mut slow = store.begin(&acme).await.unwrap();
    let early = slow
        .append_to_stream(
            &customer_stream(),
            ExpectedVersion::NoStream,
            vec![registered("Slow")],
        )
        .await
        .unwrap();
    let fast = store
        .append_to_stream(
            &acme,
            &customer_stream(),
            ExpectedVersion::NoStream,
            vec![registered("Fast")],
        )
        .await
        .unwrap();
    assert!(early.global_positions[0] < fast.global_positions[0]);

    // The fast transaction has committed, but the slow one with the lower position is
    // still open: reading past it now would skip it forever, so nothing is returned.
    assert!(
        log.read_global_log(LogPosition::START, 10)
            .await
            .unwrap()
            .is_empty()
    );

    slow.commit().await.unwrap();
    let read = read_global_log_until(&log, 2).await;
    let positions: Vec<u64> = read.iter().map(|e| e.event.global_position).collect();
    assert_eq!(
        positions,
        vec![early.global_positions[0], fast.global_positions[0]]
    );

    let rest = log.read_global_log(read[1].position, 10).await.unwrap();
    assert!(rest.is_empty(), "nothing after the last checkpoint");
}
