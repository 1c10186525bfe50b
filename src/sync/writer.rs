//! Objects in flight: a run's data and rejected objects are encoded and written in the
//! background, a few at a time, each under a write-once key ([`crate::sink::put_once`]); an
//! object counts (towards the cursor, the summary, the manifest) only once it is durable.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::summary::ObjectEntry;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::format::Format;
use crate::record::{Record, Rejected};
use crate::sink::{Sink, put_once};

/// Object writes that may be under way at once in a run (all slices together), besides the
/// batches being filled. Writes overlap parsing (and each other: S3 latency, fsyncs), and
/// memory stays bounded.
pub(super) const WRITES_IN_FLIGHT: usize = 4;

/// What is durable: the objects written (in the order they were started), their record
/// counts, and the greatest `updatedAt` among their records.
#[derive(Debug, Default)]
pub(super) struct Durable {
    pub(super) objects: Vec<ObjectEntry>,
    pub(super) rejected: Vec<ObjectEntry>,
    pub(super) records: u64,
    pub(super) rejected_records: u64,
    pub(super) max_updated_at: Option<DateTime<Utc>>,
}

impl Durable {
    /// Adds what another read of the same run made durable.
    pub(super) fn add(&mut self, other: Durable) {
        self.objects.extend(other.objects);
        self.rejected.extend(other.rejected);
        self.records += other.records;
        self.rejected_records += other.rejected_records;
        self.max_updated_at = self.max_updated_at.max(other.max_updated_at);
    }
}

/// What one read (the run's window, or one slice of it) has written so far, and the writes
/// still under way.
pub(super) struct Written<Si: Sink + Clone + 'static> {
    sink: Si,
    dry_run: bool,
    format: Format,
    prefix: String,
    name: String,
    synced_at: String,
    data_parts: usize,
    rejected_parts: usize,
    pending: VecDeque<Pending>,
    /// Shared by the reads of one run: a write holds a permit until it is durable.
    limit: Arc<Semaphore>,
    pub(super) durable: Durable,
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
    /// `name` (the run id, and the slice), their lines stamped `synced_at`; in a dry run
    /// nothing is written at all. At most `limit`'s permits of writes are under way; objects
    /// are stored in `format`.
    pub(super) fn new(
        sink: Si,
        dry_run: bool,
        prefix: String,
        name: String,
        synced_at: String,
        limit: Arc<Semaphore>,
        format: Format,
    ) -> Self {
        Written {
            sink,
            dry_run,
            format,
            prefix,
            name,
            synced_at,
            data_parts: 0,
            rejected_parts: 0,
            pending: VecDeque::new(),
            limit,
            durable: Durable::default(),
        }
    }

    /// Starts writing a data object. It counts towards the cursor only once written.
    pub(super) async fn data(&mut self, batch: Vec<Record>) -> Result<()> {
        let rel = format!(
            "{}{}-{:05}.{}",
            self.prefix,
            self.name,
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
            self.name,
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
        encode: impl FnOnce() -> std::io::Result<Vec<u8>> + Send + 'static,
    ) -> Result<()> {
        while self.pending.len() >= WRITES_IN_FLIGHT {
            self.complete_oldest().await?;
        }
        let key = self.sink.key(&rel);
        let task = if self.dry_run {
            None
        } else {
            // Another read's writes may hold every permit: they finish on their own.
            let permit =
                match self.limit.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        if !self.pending.is_empty() {
                            self.complete_oldest().await?;
                        }
                        self.limit.clone().acquire_owned().await.map_err(|_| {
                            Error::sink(key.clone(), "the run's write limit was closed")
                        })?
                    }
                };
            let sink = self.sink.clone();
            let content_type = self.format.content_type();
            let key = key.clone();
            Some(tokio::spawn(async move {
                let body = encode()
                    .map_err(|e| Error::sink(key, format!("encoding the object failed: {e}")))?;
                let put = put_once(&sink, &rel, body.into(), content_type).await;
                drop(permit);
                put
            }))
        };
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
                let d = &mut self.durable;
                d.max_updated_at = d.max_updated_at.max(max);
                d.records += p.entry.records;
                d.objects.push(p.entry);
                if !self.dry_run {
                    failpoint::reached("object").await;
                }
            }
            None => {
                if !self.dry_run {
                    warn!(key = %p.entry.key, records = p.entry.records, "wrote rejected records");
                }
                self.durable.rejected_records += p.entry.records;
                self.durable.rejected.push(p.entry);
            }
        }
        Ok(())
    }

    /// Waits for every write under way; returns what is durable.
    pub(super) async fn finish(mut self) -> Result<Durable> {
        while !self.pending.is_empty() {
            self.complete_oldest().await?;
        }
        Ok(std::mem::take(&mut self.durable))
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
