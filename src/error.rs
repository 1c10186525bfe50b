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

/// What an AWS call's failure means for the operator, decided where the SDK is called (from
/// the error code, or the kind of transport failure), so that the message says what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsCause {
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

impl AwsCause {
    /// Classifies an error code (`ResourceNotFoundException`, `NoSuchBucket`, …); `dispatch`:
    /// the request never got an answer.
    pub fn of(code: Option<&str>, dispatch: bool) -> Self {
        match code {
            Some("ResourceNotFoundException" | "NoSuchBucket") => AwsCause::Missing,
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
            ) => AwsCause::AccessDenied,
            Some(
                "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "SlowDown"
                | "Throttling"
                | "TooManyRequestsException",
            ) => AwsCause::Throttled,
            _ if dispatch => AwsCause::Unreachable,
            _ => AwsCause::Other,
        }
    }

    /// What the operator should do, for a resource named by the variable `var`
    /// (`STATE_STORE`, `OUTPUT`) and needing `permissions`.
    pub fn hint(self, var: &str, permissions: &str) -> Option<String> {
        match self {
            AwsCause::Missing => Some(format!(
                "it does not exist (or not in this region): create it, or fix {var}"
            )),
            AwsCause::AccessDenied => {
                Some(format!("access denied: the credentials need {permissions}"))
            }
            AwsCause::Throttled => Some(
                "throttled: the call failed after the SDK's retries; the next run retries".into(),
            ),
            AwsCause::Unreachable => Some(
                "the service was not reached (network, endpoint, VPC routes or timeout)".into(),
            ),
            AwsCause::Other => None,
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
            AwsCause::of(Some("ResourceNotFoundException"), false),
            AwsCause::Missing
        );
        assert_eq!(AwsCause::of(Some("NoSuchBucket"), false), AwsCause::Missing);
        assert_eq!(
            AwsCause::of(Some("AccessDeniedException"), false),
            AwsCause::AccessDenied
        );
        assert_eq!(
            AwsCause::of(Some("ProvisionedThroughputExceededException"), false),
            AwsCause::Throttled
        );
        assert_eq!(AwsCause::of(Some("SlowDown"), false), AwsCause::Throttled);
        assert_eq!(AwsCause::of(None, true), AwsCause::Unreachable);
        assert_eq!(AwsCause::of(Some("Weird"), false), AwsCause::Other);
        let hint = AwsCause::Missing.hint("OUTPUT", "x").unwrap();
        assert!(hint.contains("fix OUTPUT"), "{hint}");
        assert!(AwsCause::Other.hint("OUTPUT", "x").is_none());
    }
}
