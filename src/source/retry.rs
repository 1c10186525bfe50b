//! Retrying one request: capped exponential backoff with full jitter, `Retry-After` honoured,
//! and a budget that never sleeps past the caller's deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::error::{Error, Result};

/// Backoff before retry `n` (1-based) is uniform in `[0, min(CAP, BASE·2^(n-1))]`.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
pub const BACKOFF_CAP: Duration = Duration::from_secs(20);
/// A `Retry-After` longer than this is cut to it.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(120);
/// Time left for the rest of the run after the last retry (flush, manifest, checkpoint).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T> {
    Done(T),
    /// A transient failure (429, 5xx, timeout, reset): try again after the backoff, or after
    /// `retry_after` when the server said so.
    Retry {
        error: Error,
        retry_after: Option<Duration>,
    },
    /// A failure that retrying cannot fix.
    Fail(Error),
}

/// Runs `attempt(n)` (n = 1, 2, …) until it is done, fails for good, `max_attempts` are used
/// up, or the next wait would end within [`DEADLINE_MARGIN`] of `deadline`.
pub async fn with_retries<T, F, Fut>(
    max_attempts: u32,
    deadline: Option<Instant>,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut n = 0;
    loop {
        n += 1;
        let (error, retry_after) = match attempt(n).await {
            Attempt::Done(v) => return Ok(v),
            Attempt::Fail(e) => return Err(e),
            Attempt::Retry { error, retry_after } => (error, retry_after),
        };
        if n >= max_attempts {
            return Err(error);
        }
        let delay = delay(n, retry_after);
        if let Some(deadline) = deadline
            && Instant::now() + delay + DEADLINE_MARGIN > deadline
        {
            return Err(Error::RetryBudget {
                seconds_left: deadline.saturating_duration_since(Instant::now()).as_secs(),
                last: Box::new(error),
            });
        }
        warn!(attempt = n, delay_ms = delay.as_millis() as u64, error = %error, "retrying API request");
        tokio::time::sleep(delay).await;
    }
}

/// The wait before retry number `n` (1-based): `Retry-After` when the server sent one
/// (capped), else full jitter over a capped exponential.
pub fn delay(n: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(RETRY_AFTER_CAP);
    }
    let exp = BACKOFF_BASE.saturating_mul(1u32 << n.saturating_sub(1).min(16));
    exp.min(BACKOFF_CAP).mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn transient() -> Attempt<u32> {
        Attempt::Retry {
            error: Error::state("503"),
            retry_after: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_within_the_cap_and_succeeds() {
        let calls = AtomicU32::new(0);
        let t0 = Instant::now();
        let v = with_retries(10, None, |n| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 5 { transient() } else { Attempt::Done(n) } }
        })
        .await
        .unwrap();
        assert_eq!(v, 5);
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        // Four waits, each at most 250 ms · 2^(k-1): at most 3.75 s of (paused) time.
        assert!(
            t0.elapsed() <= Duration::from_millis(250 + 500 + 1000 + 2000),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_exactly() {
        let t0 = Instant::now();
        let v = with_retries(3, None, |n| async move {
            if n == 1 {
                Attempt::Retry {
                    error: Error::state("429"),
                    retry_after: Some(Duration::from_secs(7)),
                }
            } else {
                Attempt::Done(n)
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 2);
        assert_eq!(t0.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded_and_the_last_error_is_kept() {
        let err = with_retries(3, None, |_| async { transient() })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "state store: 503");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let err = with_retries(5, None, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Attempt::<u32>::Fail(Error::state("404")) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(err.to_string().contains("404"));
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_runs_past_the_deadline() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(40);
        let err = with_retries(100, Some(deadline), |_| async {
            Attempt::<u32>::Retry {
                error: Error::state("429"),
                retry_after: Some(Duration::from_secs(20)),
            }
        })
        .await
        .unwrap_err();
        // Waited once (20 s); a second 20 s wait would end 0 s before the deadline, inside
        // the 10 s margin, so it gave up at t = 20 s.
        assert_eq!(t0.elapsed(), Duration::from_secs(20));
        assert!(matches!(err, Error::RetryBudget { .. }), "{err}");
        assert!(err.to_string().contains("429"), "{err}");
    }

    #[test]
    fn delays_are_capped_and_jittered() {
        for n in 1..40 {
            let d = delay(n, None);
            assert!(d <= BACKOFF_CAP);
            assert!(d <= BACKOFF_BASE * 2u32.pow(n.min(20) - 1).max(1));
        }
        let spread: std::collections::HashSet<u128> =
            (0..50).map(|_| delay(6, None).as_micros()).collect();
        assert!(spread.len() > 40, "full jitter spreads the waits");
        assert_eq!(
            delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(delay(1, Some(Duration::from_secs(3600))), RETRY_AFTER_CAP);
    }
}
