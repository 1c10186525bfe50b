//! Backfills beyond one invocation: a range `[from, to)` planned as slices, each slice read
//! by its own invocation (or, locally, its own task) — carried on by the next invocation
//! when it reaches the deadline — and one fenced checkpoint at the end.
//!
//! Every step is idempotent and names its outputs from the plan alone:
//! * **plan** writes `SYNC_ID/_backfills/<id>/plan.json` (the range, the slices, the stamp
//!   every line gets) and `slices.json` (the slice list a Step Functions Distributed Map
//!   reads). The id is derived from the request; starting the same backfill again reuses the
//!   stored plan, so it converges on the same keys.
//! * **slice** reads one slice, or what is left of it, into objects named after the backfill,
//!   the slice and the part (one part per invocation), then writes the part's manifest
//!   `_backfills/<id>/parts/<slice>-p<n>.json`: its objects, counts, and whether the slice is
//!   done or where the next part starts.
//! * **commit** follows every slice's parts to its last, writes the backfill's manifest
//!   (`_manifests/<id>.json`, every object), and only then takes the lease and one fenced
//!   checkpoint. The cursor never moves backwards, and moves forward only when the backfill
//!   starts at or before it (no gap is ever skipped).

use std::sync::Mutex;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::Engine;
use super::fetch::Range;
use super::plan::{Job, Judge};
use super::summary::{Counts, Manifest, ManifestWindow, ObjectEntry, RunSummary, Status};
use super::{Invocation, fmt};
use crate::error::{Error, Result};
use crate::event::{BackfillStart, RunRequest, SliceTask};
use crate::fingerprint::Fingerprints;
use crate::format;
use crate::sink::{Sink, put_once};
use crate::source::Source;
use crate::state::{
    self, Acquired, Checkpoint, Claimant, Commit, DoneRanges, StateStore, SyncState,
};
use crate::window;

/// Default slice length.
pub const DEFAULT_SLICE_HOURS: f64 = 24.0;

/// The stored plan of a backfill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillPlan {
    pub backfill_id: String,
    pub from: String,
    /// `None`: no upper bound (an API without `API_UNTIL_PARAM`: one slice, read to the end).
    pub to: Option<String>,
    pub slice_hours: f64,
    /// `_synced_at` of every line the backfill writes (the planning invocation's clock).
    pub synced_at: String,
    pub slices: Vec<SliceTask>,
}

/// What planning returns (the state machine's Map reads `bucket`/`key`).
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// The stream (its sync id): the state machine passes it to every slice and the commit.
    pub stream: String,
    pub backfill_id: String,
    pub slices: usize,
    /// The S3 bucket and key of `slices.json` (none for a directory output).
    pub bucket: Option<String>,
    pub key: String,
    pub max_concurrency: u32,
}

/// One part of a slice: what one invocation read of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    pub backfill_id: String,
    pub slice: SliceTask,
    pub objects: Vec<ObjectEntry>,
    pub rejected: Vec<ObjectEntry>,
    #[serde(flatten)]
    pub counts: Counts,
    pub max_updated_at: Option<String>,
    /// The slice is read to its end.
    pub done: bool,
    /// Where the next part starts (when not done).
    pub next: Option<SliceTask>,
    /// The key of the fingerprints of what the part wrote within `AUDIT_HOURS` (or the
    /// buffer) of its newest row: the commit hands them on, so that the next run and the
    /// next audit do not write the backfill's rows again (none with `FINGERPRINT_MAX=0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<String>,
}

/// What a slice step returns: the state machine loops on `done`, passing `backfill_slice`.
#[derive(Debug, Clone, Serialize)]
pub struct SliceOutcome {
    /// The stream, passed on with `backfill_slice` while the state machine loops.
    pub stream: String,
    pub done: bool,
    pub backfill_slice: SliceTask,
    pub records_written: u64,
    pub objects: usize,
}

