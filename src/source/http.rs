//! The HTTP source: `GET API_URL?since=…`, following next-page links from a body field
//! (`API_NEXT_PAGE_FIELD`) or an RFC 8288 `Link: <…>; rel="next"` header.
//!
//! * Bodies are split into records as they arrive ([`super::page::PageScanner`]) by a
//!   producer task that runs ahead of the engine through a small bounded channel; the records
//!   of each network chunk are validated by a task of their own, and the engine takes the
//!   results in order. The next page is fetched while the engine writes the previous batch
//!   (and requested early when a `Link` header names it), and memory stays bounded whatever
//!   the page or result size.
//! * 429, 5xx, timeouts and broken connections are retried ([`super::retry`]), honouring
//!   `Retry-After` (seconds or HTTP-date) and the invocation deadline; other statuses fail at
//!   once with the status and a short excerpt of the body.
//! * Paging refuses to revisit a URL (a loop) or to leave the API's origin.
//! * URLs in errors and logs carry no query string (it may hold credentials).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue, RETRY_AFTER};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info};
use url::Url;

use super::auth::{Auth, LoginFailed};
use super::page::{PageScanner, RawElement};
use super::retry::{self, Attempt};
use super::{Chunk, PageEnd, Pages, Source};
use crate::config::ApiConfig;
use crate::error::{Error, Result};
use crate::record::Entry;
use crate::redact::{Secrets, url as redact};

use super::paging::complete::{self, Tally};
use super::paging::{self, Paging, Seen, link_next};

/// An excerpt of an error body is short: enough for a message, too little for a dump.
const EXCERPT_CHARS: usize = 120;
/// Chunks the producer may run ahead of the engine.
const CHANNEL_DEPTH: usize = 16;
/// Records validated by one task.
const VALIDATION_TASK: usize = 128;

#[derive(Debug, Clone)]
pub struct HttpSource {
    client: reqwest::Client,
    api: ApiConfig,
    auth: Arc<Auth>,
    /// The credential in every form an echo could take: scrubbed from every error.
    secrets: Secrets,
}

