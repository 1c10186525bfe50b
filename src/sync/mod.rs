//! The engine: plan → fetch → batch → write → manifest → checkpoint, generic over the ports.
//! Objects in flight live in `writer.rs`, what a run reports in `summary.rs`.
//!
//! Guarantees of one run:
//! * a run that writes first takes the lease on the state ([`crate::state::acquire`]); a live
//!   lease of another run, or a checkpoint already taken by this very invocation, makes it
//!   `skipped` before anything is fetched;
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

use crate::batch::Batcher;
use crate::config::BatchLimits;
use crate::error::Result;
use crate::event::RunRequest;
use crate::failpoint;
use crate::fingerprint::{Fingerprints, Verdict};
use crate::record::{Entry, Rejected};
use crate::sink::{self, Sink, put_once};
use crate::source::{Pages, Source};
use crate::state::{self, Acquired, Checkpoint, Claimant, Commit, Plan, StateStore, SyncState};
use crate::window;

mod summary;
mod writer;

pub use summary::{Manifest, ManifestWindow, ObjectEntry, RunSummary, Status};
use tokio::time::Instant as Deadline;
use writer::Written;

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

/// One run's plan as the phases see it: the request, the invocation, the state it started
/// from, the window, and the run id that names its objects.
struct Job<'r> {
    req: &'r RunRequest,
    inv: &'r Invocation,
    stored: &'r SyncState,
    /// The window start (`None`: a full sync).
    since: Option<DateTime<Utc>>,
    /// The planning run's start: bounds the cursor, stamps `_synced_at`.
    started_at: DateTime<Utc>,
    run_id: String,
}

impl Job<'_> {
    /// The cursor the run started from: the stored one, or the override.
    fn previous(&self) -> Option<DateTime<Utc>> {
        self.req.state_override.or(self.stored.cursor)
    }
}

/// What the fetch phase leaves for the report and the commit: the durable objects, the
/// fingerprints, and the counts.
struct Fetched<Si: Sink + Clone + 'static> {
    written: Written<Si>,
    fps: Fingerprints,
    /// A hash of the fingerprint set as loaded (to keep it when nothing changed).
    loaded_hash: Option<u128>,
    previous_coverage: Option<DateTime<Utc>>,
    fetched: u64,
    pages: u64,
    bytes: u64,
    deduplicated: u64,
    unchanged: u64,
    stale: u64,
    late: u64,
    max_lateness: TimeDelta,
    /// The greatest `updatedAt` of records not written because the lake already holds them.
    known_max: Option<DateTime<Utc>>,
    /// Every record came in ascending `updatedAt` order: only then does "everything up to
    /// the greatest `updatedAt` written" hold when stopping early.
    ascending: bool,
    last_seen: Option<DateTime<Utc>>,
    stopped_early: bool,
}

impl<Si: Sink + Clone + 'static> Fetched<Si> {
    /// One fetched entry: judged against the fingerprints, batched (a full batch starts
    /// being written), or set aside as rejected.
    async fn take(
        &mut self,
        entry: Entry,
        judge: &Judge,
        batcher: &mut Batcher,
        rejected: &mut Vec<Rejected>,
        limits: crate::config::BatchLimits,
    ) -> Result<()> {
        match entry {
            Entry::Valid(r) => {
                batcher.fetched(r.json_len());
                if self.last_seen.is_some_and(|l| r.updated_at < l) {
                    self.ascending = false;
                }
                self.last_seen = self.last_seen.max(Some(r.updated_at));
                let verdict = if judge.fingerprinting {
                    self.fps.check(&r, judge.late_since, judge.skip_known)
                } else {
                    Verdict::Write { late: None }
                };
                match verdict {
                    Verdict::Write { late: lateness } => {
                        if let Some(l) = lateness {
                            self.late += 1;
                            self.max_lateness = self.max_lateness.max(l);
                        }
                        if let Some(full) = batcher.push(r) {
                            self.written.data(full).await?;
                        }
                    }
                    Verdict::Unchanged => {
                        self.unchanged += 1;
                        self.known_max = self.known_max.max(Some(r.updated_at));
                    }
                    Verdict::Stale => {
                        self.stale += 1;
                        self.known_max = self.known_max.max(Some(r.updated_at));
                    }
                }
            }
            Entry::Rejected(r) => {
                rejected.push(r);
                if rejected.len() >= limits.max_records {
                    self.written.rejected(std::mem::take(rejected)).await?;
                }
            }
        }
        Ok(())
    }
}

