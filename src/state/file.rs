//! The file state store: one JSON document mapping each sync id to its state,
//! `{"user": {"last_timestamp": "2024-01-15T10:30:00Z", "version": 3, ...}}`.
//!
//! Every change (lease, checkpoint, release) takes an exclusive lock on `PATH.lock` (e.g.
//! `state.json.lock`; so two
//! processes on one machine cannot interleave), re-reads the document, checks the
//! condition (version, lease), writes a temporary file
//! beside it, fsyncs it and renames it over the document: readers see the old or the new
//! document, never half of one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Checkpoint, Commit, DoneRanges, Lease, Plan, StateStore, SyncState};
use crate::error::{Cause, Error, Result};
use crate::window;

#[derive(Debug, Clone)]
pub struct FileStateStore {
    path: PathBuf,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Item {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_timestamp: Option<String>,
    #[serde(default)]
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_invocation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprints: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    done_ranges: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plan_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plan_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plan_until: Option<String>,
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
            Err(e) => Err(Error::state(format!("reading {}: {e}", path.display()))
                .caused(Cause::of_io(&e), e)),
        }
    }

    fn to_state(item: &Item, path: &Path) -> Result<SyncState> {
        let ts = |field: &str, v: &Option<String>| -> Result<Option<DateTime<Utc>>> {
            v.as_deref()
                .map(|s| {
                    window::parse_ts(s).ok_or_else(|| {
                        Error::state(format!(
                            "{}: {field} {s:?} is not an RFC 3339 timestamp",
                            path.display()
                        ))
                    })
                })
                .transpose()
        };
        let lease = match (
            &item.lease_owner,
            ts("lease_expires_at", &item.lease_expires_at)?,
        ) {
            (Some(owner), Some(expires_at)) => Some(Lease {
                owner: owner.clone(),
                expires_at,
            }),
            (None, None) => None,
            // Half a lease (a hand edit): no lease, as `try_lease` sees it too.
            (owner, _) => {
                tracing::warn!(
                    path = %path.display(),
                    has_owner = owner.is_some(),
                    "the state item holds half a lease (lease_owner and lease_expires_at go together): read as no lease; the next lease replaces it"
                );
                None
            }
        };
        let plan = match (item.plan_version, ts("plan_until", &item.plan_until)?) {
            (Some(version), Some(until)) => Some(Plan {
                version,
                since: ts("plan_since", &item.plan_since)?,
                until,
            }),
            _ => None,
        };
        Ok(SyncState {
            cursor: ts("last_timestamp", &item.last_timestamp)?,
            version: item.version,
            lease,
            plan,
            last_invocation: item.last_invocation.clone(),
            fingerprints: item.fingerprints.clone(),
            done: DoneRanges::parse(item.done_ranges.as_deref()),
        })
    }

    /// Runs `change` on the sync id's item under the document's lock and writes the
    /// document back atomically if `change` returned `true`.
    fn update(path: &Path, sync_id: &str, change: impl FnOnce(&mut Item) -> bool) -> Result<bool> {
        let io = |what: &str, e: std::io::Error| {
            Error::state(format!("{what} {}: {e}", path.display())).caused(Cause::of_io(&e), e)
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| io("creating the directory of", e))?;
        // `PATH.lock`, beside the document (never the document itself, whatever its name).
        let mut lock_name = path.file_name().unwrap_or_default().to_os_string();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("opening the lock of", e))?;
        lock.lock().map_err(|e| io("locking", e))?;

        // Under the lock no other write of the document is under way: a temporary file of
        // it is a killed writer's.
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            sweep_stale_temps(&dir, Some(name));
        }
        let mut doc = Self::read(path)?;
        let item = doc.entry(sync_id.to_string()).or_default();
        if !change(item) {
            return Ok(false);
        }
        let body = serde_json::to_vec_pretty(&doc).map_err(|e| Error::state(e.to_string()))?;
        write_atomically(path, &body).map_err(|e| io("writing", e))?;
        drop(lock); // releases the lock
        Ok(true)
    }
}

fn lease_fields(lease: Option<&Lease>) -> (Option<String>, Option<String>) {
    match lease {
        Some(l) => (
            Some(l.owner.clone()),
            Some(window::format_millis(l.expires_at)),
        ),
        None => (None, None),
    }
}