impl HttpSource {
    /// Builds the source with its own client (one per process: build it once).
    pub fn new(api: ApiConfig) -> Result<Self> {
        let builder = reqwest::Client::builder()
            .user_agent(concat!("replay-sync/", env!("CARGO_PKG_VERSION")))
            // Redirects are followed within the API's origin only: a credential must not
            // travel elsewhere. Another origin ends the run with the 3xx status.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same_origin =
                    attempt.previous().first().map(Url::origin) == Some(attempt.url().origin());
                if attempt.previous().len() > 5 {
                    attempt.error("more than 5 redirects")
                } else if same_origin {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .read_timeout(api.timeout)
            .connect_timeout(api.timeout.min(Duration::from_secs(10)));
        // A plain-HTTP API never needs TLS: paging and redirects never leave its origin. No
        // trust roots then, which spares each start reading the system's certificate store.
        let builder = if api.url.scheme() == "http" {
            builder.tls_certs_only(std::iter::empty())
        } else {
            builder
        };
        let client = builder
            .build()
            .map_err(|e| Error::config("API_URL", format!("cannot build an HTTP client: {e}")))?;
        let secrets = Secrets::new(Secrets::of_url(&api.url));
        Ok(HttpSource {
            client,
            api,
            auth: Arc::new(Auth::None),
            secrets,
        })
    }

    /// Sends `name: value` with every request. `secret` is the credential in it: the value
    /// is marked sensitive, and neither is ever printed, even when the API echoes it back.
    pub fn with_auth_header(
        mut self,
        name: HeaderName,
        mut value: HeaderValue,
        secret: &str,
    ) -> Self {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        self.secrets = self.secrets.with([text.as_str(), secret]);
        value.set_sensitive(true);
        self.auth = Arc::new(Auth::Header(name, value));
        self
    }

    /// Authenticates every request as `auth` says (`API_AUTH`); `secrets` are the
    /// credential's parts, never printed (tokens join them as they are fetched).
    pub fn with_auth(mut self, auth: Auth, secrets: &[String]) -> Self {
        self.secrets = self.secrets.with(secrets);
        self.auth = Arc::new(auth);
        self
    }

    /// What this source scrubs from messages (the edge scrubs with it too).
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The first request's URL: `API_URL` with `since` and, given an `API_UNTIL_PARAM`,
    /// `until` set (replacing any already in it), in the same form.
    pub fn first_url(&self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Url {
        let mut url = self.api.url.clone();
        let until = until.zip(self.api.until_param.as_deref());
        let set: Vec<(&str, DateTime<Utc>)> = since
            .map(|t| (self.api.since_param.as_str(), t))
            .into_iter()
            .chain(until.map(|(t, p)| (p, t)))
            .collect();
        if set.is_empty() {
            return url;
        }
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !set.iter().any(|(p, _)| k == p))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut q = url.query_pairs_mut();
        q.clear().extend_pairs(kept);
        for (param, t) in set {
            q.append_pair(param, &self.api.since_format.format(t));
        }
        drop(q);
        url
    }

    /// Reads every page, sending chunks to `tx`; ends with `Ok(None)` or one `Err`.
    async fn produce(
        self,
        first: Url,
        deadline: Option<Instant>,
        tx: mpsc::Sender<Result<Option<Part>>>,
    ) {
        let result = self.read_all(first, deadline, &tx).await;
        let last = match result {
            Ok(()) => Ok(None),
            Err(e) => Err(e),
        };
        let _ = tx.send(last).await;
    }

    /// Every page of one read, as the paging in force asks for them ([`paging::start`]);
    /// once paging ends, the read must be complete by what the last page says
    /// ([`complete::check`]).
    async fn read_all(
        &self,
        first: Url,
        deadline: Option<Instant>,
        tx: &mpsc::Sender<Result<Option<Part>>>,
    ) -> Result<()> {
        let api = &self.api;
        let (mut url, mut pages) = paging::start(&api.paging, first, &api.url, api.counts);
        let mut tally = Tally::default();
        let prefetch = Prefetch::default();
        loop {
            let read = retry::with_retries(api.max_attempts, deadline, |attempt| {
                let page = self.read_page(&url, attempt, tx, pages.as_ref(), &prefetch);
                // Every error passes here before a retry warning or the caller sees it.
                async move {
                    match page.await {
                        Attempt::Retry { error, retry_after } => Attempt::Retry {
                            error: error.scrubbed(&self.secrets),
                            retry_after,
                        },
                        Attempt::Fail(e) => Attempt::Fail(e.scrubbed(&self.secrets)),
                        done => done,
                    }
                }
            })
            .await?;
            let Some(read) = read else {
                return Ok(()); // the reader is gone
            };
            tally.rows += read.records;
            tally.pages += 1;
            let seen = Seen {
                url: &url,
                records: read.records,
                content: read.content,
                link: read.link.as_deref(),
                tail: &read.tail,
            };
            let next = pages.next(&seen).map_err(|e| e.scrubbed(&self.secrets))?;
            let end = PageEnd {
                bytes: read.bytes,
                more: next.is_some(),
            };
            if tx.send(Ok(Some(Part::PageEnd(end)))).await.is_err() {
                return Ok(()); // the reader is gone
            }
            match next {
                Some(n) => url = n,
                None => {
                    return complete::check(
                        tally,
                        &read.tail,
                        pages.as_ref(),
                        api.paging.name(),
                        api.counts,
                    )
                    .map_err(|message| {
                        Error::IncompleteRead {
                            url: redact(&url),
                            message,
                        }
                        .scrubbed(&self.secrets)
                    });
                }
            }
        }
    }

    /// The GET for `url`, with the credential.
    fn request(&self, url: &Url) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        req = self.auth.fixed(req);
        req
    }

    /// Requests the next page that the `Link` header of the page at `url` names now, while
    /// this body streams in, so that the API's latency overlaps the work — only a link that
    /// the paging would follow; if the body names another next page, this request is dropped.
    fn request_early(&self, url: &Url, link: &str, pages: &dyn Paging, prefetch: &Prefetch) {
        // A token may be renewed meanwhile: only fixed credentials go ahead.
        if self.auth.token().is_some() {
            return;
        }
        if let Some(next) = pages.early(url, link) {
            let early = self.request(&next).send();
            prefetch.put(next, tokio::spawn(early));
        }
    }

