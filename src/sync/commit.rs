//! The commit phase: what the fetch made durable becomes the run summary and the cursor a
//! checkpoint stores; then the fingerprint set, the manifest and the fenced checkpoint, each
//! durable before the next names it.

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::fetch::Fetched;
use super::plan::Job;
use super::summary::{Manifest, ManifestWindow, RunSummary, Status};
use super::{LATENESS_WARNING, fmt};
use crate::error::Result;
use crate::failpoint;
use crate::format;
use crate::sink::{Sink, put_once};
use crate::source::Source;
use crate::state::{Checkpoint, Commit, DoneRanges, StateStore};
use crate::window;

impl<St: StateStore, So: Source, Si: Sink + Clone + 'static> super::Engine<'_, St, So, Si> {
    /// The run summary of what was fetched, and the cursor a checkpoint would store: the
    /// greatest `updatedAt` durably in the lake from this window ([`window::next_cursor`]),
    /// held back when the run stopped early on records out of order.
    pub(super) fn report(
        &self,
        job: &Job<'_>,
        f: &mut Fetched,
    ) -> (RunSummary, Option<DateTime<Utc>>) {
        let sync_id = &self.settings.sync_id;
        let req = job.req;
        // The buffer (not an audit's depth): lateness is measured against it.
        let buffer = req.buffer.unwrap_or(self.settings.buffer);
        if f.stopped_early {
            warn!(
                sync_id = %sync_id,
                records_written = f.durable.records,
                "stopping early: the invocation deadline is near; checkpointing what is durable"
            );
        }
        let new_cursor =
            window::next_cursor(job.stored.cursor, f.durable_max, job.started_at, req.rewind);
        f.counts.records_written = f.durable.records;
        f.counts.records_rejected = f.durable.rejected_records;
        f.counts.max_lateness_seconds = f.max_lateness.num_milliseconds() as f64 / 1000.0;

        let mut summary = RunSummary::new(sync_id, req, buffer);
        summary.status = if f.stopped_early {
            Status::Partial
        } else {
            Status::Completed
        };
        summary.reason = f.reason.clone();
        if f.stopped_early
            && let Some(more) = unfinished_replay(job, f.durable_max, self.settings)
        {
            let why = summary.reason.get_or_insert_with(String::new);
            if !why.is_empty() {
                why.push_str("; ");
            }
            why.push_str(&more);
        }
        summary.run_id = job.run_id.clone();
        summary.started_at = f.synced_at.clone();
        summary.since = fmt(job.since);
        summary.previous_cursor = fmt(job.previous());
        summary.new_cursor = fmt(job.stored.cursor);
        summary.state_version = job.stored.version;
        summary.counts = f.counts;
        self.warn_of_lateness(&summary);
        (summary, new_cursor)
    }

    /// Says how much of the buffer the late rows used; near all of it, as a warning.
    fn warn_of_lateness(&self, s: &RunSummary) {
        let c = &s.counts;
        if c.late_records == 0 {
            return;
        }
        let used = c.max_lateness_seconds / (s.buffer_hours * 3600.0).max(0.001);
        if used >= LATENESS_WARNING {
            warn!(
                sync_id = %self.settings.sync_id,
                late_records = c.late_records,
                max_lateness_seconds = c.max_lateness_seconds,
                buffer_hours = s.buffer_hours,
                "late rows used {:.0} % of the buffer: the replica lags close to BUFFER_HOURS; rows later than the buffer are missed",
                used * 100.0
            );
        } else {
            info!(
                late_records = c.late_records,
                max_lateness_seconds = c.max_lateness_seconds,
                "the buffer caught late rows"
            );
        }
    }

