//! Where records come from. The engine sees chunks of parsed entries, in the API's order,
//! and page boundaries; HTTP, paging, streaming and retries are the adapter's business.

use std::future::Future;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::error::Result;
use crate::record::Entry;

pub mod auth;
pub mod http;
pub mod page;
pub mod paging;
pub mod retry;

/// Some entries of the current page, and whether the page ended with them.
#[derive(Debug, Default)]
pub struct Chunk {
    pub entries: Vec<Entry>,
    /// Set on the last chunk of each page.
    pub page_end: Option<PageEnd>,
    /// The current page is being read again from its start (a retry after its body broke
    /// off): the entries that follow repeat some already returned. A retried page is the
    /// same page, so its repeated rows are no sign of disorder.
    pub restart: bool,
}

/// A page was read completely.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageEnd {
    /// Size of the page's body.
    pub bytes: u64,
    /// The page names a next page: the read goes on.
    pub more: bool,
}

/// A source of records updated since a point in time.
pub trait Source: Send + Sync {
    type Pages<'a>: Pages + 'a
    where
        Self: 'a;

    /// Starts reading every record with `since <= updatedAt` (no lower bound when `None`)
    /// and, when `until` is given, `updatedAt < until` — which only a [`Source::bounded`]
    /// source honours. Retries stop early enough to leave the caller time before `deadline`.
    fn open(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        deadline: Option<Instant>,
    ) -> Self::Pages<'_>;

    /// Whether [`Source::open`] honours `until`, so that a window can be read as several
    /// time slices at once. A source that does not ignores `until`.
    fn bounded(&self) -> bool {
        false
    }
}

/// The chunks of one read.
pub trait Pages: Send {
    /// The next chunk, or `None` once the last page has ended. An error ends the read: the
    /// entries already returned stand, the rest were not fetched. After a transient failure
    /// in the middle of a page the page is fetched again from its start, so entries of that
    /// page may be returned twice (the output is an upsert log: harmless); a chunk with
    /// [`Chunk::restart`] set says so before the repeats.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Chunk>>> + Send;
}
