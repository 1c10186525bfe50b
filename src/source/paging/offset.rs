//! `API_PAGINATION=offset`: `API_OFFSET_PARAM` counts the rows read so far, from 0 (the
//! playground's `/pagination/offset`, dlt's `offset`, Airbyte's `OffsetIncrement`). The
//! offset moves by the rows a page held, not by the size asked for, so an API that caps its
//! pages below `API_PAGE_SIZE` loses nothing. Paging ends as `page_number`'s does.

use url::Url;

use super::{Paging, Repeats, Seen, count, with_param};
use crate::config::PageSize;
use crate::error::{Error, Result};
use crate::redact::url as redact;

pub(super) struct Offset {
    param: String,
    offset: u64,
    size: Option<PageSize>,
    counts: bool,
    repeats: Repeats,
}

impl Offset {
    pub(super) fn start(
        url: Url,
        param: &str,
        size: Option<PageSize>,
        counts: bool,
    ) -> (Url, Box<dyn Paging>) {
        let mut url = with_param(&url, param, "0");
        if let Some(s) = &size {
            url = with_param(&url, &s.param, &s.rows.to_string());
        }
        let p = Offset {
            param: param.to_string(),
            offset: 0,
            size,
            counts,
            repeats: Repeats::default(),
        };
        (url, Box::new(p))
    }
}

impl Paging for Offset {
    fn next(&mut self, page: &Seen<'_>) -> Result<Option<Url>> {
        if self.repeats.same(page) {
            return Err(Error::Paging {
                url: redact(page.url),
                message: format!(
                    "the page at offset {} holds the same rows as the one before: the API does not take `{}` (API_OFFSET_PARAM)",
                    self.offset, self.param
                ),
            });
        }
        self.offset += page.records;
        // The body's row count, when it is the request's, decides; else a short page does
        // (an API may cap its pages below the size asked for: the count then reads on).
        let counted = self
            .counts
            .then(|| count(page.tail, super::complete::COUNTS).map(|(_, n)| self.offset >= n))
            .flatten();
        let short = self.size.as_ref().is_some_and(|s| page.records < s.rows);
        let last = page.records == 0 || counted.unwrap_or(short);
        if last {
            return Ok(None);
        }
        Ok(Some(with_param(
            page.url,
            &self.param,
            &self.offset.to_string(),
        )))
    }

    fn compares_pages(&self) -> bool {
        true
    }
}
