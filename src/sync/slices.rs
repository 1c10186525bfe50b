//! Time slices: one window read over several connections at once, for a source that takes an
//! upper bound (`API_UNTIL_PARAM`).
//!
//! The window starts cut into `FETCH_CONCURRENCY` equal slices (less the ranges an earlier
//! partial run completed, [`crate::state::SyncState::done`]). Rows need not be spread
//! evenly: when a slot is free and no slice waits, the slice with the most work left — one
//! that has read a page and goes on, in ascending `updatedAt` order — is split. Its reader
//! keeps the first piece of its remaining range (its end moves down: it drops what lies
//! beyond and stops there), and the rest is handed out as new slices: pieces of a few pages
//! each at the density it has seen (a dense hour is shared out at once instead of by halving
//! a month), the last piece taking whatever is left.
//!
//! Slices finish out of order. What the run may checkpoint is decided here too
//! ([`Table::outcome`]): the cursor moves only as far as every slice below it is complete
//! (a contiguous low watermark, as Airbyte's concurrent cursor merges intervals), and the
//! slices complete beyond a gap are recorded for the next run to skip.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

/// An index into the table.
pub(super) type SliceId = usize;

/// At most this many pages' worth of the observed density goes to each new slice of a split.
const PAGES_PER_PIECE: i32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Reading,
    /// Read to its end.
    Done,
    /// Stopped at the deadline: complete up to `durable` (when it read in order).
    Stopped {
        durable: Option<DateTime<Utc>>,
    },
    /// An earlier run completed it: not read again.
    Skipped,
}

#[derive(Debug, Clone)]
struct Slice {
    /// `None`: no lower bound (a full sync's first slice).
    since: Option<DateTime<Utc>>,
    /// Exclusive; moves down when the slice is split.
    until: DateTime<Utc>,
    /// The last slice reads on past `until` (the window's top is open, as one stream's is:
    /// rows stamped after the run started are written too, the cursor never passes it).
    open: bool,
    status: Status,
    /// When its read started (what it holds is complete for rows visible then).
    opened_at: Option<DateTime<Utc>>,
    /// The first and greatest `updatedAt` read so far, the pages read, and whether in order.
    first: Option<DateTime<Utc>>,
    seen: Option<DateTime<Utc>>,
    pages: u64,
    ascending: bool,
    /// Its last page named a next one.
    more: bool,
}

/// The slices of one window. A slice's id is its index: slices are only ever added.
#[derive(Debug)]
pub(super) struct Table {
    slices: Vec<Slice>,
}

impl Table {
    /// `[since, until)` cut into about `n` slices of equal length (whole seconds), without
    /// the ranges in `skip`; a full sync (`since: None`) starts as one slice.
    pub(super) fn new(
        since: Option<DateTime<Utc>>,
        until: DateTime<Utc>,
        skip: &[crate::window::Span],
        n: usize,
    ) -> Table {
        let mut t = Table { slices: Vec::new() };
        let Some(start) = since.filter(|s| *s < until) else {
            // A full sync, or a window that starts after the run did (an override in the
            // future): one open slice, read as one stream would read it.
            t.push(since, until.max(since.unwrap_or(until)), Status::Waiting);
            t.slices[0].open = true;
            return t;
        };
        // The gaps between the skipped ranges, each cut into a share of the n slices.
        let mut skip: Vec<_> = skip
            .iter()
            .filter(|s| s.until > start && s.since < until)
            .copied()
            .collect();
        skip.sort();
        let mut gaps = Vec::new();
        let mut at = start;
        for s in &skip {
            if s.since > at {
                gaps.push((at, s.since));
            }
            t.push(Some(s.since.max(at)), s.until.min(until), Status::Skipped);
            at = at.max(s.until);
        }
        if at < until {
            gaps.push((at, until));
        }
        let total: i64 = gaps.iter().map(|(a, b)| (*b - *a).num_seconds()).sum();
        for (a, b) in gaps {
            let len = (b - a).num_seconds();
            // Rounded to the nearest: about n slices in all.
            let share = ((2 * n as i64 * len + total) / (2 * total).max(1)).clamp(1, len.max(1));
            let step = len / share;
            for k in 0..share {
                let from = a + TimeDelta::seconds(k * step);
                let to = if k + 1 == share {
                    b
                } else {
                    a + TimeDelta::seconds((k + 1) * step)
                };
                t.push(Some(from), to, Status::Waiting);
            }
        }
        t.slices.sort_by_key(|s| s.since);
        if let Some(last) = t.slices.last_mut() {
            last.open = true;
        }
        t
    }

