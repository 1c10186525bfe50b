//! The engine: plan → fetch → batch → write → manifest → checkpoint, generic over the ports.
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

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::batch::{self, Batcher};
use crate::config::BatchLimits;
use crate::error::{Error, Result};
use crate::event::{RunRequest, Trigger};
use crate::failpoint;
use crate::fingerprint::{Fingerprints, Verdict};
use crate::record::{Entry, Record, Rejected};
use crate::sink::{self, Sink, put_once};
use crate::source::{Pages, Source};
use crate::state::{self, Acquired, Checkpoint, Claimant, Commit, Plan, StateStore, SyncState};
use crate::window;
use tokio::task::JoinHandle;
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

/// How a run ended. Every status is a successful invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    Partial,
    Skipped,
    Conflict,
    DryRun,
}

impl Status {
    /// The name the summary uses (`completed`, `dry_run`, …), also in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Partial => "partial",
            Status::Skipped => "skipped",
            Status::Conflict => "conflict",
            Status::DryRun => "dry_run",
        }
    }
}

/// The run summary of the contract, returned by the handler and logged.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub sync_id: String,
    pub status: Status,
    pub trigger: Trigger,
    pub run_id: String,
    pub started_at: String,
    pub buffer_hours: f64,
    pub since: Option<String>,
    pub previous_cursor: Option<String>,
    pub new_cursor: Option<String>,
    /// Dry runs only: the cursor a real run would have checkpointed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_cursor: Option<String>,
    pub state_version: u64,
    pub records_fetched: u64,
    pub records_written: u64,
    pub records_rejected: u64,
    /// Older copies of an id that a newer copy replaced within the same batch.
    pub records_deduplicated: u64,
    /// Records identical to the version already written (same id, `updatedAt` and bytes).
    pub records_skipped: u64,
    /// Records older than the version already written for their id (a stale replica).
    pub records_stale: u64,
    /// Records in the replay window (stamped before the previous cursor) that were not
    /// written before: they reached the replica after the previous run.
    pub late_records: u64,
    /// How far behind the previous cursor the most belated of them was stamped.
    pub max_lateness_seconds: f64,
    /// Why nothing was done (`skipped`), or why the cursor was held back (`partial`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub objects: Vec<String>,
    pub rejected_objects: Vec<String>,
    pub manifest: Option<String>,
    pub pages: u64,
    pub bytes_fetched: u64,
    pub checkpoints: u64,
    pub duration_ms: u64,
}

/// One object listed in a manifest.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub records: u64,
}

/// `PREFIX/SYNC_ID/_manifests/<run>.json`: what a run wrote, written before its checkpoint.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Manifest {
    pub sync_id: String,
    pub run_id: String,
    pub window: ManifestWindow,
    pub starting_version: u64,
    pub previous_cursor: Option<String>,
    pub new_cursor: Option<String>,
    pub objects: Vec<ObjectEntry>,
    pub rejected: Vec<ObjectEntry>,
    pub records_written: u64,
    pub records_rejected: u64,
    pub records_skipped: u64,
    pub records_stale: u64,
    /// The fingerprint set for the next run (see [`crate::fingerprint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<String>,
    pub synced_at: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ManifestWindow {
    /// Inclusive start (`None`: a full sync).
    pub since: Option<String>,
    /// The run's start: the cursor never passes it.
    pub until: String,
}

/// The engine, borrowing its ports.
pub struct Engine<'a, St, So, Si> {
    pub state: &'a St,
    pub source: &'a So,
    pub sink: &'a Si,
    pub settings: &'a Settings,
}

/// Object writes that may be under way at once, besides the batch being filled. Writes
/// overlap parsing (and each other: S3 latency, fsyncs), and memory stays bounded.
const WRITES_IN_FLIGHT: usize = 4;

/// What a run has written so far, and the writes still under way.
struct Written<Si: Sink + Clone + 'static> {
    sink: Si,
    dry_run: bool,
    prefix: String,
    run_id: String,
    synced_at: String,
    data_parts: usize,
    rejected_parts: usize,
    pending: VecDeque<Pending>,
    objects: Vec<ObjectEntry>,
    rejected: Vec<ObjectEntry>,
    records: u64,
    rejected_records: u64,
    max_updated_at: Option<DateTime<Utc>>,
}

