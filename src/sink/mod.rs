//! Where the JSON Lines objects, rejected records and manifests go.

use std::future::Future;

use crate::error::Result;

pub mod dir;
pub mod s3;

pub const JSONL: &str = "application/x-ndjson";
pub const JSON: &str = "application/json";

/// An object store rooted at the configured output location.
pub trait Sink: Send + Sync {
    /// The full key of `rel` (a path below the output root, such as `user/x.jsonl`) as it
    /// will be reported in summaries and manifests: the S3 key with the prefix, or the path
    /// relative to the output directory.
    fn key(&self, rel: &str) -> String;

    /// Writes `body` under `key` (from [`Sink::key`]). When this returns `Ok` the object is
    /// durable and complete: readers never see a partial object. Writing the same key again
    /// replaces it.
    fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &'static str,
    ) -> impl Future<Output = Result<()>> + Send;
}
