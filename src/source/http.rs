//! The HTTP source: `GET API_URL?since=…`, following next-page links from a body field
//! (`API_NEXT_PAGE_FIELD`) or an RFC 8288 `Link: <…>; rel="next"` header.
//!
//! * 429, 5xx, timeouts and broken connections are retried with capped exponential backoff
//!   and full jitter, honouring `Retry-After` (seconds or HTTP-date); other statuses fail at
//!   once with the status and a short excerpt of the body.
//! * Paging refuses to revisit a URL (a loop) or to leave the API's origin.
//! * URLs in errors and logs carry no query string (it may hold credentials).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, LINK, RETRY_AFTER};
use tracing::{info, warn};
use url::Url;

use super::{Page, Pages, Source};
use crate::config::ApiConfig;
use crate::error::{Error, Result};
use crate::record;
use crate::window;

/// Backoff before retry `n` (1-based) is uniform in `[0, min(CAP, BASE·2^(n-1))]`.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(20);
/// A `Retry-After` longer than this is cut to it.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(120);
const EXCERPT_CHARS: usize = 200;

#[derive(Debug, Clone)]
pub struct HttpSource {
    client: reqwest::Client,
    api: ApiConfig,
}

impl HttpSource {
    /// Builds the source with its own client (one per process: build it once).
    pub fn new(api: ApiConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("replay-sync/", env!("CARGO_PKG_VERSION")))
            .timeout(api.timeout)
            .connect_timeout(api.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::config("API_URL", format!("cannot build an HTTP client: {e}")))?;
        Ok(HttpSource { client, api })
    }

    /// The first request's URL: `API_URL` with `since` set (replacing any `since` already in it).
    pub fn first_url(&self, since: Option<DateTime<Utc>>) -> Url {
        let mut url = self.api.url.clone();
        if let Some(since) = since {
            let param = &self.api.since_param;
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != param)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.query_pairs_mut()
                .clear()
                .extend_pairs(kept)
                .append_pair(param, &window::format_ts(since));
        }
        url
    }
}

impl Source for HttpSource {
    type Pages<'a> = HttpPages<'a>;

    fn open(&self, since: Option<DateTime<Utc>>) -> HttpPages<'_> {
        let first = self.first_url(since);
        HttpPages {
            src: self,
            origin: first.origin(),
            next: Some(first),
            visited: HashSet::new(),
        }
    }
}

/// The pages of one read.
pub struct HttpPages<'a> {
    src: &'a HttpSource,
    origin: url::Origin,
    next: Option<Url>,
    visited: HashSet<Url>,
}

impl Pages for HttpPages<'_> {
    async fn next_page(&mut self) -> Result<Option<Page>> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        self.visited.insert(url.clone());
        let (headers, body) =
            fetch_with_retries(&self.src.client, &url, self.src.api.max_attempts).await?;
        let parsed = record::parse_page(
            &body,
            &self.src.api.records_field,
            self.src.api.next_page_field.as_deref(),
        )
        .map_err(|message| Error::MalformedResponse {
            url: redact(&url),
            message,
        })?;

        let next = match parsed.next {
            Some(n) => Some(n),
            None => link_next(&headers),
        };
        if let Some(n) = next {
            let resolved = url.join(&n).map_err(|e| Error::Paging {
                url: redact(&url),
                message: format!("the next-page link is not a URL ({e})"),
            })?;
            if resolved.origin() != self.origin {
                return Err(Error::Paging {
                    url: redact(&url),
                    message: format!(
                        "refusing to follow a next-page link to another origin ({})",
                        redact(&resolved)
                    ),
                });
            }
            if self.visited.contains(&resolved) {
                return Err(Error::Paging {
                    url: redact(&url),
                    message: format!(
                        "the next-page link points back to a page already read ({}): a paging loop",
                        redact(&resolved)
                    ),
                });
            }
            self.next = Some(resolved);
        }
        Ok(Some(Page {
            entries: parsed.entries,
            bytes: body.len(),
        }))
    }
}

/// One GET with retries. Returns the headers and the whole body of a 2xx answer.
async fn fetch_with_retries(
    client: &reqwest::Client,
    url: &Url,
    max_attempts: u32,
) -> Result<(HeaderMap, bytes::Bytes)> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = fetch_once(client, url).await;
        let (retry_after, failure) = match outcome {
            Ok(Fetched::Ok(headers, body)) => return Ok((headers, body)),
            Ok(Fetched::Status {
                status,
                retry_after,
                excerpt,
            }) => {
                let err = Error::Upstream {
                    status,
                    url: redact(url),
                    attempts: attempt,
                    excerpt,
                };
                if !(status == 429 || (500..=599).contains(&status)) {
                    return Err(err);
                }
                (retry_after, err)
            }
            Err(e) => {
                let retriable = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
                let err = Error::Transport {
                    url: redact(url),
                    attempts: attempt,
                    message: error_chain(&e),
                };
                if !retriable {
                    return Err(err);
                }
                (None, err)
            }
        };
        if attempt >= max_attempts {
            return Err(failure);
        }
        let delay = retry_delay(attempt, retry_after);
        warn!(attempt, delay_ms = delay.as_millis() as u64, error = %failure, "retrying API request");
        tokio::time::sleep(delay).await;
    }
}

