//! The API against its own OpenAPI document: schemathesis generates requests from
//! `GET /openapi.json` (valid ones and invalid ones) and sends them with the token of each
//! role; no answer may be a 5xx, and every answer must be what the document says (a
//! documented status, its content type, its headers, its body's schema).
//!
//! schemathesis is a Python tool: `./dev test` installs the version pinned in
//! `infra/fuzz/requirements.txt` and names its executable in `CHRONICLE_SCHEMATHESIS`.
//! Its settings are in `infra/fuzz/schemathesis.toml`. `CHRONICLE_FUZZ_EXAMPLES` (cases per
//! operation in the fuzzing phase) and `CHRONICLE_FUZZ_SEED` make a run longer or repeat
//! one.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use command_api::testing::{TestApp, TestIndices};

/// Cases per operation and role in the fuzzing phase; the coverage phase adds its own
/// boundary cases (about 1,500 a role). Some 2,800 cases and a quarter of a minute per
/// role on two cores.
const EXAMPLES: u32 = 50;

/// Logging out revokes the token every other request of the run needs: it has a run of its
/// own, last.
const LOGOUT: &str = "logout";

#[tokio::test]
async fn every_answer_is_as_the_document_says() {
    let schemathesis = std::env::var("CHRONICLE_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!(
            "CHRONICLE_SCHEMATHESIS is not set: run this test through `./dev test`, which \
             installs schemathesis (infra/fuzz/requirements.txt) and sets it"
        )
    });
    let examples: u32 = std::env::var("CHRONICLE_FUZZ_EXAMPLES")
        .map(|n| n.parse().expect("CHRONICLE_FUZZ_EXAMPLES is a number"))
        .unwrap_or(EXAMPLES);
    let seed: u64 = std::env::var("CHRONICLE_FUZZ_SEED")
        .map(|n| n.parse().expect("CHRONICLE_FUZZ_SEED is a number"))
        // The random bits of a UUID v7: a new seed each run, so that runs explore anew.
        .unwrap_or_else(|_| uuid::Uuid::now_v7().as_u64_pair().1 % 1_000_000_000);

    let indices = TestIndices::create("fuzz").await;
    let prefix = indices.prefix.clone();
    let elasticsearch_url = indices.url.clone();
    let app = TestApp::spawn_with(move |config| {
        config.elasticsearch_url = elasticsearch_url;
        config.index_prefix = prefix;
        // The fuzzer writes and fails logins far faster than any client should: the limits
        // would answer most of its requests with 429 (documented, but testing nothing else).
        config.tenant_writes_per_second = 100_000;
        config.tenant_write_burst = 100_000;
        config.login_per_address_per_minute = 1_000_000;
        config.login_per_account_per_minute = 1_000_000;
    })
    .await;
    // A tenant id no generated request names by chance: the platform admin's run suspends
    // the tenants it names (it comes after the tenant's own runs, too).
    let tenant = format!("fuzz-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let admin = app.tenant_with_admin(&tenant).await;
    let member = app.user(&tenant, &admin, "fuzz-member", "member").await;
    let viewer = app.user(&tenant, &admin, "fuzz-viewer", "viewer").await;
    let leaving = app.user(&tenant, &admin, "fuzz-leaving", "member").await;
    let platform = app.platform_token().await;

    let runs = [
        ("tenant admin", admin.as_str(), Operations::AllBut(LOGOUT)),
        ("member", member.as_str(), Operations::AllBut(LOGOUT)),
        ("viewer", viewer.as_str(), Operations::AllBut(LOGOUT)),
        (
            "platform admin",
            platform.as_str(),
            Operations::AllBut(LOGOUT),
        ),
        (
            "member logging out",
            leaving.as_str(),
            Operations::Only(LOGOUT),
        ),
    ];
    let mut failed = Vec::new();
    for (role, token, operations) in runs {
        let started = Instant::now();
        let output = schemathesis_run(
            &schemathesis,
            &format!("{}/openapi.json", app.base),
            token,
            operations,
            examples,
            seed,
        )
        .await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!(
            "{role}: {} in {:.0?}",
            summary(&text),
            started.elapsed().max(Duration::from_millis(1))
        );
        if !output.status.success() {
            failed.push(format!("----- as {role} ({}) -----\n{text}", output.status));
        }
    }
    assert!(
        failed.is_empty(),
        "schemathesis found answers that are not as the document says (seed {seed}; repeat \
         with CHRONICLE_FUZZ_SEED={seed}):\n{}",
        failed.join("\n")
    );
}

#[derive(Debug, Clone, Copy)]
enum Operations {
    AllBut(&'static str),
    Only(&'static str),
}

async fn schemathesis_run(
    schemathesis: &str,
    document: &str,
    token: &str,
    operations: Operations,
    examples: u32,
    seed: u64,
) -> Output {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/fuzz/schemathesis.toml");
    // Whatever schemathesis leaves behind (reports, caches) goes into a directory of its own.
    let scratch =
        std::env::temp_dir().join(format!("chronicle-fuzz-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&scratch).expect("a scratch directory");
    let (filter, operation_id) = match operations {
        Operations::AllBut(id) => ("--exclude-operation-id", id),
        Operations::Only(id) => ("--include-operation-id", id),
    };
    let mut command = Command::new(schemathesis);
    command
        .current_dir(&scratch)
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .arg("run")
        .arg(document)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([filter, operation_id])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed.to_string()]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the schemathesis run is not cancelled")
        .unwrap_or_else(|error| panic!("cannot run schemathesis ({schemathesis}): {error}"));
    let _ = std::fs::remove_dir_all(&scratch);
    output
}

/// schemathesis's count of test cases, from its summary (`Test cases:` and the line after).
fn summary(output: &str) -> String {
    let mut lines = output.lines().map(str::trim);
    lines
        .by_ref()
        .find(|line| line.starts_with("Test cases:"))
        .and_then(|_| lines.next())
        .unwrap_or("no summary")
        .to_owned()
}