/// A write under way (`task` is `None` in a dry run). The task yields the key written,
/// which differs from the planned one when an earlier attempt left other bytes there.
struct Pending {
    task: Option<JoinHandle<Result<String>>>,
    entry: ObjectEntry,
    /// `Some(max updatedAt)` for data, `None` for rejected records.
    data_max: Option<Option<DateTime<Utc>>>,
}

impl<Si: Sink + Clone + 'static> Written<Si> {
    /// Starts writing a data object. It counts towards the cursor only once written.
    async fn data(&mut self, batch: Vec<Record>) -> Result<()> {
        let rel = format!(
            "{}{}-{:05}.jsonl",
            self.prefix, self.run_id, self.data_parts
        );
        self.data_parts += 1;
        let max = batch.iter().map(|r| r.updated_at).max();
        let n = batch.len() as u64;
        let synced_at = self.synced_at.clone();
        self.start(rel, n, Some(max), move || batch::encode(&batch, &synced_at))
            .await
    }

    /// Starts writing rejected records.
    async fn rejected(&mut self, batch: Vec<Rejected>) -> Result<()> {
        let rel = format!(
            "{}_rejected/{}-{:05}.jsonl",
            self.prefix, self.run_id, self.rejected_parts
        );
        self.rejected_parts += 1;
        let n = batch.len() as u64;
        let synced_at = self.synced_at.clone();
        self.start(rel, n, None, move || {
            let mut body = Vec::new();
            for r in &batch {
                r.write_line(&mut body, &synced_at);
            }
            body
        })
        .await
    }

    async fn start(
        &mut self,
        rel: String,
        records: u64,
        data_max: Option<Option<DateTime<Utc>>>,
        encode: impl FnOnce() -> Vec<u8> + Send + 'static,
    ) -> Result<()> {
        while self.pending.len() >= WRITES_IN_FLIGHT {
            self.complete_oldest().await?;
        }
        let key = self.sink.key(&rel);
        let task = (!self.dry_run).then(|| {
            let sink = self.sink.clone();
            tokio::spawn(async move { put_once(&sink, &rel, encode().into(), sink::JSONL).await })
        });
        self.pending.push_back(Pending {
            task,
            entry: ObjectEntry { key, records },
            data_max,
        });
        Ok(())
    }

    /// Waits for the oldest write; only now, with the object durable, does it count.
    async fn complete_oldest(&mut self) -> Result<()> {
        let Some(mut p) = self.pending.pop_front() else {
            return Ok(());
        };
        if let Some(task) = p.task {
            p.entry.key = task.await.map_err(|e| Error::Sink {
                key: p.entry.key.clone(),
                message: format!("the write task failed: {e}"),
            })??;
        }
        match p.data_max {
            Some(max) => {
                if !self.dry_run {
                    info!(key = %p.entry.key, records = p.entry.records, "wrote object");
                }
                self.max_updated_at = self.max_updated_at.max(max);
                self.records += p.entry.records;
                self.objects.push(p.entry);
                if !self.dry_run {
                    failpoint::reached("object").await;
                }
            }
            None => {
                if !self.dry_run {
                    warn!(key = %p.entry.key, records = p.entry.records, "wrote rejected records");
                }
                self.rejected_records += p.entry.records;
                self.rejected.push(p.entry);
            }
        }
        Ok(())
    }

    /// Waits for every write under way.
    async fn finish(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            self.complete_oldest().await?;
        }
        Ok(())
    }
}

