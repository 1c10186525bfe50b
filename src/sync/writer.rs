//! Objects in flight: a run's data and rejected objects are encoded and written in the
//! background, a few at a time, each under a write-once key ([`crate::sink::put_once`]); an
//! object counts (towards the cursor, the summary, the manifest) only once it is durable.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::summary::ObjectEntry;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::format::Format;
use crate::record::{Record, Rejected};
use crate::sink::{Sink, put_once};

/// Object writes that may be under way at once, besides the batch being filled. Writes
/// overlap parsing (and each other: S3 latency, fsyncs), and memory stays bounded.
const WRITES_IN_FLIGHT: usize = 4;

/// What a run has written so far, and the writes still under way.
pub(super) struct Written<Si: Sink + Clone + 'static> {
    pub(super) sink: Si,
    pub(super) dry_run: bool,
    format: Format,
    pub(super) prefix: String,
    pub(super) run_id: String,
    pub(super) synced_at: String,
    pub(super) data_parts: usize,
    pub(super) rejected_parts: usize,
    pending: VecDeque<Pending>,
    pub(super) objects: Vec<ObjectEntry>,
    pub(super) rejected: Vec<ObjectEntry>,
    pub(super) records: u64,
    pub(super) rejected_records: u64,
    pub(super) max_updated_at: Option<DateTime<Utc>>,
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
    /// Nothing written yet: objects go under `prefix` (the sync id's folder), named after
    /// `run_id`, their lines stamped `synced_at`; in a dry run nothing is written at all.
    pub(super) fn new(
        sink: Si,
        dry_run: bool,
        prefix: String,
        run_id: String,
        synced_at: String,
    ) -> Self {
        Written {
            sink,
            dry_run,
            format: Format::default(),
            prefix,
            run_id,
            synced_at,
            data_parts: 0,
            rejected_parts: 0,
            pending: VecDeque::new(),
            objects: Vec::new(),
            rejected: Vec::new(),
            records: 0,
            rejected_records: 0,
            max_updated_at: None,
        }
    }

    /// Starts writing a data object. It counts towards the cursor only once written.
    pub(super) async fn data(&mut self, batch: Vec<Record>) -> Result<()> {
        let rel = format!(
            "{}{}-{:05}.{}",
            self.prefix,
            self.run_id,
            self.data_parts,
            self.format.extension()
        );
        self.data_parts += 1;
        let max = batch.iter().map(|r| r.updated_at).max();
        let n = batch.len() as u64;
        let synced_at = self.synced_at.clone();
        let format = self.format;
        self.start(rel, n, Some(max), move || {
            format.records(&batch, &synced_at)
        })
        .await
    }

    /// Starts writing rejected records.
    pub(super) async fn rejected(&mut self, batch: Vec<Rejected>) -> Result<()> {
        let rel = format!(
            "{}_rejected/{}-{:05}.{}",
            self.prefix,
            self.run_id,
            self.rejected_parts,
            self.format.extension()
        );
        self.rejected_parts += 1;
        let n = batch.len() as u64;
        let synced_at = self.synced_at.clone();
        let format = self.format;
        self.start(rel, n, None, move || format.rejected(&batch, &synced_at))
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
            let content_type = self.format.content_type();
            tokio::spawn(async move { put_once(&sink, &rel, encode().into(), content_type).await })
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
            p.entry.key = task.await.map_err(|e| {
                Error::sink(p.entry.key.clone(), format!("the write task failed: {e}"))
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
    pub(super) async fn finish(&mut self) -> Result<()> {
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
