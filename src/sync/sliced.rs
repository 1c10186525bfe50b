//! Reading a window in time slices: the fetch phase's driver of the slice table
//! ([`super::slices::Table`]): at most `FETCH_CONCURRENCY` reads at once on one task, the
//! busiest split when a slot is free, then what may be checkpointed. The table sees only
//! ranges and progress reports; the reads are the fetch phase's.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;
use tokio::time::Instant as Deadline;
use tracing::debug;

use super::Engine;
use super::fetch::{Fetched, Range, Read, lock};
use super::plan::Job;
use super::slices::Table;
use crate::error::Result;
use crate::fingerprint::Fingerprints;
use crate::sink::Sink;
use crate::source::Source;
use crate::state::StateStore;
use crate::window;

impl<St: StateStore, So: Source, Si: Sink + Clone + 'static> Engine<'_, St, So, Si> {
    /// Reads the job's window in slices, at most `FETCH_CONCURRENCY` at once, splitting the
    /// busiest when a slot is free; then decides what may be checkpointed.
    pub(super) async fn fetch_sliced(
        &self,
        job: &Job<'_>,
        fps: Mutex<Fingerprints>,
    ) -> Result<Fetched> {
        let slots = self.settings.fetch_concurrency;
        let table = Mutex::new(Table::new(
            job.since,
            job.started_at,
            job.skip(self.settings),
            slots,
        ));
        let notify = Notify::new();
        let loaded_newest = lock(&fps).newest();
        let mut shared = self.shared(job, fps, Some((&table, &notify)));
        shared.loaded_newest = loaded_newest;
        shared.rejected_seen = Some(Mutex::default());
        let (shared, table_ref) = (&shared, &table);
        // The run's clock (the invocation's, as the window's top is): when each slice opens.
        let started = Deadline::now();
        let now = || job.started_at + TimeDelta::from_std(started.elapsed()).unwrap_or_default();
        let mut running = FuturesUnordered::new();
        let mut merged: Option<Fetched> = None;
        let (mut stopped, mut out_of_order) = (false, false);
        loop {
            // Fill the free slots, unless the deadline is near.
            let near = shared.stop_at.is_some_and(|at| Deadline::now() >= at);
            stopped |= near;
            while !near && running.len() < slots {
                let mut t = lock(table_ref);
                let mut next = t.start_next(now());
                if next.is_none() && !running.is_empty() && t.split(slots - running.len()) {
                    next = t.start_next(now());
                }
                let Some(id) = next else { break };
                let (since, until) = t.range(id);
                drop(t);
                let range = Range {
                    since,
                    until,
                    name: slice_name(&job.run_id, since),
                    slice: Some(id),
                };
                debug!(slice = id, since = ?since, until = ?until, "reading a slice");
                running.push(async move { (id, self.read(job, shared, range).await) });
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                Some((id, read)) = running.next() => {
                    let read = read?;
                    stopped |= read.stopped_early;
                    out_of_order |= read.stopped_early && !read.ascending;
                    let durable = read.durable_max().filter(|_| read.ascending);
                    lock(table_ref).finish(id, read.stopped_early, durable);
                    match merged.as_mut() {
                        Some(m) => m.add(read),
                        None => merged = Some(Fetched::of_slice(read)),
                    }
                }
                _ = notify.notified(), if running.len() < slots => {}
            }
        }
        drop(running);
        let mut f = merged.unwrap_or_else(|| Fetched::of_slice(Read::empty()));
        // Slices finish in any order: the manifest lists their objects by key.
        f.durable.objects.sort_by(|a, b| a.key.cmp(&b.key));
        f.durable.rejected.sort_by(|a, b| a.key.cmp(&b.key));
        f.fps = std::mem::replace(&mut *lock(&shared.fps), Fingerprints::empty());
        let t = lock(table_ref);
        let outcome = t.outcome(self.settings.buffer);
        f.stopped_early = stopped || !outcome.complete;
        if outcome.complete {
            f.durable_max = f.durable_max.max(t.skipped_max());
        } else {
            f.durable_max = outcome.watermark;
            let mut why = "stopped at the deadline with slices unread; the cursor moves only as far as every slice below it is complete".to_string();
            if out_of_order {
                why.push_str(" (a slice whose records did not arrive in ascending updatedAt order counts only once read whole)");
            }
            if !outcome.done.is_empty() {
                why.push_str(&format!(
                    "; {} range(s) complete beyond the gap are recorded for the next run to skip",
                    outcome.done.len()
                ));
            }
            f.reason = Some(why);
            f.done = outcome.done;
        }
        Ok(f)
    }
}

/// The name of a slice's objects: the run id and the slice's start (`start`: a full sync's
/// first slice), so that the same plan names the same keys.
fn slice_name(run_id: &str, since: Option<DateTime<Utc>>) -> String {
    format!(
        "{run_id}-{}",
        since.map_or_else(|| "start".to_string(), window::format_compact)
    )
}
