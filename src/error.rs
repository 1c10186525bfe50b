//! One error type for the whole crate. Each variant is a domain outcome an operator can act
//! on; the [`Error::kind`] string becomes the Lambda `errorType`.
//!
//! A lost checkpoint race is *not* an error: it is [`crate::state::Checkpoint::Conflict`],
//! an expected outcome reported in the run summary.

/// Everything that can make a run fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable is missing or malformed. Raised at start-up.
    #[error("configuration: {var}: {message}")]
    Config { var: String, message: String },

    /// The invocation event asks for something unknown or invalid. Raised before any I/O.
    #[error("invalid event: {field}: {message}")]
    Event { field: String, message: String },

    /// The API answered with an HTTP status that is not retried (4xx) or kept failing
    /// (429/5xx) after the retry budget. `excerpt` is a short, sanitised start of the body.
    #[error("upstream API returned HTTP {status} for {url} after {attempts} attempt(s): {excerpt}")]
    Upstream {
        status: u16,
        url: String,
        attempts: u32,
        excerpt: String,
    },

    /// The API could not be reached or the connection broke (after retries).
    #[error("upstream API unreachable at {url} after {attempts} attempt(s): {message}")]
    Transport {
        url: String,
        attempts: u32,
        message: String,
    },

    /// The API answered 2xx with a body we cannot use (not JSON, no records array, …).
    #[error("malformed API response from {url}: {message}")]
    MalformedResponse { url: String, message: String },

    /// The API's paging went somewhere we refuse to follow (a loop, another host).
    #[error("paging stopped at {url}: {message}")]
    Paging { url: String, message: String },

    /// A transient API failure that could not be retried any more without running into the
    /// invocation's deadline.
    #[error("gave up retrying with {seconds_left} s left before the invocation deadline: {last}")]
    RetryBudget { seconds_left: u64, last: Box<Error> },

    /// The state store (DynamoDB or file) failed for a reason other than a lost race.
    #[error("state store: {message}")]
    State { message: String },

    /// Writing an object to the output (S3 or directory) failed.
    #[error("output: writing {key}: {message}")]
    Sink { key: String, message: String },
}

impl Error {
    /// A stable, machine-readable name for the failure, used as the Lambda `errorType`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { .. } => "ConfigError",
            Error::Event { .. } => "InvalidEvent",
            Error::Upstream { .. } => "UpstreamHttpError",
            Error::Transport { .. } => "UpstreamUnreachable",
            Error::MalformedResponse { .. } => "MalformedResponse",
            Error::Paging { .. } => "PagingError",
            Error::RetryBudget { last, .. } => last.kind(),
            Error::State { .. } => "StateStoreError",
            Error::Sink { .. } => "OutputError",
        }
    }

    /// The same error with every text field passed through [`crate::redact::Secrets::scrub`]
    /// (the credential and emails out).
    pub fn scrubbed(self, secrets: &crate::redact::Secrets) -> Self {
        let s = |t: String| secrets.scrub(&t).into_owned();
        match self {
            Error::Config { var, message } => Error::Config {
                var,
                message: s(message),
            },
            Error::Event { field, message } => Error::Event {
                field,
                message: s(message),
            },
            Error::Upstream {
                status,
                url,
                attempts,
                excerpt,
            } => Error::Upstream {
                status,
                url: s(url),
                attempts,
                excerpt: s(excerpt),
            },
            Error::Transport {
                url,
                attempts,
                message,
            } => Error::Transport {
                url: s(url),
                attempts,
                message: s(message),
            },
            Error::MalformedResponse { url, message } => Error::MalformedResponse {
                url: s(url),
                message: s(message),
            },
            Error::Paging { url, message } => Error::Paging {
                url: s(url),
                message: s(message),
            },
            Error::RetryBudget { seconds_left, last } => Error::RetryBudget {
                seconds_left,
                last: Box::new(last.scrubbed(secrets)),
            },
            Error::State { message } => Error::State {
                message: s(message),
            },
            Error::Sink { key, message } => Error::Sink {
                key,
                message: s(message),
            },
        }
    }

    pub(crate) fn config(var: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            var: var.into(),
            message: message.into(),
        }
    }

    pub(crate) fn event(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Event {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn state(message: impl Into<String>) -> Self {
        Error::State {
            message: message.into(),
        }
    }

    pub(crate) fn sink(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Sink {
            key: key.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