impl<Si: Sink + Clone + 'static> Drop for Written<Si> {
    fn drop(&mut self) {
        // A failed run stops its other writes (they are harmless either way).
        for p in &self.pending {
            if let Some(t) = &p.task {
                t.abort();
            }
        }
    }
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
        let previous = req.state_override.or(stored.cursor);
        let buffer = req.buffer.unwrap_or(self.settings.buffer);
        let (since, started_at) = (plan.since, plan.until);
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

        let mut written = Written {
            sink: self.sink.clone(),
            dry_run: req.dry_run,
            prefix: format!("{sync_id}/"),
            run_id: run_id.clone(),
            synced_at: window::format_millis(started_at),
            data_parts: 0,
            rejected_parts: 0,
            pending: VecDeque::new(),
            objects: Vec::new(),
            rejected: Vec::new(),
            records: 0,
            rejected_records: 0,
            max_updated_at: None,
        };
        let limits = self.settings.batch;
        let mut batcher = Batcher::new(limits);
        let mut rejected: Vec<Rejected> = Vec::new();
        let (mut fetched, mut pages, mut bytes) = (0u64, 0u64, 0u64);
        // Whether every record so far came in ascending `updatedAt` order: only then does
        // "everything up to the greatest `updatedAt` written" hold when stopping early.
        let mut ascending = true;
        let mut last_seen: Option<DateTime<Utc>> = None;
        // The margin is at most a quarter of the time the run had, so a short timeout still
        // leaves it time to fetch.
        let stop_at = inv.deadline.map(|d| {
            let left = d.saturating_duration_since(Deadline::now());
            d - self.settings.deadline_margin.min(left / 4)
        });
        let mut stopped_early = false;

        // What the overlap already wrote. A manual replay writes everything it reads (and
        // measures no lateness), but still hands on what it wrote.
        let fingerprinting = self.settings.fingerprint_max > 0;
        let (mut fps, loaded_hash) = self.load_fingerprints(stored).await;
        let previous_coverage = fps.covers_from();
        let skip_known = req.state_override.is_none();
        let late_since = if skip_known { stored.cursor } else { None };
        let (mut unchanged, mut stale, mut late) = (0u64, 0u64, 0u64);
        let mut max_lateness = TimeDelta::zero();
        // The greatest `updatedAt` of records not written because the lake already holds
        // them (or a newer version): durable, so they count towards the cursor.
        let mut known_max: Option<DateTime<Utc>> = None;

        let mut reader = self.source.open(since, inv.deadline);
        let mut page_records = 0u64;
        loop {
            let next = match stop_at {
                Some(at) => match tokio::time::timeout_at(at, reader.next_chunk()).await {
                    Ok(next) => next?,
                    Err(_) => {
                        stopped_early = true;
                        break;
                    }
                },
                None => reader.next_chunk().await?,
            };
            let Some(chunk) = next else { break };
            fetched += chunk.entries.len() as u64;
            page_records += chunk.entries.len() as u64;
            if let Some(end) = chunk.page_end {
                pages += 1;
                bytes += end.bytes;
                info!(
                    page = pages,
                    records = page_records,
                    bytes = end.bytes,
                    "fetched page"
                );
                page_records = 0;
            }
            for entry in chunk.entries {
                match entry {
                    Entry::Valid(r) => {
                        batcher.fetched(r.json_len());
                        if last_seen.is_some_and(|l| r.updated_at < l) {
                            ascending = false;
                        }
                        last_seen = last_seen.max(Some(r.updated_at));
                        let verdict = if fingerprinting {
                            fps.check(&r, late_since, skip_known)
                        } else {
                            Verdict::Write { late: None }
                        };
                        match verdict {
                            Verdict::Write { late: lateness } => {
                                if let Some(l) = lateness {
                                    late += 1;
                                    max_lateness = max_lateness.max(l);
                                }
                                if let Some(full) = batcher.push(r) {
                                    written.data(full).await?;
                                }
                            }
                            Verdict::Unchanged => {
                                unchanged += 1;
                                known_max = known_max.max(Some(r.updated_at));
                            }
                            Verdict::Stale => {
                                stale += 1;
                                known_max = known_max.max(Some(r.updated_at));
                            }
                        }
                    }
                    Entry::Rejected(r) => {
                        rejected.push(r);
                        if rejected.len() >= limits.max_records {
                            written.rejected(std::mem::take(&mut rejected)).await?;
                        }
                    }
                }
            }
            if fingerprinting {
                // The final cursor will be at least this: older fingerprints are not needed.
                let floor = last_seen
                    .map(|t| t.min(started_at))
                    .max(stored.cursor.filter(|_| !req.rewind));
                fps.bound(
                    window::since(floor, self.settings.buffer),
                    self.settings.fingerprint_max,
                );
            }
            if stop_at.is_some_and(|at| Deadline::now() >= at) {
                stopped_early = true;
                break;
            }
        }
        drop(reader);
        if let Some(last) = batcher.take() {
            written.data(last).await?;
        }
        if !rejected.is_empty() {
            written.rejected(rejected).await?;
        }
        written.finish().await?;

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
        summary.run_id = run_id.clone();
        summary.started_at = written.synced_at.clone();
        summary.since = fmt(since);
        summary.previous_cursor = fmt(previous);
        summary.new_cursor = fmt(stored.cursor);
        summary.state_version = stored.version;
        summary.records_fetched = fetched;
        summary.records_written = written.records;
        summary.records_rejected = written.rejected_records;
        summary.records_deduplicated = batcher.deduplicated();
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

        if req.dry_run {
            summary.status = Status::DryRun;
            summary.planned_cursor = fmt(new_cursor);
            summary.duration_ms = clock.elapsed().as_millis() as u64;
            return Ok(summary);
        }

        // The fingerprints of what the lake now holds in the next run's window, durable before
        // the checkpoint that names them.
        fps.after_run(
            previous_coverage,
            since,
            !stopped_early,
            window::since(new_cursor, self.settings.buffer),
            self.settings.fingerprint_max,
        );
        let fingerprints = if self.settings.fingerprint_max > 0 {
            let encoded = fps.encode();
            let same = loaded_hash == Some(xxhash_rust::xxh3::xxh3_128(&encoded));
            match stored.fingerprints.clone().filter(|_| same) {
                // Nothing changed (a quiet run): the set already stored says it all, and
                // storage does not grow by a set per run.
                Some(unchanged) => Some(unchanged),
                None => Some(
                    put_once(
                        self.sink,
                        &format!("{sync_id}/_fingerprints/{run_id}.bin"),
                        encoded.into(),
                        sink::BINARY,
                    )
                    .await?,
                ),
            }
        } else {
            None
        };

        // The data, rejected records and fingerprints are durable before the manifest that
        // lists them (one group commit on a file system; nothing to do on S3).
        self.sink.flush().await?;

        let manifest = Manifest {
            sync_id: sync_id.clone(),
            run_id: run_id.clone(),
            window: ManifestWindow {
                since: fmt(since),
                until: window::format_ts(started_at),
            },
            starting_version: stored.version,
            previous_cursor: fmt(previous),
            new_cursor: fmt(new_cursor),
            objects: written.objects.clone(),
            rejected: written.rejected.clone(),
            records_written: written.records,
            records_rejected: written.rejected_records,
            records_skipped: unchanged,
            records_stale: stale,
            fingerprints: fingerprints.clone(),
            synced_at: written.synced_at.clone(),
        };
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        let manifest_key = put_once(
            self.sink,
            &format!("{sync_id}/_manifests/{run_id}.json"),
            body.into(),
            sink::JSON,
        )
        .await?;
        self.sink.flush().await?;
        failpoint::reached("manifest").await;
        summary.objects = written.objects.iter().map(|o| o.key.clone()).collect();
        summary.rejected_objects = written.rejected.iter().map(|o| o.key.clone()).collect();
        summary.manifest = Some(manifest_key);

        // A duplicate of a run that stopped early should go on with the work.
        let invocation =
            (!stopped_early).then(|| req.event_id.as_deref().unwrap_or(&inv.request_id));
        let commit = Commit {
            expected: stored.version,
            owner: &inv.request_id,
            cursor: new_cursor,
            run_id: &run_id,
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

impl RunSummary {
    /// An empty summary of a run of `req` (every count zero).
    fn new(sync_id: &str, req: &RunRequest, buffer: TimeDelta) -> Self {
        RunSummary {
            sync_id: sync_id.to_string(),
            status: Status::Completed,
            trigger: req.trigger,
            run_id: String::new(),
            started_at: String::new(),
            buffer_hours: buffer.num_milliseconds() as f64 / 3_600_000.0,
            since: None,
            previous_cursor: None,
            new_cursor: None,
            planned_cursor: None,
            state_version: 0,
            records_fetched: 0,
            records_written: 0,
            records_rejected: 0,
            records_deduplicated: 0,
            records_skipped: 0,
            records_stale: 0,
            late_records: 0,
            max_lateness_seconds: 0.0,
            reason: None,
            objects: Vec::new(),
            rejected_objects: Vec::new(),
            manifest: None,
            pages: 0,
            bytes_fetched: 0,
            checkpoints: 0,
            duration_ms: 0,
        }
    }
}
