//! Retrying what failed for a reason that passes (PostgreSQL, Kafka or Elasticsearch away):
//! exponential backoff with jitter from 200 ms to 10 s, for as long as it takes, but never
//! past shutdown.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// The delays between attempts.
pub fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
}

/// Successive delays of [`policy`]; [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    delays: ExponentialBackoff,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self {
            delays: policy().build(),
        }
    }

    pub fn reset(&mut self) {
        self.delays = policy().build();
    }

    /// Sleeps for the next delay; false when shutdown came first (stop retrying).
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.delays.next().unwrap_or(Duration::from_secs(10));
        pause(delay, shutdown).await
    }
}

/// Sleeps for `delay`; false when shutdown came first.
pub async fn pause(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// Runs `attempt` until it succeeds, logging each failure as `what`; `None` on shutdown.
///
/// `attempt` returns a future (not an async closure) so the caller's future stays `Send`
/// when it borrows what the attempts share.
pub async fn until_ok<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    shutdown: &CancellationToken,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Option<T> {
    let mut backoff = Backoff::new();
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(%error, "{what} failed; retrying");
                if !backoff.wait(shutdown).await {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_and_gives_up_on_shutdown() {
        let shutdown = CancellationToken::new();
        let mut failures = 3;
        let value = until_ok(&shutdown, "test", || {
            let outcome = if failures > 0 {
                failures -= 1;
                Err("not yet")
            } else {
                Ok(7)
            };
            std::future::ready(outcome)
        })
        .await;
        assert_eq!(value, Some(7));
        assert_eq!(failures, 0);

        shutdown.cancel();
        let never: Option<()> =
            until_ok(&shutdown, "test", || std::future::ready(Err("down"))).await;
        assert_eq!(never, None);
    }
}
