//! Stopping: SIGTERM or SIGINT cancel one [`CancellationToken`] that every task of the
//! process watches (cloned into each, as mini-redis broadcasts its shutdown), and
//! [`within_grace`] puts a ceiling on how long the orderly part may take, so a process told
//! to stop always does.

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

/// How long a process may take to stop once told to: requests in flight finish, batches
/// are committed, then it exits whatever is still running.
pub const GRACE: Duration = Duration::from_secs(15);

/// Runs `work` to its end, but once `shutdown` is cancelled gives it at most `grace` more;
/// `None` when it had to be abandoned (the caller exits anyway: a process told to stop
/// always does, whatever a dependency is doing).
pub async fn within_grace<T>(
    work: impl Future<Output = T>,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Option<T> {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        outcome = work => Some(outcome),
        () = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "did not stop in time; exiting anyway");
            None
        }
    }
}

/// A process's main work, from start to exit: stopped by SIGTERM or SIGINT, given
/// [`GRACE`] to finish, then the process exits, at once, with 0 when the work ended well.
/// Exiting here rather than returning from `main` matters: a runtime being dropped waits
/// for blocking calls still running (a Kafka client's timeouts), which would stretch the
/// stop past the grace.
pub async fn run_to_exit<E, F>(
    process: &'static str,
    work: impl FnOnce(CancellationToken) -> F,
) -> !
where
    E: std::fmt::Display,
    F: Future<Output = Result<(), E>>,
{
    let shutdown = on_signals(process);
    let code = match within_grace(work(shutdown.clone()), &shutdown, GRACE).await {
        None => 1,
        Some(Ok(())) => {
            tracing::info!(process, "stopped");
            0
        }
        Some(Err(error)) => {
            tracing::error!(process, %error, "failed");
            1
        }
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_is_abandoned_only_after_the_grace_following_shutdown() {
        let shutdown = CancellationToken::new();
        let quick = within_grace(async { 7 }, &shutdown, GRACE).await;
        assert_eq!(quick, Some(7));
        shutdown.cancel();
        let stuck = within_grace(std::future::pending::<()>(), &shutdown, GRACE).await;
        assert_eq!(stuck, None);
    }
}