    /// The fingerprint set, the manifest, then the checkpoint fenced on the version the run
    /// started from and on its lease.
    pub(super) async fn commit(
        &self,
        job: &Job<'_>,
        f: &mut Fetched,
        new_cursor: Option<DateTime<Utc>>,
        mut summary: RunSummary,
    ) -> Result<RunSummary> {
        let sync_id = &self.settings.sync_id;
        let (req, inv, stored) = (job.req, job.inv, job.stored);
        let fingerprints = self.store_fingerprints(job, f, new_cursor).await?;

        // The data, rejected records and fingerprints are durable before the manifest that
        // lists them (one group commit on a file system; nothing to do on S3).
        self.sink.flush().await?;
        let manifest_key = self
            .write_manifest(job, f, &summary, new_cursor, fingerprints.clone())
            .await?;
        self.sink.flush().await?;
        failpoint::reached("manifest").await;
        let durable = &f.durable;
        summary.objects = durable.objects.iter().map(|o| o.key.clone()).collect();
        summary.rejected_objects = durable.rejected.iter().map(|o| o.key.clone()).collect();
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
            done: &DoneRanges::new(std::mem::take(&mut f.done), self.settings.buffer),
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
        Ok(summary)
    }

    /// The fingerprints of what the lake now holds in the next run's window, durable before
    /// the checkpoint that names them: the key of the set (the stored one when nothing
    /// changed), or `None` with fingerprints off.
    async fn store_fingerprints(
        &self,
        job: &Job<'_>,
        f: &mut Fetched,
        new_cursor: Option<DateTime<Utc>>,
    ) -> Result<Option<String>> {
        f.fps.after_run(
            f.previous_coverage,
            job.since,
            !f.stopped_early,
            window::since(new_cursor, self.settings.remembered()),
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
            put_once(self.sink, &key, encoded.into(), format::BINARY).await?,
        ))
    }

    /// The run's manifest (its window, starting version, cursors, counts and every object it
    /// wrote) under a write-once key; returns the key.
    async fn write_manifest(
        &self,
        job: &Job<'_>,
        f: &Fetched,
        summary: &RunSummary,
        new_cursor: Option<DateTime<Utc>>,
        fingerprints: Option<String>,
    ) -> Result<String> {
        let sync_id = &self.settings.sync_id;
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
            objects: f.durable.objects.clone(),
            rejected: f.durable.rejected.clone(),
            counts: summary.counts,
            fingerprints,
            synced_at: f.synced_at.clone(),
        };
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        let key = format!("{sync_id}/_manifests/{}.json", job.run_id);
        put_once(self.sink, &key, body.into(), format::JSON).await
    }
}

/// What an operator must know when a manual replay stops early below what the next run
/// reads: the scheduled runs go on from the stored cursor, not from where the replay got, so
/// they will not finish it — and the event that does (`None` when they will: a rewind, whose
/// cursor moved back to where it got, or a replay that reached the next run's window).
fn unfinished_replay(
    job: &Job<'_>,
    durable_max: Option<DateTime<Utc>>,
    settings: &super::Settings,
) -> Option<String> {
    let req = job.req;
    let over = req.state_override?;
    let next_run = window::since(job.stored.cursor, settings.buffer);
    if req.rewind || next_run.is_none_or(|n| durable_max.is_some_and(|d| d >= n)) {
        return None;
    }
    // The override whose window starts where this replay got (the same one when nothing
    // is known to be durable in order).
    let buffer = settings.window(req);
    let from = durable_max.map_or(over, |d| (d + buffer).max(over));
    let buffer_hours = req
        .buffer
        .map(|b| {
            format!(
                ", \"buffer_hours\": {}",
                b.num_milliseconds() as f64 / 3_600_000.0
            )
        })
        .unwrap_or_default();
    Some(format!(
        "this manual replay is not continued by the scheduled runs (they go on from the stored cursor {}): to finish it, invoke again with {{\"state_override\": {{\"last_timestamp\": \"{}\"}}{buffer_hours}}}",
        fmt(job.stored.cursor).unwrap_or_else(|| "(none)".into()),
        window::format_ts(from)
    ))
}
