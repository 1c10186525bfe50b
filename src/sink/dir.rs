//! The directory sink: keys are paths below a root directory. Each object is written to a
//! temporary file, fsynced and hard-linked into place, so a reader never sees half an object
//! and an existing object is never replaced.

use std::path::{Component, Path, PathBuf};

use super::{Put, Sink};
use crate::error::{Error, Result};
use crate::state::file::write_beside;

#[derive(Debug, Clone)]
pub struct DirSink {
    root: PathBuf,
}

impl DirSink {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirSink { root: root.into() }
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

/// Writes `body` to a durable temporary file beside `path` and hard-links it to `path`,
/// which fails if `path` exists (so an object is never replaced); the link is made durable.
fn create_new(path: &Path, body: &[u8]) -> std::io::Result<Put> {
    write_beside(path, body, |tmp, path| {
        match std::fs::hard_link(tmp, path) {
            Ok(()) => Ok(Put::Created),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Put::Exists),
            Err(e) => Err(e),
        }
    })
}