enum Fetched {
    Ok(HeaderMap, bytes::Bytes),
    Status {
        status: u16,
        retry_after: Option<Duration>,
        excerpt: String,
    },
}

async fn fetch_once(client: &reqwest::Client, url: &Url) -> reqwest::Result<Fetched> {
    let resp = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await?;
    let status = resp.status();
    if status.is_success() {
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        info!(status = status.as_u16(), bytes = body.len(), url = %redact(url), "API page received");
        return Ok(Fetched::Ok(headers, body));
    }
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    // The body of an error answer is only read for its excerpt; a failure reading it does
    // not change the verdict.
    let body = resp.bytes().await.unwrap_or_default();
    Ok(Fetched::Status {
        status: status.as_u16(),
        retry_after,
        excerpt: excerpt(&body),
    })
}

/// The delay before retry number `attempt` (1-based): `Retry-After` when the server sent
/// one (capped), else full jitter over a capped exponential.
pub fn retry_delay(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(RETRY_AFTER_CAP);
    }
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let ceiling = exp.min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The target of `Link: <…>; rel="next"` (RFC 8288), if any.
pub fn link_next(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(LINK) {
        let Ok(value) = value.to_str() else { continue };
        // Links are comma-separated; a URI in <> does not contain '>'.
        let mut rest = value;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else {
                break;
            };
            let target = &rest[start + 1..start + end];
            let after = &rest[start + end + 1..];
            let params_end = after.find('<').unwrap_or(after.len());
            let params = &after[..params_end];
            let is_next = params.split(';').any(|p| {
                let p = p.trim().trim_end_matches(',').trim();
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("rel")
                        && v.trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if is_next {
                return Some(target.to_string());
            }
            rest = &after[params_end..];
        }
    }
    None
}

/// The URL without its query string or credentials, for messages and logs.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let mut s = u.to_string();
    if url.query().is_some() {
        s.push_str("?…");
    }
    s
}

/// A short, single-line start of a body.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    if out.trim().is_empty() {
        "(empty body)".into()
    } else {
        out.trim().to_string()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn link_header_next_is_found() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static(
                r#"<https://api/x?page=1>; rel="prev", <https://api/x?page=3>; rel="next""#,
            ),
        );
        assert_eq!(link_next(&h).as_deref(), Some("https://api/x?page=3"));
        let mut h = HeaderMap::new();
        h.append(LINK, HeaderValue::from_static(r#"</p?page=2>; rel=next"#));
        assert_eq!(link_next(&h).as_deref(), Some("/p?page=2"));
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static(r#"<https://api/x?page=1>; rel="prev last""#),
        );
        assert_eq!(link_next(&h), None);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 1..40 {
            let d = retry_delay(attempt, None);
            assert!(d <= BACKOFF_CAP);
            assert!(d <= BACKOFF_BASE * 2u32.pow(attempt.min(20) - 1).max(1));
        }
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(3600))),
            RETRY_AFTER_CAP
        );
    }

    #[test]
    fn redaction_drops_query_and_credentials() {
        let u = Url::parse("https://user:pw@api.example.com/x?api_key=secret&since=1").unwrap();
        let r = redact(&u);
        assert!(!r.contains("secret") && !r.contains("pw"), "{r}");
        assert!(r.starts_with("https://api.example.com/x"), "{r}");
    }

    #[test]
    fn since_replaces_an_existing_parameter() {
        let api = crate::config::Config::from_lookup(|k| {
            (k == "API_URL").then(|| "http://127.0.0.1:1/x?per_page=5&since=old".to_string())
        })
        .unwrap()
        .api;
        let src = HttpSource::new(api).unwrap();
        let since = window::parse_ts("2024-01-15T08:30:00Z");
        assert_eq!(
            src.first_url(since).as_str(),
            "http://127.0.0.1:1/x?per_page=5&since=2024-01-15T08%3A30%3A00Z"
        );
        assert_eq!(
            src.first_url(None).as_str(),
            "http://127.0.0.1:1/x?per_page=5&since=old"
        );
    }
}
