//! `projector replay`, `--rollback`, `--tenant` and `projector verify` against real
//! PostgreSQL, Kafka and Elasticsearch, with the live relay and projector running.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use event_store::testing::ScratchDatabase;
use event_store::{EventStore, ExpectedVersion, NewEvent, StreamId};
use projector::projections::registry;

use e2e::pipeline::Pipeline;
use projector::ProjectorConfig;
use projector::replay::progress::ProgressMode;
use projector::replay::{self, ReplayOptions};
use serde_json::{Value, json};
use service::Secret;
use support::{archived, customer, metadata, register_tenant, registered, renamed, tenant};
use uuid::Uuid;

const SEEDED: u64 = 40;

fn replay_config(pipeline: &Pipeline, db: &ScratchDatabase) -> ProjectorConfig {
    ProjectorConfig {
        database_admin_url: Secret::new(db.admin_url()),
        verify_attempts: 20,
        ..pipeline.config.clone()
    }
}

/// A customer archived by a v1 `CustomerArchived` (no reason: written before v2), stored
/// as such; the projections read it through the upcaster.
async fn customer_archived_by_v1(store: &EventStore, tenant_id: &str, name: &str) -> Uuid {
    let id = customer(
        store,
        tenant_id,
        &[registered(name, "old@example.com", None, &["seed"])],
    )
    .await;
    let v1 = NewEvent {
        event_id: Uuid::now_v7(),
        aggregate: "customer",
        event_type: "CustomerArchived",
        schema_version: 1,
        payload: json!({}),
        metadata: metadata("Old System"),
    };
    store
        .append_to_stream(
            &tenant(tenant_id),
            &StreamId::for_aggregate("customer", id).unwrap(),
            ExpectedVersion::Exact(1),
            vec![v1],
        )
        .await
        .unwrap();
    id
}

/// How many of acme's seeded customers a search finds (archived included).
async fn seeded_in_search(pipeline: &Pipeline) -> Result<u64, String> {
    read_model::search::customers(
        &pipeline.es,
        pipeline.index_prefix(),
        &tenant("acme"),
        "seed",
        Some("seed"),
        100,
        true,
    )
    .await
    .map(|(_, total)| total)
    .map_err(|e| e.to_string())
}

/// How many of acme's seeded customers the read model holds.
async fn seeded_in_read_model(store: &EventStore) -> Result<u64, String> {
    let mut tx = store
        .begin(&tenant("acme"))
        .await
        .map_err(|e| e.to_string())?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM customer_views WHERE 'seed' = ANY(tags)")
            .fetch_one(tx.connection())
            .await
            .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(count as u64)
}

