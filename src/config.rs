//! Environment → typed, validated [`Config`]. Every bad variable fails start-up with one
//! line that names it and the form it expects.

mod paging;
pub mod streams;
pub use paging::{PageSize, PagingConfig};

use std::path::PathBuf;

use chrono::TimeDelta;

use crate::error::{Error, Result};
use crate::window;

/// Where the sync state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// `dynamodb://TABLE`
    DynamoDb { table: String },
    /// `file://PATH` — one JSON document for all sync ids.
    File { path: PathBuf },
}

/// Where the JSON Lines objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputLocation {
    /// `s3://BUCKET/PREFIX` (the prefix may be empty).
    S3 { bucket: String, prefix: String },
    /// `file://DIR`
    Dir { root: PathBuf },
}

/// Bounds on one output object. A batch is flushed when either is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
}

impl BatchLimits {
    /// The limits of each of `n` batches filled at once (time slices): together they hold
    /// no more than one batch of these limits would, so memory does not grow with `n`.
    pub fn shared_by(self, n: usize) -> BatchLimits {
        let n = n.max(1);
        BatchLimits {
            max_records: (self.max_records / n).max(1),
            max_bytes: (self.max_bytes / n).max(1),
        }
    }
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_records: 10_000,
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// A credential: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the API credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `API_AUTH_TOKEN` (local use).
    Env(Secret),
    /// `API_AUTH_SECRET_ARN`: fetched from AWS Secrets Manager once per cold start.
    SecretsManager { secret_id: String },
}

/// An optional credential sent with every API request as `HEADER: [SCHEME ]TOKEN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `API_AUTH_HEADER`, default `Authorization`.
    pub header: String,
    /// `API_AUTH_SCHEME`, default `Bearer`; `none` sends the token alone.
    pub scheme: Option<String>,
    pub token: TokenSource,
    /// `API_AUTH`: what the credential is and how it is sent.
    pub kind: AuthKind,
}

/// `API_AUTH`: how the credential reaches the API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthKind {
    /// `API_AUTH_HEADER: API_AUTH_SCHEME CREDENTIAL` (the default).
    #[default]
    Header,
    /// `Authorization: Basic …` of the credential `user:password`.
    Basic,
    /// The credential as the query parameter `API_AUTH_PARAM`.
    Query { param: String },
    /// A token from a login (`API_LOGIN_URL`, the credential's `username` and `password`),
    /// read at `API_LOGIN_TOKEN_FIELD`, sent as the header.
    Session {
        login_url: url::Url,
        token_field: String,
    },
    /// The OAuth2 client-credentials grant at `API_TOKEN_URL` (the credential's `client_id`
    /// and `client_secret`, `API_SCOPE`), the token sent as the header.
    OAuth2 {
        token_url: url::Url,
        scope: Option<String>,
    },
}

impl AuthKind {
    /// Whether the credential has several parts (`user:password`, or JSON), not one token.
    pub fn has_parts(&self) -> bool {
        !matches!(self, AuthKind::Header | AuthKind::Query { .. })
    }
}

/// How the HTTP source talks to the API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    pub url: url::Url,
    pub since_param: String,
    /// `API_UNTIL_PARAM`: the API's upper bound (`since <= updatedAt < until`); unset: the
    /// API takes none, and a window is read as one stream.
    pub until_param: Option<String>,
    pub records_field: String,
    pub next_page_field: Option<String>,
    /// `API_PAGINATION` and its parameters.
    pub paging: PagingConfig,
    /// `API_COUNTS`: the body's counts say how many rows the request has (else: ignored).
    pub counts: bool,
    /// `ID_FIELD`, `CURSOR_FIELD`, `CURSOR_FORMAT`: where records keep their key and time.
    pub fields: std::sync::Arc<crate::fields::Fields>,
    /// `API_SINCE_FORMAT`: how `since` and `until` are written in the query.
    pub since_format: crate::window::WireFormat,
    /// Per-request timeout.
    pub timeout: std::time::Duration,
    /// Attempts per request, the first included (429, 5xx, timeouts, resets are retried).
    pub max_attempts: u32,
    pub auth: Option<AuthConfig>,
    /// `MAX_RECORD_BYTES`: a record larger than this is not held in memory: it is
    /// quarantined in `_rejected/` with its id and size.
    pub max_record_bytes: usize,
}

