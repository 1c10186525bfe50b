//! The engine, generic over the ports, one module per phase: this one runs a sync (lease,
//! skip, duplicate deliveries) through `plan` (the window, the run id), `fetch` (pages →
//! records → batches → objects, through the objects in flight of `writer`; the window in
//! time slices with `slices`) and `commit` (fingerprints, manifest, fenced checkpoint);
//! `summary` holds what a run reports, `backfill` the steps of a backfill.
//!
//! Guarantees of one run:
//! * a run that writes first takes the lease on the state ([`crate::state::acquire`]); a live
//!   lease of another run, or a checkpoint already taken by this very invocation, makes it
//!   `skipped` before anything is fetched — except an audit, which fails with `StateBusy` on
//!   a live lease, so that it is retried rather than silently not done that day;
//! * the cursor only moves by a checkpoint, taken after every data object and the manifest
//!   are durable, fenced on the state version the run loaded and on its lease;
//! * the new cursor is the greatest `updatedAt` durably in the lake from this window —
//!   written now, or already there per the fingerprints (see [`crate::window::next_cursor`]);
//! * rows the previous runs already wrote are not written again, rows older than what was
//!   written are counted as stale, rows that arrived late are counted and measured
//!   ([`crate::fingerprint`]);
//! * object keys depend only on the plan (starting version and window), and every object is
//!   written only if its key is free: a retry that finds an identical object there moves on,
//!   one that finds different bytes writes beside it (`…~1.jsonl`), so no key ever holds two
//!   different bodies and nothing is lost;
//! * near the deadline the run stops fetching, flushes and checkpoints what is durable
//!   (`partial`) — moving the cursor only if the records arrived in ascending `updatedAt`;
//! * a failure returns an error before the checkpoint and releases the lease: the cursor
//!   stays, nothing is lost.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tracing::{info, warn};

use crate::config::BatchLimits;
use crate::error::Result;
use crate::event::RunRequest;
use crate::sink::Sink;
use crate::source::Source;
use crate::state::{self, Acquired, Claimant, Plan, StateStore, SyncState};
use crate::window;

mod backfill;
mod commit;
mod fetch;
mod plan;
mod sliced;
mod slices;
mod summary;
mod writer;

pub use backfill::{BackfillPlan, Part, Planned, SliceOutcome, backfill_id};
use plan::Job;
pub use summary::{Counts, Manifest, ManifestWindow, ObjectEntry, RunSummary, Status};
use tokio::time::Instant as Deadline;

/// What the engine needs besides the ports.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sync_id: String,
    pub buffer: TimeDelta,
    pub batch: BatchLimits,
    /// Stop fetching when less than this is left before the invocation's deadline.
    pub deadline_margin: Duration,
    /// Bound on the fingerprint set handed from run to run (0: no fingerprints: every
    /// record in the window is written, lateness is not measured).
    pub fingerprint_max: usize,
    /// Time slices read at once when the source takes an upper bound (1: one stream).
    pub fetch_concurrency: usize,
    /// How data and rejected objects are stored (`OUTPUT_COMPRESSION`).
    pub format: crate::format::Format,
    /// How far back an audit run re-reads (`AUDIT_HOURS`); the fingerprints remember what
    /// was written that far back (within `fingerprint_max`).
    pub audit: TimeDelta,
}

impl Settings {
    /// How far before the cursor `req`'s window starts: its own buffer, the audit depth for
    /// an audit, else `BUFFER_HOURS`.
    pub fn window(&self, req: &RunRequest) -> TimeDelta {
        match (req.buffer, req.audit) {
            (Some(b), _) => b,
            (None, true) => self.audit.max(self.buffer),
            (None, false) => self.buffer,
        }
    }

    /// How far back the fingerprints must remember what was written: what the next normal
    /// run re-reads, or what an audit does.
    pub fn remembered(&self) -> TimeDelta {
        self.audit.max(self.buffer)
    }
}

/// How long a lease lasts when the invocation has no deadline (the local mode): Lambda's
/// longest timeout.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15 * 60);
/// Added to the deadline for the lease's expiry (clock skew between Lambda hosts).
pub const LEASE_GRACE: Duration = Duration::from_secs(2);

/// One invocation: who runs (the request id owns the lease) and until when.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The Lambda request id (a retry of an async invocation keeps it).
    pub request_id: String,
    /// The clock reading at the start.
    pub started_at: DateTime<Utc>,
    /// When the invocation will be stopped, if known.
    pub deadline: Option<Deadline>,
    /// When this run's lease expires.
    pub lease_until: DateTime<Utc>,
}

impl Invocation {
    /// An invocation starting now with `remaining` time before it is stopped (if known).
    pub fn new(request_id: impl Into<String>, remaining: Option<Duration>) -> Self {
        let started_at = Utc::now();
        let lease = remaining.map_or(DEFAULT_LEASE, |r| r + LEASE_GRACE);
        Invocation {
            request_id: request_id.into(),
            started_at,
            deadline: remaining.map(|r| Deadline::now() + r),
            lease_until: started_at + TimeDelta::from_std(lease).unwrap_or(TimeDelta::MAX),
        }
    }

