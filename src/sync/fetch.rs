//! The fetch phase: pages → records → batches → objects, until the window is read or the
//! deadline is near. It returns what is durable and the counts, and checkpoints nothing.
//!
//! A window is read as one stream, or — when the source takes an upper bound and
//! `FETCH_CONCURRENCY` > 1 — as time slices read at once ([`super::slices`]). Either way each
//! read is [`Engine::read`]: one `[since, until)` range through its own batches and objects,
//! judged against the one fingerprint set of the run.

use std::collections::HashSet;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant as Deadline;
use tracing::{info, warn};

use super::Engine;
use super::plan::{Job, Judge};
use super::slices::{SliceId, Table};
use super::summary::Counts;
use super::writer::{Durable, WRITES_IN_FLIGHT, Written};
use crate::batch::Batcher;
use crate::error::Result;
use crate::fingerprint::{Fingerprints, Verdict};
use crate::record::{Entry, Rejected};
use crate::sink::Sink;
use crate::source::{Pages, Source};
use crate::state::{StateStore, SyncState};
use crate::window::{self, Span};

/// What the fetch phase leaves for the report and the commit.
pub(super) struct Fetched {
    pub(super) durable: Durable,
    pub(super) fps: Fingerprints,
    /// A hash of the fingerprint set as loaded (to keep it when nothing changed).
    pub(super) loaded_hash: Option<u128>,
    pub(super) previous_coverage: Option<DateTime<Utc>>,
    /// Fetched, pages, bytes, deduplicated, skipped, stale and late; what was written is
    /// `durable`'s.
    pub(super) counts: Counts,
    pub(super) max_lateness: TimeDelta,
    /// `_synced_at` of every line.
    pub(super) synced_at: String,
    /// The run stopped at the deadline before the window was read.
    pub(super) stopped_early: bool,
    /// The greatest `updatedAt` below which everything in the window is durably in the lake
    /// (`None`: nothing is known to be; the cursor stays).
    pub(super) durable_max: Option<DateTime<Utc>>,
    /// Why the cursor is held back, when it is.
    pub(super) reason: Option<String>,
    /// Ranges beyond a gap that are complete, for the next run to skip.
    pub(super) done: Vec<Span>,
}

/// What one read left: its durable objects, its counts, and how far it got.
pub(super) struct Read {
    pub(super) durable: Durable,
    pub(super) counts: Counts,
    pub(super) max_lateness: TimeDelta,
    /// The greatest `updatedAt` of records not written because the lake already holds them.
    pub(super) known_max: Option<DateTime<Utc>>,
    /// Every record came in ascending `updatedAt` order: only then does "everything up to
    /// the greatest `updatedAt` written" hold when stopping early.
    pub(super) ascending: bool,
    pub(super) stopped_early: bool,
}

impl Read {
    /// A read of nothing.
    pub(super) fn empty() -> Read {
        Read {
            durable: Durable::default(),
            counts: Counts::default(),
            max_lateness: TimeDelta::zero(),
            known_max: None,
            ascending: true,
            stopped_early: false,
        }
    }

    /// The greatest `updatedAt` durably in the lake from this read.
    pub(super) fn durable_max(&self) -> Option<DateTime<Utc>> {
        self.durable.max_updated_at.max(self.known_max)
    }
}

/// What the reads of one run share.
pub(super) struct Shared<'t> {
    pub(super) fps: Mutex<Fingerprints>,
    pub(super) judge: Judge,
    pub(super) stop_at: Option<Deadline>,
    pub(super) limit: Arc<Semaphore>,
    /// The slices, when the window is read in slices: a read checks its slice's end (which
    /// a split may move down) and reports its progress there.
    pub(super) slices: Option<(&'t Mutex<Table>, &'t Notify)>,
    /// The newest `updatedAt` of the fingerprint set as loaded.
    pub(super) loaded_newest: Option<DateTime<Utc>>,
    /// The greatest `updatedAt` any read of the run has seen (milliseconds).
    pub(super) seen_max: AtomicI64,
    /// With slices: the rejected rows already set aside (an API may return a row without a
    /// comparable `updatedAt` to every slice; it is one row).
    pub(super) rejected_seen: Option<Mutex<HashSet<u128>>>,
}

/// One read: `[since, until)`, its objects named `name`, as slice `slice` of the table.
pub(super) struct Range {
    pub(super) since: Option<DateTime<Utc>>,
    pub(super) until: Option<DateTime<Utc>>,
    pub(super) name: String,
    pub(super) slice: Option<SliceId>,
}

