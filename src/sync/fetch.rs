//! The fetch phase: pages → records → batches → objects, until the window is read or the
//! deadline is near. It returns what is durable and the counts, and checkpoints nothing.

use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant as Deadline;
use tracing::{info, warn};

use super::plan::{Job, Judge};
use super::summary::Counts;
use super::writer::Written;
use crate::batch::Batcher;
use crate::config::BatchLimits;
use crate::error::Result;
use crate::fingerprint::{Fingerprints, Verdict};
use crate::record::{Entry, Rejected};
use crate::sink::Sink;
use crate::source::{Pages, Source};
use crate::state::{StateStore, SyncState};
use crate::window;

/// What the fetch phase leaves for the report and the commit: the durable objects, the
/// fingerprints, and the counts.
pub(super) struct Fetched<Si: Sink + Clone + 'static> {
    pub(super) written: Written<Si>,
    pub(super) fps: Fingerprints,
    /// A hash of the fingerprint set as loaded (to keep it when nothing changed).
    pub(super) loaded_hash: Option<u128>,
    pub(super) previous_coverage: Option<DateTime<Utc>>,
    /// Fetched, pages, bytes, skipped, stale and late; what was written is `written`'s.
    pub(super) counts: Counts,
    pub(super) max_lateness: TimeDelta,
    /// The greatest `updatedAt` of records not written because the lake already holds them.
    pub(super) known_max: Option<DateTime<Utc>>,
    /// Every record came in ascending `updatedAt` order: only then does "everything up to
    /// the greatest `updatedAt` written" hold when stopping early.
    pub(super) ascending: bool,
    pub(super) last_seen: Option<DateTime<Utc>>,
    pub(super) stopped_early: bool,
}

/// Where a fetch is: the batch being filled and the rejected records not yet written.
struct Pending {
    batcher: Batcher,
    rejected: Vec<Rejected>,
    limits: BatchLimits,
}

impl<Si: Sink + Clone + 'static> Fetched<Si> {
    /// One fetched entry: judged against the fingerprints, batched (a full batch starts
    /// being written), or set aside as rejected.
    async fn take(&mut self, entry: Entry, judge: &Judge, pending: &mut Pending) -> Result<()> {
        let r = match entry {
            Entry::Valid(r) => r,
            Entry::Rejected(r) => {
                pending.rejected.push(r);
                if pending.rejected.len() >= pending.limits.max_records {
                    self.written
                        .rejected(std::mem::take(&mut pending.rejected))
                        .await?;
                }
                return Ok(());
            }
        };
        pending.batcher.fetched(r.json_len());
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
            Verdict::Write { late } => {
                if let Some(l) = late {
                    self.counts.late_records += 1;
                    self.max_lateness = self.max_lateness.max(l);
                }
                if let Some(full) = pending.batcher.push(r) {
                    self.written.data(full).await?;
                }
            }
            Verdict::Unchanged | Verdict::Stale => {
                match verdict {
                    Verdict::Unchanged => self.counts.records_skipped += 1,
                    _ => self.counts.records_stale += 1,
                }
                self.known_max = self.known_max.max(Some(r.updated_at));
            }
        }
        Ok(())
    }
}

impl<St: StateStore, So: Source, Si: Sink + Clone + 'static> super::Engine<'_, St, So, Si> {
    /// Reads the job's window: pages → records → batches → objects, until the window is read
    /// or the deadline is near. Returns what is durable and the counts.
    pub(super) async fn fetch(&self, job: &Job<'_>) -> Result<Fetched<Si>> {
        let settings = self.settings;
        let stop_at = job.stop_at(settings);
        let judge = job.judge(settings);
        let (fps, loaded_hash) = self.load_fingerprints(job.stored).await;
        let mut f = Fetched {
            written: Written::new(
                self.sink.clone(),
                job.req.dry_run,
                format!("{}/", settings.sync_id),
                job.run_id.clone(),
                window::format_millis(job.started_at),
            ),
            previous_coverage: fps.covers_from(),
            fps,
            loaded_hash,
            counts: Counts::default(),
            max_lateness: TimeDelta::zero(),
            known_max: None,
            ascending: true,
            last_seen: None,
            stopped_early: false,
        };
        let mut pending = Pending {
            batcher: Batcher::new(settings.batch),
            rejected: Vec::new(),
            limits: settings.batch,
        };

        let mut reader = self.source.open(job.since, job.inv.deadline);
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
            f.counts.records_fetched += chunk.entries.len() as u64;
            page_records += chunk.entries.len() as u64;
            if let Some(end) = chunk.page_end {
                f.counts.pages += 1;
                f.counts.bytes_fetched += end.bytes;
                info!(
                    page = f.counts.pages,
                    records = page_records,
                    bytes = end.bytes,
                    "fetched page"
                );
                page_records = 0;
            }
            for entry in chunk.entries {
                f.take(entry, &judge, &mut pending).await?;
            }
            if judge.fingerprinting {
                self.bound_fingerprints(job, &mut f);
            }
            if stop_at.is_some_and(|at| Deadline::now() >= at) {
                f.stopped_early = true;
                break;
            }
        }
        drop(reader);
        if let Some(last) = pending.batcher.take() {
            f.written.data(last).await?;
        }
        if !pending.rejected.is_empty() {
            f.written.rejected(pending.rejected).await?;
        }
        f.written.finish().await?;
        f.counts.records_deduplicated = pending.batcher.deduplicated();
        Ok(f)
    }

    /// Forgets the fingerprints the next run will not need: the final cursor will be at
    /// least what was seen so far (bounded by the run's start) or the stored cursor.
    fn bound_fingerprints(&self, job: &Job<'_>, f: &mut Fetched<Si>) {
        let floor = f
            .last_seen
            .map(|t| t.min(job.started_at))
            .max(job.stored.cursor.filter(|_| !job.req.rewind));
        f.fps.bound(
            window::since(floor, self.settings.buffer),
            self.settings.fingerprint_max,
        );
    }

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