    /// An answer that is not a success: retried (429, 5xx, honouring `Retry-After`) or
    /// failed at once (other statuses), with a short, scrubbed excerpt of the body.
    async fn failed_status<T>(
        &self,
        mut resp: reqwest::Response,
        url: &Url,
        attempt: u32,
    ) -> Attempt<T> {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        // Only the first bytes of an error body are read, for the excerpt.
        let mut head = Vec::new();
        while head.len() < 4 * EXCERPT_CHARS {
            match resp.chunk().await {
                Ok(Some(c)) => head.extend_from_slice(&c),
                _ => break,
            }
        }
        let error = Error::Upstream {
            status,
            url: redact(url),
            attempts: attempt,
            excerpt: excerpt(&head, &self.secrets),
        };
        if status == 429 || (500..=599).contains(&status) {
            Attempt::Retry { error, retry_after }
        } else {
            Attempt::Fail(error)
        }
    }

    /// One attempt at one page: sends the request, then streams the body through the
    /// scanner, sending entries as they complete. Returns what the page said about what
    /// follows (`None`: the reader is gone).
    async fn read_page(
        &self,
        url: &Url,
        attempt: u32,
        tx: &mpsc::Sender<Result<Option<Part>>>,
        pages: &dyn Paging,
        prefetch: &Prefetch,
    ) -> Attempt<Option<PageRead>> {
        // A retry reads the page from its start: say so before its rows come again.
        if attempt > 1 && tx.send(Ok(Some(Part::Restart))).await.is_err() {
            return Attempt::Done(None); // the reader is gone: stop quietly
        }
        let resp = match self.send_page(url, attempt, prefetch).await {
            Ok(resp) => resp,
            Err(failed) => return failed,
        };
        let link = link_next(resp.headers()).filter(|_| pages.links());
        if let Some(n) = &link {
            self.request_early(url, n, pages, prefetch);
        }
        self.read_body(resp, url, attempt, tx, pages, link).await
    }

    /// The answer to the GET of `url`, a success: the early request if one was made, else a
    /// request with the credential (a token fetched first when needed). A 401 with a token
    /// that may have gone stale is retried once with a new one.
    async fn send_page(
        &self,
        url: &Url,
        attempt: u32,
        prefetch: &Prefetch,
    ) -> std::result::Result<reqwest::Response, Attempt<Option<PageRead>>> {
        // The token the request carried, if it carried one.
        let mut token = None;
        // A first attempt may find its request already sent (see `Prefetch`).
        let sent = match prefetch.take(url).filter(|_| attempt == 1) {
            Some(early) => match early.await {
                Ok(r) => r,
                Err(e) => {
                    return Err(Attempt::Retry {
                        error: Error::Transport {
                            url: redact(url),
                            attempts: attempt,
                            message: format!("the early request failed: {e}"),
                        },
                        retry_after: None,
                    });
                }
            },
            None => match self.auth.token() {
                None => self.request(url).send().await,
                Some(t) => match t
                    .apply(&self.client, self.request(url), &self.secrets)
                    .await
                {
                    Ok((req, used)) => {
                        token = Some(used);
                        req.send().await
                    }
                    Err(LoginFailed { error, retriable }) => {
                        return Err(match retriable {
                            true => Attempt::Retry {
                                error,
                                retry_after: None,
                            },
                            false => Attempt::Fail(error),
                        });
                    }
                },
            },
        };
        let resp = sent.map_err(|e| transport(e, url, attempt))?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            if status == 401
                && let (Some(t), Some(used)) = (self.auth.token(), token)
                && t.refused(used).await
            {
                // A token that ran out early, or was revoked: once more with a new one.
                return Err(Attempt::Retry {
                    error: Error::Upstream {
                        status,
                        url: redact(url),
                        attempts: attempt,
                        excerpt: "the API refused the token (it is fetched again)".into(),
                    },
                    retry_after: Some(Duration::ZERO),
                });
            }
            return Err(self.failed_status(resp, url, attempt).await);
        }
        if let (Some(t), Some(used)) = (self.auth.token(), token) {
            t.accepted(used).await;
        }
        Ok(resp)
    }

    /// Streams the body of a successful answer through the scanner, the records of each
    /// network chunk validated by tasks of their own (the reader awaits them in order).
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
        url: &Url,
        attempt: u32,
        tx: &mpsc::Sender<Result<Option<Part>>>,
        pages: &dyn Paging,
        link: Option<String>,
    ) -> Attempt<Option<PageRead>> {
        let status = resp.status().as_u16();
        let next_field = self
            .api
            .next_page_field
            .as_deref()
            .filter(|_| pages.links());
        let mut scanner = PageScanner::new(&self.api.records_field, next_field)
            .with_fields(self.api.fields.clone())
            .with_max_value(self.api.max_record_bytes)
            .with_watch(paging::watched(&self.api.paging));
        let mut bytes = 0u64;
        let mut records = 0u64;
        let mut content = pages.compares_pages().then(xxhash_rust::xxh3::Xxh3::new);
        let malformed = |message| {
            Attempt::Fail(Error::MalformedResponse {
                url: redact(url),
                message,
            })
        };
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return transport(e, url, attempt),
            };
            bytes += chunk.len() as u64;
            let mut elements = Vec::new();
            let fed = scanner.feed_raw(&chunk, &mut elements);
            records += elements.len() as u64;
            if let Some(h) = content.as_mut() {
                for e in &elements {
                    h.update(e.bytes());
                }
            }
            // A network chunk can hold hundreds of records: a few tasks share them.
            let mut elements = elements.into_iter().peekable();
            while elements.peek().is_some() {
                let part: Vec<RawElement> = elements.by_ref().take(VALIDATION_TASK).collect();
                let page = redact(url);
                let fields = self.api.fields.clone();
                let parsed = tokio::spawn(async move {
                    part.iter()
                        .map(|e| e.parse(&fields))
                        .collect::<std::result::Result<Vec<Entry>, String>>()
                        .map_err(|message| Error::MalformedResponse { url: page, message })
                });
                if tx.send(Ok(Some(Part::Records(parsed)))).await.is_err() {
                    return Attempt::Done(None); // the reader is gone: stop quietly
                }
            }
            // After the records that came before it (whose own errors come first).
            if let Err(message) = fed {
                return malformed(message);
            }
        }
        let tail = match scanner.finish() {
            Ok(t) => t,
            Err(message) => return malformed(message),
        };
        info!(status, bytes, url = %self.secrets.scrub(&redact(url)), "API page received");
        Attempt::Done(Some(PageRead {
            bytes,
            link,
            tail,
            records,
            content: content.map_or(0, |h| h.digest128()),
        }))
    }
}

