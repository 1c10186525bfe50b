//! What a run reports: its status, the run summary of the contract (returned, logged, turned
//! into metrics), and the manifest it writes before its checkpoint.

use chrono::TimeDelta;
use serde::Serialize;

use crate::event::{RunRequest, Trigger};

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
    /// What the run fetched and what became of it (the manifest carries the same).
    #[serde(flatten)]
    pub counts: Counts,
    /// Why nothing was done (`skipped`), or why the cursor was held back (`partial`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub objects: Vec<String>,
    pub rejected_objects: Vec<String>,
    pub manifest: Option<String>,
    pub checkpoints: u64,
    pub duration_ms: u64,
}

/// What a run (or a slice of one) fetched and what became of every record: shared, as one
/// value, by the run summary and the manifest. Every record fetched is written, rejected,
/// deduplicated, skipped or stale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counts {
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
    /// An audit only: rows of the audit window never written before and older than what the
    /// normal runs re-read (`cursor − BUFFER_HOURS`): the buffer missed them. Not counted in
    /// `late_records`.
    pub records_missed_by_buffer: u64,
    /// How far behind the cursor the most belated of those was stamped: `BUFFER_HOURS` would
    /// have had to be at least this to catch it.
    pub max_missed_lateness_seconds: f64,
    pub pages: u64,
    pub bytes_fetched: u64,
}

impl Counts {
    /// Adds `other` (another slice of the same run) to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.records_fetched += other.records_fetched;
        self.records_written += other.records_written;
        self.records_rejected += other.records_rejected;
        self.records_deduplicated += other.records_deduplicated;
        self.records_skipped += other.records_skipped;
        self.records_stale += other.records_stale;
        self.late_records += other.late_records;
        self.max_lateness_seconds = self.max_lateness_seconds.max(other.max_lateness_seconds);
        self.records_missed_by_buffer += other.records_missed_by_buffer;
        self.max_missed_lateness_seconds = self
            .max_missed_lateness_seconds
            .max(other.max_missed_lateness_seconds);
        self.pages += other.pages;
        self.bytes_fetched += other.bytes_fetched;
    }
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
    /// The same counts as the run summary's.
    #[serde(flatten)]
    pub counts: Counts,
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

impl RunSummary {
    /// An empty summary of a run of `req` (every count zero).
    pub fn new(sync_id: &str, req: &RunRequest, buffer: TimeDelta) -> Self {
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
            counts: Counts::default(),
            reason: None,
            objects: Vec::new(),
            rejected_objects: Vec::new(),
            manifest: None,
            checkpoints: 0,
            duration_ms: 0,
        }
    }
}
