//! From the event store through the relay and Kafka into the read model and the indices,
//! against real PostgreSQL, Kafka and Elasticsearch.

mod support;

use std::time::Duration;

use e2e::pipeline::Pipeline;
use event_store::testing::ScratchDatabase;
use event_store::{EventStore, LogPosition};
use projector::projections::registry;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use read_model::audit::AuditFilter;
use serde_json::json;
use support::{
    archived, customer, email_changed, register_tenant, registered, renamed, tenant, view_at,
};

/// Searches until `expect(total)` holds (the index refreshes every second); fails the test
/// if it does not within 30 s.
async fn search(
    pipeline: &Pipeline,
    tenant_id: &str,
    q: &str,
    tag: Option<&str>,
    archived: bool,
    expect: impl Fn(u64) -> bool,
) -> Vec<read_model::customers::CustomerRecord> {
    service::eventually(Duration::from_secs(30), || async {
        let (items, total) = read_model::search::customers(
            &pipeline.es,
            pipeline.index_prefix(),
            &tenant(tenant_id),
            q,
            tag,
            20,
            archived,
        )
        .await
        .unwrap();
        if expect(total) { Ok(items) } else { Err(total) }
    })
    .await
    .unwrap_or_else(|total| {
        panic!(
            "{tenant_id}'s customers searched for {q:?} (tag {tag:?}, archived {archived}): \
             {total} found, not what was expected, after 30 s"
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_into_the_read_model_search_history_and_audit() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(4).await);
    let pipeline = Pipeline::start(&db).await;

    register_tenant(&store, "acme").await;
    register_tenant(&store, "globex").await;
    let mueller = customer(
        &store,
        "acme",
        &[
            registered(
                "Jürgen Müller",
                "j.mueller@example.de",
                Some("Berlin"),
                &["vip"],
            ),
            email_changed("juergen@example.de"),
        ],
    )
    .await;
    let ada = customer(
        &store,
        "acme",
        &[
            registered("Ada Lovelace", "ada@example.com", None, &[]),
            archived(),
        ],
    )
    .await;
    let theirs = customer(
        &store,
        "globex",
        &[registered(
            "Karl Müller",
            "karl@globex.example",
            Some("Hamburg"),
            &["vip"],
        )],
    )
    .await;

    // The read model.
    let view = view_at(&store, "acme", mueller, 2)
        .await
        .expect("the customer reached the read model");
    assert_eq!(
        (view.version, view.email.as_str(), view.status.as_str()),
        (2, "juergen@example.de", "active")
    );
    assert_eq!(view.tags, vec!["vip"]);
    assert_eq!(view.address.as_ref().unwrap()["city"], "Berlin");
    assert_eq!(
        view_at(&store, "acme", ada, 2).await.unwrap().status,
        "archived"
    );
    assert!(
        read_model::customers::find(&store, &tenant("acme"), theirs)
            .await
            .unwrap()
            .is_none(),
        "globex's customer is not acme's"
    );
    let page = read_model::customers::page(&store, &tenant("acme"), 10, None, false)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![mueller],
        "archived excluded by default"
    );
    assert_eq!(
        read_model::customers::page(&store, &tenant("acme"), 10, None, true)
            .await
            .unwrap()
            .len(),
        2
    );

    // Search: folded, typo-tolerant, tenant-scoped.
    for query in [
        "Müller",
        "Muller",
        "Mueller",
        "mulller",
        "juergen",
        "Berlin",
        "berlni",
        "example.de",
        "vip",
    ] {
        let found = search(&pipeline, "acme", query, None, false, |total| total >= 1).await;
        assert_eq!(
            found.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![mueller],
            "query {query:?}"
        );
    }
    let globex_found = search(&pipeline, "globex", "Muller", None, false, |total| {
        total >= 1
    })
    .await;
    assert_eq!(
        globex_found.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![theirs]
    );
    assert_eq!(
        search(&pipeline, "acme", "", Some("vip"), false, |t| t >= 1)
            .await
            .len(),
        1
    );
    // Found with the archived first, so that not finding it without them means something.
    assert_eq!(
        search(&pipeline, "acme", "Lovelace", None, true, |t| t >= 1).await[0].id,
        ada
    );
    assert!(
        search(&pipeline, "acme", "Lovelace", None, false, |t| t == 0)
            .await
            .is_empty(),
        "archived hidden by default"
    );
    assert!(
        search(&pipeline, "acme", "Hamburg", None, false, |t| t == 0)
            .await
            .is_empty(),
        "another tenant's customer"
    );

    // History: each version with its changes.
    let history = service::eventually(Duration::from_secs(30), || async {
        let history = read_model::history::of_customer(
            &pipeline.es,
            pipeline.index_prefix(),
            &tenant("acme"),
            mueller,
        )
        .await
        .unwrap();
        if history.len() >= 2 {
            Ok(history)
        } else {
            Err(history.iter().map(|h| h.version).collect::<Vec<_>>())
        }
    })
    .await
    .unwrap_or_else(|versions| panic!("history has versions {versions:?}, not 1 and 2"));
    assert_eq!(
        history.iter().map(|h| h.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(history[0].event_type, "CustomerRegistered");
    assert!(
        history[0]
            .changes
            .iter()
            .any(|c| c.field == "name" && c.old.is_null() && c.new == "Jürgen Müller")
    );
    assert_eq!(history[1].changes.len(), 1);
    assert_eq!(history[1].changes[0].field, "email");
    assert_eq!(
        (
            history[1].changes[0].old.clone(),
            history[1].changes[0].new.clone()
        ),
        (json!("j.mueller@example.de"), json!("juergen@example.de"))
    );
    assert_eq!(history[1].actor.name, "Mia Member");
    assert!(
        read_model::history::of_customer(
            &pipeline.es,
            pipeline.index_prefix(),
            &tenant("globex"),
            mueller
        )
        .await
        .unwrap()
        .is_empty()
    );

    // Audit: every event of the tenant, none of the other's.
    let audit = service::eventually(Duration::from_secs(30), || async {
        let (items, _) = read_model::audit::page(
            &pipeline.es,
            pipeline.index_prefix(),
            &tenant("acme"),
            &AuditFilter::default(),
            100,
            None,
        )
        .await
        .unwrap();
        if items.len() >= 5 {
            Ok(items)
        } else {
            Err(items.into_iter().map(|a| a.event_type).collect::<Vec<_>>())
        }
    })
    .await
    .unwrap_or_else(|types| panic!("acme's audit holds {types:?}, not its 5 events"));
    let types: Vec<&str> = audit.iter().map(|a| a.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "TenantRegistered",
            "CustomerRegistered",
            "CustomerUpdated",
            "CustomerRegistered",
            "CustomerArchived"
        ]
    );
    let only_updates = AuditFilter {
        event_type: Some("CustomerUpdated".to_owned()),
        ..AuditFilter::default()
    };
    let (updates, _) = read_model::audit::page(
        &pipeline.es,
        pipeline.index_prefix(),
        &tenant("acme"),
        &only_updates,
        100,
        None,
    )
    .await
    .unwrap();
    assert_eq!(updates.len(), 1);
    let (first_page, cursor) = read_model::audit::page(
        &pipeline.es,
        pipeline.index_prefix(),
        &tenant("acme"),
        &AuditFilter::default(),
        2,
        None,
    )
    .await
    .unwrap();
    let (second_page, _) = read_model::audit::page(
        &pipeline.es,
        pipeline.index_prefix(),
        &tenant("acme"),
        &AuditFilter::default(),
        2,
        cursor,
    )
    .await
    .unwrap();
    assert_eq!(first_page.len() + second_page.len(), 4);
    assert_ne!(first_page[0].event_id, second_page[0].event_id);

    // Kibana's per-tenant filtered aliases exist and filter.
    for kind in registry::index_kinds() {
        let alias = kind.tenant_alias(pipeline.index_prefix(), "acme");
        let (status, _) = pipeline
            .es
            .get(&format!("/_alias/{alias}"), &[404])
            .await
            .unwrap();
        assert_eq!(status, 200, "{alias} is missing");
    }
    let (_, counted) = pipeline
        .es
        .get(
            &format!(
                "/{}/_count",
                read_model::search::INDEX.tenant_alias(pipeline.index_prefix(), "globex")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(counted["count"], 1);
}

/// Publishes the stored events of `stream` again, newest first, twice: redelivery and
/// disorder at once.
async fn replay_out_of_order(
    pipeline: &Pipeline,
    store: &EventStore,
    tenant_id: &str,
    id: uuid::Uuid,
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &pipeline.topics.brokers)
        .create()
        .unwrap();
    let stream = event_store::StreamId::for_aggregate("customer", id).unwrap();
    let events = store
        .read_stream(&tenant(tenant_id), &stream, 1, 100)
        .await
        .unwrap();
    for _ in 0..2 {
        for event in events.iter().rev() {
            let record = kafka_wire::KafkaRecord::for_event(&pipeline.topics.prefix, event);
            let headers = record
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |h, (key, value)| {
                    h.insert(Header {
                        key,
                        value: Some(value.as_bytes()),
                    })
                });
            producer
                .send(
                    FutureRecord::to(&record.topic)
                        .key(&record.key)
                        .payload(&record.value)
                        .headers(headers),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_and_out_of_order_events_leave_the_same_state() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(4).await);
    let pipeline = Pipeline::start(&db).await;
    register_tenant(&store, "acme").await;
    let id = customer(
        &store,
        "acme",
        &[
            registered(
                "Grace Hopper",
                "grace@example.com",
                Some("Arlington"),
                &["navy"],
            ),
            renamed("Grace Brewster Hopper"),
            email_changed("amazing.grace@example.com"),
        ],
    )
    .await;
    let before = view_at(&store, "acme", id, 3).await.unwrap();
    let alias = read_model::search::INDEX.alias(pipeline.index_prefix());
    let doc_path = format!("/{alias}/_doc/{id}");
    service::eventually(Duration::from_secs(30), || async {
        let (_, doc) = pipeline.es.get(&doc_path, &[404]).await.unwrap();
        if doc["_version"] == 3 {
            Ok(())
        } else {
            Err(doc["_version"].clone())
        }
    })
    .await
    .unwrap_or_else(|version| {
        panic!("the search document did not reach version 3: version {version}")
    });

    replay_out_of_order(&pipeline, &store, "acme", id).await;
    // A sentinel after the replayed records: once it is projected, so are they.
    let sentinel = customer(
        &store,
        "acme",
        &[registered("Sentinel", "s@example.com", None, &[])],
    )
    .await;
    view_at(&store, "acme", sentinel, 1)
        .await
        .expect("the sentinel was projected");
    let sentinel_path = format!("/{alias}/_doc/{sentinel}");
    service::eventually(Duration::from_secs(30), || async {
        match pipeline.es.get(&sentinel_path, &[404]).await.unwrap().0 {
            200 => Ok(()),
            status => Err(status),
        }
    })
    .await
    .unwrap_or_else(|status| {
        panic!("the sentinel's search document never appeared: status {status}")
    });

    // History and audit are consumer groups of their own: wait for them to pass the
    // sentinel too.
    service::eventually(Duration::from_secs(30), || async {
        let sentinel_history = read_model::history::of_customer(
            &pipeline.es,
            pipeline.index_prefix(),
            &tenant("acme"),
            sentinel,
        )
        .await
        .unwrap();
        let (audit, _) = read_model::audit::page(
            &pipeline.es,
            pipeline.index_prefix(),
            &tenant("acme"),
            &AuditFilter::default(),
            100,
            None,
        )
        .await
        .unwrap();
        let audited = audit
            .iter()
            .any(|a| a.stream_id.ends_with(&sentinel.to_string()));
        if sentinel_history.len() == 1 && audited {
            Ok(())
        } else {
            Err((sentinel_history.len(), audited))
        }
    })
    .await
    .unwrap_or_else(|(versions, audited)| {
        panic!(
            "history and audit did not pass the sentinel: \
             {versions} history versions, audited: {audited}"
        )
    });
    let after = read_model::customers::find(&store, &tenant("acme"), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, before, "redelivery changed the read model");
    let (_, doc) = pipeline.es.get(&doc_path, &[]).await.unwrap();
    assert_eq!(doc["_version"], 3);
    assert_eq!(doc["_source"]["name"], "Grace Brewster Hopper");
    let history = read_model::history::of_customer(
        &pipeline.es,
        pipeline.index_prefix(),
        &tenant("acme"),
        id,
    )
    .await
    .unwrap();
    assert_eq!(
        history.iter().map(|h| h.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let (audit, _) = read_model::audit::page(
        &pipeline.es,
        pipeline.index_prefix(),
        &tenant("acme"),
        &AuditFilter::default(),
        100,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        audit.len(),
        5,
        "one audit entry per event, however often delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_parked_with_their_reason_while_the_rest_flows() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(4).await);
    let pipeline = Pipeline::start(&db).await;
    register_tenant(&store, "acme").await;
    let first = customer(
        &store,
        "acme",
        &[registered("Before Poison", "before@example.com", None, &[])],
    )
    .await;
    view_at(&store, "acme", first, 1).await.unwrap();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &pipeline.topics.brokers)
        .create()
        .unwrap();
    let topic = pipeline.topics.topic("customer");
    let garbage = b"{not json at all".to_vec();
    let log = EventStore::new(db.projector_pool(1).await);
    let mut unknown = serde_json::to_value(
        log.read_global_log(LogPosition::START, 10)
            .await
            .unwrap()
            .last()
            .unwrap()
            .event
            .clone(),
    )
    .unwrap();
    unknown["event_type"] = json!("CustomerTeleported");
    unknown["event_id"] = json!(uuid::Uuid::now_v7());
    let unknown = serde_json::to_vec(&unknown).unwrap();
    for payload in [&garbage, &unknown] {
        producer
            .send(
                FutureRecord::to(&topic).key("poison").payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let after = customer(
        &store,
        "acme",
        &[registered("After Poison", "after@example.com", None, &[])],
    )
    .await;
    assert!(
        view_at(&store, "acme", after, 1).await.is_some(),
        "the projector stopped at the poison"
    );

    let parked = service::eventually(Duration::from_secs(30), || async {
        let config = pipeline.config.clone();
        let parked = tokio::task::spawn_blocking(move || projector::dlq::list(&config))
            .await
            .unwrap()
            .unwrap();
        if parked.len() >= 8 {
            Ok(parked)
        } else {
            Err(parked)
        }
    })
    .await
    .unwrap_or_else(|parked| {
        panic!(
            "{} of the 8 poison records parked (each of the 4 projections parks each of \
             the 2 once): {parked:#?}",
            parked.len()
        )
    });
    assert_eq!(
        parked.len(),
        8,
        "each of the 4 projections parks each of the 2 poison records once: {parked:#?}"
    );
    for projection in ["customers", "search", "history", "audit"] {
        let mine: Vec<_> = parked
            .iter()
            .filter(|p| p.projection == projection)
            .collect();
        assert_eq!(mine.len(), 2, "{projection}");
        assert!(
            mine.iter()
                .any(|p| p.reason.contains("not an event envelope")),
            "{projection}: {mine:?}"
        );
        assert!(
            mine.iter().any(|p| p.reason.contains("CustomerTeleported")),
            "{projection}: {mine:?}"
        );
        assert!(
            mine.iter()
                .all(|p| p.original_topic == topic && p.key.as_deref() == Some("poison"))
        );
    }

    // Re-driving what is still poison parks it again, with the original coordinates.
    let summary = projector::dlq::redrive(&pipeline.config).await.unwrap();
    assert_eq!((summary.projected, summary.parked_again), (0, 8));
    let again = projector::dlq::redrive(&pipeline.config).await.unwrap();
    assert_eq!(
        (again.projected, again.parked_again),
        (0, 8),
        "only the newly parked ones are re-driven"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_stream_ends_consistent_with_the_store() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(4).await);
    let pipeline = Pipeline::start_with(&db, &[]).await;
    register_tenant(&store, "acme").await;

    let spawn = || {
        std::process::Command::new(e2e::pipeline::binary("projector"))
            .env("CHRONICLE_PROJECTOR_DATABASE_URL", db.projector_url())
            .env("KAFKA_BROKERS", &pipeline.config.kafka_brokers)
            .env("ELASTICSEARCH_URL", &pipeline.config.elasticsearch_url)
            .env("CHRONICLE_TOPIC_PREFIX", &pipeline.config.topic_prefix)
            .env("CHRONICLE_INDEX_PREFIX", &pipeline.config.index_prefix)
            .env(
                "CHRONICLE_PROJECTOR_GROUP_PREFIX",
                &pipeline.config.group_prefix,
            )
            .env("CHRONICLE_PROJECTOR_METRICS_ADDR", "127.0.0.1:0")
            .env("CHRONICLE_PROJECTOR_BATCH_SIZE", "50")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut projector = spawn();
    let mut ids = Vec::new();
    for i in 0..150 {
        let events = [
            registered(&format!("Customer {i}"), "c@example.com", None, &[]),
            renamed(&format!("Customer {i} Renamed")),
        ];
        ids.push(customer(&store, "acme", &events).await);
    }
    // Kill it (SIGKILL) once part of the work is done.
    service::eventually(Duration::from_secs(60), || async {
        match read_model::customers::page(&store, &tenant("acme"), 100, None, true)
            .await
            .unwrap()
            .len()
        {
            projected if projected >= 20 => Ok(()),
            projected => Err(projected),
        }
    })
    .await
    .unwrap_or_else(|projected| {
        panic!("the projector made no progress: {projected} customers projected")
    });
    projector.kill().unwrap();
    projector.wait().unwrap();
    let mut projector = spawn();

    // Everything ends as the store says: every customer at version 2, in PostgreSQL and
    // in Elasticsearch, each exactly once.
    for id in &ids {
        let view = view_at(&store, "acme", *id, 2)
            .await
            .expect("a customer is missing after the restart");
        assert_eq!(view.version, 2);
    }
    let alias = read_model::search::INDEX.alias(&pipeline.config.index_prefix);
    service::eventually(Duration::from_secs(60), || async {
        let _ = pipeline.es.refresh(&alias).await;
        let (_, count) = pipeline
            .es
            .get(&format!("/{alias}/_count"), &[])
            .await
            .unwrap();
        let (_, renamed) = pipeline
            .es
            .request(
                elasticsearch::http::Method::Post,
                &format!("/{alias}/_count"),
                Some(json!({ "query": { "term": { "version": 2 } } })),
                &[],
            )
            .await
            .unwrap();
        match (count["count"].as_u64(), renamed["count"].as_u64()) {
            (Some(150), Some(150)) => Ok(()),
            counts => Err(counts),
        }
    })
    .await
    .unwrap_or_else(|(documents, at_version_2)| {
        panic!("{documents:?} search documents, {at_version_2:?} at version 2: not 150 and 150")
    });
    projector.kill().unwrap();
    projector.wait().unwrap();
}