/// What a read does with one entry.
#[derive(Clone, Copy)]
enum Take {
    Write(Option<TimeDelta>),
    Known(bool),
    Reject,
    /// Past the end of its slice (moved down by a split): the next slice reads it.
    Beyond,
}

/// One read under way: its objects, the batch being filled, the rejected rows not yet
/// written, the counts, and how far it got.
struct Reading<Si: Sink + Clone + 'static> {
    written: Written<Si>,
    batcher: Batcher,
    limits: crate::config::BatchLimits,
    rejected: Vec<Rejected>,
    r: Read,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    /// `last_seen` when the current page began: where a page read again from its start
    /// takes the order check back to.
    page_start: Option<DateTime<Utc>>,
    /// The current chunk's verdicts, one per entry.
    takes: Vec<Take>,
}

impl<Si: Sink + Clone + 'static> Reading<Si> {
    /// Counts, batches and writes a chunk's entries as judged.
    async fn take_chunk(&mut self, sh: &Shared<'_>, entries: Vec<Entry>) -> Result<()> {
        let takes = std::mem::take(&mut self.takes);
        for (entry, take) in entries.into_iter().zip(takes.iter().copied()) {
            let r = &mut self.r;
            match (entry, take) {
                (_, Take::Beyond) => {}
                (Entry::Valid(rec), Take::Write(late)) => {
                    r.counts.records_fetched += 1;
                    self.batcher.fetched(rec.json_len());
                    if let Some(l) = late {
                        // Older than what the normal runs re-read, and never written: the
                        // buffer missed it (only an audit reads that far back).
                        if sh.judge.missed_before.is_some_and(|m| rec.updated_at < m) {
                            let c = &mut r.counts;
                            c.records_missed_by_buffer += 1;
                            c.max_missed_lateness_seconds = c
                                .max_missed_lateness_seconds
                                .max(l.num_milliseconds() as f64 / 1000.0);
                        } else {
                            r.counts.late_records += 1;
                            r.max_lateness = r.max_lateness.max(l);
                        }
                    }
                    if let Some(full) = self.batcher.push(rec) {
                        self.written.data(full).await?;
                    }
                }
                (Entry::Valid(rec), Take::Known(stale)) => {
                    r.counts.records_fetched += 1;
                    self.batcher.fetched(rec.json_len());
                    if stale {
                        r.counts.records_stale += 1;
                    } else {
                        r.counts.records_skipped += 1;
                    }
                    r.known_max = r.known_max.max(Some(rec.updated_at));
                }
                (Entry::Rejected(rej), _) => {
                    r.counts.records_fetched += 1;
                    if let Some(seen) = &sh.rejected_seen
                        && !lock(seen).insert(rej.content_hash())
                    {
                        r.counts.records_deduplicated += 1;
                        continue;
                    }
                    self.rejected.push(rej);
                    if self.rejected.len() >= self.limits.max_records {
                        self.written
                            .rejected(std::mem::take(&mut self.rejected))
                            .await?;
                    }
                }
                (Entry::Valid(_), Take::Reject) => unreachable!("judged as it is"),
            }
        }
        self.takes = takes;
        Ok(())
    }

    /// Writes what is left and waits for every write: what the read made durable.
    async fn finish(mut self) -> Result<Read> {
        if let Some(last) = self.batcher.take() {
            self.written.data(last).await?;
        }
        if !self.rejected.is_empty() {
            self.written.rejected(self.rejected).await?;
        }
        self.r.durable = self.written.finish().await?;
        self.r.counts.records_deduplicated += self.batcher.deduplicated();
        Ok(self.r)
    }
}

impl<St: StateStore, So: Source, Si: Sink + Clone + 'static> Engine<'_, St, So, Si> {
    /// Reads the job's window, as one stream or in slices.
    pub(super) async fn fetch(&self, job: &Job<'_>) -> Result<Fetched> {
        let (fps, loaded_hash) = self.load_fingerprints(job.stored).await;
        let previous_coverage = fps.covers_from();
        let shared_fps = Mutex::new(fps);
        let sliced = self.source.bounded() && self.settings.fetch_concurrency > 1;
        let mut f = if sliced {
            self.fetch_sliced(job, shared_fps).await?
        } else {
            let shared = self.shared(job, shared_fps, None);
            let range = Range {
                since: job.since,
                until: None,
                name: job.run_id.clone(),
                slice: None,
            };
            let read = self.read(job, &shared, range).await?;
            let fps = shared.fps.into_inner().unwrap_or_else(|e| e.into_inner());
            Fetched::of_stream(read, fps)
        };
        f.loaded_hash = loaded_hash;
        f.previous_coverage = previous_coverage;
        f.synced_at = window::format_millis(job.started_at);
        Ok(f)
    }

