//! `projector`: runs every projection. `projector dlq list` shows the dead-letter topic;
//! `projector dlq redrive` hands its records back to the projections that parked them;
//! `projector replay` rebuilds projections from the event store; `projector verify`
//! compares them with it.
//!
//! Exit codes: 0 done; 1 failed; 2 usage; 3 a verification found a mismatch.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use event_store::TenantId;
use projector::projections::Projection;
use projector::replay::progress::ProgressMode;
use projector::replay::verify::Verification;
use projector::replay::{self, ReplayOptions, ReplayReport, RollbackReport};
use projector::{Projector, ProjectorConfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

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
    /// The projection to rebuild.
    #[arg(long, value_enum)]
    projection: ProjectionArg,
    /// Rebuild only this tenant's part, in place.
    #[arg(long, conflicts_with = "rollback")]
    tenant: Option<String>,
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
    #[arg(long, value_enum)]
    projection: ProjectionArg,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProjectionArg {
    Customers,
    Search,
    History,
    Audit,
    All,
}

impl ProjectionArg {
    fn projections(self) -> Vec<Projection> {
        match self {
            Self::Customers => vec![Projection::Customers],
            Self::Search => vec![Projection::Search],
            Self::History => vec![Projection::History],
            Self::Audit => vec![Projection::Audit],
            Self::All => Projection::ALL.to_vec(),
        }
    }
}

const MISMATCH: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if std::env::var("CHRONICLE_LOG_FORMAT").is_ok_and(|format| format == "json") {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
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

fn parse_tenant(tenant: Option<String>) -> Result<Option<TenantId>, ExitCode> {
    match tenant.map(TenantId::parse).transpose() {
        Ok(tenant) => Ok(tenant),
        Err(error) => {
            eprintln!("error: invalid value for '--tenant': {error}");
            Err(ExitCode::from(2))
        }
    }
}

async fn replay_command(config: ProjectorConfig, args: ReplayArgs) -> ExitCode {
    let projections = args.projection.projections();
    if args.rollback {
        return finish(
            replay::rollback(&config, &projections).await,
            args.json,
            rollback_text,
            RollbackReport::verified,
            "rollback failed",
        );
    }
    let tenant = match parse_tenant(args.tenant) {
        Ok(tenant) => tenant,
        Err(code) => return code,
    };
    let options = ReplayOptions {
        projections,
        tenant,
        dry_run: args.dry_run,
        verify: true,
        progress: ProgressMode::Auto,
    };
    finish(
        replay::replay(&config, &options).await,
        args.json,
        replay_text,
        ReplayReport::verified,
        "replay failed",
    )
}

/// Prints a report (JSON or text) and turns it into the exit code: 3 if its verification
/// found a mismatch, 1 on an error.
fn finish<T: serde::Serialize>(
    outcome: Result<T, replay::ReplayError>,
    json: bool,
    text: fn(&T) -> String,
    verified: fn(&T) -> bool,
    failure: &str,
) -> ExitCode {
    match outcome {
        Ok(report) => {
            if json {
                print_json(&report);
            } else {
                print_text(&text(&report));
            }
            if verified(&report) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(MISMATCH)
            }
        }
        Err(error) => {
            tracing::error!(%error, "{failure}");
            ExitCode::FAILURE
        }
    }
}

async fn verify_command(config: ProjectorConfig, args: VerifyArgs) -> ExitCode {
    let tenant = match parse_tenant(args.tenant) {
        Ok(tenant) => tenant,
        Err(code) => return code,
    };
    finish(
        replay::verify(&config, &args.projection.projections(), tenant.as_ref()).await,
        args.json,
        |verifications: &Vec<Verification>| verification_text(verifications),
        |verifications: &Vec<Verification>| verifications.iter().all(Verification::passed),
        "verification failed",
    )
}

fn print_json<T: serde::Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

fn print_text(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn replay_text(report: &ReplayReport) -> String {
    let mut text = format!(
        "replay of {}{}{}\n",
        report.projections.join(", "),
        report
            .tenant
            .as_ref()
            .map(|t| format!(" for tenant {t}"))
            .unwrap_or_default(),
        if report.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        },
    );
    let rate = report.events_read as f64 / report.seconds.max(0.001);
    text += &format!("  events read          {}\n", report.events_read);
    let written_label = if report.dry_run {
        "documents to write "
    } else {
        "documents written  "
    };
    for (projection, written) in &report.documents_written {
        text += &format!("  {written_label}  {written} ({projection})\n");
    }
    if report.documents_refused > 0 {
        text += &format!(
            "  documents refused    {} (first: {})\n",
            report.documents_refused,
            report.first_refusal.as_deref().unwrap_or("-")
        );
    }
    if report.undecodable_stream_count > 0 || report.undecodable_events > 0 {
        text += &format!(
            "  skipped              {} stream(s), {} event(s) that do not decode\n",
            report.undecodable_stream_count, report.undecodable_events
        );
        for stream in &report.undecodable_streams {
            text += &format!("                       {stream}\n");
        }
    }
    if !report.dry_run {
        let rejected = if report.caught_up_rejected > 0 {
            format!(
                " ({} not usable: the live projector parks them in the dead-letter topic)",
                report.caught_up_rejected
            )
        } else {
            String::new()
        };
        text += &format!(
            "  caught up            {} event(s){rejected}\n",
            report.caught_up_events
        );
    }
    for swap in &report.swaps {
        text += &format!(
            "  swapped              {}: {} -> {}\n",
            swap.projection,
            swap.retired.join(", "),
            swap.in_service
        );
    }
    if report.strays_deleted > 0 {
        text += &format!("  stray docs removed   {}\n", report.strays_deleted);
    }
    if !report.pruned.is_empty() {
        text += &format!("  pruned               {}\n", report.pruned.join(", "));
    }
    text += &format!(
        "  seconds              {:.1} ({rate:.0} events/s)\n",
        report.seconds
    );
    text + &verification_text(&report.verification)
}

fn rollback_text(report: &RollbackReport) -> String {
    let mut text = String::from("rollback\n");
    for swap in &report.swaps {
        text += &format!(
            "  swapped              {}: {} -> {}\n",
            swap.projection,
            swap.retired.join(", "),
            swap.in_service
        );
    }
    text += &format!(
        "  caught up            {} event(s)\n",
        report.caught_up_events
    );
    text += &format!("  seconds              {:.1}\n", report.seconds);
    text + &verification_text(&report.verification)
}

fn verification_text(verifications: &[Verification]) -> String {
    let mut text = String::new();
    for verification in verifications {
        let tenants = verification.tenants.len();
        let mismatches: Vec<_> = verification.mismatches().collect();
        if mismatches.is_empty() {
            let (count, in_flight) = verification
                .tenants
                .iter()
                .fold((0, 0), |(c, f), t| (c + t.store.count, f + t.in_flight));
            text += &format!(
                "  verified             {}: {tenants} tenant(s) match the store ({count} (stream, version) pairs, count and checksum; {in_flight} changed meanwhile)\n",
                verification.projection
            );
        } else {
            text += &format!(
                "  MISMATCH             {}: {} of {tenants} tenant(s) differ from the store\n",
                verification.projection,
                mismatches.len()
            );
            for check in mismatches {
                text += &format!(
                    "    {}: store {} / {:016x}, projection {} / {:016x}; missing [{}]; extra [{}]\n",
                    check.tenant,
                    check.store.count,
                    check.store.checksum,
                    check.projection.count,
                    check.projection.checksum,
                    check.missing.join(", "),
                    check.extra.join(", "),
                );
            }
        }
    }
    text
}

async fn run(config: ProjectorConfig) -> ExitCode {
    let projector = match Projector::build(&config, &Projection::ALL).await {
        Ok(projector) => projector,
        Err(error) => {
            tracing::error!(%error, "projector could not start");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match projector.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "projector failed");
            ExitCode::FAILURE
        }
    }
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

async fn cancel_on_signal(shutdown: CancellationToken) {
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
