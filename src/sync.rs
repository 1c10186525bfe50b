//! The engine: plan → fetch → batch → write → manifest → checkpoint, generic over the ports.
//!
//! Guarantees of one run:
//! * the cursor only moves by a checkpoint, taken after every data object and the manifest
//!   are durable, conditioned on the state version the run loaded;
//! * the new cursor is the greatest `updatedAt` written (see [`crate::window::next_cursor`]);
//! * object keys depend only on the starting state (version and window start), so a
//!   retried run rewrites the same keys;
//! * a failure returns an error before the checkpoint: the cursor stays, nothing is lost.

use std::collections::VecDeque;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::batch::{self, Batcher};
use crate::config::BatchLimits;
use crate::error::{Error, Result};
use crate::event::{RunRequest, Trigger};
use crate::record::{Entry, Record, Rejected};
use crate::sink::{self, Sink};
use crate::source::{Pages, Source};
use crate::state::{Checkpoint, StateStore};
use crate::window;
use tokio::task::JoinHandle;
use tokio::time::Instant as Deadline;

/// What the engine needs besides the ports.
#[derive(Debug, Clone)]
pub struct Settings {
    pub sync_id: String,
    pub buffer: TimeDelta,
    pub batch: BatchLimits,
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
const WRITES_IN_FLIGHT: usize = 2;

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

/// A write under way (`task` is `None` in a dry run).
struct Pending {
    task: Option<JoinHandle<Result<()>>>,
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
            let (sink, key) = (self.sink.clone(), key.clone());
            tokio::spawn(async move { sink.put(&key, encode(), sink::JSONL).await })
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
        let Some(p) = self.pending.pop_front() else {
            return Ok(());
        };
        if let Some(task) = p.task {
            task.await.map_err(|e| Error::Sink {
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
    /// Runs one sync. `started_at` is the run's clock reading: it bounds the cursor and
    /// stamps `_synced_at`. `deadline` is when the invocation will be stopped, if known.
    pub async fn run(
        &self,
        req: &RunRequest,
        started_at: DateTime<Utc>,
        deadline: Option<Deadline>,
    ) -> Result<RunSummary> {
        let clock = Instant::now();
        let sync_id = &self.settings.sync_id;
        let stored = self.state.load(sync_id).await?;
        let previous = req.state_override.or(stored.cursor);
        let buffer = req.buffer.unwrap_or(self.settings.buffer);
        let since = window::since(previous, buffer);
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

        let mut reader = self.source.open(since, deadline);
        let mut page_records = 0u64;
        while let Some(chunk) = reader.next_chunk().await? {
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
                        if let Some(full) = batcher.push(r) {
                            written.data(full).await?;
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
        }
        if let Some(last) = batcher.take() {
            written.data(last).await?;
        }
        if !rejected.is_empty() {
            written.rejected(rejected).await?;
        }
        written.finish().await?;

        let new_cursor = window::next_cursor(
            stored.cursor,
            written.max_updated_at,
            started_at,
            req.rewind,
        );
        let fmt = |c: Option<DateTime<Utc>>| c.map(window::format_ts);
        let mut summary = RunSummary {
            sync_id: sync_id.clone(),
            status: Status::Completed,
            trigger: req.trigger,
            run_id: run_id.clone(),
            started_at: written.synced_at.clone(),
            buffer_hours: buffer.num_milliseconds() as f64 / 3_600_000.0,
            since: fmt(since),
            previous_cursor: fmt(previous),
            new_cursor: fmt(stored.cursor),
            planned_cursor: None,
            state_version: stored.version,
            records_fetched: fetched,
            records_written: written.records,
            records_rejected: written.rejected_records,
            records_deduplicated: batcher.deduplicated(),
            objects: Vec::new(),
            rejected_objects: Vec::new(),
            manifest: None,
            pages,
            bytes_fetched: bytes,
            checkpoints: 0,
            duration_ms: 0,
        };

        if req.dry_run {
            summary.status = Status::DryRun;
            summary.planned_cursor = fmt(new_cursor);
            summary.duration_ms = clock.elapsed().as_millis() as u64;
            return Ok(summary);
        }

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
            synced_at: written.synced_at.clone(),
        };
        let manifest_key = self
            .sink
            .key(&format!("{sync_id}/_manifests/{run_id}.json"));
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        self.sink.put(&manifest_key, body, sink::JSON).await?;
        summary.objects = written.objects.iter().map(|o| o.key.clone()).collect();
        summary.rejected_objects = written.rejected.iter().map(|o| o.key.clone()).collect();
        summary.manifest = Some(manifest_key);

        match self
            .state
            .checkpoint(sync_id, stored.version, new_cursor, &run_id)
            .await?
        {
            Checkpoint::Committed { version } => {
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
                    "checkpoint lost a race: another run advanced the state; cursor left untouched"
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
