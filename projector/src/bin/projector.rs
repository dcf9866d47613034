//! `projector`: runs every projection. `projector dlq list` shows the dead-letter topic;
//! `projector dlq redrive` hands its records back to the projections that parked them;
//! `projector replay` rebuilds projections from the event store; `projector verify`
//! compares them with it.
//!
//! Exit codes: 0 done; 1 failed; 2 usage; 3 a verification found a mismatch.

use std::io::Write;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use event_store::TenantId;
use projector::projections::{ProjectionRef, registry};
use projector::replay::progress::ProgressMode;
use projector::replay::verify::Verification;
use projector::replay::{self, ReplayOptions};
use projector::{Projector, ProjectorConfig};

#[derive(Debug, Parser)]
#[command(
    name = "projector",
    about = "Chronicle's projector: Kafka in; read models and indices out"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every projection (the default).
    Run,
    /// The dead-letter topic.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Rebuilds projections from the event store while the system keeps serving.
    Replay(ReplayArgs),
    /// Compares projections with the event store, per tenant (count and checksum).
    Verify(VerifyArgs),
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Prints every parked record, one JSON object per line.
    List,
    /// Hands every parked record back to the projection that parked it.
    Redrive,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The projection to rebuild, or `all`.
    #[arg(long, value_parser = selection())]
    projection: Selection,
    /// Rebuild only this tenant's part, in place.
    #[arg(long, conflicts_with = "rollback", value_parser = tenant)]
    tenant: Option<TenantId>,
    /// Read and fold everything, write nothing.
    #[arg(long, conflicts_with = "rollback")]
    dry_run: bool,
    /// Put the previous generation back into service instead.
    #[arg(long)]
    rollback: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The projection to verify, or `all`.
    #[arg(long, value_parser = selection())]
    projection: Selection,
    /// Only this tenant.
    #[arg(long, value_parser = tenant)]
    tenant: Option<TenantId>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The projections a command acts on: one by name, or `all`.
#[derive(Debug, Clone)]
struct Selection(Vec<ProjectionRef>);

/// Accepts the registry's names and `all`, and lists them in `--help` and usage errors.
fn selection() -> impl TypedValueParser<Value = Selection> {
    let names = registry::names().chain(["all"]);
    PossibleValuesParser::new(names).map(|name| match registry::named(&name) {
        Some(projection) => Selection(vec![projection]),
        None => Selection(registry::ALL.to_vec()),
    })
}

fn tenant(value: &str) -> Result<TenantId, String> {
    TenantId::parse(value).map_err(|error| error.to_string())
}

const MISMATCH: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service::logs::init();
    let config = match ProjectorConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config).await,
        Command::Dlq(DlqCommand::List) => dlq_list(config).await,
        Command::Dlq(DlqCommand::Redrive) => dlq_redrive(config).await,
        Command::Replay(args) => replay_command(config, args).await,
        Command::Verify(args) => verify_command(config, args).await,
    }
}

async fn replay_command(config: ProjectorConfig, args: ReplayArgs) -> ExitCode {
    let Selection(projections) = args.projection;
    if args.rollback {
        let outcome = replay::rollback(&config, &projections).await;
        return finish(
            outcome,
            args.json,
            |report| report.verified(),
            "rollback failed",
        );
    }
    let options = ReplayOptions {
        projections,
        tenant: args.tenant,
        dry_run: args.dry_run,
        verify: true,
        progress: ProgressMode::Auto,
    };
    let outcome = replay::replay(&config, &options).await;
    finish(
        outcome,
        args.json,
        |report| report.verified(),
        "replay failed",
    )
}

async fn verify_command(config: ProjectorConfig, args: VerifyArgs) -> ExitCode {
    let Selection(projections) = args.projection;
    let outcome = replay::verify(&config, &projections, args.tenant.as_ref())
        .await
        .map(Verifications);
    finish(
        outcome,
        args.json,
        Verifications::passed,
        "verification failed",
    )
}

/// The verifications of `projector verify`, printed one after another.
#[derive(Debug, serde::Serialize)]
#[serde(transparent)]
struct Verifications(Vec<Verification>);

impl Verifications {
    fn passed(&self) -> bool {
        self.0.iter().all(Verification::passed)
    }
}

impl std::fmt::Display for Verifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0
            .iter()
            .try_for_each(|verification| write!(f, "{verification}"))
    }
}

/// Prints a report (JSON, or its `Display`) and turns it into the exit code: 3 if its
/// verification found a mismatch, 1 on an error.
fn finish<T: serde::Serialize + std::fmt::Display>(
    outcome: Result<T, replay::ReplayError>,
    json: bool,
    verified: fn(&T) -> bool,
    failure: &str,
) -> ExitCode {
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            tracing::error!(%error, "{failure}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        let _ = serde_json::to_writer_pretty(&mut out, &report);
        let _ = writeln!(out);
    } else {
        let _ = write!(out, "{report}");
    }
    if verified(&report) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(MISMATCH)
    }
}

async fn run(config: ProjectorConfig) -> ExitCode {
    let projector = match Projector::build(&config, registry::ALL).await {
        Ok(projector) => projector,
        Err(error) => {
            tracing::error!(%error, "projector could not start");
            return ExitCode::FAILURE;
        }
    };
    // SIGTERM or SIGINT: commit what is projected, then stop.
    service::shutdown::run_to_exit("projector", |shutdown| projector.run(shutdown)).await
}

async fn dlq_list(config: ProjectorConfig) -> ExitCode {
    match tokio::task::spawn_blocking(move || projector::dlq::list(&config)).await {
        Ok(Ok(letters)) => {
            let mut out = std::io::stdout().lock();
            for letter in &letters {
                let _ = serde_json::to_writer(&mut out, letter);
                let _ = out.write_all(b"\n");
            }
            eprintln!("{} record(s) in the dead-letter topic", letters.len());
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "listing the dead-letter topic failed");
            ExitCode::FAILURE
        }
        Err(error) => {
            tracing::error!(%error, "listing panicked");
            ExitCode::FAILURE
        }
    }
}

async fn dlq_redrive(config: ProjectorConfig) -> ExitCode {
    match projector::dlq::redrive(&config).await {
        Ok(summary) => {
            eprintln!(
                "{} record(s) projected, {} parked again",
                summary.projected, summary.parked_again
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "re-driving failed");
            ExitCode::FAILURE
        }
    }
}
