//! The plan phase: what one run will read and how it names what it writes — pure, from the
//! request, the invocation and the state it starts from (the window math is
//! [`crate::window`]'s).

use chrono::{DateTime, Utc};
use tokio::time::Instant as Deadline;

use super::{Invocation, Settings};
use crate::event::RunRequest;
use crate::state::{Plan, SyncState};
use crate::window;

/// One run's plan as the phases see it: the request, the invocation, the state it started
/// from, the window, and the run id that names its objects.
pub(super) struct Job<'r> {
    pub(super) req: &'r RunRequest,
    pub(super) inv: &'r Invocation,
    pub(super) stored: &'r SyncState,
    /// The window start (`None`: a full sync).
    pub(super) since: Option<DateTime<Utc>>,
    /// The planning run's start: bounds the cursor, stamps `_synced_at`.
    pub(super) started_at: DateTime<Utc>,
    /// Names the run's objects and manifest: the starting version and the window start, so a
    /// retry of the same plan names the same keys.
    pub(super) run_id: String,
}

impl<'r> Job<'r> {
    /// The job of `plan` (the window the lease was taken for, or a dry run's), starting
    /// from `stored`.
    pub(super) fn new(
        req: &'r RunRequest,
        inv: &'r Invocation,
        stored: &'r SyncState,
        plan: &Plan,
    ) -> Self {
        Job {
            req,
            inv,
            stored,
            since: plan.since,
            started_at: plan.until,
            run_id: run_id(stored.version, plan.since),
        }
    }

    /// The plan of a dry run, which takes no lease: the window as a run would plan it now.
    pub(super) fn dry_plan(
        req: &RunRequest,
        inv: &Invocation,
        stored: &SyncState,
        settings: &Settings,
    ) -> Plan {
        Plan {
            version: stored.version,
            since: window::since(req.state_override.or(stored.cursor), settings.window(req)),
            until: inv.started_at,
        }
    }

    /// The cursor the run started from: the stored one, or the override.
    pub(super) fn previous(&self) -> Option<DateTime<Utc>> {
        self.req.state_override.or(self.stored.cursor)
    }

    /// The ranges an earlier partial run completed, which this run need not read again: none
    /// in a manual replay (an override, a rewind or another buffer reads everything) or an
    /// audit (it looks for exactly the rows that arrived after a range was read), and none
    /// that were cut with a shorter buffer than `BUFFER_HOURS` is now (a row later than that
    /// buffer may still have arrived in them).
    pub(super) fn skip(&self, settings: &Settings) -> &'r [crate::window::Span] {
        let manual = self.req.state_override.is_some()
            || self.req.rewind
            || self.req.buffer.is_some()
            || self.req.audit;
        if manual {
            &[]
        } else {
            self.stored.done.usable(settings.buffer)
        }
    }

    /// How fetched records are judged in this run.
    pub(super) fn judge(&self, settings: &Settings) -> Judge {
        // A manual replay (an overridden state) writes everything it reads and measures no
        // lateness, but still hands on what it wrote.
        let replay = self.req.state_override.is_some();
        Judge {
            fingerprinting: settings.fingerprint_max > 0,
            skip_known: !replay,
            late_since: self.stored.cursor.filter(|_| !replay),
            missed_before: self
                .stored
                .cursor
                .filter(|_| self.req.audit)
                .and_then(|c| window::since(Some(c), settings.buffer)),
        }
    }

    /// When the fetch phase stops reading (the invocation's deadline less the margin, which
    /// is at most a quarter of the time left, so a short timeout still leaves time to fetch).
    pub(super) fn stop_at(&self, settings: &Settings) -> Option<Deadline> {
        self.inv.deadline.map(|d| {
            let left = d.saturating_duration_since(Deadline::now());
            d - settings.deadline_margin.min(left / 4)
        })
    }
}

/// `000000000042-20240115T100000Z`, or `…-full` for a full sync.
fn run_id(version: u64, since: Option<DateTime<Utc>>) -> String {
    format!(
        "{version:012}-{}",
        since.map_or_else(|| "full".to_string(), window::format_compact)
    )
}

/// How fetched records are judged in one run.
pub(super) struct Judge {
    /// Fingerprints are kept (`FINGERPRINT_MAX` > 0).
    pub(super) fingerprinting: bool,
    /// Rows the lake already holds are not written again (not in a manual replay).
    pub(super) skip_known: bool,
    /// Rows stamped before this and unknown to the fingerprints are late.
    pub(super) late_since: Option<DateTime<Utc>>,
    /// An audit: late rows stamped before this (the cursor less the buffer: older than what
    /// the normal runs re-read) were missed by the buffer.
    pub(super) missed_before: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_name_the_version_and_the_window_start() {
        let t = "2024-01-15T10:00:00Z".parse().unwrap();
        assert_eq!(run_id(42, Some(t)), "000000000042-20240115T100000Z");
        assert_eq!(run_id(0, None), "000000000000-full");
    }
}
