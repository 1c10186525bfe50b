//! Paging: how the next page of one read is asked for — one small module per kind of
//! `API_PAGINATION`, all behind [`Paging`], which the HTTP source asks after every page and
//! never looks behind — and whether the read is complete once paging ends ([`complete`]).
//!
//! * `next` (`next.rs`): a next-page URL in the body or a `Link` header (the default);
//! * `page_number` (`number.rs`), `offset` (`offset.rs`): a counter in the query, until an
//!   empty page, a page shorter than the size asked for, or the body's count says so;
//! * `cursor` (`cursor.rs`): a token from the body sent back, until there is none;
//! * `none`: one request.
//!
//! A page that repeats the one before it (an API that ignores the page parameter), a token
//! that repeats itself, or a link back to a page already read ends paging with an error, not
//! a loop.

use url::Url;

use super::page::PageTail;
use crate::config::PagingConfig;
use crate::error::Result;

pub mod complete;
mod cursor;
mod next;
mod number;
mod offset;

pub use next::{link_next, next_page};

/// What one page said about what follows.
pub struct Seen<'a> {
    /// The page's URL.
    pub url: &'a Url,
    /// How many records it held.
    pub records: u64,
    /// A hash of its records (when [`Paging::compares_pages`]).
    pub content: u128,
    /// The target of its `Link: <…>; rel="next"` header, if any.
    pub link: Option<&'a str>,
    /// Its other fields: the next-page field, counts, flags, tokens.
    pub tail: &'a PageTail,
}

/// The paging of one read.
pub trait Paging: Send + Sync {
    /// After `page`: the next page's URL, or `None` after the last. An error ends the read
    /// (a loop, a link elsewhere).
    fn next(&mut self, page: &Seen<'_>) -> Result<Option<Url>>;

    /// Whether the body field `name` is this paging's own token (then it is no sign of rows
    /// left unread).
    fn follows(&self, _name: &str) -> bool {
        false
    }

    /// Whether a `Link` header names the next page (it is then requested early).
    fn links(&self) -> bool {
        false
    }

    /// The page a `Link` header of the page at `url` names, if it would be followed next.
    fn early(&self, _url: &Url, _link: &str) -> Option<Url> {
        None
    }

    /// Whether [`Seen::content`] is wanted (to catch an API that ignores the counter).
    fn compares_pages(&self) -> bool {
        false
    }
}

/// One page, and no other.
struct Single;

impl Paging for Single {
    fn next(&mut self, _page: &Seen<'_>) -> Result<Option<Url>> {
        Ok(None)
    }
}

/// The first request of a read whose since/until are already on `first`, and the paging
/// that follows it; `base` is `API_URL` as configured (without since/until), for an API that
/// takes them with the first request only. With `counts`, a count in the body may end paging.
pub fn start(cfg: &PagingConfig, first: Url, base: &Url, counts: bool) -> (Url, Box<dyn Paging>) {
    match cfg {
        PagingConfig::Next => {
            let p = next::NextLink::new(&first);
            (first, Box::new(p))
        }
        PagingConfig::PageNumber {
            param,
            first: n,
            size,
        } => number::PageNumber::start(first, param, *n, size.clone(), counts),
        PagingConfig::Offset { param, size } => {
            offset::Offset::start(first, param, size.clone(), counts)
        }
        PagingConfig::Cursor {
            param,
            field,
            since_first_only,
        } => {
            let then = if *since_first_only {
                base.clone()
            } else {
                first.clone()
            };
            (first, Box::new(cursor::Cursor::new(then, param, field)))
        }
        PagingConfig::None => (first, Box::new(Single)),
    }
}

/// The top-level fields the page scanner keeps for paging and the completeness check.
pub fn watched(cfg: &PagingConfig) -> Vec<&str> {
    let mut w: Vec<&str> = complete::SIGNALS.to_vec();
    if let PagingConfig::Cursor { field, .. } = cfg {
        w.push(field);
    }
    w
}

/// `url` with the query parameter `name` set to `value` (replacing any).
pub(crate) fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let mut url = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    url
}

/// A count the page states in any of `names` (a number, or a numeric string).
pub(crate) fn count(tail: &PageTail, names: &[&str]) -> Option<(String, u64)> {
    names.iter().find_map(|n| {
        let v = tail.get(n)?;
        let c = v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))?;
        Some((n.to_string(), c))
    })
}

/// Catches an API that answers every counter with the same page.
#[derive(Default)]
struct Repeats(Option<u128>);

impl Repeats {
    /// Whether `page` holds the very records of the page before it.
    fn same(&mut self, page: &Seen<'_>) -> bool {
        let same = page.records > 0 && self.0 == Some(page.content);
        self.0 = Some(page.content);
        same
    }
}
