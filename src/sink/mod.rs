//! Where the JSON Lines objects, rejected records and manifests go.

use std::future::Future;

use crate::error::Result;

pub mod dir;
pub mod s3;

pub const JSONL: &str = "application/x-ndjson";
pub const JSON: &str = "application/json";
pub const BINARY: &str = "application/octet-stream";

/// An object store rooted at the configured output location.
pub trait Sink: Send + Sync {
    /// The full key of `rel` (a path below the output root, such as `user/x.jsonl`) as it
    /// will be reported in summaries and manifests: the S3 key with the prefix, or the path
    /// relative to the output directory.
    fn key(&self, rel: &str) -> String;

    /// Writes `body` under `key` (from [`Sink::key`]) if, and only if, no object exists
    /// there (S3 `If-None-Match: *`; a hard link on a file system). When this returns
    /// [`Put::Created`] the object is complete: readers never see a partial object, even
    /// after a crash. It is durable once [`Sink::flush`] returns (S3: already now).
    /// [`Put::Exists`] means nothing was written: an object was already there. An object,
    /// once written, is never replaced.
    fn put_new(
        &self,
        key: &str,
        body: bytes::Bytes,
        content_type: &'static str,
    ) -> impl Future<Output = Result<Put>> + Send;

    /// Makes every object created so far durable: a group commit. On a file system each
    /// object's bytes reach the disk before the object appears, but the directory entries
    /// that make objects appear are made durable here, once for all of them, rather than one
    /// journal commit per object. S3: a PUT is durable when it returns; nothing to do.
    fn flush(&self) -> impl Future<Output = Result<()>> + Send;

    /// Reads the object at `key` (`None` if there is none).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
}

/// The outcome of [`Sink::put_new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Put {
    Created,
    Exists,
}
