//! The file state store: one JSON document mapping each sync id to its state,
//! `{"user": {"last_timestamp": "2024-01-15T10:30:00Z", "version": 3, ...}}`.
//!
//! A checkpoint takes an exclusive lock on `PATH.lock` (so two processes on one machine
//! cannot interleave), re-reads the document, checks the version, writes a temporary file
//! beside it, fsyncs it and renames it over the document: readers see the old or the new
//! document, never half of one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Checkpoint, StateStore, SyncState};
use crate::error::{Error, Result};
use crate::window;

#[derive(Debug, Clone)]
pub struct FileStateStore {
    path: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Item {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_timestamp: Option<String>,
    #[serde(default)]
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_run_id: Option<String>,
}

type Document = BTreeMap<String, Item>;

impl FileStateStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStateStore { path: path.into() }
    }

    fn read(path: &Path) -> Result<Document> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::state(format!(
                    "{} is not a valid state document: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Document::new()),
            Err(e) => Err(Error::state(format!("reading {}: {e}", path.display()))),
        }
    }

    fn to_state(item: &Item, path: &Path) -> Result<SyncState> {
        let cursor = match &item.last_timestamp {
            None => None,
            Some(s) => Some(window::parse_ts(s).ok_or_else(|| {
                Error::state(format!(
                    "{}: last_timestamp {s:?} is not an RFC 3339 timestamp",
                    path.display()
                ))
            })?),
        };
        Ok(SyncState {
            cursor,
            version: item.version,
        })
    }

    fn checkpoint_blocking(
        path: &Path,
        sync_id: &str,
        expected: u64,
        cursor: Option<DateTime<Utc>>,
        run_id: &str,
    ) -> Result<Checkpoint> {
        let io =
            |what: &str, e: std::io::Error| Error::state(format!("{what} {}: {e}", path.display()));
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| io("creating the directory of", e))?;
        let lock_path = path.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("opening the lock of", e))?;
        lock.lock().map_err(|e| io("locking", e))?;

        let mut doc = Self::read(path)?;
        let item = doc.entry(sync_id.to_string()).or_default();
        if item.version != expected {
            return Ok(Checkpoint::Conflict);
        }
        item.version = expected + 1;
        if let Some(c) = cursor {
            item.last_timestamp = Some(window::format_ts(c));
        }
        item.updated_at = Some(window::format_ts(Utc::now()));
        item.last_run_id = Some(run_id.to_string());
        let version = item.version;

        let body = serde_json::to_vec_pretty(&doc).map_err(|e| Error::state(e.to_string()))?;
        write_atomically(path, &body).map_err(|e| io("writing", e))?;
        drop(lock); // releases the lock
        Ok(Checkpoint::Committed { version })
    }
}

/// Writes `body` to a temporary file beside `path`, fsyncs it, renames it over `path` and
/// fsyncs the directory, so `path` holds the old or the new content, whole.
pub(crate) fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl StateStore for FileStateStore {
    async fn load(&self, sync_id: &str) -> Result<SyncState> {
        let path = self.path.clone();
        let id = sync_id.to_string();
        blocking(move || {
            let doc = Self::read(&path)?;
            doc.get(&id)
                .map_or(Ok(SyncState::default()), |item| Self::to_state(item, &path))
        })
        .await
    }

    async fn checkpoint(
        &self,
        sync_id: &str,
        expected: u64,
        cursor: Option<DateTime<Utc>>,
        run_id: &str,
    ) -> Result<Checkpoint> {
        let path = self.path.clone();
        let (id, run) = (sync_id.to_string(), run_id.to_string());
        blocking(move || Self::checkpoint_blocking(&path, &id, expected, cursor, &run)).await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::state(format!("file state task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn absent_file_reads_as_version_zero() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStateStore::new(dir.path().join("nested/state.json"));
        assert_eq!(s.load("user").await.unwrap(), SyncState::default());
    }

    #[tokio::test]
    async fn corrupt_document_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        fs::write(&p, b"{not json").unwrap();
        let err = FileStateStore::new(&p)
            .load("user")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid state document"), "{err}");
    }
}
