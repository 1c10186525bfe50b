//! The directory sink: keys are paths below a root directory. Each object is written to a
//! temporary file, fsynced and hard-linked into place, so a reader never sees half an object
//! (not even after a power cut) and an existing object is never replaced. The directories
//! that received objects are fsynced by [`Sink::flush`], once per run rather than once per
//! object: each directory fsync is a journal commit that every other write waits for.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Put, Sink};
use crate::error::{Error, Result};
use crate::state::file::write_beside;

#[derive(Debug, Clone)]
pub struct DirSink {
    root: PathBuf,
    /// Directories with entries not yet made durable (shared by clones).
    unsynced: Arc<Mutex<BTreeSet<PathBuf>>>,
}

impl DirSink {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirSink {
            root: root.into(),
            unsynced: Arc::default(),
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
        // The object's directory and the ones above it, up to the root's parent (any of
        // them may have been created now): made durable by `flush`.
        if let Ok(mut dirs) = self.unsynced.lock() {
            let top = dir_or_dot(self.root.parent().unwrap_or(&self.root));
            for dir in path.ancestors().skip(1).map(dir_or_dot) {
                if !dirs.insert(dir.to_path_buf()) || dir == top {
                    break;
                }
            }
        }
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            create_new(&path, &body)
        })
        .await
        .map_err(|e| Error::sink(&key_owned, format!("write task failed: {e}")))?
        .map_err(|e| Error::sink(&key_owned, format!("{} ({})", e, self.root.display())))
    }

    async fn flush(&self) -> Result<()> {
        let dirs = match self.unsynced.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => return Err(Error::sink("", "the directory list is poisoned")),
        };
        let pending = dirs.clone();
        let result = tokio::task::spawn_blocking(move || {
            // Deepest first: a new directory's own entries before its entry in its parent.
            for dir in dirs.iter().rev() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| (dir.clone(), e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::sink("", format!("flush task failed: {e}")))?;
        match result {
            Ok(()) => Ok(()),
            Err((dir, e)) => {
                // Not durable: the next flush tries again.
                if let Ok(mut d) = self.unsynced.lock() {
                    d.extend(pending);
                }
                Err(Error::sink(
                    &dir.display().to_string(),
                    format!("making the directory durable: {e}"),
                ))
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::sink(key, format!("reading: {e}"))),
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
