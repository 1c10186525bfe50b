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

    /// The API said more rows exist than the paging in force read (a count, a page count, a
    /// `has_more` flag, a next token it does not follow): never reported as complete.
    #[error("incomplete read at {url}: {message}")]
    IncompleteRead { url: String, message: String },

    /// A transient API failure that could not be retried any more without running into the
    /// invocation's deadline.
    #[error("gave up retrying with {seconds_left} s left before the invocation deadline: {last}")]
    RetryBudget { seconds_left: u64, last: Box<Error> },

    /// The state store (DynamoDB or file) failed for a reason other than a lost race.
    /// `cause` is how the adapter classified it; `source` is the failure it reported.
    #[error("state store: {message}")]
    State {
        message: String,
        cause: Option<Cause>,
        #[source]
        source: Option<BoxError>,
    },

    /// Another run holds the state's lease: nothing was changed; the same step later
    /// succeeds (a backfill's commit retries on it).
    #[error("state busy: {message}")]
    Busy { message: String },

    /// Writing an object to the output (S3 or directory) failed.
    #[error("output: writing {key}: {message}")]
    Sink {
        key: String,
        message: String,
        cause: Option<Cause>,
        #[source]
        source: Option<BoxError>,
    },
}

/// The failure an adapter reported, kept as the [`std::error::Error::source`] of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
            Error::IncompleteRead { .. } => "IncompleteRead",
            Error::RetryBudget { last, .. } => last.kind(),
            Error::State { .. } => "StateStoreError",
            Error::Busy { .. } => "StateBusy",
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
            Error::IncompleteRead { url, message } => Error::IncompleteRead {
                url: s(url),
                message: s(message),
            },
            Error::RetryBudget { seconds_left, last } => Error::RetryBudget {
                seconds_left,
                last: Box::new(last.scrubbed(secrets)),
            },
            Error::State {
                message,
                cause,
                source,
            } => Error::State {
                message: s(message),
                cause,
                source,
            },
            Error::Busy { message } => Error::Busy {
                message: s(message),
            },
            Error::Sink {
                key,
                message,
                cause,
                source,
            } => Error::Sink {
                key,
                message: s(message),
                cause,
                source,
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

    /// A state store failure with nothing underneath.
    pub fn state(message: impl Into<String>) -> Self {
        Error::State {
            message: message.into(),
            cause: None,
            source: None,
        }
    }

    /// An output failure with nothing underneath.
    pub fn sink(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Sink {
            key: key.into(),
            message: message.into(),
            cause: None,
            source: None,
        }
    }

    /// This (state or output) error was classified as `cause` where the SDK answered, and
    /// `source` is what the SDK reported.
    pub(crate) fn caused(mut self, by: Cause, error: impl Into<BoxError>) -> Self {
        if let Error::State { cause, source, .. } | Error::Sink { cause, source, .. } = &mut self {
            *cause = Some(by);
            *source = Some(error.into());
        }
        self
    }

    /// How the adapter classified the failure (throttled, missing, access denied, …).
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Error::State { cause, .. } | Error::Sink { cause, .. } => *cause,
            Error::RetryBudget { last, .. } => last.cause(),
            _ => None,
        }
    }
}

/// What a state or output failure means for the operator, decided where the SDK (or the file
/// system) answered — from the error code, or the kind of failure — so that the message says
/// what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The table or bucket does not exist (or not in this region).
    Missing,
    /// The credentials may not do this.
    AccessDenied,
    /// Throttled: the same call later succeeds.
    Throttled,
    /// The service was not reached (network, endpoint, DNS, timeout).
    Unreachable,
    Other,
}

impl Cause {
    /// Classifies an error code (`ResourceNotFoundException`, `NoSuchBucket`, …); `dispatch`:
    /// the request never got an answer.
    pub fn of(code: Option<&str>, dispatch: bool) -> Self {
        match code {
            Some("ResourceNotFoundException" | "NoSuchBucket") => Cause::Missing,
            Some(
                "AccessDeniedException"
                | "AccessDenied"
                | "UnrecognizedClientException"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "ExpiredTokenException"
                | "InvalidClientTokenId"
                | "AllAccessDisabled",
            ) => Cause::AccessDenied,
            Some(
                "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "SlowDown"
                | "Throttling"
                | "TooManyRequestsException",
            ) => Cause::Throttled,
            _ if dispatch => Cause::Unreachable,
            _ => Cause::Other,
        }
    }

    /// Classifies a file system failure.
    pub fn of_io(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => Cause::Missing,
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                Cause::AccessDenied
            }
            _ => Cause::Other,
        }
    }

    /// What the operator should do, for a resource named by the variable `var`
    /// (`STATE_STORE`, `OUTPUT`) and needing `permissions`.
    pub fn hint(self, var: &str, permissions: &str) -> Option<String> {
        match self {
            Cause::Missing => Some(format!(
                "it does not exist (or not in this region): create it, or fix {var}"
            )),
            Cause::AccessDenied => {
                Some(format!("access denied: the credentials need {permissions}"))
            }
            Cause::Throttled => Some(
                "throttled: the call failed after the SDK's retries; the next run retries".into(),
            ),
            Cause::Unreachable => Some(
                "the service was not reached (network, endpoint, VPC routes or timeout)".into(),
            ),
            Cause::Other => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_failures_are_classified_by_code() {
        assert_eq!(
            Cause::of(Some("ResourceNotFoundException"), false),
            Cause::Missing
        );
        assert_eq!(Cause::of(Some("NoSuchBucket"), false), Cause::Missing);
        assert_eq!(
            Cause::of(Some("AccessDeniedException"), false),
            Cause::AccessDenied
        );
        assert_eq!(
            Cause::of(Some("ProvisionedThroughputExceededException"), false),
            Cause::Throttled
        );
        assert_eq!(Cause::of(Some("SlowDown"), false), Cause::Throttled);
        assert_eq!(Cause::of(None, true), Cause::Unreachable);
        assert_eq!(Cause::of(Some("Weird"), false), Cause::Other);
        let hint = Cause::Missing.hint("OUTPUT", "x").unwrap();
        assert!(hint.contains("fix OUTPUT"), "{hint}");
        assert!(Cause::Other.hint("OUTPUT", "x").is_none());
    }
}
