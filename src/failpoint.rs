//! Fault injection for the crash tests, off unless `REPLAY_SYNC_FAILPOINT` is set.
//!
//! `REPLAY_SYNC_FAILPOINT=NAME[:N]` makes the run halt the N-th time (default: the first)
//! it passes the point NAME: it prints `failpoint NAME:N reached` on stderr and waits
//! forever, so that a test can SIGKILL the process at exactly that step. Points:
//! * `object` — a data object has just become durable;
//! * `manifest` — the manifest has just become durable;
//! * `checkpoint` — the checkpoint has just been committed (before the summary).
//!
//! The variable is read once; when it is unset each point costs one comparison.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static PASSED: AtomicU64 = AtomicU64::new(0);

fn spec() -> Option<&'static (String, u64)> {
    SPEC.get_or_init(|| {
        let v = std::env::var("REPLAY_SYNC_FAILPOINT").ok()?;
        let (name, n) = match v.split_once(':') {
            Some((name, n)) => (name.to_string(), n.parse().ok()?),
            None => (v, 1),
        };
        Some((name, n))
    })
    .as_ref()
}

/// Marks that the run passed the point `name`.
pub(crate) async fn reached(name: &str) {
    let Some((target, n)) = spec() else { return };
    if target != name {
        return;
    }
    let passed = PASSED.fetch_add(1, Ordering::SeqCst) + 1;
    if passed == *n {
        eprintln!("failpoint {name}:{passed} reached");
        std::future::pending::<()>().await;
    }
}
