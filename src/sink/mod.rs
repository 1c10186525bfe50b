//! Where objects go: a store of bytes under keys, each with a content type (what the bytes
//! are is [`crate::format`]'s business), and the write-once rule every object is written by.

use std::future::Future;

use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::format::same_content;

pub mod any;
pub mod dir;
pub mod s3;

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

    /// The S3 bucket keys are in (`None`: not S3), for a reader that needs bucket and key.
    fn bucket(&self) -> Option<&str> {
        None
    }
}

/// The outcome of [`Sink::put_new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Put {
    Created,
    Exists,
}

/// Alternative keys tried beside a planned key that holds other content.
pub const ALTERNATIVE_KEYS: usize = 16;

/// `user/x-00001.jsonl` → `user/x-00001~2.jsonl`, `user/x-00001.jsonl.gz` →
/// `user/x-00001~2.jsonl.gz` (n > 0): the mark goes before the file name's first dot.
pub fn alternative(rel: &str, n: usize) -> String {
    if n == 0 {
        return rel.to_string();
    }
    let name_at = rel.rfind('/').map_or(0, |i| i + 1);
    match rel[name_at..].find('.') {
        Some(dot) if dot > 0 => {
            let at = name_at + dot;
            format!("{}~{n}{}", &rel[..at], &rel[at..])
        }
        _ => format!("{rel}~{n}"),
    }
}

/// Writes `body` under the planned key `rel` exactly once and returns the key that holds it.
///
/// The key is claimed with a conditional write ([`Sink::put_new`]). If it is taken, the
/// object there is read: the same content ([`crate::format::same_content`]) means an earlier attempt of the
/// same plan already wrote it — a retry converging, also when that attempt stamped another
/// `_synced_at` — and the object there is kept; other content (an attempt that fetched a
/// different state of the API) is left alone and the body goes to the next free alternative
/// key (`~1`, `~2`, …). Either way the content is durable when this returns, and no key ever
/// holds two different contents.
pub async fn put_once<S: Sink + ?Sized>(
    sink: &S,
    rel: &str,
    body: bytes::Bytes,
    content_type: &'static str,
) -> Result<String> {
    for n in 0..ALTERNATIVE_KEYS {
        let key = sink.key(&alternative(rel, n));
        if sink.put_new(&key, body.clone(), content_type).await? == Put::Created {
            return Ok(key);
        }
        match sink.get(&key).await? {
            Some(existing) if same_content(content_type, &existing, &body) => {
                info!(key = %key, "object already written by an earlier attempt of this plan");
                return Ok(key);
            }
            Some(_) => warn!(
                key = %key,
                "an earlier attempt of this plan wrote other content here; writing beside it"
            ),
            None => warn!(key = %key, "the object vanished between the write and the read"),
        }
    }
    Err(Error::sink(
        sink.key(rel),
        format!("{ALTERNATIVE_KEYS} keys for this object are taken by other attempts"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternative_keys_keep_the_extension() {
        assert_eq!(alternative("u/r-00001.jsonl", 0), "u/r-00001.jsonl");
        assert_eq!(alternative("u/r-00001.jsonl", 2), "u/r-00001~2.jsonl");
        assert_eq!(
            alternative("u/_manifests/r.json", 1),
            "u/_manifests/r~1.json"
        );
        assert_eq!(alternative("a.b/noext", 1), "a.b/noext~1");
        assert_eq!(
            alternative("u/r-00001.jsonl.gz", 1),
            "u/r-00001~1.jsonl.gz",
            "a compressed object keeps its whole extension"
        );
    }
}