fn parse(field: &str, s: &str) -> Result<DateTime<Utc>> {
    window::parse_ts(s)
        .ok_or_else(|| Error::event(field, format!("not an RFC 3339 timestamp: {s:?}")))
}

/// The backfill id of a request: from its range and slice length, so that starting the same
/// backfill again finds its plan.
pub fn backfill_id(from: DateTime<Utc>, to: Option<DateTime<Utc>>, slice_hours: f64) -> String {
    format!(
        "backfill-{}-{}-{}h",
        window::format_compact(from),
        to.map_or_else(|| "open".to_string(), window::format_compact),
        slice_hours
    )
}

impl<St: StateStore, So: Source, Si: Sink + Clone + 'static> Engine<'_, St, So, Si> {
    fn backfill_key(&self, id: &str, rel: &str) -> String {
        format!("{}/_backfills/{id}/{rel}", self.settings.sync_id)
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, rel: &str) -> Result<Option<T>> {
        let key = self.sink.key(rel);
        match self.sink.get(&key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::sink(key, format!("unreadable: {e}"))),
        }
    }

    async fn put_json<T: Serialize>(&self, rel: &str, value: &T) -> Result<String> {
        let body = serde_json::to_vec_pretty(value).unwrap_or_default();
        put_once(self.sink, rel, body.into(), format::JSON).await
    }

    /// Plans a backfill (or finds its stored plan): its slices, written for the Map.
    pub async fn backfill_plan(&self, start: &BackfillStart, inv: &Invocation) -> Result<Planned> {
        let from = parse("backfill_plan.from", &start.from)?.trunc_subsecs(0);
        let to = match &start.to {
            Some(t) => Some(parse("backfill_plan.to", t)?.trunc_subsecs(0)),
            None => None,
        };
        if to.is_some_and(|t| t <= from) {
            return Err(Error::event("backfill_plan.to", "must be after from"));
        }
        let hours = start.slice_hours.unwrap_or(DEFAULT_SLICE_HOURS);
        if !(hours.is_finite() && (1.0 / 60.0..=24.0 * 366.0).contains(&hours)) {
            return Err(Error::event(
                "backfill_plan.slice_hours",
                format!("expected hours between 1/60 and 8784, got {hours}"),
            ));
        }
        let id = backfill_id(from, to, hours);
        let plan_rel = self.backfill_key(&id, "plan.json");
        let plan = match self.get_json::<BackfillPlan>(&plan_rel).await? {
            Some(p) => p,
            None => {
                let plan = self.new_plan(&id, from, to, hours, inv.started_at);
                self.put_json(&plan_rel, &plan).await?;
                plan
            }
        };
        let slices_rel = self.backfill_key(&id, "slices.json");
        let key = self.put_json(&slices_rel, &plan.slices).await?;
        self.sink.flush().await?;
        info!(backfill_id = %id, slices = plan.slices.len(), "backfill planned");
        Ok(Planned {
            stream: self.settings.sync_id.clone(),
            backfill_id: id,
            slices: plan.slices.len(),
            bucket: self.sink.bucket().map(str::to_string),
            key,
            max_concurrency: start.max_concurrency.unwrap_or(8),
        })
    }

    fn new_plan(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
        hours: f64,
        now: DateTime<Utc>,
    ) -> BackfillPlan {
        let task = |since: DateTime<Utc>, until: Option<DateTime<Utc>>| SliceTask {
            backfill_id: id.to_string(),
            since: window::format_ts(since),
            until: until.map(window::format_ts),
            part: 0,
            read_from: None,
        };
        // An API without an upper bound can only be read to its end: one slice. Without
        // `to`, the range is sliced up to the planning time and the last slice is left open
        // (read to the end, as a run's top slice is), so that leaving `to` out costs nothing.
        let slices = if self.source.bounded() {
            let end = to.unwrap_or_else(|| now.trunc_subsecs(0)).max(from);
            let step = TimeDelta::seconds(((hours * 3600.0) as i64).max(60));
            let mut out = Vec::new();
            let mut at = from;
            while at < end {
                let next = (at + step).min(end);
                out.push(task(at, Some(next)));
                at = next;
            }
            match (to, out.last_mut()) {
                (None, Some(last)) => last.until = None,
                (None, None) => out.push(task(from, None)),
                _ => {}
            }
            out
        } else {
            vec![task(from, None)]
        };
        BackfillPlan {
            backfill_id: id.to_string(),
            from: window::format_ts(from),
            to: to.map(window::format_ts),
            slice_hours: hours,
            synced_at: window::format_millis(now),
            slices,
        }
    }

    /// Reads one slice (from `read_from`, for a part after the first) until it is done or
    /// the deadline is near; its part's manifest says which.
    pub async fn backfill_slice(&self, task: &SliceTask, inv: &Invocation) -> Result<SliceOutcome> {
        let plan = self
            .stored_plan(&task.backfill_id, "backfill_slice.backfill_id")
            .await?;
        self.check_task(&plan, task).await?;
        let since = parse("backfill_slice.since", &task.since)?;
        let until = match &task.until {
            Some(u) => Some(parse("backfill_slice.until", u)?),
            None => None,
        };
        let read_from = match &task.read_from {
            Some(r) => parse("backfill_slice.read_from", r)?,
            None => since,
        };
        let part_rel = self.part_key(&task.backfill_id, &task.since, task.part)?;
        // A part already read (a retried invocation) is not read again.
        if let Some(done) = self.get_json::<Part>(&part_rel).await? {
            return Ok(outcome(&self.settings.sync_id, &done, task));
        }
        let synced = parse("plan.synced_at", &plan.synced_at)?;
        let req = RunRequest {
            state_override: Some(since),
            ..RunRequest::scheduled()
        };
        let stored = SyncState::default();
        let job = Job {
            req: &req,
            inv,
            stored: &stored,
            since: Some(read_from),
            started_at: synced,
            run_id: task.backfill_id.clone(),
        };
        let mut shared = self.shared(&job, Mutex::new(Fingerprints::empty()), None);
        // A backfill writes what it reads, remembering it (bounded as a run's set is) for
        // the commit to hand on.
        shared.judge = Judge {
            fingerprinting: self.settings.fingerprint_max > 0,
            skip_known: false,
            late_since: None,
            missed_before: None,
        };
        let range = Range {
            since: Some(read_from),
            until,
            name: format!(
                "{}-{}-p{}",
                task.backfill_id,
                window::format_compact(since),
                task.part
            ),
            slice: None,
        };
        let read = self.read(&job, &shared, range).await?;
        let max = read.durable_max();
        let fps = shared.fps.into_inner().unwrap_or_else(|e| e.into_inner());
        let done = !read.stopped_early;
        // In order, the next part starts a second before the newest row read: rows sharing
        // its second that this part did not reach come back whether the API reads `since`
        // inclusively or `updated_after`-style (rows read twice are harmless). Out of order,
        // or without moving on, it cannot be carried on.
        let next_from = max
            .filter(|_| read.ascending)
            .map(|m| m.trunc_subsecs(0) - TimeDelta::seconds(1))
            .filter(|m| *m > read_from);
        if !done && next_from.is_none() {
            return Err(Error::state(format!(
                "backfill {}: the slice from {} cannot be carried on from {}: it made no progress before the deadline, or its records did not come in ascending updatedAt order; give the function more time or use smaller slice_hours",
                task.backfill_id,
                task.since,
                window::format_ts(read_from)
            )));
        }
        let next = next_from.filter(|_| !done).map(|from| SliceTask {
            part: task.part + 1,
            read_from: Some(window::format_ts(from)),
            ..task.clone()
        });
        let fingerprints = self
            .part_fingerprints(fps, read_from, max, &part_rel)
            .await?;
        let part = Part {
            fingerprints,
            backfill_id: task.backfill_id.clone(),
            slice: task.clone(),
            objects: read.durable.objects.clone(),
            rejected: read.durable.rejected.clone(),
            counts: Counts {
                records_written: read.durable.records,
                records_rejected: read.durable.rejected_records,
                ..read.counts
            },
            max_updated_at: max.map(window::format_ts),
            done,
            next,
        };
        self.sink.flush().await?;
        self.put_json(&part_rel, &part).await?;
        self.sink.flush().await?;
        info!(
            backfill_id = %task.backfill_id,
            slice = %task.since,
            part = task.part,
            done,
            records_written = part.counts.records_written,
            "backfill slice part written"
        );
        Ok(outcome(&self.settings.sync_id, &part, task))
    }

    /// Stores the fingerprints of what a part wrote from `read_from`, kept within what a run
    /// or an audit re-reads below its newest row `max`, beside its manifest `part_rel`.
    async fn part_fingerprints(
        &self,
        mut fps: Fingerprints,
        read_from: DateTime<Utc>,
        max: Option<DateTime<Utc>>,
        part_rel: &str,
    ) -> Result<Option<String>> {
        let s = self.settings;
        if s.fingerprint_max == 0 || fps.is_empty() {
            return Ok(None);
        }
        let keep_from = window::since(max, s.remembered());
        fps.after_run(None, Some(read_from), true, keep_from, s.fingerprint_max);
        let rel = format!("{}.fp.bin", part_rel.trim_end_matches(".json"));
        let key = put_once(self.sink, &rel, fps.encode().into(), format::BINARY).await?;
        Ok(Some(key))
    }

    /// The fingerprint set after the backfill: the one `stored` names, with what every part
    /// wrote, kept within what the next run (or audit) from `new_cursor` re-reads; its key
    /// (`None`: fingerprints off, or nothing to say).
    async fn backfill_fingerprints(
        &self,
        id: &str,
        parts: &[Part],
        stored: &SyncState,
        new_cursor: Option<DateTime<Utc>>,
    ) -> Result<Option<String>> {
        let s = self.settings;
        if s.fingerprint_max == 0 || parts.iter().all(|p| p.fingerprints.is_none()) {
            return Ok(stored.fingerprints.clone());
        }
        let (mut set, _) = self.load_fingerprints(stored).await;
        let keep_from = window::since(new_cursor, s.remembered());
        // Only parts with rows the next run (or audit) re-reads, one at a time, each merged
        // then cut back to what is kept: memory stays that of one run's set.
        let recent = parts.iter().filter(|p| {
            let newest = p.max_updated_at.as_deref().and_then(window::parse_ts);
            keep_from.is_none_or(|k| newest.is_some_and(|n| n >= k))
        });
        for key in recent.filter_map(|p| p.fingerprints.as_deref()) {
            // A part's set that cannot be read costs the next run rewrites, never a row.
            match self.sink.get(key).await? {
                Some(bytes) => match Fingerprints::decode(&bytes) {
                    Ok(part) => set.absorb(part),
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "cannot use a part's fingerprints")
                    }
                },
                None => tracing::warn!(key = %key, "a part's fingerprints are missing"),
            }
            let from = set.covers_from();
            set.after_run(from, None, false, keep_from, s.fingerprint_max);
        }
        // Cut to what the next run re-reads even when no part was recent: the set must not
        // claim to cover the rows of the parts it skipped (they all lie below `keep_from`).
        let from = set.covers_from();
        set.after_run(from, None, false, keep_from, s.fingerprint_max);
        let rel = format!("{}/_fingerprints/{id}.bin", s.sync_id);
        Ok(Some(
            put_once(self.sink, &rel, set.encode().into(), format::BINARY).await?,
        ))
    }

    /// The key of part `part` of the slice from `since`.
    fn part_key(&self, id: &str, since: &str, part: u32) -> Result<String> {
        let since = window::format_compact(parse("since", since)?);
        Ok(self.backfill_key(id, &format!("parts/{since}-p{part}.json")))
    }

    /// Refuses a slice step that is not the plan's: a slice the plan does not have, another
    /// end, or a part that does not start where the part before it ended (a hand-sent event
    /// or a stray duplicate would leave a hole that the commit must never cross).
    async fn check_task(&self, plan: &BackfillPlan, task: &SliceTask) -> Result<()> {
        let id = &plan.backfill_id;
        let Some(planned) = plan.slices.iter().find(|s| s.since == task.since) else {
            return Err(Error::event(
                "backfill_slice.since",
                format!("backfill {id} has no slice from {}", task.since),
            ));
        };
        if planned.until != task.until {
            return Err(Error::event(
                "backfill_slice.until",
                format!(
                    "backfill {id}: the slice from {} ends at {}, not {}",
                    task.since,
                    planned.until.as_deref().unwrap_or("(open)"),
                    task.until.as_deref().unwrap_or("(open)")
                ),
            ));
        }
        let expected = match task.part {
            0 => Some(planned.clone()),
            n => {
                let rel = self.part_key(id, &task.since, n - 1)?;
                self.get_json::<Part>(&rel)
                    .await?
                    .filter(|p| !p.done)
                    .and_then(|p| p.next)
            }
        };
        if expected.as_ref() != Some(task) {
            return Err(Error::event(
                "backfill_slice.read_from",
                format!(
                    "backfill {id}: part {} of the slice from {} must start where part {} ended ({}); got {}",
                    task.part,
                    task.since,
                    task.part.saturating_sub(1),
                    expected
                        .as_ref()
                        .map(|e| e.read_from.as_deref().unwrap_or(&e.since))
                        .unwrap_or("no such part, or it finished the slice"),
                    task.read_from.as_deref().unwrap_or(&task.since)
                ),
            ));
        }
        Ok(())
    }

    /// Every slice's parts, to the last: the objects, counts and newest row of the backfill;
    /// an error naming the first slice not yet done, or a part that does not continue the
    /// one before it (the parts must tile each planned slice).
    async fn backfill_parts(&self, plan: &BackfillPlan) -> Result<(Vec<Part>, Counts)> {
        let mut parts = Vec::new();
        let mut counts = Counts::default();
        for slice in &plan.slices {
            let mut task = slice.clone();
            loop {
                let rel = self.part_key(&plan.backfill_id, &task.since, task.part)?;
                let part: Part = self.get_json(&rel).await?.ok_or_else(|| {
                    Error::state(format!(
                        "backfill {}: the slice from {} is not done (no {rel}); nothing was committed — run its slices, then commit again",
                        plan.backfill_id, slice.since
                    ))
                })?;
                if part.slice != task {
                    return Err(Error::state(format!(
                        "backfill {}: {rel} was read from {} to {}, but the plan and the part before it say {} to {}: a gap; nothing was committed — delete it and run the slice again",
                        plan.backfill_id,
                        part.slice.read_from.as_deref().unwrap_or(&part.slice.since),
                        part.slice.until.as_deref().unwrap_or("(open)"),
                        task.read_from.as_deref().unwrap_or(&task.since),
                        task.until.as_deref().unwrap_or("(open)"),
                    )));
                }
                counts.add(&part.counts);
                let next = part.next.clone();
                let done = part.done;
                parts.push(part);
                match next {
                    Some(n) if !done => task = n,
                    _ => break,
                }
            }
        }
        Ok((parts, counts))
    }

    /// Checks that every slice is done, lists every object in the backfill's manifest, then
    /// takes the lease and one fenced checkpoint. A live lease of a scheduled run fails with
    /// `StateBusy` (retry later); a second commit of the same backfill is `skipped`.
    pub async fn backfill_commit(&self, id: &str, inv: &Invocation) -> Result<RunSummary> {
        let clock = std::time::Instant::now();
        let plan = self.stored_plan(id, "backfill_commit.backfill_id").await?;
        let (parts, counts) = self.backfill_parts(&plan).await?;
        let stored = match self.backfill_lease(id, inv).await? {
            Ok(stored) => stored,
            Err(skipped) => return Ok(skipped),
        };
        // Holding the lease from here: any failure lets go of it at once, so the scheduled
        // runs need not wait for it to expire.
        let result = self
            .backfill_checkpoint(&plan, &parts, counts, &stored, inv)
            .await;
        if result.is_err() {
            let _ = self
                .state
                .release(&self.settings.sync_id, &inv.request_id)
                .await;
        }
        let mut s = result?;
        s.duration_ms = clock.elapsed().as_millis() as u64;
        Ok(s)
    }

    /// The stored plan of backfill `id` (an error naming `field` when there is none).
    async fn stored_plan(&self, id: &str, field: &str) -> Result<BackfillPlan> {
        let rel = self.backfill_key(id, "plan.json");
        self.get_json(&rel).await?.ok_or_else(|| {
            Error::event(field, format!("no plan at {rel}: plan the backfill first"))
        })
    }

    /// The lease for the commit of backfill `id`: the state it holds, or (`Err`) the summary
    /// of a commit already taken; `StateBusy` while another run holds it.
    async fn backfill_lease(
        &self,
        id: &str,
        inv: &Invocation,
    ) -> Result<std::result::Result<SyncState, RunSummary>> {
        let sync_id = &self.settings.sync_id;
        let claimant = Claimant {
            owner: &inv.request_id,
            invocation: id,
            now: inv.started_at,
            expires_at: inv.lease_until,
            state_override: None,
            buffer: self.settings.buffer,
        };
        match state::acquire(self.state, sync_id, &claimant).await? {
            Acquired::Leased { state, .. } => Ok(Ok(state)),
            Acquired::Held { lease, .. } => Err(Error::Busy {
                message: format!(
                    "another run ({}) holds the state until {}; the backfill's slices are durable: commit again later",
                    lease.owner,
                    window::format_millis(lease.expires_at)
                ),
            }),
            Acquired::Done { state } => {
                let mut s = RunSummary::new(sync_id, &manual(), self.settings.buffer);
                s.status = Status::Skipped;
                s.run_id = id.to_string();
                s.new_cursor = fmt(state.cursor);
                s.state_version = state.version;
                s.reason = Some(format!("backfill {id} was already committed"));
                Ok(Err(s))
            }
        }
    }

    /// Under the lease on `stored`: the backfill's manifest, then the fenced checkpoint. The
    /// cursor moves forward only, and only over no gap (the backfill must start at or before
    /// it), never past the planning invocation's clock.
    async fn backfill_checkpoint(
        &self,
        plan: &BackfillPlan,
        parts: &[Part],
        counts: Counts,
        stored: &SyncState,
        inv: &Invocation,
    ) -> Result<RunSummary> {
        let (sync_id, id) = (&self.settings.sync_id, plan.backfill_id.as_str());
        let from = parse("plan.from", &plan.from)?;
        let synced = parse("plan.synced_at", &plan.synced_at)?;
        let newest = parts
            .iter()
            .filter_map(|p| p.max_updated_at.as_deref().and_then(window::parse_ts))
            .max();
        let reaches = stored.cursor.is_none_or(|c| from <= c);
        let new_cursor =
            window::next_cursor(stored.cursor, newest.filter(|_| reaches), synced, false);
        let objects: Vec<ObjectEntry> = parts.iter().flat_map(|p| p.objects.clone()).collect();
        let rejected: Vec<ObjectEntry> = parts.iter().flat_map(|p| p.rejected.clone()).collect();
        let manifest = Manifest {
            sync_id: sync_id.clone(),
            run_id: id.to_string(),
            window: ManifestWindow {
                since: Some(plan.from.clone()),
                until: plan.to.clone().unwrap_or_else(|| window::format_ts(synced)),
            },
            starting_version: stored.version,
            previous_cursor: fmt(stored.cursor),
            new_cursor: fmt(new_cursor),
            objects,
            rejected,
            counts,
            fingerprints: None,
            synced_at: plan.synced_at.clone(),
        };
        let fingerprints = self
            .backfill_fingerprints(id, parts, stored, new_cursor)
            .await?;
        let manifest = Manifest {
            fingerprints: fingerprints.clone(),
            ..manifest
        };
        let manifest_key = self
            .put_json(&format!("{sync_id}/_manifests/{id}.json"), &manifest)
            .await?;
        self.sink.flush().await?;
        let commit = Commit {
            expected: stored.version,
            owner: &inv.request_id,
            cursor: new_cursor,
            run_id: id,
            invocation: Some(id),
            fingerprints: fingerprints.as_deref(),
            done: &DoneRanges::default(),
        };
        let mut s = RunSummary::new(sync_id, &manual(), self.settings.buffer);
        s.run_id = id.to_string();
        s.started_at = plan.synced_at.clone();
        s.since = Some(plan.from.clone());
        s.previous_cursor = fmt(stored.cursor);
        s.counts = counts;
        s.objects = manifest.objects.iter().map(|o| o.key.clone()).collect();
        s.rejected_objects = manifest.rejected.iter().map(|o| o.key.clone()).collect();
        s.manifest = Some(manifest_key);
        match self.state.checkpoint(sync_id, &commit).await? {
            Checkpoint::Committed { version } => {
                s.checkpoints = 1;
                s.state_version = version;
                s.new_cursor = fmt(new_cursor);
                if !reaches {
                    s.reason = Some(format!(
                        "the backfill starts at {} after the cursor {}: its data is in the lake, the cursor stays (reading the gap is the scheduled runs' work)",
                        plan.from,
                        fmt(stored.cursor).unwrap_or_default()
                    ));
                }
            }
            Checkpoint::Conflict => {
                let now = self.state.load(sync_id).await?;
                s.status = Status::Conflict;
                s.state_version = now.version;
                s.new_cursor = fmt(now.cursor);
            }
        }
        Ok(s)
    }
}