    fn push(&mut self, since: Option<DateTime<Utc>>, until: DateTime<Utc>, status: Status) {
        self.slices.push(Slice {
            since,
            until,
            open: false,
            status,
            opened_at: None,
            first: None,
            seen: None,
            pages: 0,
            ascending: true,
            more: false,
        });
    }

    /// The range of slice `id` (`None` at the top: open).
    pub(super) fn range(&self, id: SliceId) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (self.slices[id].since, self.end(id))
    }

    /// The current end of slice `id` (a split may have moved it down; `None`: open).
    pub(super) fn end(&self, id: SliceId) -> Option<DateTime<Utc>> {
        let s = &self.slices[id];
        (!s.open).then_some(s.until)
    }

    /// The earliest waiting slice, now marked as being read (from `now`).
    pub(super) fn start_next(&mut self, now: DateTime<Utc>) -> Option<SliceId> {
        let (id, _) = self
            .slices
            .iter()
            .enumerate()
            .filter(|(_, s)| s.status == Status::Waiting)
            .min_by_key(|(_, s)| s.since)?;
        let s = &mut self.slices[id];
        s.status = Status::Reading;
        s.opened_at = Some(now);
        Some(id)
    }

    /// What slice `id` has taken so far (reported after judging each chunk, before anything
    /// of it is written, so a split never lands below a row already taken): the first and
    /// the greatest `updatedAt`, and whether in order.
    pub(super) fn seen(
        &mut self,
        id: SliceId,
        (first, seen): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
        ascending: bool,
    ) {
        let s = &mut self.slices[id];
        s.first = first;
        s.seen = seen;
        s.ascending = ascending;
    }

    /// Slice `id` read a whole page (`pages` so far), naming a next one or not.
    pub(super) fn page(&mut self, id: SliceId, pages: u64, more: bool) {
        let s = &mut self.slices[id];
        s.pages = pages;
        s.more = more;
    }

    /// [`Table::seen`] and [`Table::page`] at once.
    #[cfg(test)]
    fn progress(
        &mut self,
        id: SliceId,
        read: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
        pages: u64,
        ascending: bool,
        more: bool,
    ) {
        self.seen(id, read, ascending);
        self.page(id, pages, more);
    }

    /// Slice `id`'s read ended: read to its end, or stopped with what is durable in order.
    pub(super) fn finish(&mut self, id: SliceId, stopped: bool, durable: Option<DateTime<Utc>>) {
        let s = &mut self.slices[id];
        s.status = if stopped {
            Status::Stopped {
                // Rows past its end were written too (never dropped), but what lies between
                // its end and them is the next slice's: it vouches for no more than its end.
                durable: durable.filter(|_| s.ascending).map(|d| d.min(s.until)),
            }
        } else {
            Status::Done
        };
    }

    /// Splits the reading slice with the most work left to give `idle` free slots work;
    /// returns whether it did (the new slices wait).
    pub(super) fn split(&mut self, idle: usize) -> bool {
        let Some((id, per_page)) = self.busiest() else {
            return false;
        };
        let s = &self.slices[id];
        let Some(seen) = s.seen else { return false };
        // Rows stamped `seen` stay with the slice: the first new boundary is after it.
        let from = seen.trunc_subsecs(0) + TimeDelta::seconds(1);
        let left = (s.until - from).num_seconds();
        if left < 2 {
            return false;
        }
        let per_page = per_page.num_seconds().max(1);
        let piece = (left / (idle as i64 + 1))
            .clamp(per_page, per_page.saturating_mul(PAGES_PER_PIECE as i64))
            .max(1);
        let (until, open) = (s.until, s.open);
        let mut at = from + TimeDelta::seconds(piece);
        if at >= until {
            return false;
        }
        self.slices[id].until = at;
        self.slices[id].open = false;
        for k in 0..idle {
            let to = if k + 1 == idle {
                until
            } else {
                (at + TimeDelta::seconds(piece)).min(until)
            };
            self.push(Some(at), to, Status::Waiting);
            at = to;
            if at >= until {
                break;
            }
        }
        if let Some(last) = self.slices.last_mut() {
            last.open = open; // the top piece inherits the open end
        }
        true
    }

    /// The reading slice with the most pages left at the density it has seen (it has read a
    /// full page with more to come, in order), with the time one page of it spans.
    fn busiest(&self) -> Option<(SliceId, TimeDelta)> {
        self.slices
            .iter()
            .enumerate()
            .filter(|(_, s)| s.status == Status::Reading && s.pages >= 1 && s.ascending && s.more)
            .filter_map(|(i, s)| {
                let seen = s.seen?;
                // From the first row read, not the slice's start: rows may begin long after it.
                let from = s.first?;
                let per_page = ((seen - from) / s.pages.min(i32::MAX as u64) as i32)
                    .max(TimeDelta::seconds(1));
                let left = (s.until - seen).num_seconds() / per_page.num_seconds().max(1);
                Some((i, per_page, left))
            })
            .max_by_key(|(_, _, left)| *left)
            .map(|(i, per_page, _)| (i, per_page))
    }

    /// The lowest `updatedAt` a slice may still read: the start of a waiting slice, how far
    /// a reading one got in order (else its start). `Some(None)`: a slice without a lower
    /// bound is unfinished; `None`: every slice has ended.
    pub(super) fn low(&self) -> Option<Option<DateTime<Utc>>> {
        self.slices
            .iter()
            .filter_map(|s| match s.status {
                Status::Waiting => Some(s.since),
                Status::Reading if s.ascending => Some(s.seen.or(s.since)),
                Status::Reading => Some(s.since),
                _ => None,
            })
            .min()
    }

    /// What the run may checkpoint, from what its slices completed:
    /// * `complete`: every slice was read (or skipped);
    /// * `watermark`: the end of the slices complete without a gap from the window start —
    ///   or, past them, how far the first incomplete slice got in order (`None`: not past
    ///   the start);
    /// * `done`: the slices complete beyond a gap, cut to where no row within `buffer` of
    ///   their reading can still arrive, for the next run to skip.
    pub(super) fn outcome(&self, buffer: TimeDelta) -> Outcome {
        let mut sorted: Vec<&Slice> = self.slices.iter().collect();
        sorted.sort_by_key(|s| s.since);
        let mut watermark = None;
        let mut i = 0;
        while let Some(s) = sorted.get(i) {
            if !matches!(s.status, Status::Done | Status::Skipped) {
                break;
            }
            watermark = Some(s.until);
            i += 1;
        }
        let complete = i == sorted.len();
        if let Some(Status::Stopped { durable: Some(d) }) = sorted.get(i).map(|s| s.status) {
            watermark = watermark.max(Some(d));
        }
        let mut done: Vec<crate::window::Span> = Vec::new();
        for s in sorted.iter().skip(i + 1) {
            let (Some(since), cut) = (
                s.since,
                match s.status {
                    Status::Done => s.opened_at.map(|o| o - buffer),
                    Status::Skipped => Some(s.until),
                    _ => None,
                },
            ) else {
                continue;
            };
            let Some(until) = cut.map(|c| c.min(s.until).trunc_subsecs(0)) else {
                continue;
            };
            if since >= until {
                continue;
            }
            match done.last_mut() {
                Some(last) if last.until == since => last.until = until,
                _ => done.push(crate::window::Span { since, until }),
            }
        }
        Outcome {
            complete,
            watermark,
            done: if complete { Vec::new() } else { done },
        }
    }

    /// The ends of the slices an earlier run completed (the cursor may move to them).
    pub(super) fn skipped_max(&self) -> Option<DateTime<Utc>> {
        self.slices
            .iter()
            .filter(|s| s.status == Status::Skipped)
            .map(|s| s.until)
            .max()
    }
}

