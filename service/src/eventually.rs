//! Waiting for something another task or process makes true (a consumer catching up, an
//! index refreshing, a peer learning of a change): poll, back off a little, give up at a
//! deadline and say what was last seen. Tests use it instead of hand-written deadline
//! loops and fixed sleeps, so a wait that does not succeed fails with a reason.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The first pause between probes; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// Calls `probe` until it returns `Ok`, for at most `within`; returns that value, or the
/// last `Err` (what was seen instead) once `within` has passed. The probe runs at least
/// once, and once more at the deadline.
pub async fn eventually<T, E, Fut>(within: Duration, mut probe: impl FnMut() -> Fut) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    let mut pause = FIRST_PAUSE;
    loop {
        let outcome = probe().await;
        let now = Instant::now();
        if outcome.is_ok() || now >= deadline {
            return outcome;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_as_soon_as_the_probe_succeeds() {
        let calls = AtomicU32::new(0);
        let outcome: Result<u32, u32> = eventually(Duration::from_secs(5), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 3 { Ok(n) } else { Err(n) }
        })
        .await;
        assert_eq!(outcome, Ok(3));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_deadline_with_what_it_last_saw() {
        let started = Instant::now();
        let calls = AtomicU32::new(0);
        let outcome: Result<(), u32> = eventually(Duration::from_secs(2), || async {
            Err(calls.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .await;
        let last = outcome.unwrap_err();
        assert_eq!(last, calls.load(Ordering::SeqCst));
        assert!(last > 5, "it kept probing: {last}");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2),
            "no later than the deadline"
        );
    }
}