/// A failed request or body: timeouts, refused or reset connections and bodies cut short are
/// worth another try.
fn transport<T>(e: reqwest::Error, url: &Url, attempt: u32) -> Attempt<T> {
    let retriable =
        e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode();
    let error = Error::Transport {
        url: redact(url),
        attempts: attempt,
        // reqwest's message quotes the URL, query string and all: drop it.
        message: error_chain(&e.without_url()),
    };
    if retriable {
        Attempt::Retry {
            error,
            retry_after: None,
        }
    } else {
        Attempt::Fail(error)
    }
}

impl Source for HttpSource {
    type Pages<'a> = HttpPages;

    fn bounded(&self) -> bool {
        self.api.until_param.is_some()
    }

    fn open(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        deadline: Option<Instant>,
    ) -> HttpPages {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let first = self.first_url(since, until);
        debug!(url = %self.secrets.scrub(&redact(&first)), "opening a read");
        let url = redact(&first);
        let secrets = self.secrets.clone();
        let task = tokio::spawn(self.clone().produce(first, deadline, tx));
        HttpPages {
            rx,
            task,
            url,
            finished: false,
            secrets,
        }
    }
}

/// What one page said, once read whole.
struct PageRead {
    bytes: u64,
    /// Its `Link` header's next page (when the paging follows links).
    link: Option<String>,
    tail: super::page::PageTail,
    records: u64,
    content: u128,
}

/// A request for the next page already under way, keyed by its URL.
#[derive(Default)]
struct Prefetch(std::sync::Mutex<Option<(Url, JoinHandle<reqwest::Result<reqwest::Response>>)>>);

impl Prefetch {
    fn put(&self, url: Url, request: JoinHandle<reqwest::Result<reqwest::Response>>) {
        let old = self
            .0
            .lock()
            .map(|mut slot| slot.replace((url, request)))
            .unwrap_or_default();
        if let Some((_, h)) = old {
            h.abort();
        }
    }

    /// The request for `url`, if it is the one under way (any other is cancelled).
    fn take(&self, url: &Url) -> Option<JoinHandle<reqwest::Result<reqwest::Response>>> {
        let (u, h) = self.0.lock().ok()?.take()?;
        if u == *url {
            Some(h)
        } else {
            h.abort();
            None
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.0.lock()
            && let Some((_, h)) = slot.take()
        {
            h.abort();
        }
    }
}

/// What the producer sends: the records of a network chunk (being validated by a task of
/// their own), or the end of a page.
enum Part {
    Records(JoinHandle<Result<Vec<Entry>>>),
    PageEnd(PageEnd),
    /// The page is read again from its start (see [`Chunk::restart`]).
    Restart,
}

/// The chunks of one read, produced by a background task; dropping this stops the task.
pub struct HttpPages {
    rx: mpsc::Receiver<Result<Option<Part>>>,
    task: JoinHandle<()>,
    url: String,
    finished: bool,
    secrets: Secrets,
}

impl Pages for HttpPages {
    async fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        let next = self.next_raw().await;
        next.map_err(|e| e.scrubbed(&self.secrets))
    }
}