/// Default of `MAX_RECORD_BYTES` (16 MiB): far above any real row (DynamoDB caps an item at
/// 400 KB), far below what would endanger a small Lambda.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// The whole, validated configuration of one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub api: ApiConfig,
    pub buffer: TimeDelta,
    pub sync_id: String,
    pub state: StateLocation,
    pub output: OutputLocation,
    pub batch: BatchLimits,
    /// `DEADLINE_MARGIN_SECONDS`: stop fetching when less is left before the deadline.
    pub deadline_margin: std::time::Duration,
    /// `FINGERPRINT_MAX`: bound on the fingerprint set (0: off).
    pub fingerprint_max: usize,
    /// `FETCH_CONCURRENCY`: time slices in flight at once (with `API_UNTIL_PARAM`).
    pub fetch_concurrency: usize,
    /// `OUTPUT_COMPRESSION`: how data and rejected objects are stored.
    pub format: crate::format::Format,
    /// `AUDIT_HOURS`: how far back an audit run re-reads (and so how far back the
    /// fingerprints remember what was written).
    pub audit: TimeDelta,
}

/// Default of `FETCH_CONCURRENCY`.
pub const DEFAULT_FETCH_CONCURRENCY: usize = 4;
/// Upper bound of `FETCH_CONCURRENCY` (each slice holds a batch and a connection).
pub const MAX_FETCH_CONCURRENCY: usize = 64;

pub const DEFAULT_STATE_STORE: &str = "file://./.replay-sync/state.json";
pub const DEFAULT_OUTPUT: &str = "file://./.replay-sync/output";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (an empty value counts as unset), so tests need
    /// not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let api = parse_api(&get)?;

        let buffer = match get("BUFFER_HOURS") {
            None => TimeDelta::hours(2),
            Some(v) => parse_buffer_hours(&v).ok_or_else(|| {
                Error::config(
                    "BUFFER_HOURS",
                    format!("expected a non-negative number of hours such as 2 or 0.5, got {v:?}"),
                )
            })?,
        };

        let audit = match get("AUDIT_HOURS") {
            None => TimeDelta::hours(24),
            Some(v) => parse_buffer_hours(&v).ok_or_else(|| {
                Error::config(
                    "AUDIT_HOURS",
                    format!("expected a non-negative number of hours such as 24, got {v:?}"),
                )
            })?,
        };

        let sync_id = get("SYNC_ID").unwrap_or_else(|| "user".into());
        validate_sync_id(&sync_id)?;

        let state = parse_state(&get("STATE_STORE").unwrap_or_else(|| DEFAULT_STATE_STORE.into()))?;
        let output = parse_output(&get("OUTPUT").unwrap_or_else(|| DEFAULT_OUTPUT.into()))?;

        let defaults = BatchLimits::default();
        let batch = BatchLimits {
            max_records: parse_positive(&get, "BATCH_MAX_RECORDS", defaults.max_records)?,
            max_bytes: parse_positive(&get, "BATCH_MAX_BYTES", defaults.max_bytes)?,
        };
        // Bounded: a Lambda runs 900 s at most, and an absurd value must not overflow the
        // clock arithmetic (it once panicked).
        let margin = parse_bounded(&get, "DEADLINE_MARGIN_SECONDS", 30, 900)?;
        let fetch_concurrency = parse_bounded(
            &get,
            "FETCH_CONCURRENCY",
            DEFAULT_FETCH_CONCURRENCY,
            MAX_FETCH_CONCURRENCY,
        )?;
        let format = match get("OUTPUT_COMPRESSION") {
            None => crate::format::Format::default(),
            Some(v) => crate::format::Format::from_compression(&v).ok_or_else(|| {
                Error::config(
                    "OUTPUT_COMPRESSION",
                    format!("expected none, gzip or zstd, got {v:?}"),
                )
            })?,
        };
        let fingerprint_max = match get("FINGERPRINT_MAX").as_deref() {
            Some("0") => 0,
            _ => parse_positive(&get, "FINGERPRINT_MAX", 500_000)?,
        };

        Ok(Config {
            api,
            buffer,
            sync_id,
            state,
            output,
            batch,
            deadline_margin: std::time::Duration::from_secs(margin as u64),
            fingerprint_max,
            fetch_concurrency,
            format,
            audit,
        })
    }
}