async fn status_in_search(pipeline: &Pipeline, id: Uuid) -> Value {
    let (_, doc) = pipeline
        .es
        .get(
            &format!(
                "/{}/_doc/{id}",
                read_model::search::INDEX.alias(pipeline.index_prefix())
            ),
            &[404],
        )
        .await
        .unwrap();
    doc["_source"]["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replay_while_writes_continue_swaps_without_a_short_read_verifies_and_rolls_back() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(6).await);
    let pipeline = Pipeline::start(&db).await;
    let config = replay_config(&pipeline, &db);

    register_tenant(&store, "acme").await;
    register_tenant(&store, "globex").await;
    let mut seeded = Vec::new();
    for n in 0..SEEDED - 3 {
        seeded.push(
            customer(
                &store,
                "acme",
                &[registered(
                    &format!("Seed Person {n}"),
                    &format!("seed{n}@example.com"),
                    Some("Köln"),
                    &["seed"],
                )],
            )
            .await,
        );
    }
    // Text that CSV and array literals must carry intact.
    let quoted = customer(
        &store,
        "acme",
        &[registered(
            r#"Anne "Nan" O'Neil, Jr. \ Sr."#,
            "anne@example.com",
            None,
            &["seed"],
        )],
    )
    .await;
    // One archive in each schema version of CustomerArchived.
    let archived_v1 = customer_archived_by_v1(&store, "acme", "Vera Version-One").await;
    let archived_v2 = customer(
        &store,
        "acme",
        &[
            registered("Walt Version-Two", "v2@example.com", None, &["seed"]),
            archived(),
        ],
    )
    .await;
    for n in 0..10 {
        customer(
            &store,
            "globex",
            &[registered(
                &format!("Globex {n}"),
                "g@example.com",
                None,
                &[],
            )],
        )
        .await;
    }
    // This test is about the replay, not freshness, so the wait outlasts the projector's own
    // recovery from a stuck consumer (health fails after 30 s, the consumer is replaced 60 s
    // later). One run from a clean clone saw the last two seeds still missing at 90 s; the
    // cause is not known yet (a stuck consumer fits; so would a held log horizon).
    service::eventually(Duration::from_secs(150), || async {
        match (
            seeded_in_search(&pipeline).await,
            seeded_in_read_model(&store).await,
        ) {
            (Ok(SEEDED), Ok(SEEDED)) => Ok(()),
            counts => Err(counts),
        }
    })
    .await
    .unwrap_or_else(|(search, read_model)| {
        panic!(
            "not all {SEEDED} seeded customers in search and the read model: \
             search {search:?}, read model {read_model:?}"
        )
    });
    assert_eq!(status_in_search(&pipeline, archived_v1).await, "archived");

    // Writes go on: new customers, and renames of the seeded ones.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let (store, stop, writes, seeded) =
            (store.clone(), stop.clone(), writes.clone(), seeded.clone());
        async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if n.is_multiple_of(2) {
                    customer(
                        &store,
                        "acme",
                        &[registered(
                            &format!("Live {n}"),
                            "live@example.com",
                            None,
                            &["live"],
                        )],
                    )
                    .await;
                } else {
                    let id = seeded[n % seeded.len()];
                    store
                        .append_to_stream(
                            &tenant("acme"),
                            &StreamId::for_aggregate("customer", id).unwrap(),
                            ExpectedVersion::Any,
                            vec![NewEvent::new(
                                &renamed(&format!("Seed Renamed {n}")),
                                metadata("Writer"),
                            )],
                        )
                        .await
                        .unwrap();
                }
                writes.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    // Readers poll every 50 ms: every search and every read-model query must succeed and
    // find all the seeded customers, before, during and after the swap.
    let reader = tokio::spawn({
        let (store, stop, es, prefix) = (
            store.clone(),
            stop.clone(),
            pipeline.es.clone(),
            pipeline.index_prefix().to_owned(),
        );
        async move {
            let mut polls = 0u64;
            let mut failures: Vec<String> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                polls += 1;
                let search = read_model::search::customers(
                    &es,
                    &prefix,
                    &tenant("acme"),
                    "seed",
                    Some("seed"),
                    100,
                    true,
                )
                .await
                .map(|(_, total)| total)
                .map_err(|e| e.to_string());
                if search != Ok(SEEDED) {
                    failures.push(format!("poll {polls}: search {search:?}"));
                }
                let rows = seeded_in_read_model(&store).await;
                if rows != Ok(SEEDED) {
                    failures.push(format!("poll {polls}: read model {rows:?}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (polls, failures)
        }
    });

    // The load runs a while before the replay, and after it below: reads before, during
    // and after the swap are the scenario, so these are pauses, not waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
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
    .expect("the replay runs");
    // And after the swap.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let (polls, failures) = reader.await.unwrap();

    eprintln!(
        "replay under load: {polls} read polls, {} writes, {} events read, {:.1} s",
        writes.load(Ordering::Relaxed),
        report.events_read,
        report.seconds
    );
    assert!(polls >= 10, "the readers polled throughout ({polls} polls)");
    assert!(failures.is_empty(), "failed or short reads: {failures:#?}");
    assert!(
        writes.load(Ordering::Relaxed) >= 20,
        "writes went on meanwhile"
    );
    assert!(
        report.verified(),
        "verification: {:#?}",
        report.verification
    );
    assert_eq!(report.verification.len(), 4);
    for verification in &report.verification {
        let acme = verification
            .tenants
            .iter()
            .find(|t| t.tenant == "acme")
            .unwrap();
        assert!(acme.store.count >= SEEDED, "{verification:?}");
        assert!(verification.tenants.iter().any(|t| t.tenant == "globex"));
    }
    assert_eq!(
        report.undecodable_stream_count, 0,
        "{:?}",
        report.undecodable_streams
    );
    assert_eq!(report.documents_refused, 0, "{:?}", report.first_refusal);
    assert!(report.documents_written["search"] >= SEEDED + 10);
    assert!(report.documents_written["customers"] >= SEEDED + 10);
    assert_eq!(report.swaps.len(), 4);
    let prefix = pipeline.index_prefix();
    let search_swap = report
        .swaps
        .iter()
        .find(|s| s.projection == "search")
        .unwrap();
    assert_eq!(search_swap.retired, vec![format!("{prefix}-customers_v1")]);
    let customers_swap = report
        .swaps
        .iter()
        .find(|s| s.projection == "customers")
        .unwrap();
    assert_eq!(customers_swap.retired, vec!["customer_views_v1".to_owned()]);

    // The aliases, the tenant's filtered alias included, point at the new index only.
    let (_, aliases) = pipeline
        .es
        .get(&format!("/_alias/{prefix}-customers-acme"), &[])
        .await
        .unwrap();
    assert_eq!(
        aliases.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec![&search_swap.in_service]
    );

    // Both schema versions of CustomerArchived were replayed (through the upcaster).
    assert_eq!(status_in_search(&pipeline, archived_v1).await, "archived");
    assert_eq!(status_in_search(&pipeline, archived_v2).await, "archived");
    for id in [archived_v1, archived_v2] {
        let view = read_model::customers::find(&store, &tenant("acme"), id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((view.status.as_str(), view.version), ("archived", 2));
    }
    let history =
        read_model::history::of_customer(&pipeline.es, prefix, &tenant("acme"), archived_v1)
            .await
            .unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    let anne = read_model::customers::find(&store, &tenant("acme"), quoted)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(anne.name, r#"Anne "Nan" O'Neil, Jr. \ Sr."#);
    assert_eq!(anne.tags, vec!["seed"]);

    // The live projector writes into the new generation: a customer created now shows up.
    let after = customer(
        &store,
        "acme",
        &[registered("After Swap", "after@example.com", None, &[])],
    )
    .await;
    support::view_at(&store, "acme", after, 1)
        .await
        .expect("projected after the swap");

    // `verify` on its own, once the writes have stopped.
    let verification = replay::verify(&config, registry::ALL, None).await.unwrap();
    assert!(verification.iter().all(|v| v.passed()), "{verification:#?}");

    // Rollback puts the first generation back and catches it up.
    let rollback = replay::rollback(&config, registry::ALL)
        .await
        .expect("rollback");
    assert!(rollback.verified(), "{:#?}", rollback.verification);
    let search_back = rollback
        .swaps
        .iter()
        .find(|s| s.projection == "search")
        .unwrap();
    assert_eq!(search_back.in_service, format!("{prefix}-customers_v1"));
    assert_eq!(search_back.retired, vec![search_swap.in_service.clone()]);
    let customers_back = rollback
        .swaps
        .iter()
        .find(|s| s.projection == "customers")
        .unwrap();
    assert_eq!(customers_back.in_service, "customer_views_v1");
    assert_eq!(
        status_in_search(&pipeline, after).await,
        "active",
        "caught up after the rollback"
    );
    support::view_at(&store, "acme", after, 1)
        .await
        .expect("in the read model after the rollback");
    let latest = customer(
        &store,
        "acme",
        &[registered("After Rollback", "r@example.com", None, &[])],
    )
    .await;
    support::view_at(&store, "acme", latest, 1)
        .await
        .expect("projected after the rollback");
    assert_eq!(seeded_in_search(&pipeline).await, Ok(SEEDED));
}

/// What a tenant has in every index and in the read model, with the Elasticsearch
/// sequence numbers and PostgreSQL row versions (`xmin`) that any write would change.
async fn footprint(pipeline: &Pipeline, store: &EventStore, tenant_id: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for kind in registry::index_kinds() {
        pipeline
            .es
            .refresh(&kind.alias(pipeline.index_prefix()))
            .await
            .unwrap();
        let answer = pipeline
            .es
            .post(
                &format!("/{}/_search", kind.alias(pipeline.index_prefix())),
                json!({ "size": 1000, "seq_no_primary_term": true,
                        "query": { "term": { "tenant_id": tenant_id } } }),
            )
            .await
            .unwrap();
        for hit in answer["hits"]["hits"].as_array().unwrap() {
            lines.push(format!(
                "{} {} {} {}",
                kind.name(),
                hit["_id"],
                hit["_seq_no"],
                hit["_source"]
            ));
        }
    }
    let mut tx = store.begin(&tenant(tenant_id)).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT xmin::text, row_to_json(c)::text FROM customer_views c ORDER BY customer_id",
    )
    .fetch_all(tx.connection())
    .await
    .unwrap();
    tx.commit().await.unwrap();
    lines.extend(
        rows.into_iter()
            .map(|(xmin, row)| format!("row {xmin} {row}")),
    );
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_replay_repairs_that_tenant_in_place_and_leaves_the_others_untouched() {
    let db = ScratchDatabase::create().await;
    let store = EventStore::new(db.app_pool(4).await);
    let pipeline = Pipeline::start(&db).await;
    let prefix = pipeline.index_prefix().to_owned();

    register_tenant(&store, "acme").await;
    register_tenant(&store, "globex").await;
    let mut acme = Vec::new();
    for n in 0..5 {
        acme.push(
            customer(
                &store,
                "acme",
                &[
                    registered(&format!("Acme {n}"), "a@example.com", None, &["seed"]),
                    renamed(&format!("Acme Renamed {n}")),
                ],
            )
            .await,
        );
    }
    let mut globex = Vec::new();
    for n in 0..5 {
        globex.push(
            customer(
                &store,
                "globex",
                &[registered(
                    &format!("Globex {n}"),
                    "g@example.com",
                    None,
                    &[],
                )],
            )
            .await,
        );
    }
    for id in acme.iter().chain(&globex) {
        let tenant_id = if acme.contains(id) { "acme" } else { "globex" };
        support::view_at(&store, tenant_id, *id, 1).await.unwrap();
    }
    let expected_audit = |tenant_id: &'static str, count: usize| {
        let pipeline = &pipeline;
        async move {
            pipeline
                .search_until(
                    read_model::audit::INDEX,
                    json!({ "size": 100, "query": { "term": { "tenant_id": tenant_id } } }),
                    |hits| hits.len() == count,
                )
                .await
                .len()
        }
    };
    assert_eq!(expected_audit("acme", 11).await, 11);
    assert_eq!(expected_audit("globex", 6).await, 6);
    let verification = replay::verify(&pipeline.config, registry::ALL, None)
        .await
        .unwrap();
    assert!(verification.iter().all(|v| v.passed()), "{verification:#?}");

    // Damage acme's part: a search document lost, a stray one added, a history version
    // lost, a read-model row rewritten and another lost behind the projector's back.
    // The deletes keep the document's version (external_gte): a plain delete would leave
    // a tombstone one version higher for `index.gc_deletes` (60 s) that no versioned
    // write can pass, which is not what a lost write looks like (the projector never
    // deletes).
    let customers_alias = read_model::search::INDEX.alias(&prefix);
    pipeline
        .es
        .request(
            elasticsearch::http::Method::Delete,
            &format!(
                "/{customers_alias}/_doc/{}?refresh=true&version=2&version_type=external_gte",
                acme[0]
            ),
            None,
            &[],
        )
        .await
        .unwrap();
    let stray = Uuid::now_v7();
    pipeline
        .es
        .put(
            &format!("/{customers_alias}/_doc/{stray}?refresh=true"),
            json!({ "tenant_id": "acme", "customer_id": stray, "stream_id": format!("customer-{stray}"),
                    "version": 1, "global_position": 1, "name": "Ghost", "email": "ghost@example.com",
                    "tags": ["seed"], "status": "active", "search_text": "ghost" }),
        )
        .await
        .unwrap();
    let history_alias = read_model::history::INDEX.alias(&prefix);
    pipeline
        .es
        .request(
            elasticsearch::http::Method::Delete,
            &format!(
                "/{history_alias}/_doc/customer-{}:2?refresh=true&version=2&version_type=external_gte",
                acme[1]
            ),
            None,
            &[],
        )
        .await
        .unwrap();
    let mut owner = db.owner_connection().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; SELECT set_config('app.tenant_id', 'acme', true);
         UPDATE customer_views SET name = 'Wrong' WHERE customer_id = '{}';
         DELETE FROM customer_views WHERE customer_id = '{}'; COMMIT;",
        acme[2], acme[3]
    )))
    .execute(&mut owner)
    .await
    .unwrap();
    let globex_before = footprint(&pipeline, &store, "globex").await;
    assert!(globex_before.len() >= 5 + 5 + 6 + 5, "{globex_before:#?}");

    // The binary, as an operator runs it.
    let run = |args: &[&str]| {
        let output = std::process::Command::new(e2e::pipeline::binary("projector"))
            .args(args)
            .env("CHRONICLE_PROJECTOR_DATABASE_URL", db.projector_url())
            .env("DATABASE_ADMIN_URL", db.admin_url())
            .env("ELASTICSEARCH_URL", &pipeline.config.elasticsearch_url)
            .env("KAFKA_BROKERS", &pipeline.config.kafka_brokers)
            .env("CHRONICLE_INDEX_PREFIX", &prefix)
            .env("CHRONICLE_TOPIC_PREFIX", &pipeline.config.topic_prefix)
            .env("CHRONICLE_PROJECTOR_VERIFY_ATTEMPTS", "2")
            .output()
            .expect("the projector binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = run(&["verify", "--projection", "all", "--tenant", "acme"]);
    assert_eq!(code, Some(3), "a mismatch exits with 3: {stdout} {stderr}");
    for projection in ["customers", "search", "history"] {
        assert!(
            stdout.contains(&format!("MISMATCH             {projection}")),
            "{projection} reported: {stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("customer-{}@", acme[0])),
        "the lost document is named: {stdout}"
    );

    let (code, stdout, stderr) = run(&[
        "replay",
        "--projection",
        "all",
        "--tenant",
        "acme",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["tenant"], "acme");
    assert_eq!(report["events_read"], 11);
    assert_eq!(report["documents_written"]["search"], 5);
    assert_eq!(report["documents_written"]["customers"], 5);
    assert_eq!(report["documents_written"]["history"], 10);
    assert_eq!(report["documents_written"]["audit"], 11);
    assert_eq!(report["strays_deleted"], 1, "{report:#}");
    assert!(
        report["swaps"].as_array().unwrap().is_empty(),
        "in place, no swap"
    );
    for verification in report["verification"].as_array().unwrap() {
        let tenants = verification["tenants"].as_array().unwrap();
        assert_eq!(tenants.len(), 1);
        assert_eq!(tenants[0]["tenant"], "acme");
        assert_eq!(tenants[0]["store"], tenants[0]["projection"]);
    }

    // acme is whole again.
    let (status, _) = pipeline
        .es
        .get(&format!("/{customers_alias}/_doc/{stray}"), &[404])
        .await
        .unwrap();
    assert_eq!(status, 404, "the stray document is gone");
    assert_eq!(status_in_search(&pipeline, acme[0]).await, "active");
    let (status, _) = pipeline
        .es
        .get(
            &format!("/{history_alias}/_doc/customer-{}:2", acme[1]),
            &[404],
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "the history version is back");
    let row = read_model::customers::find(&store, &tenant("acme"), acme[2])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.name, "Acme Renamed 2", "content is rewritten too");
    let row = read_model::customers::find(&store, &tenant("acme"), acme[3])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.name.as_str(), row.version), ("Acme Renamed 3", 2));
    let (code, stdout, _) = run(&["verify", "--projection", "all"]);
    assert_eq!(code, Some(0), "{stdout}");

    // And globex was not written to at all.
    assert_eq!(footprint(&pipeline, &store, "globex").await, globex_before);
}
