//! The S3 sink: keys are `PREFIX/rel`. `PutObject` is atomic per object and durable when it
//! returns; writing the same key again replaces the object.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::Sink;
use crate::error::{Error, Result};

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
    fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &'static str) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                Error::sink(
                    format!("s3://{}/{key}", self.bucket),
                    DisplayErrorContext(&e).to_string(),
                )
            })?;
        Ok(())
    }
}