/// The variables that describe the API: where, its shape, its paging, its credential.
fn parse_api(get: &impl Fn(&str) -> Option<String>) -> Result<ApiConfig> {
    let api_url = get("API_URL").ok_or_else(|| {
        Error::config(
            "API_URL",
            "is required: the endpoint that takes a `since` parameter, e.g. http://127.0.0.1:5001/incremental/timestamp",
        )
    })?;
    let url = parse_http_url(&api_url)?;

    let since_param = get("API_SINCE_PARAM").unwrap_or_else(|| "since".into());
    let until_param = get("API_UNTIL_PARAM");
    if until_param.as_deref() == Some(since_param.as_str()) {
        return Err(Error::config(
            "API_UNTIL_PARAM",
            format!("names the same parameter as API_SINCE_PARAM ({since_param:?})"),
        ));
    }
    let records_field = get("API_RECORDS_FIELD").unwrap_or_else(|| "data".into());
    let next_page_field = get("API_NEXT_PAGE_FIELD");
    let paging = paging::parse(get)?;
    let counts = paging::parse_counts(get)?;
    let fields = crate::fields::Fields::from_lookup(get)?;
    let since_format = match get("API_SINCE_FORMAT") {
        None => crate::window::WireFormat::Rfc3339,
        Some(v) => crate::window::WireFormat::parse_name(&v).ok_or_else(|| {
            Error::config(
                "API_SINCE_FORMAT",
                format!("expected rfc3339, rfc3339_millis, epoch_s or epoch_ms, got {v:?}"),
            )
        })?,
    };
    let fields = if fields.is_default() {
        crate::fields::Fields::shared_default()
    } else {
        std::sync::Arc::new(fields)
    };

    // Bounded: a Lambda runs 900 s at most, and an absurd value must not overflow the
    // clock arithmetic (it once panicked).
    let timeout_secs = parse_bounded(get, "API_TIMEOUT_SECONDS", 30, 900)?;
    let max_attempts = parse_bounded(get, "API_MAX_ATTEMPTS", 6, 100)?;
    Ok(ApiConfig {
        url,
        since_param,
        until_param,
        records_field,
        next_page_field,
        paging,
        counts,
        fields,
        since_format,
        timeout: std::time::Duration::from_secs(timeout_secs as u64),
        max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
        auth: parse_auth(get)?,
        max_record_bytes: parse_bounded(
            get,
            "MAX_RECORD_BYTES",
            DEFAULT_MAX_RECORD_BYTES,
            1024 * 1024 * 1024,
        )?,
    })
}

/// Parses a buffer in hours: a plain decimal number, not negative.
pub fn parse_buffer_hours(v: &str) -> Option<TimeDelta> {
    v.parse::<f64>().ok().and_then(window::buffer_from_hours)
}

fn parse_positive(
    get: &impl Fn(&str) -> Option<String>,
    var: &str,
    default: usize,
) -> Result<usize> {
    match get(var) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Error::config(
                var,
                format!("expected a positive whole number, got {v:?}"),
            )),
        },
    }
}

/// Like `parse_positive`, and at most `max` (named in the message).
fn parse_bounded(
    get: &impl Fn(&str) -> Option<String>,
    var: &str,
    default: usize,
    max: usize,
) -> Result<usize> {
    let n = parse_positive(get, var, default)?;
    if n > max {
        return Err(Error::config(
            var,
            format!("expected a positive whole number of at most {max}, got {n}"),
        ));
    }
    Ok(n)
}

fn parse_auth(get: &impl Fn(&str) -> Option<String>) -> Result<Option<AuthConfig>> {
    let kind = parse_auth_kind(get)?;
    let token = match (get("API_AUTH_TOKEN"), get("API_AUTH_SECRET_ARN")) {
        (None, None) => {
            if let Some(kind) = get("API_AUTH").filter(|k| k != "header") {
                return Err(Error::config(
                    "API_AUTH",
                    format!("{kind} needs a credential: set API_AUTH_TOKEN or API_AUTH_SECRET_ARN"),
                ));
            }
            for var in ["API_AUTH_HEADER", "API_AUTH_SCHEME"] {
                if get(var).is_some() {
                    return Err(Error::config(
                        var,
                        "is set but no credential is: set API_AUTH_TOKEN or API_AUTH_SECRET_ARN",
                    ));
                }
            }
            return Ok(None);
        }
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "API_AUTH_SECRET_ARN",
                "set either API_AUTH_TOKEN (local use) or API_AUTH_SECRET_ARN, not both",
            ));
        }
        (Some(t), None) => TokenSource::Env(Secret(t)),
        (None, Some(arn)) => TokenSource::SecretsManager { secret_id: arn },
    };
    let header = get("API_AUTH_HEADER").unwrap_or_else(|| "Authorization".into());
    if !header
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::config(
            "API_AUTH_HEADER",
            format!(
                "expected an HTTP header name such as Authorization or X-API-Key, got {header:?}"
            ),
        ));
    }
    let scheme = match get("API_AUTH_SCHEME") {
        None => Some("Bearer".to_string()),
        Some(s) if s.eq_ignore_ascii_case("none") => None,
        Some(s) if s.bytes().all(|b| b.is_ascii_graphic()) => Some(s),
        Some(s) => {
            return Err(Error::config(
                "API_AUTH_SCHEME",
                format!("expected one word such as Bearer or apiKey (or none), got {s:?}"),
            ));
        }
    };
    Ok(Some(AuthConfig {
        header,
        scheme,
        token,
        kind,
    }))
}