/// How fetched records are judged in one run.
struct Judge {
    /// Fingerprints are kept (`FINGERPRINT_MAX` > 0).
    fingerprinting: bool,
    /// Rows the lake already holds are not written again (not in a manual replay).
    skip_known: bool,
    /// Rows stamped before this and unknown to the fingerprints are late.
    late_since: Option<DateTime<Utc>>,
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
        let buffer = req.buffer.unwrap_or(self.settings.buffer);
        if req.dry_run {
            let stored = self.state.load(sync_id).await?;
            let plan = Plan {
                version: stored.version,
                since: window::since(req.state_override.or(stored.cursor), buffer),
                until: inv.started_at,
            };
            return self.execute(req, inv, &stored, &plan, clock).await;
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
                let result = self.execute(req, inv, &state, &plan, clock).await;
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
    async fn execute(
        &self,
        req: &RunRequest,
        inv: &Invocation,
        stored: &SyncState,
        plan: &Plan,
        clock: Instant,
    ) -> Result<RunSummary> {
        let sync_id = &self.settings.sync_id;
        let since = plan.since;
        let run_id = format!(
            "{:012}-{}",
            stored.version,
            since.map_or_else(|| "full".to_string(), window::format_compact)
        );
        info!(
            sync_id = %sync_id,
            run_id = %run_id,
            since = since.map(window::format_ts).as_deref().unwrap_or("(full sync)"),
            state_version = stored.version,
            dry_run = req.dry_run,
            "run planned"
        );

        let job = Job {
            req,
            inv,
            stored,
            since,
            started_at: plan.until,
            run_id,
        };
        let mut fetched = self.fetch(&job).await?;
        let (mut summary, new_cursor) = self.report(&job, &fetched);

        if req.dry_run {
            summary.status = Status::DryRun;
            summary.planned_cursor = new_cursor.map(window::format_ts);
            summary.duration_ms = clock.elapsed().as_millis() as u64;
            return Ok(summary);
        }

        self.commit(&job, &mut fetched, new_cursor, summary, clock)
            .await
    }

    /// The fetch phase: pages → records → batches → objects, until the window is read or the
    /// deadline is near. Returns what is durable and the counts; checkpoints nothing.
    async fn fetch(&self, job: &Job<'_>) -> Result<Fetched<Si>> {
        let sync_id = &self.settings.sync_id;
        let (req, inv, stored) = (job.req, job.inv, job.stored);
        let (since, started_at) = (job.since, job.started_at);
        let run_id = job.run_id.clone();
        let limits = self.settings.batch;
        let mut batcher = Batcher::new(limits);
        let mut rejected: Vec<Rejected> = Vec::new();
        // The margin is at most a quarter of the time the run had, so a short timeout still
        // leaves it time to fetch.
        let stop_at = inv.deadline.map(|d| {
            let left = d.saturating_duration_since(Deadline::now());
            d - self.settings.deadline_margin.min(left / 4)
        });
        // What the overlap already wrote. A manual replay writes everything it reads (and
        // measures no lateness), but still hands on what it wrote.
        let (fps, loaded_hash) = self.load_fingerprints(stored).await;
        let judge = Judge {
            fingerprinting: self.settings.fingerprint_max > 0,
            skip_known: req.state_override.is_none(),
            late_since: if req.state_override.is_none() {
                stored.cursor
            } else {
                None
            },
        };
        let mut f = Fetched {
            written: Written::new(
                self.sink.clone(),
                req.dry_run,
                format!("{sync_id}/"),
                run_id.clone(),
                window::format_millis(started_at),
            ),
            previous_coverage: fps.covers_from(),
            fps,
            loaded_hash,
            fetched: 0,
            pages: 0,
            bytes: 0,
            deduplicated: 0,
            unchanged: 0,
            stale: 0,
            late: 0,
            max_lateness: TimeDelta::zero(),
            known_max: None,
            ascending: true,
            last_seen: None,
            stopped_early: false,
        };

        let mut reader = self.source.open(since, inv.deadline);
        let mut page_records = 0u64;
        loop {
            let next = match stop_at {
                Some(at) => match tokio::time::timeout_at(at, reader.next_chunk()).await {
                    Ok(next) => next?,
                    Err(_) => {
                        f.stopped_early = true;
                        break;
                    }
                },
                None => reader.next_chunk().await?,
            };
            let Some(chunk) = next else { break };
            f.fetched += chunk.entries.len() as u64;
            page_records += chunk.entries.len() as u64;
            if let Some(end) = chunk.page_end {
                f.pages += 1;
                f.bytes += end.bytes;
                info!(
                    page = f.pages,
                    records = page_records,
                    bytes = end.bytes,
                    "fetched page"
                );
                page_records = 0;
            }
            for entry in chunk.entries {
                f.take(entry, &judge, &mut batcher, &mut rejected, limits)
                    .await?;
            }
            if judge.fingerprinting {
                // The final cursor will be at least this: older fingerprints are not needed.
                let floor = f
                    .last_seen
                    .map(|t| t.min(started_at))
                    .max(stored.cursor.filter(|_| !req.rewind));
                f.fps.bound(
                    window::since(floor, self.settings.buffer),
                    self.settings.fingerprint_max,
                );
            }
            if stop_at.is_some_and(|at| Deadline::now() >= at) {
                f.stopped_early = true;
                break;
            }
        }
        drop(reader);
        if let Some(last) = batcher.take() {
            f.written.data(last).await?;
        }
        if !rejected.is_empty() {
            f.written.rejected(rejected).await?;
        }
        f.written.finish().await?;
        f.deduplicated = batcher.deduplicated();
        Ok(f)
    }

    /// The run summary of what was fetched, and the cursor a checkpoint would store.
    fn report(&self, job: &Job<'_>, f: &Fetched<Si>) -> (RunSummary, Option<DateTime<Utc>>) {
        let sync_id = &self.settings.sync_id;
        let (req, stored, run_id) = (job.req, job.stored, job.run_id.as_str());
        let previous = job.previous();
        let buffer = req.buffer.unwrap_or(self.settings.buffer);
        let (since, started_at) = (job.since, job.started_at);
        let Fetched {
            written,
            fetched,
            pages,
            bytes,
            unchanged,
            stale,
            late,
            max_lateness,
            known_max,
            ascending,
            stopped_early,
            ..
        } = f;
        let (fetched, pages, bytes, unchanged, stale, late) =
            (*fetched, *pages, *bytes, *unchanged, *stale, *late);
        let (max_lateness, known_max, ascending, stopped_early) =
            (*max_lateness, *known_max, *ascending, *stopped_early);
        let mut reason = None;
        let durable_max = if stopped_early && !ascending {
            reason = Some(
                "stopped at the deadline; the records did not arrive in ascending updatedAt order, so the cursor stays (the next run re-reads the window)".to_string(),
            );
            None
        } else {
            written.max_updated_at.max(known_max)
        };
        if stopped_early {
            warn!(
                sync_id = %sync_id,
                records_written = written.records,
                ascending,
                "stopping early: the invocation deadline is near; checkpointing what is durable"
            );
        }
        let new_cursor = window::next_cursor(stored.cursor, durable_max, started_at, req.rewind);
        let fmt = |c: Option<DateTime<Utc>>| c.map(window::format_ts);
        let mut summary = RunSummary::new(sync_id, req, buffer);
        summary.status = if stopped_early {
            Status::Partial
        } else {
            Status::Completed
        };
        summary.reason = reason;
        summary.run_id = run_id.to_string();
        summary.started_at = written.synced_at.clone();
        summary.since = fmt(since);
        summary.previous_cursor = fmt(previous);
        summary.new_cursor = fmt(stored.cursor);
        summary.state_version = stored.version;
        summary.records_fetched = fetched;
        summary.records_written = written.records;
        summary.records_rejected = written.rejected_records;
        summary.records_deduplicated = f.deduplicated;
        summary.records_skipped = unchanged;
        summary.records_stale = stale;
        summary.late_records = late;
        summary.max_lateness_seconds = max_lateness.num_milliseconds() as f64 / 1000.0;
        if late > 0 {
            let used =
                max_lateness.num_milliseconds() as f64 / buffer.num_milliseconds().max(1) as f64;
            let fields = (late, summary.max_lateness_seconds, summary.buffer_hours);
            if used >= LATENESS_WARNING {
                warn!(
                    sync_id = %sync_id,
                    late_records = fields.0,
                    max_lateness_seconds = fields.1,
                    buffer_hours = fields.2,
                    "late rows used {:.0} % of the buffer: the replica lags close to BUFFER_HOURS; rows later than the buffer are missed",
                    used * 100.0
                );
            } else {
                info!(
                    late_records = fields.0,
                    max_lateness_seconds = fields.1,
                    "the buffer caught late rows"
                );
            }
        }
        summary.pages = pages;
        summary.bytes_fetched = bytes;
        (summary, new_cursor)
    }

    /// The commit phase: the fingerprint set, the manifest, then the fenced checkpoint — each
    /// durable before the next names it.
    async fn commit(
        &self,
        job: &Job<'_>,
        f: &mut Fetched<Si>,
        new_cursor: Option<DateTime<Utc>>,
        mut summary: RunSummary,
        clock: Instant,
    ) -> Result<RunSummary> {
        let sync_id = &self.settings.sync_id;
        let (req, inv, stored) = (job.req, job.inv, job.stored);
        let fmt = |c: Option<DateTime<Utc>>| c.map(window::format_ts);
        let fingerprints = self.store_fingerprints(job, f, new_cursor).await?;

        // The data, rejected records and fingerprints are durable before the manifest that
        // lists them (one group commit on a file system; nothing to do on S3).
        self.sink.flush().await?;
        let manifest_key = self
            .write_manifest(job, f, new_cursor, fingerprints.clone())
            .await?;
        self.sink.flush().await?;
        failpoint::reached("manifest").await;
        let written = &f.written;
        summary.objects = written.objects.iter().map(|o| o.key.clone()).collect();
        summary.rejected_objects = written.rejected.iter().map(|o| o.key.clone()).collect();
        summary.manifest = Some(manifest_key);

        // A duplicate of a run that stopped early should go on with the work.
        let invocation =
            (!f.stopped_early).then(|| req.event_id.as_deref().unwrap_or(&inv.request_id));
        let commit = Commit {
            expected: stored.version,
            owner: &inv.request_id,
            cursor: new_cursor,
            run_id: &job.run_id,
            invocation,
            fingerprints: fingerprints.as_deref(),
        };
        match self.state.checkpoint(sync_id, &commit).await? {
            Checkpoint::Committed { version } => {
                failpoint::reached("checkpoint").await;
                summary.checkpoints = 1;
                summary.state_version = version;
                summary.new_cursor = fmt(new_cursor);
            }
            Checkpoint::Conflict => {
                let now = self.state.load(sync_id).await?;
                warn!(
                    sync_id = %sync_id,
                    expected_version = stored.version,
                    found_version = now.version,
                    lease_owner = now.lease.as_ref().map(|l| l.owner.as_str()).unwrap_or(""),
                    "checkpoint fenced out: another run advanced the state or took the lease over; cursor left untouched"
                );
                summary.status = Status::Conflict;
                summary.state_version = now.version;
                summary.new_cursor = fmt(now.cursor);
            }
        }
        summary.duration_ms = clock.elapsed().as_millis() as u64;
        Ok(summary)
    }

    /// The fingerprints of what the lake now holds in the next run's window, durable before
    /// the checkpoint that names them: the key of the set (the stored one when nothing
    /// changed), or `None` with fingerprints off.
    async fn store_fingerprints(
        &self,
        job: &Job<'_>,
        f: &mut Fetched<Si>,
        new_cursor: Option<DateTime<Utc>>,
    ) -> Result<Option<String>> {
        f.fps.after_run(
            f.previous_coverage,
            job.since,
            !f.stopped_early,
            window::since(new_cursor, self.settings.buffer),
            self.settings.fingerprint_max,
        );
        if self.settings.fingerprint_max == 0 {
            return Ok(None);
        }
        let encoded = f.fps.encode();
        let same = f.loaded_hash == Some(xxhash_rust::xxh3::xxh3_128(&encoded));
        if let Some(unchanged) = job.stored.fingerprints.clone().filter(|_| same) {
            // Nothing changed (a quiet run): the set already stored says it all, and storage
            // does not grow by a set per run.
            return Ok(Some(unchanged));
        }
        let key = format!("{}/_fingerprints/{}.bin", self.settings.sync_id, job.run_id);
        Ok(Some(
            put_once(self.sink, &key, encoded.into(), sink::BINARY).await?,
        ))
    }

    /// The run's manifest (its window, starting version, cursors and every object it wrote)
    /// under a write-once key; returns the key.
    async fn write_manifest(
        &self,
        job: &Job<'_>,
        f: &Fetched<Si>,
        new_cursor: Option<DateTime<Utc>>,
        fingerprints: Option<String>,
    ) -> Result<String> {
        let sync_id = &self.settings.sync_id;
        let fmt = |c: Option<DateTime<Utc>>| c.map(window::format_ts);
        let written = &f.written;
        let manifest = Manifest {
            sync_id: sync_id.clone(),
            run_id: job.run_id.clone(),
            window: ManifestWindow {
                since: fmt(job.since),
                until: window::format_ts(job.started_at),
            },
            starting_version: job.stored.version,
            previous_cursor: fmt(job.previous()),
            new_cursor: fmt(new_cursor),
            objects: written.objects.clone(),
            rejected: written.rejected.clone(),
            records_written: written.records,
            records_rejected: written.rejected_records,
            records_skipped: f.unchanged,
            records_stale: f.stale,
            fingerprints,
            synced_at: written.synced_at.clone(),
        };
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        let key = format!("{sync_id}/_manifests/{}.json", job.run_id);
        put_once(self.sink, &key, body.into(), sink::JSON).await
    }
}

/// Late rows stamped this far into the buffer (as a fraction of it) make the run warn.
pub const LATENESS_WARNING: f64 = 0.8;

impl<St: StateStore, So: Source, Si: Sink + Clone + 'static> Engine<'_, St, So, Si> {
    /// The fingerprint set the last checkpoint named, and a hash of its stored bytes; or an
    /// empty one (nothing skipped) when there is none or it cannot be read — that costs
    /// writes, never rows.
    async fn load_fingerprints(&self, stored: &SyncState) -> (Fingerprints, Option<u128>) {
        let Some(key) = stored
            .fingerprints
            .as_deref()
            .filter(|_| self.settings.fingerprint_max > 0)
        else {
            return (Fingerprints::empty(), None);
        };
        let loaded = match self.sink.get(key).await {
            Ok(Some(bytes)) => {
                Fingerprints::decode(&bytes).map(|f| (f, Some(xxhash_rust::xxh3::xxh3_128(&bytes))))
            }
            Ok(None) => Err("the object is missing".to_string()),
            Err(e) => Err(e.to_string()),
        };
        loaded.unwrap_or_else(|e| {
            warn!(key = %key, error = %e, "cannot use the fingerprint set; writing every record in the window");
            (Fingerprints::empty(), None)
        })
    }
}
