//! Forgetting one subject: every projection of the registry deletes (or, for the audit
//! log, redacts) what it holds of one customer and nothing of anyone else, in the real
//! PostgreSQL read model and Elasticsearch indices.

mod support;

use std::time::Duration;

use e2e::pipeline::Pipeline;
use event_store::EventStore;
use event_store::testing::ScratchDatabase;
use projector::projections::{Sinks, registry};
use schemas::StreamId;
use serde_json::{Value, json};
use service::eventually;
use support::{customer, email_changed, register_tenant, registered, tenant, view_at};
use uuid::Uuid;

/// Every document of `stream` in the projection's index, refreshed first.
async fn documents(pipeline: &Pipeline, name: &str, stream: &StreamId) -> Vec<Value> {
    let projection = registry::named(name).unwrap();
    let alias = projection.live_target(pipeline.index_prefix());
    pipeline.es.refresh(&alias).await.unwrap();
    pipeline
        .es
        .search_all(
            &alias,
            json!({
                "query": { "term": { "stream_id": stream.as_str() } },
                "sort": [{ "global_position": "asc" }],
            }),
        )
        .await
        .unwrap()
}

async fn read(store: &EventStore, id: Uuid) -> Option<read_model::customers::CustomerRecord> {
    read_model::customers::find(store, &tenant("acme"), id)
        .await
        .unwrap()
}

/// Waits until each index projection holds `count` documents of `stream`.
async fn indexed(pipeline: &Pipeline, stream: &StreamId, counts: [(&str, usize); 3]) {
    for (name, count) in counts {
        eventually(Duration::from_secs(60), || async {
            let found = documents(pipeline, name, stream).await.len();
            if found == count { Ok(()) } else { Err(found) }
        })
        .await
        .unwrap_or_else(|found| panic!("{name} holds {found} documents of {stream}, not {count}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_customer_removes_it_from_every_projection_and_nobody_else() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(4).await);
    let pipeline = Pipeline::start(&db).await;
    register_tenant(&store, "acme").await;
    let ada = customer(
        &store,
        "acme",
        &[
            registered("Ada Lovelace", "ada@example.com", Some("London"), &["vip"]),
            email_changed("countess@example.com"),
        ],
    )
    .await;
    let bob = customer(
        &store,
        "acme",
        &[registered("Bob Babbage", "bob@example.com", None, &[])],
    )
    .await;
    let stream = |id: Uuid| StreamId::for_aggregate("customer", id).unwrap();
    let (ada_stream, bob_stream) = (stream(ada), stream(bob));
    assert!(view_at(&store, "acme", ada, 2).await.is_some());
    assert!(view_at(&store, "acme", bob, 1).await.is_some());
    indexed(
        &pipeline,
        &ada_stream,
        [("search", 1), ("history", 2), ("audit", 2)],
    )
    .await;
    indexed(
        &pipeline,
        &bob_stream,
        [("search", 1), ("history", 1), ("audit", 1)],
    )
    .await;

    let sinks = Sinks::live(
        EventStore::new(db.projector_pool(2).await),
        pipeline.es.clone(),
        pipeline.index_prefix(),
    );
    let acme = tenant("acme");
    let mut changed = std::collections::BTreeMap::new();
    for projection in registry::ALL {
        let count = projection.forget(&sinks, &acme, &ada_stream).await.unwrap();
        changed.insert(projection.name(), count);
    }
    assert_eq!(
        changed,
        [
            ("audit", 2),
            ("customers", 1),
            ("history", 2),
            ("search", 1)
        ]
        .into(),
        "rows and documents changed per projection"
    );

    // Ada: gone from the read model, search and history; her audit entries keep the facts
    // (who, what, when) without what they said.
    assert!(
        read(&store, ada).await.is_none(),
        "the read model forgot her"
    );
    assert!(documents(&pipeline, "search", &ada_stream).await.is_empty());
    assert!(
        documents(&pipeline, "history", &ada_stream)
            .await
            .is_empty()
    );
    let audit = documents(&pipeline, "audit", &ada_stream).await;
    assert_eq!(
        audit.len(),
        2,
        "the audit log keeps that something happened"
    );
    for entry in &audit {
        let source = &entry["_source"];
        assert!(source["payload"].is_null(), "redacted: {source}");
        assert_eq!(source["stream_id"], ada_stream.as_str());
        assert!(
            source["event_type"]
                .as_str()
                .is_some_and(|t| t.starts_with("Customer"))
        );
        assert_eq!(source["actor_name"], "Mia Member");
    }
    let (hits, _) = read_model::search::customers(
        &pipeline.es,
        pipeline.index_prefix(),
        &acme,
        "Ada",
        None,
        10,
        true,
    )
    .await
    .unwrap();
    assert!(hits.is_empty(), "search finds nothing of her: {hits:?}");

    // Bob: untouched everywhere.
    assert_eq!(
        read(&store, bob).await.map(|v| v.name),
        Some("Bob Babbage".to_owned())
    );
    indexed(
        &pipeline,
        &bob_stream,
        [("search", 1), ("history", 1), ("audit", 1)],
    )
    .await;
    let bob_audit = documents(&pipeline, "audit", &bob_stream).await;
    assert_eq!(bob_audit[0]["_source"]["payload"]["name"], "Bob Babbage");

    // Forgetting again changes nothing more (the audit entries are already empty).
    for projection in registry::ALL {
        let count = projection.forget(&sinks, &acme, &ada_stream).await.unwrap();
        if projection.name() != "audit" {
            assert_eq!(count, 0, "{} had nothing left", projection.name());
        }
    }
}