/// `API_AUTH` and the variables each kind takes (another kind refuses them).
fn parse_auth_kind(get: &impl Fn(&str) -> Option<String>) -> Result<AuthKind> {
    let kind = get("API_AUTH").unwrap_or_else(|| "header".into());
    let own: &[&str] = match kind.as_str() {
        "header" | "basic" => &[],
        "query" => &["API_AUTH_PARAM"],
        "session" => &["API_LOGIN_URL", "API_LOGIN_TOKEN_FIELD"],
        "oauth2" => &["API_TOKEN_URL", "API_SCOPE"],
        other => {
            return Err(Error::config(
                "API_AUTH",
                format!("expected header, basic, query, session or oauth2, got {other:?}"),
            ));
        }
    };
    for var in [
        "API_AUTH_PARAM",
        "API_LOGIN_URL",
        "API_LOGIN_TOKEN_FIELD",
        "API_TOKEN_URL",
        "API_SCOPE",
    ] {
        if !own.contains(&var) && get(var).is_some() {
            return Err(Error::config(
                var,
                format!("is not used with API_AUTH={kind}"),
            ));
        }
    }
    let need = |var: &str| {
        get(var).ok_or_else(|| Error::config(var, format!("is required with API_AUTH={kind}")))
    };
    let url = |var: &str| -> Result<url::Url> {
        let v = need(var)?;
        parse_http_url(&v).map_err(|_| {
            Error::config(
                var,
                format!("expected an http:// or https:// URL, got {v:?}"),
            )
        })
    };
    Ok(match kind.as_str() {
        "basic" => AuthKind::Basic,
        "query" => AuthKind::Query {
            param: need("API_AUTH_PARAM")?,
        },
        "session" => AuthKind::Session {
            login_url: url("API_LOGIN_URL")?,
            token_field: get("API_LOGIN_TOKEN_FIELD").unwrap_or_else(|| "token".into()),
        },
        "oauth2" => AuthKind::OAuth2 {
            token_url: url("API_TOKEN_URL")?,
            scope: get("API_SCOPE"),
        },
        _ => AuthKind::Header,
    })
}

fn parse_http_url(v: &str) -> Result<url::Url> {
    let bad = |why: &str| {
        Error::config(
            "API_URL",
            format!("expected an http:// or https:// URL, got {v:?} ({why})"),
        )
    };
    let url = url::Url::parse(v).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("unsupported scheme"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(url)
}

/// A sync id names a DynamoDB item and an output folder: keep it to a safe alphabet.
fn validate_sync_id(id: &str) -> Result<()> {
    let ok = id.len() <= 128
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "SYNC_ID",
            format!(
                "expected 1-128 characters of [A-Za-z0-9_.-] starting with a letter or digit, got {id:?}"
            ),
        ))
    }
}

fn parse_state(v: &str) -> Result<StateLocation> {
    let form = "expected dynamodb://TABLE or file://PATH";
    if let Some(table) = v.strip_prefix("dynamodb://") {
        let valid = (3..=255).contains(&table.len())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(Error::config(
                "STATE_STORE",
                format!("{form}; {table:?} is not a valid DynamoDB table name"),
            ));
        }
        Ok(StateLocation::DynamoDb {
            table: table.to_string(),
        })
    } else if let Some(path) = v.strip_prefix("file://") {
        if path.is_empty() || path.ends_with('/') {
            return Err(Error::config(
                "STATE_STORE",
                format!("{form}; {v:?} names no file"),
            ));
        }
        Ok(StateLocation::File {
            path: PathBuf::from(path),
        })
    } else {
        Err(Error::config("STATE_STORE", format!("{form}, got {v:?}")))
    }
}