/// See [`Table::outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    pub(super) complete: bool,
    pub(super) watermark: Option<DateTime<Utc>>,
    pub(super) done: Vec<crate::window::Span>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Span;

    fn t(s: &str) -> DateTime<Utc> {
        crate::window::parse_ts(s).unwrap()
    }

    fn ranges(table: &Table) -> Vec<(Option<DateTime<Utc>>, DateTime<Utc>, Status)> {
        let mut v: Vec<_> = table
            .slices
            .iter()
            .map(|s| (s.since, s.until, s.status))
            .collect();
        v.sort_by_key(|r| r.0);
        v
    }

    /// The slices tile the window: no gap, no overlap.
    fn assert_tiles(table: &Table, since: DateTime<Utc>, until: DateTime<Utc>) {
        let r = ranges(table);
        assert_eq!(r[0].0, Some(since));
        for w in r.windows(2) {
            assert_eq!(Some(w[0].1), w[1].0, "{r:?}");
        }
        assert_eq!(r.last().unwrap().1, until);
    }

    #[test]
    fn a_window_is_cut_in_equal_whole_second_slices_around_what_was_done() {
        let (a, b) = (t("2024-01-01T00:00:00Z"), t("2024-01-31T00:00:00Z"));
        let table = Table::new(Some(a), b, &[], 4);
        assert_eq!(table.slices.len(), 4);
        assert_tiles(&table, a, b);
        assert_eq!(ranges(&table)[1].0, Some(t("2024-01-08T12:00:00Z")));

        let done = [Span {
            since: t("2024-01-10T00:00:00Z"),
            until: t("2024-01-20T00:00:00Z"),
        }];
        let table = Table::new(Some(a), b, &done, 4);
        assert_tiles(&table, a, b);
        let r = ranges(&table);
        assert!(
            r.iter().any(|s| s.0 == Some(done[0].since)
                && s.1 == done[0].until
                && s.2 == Status::Skipped)
        );
        assert_eq!(
            r.iter().filter(|s| s.2 == Status::Waiting).count(),
            4,
            "{r:?}"
        );
        // A window of one second is one slice; a full sync starts as one.
        assert_eq!(
            Table::new(Some(a), a + TimeDelta::seconds(1), &[], 8)
                .slices
                .len(),
            1
        );
        assert_eq!(Table::new(None, b, &[], 8).slices.len(), 1);
        // A window that starts after the run did: one open slice from its start.
        let future = Table::new(Some(b), a, &[], 8);
        assert_eq!(future.slices.len(), 1);
        assert_eq!(future.range(0), (Some(b), None));
    }

    #[test]
    fn a_dense_slice_is_split_near_where_it_reads_and_the_rest_handed_out() {
        let (a, b) = (t("2024-01-01T00:00:00Z"), t("2024-01-31T00:00:00Z"));
        let mut table = Table::new(Some(a), b, &[], 1);
        let id = table.start_next(a).unwrap();
        assert!(!table.split(3), "nothing read yet: nothing known");
        // One page covered one minute of the slice.
        table.progress(
            id,
            (Some(a), Some(a + TimeDelta::minutes(1))),
            1,
            true,
            false,
        );
        assert!(!table.split(3), "the last page: nothing left to share");
        table.progress(
            id,
            (Some(a), Some(a + TimeDelta::minutes(1))),
            1,
            true,
            true,
        );
        assert!(table.split(3));
        assert_tiles(&table, a, b);
        let r = ranges(&table);
        assert_eq!(r.len(), 4);
        // Pieces of at most 8 pages at the density seen (8 minutes), the last one the rest.
        assert_eq!(table.end(id), Some(a + TimeDelta::seconds(61 + 480)));
        let top: Vec<_> = table.slices.iter().filter(|s| s.open).collect();
        assert_eq!(
            (top.len(), top[0].until),
            (1, b),
            "the top piece stays open"
        );
        assert_eq!(r[1].1 - r[1].0.unwrap(), TimeDelta::minutes(8));
        assert_eq!(r[3].1, b);
        // Records out of order: never split (its end cannot be trusted to stop it).
        let mut table = Table::new(Some(a), b, &[], 1);
        let id = table.start_next(a).unwrap();
        table.progress(
            id,
            (Some(a), Some(a + TimeDelta::minutes(1))),
            1,
            false,
            true,
        );
        assert!(!table.split(3));
    }

    #[test]
    fn the_cursor_waits_for_a_gap_and_what_is_done_beyond_it_is_recorded() {
        let (a, b) = (t("2024-01-01T00:00:00Z"), t("2024-01-05T00:00:00Z"));
        let mut table = Table::new(Some(a), b, &[], 4);
        let ids: Vec<_> = (0..4).map(|_| table.start_next(b).unwrap()).collect();
        table.finish(ids[0], false, None);
        table.finish(ids[1], true, Some(t("2024-01-02T06:00:00Z")));
        table.finish(ids[3], false, None);
        let out = table.outcome(TimeDelta::hours(2));
        assert!(!out.complete);
        assert_eq!(
            out.watermark,
            Some(t("2024-01-02T06:00:00Z")),
            "the first slice, and what the stopped one wrote in order"
        );
        assert_eq!(
            out.done,
            [Span {
                since: t("2024-01-04T00:00:00Z"),
                until: t("2024-01-04T22:00:00Z"),
            }],
            "the last slice, less the buffer before it was read"
        );
        table.finish(ids[2], false, None);
        table.finish(ids[1], false, None);
        let out = table.outcome(TimeDelta::hours(2));
        assert!(out.complete);
        assert!(out.done.is_empty());
        assert_eq!(out.watermark, Some(b));
    }
}
