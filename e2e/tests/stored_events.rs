//! Stored events are facts: one recorded under rules that today's commands would refuse
//! still decodes, projects live and replays, so tightening a rule never makes history
//! unreadable; and one too large for Kafka, or with values too long for an Elasticsearch
//! keyword, still reaches every projection.

mod support;

use std::time::Duration;

use e2e::pipeline::Pipeline;
use event_store::testing::ScratchDatabase;
use event_store::{EventStore, ExpectedVersion, NewEvent, StreamId};
use projector::ProjectorConfig;
use projector::projections::registry;
use projector::replay::progress::ProgressMode;
use projector::replay::{self, ReplayOptions};
use schemas::{CustomerEvent, DomainEvent};
use serde_json::json;
use service::Secret;
use support::{metadata, register_tenant, tenant};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_todays_rules_would_refuse_still_projects_and_replays() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(4).await);
    let pipeline = Pipeline::start(&db).await;
    register_tenant(&store, "acme").await;

    // What an older version of Chronicle may have recorded: a 300-character name, an email
    // today's parser refuses, an empty and a duplicate tag, 25 tags in all, a withdrawn
    // country code, and a field a newer writer added.
    let long_name = "Old ".repeat(75);
    let mut tags: Vec<String> = (0..23).map(|i| format!("t{i}")).collect();
    tags.extend(["".to_owned(), "t0".to_owned()]);
    let payload = json!({
        "name": long_name,
        "email": "not an address",
        "tags": tags,
        "address": {"street": "1 Way", "city": "Beograd", "postal_code": "11000", "country": "YU"},
        "loyalty_tier": "gold",
    });
    for (field, value) in [
        ("name", json!(long_name)),
        ("email", json!("not an address")),
    ] {
        let strict = match field {
            "name" => schemas::CustomerName::parse(value.as_str().unwrap()).is_err(),
            _ => schemas::EmailAddress::parse(value.as_str().unwrap()).is_err(),
        };
        assert!(strict, "today's rules refuse the recorded {field}");
    }
    let decoded = CustomerEvent::decode("CustomerRegistered", 1, payload.clone())
        .expect("the stored payload decodes leniently");
    assert_eq!(decoded.event_type(), "CustomerRegistered");

    let id = Uuid::now_v7();
    store
        .append_to_stream(
            &tenant("acme"),
            &StreamId::for_aggregate("customer", id).unwrap(),
            ExpectedVersion::NoStream,
            vec![NewEvent {
                event_id: Uuid::now_v7(),
                aggregate: "customer",
                event_type: "CustomerRegistered",
                schema_version: 1,
                payload,
                metadata: metadata("Older Chronicle"),
            }],
        )
        .await
        .unwrap();

    // The live projector takes it (nothing parked in the dead-letter topic).
    let row = service::eventually(Duration::from_secs(60), || async {
        read_model::customers::find(&store, &tenant("acme"), id)
            .await
            .unwrap()
            .ok_or(())
    })
    .await
    .expect("the live projector never wrote it");
    assert_eq!(row.name, long_name);
    assert_eq!(row.email, "not an address");
    assert_eq!(row.tags.len(), 25);
    assert_eq!(row.address.as_ref().unwrap()["country"], "YU");

    // A full replay rebuilds it, skips nothing, and verifies against the store.
    let config = ProjectorConfig {
        database_admin_url: Secret::new(db.admin_url()),
        verify_attempts: 20,
        ..pipeline.config.clone()
    };
    let report = replay::replay(
        &config,
        &ReplayOptions {
            projections: registry::ALL.to_vec(),
            tenant: None,
            dry_run: false,
            verify: true,
            progress: ProgressMode::Quiet,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.undecodable_stream_count, 0, "{report}");
    assert_eq!(report.undecodable_events, 0, "{report}");
    assert_eq!(report.documents_refused, 0, "{report}");
    assert!(report.verified(), "{report}");
    let rebuilt = read_model::customers::find(&store, &tenant("acme"), id)
        .await
        .unwrap()
        .expect("in the rebuilt read model");
    assert_eq!(rebuilt.name, long_name);
    let (found, _) = read_model::search::customers(
        &pipeline.es,
        pipeline.index_prefix(),
        &tenant("acme"),
        "Beograd",
        None,
        10,
        false,
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 1, "searchable after the replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_for_kafka_with_long_metadata_reaches_every_projection() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(4).await);
    // Kafka taking records of at most 20 KB, like a tightly configured broker.
    let pipeline = Pipeline::start_tuned(&db, registry::ALL, |relay| {
        relay.max_record_bytes = 20_000;
    })
    .await;
    register_tenant(&store, "acme").await;
    let id = Uuid::now_v7();
    let stream = StreamId::for_aggregate("customer", id).unwrap();
    store
        .append_to_stream(
            &tenant("acme"),
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                &support::registered("Long Ids", "long@example.com", None, &[]),
                metadata("Before"),
            )],
        )
        .await
        .unwrap();
    // 40 KB ids: too long for a keyword (Lucene's 32 KB term limit), and the event too
    // large for the record limit above. Both were refused downstream before.
    let mut long = metadata("After");
    long.request_id = "r".repeat(40 * 1024);
    long.correlation_id = "c".repeat(40 * 1024);
    let renamed = NewEvent::new(&support::renamed("Long Ids Renamed"), long);
    let renamed_id = renamed.event_id;
    store
        .append_to_stream(
            &tenant("acme"),
            &stream,
            ExpectedVersion::Exact(1),
            vec![renamed],
        )
        .await
        .unwrap();

    let audit_path = format!(
        "/{}/_doc/{renamed_id}",
        read_model::audit::INDEX.alias(pipeline.index_prefix())
    );
    let everywhere = service::eventually(Duration::from_secs(60), || async {
        let row = read_model::customers::find(&store, &tenant("acme"), id)
            .await
            .unwrap();
        let (_, audit) = pipeline.es.get(&audit_path, &[404]).await.unwrap();
        let history = read_model::history::of_customer(
            &pipeline.es,
            pipeline.index_prefix(),
            &tenant("acme"),
            id,
        )
        .await
        .unwrap();
        match row {
            Some(row) if row.version == 2 && audit["found"] == true && history.len() == 2 => {
                Ok((row, audit))
            }
            row => Err(format!(
                "row {row:?}, audit found {}, history {}",
                audit["found"],
                history.len()
            )),
        }
    })
    .await;
    let (row, audit) = match everywhere {
        Ok(seen) => seen,
        Err(last) => {
            let parked = tokio::task::spawn_blocking({
                let config = pipeline.config.clone();
                move || projector::dlq::list(&config)
            })
            .await
            .unwrap();
            panic!("not every projection got it: {last}; parked: {parked:?}");
        }
    };
    assert_eq!(row.name, "Long Ids Renamed");
    assert_eq!(
        audit["_source"]["payload"]["name"], "Long Ids Renamed",
        "the audit projection read the payload from the store"
    );
    assert_eq!(
        audit["_source"]["request_id"].as_str().map(str::len),
        Some(40 * 1024),
        "kept whole in the document"
    );
    let parked = tokio::task::spawn_blocking({
        let config = pipeline.config.clone();
        move || projector::dlq::list(&config)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(parked.is_empty(), "nothing dead-lettered: {parked:?}");
}