    /// What the reads of `job` share.
    pub(super) fn shared<'t>(
        &self,
        job: &Job<'_>,
        fps: Mutex<Fingerprints>,
        slices: Option<(&'t Mutex<Table>, &'t Notify)>,
    ) -> Shared<'t> {
        Shared {
            fps,
            judge: job.judge(self.settings),
            stop_at: job.stop_at(self.settings),
            limit: Arc::new(Semaphore::new(WRITES_IN_FLIGHT)),
            slices,
            seen_max: AtomicI64::new(i64::MIN),
            loaded_newest: None,
            rejected_seen: None,
        }
    }

    /// One read: pages → records → batches → objects, until the range is read (or, in a
    /// slice, the records pass its end), or the deadline is near.
    pub(super) async fn read(&self, job: &Job<'_>, sh: &Shared<'_>, range: Range) -> Result<Read> {
        let settings = self.settings;
        // Slices fill their batches at once: each gets its share of the limits.
        let limits = match sh.slices {
            Some(_) => settings.batch.shared_by(settings.fetch_concurrency),
            None => settings.batch,
        };
        let mut rd = Reading {
            written: Written::new(
                self.sink.clone(),
                job.req.dry_run,
                format!("{}/", settings.sync_id),
                range.name.clone(),
                window::format_millis(job.started_at),
                sh.limit.clone(),
                settings.format,
            ),
            batcher: Batcher::new(limits),
            limits,
            rejected: Vec::new(),
            r: Read::empty(),
            first_seen: None,
            last_seen: None,
            page_start: None,
            takes: Vec::new(),
        };
        let mut reader = self.source.open(range.since, range.until, job.inv.deadline);
        let mut page_records = 0u64;
        loop {
            let next = match sh.stop_at {
                Some(at) => match tokio::time::timeout_at(at, reader.next_chunk()).await {
                    Ok(next) => next?,
                    Err(_) => {
                        rd.r.stopped_early = true;
                        break;
                    }
                },
                None => reader.next_chunk().await?,
            };
            let Some(chunk) = next else { break };
            if chunk.restart {
                // The same page again: its rows repeat what was read, not a step back.
                rd.last_seen = rd.page_start;
            }
            let passed_end = self.judge_chunk(job, sh, &range, &chunk.entries, &mut rd);
            page_records += chunk.entries.len() as u64;
            rd.take_chunk(sh, chunk.entries).await?;
            if let Some(end) = chunk.page_end {
                let r = &mut rd.r;
                r.counts.pages += 1;
                r.counts.bytes_fetched += end.bytes;
                info!(
                    page = r.counts.pages,
                    records = page_records,
                    bytes = end.bytes,
                    "fetched page"
                );
                page_records = 0;
                rd.page_start = rd.last_seen;
                if let (Some(id), Some((t, notify))) = (range.slice, sh.slices) {
                    lock(t).page(id, r.counts.pages, end.more);
                    notify.notify_one();
                }
            }
            if passed_end && rd.r.ascending {
                break; // in order: the rest of the range belongs to another slice
            }
            if sh.stop_at.is_some_and(|at| Deadline::now() >= at) {
                rd.r.stopped_early = true;
                break;
            }
        }
        drop(reader);
        rd.finish().await
    }

    /// Judges a chunk's entries against the fingerprints, under one lock (written after it:
    /// writes wait), bounds the set, and reports how far a slice got. Returns whether a row
    /// lay past the slice's end (moved down by a split).
    fn judge_chunk(
        &self,
        job: &Job<'_>,
        sh: &Shared<'_>,
        range: &Range,
        entries: &[Entry],
        rd: &mut Reading<Si>,
    ) -> bool {
        let end = range
            .slice
            .zip(sh.slices)
            .and_then(|(id, (t, _))| lock(t).end(id));
        let mut passed_end = false;
        {
            let mut fps = lock(&sh.fps);
            rd.takes.clear();
            for e in entries {
                let take = match e {
                    // Past the end of its slice (moved down by a split): the next slice asks
                    // from that end and is returned every row stamped after it, however the
                    // API reads its bounds. A row stamped on the end itself is taken here:
                    // an API that reads `since < t <= until`, or rounds fractions up when it
                    // writes them, returns it to this slice and not to the next (a
                    // duplicate is harmless, a loss is not).
                    Entry::Valid(rec) if end.is_some_and(|end| rec.updated_at > end) => {
                        passed_end = true;
                        Take::Beyond
                    }
                    Entry::Valid(rec) => {
                        if rd.last_seen.is_some_and(|l| rec.updated_at < l) {
                            rd.r.ascending = false;
                        }
                        rd.last_seen = rd.last_seen.max(Some(rec.updated_at));
                        rd.first_seen = rd.first_seen.or(Some(rec.updated_at));
                        judge(&mut fps, rec, &sh.judge)
                    }
                    Entry::Rejected(_) => Take::Reject,
                };
                rd.takes.push(take);
            }
            if sh.judge.fingerprinting {
                self.bound_fingerprints(job, sh, range, rd.last_seen, &mut fps);
            }
        }
        // What this chunk holds is taken: a split must start above it. (Reported before the
        // chunk's writes, during which the slices' coordinator may run.)
        if let (Some(id), Some((t, _))) = (range.slice, sh.slices) {
            lock(t).seen(id, (rd.first_seen, rd.last_seen), rd.r.ascending);
        }
        passed_end
    }

    /// Forgets fingerprints no run will need: the final cursor will be at least the newest
    /// row read (of any slice) if the run completes. (A run that stops early may checkpoint
    /// less; dropping costs it rewrites only.) With slices, what they have still to read of
    /// the overlap is kept.
    fn bound_fingerprints(
        &self,
        job: &Job<'_>,
        sh: &Shared<'_>,
        range: &Range,
        last_seen: Option<DateTime<Utc>>,
        fps: &mut Fingerprints,
    ) {
        let settings = self.settings;
        let seen = match (range.slice, last_seen) {
            (Some(_), Some(l)) => {
                let ms = sh.seen_max.fetch_max(l.timestamp_millis(), Relaxed);
                DateTime::from_timestamp_millis(ms.max(l.timestamp_millis()))
            }
            _ => last_seen,
        };
        let floor = seen
            .map(|t| t.min(job.started_at))
            .max(job.stored.cursor.filter(|_| !job.req.rewind));
        let floor = window::since(floor, settings.remembered());
        match sh.slices {
            None => fps.bound(floor, settings.fingerprint_max),
            Some((t, _)) => {
                let low = lock(t).low().unwrap_or(Some(DateTime::<Utc>::MAX_UTC));
                fps.bound_sliced(floor, (low, sh.loaded_newest), settings.fingerprint_max);
            }
        }
    }

    /// The fingerprint set the last checkpoint named, and a hash of its stored bytes; or an
    /// empty one (nothing skipped) when there is none or it cannot be read — that costs
    /// writes, never rows.
    pub(super) async fn load_fingerprints(
        &self,
        stored: &SyncState,
    ) -> (Fingerprints, Option<u128>) {
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

/// A record judged against the fingerprints.
fn judge(fps: &mut Fingerprints, rec: &crate::record::Record, judge: &Judge) -> Take {
    if !judge.fingerprinting {
        return Take::Write(None);
    }
    match fps.check(rec, judge.late_since, judge.skip_known) {
        Verdict::Write { late } => Take::Write(late),
        Verdict::Unchanged => Take::Known(false),
        Verdict::Stale => Take::Known(true),
    }
}

/// Locks `m`; a poisoned lock (a panic elsewhere) is still used: the data is plain.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fetched {
    /// The first slice read (the slices decide the cursor once all are read).
    pub(super) fn of_slice(read: Read) -> Fetched {
        let durable_max = read.durable_max();
        Fetched {
            stopped_early: false,
            durable_max,
            reason: None,
            ..Fetched::of_stream(read, Fingerprints::empty())
        }
    }

    /// Adds another slice's read.
    pub(super) fn add(&mut self, read: Read) {
        self.durable_max = self.durable_max.max(read.durable_max());
        self.durable.add(read.durable);
        self.counts.add(&read.counts);
        self.max_lateness = self.max_lateness.max(read.max_lateness);
    }

    /// The result of reading the window as one stream: near the deadline, the cursor may
    /// move only if the records arrived in ascending `updatedAt` order.
    fn of_stream(read: Read, fps: Fingerprints) -> Fetched {
        let (durable_max, reason) = if read.stopped_early && !read.ascending {
            (
                None,
                Some("stopped at the deadline; the records did not arrive in ascending updatedAt order, so the cursor stays (the next run re-reads the window)".to_string()),
            )
        } else {
            (read.durable_max(), None)
        };
        Fetched {
            durable: read.durable,
            fps,
            loaded_hash: None,
            previous_coverage: None,
            counts: read.counts,
            max_lateness: read.max_lateness,
            synced_at: String::new(),
            stopped_early: read.stopped_early,
            durable_max,
            reason,
            done: Vec::new(),
        }
    }
}