/// Writes `body` to a durable temporary file beside `path`, then calls `place(temp, path)`
/// (which puts it in place) and, with `sync_dir`, fsyncs the directory so that the placing
/// is durable too (without it, the caller does that later).
/// The temporary file is removed afterwards (a rename leaves nothing to remove).
pub(crate) fn write_beside<T>(
    path: &Path,
    body: &[u8],
    sync_dir: bool,
    place: impl FnOnce(&Path, &Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
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
        let placed = place(&tmp, path)?;
        if sync_dir {
            File::open(&dir)?.sync_all()?;
        }
        Ok(placed)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Removes the temporary files that [`write_beside`] left in `dir` when its process was
/// killed mid-write (`.NAME.tmp-PID-RANDOM`): those of processes no longer running, or older
/// than an hour (a write takes milliseconds; an old one is a dead process's, its id reused).
/// With `only`, just those of that file name; files of this process are kept (its writes
/// may be under way). Returns how many were removed.
pub(crate) fn sweep_stale_temps(dir: &Path, only: Option<&str>) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((target, rest)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-"))
        else {
            continue;
        };
        if only.is_some_and(|o| o != target) {
            continue;
        }
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        let running = Path::new(&format!("/proc/{pid}")).exists();
        if (!running || old) && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(
            dir = %dir.display(),
            removed,
            "removed temporary files left by a killed process"
        );
    }
    removed
}

/// Replaces `path` with `body` atomically: readers see the old or the new content, whole.
pub(crate) fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    write_beside(path, body, true, |tmp, path| fs::rename(tmp, path))
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

    async fn try_lease(
        &self,
        sync_id: &str,
        seen: &SyncState,
        lease: &Lease,
        plan: &Plan,
    ) -> Result<bool> {
        let path = self.path.clone();
        let id = sync_id.to_string();
        let (version, seen_lease) = (seen.version, lease_fields(seen.lease.as_ref()));
        let (owner, expires) = lease_fields(Some(lease));
        let plan = plan.clone();
        blocking(move || {
            Self::update(&path, &id, |item| {
                let stored = (item.lease_owner.clone(), item.lease_expires_at.clone());
                let unchanged = match &seen_lease {
                    // No lease, or half of one (read as none by `load`).
                    (None, None) => stored.0.is_none() || stored.1.is_none(),
                    _ => stored == seen_lease,
                };
                if item.version != version || !unchanged {
                    return false;
                }
                item.lease_owner = owner;
                item.lease_expires_at = expires;
                item.plan_version = Some(plan.version);
                item.plan_since = plan.since.map(window::format_ts);
                item.plan_until = Some(window::format_millis(plan.until));
                true
            })
        })
        .await
    }

    async fn checkpoint(&self, sync_id: &str, commit: &Commit<'_>) -> Result<Checkpoint> {
        let path = self.path.clone();
        let id = sync_id.to_string();
        let expected = commit.expected;
        let owner = commit.owner.to_string();
        let cursor = commit.cursor;
        let (run, invocation) = (
            commit.run_id.to_string(),
            commit.invocation.map(str::to_string),
        );
        let fingerprints = commit.fingerprints.map(str::to_string);
        let done = commit.done.format();
        let committed = blocking(move || {
            Self::update(&path, &id, |item| {
                if item.version != expected || item.lease_owner.as_deref() != Some(owner.as_str()) {
                    return false;
                }
                item.version = expected + 1;
                if let Some(c) = cursor {
                    item.last_timestamp = Some(window::format_ts(c));
                }
                item.updated_at = Some(window::format_ts(Utc::now()));
                item.last_run_id = Some(run);
                if invocation.is_some() {
                    item.last_invocation = invocation;
                }
                if fingerprints.is_some() {
                    item.fingerprints = fingerprints;
                }
                item.done_ranges = done;
                item.lease_owner = None;
                item.lease_expires_at = None;
                true
            })
        })
        .await?;
        Ok(if committed {
            Checkpoint::Committed {
                version: expected + 1,
            }
        } else {
            Checkpoint::Conflict
        })
    }

    async fn release(&self, sync_id: &str, owner: &str) -> Result<()> {
        let path = self.path.clone();
        let (id, owner) = (sync_id.to_string(), owner.to_string());
        blocking(move || {
            Self::update(&path, &id, |item| {
                if item.lease_owner.as_deref() != Some(owner.as_str()) {
                    return false;
                }
                item.lease_owner = None;
                item.lease_expires_at = None;
                true
            })
        })
        .await
        .map(drop)
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
