//! The directory sink: keys are paths below a root directory. Each object is written to a
//! temporary file, fsynced and hard-linked into place, so a reader never sees half an object
//! (not even after a power cut) and an existing object is never replaced. The directories
//! that received objects are fsynced by [`Sink::flush`], once per run rather than once per
//! object: each directory fsync is a journal commit that every other write waits for.
//! A process killed mid-write leaves its temporary file (`.NAME.tmp-PID-…`) behind: the next
//! write into that directory removes it (see `sweep_stale_temps`).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Put, Sink};
use crate::error::{Cause, Error, Result};
use crate::state::file::write_beside;

#[derive(Debug, Clone)]
pub struct DirSink {
    root: PathBuf,
    /// Directories with entries not yet made durable (shared by clones).
    unsynced: Arc<Mutex<Unsynced>>,
    /// Directories already swept of temporary files that killed processes left there.
    swept: Arc<Mutex<std::collections::HashSet<PathBuf>>>,
}

/// Each directory with new entries, and the number of the latest object placed in or
/// below it, so that a flush forgets a directory only if nothing was placed there after it
/// looked (two runs may share a sink and flush at the same time).
#[derive(Debug, Default)]
struct Unsynced {
    placed: u64,
    dirs: BTreeMap<PathBuf, u64>,
}

impl DirSink {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirSink {
            root: root.into(),
            unsynced: Arc::default(),
            swept: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Sink for DirSink {
    fn key(&self, rel: &str) -> String {
        rel.to_string()
    }

    async fn put_new(
        &self,
        key: &str,
        body: bytes::Bytes,
        _content_type: &'static str,
    ) -> Result<Put> {
        let path = self.path(key)?;
        let key_owned = key.to_string();
        let root = self.root.clone();
        // The first write into a directory sweeps it of what a killed run left.
        let sweep = path.parent().map(Path::to_path_buf).filter(|dir| {
            self.swept
                .lock()
                .map(|mut s| s.insert(dir.clone()))
                .unwrap_or(false)
        });
        let placed = tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if let Some(dir) = sweep {
                crate::state::file::sweep_stale_temps(&dir, None);
            }
            create_new(&path, &body).map(|put| (put, path))
        })
        .await
        .map_err(|e| Error::sink(&key_owned, format!("write task failed: {e}")))?
        .map_err(|e| {
            Error::sink(&key_owned, format!("{} ({})", e, root.display()))
                .caused(Cause::of_io(&e), e)
        })?;
        let (put, path) = placed;
        // Now that the object is in place: its directory and the ones above it, up to the
        // root's parent (any of them may have been created now), await `flush`.
        if let Ok(mut u) = self.unsynced.lock() {
            u.placed += 1;
            let n = u.placed;
            let top = dir_or_dot(self.root.parent().unwrap_or(&self.root));
            for dir in path.ancestors().skip(1).map(dir_or_dot) {
                u.dirs.insert(dir.to_path_buf(), n);
                if dir == top {
                    break;
                }
            }
        }
        Ok(put)
    }

    async fn flush(&self) -> Result<()> {
        let dirs = match self.unsynced.lock() {
            Ok(u) => u.dirs.clone(),
            Err(_) => return Err(Error::sink("", "the directory list is poisoned")),
        };
        if dirs.is_empty() {
            return Ok(());
        }
        let synced = tokio::task::spawn_blocking(move || {
            // Deepest first: a new directory's own entries before its entry in its parent.
            for dir in dirs.keys().rev() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| (dir.clone(), e))?;
            }
            Ok(dirs)
        })
        .await
        .map_err(|e| Error::sink("", format!("flush task failed: {e}")))?
        .map_err(|(dir, e)| {
            // Nothing is forgotten: the next flush tries again.
            Error::sink(
                dir.display().to_string(),
                format!("making the directory durable: {e}"),
            )
        })?;
        if let Ok(mut u) = self.unsynced.lock() {
            for (dir, n) in synced {
                if u.dirs.get(&dir) == Some(&n) {
                    u.dirs.remove(&dir);
                }
            }
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::sink(key, format!("reading: {e}")).caused(Cause::of_io(&e), e)),
        }
    }
}

impl DirSink {
    fn path(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::sink(
                key,
                "refusing a key that leaves the output directory",
            ));
        }
        Ok(self.root.join(rel))
    }
}

/// `""` (the parent of a relative one-component path) is the current directory.
fn dir_or_dot(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// Writes `body` to a durable temporary file beside `path` and hard-links it to `path`,
/// which fails if `path` exists (so an object is never replaced). The link is made durable
/// by [`Sink::flush`].
fn create_new(path: &Path, body: &[u8]) -> std::io::Result<Put> {
    write_beside(path, body, false, |tmp, path| {
        match std::fs::hard_link(tmp, path) {
            Ok(()) => Ok(Put::Created),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Put::Exists),
            Err(e) => Err(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(sink: &DirSink) -> Vec<PathBuf> {
        sink.unsynced.lock().unwrap().dirs.keys().cloned().collect()
    }

    #[tokio::test]
    async fn flush_makes_the_directories_of_placed_objects_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let sink = DirSink::new(&out);
        let body = || bytes::Bytes::from_static(b"{}\n");
        assert!(pending(&sink).is_empty());
        let put = sink.put_new("user/a.jsonl", body(), crate::format::JSONL);
        assert_eq!(put.await.unwrap(), Put::Created);
        // The object's directory, the new root, and the root's parent (which got `out`).
        assert_eq!(
            pending(&sink),
            [tmp.path().to_path_buf(), out.clone(), out.join("user")]
        );
        sink.flush().await.unwrap();
        assert!(pending(&sink).is_empty());
        sink.flush().await.unwrap();

        // A directory that cannot be made durable fails the flush and is not forgotten.
        let put = sink.put_new("gone/b.jsonl", body(), crate::format::JSONL);
        assert_eq!(put.await.unwrap(), Put::Created);
        std::fs::remove_dir_all(out.join("gone")).unwrap();
        let err = sink.flush().await.unwrap_err().to_string();
        assert!(err.contains("gone"), "{err}");
        assert!(pending(&sink).contains(&out.join("gone")));
    }
}