impl HttpPages {
    async fn next_raw(&mut self) -> Result<Option<Chunk>> {
        if self.finished {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Ok(Some(Part::Records(parsed)))) => match parsed.await {
                Ok(Ok(entries)) => Ok(Some(Chunk {
                    entries,
                    ..Chunk::default()
                })),
                Ok(Err(e)) => {
                    self.finished = true;
                    Err(e)
                }
                Err(e) => {
                    self.finished = true;
                    Err(Error::MalformedResponse {
                        url: self.url.clone(),
                        message: format!("the record parser task failed: {e}"),
                    })
                }
            },
            Some(Ok(Some(Part::PageEnd(end)))) => Ok(Some(Chunk {
                page_end: Some(end),
                ..Chunk::default()
            })),
            Some(Ok(Some(Part::Restart))) => Ok(Some(Chunk {
                restart: true,
                ..Chunk::default()
            })),
            Some(Ok(None)) => {
                self.finished = true;
                Ok(None)
            }
            Some(Err(e)) => {
                self.finished = true;
                Err(e)
            }
            // The producer always ends with Ok(None) or Err: a silent end means it died, and
            // the read must not pass for complete.
            None => {
                self.finished = true;
                Err(Error::Transport {
                    url: self.url.clone(),
                    attempts: 0,
                    message: "the reader task stopped before the last page".into(),
                })
            }
        }
    }
}

impl Drop for HttpPages {
    fn drop(&mut self) {
        self.task.abort();
    }
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

/// A short, single-line start of a body, with the credential and emails scrubbed (from the
/// whole head first, so that a credential cut by the excerpt's end cannot show its start).
fn excerpt(body: &[u8], secrets: &Secrets) -> String {
    let text = String::from_utf8_lossy(body);
    let text = secrets.scrub(&text);
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
    use crate::window;

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
    fn since_replaces_an_existing_parameter() {
        let api = crate::config::Config::from_lookup(|k| {
            (k == "API_URL").then(|| "http://127.0.0.1:1/x?per_page=5&since=old".to_string())
        })
        .unwrap()
        .api;
        let src = HttpSource::new(api).unwrap();
        let since = window::parse_ts("2024-01-15T08:30:00Z");
        let until = window::parse_ts("2024-01-16T00:00:00Z");
        assert_eq!(
            src.first_url(since, None).as_str(),
            "http://127.0.0.1:1/x?per_page=5&since=2024-01-15T08%3A30%3A00Z"
        );
        assert_eq!(
            src.first_url(None, None).as_str(),
            "http://127.0.0.1:1/x?per_page=5&since=old"
        );
        assert_eq!(
            src.first_url(since, until).as_str(),
            "http://127.0.0.1:1/x?per_page=5&since=2024-01-15T08%3A30%3A00Z",
            "no until without API_UNTIL_PARAM"
        );
        assert!(!src.bounded());
    }

    #[test]
    fn until_is_sent_in_the_same_form_as_since() {
        let api = crate::config::Config::from_lookup(|k| match k {
            "API_URL" => Some("http://127.0.0.1:1/x?before=old&per_page=5".to_string()),
            "API_UNTIL_PARAM" => Some("before".to_string()),
            _ => None,
        })
        .unwrap()
        .api;
        let src = HttpSource::new(api).unwrap();
        assert!(src.bounded());
        let since = window::parse_ts("2024-01-15T08:30:00Z");
        let until = window::parse_ts("2024-01-16T00:00:00Z");
        assert_eq!(
            src.first_url(since, until).as_str(),
            "http://127.0.0.1:1/x?per_page=5&since=2024-01-15T08%3A30%3A00Z&before=2024-01-16T00%3A00%3A00Z"
        );
        assert_eq!(
            src.first_url(None, until).as_str(),
            "http://127.0.0.1:1/x?per_page=5&before=2024-01-16T00%3A00%3A00Z"
        );
    }
}
