//! Where records come from. The engine sees pages of parsed entries; HTTP, paging and
//! retries are the adapter's business.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::record::Entry;

pub mod http;

/// One page of the API's answer, parsed.
#[derive(Debug, Default)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Size of the body as received.
    pub bytes: usize,
}

/// A source of records updated since a point in time.
pub trait Source: Send + Sync {
    type Pages<'a>: Pages + 'a
    where
        Self: 'a;

    /// Starts reading every record with `updatedAt >= since` (every record when `None`).
    /// Nothing is requested until the first [`Pages::next_page`].
    fn open(&self, since: Option<DateTime<Utc>>) -> Self::Pages<'_>;
}

/// The pages of one read, in the API's order.
pub trait Pages: Send {
    /// The next page, or `None` after the last one. An error ends the read: the records
    /// already returned stand, the rest were not fetched.
    fn next_page(&mut self) -> impl Future<Output = Result<Option<Page>>> + Send;
}