    /// A fresh random request id (the local mode has none).
    pub fn random_id() -> String {
        format!("local-{:016x}", fastrand::u64(..))
    }
}

/// The engine, borrowing its ports.
pub struct Engine<'a, St, So, Si> {
    pub state: &'a St,
    pub source: &'a So,
    pub sink: &'a Si,
    pub settings: &'a Settings,
}

impl<St: StateStore, So: Source, Si: Sink + Clone + 'static> Engine<'_, St, So, Si> {
    /// Runs one sync for `inv`. Dry runs read the state without taking the lease.
    pub async fn run(&self, req: &RunRequest, inv: &Invocation) -> Result<RunSummary> {
        let clock = Instant::now();
        let sync_id = &self.settings.sync_id;
        let buffer = self.settings.window(req);
        if req.dry_run {
            let stored = self.state.load(sync_id).await?;
            let plan = Job::dry_plan(req, inv, &stored, self.settings);
            return self.run_planned(req, inv, &stored, &plan, clock).await;
        }

        // A duplicate of a scheduled event has the same event id; a retry of an async
        // invocation has the same request id.
        let invocation = req.event_id.as_deref().unwrap_or(&inv.request_id);
        let claimant = Claimant {
            owner: &inv.request_id,
            invocation,
            now: inv.started_at,
            expires_at: inv.lease_until,
            state_override: req.state_override,
            buffer,
        };
        match state::acquire(self.state, sync_id, &claimant).await? {
            Acquired::Leased { state, plan } => {
                let result = self.run_planned(req, inv, &state, &plan, clock).await;
                if result.is_err()
                    && let Err(e) = self.state.release(sync_id, &inv.request_id).await
                {
                    warn!(error = %e, "could not release the lease; it expires with the deadline");
                }
                result
            }
            Acquired::Held { state, lease } => {
                let reason = format!(
                    "another run ({}) holds the state until {}",
                    lease.owner,
                    window::format_millis(lease.expires_at)
                );
                if req.audit {
                    // A skipped scheduled run is made good by the next tick; a skipped
                    // audit would not happen that day at all. An error is retried (Lambda
                    // retries an asynchronous invocation twice, then the dead-letter queue).
                    return Err(crate::error::Error::Busy {
                        message: format!("{reason}: the audit did not run; retry it later"),
                    });
                }
                info!(sync_id = %sync_id, reason = %reason, "run skipped");
                Ok(self.skipped(req, inv, &state, buffer, reason, clock))
            }
            Acquired::Done { state } => {
                let reason = format!(
                    "invocation {invocation} already took the last checkpoint (a duplicate delivery or a retry)"
                );
                info!(sync_id = %sync_id, reason = %reason, "run skipped");
                Ok(self.skipped(req, inv, &state, buffer, reason, clock))
            }
        }
    }

    fn skipped(
        &self,
        req: &RunRequest,
        inv: &Invocation,
        state: &SyncState,
        buffer: TimeDelta,
        reason: String,
        clock: Instant,
    ) -> RunSummary {
        let fmt = |c: Option<DateTime<Utc>>| c.map(window::format_ts);
        let mut s = RunSummary::new(&self.settings.sync_id, req, buffer);
        s.status = Status::Skipped;
        s.started_at = window::format_millis(inv.started_at);
        s.previous_cursor = fmt(req.state_override.or(state.cursor));
        s.new_cursor = fmt(state.cursor);
        s.state_version = state.version;
        s.reason = Some(reason);
        s.duration_ms = clock.elapsed().as_millis() as u64;
        s
    }

    /// Fetches, writes and (unless a dry run) checkpoints the window of `plan`, starting
    /// from `stored`, whose lease (unless a dry run) this run holds.
    async fn run_planned(
        &self,
        req: &RunRequest,
        inv: &Invocation,
        stored: &SyncState,
        plan: &Plan,
        clock: Instant,
    ) -> Result<RunSummary> {
        let job = Job::new(req, inv, stored, plan);
        info!(
            sync_id = %self.settings.sync_id,
            run_id = %job.run_id,
            since = job.since.map(window::format_ts).as_deref().unwrap_or("(full sync)"),
            state_version = stored.version,
            dry_run = req.dry_run,
            "run planned"
        );
        let mut fetched = self.fetch(&job).await?;
        let (mut summary, new_cursor) = self.report(&job, &mut fetched);
        if req.dry_run {
            summary.status = Status::DryRun;
            summary.planned_cursor = new_cursor.map(window::format_ts);
        } else {
            summary = self.commit(&job, &mut fetched, new_cursor, summary).await?;
        }
        summary.duration_ms = clock.elapsed().as_millis() as u64;
        Ok(summary)
    }
}

/// Late rows stamped this far into the buffer (as a fraction of it) make the run warn.
pub const LATENESS_WARNING: f64 = 0.8;

/// A timestamp as the summary and the manifest write it.
pub(super) fn fmt(c: Option<DateTime<Utc>>) -> Option<String> {
    c.map(window::format_ts)
}
