//! The directory sink: keys are paths below a root directory. Each object is written to a
//! temporary file, fsynced and renamed into place, so a reader never sees half an object.

use std::path::{Component, Path, PathBuf};

use super::Sink;
use crate::error::{Error, Result};
use crate::state::file::write_atomically;

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

    async fn put(&self, key: &str, body: Vec<u8>, _content_type: &'static str) -> Result<()> {
        let rel = Path::new(key);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::sink(
                key,
                "refusing a key that leaves the output directory",
            ));
        }
        let path = self.root.join(rel);
        let key_owned = key.to_string();
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_atomically(&path, &body)
        })
        .await
        .map_err(|e| Error::sink(&key_owned, format!("write task failed: {e}")))?
        .map_err(|e| Error::sink(&key_owned, format!("{} ({})", e, self.root.display())))
    }
}
