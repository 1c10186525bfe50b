//! The S3 sink: keys are `PREFIX/rel`. `PutObject` is atomic per object and durable when it
//! returns; it is sent with `If-None-Match: *`, so an existing object is never replaced
//! (HTTP 412 `PreconditionFailed` reads as [`Put::Exists`]).

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::{Put, Sink};
use crate::error::{Cause, Error, Result};

/// The tag on every fingerprint set (`STREAM/_fingerprints/…`): the template's lifecycle rule
/// expires old sets of every stream by it (a lifecycle filter takes no wildcard).
pub const FINGERPRINT_TAG: &str = "replay-sync=fingerprint-set";

#[derive(Debug, Clone)]
pub struct S3Sink {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Sink {
    /// `prefix` without leading or trailing slashes (may be empty).
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        S3Sink {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }
}

impl Sink for S3Sink {
    fn bucket(&self) -> Option<&str> {
        Some(&self.bucket)
    }

    fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    async fn put_new(
        &self,
        key: &str,
        body: bytes::Bytes,
        content_type: &'static str,
    ) -> Result<Put> {
        let tagging = key
            .contains("/_fingerprints/")
            .then(|| FINGERPRINT_TAG.to_string());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .set_tagging(tagging.clone())
                .if_none_match("*")
                .body(ByteStream::from(body.clone()))
                .send()
                .await;
            let e = match result {
                Ok(_) => return Ok(Put::Created),
                Err(e) => e,
            };
            // The SDK has no typed variant for these: match the HTTP status.
            match e.raw_response().map(|r| r.status().as_u16()) {
                Some(412) => return Ok(Put::Exists),
                // A conditional write to the same key is in progress: try again shortly.
                Some(409) if attempt < CONFLICT_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                _ => return Err(self.failed(key, e)),
            }
        }
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            // S3 answers a GET of a missing key with 403 to a caller it does not let list the
            // bucket (as it may judge a prefix-limited s3:ListBucket): ask the listing, which
            // the function may read for its prefix, whether the key is there.
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(403) => {
                return match self.listed(key).await {
                    Some(false) => Ok(None),
                    _ => Err(self.failed(key, e)),
                };
            }
            Err(e) => return Err(self.failed(key, e)),
        };
        let body = out.body.collect().await.map_err(|e| {
            Error::sink(format!("s3://{}/{key}", self.bucket), e.to_string())
                .caused(Cause::Unreachable, e)
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }
}

/// Attempts of a conditional write that S3 answers with 409 (a concurrent conditional write
/// to the same key).
const CONFLICT_ATTEMPTS: u64 = 5;

impl S3Sink {
    /// Whether the listing of the bucket shows `key` (`None`: it could not be listed).
    async fn listed(&self, key: &str) -> Option<bool> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(key)
            .max_keys(1)
            .send()
            .await
            .ok()?;
        Some(out.contents().iter().any(|o| o.key() == Some(key)))
    }

    /// The error of a failed call, classified here where the SDK answered: what to fix comes
    /// first, the SDK's own account after it.
    fn failed<E, R>(&self, key: &str, e: aws_sdk_s3::error::SdkError<E, R>) -> Error
    where
        E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        use aws_sdk_s3::error::SdkError;
        let dispatch = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_));
        let code = e.as_service_error().and_then(|s| s.code());
        let cause = Cause::of(code, dispatch);
        let hint = cause.hint(
            "OUTPUT",
            "s3:PutObject and s3:GetObject on the output prefix, and s3:ListBucket on the bucket for that prefix (without it S3 answers a GET of a missing key with 403)",
        );
        Error::sink(
            format!("s3://{}/{key}", self.bucket),
            format!(
                "{}{}",
                hint.map(|h| format!("{h} — ")).unwrap_or_default(),
                DisplayErrorContext(&e)
            ),
        )
        .caused(cause, e)
    }
}