/// The request a backfill's commit reports as (a manual run).
fn manual() -> RunRequest {
    RunRequest {
        trigger: crate::event::Trigger::Manual,
        ..RunRequest::scheduled()
    }
}

/// The step's answer for a part.
fn outcome(stream: &str, part: &Part, task: &SliceTask) -> SliceOutcome {
    SliceOutcome {
        stream: stream.to_string(),
        done: part.done,
        backfill_slice: part.next.clone().unwrap_or_else(|| task.clone()),
        records_written: part.counts.records_written,
        objects: part.objects.len(),
    }
}

impl<St: StateStore, So: Source, Si: Sink + Clone + 'static> Engine<'_, St, So, Si> {
    /// The whole backfill in one process: plan, every slice (`concurrency` at once, each
    /// carried on until done), then the commit. `progress` hears of each slice done.
    pub async fn backfill(
        &self,
        start: &BackfillStart,
        inv: &Invocation,
        concurrency: usize,
        progress: impl Fn(usize, usize, &SliceOutcome, &SliceTask),
    ) -> Result<RunSummary> {
        let planned = self.backfill_plan(start, inv).await?;
        let plan = self.stored_plan(&planned.backfill_id, "backfill").await?;
        let total = plan.slices.len();
        let mut queue = plan.slices.iter();
        let mut running = FuturesUnordered::new();
        let mut done = 0;
        loop {
            while running.len() < concurrency.max(1) {
                let Some(slice) = queue.next() else { break };
                running.push(async move {
                    let mut task = slice.clone();
                    loop {
                        let out = self.backfill_slice(&task, inv).await?;
                        if out.done {
                            return Ok::<_, Error>((out, slice));
                        }
                        task = out.backfill_slice;
                    }
                });
            }
            let Some(next) = running.next().await else {
                break;
            };
            let (out, slice) = next?;
            done += 1;
            progress(done, total, &out, slice);
        }
        self.backfill_commit(&planned.backfill_id, inv).await
    }
}
