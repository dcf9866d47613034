//! No process starts with the development passwords unless it is told it runs for
//! development (`CHRONICLE_DEV_MODE`): a deployment that forgot to set real ones fails at
//! once, loudly, instead of running with passwords published in the repository.

use command_api::config::{ApiConfig, Secret};
use event_store::testing::ScratchDatabase;
use projector::projections::registry;
use projector::{Projector, ProjectorConfig};
use relay::{Relay, RelayConfig};

#[tokio::test]
async fn every_process_refuses_development_passwords_outside_development_mode() {
    // The scratch database is reached with the development roles, passwords and all.
    let db = ScratchDatabase::create().await;

    let api = command_api::app::Application::build(ApiConfig {
        database_url: Secret::new(db.app_url()),
        http_addr: "127.0.0.1:0".to_owned(),
        metrics_addr: "127.0.0.1:0".to_owned(),
        dev_mode: false,
        ..ApiConfig::default()
    })
    .await;
    let error = api
        .expect_err("the API started with a development password")
        .to_string();
    assert!(error.contains("DATABASE_URL"), "{error}");

    let relay = Relay::build(RelayConfig {
        database_url: Secret::new(db.relay_url()),
        metrics_addr: "127.0.0.1:0".to_owned(),
        dev_mode: false,
        ..RelayConfig::default()
    })
    .await;
    let error = relay
        .expect_err("the relay started with a development password")
        .to_string();
    assert!(error.contains("CHRONICLE_RELAY_DATABASE_URL"), "{error}");

    let projector = Projector::build(
        &ProjectorConfig {
            database_url: Secret::new(db.projector_url()),
            metrics_addr: "127.0.0.1:0".to_owned(),
            dev_mode: false,
            ..ProjectorConfig::default()
        },
        &[registry::named("customers").unwrap()],
    )
    .await;
    let error = projector
        .expect_err("the projector started with a development password")
        .to_string();
    assert!(
        error.contains("CHRONICLE_PROJECTOR_DATABASE_URL"),
        "{error}"
    );

    // The bootstrap admin's development password likewise, even with a real database URL.
    let real_url = db.app_url().replace(
        "chronicle_app:chronicle_app@",
        "chronicle_app:not-the-dev-one@",
    );
    let api = command_api::app::Application::build(ApiConfig {
        database_url: Secret::new(real_url),
        bootstrap_admin: Some(Secret::new("platform-admin:dev-admin-password".to_owned())),
        http_addr: "127.0.0.1:0".to_owned(),
        metrics_addr: "127.0.0.1:0".to_owned(),
        dev_mode: false,
        ..ApiConfig::default()
    })
    .await;
    let error = api
        .expect_err("the API started with the development admin password")
        .to_string();
    assert!(error.contains("CHRONICLE_BOOTSTRAP_ADMIN"), "{error}");
}