fn parse_output(v: &str) -> Result<OutputLocation> {
    let form = "expected s3://BUCKET/PREFIX or file://DIR";
    if let Some(rest) = v.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'));
        if !valid_bucket {
            return Err(Error::config(
                "OUTPUT",
                format!("{form}; {bucket:?} is not a valid bucket name"),
            ));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(Error::config(
                "OUTPUT",
                format!("{form}; the prefix may not contain . or .. segments"),
            ));
        }
        Ok(OutputLocation::S3 {
            bucket: bucket.to_string(),
            prefix,
        })
    } else if let Some(dir) = v.strip_prefix("file://") {
        if dir.is_empty() {
            return Err(Error::config(
                "OUTPUT",
                format!("{form}; {v:?} names no directory"),
            ));
        }
        Ok(OutputLocation::Dir {
            root: PathBuf::from(dir),
        })
    } else {
        Err(Error::config("OUTPUT", format!("{form}, got {v:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    fn err_var(pairs: &[(&str, &str)]) -> String {
        match cfg(pairs) {
            Err(Error::Config { var, .. }) => var,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    const API: (&str, &str) = ("API_URL", "http://127.0.0.1:5001/incremental/timestamp");

    #[test]
    fn defaults_are_local_and_file_backed() {
        let c = cfg(&[API]).unwrap();
        assert_eq!(c.api.since_param, "since");
        assert_eq!(c.api.records_field, "data");
        assert_eq!(c.api.next_page_field, None);
        assert_eq!(c.buffer, TimeDelta::hours(2));
        assert_eq!(c.sync_id, "user");
        assert_eq!(
            c.state,
            StateLocation::File {
                path: "./.replay-sync/state.json".into()
            }
        );
        assert_eq!(
            c.output,
            OutputLocation::Dir {
                root: "./.replay-sync/output".into()
            }
        );
        assert_eq!(c.batch, BatchLimits::default());
        assert_eq!(c.api.until_param, None);
        assert_eq!(c.fetch_concurrency, DEFAULT_FETCH_CONCURRENCY);
        let sliced = cfg(&[
            API,
            ("API_UNTIL_PARAM", "updated_before"),
            ("FETCH_CONCURRENCY", "8"),
        ])
        .unwrap();
        assert_eq!(sliced.api.until_param.as_deref(), Some("updated_before"));
        assert_eq!(sliced.fetch_concurrency, 8);
        let each = BatchLimits::default().shared_by(4);
        assert_eq!((each.max_records, each.max_bytes), (2_500, 2 * 1024 * 1024));
        assert_eq!(
            BatchLimits {
                max_records: 3,
                max_bytes: 3
            }
            .shared_by(8)
            .max_records,
            1
        );
    }

    #[test]
    fn aws_locations_parse() {
        let c = cfg(&[
            API,
            ("STATE_STORE", "dynamodb://replay-sync-state"),
            ("OUTPUT", "s3://my-lake/raw/api/"),
            ("BUFFER_HOURS", "0.5"),
            ("API_NEXT_PAGE_FIELD", "next_page_url"),
        ])
        .unwrap();
        assert_eq!(
            c.state,
            StateLocation::DynamoDb {
                table: "replay-sync-state".into()
            }
        );
        assert_eq!(
            c.output,
            OutputLocation::S3 {
                bucket: "my-lake".into(),
                prefix: "raw/api".into()
            }
        );
        assert_eq!(c.buffer, TimeDelta::minutes(30));
        assert_eq!(c.api.next_page_field.as_deref(), Some("next_page_url"));
        let bare = cfg(&[API, ("OUTPUT", "s3://my-lake")]).unwrap();
        assert_eq!(
            bare.output,
            OutputLocation::S3 {
                bucket: "my-lake".into(),
                prefix: "".into()
            }
        );
    }

    #[test]
    fn each_bad_variable_is_named() {
        assert_eq!(err_var(&[]), "API_URL");
        assert_eq!(err_var(&[("API_URL", "")]), "API_URL");
        assert_eq!(err_var(&[("API_URL", "ftp://x/y")]), "API_URL");
        assert_eq!(err_var(&[("API_URL", "not a url")]), "API_URL");
        assert_eq!(err_var(&[API, ("BUFFER_HOURS", "-1")]), "BUFFER_HOURS");
        assert_eq!(err_var(&[API, ("BUFFER_HOURS", "two")]), "BUFFER_HOURS");
        assert_eq!(err_var(&[API, ("BUFFER_HOURS", "NaN")]), "BUFFER_HOURS");
        assert_eq!(err_var(&[API, ("STATE_STORE", "redis://x")]), "STATE_STORE");
        assert_eq!(
            err_var(&[API, ("STATE_STORE", "dynamodb://")]),
            "STATE_STORE"
        );
        assert_eq!(err_var(&[API, ("STATE_STORE", "file://")]), "STATE_STORE");
        assert_eq!(err_var(&[API, ("OUTPUT", "gs://bucket/x")]), "OUTPUT");
        assert_eq!(err_var(&[API, ("OUTPUT", "s3://Bad_Bucket/x")]), "OUTPUT");
        assert_eq!(err_var(&[API, ("OUTPUT", "s3://bucket/../x")]), "OUTPUT");
        assert_eq!(err_var(&[API, ("SYNC_ID", "../etc")]), "SYNC_ID");
        assert_eq!(err_var(&[API, ("SYNC_ID", "a b")]), "SYNC_ID");
        assert_eq!(
            err_var(&[API, ("BATCH_MAX_RECORDS", "0")]),
            "BATCH_MAX_RECORDS"
        );
        assert_eq!(
            err_var(&[API, ("BATCH_MAX_BYTES", "lots")]),
            "BATCH_MAX_BYTES"
        );
        for bad in ["0", "65", "four"] {
            assert_eq!(
                err_var(&[API, ("FETCH_CONCURRENCY", bad)]),
                "FETCH_CONCURRENCY"
            );
        }
        assert_eq!(
            err_var(&[API, ("API_UNTIL_PARAM", "since")]),
            "API_UNTIL_PARAM"
        );
        assert_eq!(
            err_var(&[API, ("OUTPUT_COMPRESSION", "lz4")]),
            "OUTPUT_COMPRESSION"
        );
        // Once a panic (an instant overflowed): now a configuration error.
        assert_eq!(
            err_var(&[API, ("API_TIMEOUT_SECONDS", "18446744073709551615")]),
            "API_TIMEOUT_SECONDS"
        );
        assert_eq!(
            err_var(&[API, ("API_TIMEOUT_SECONDS", "901")]),
            "API_TIMEOUT_SECONDS"
        );
        assert_eq!(
            err_var(&[API, ("DEADLINE_MARGIN_SECONDS", "99999999999")]),
            "DEADLINE_MARGIN_SECONDS"
        );
        assert_eq!(
            err_var(&[API, ("MAX_RECORD_BYTES", "0")]),
            "MAX_RECORD_BYTES"
        );
        assert_eq!(
            cfg(&[API, ("MAX_RECORD_BYTES", "1000")])
                .unwrap()
                .api
                .max_record_bytes,
            1000
        );
        assert_eq!(
            cfg(&[API]).unwrap().api.max_record_bytes,
            DEFAULT_MAX_RECORD_BYTES
        );
    }

    #[test]
    fn auth_from_token_or_secret_never_both() {
        assert_eq!(cfg(&[API]).unwrap().api.auth, None);
        let a = cfg(&[API, ("API_AUTH_TOKEN", "t0k3n")])
            .unwrap()
            .api
            .auth
            .unwrap();
        assert_eq!(a.header, "Authorization");
        assert_eq!(a.scheme.as_deref(), Some("Bearer"));
        assert!(!format!("{a:?}").contains("t0k3n"), "Debug hides the token");
        let a = cfg(&[
            API,
            (
                "API_AUTH_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:x",
            ),
            ("API_AUTH_HEADER", "X-API-Key"),
            ("API_AUTH_SCHEME", "none"),
        ])
        .unwrap()
        .api
        .auth
        .unwrap();
        assert_eq!(a.scheme, None);
        assert!(matches!(a.token, TokenSource::SecretsManager { .. }));
        assert_eq!(
            err_var(&[API, ("API_AUTH_TOKEN", "a"), ("API_AUTH_SECRET_ARN", "b")]),
            "API_AUTH_SECRET_ARN"
        );
        assert_eq!(
            err_var(&[API, ("API_AUTH_SCHEME", "apiKey")]),
            "API_AUTH_SCHEME"
        );
        assert_eq!(
            err_var(&[API, ("API_AUTH_TOKEN", "a"), ("API_AUTH_HEADER", "X Key")]),
            "API_AUTH_HEADER"
        );
    }

    #[test]
    fn error_line_names_variable_and_form() {
        let msg = cfg(&[API, ("BUFFER_HOURS", "-3")]).unwrap_err().to_string();
        assert!(msg.contains("BUFFER_HOURS"), "{msg}");
        assert!(msg.contains("non-negative number of hours"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
}
