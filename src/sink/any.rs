//! The sink chosen by `OUTPUT`: one type over both adapters, built from the configured
//! location.

use crate::config::OutputLocation;
use crate::error::{Error, Result};

use super::dir::DirSink;
use super::s3::S3Sink;
use super::{Put, Sink};

/// The sink chosen by `OUTPUT`.
#[derive(Debug, Clone)]
pub enum AnySink {
    Dir(DirSink),
    S3(S3Sink),
}

impl Sink for AnySink {
    fn key(&self, rel: &str) -> String {
        match self {
            AnySink::Dir(s) => s.key(rel),
            AnySink::S3(s) => s.key(rel),
        }
    }

    async fn put_new(
        &self,
        key: &str,
        body: bytes::Bytes,
        content_type: &'static str,
    ) -> Result<Put> {
        match self {
            AnySink::Dir(s) => s.put_new(key, body, content_type).await,
            AnySink::S3(s) => s.put_new(key, body, content_type).await,
        }
    }

    async fn flush(&self) -> Result<()> {
        match self {
            AnySink::Dir(s) => s.flush().await,
            AnySink::S3(s) => s.flush().await,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self {
            AnySink::Dir(s) => s.get(key).await,
            AnySink::S3(s) => s.get(key).await,
        }
    }

    fn bucket(&self) -> Option<&str> {
        match self {
            AnySink::Dir(s) => s.bucket(),
            AnySink::S3(s) => s.bucket(),
        }
    }
}

impl AnySink {
    /// The sink at `location`. `aws` is the loaded AWS configuration, needed (and loaded by
    /// the caller, once) only for an S3 location; an endpoint override (`AWS_ENDPOINT_URL`,
    /// `AWS_ENDPOINT_URL_S3`: an emulator or an S3-compatible store) means path-style
    /// addressing.
    pub fn open(location: &OutputLocation, aws: Option<&aws_config::SdkConfig>) -> Result<Self> {
        match location {
            OutputLocation::Dir { root } => Ok(AnySink::Dir(DirSink::new(root))),
            OutputLocation::S3 { bucket, prefix } => {
                let aws = aws.ok_or_else(|| {
                    Error::config("OUTPUT", "an S3 bucket needs the AWS configuration")
                })?;
                Ok(AnySink::S3(S3Sink::new(s3_client(aws), bucket, prefix)))
            }
        }
    }
}

/// An S3 client for `aws`, path-style when an endpoint is configured (a local emulator).
pub fn s3_client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let mut s3 = aws_sdk_s3::config::Builder::from(aws);
    if std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
    {
        s3 = s3.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(s3.build())
}
