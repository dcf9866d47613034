//! Stopping: SIGTERM or SIGINT cancel one [`CancellationToken`] that every task of the
//! process watches (cloned into each, as mini-redis broadcasts its shutdown), and
//! [`bounded`] puts a ceiling on how long the orderly part may take, so a process told to
//! stop always does.

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT. `what` names the process in the log.
pub fn on_signals(what: &'static str) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!(
                process = what,
                "cannot listen for signals; stop with SIGKILL"
            );
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!(process = what, "shutting down");
        token.cancel();
    });
    shutdown
}

/// Runs `stopping` for at most `limit`; true when it finished in time. What is still
/// running after that is abandoned (the caller exits).
pub async fn bounded(limit: Duration, stopping: impl Future<Output = ()>) -> bool {
    match tokio::time::timeout(limit, stopping).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                limit_secs = limit.as_secs(),
                "did not stop in time; exiting anyway"
            );
            false
        }
    }
}
