//! What earlier runs wrote inside the window the next run re-reads, so that the overlap
//! costs a hash instead of a write, stale replicas are caught, and late rows are measured.
//!
//! Per id (hashed), the set keeps the newest version written: its `updatedAt` and a hash of
//! its JSON text. A fetched record is then
//! * **unchanged** — same id, same `updatedAt`, same bytes: already in the lake, not written;
//! * **stale** — older than the version already written for its id (a replica serving an
//!   old copy): not written, counted;
//! * **written** otherwise — a new id, a newer version, or a second change within the same
//!   timestamp (different bytes). It is **late** when it is stamped before the previous
//!   cursor and the set proves it was not written before: it reached the replica after the
//!   previous run, and the buffer is what caught it.
//!
//! The set *covers* `[from, ∞)`: every version written with `updatedAt >= from` is in it (or
//! superseded by a newer one). Outside the coverage nothing is skipped and nothing is called
//! late. After a run the set keeps only what the next run will re-read (`updatedAt >= new
//! cursor − buffer`) and at most `max` entries (the newest; coverage shrinks accordingly).
//! It is written as an object before the checkpoint, which records its key: it is durable
//! exactly when the writes it describes are.
//!
//! Hashes are XXH3 (64-bit for the id, 128-bit for the content): a changed row is taken for
//! unchanged only on a 128-bit collision.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, TimeDelta, Utc};

use crate::record::Record;

/// The newest version written for one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fp {
    updated_ms: i64,
    content: u128,
}

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprints {
    /// Coverage start in milliseconds (`None`: covers nothing; `i64::MIN`: everything).
    from: Option<i64>,
    map: HashMap<u64, Fp, foldhash::fast::RandomState>,
    /// During a run: entries older than this were dropped to bound memory (not stored).
    dropped_below: Option<i64>,
    /// During a run: the size at which [`Fingerprints::bound`] prunes next (not stored).
    next_bound: usize,
}

/// What to do with a fetched record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it. `late`: how far before the previous cursor it is stamped, when it is known
    /// not to have been written before.
    Write {
        late: Option<TimeDelta>,
    },
    Unchanged,
    Stale,
}

const MAGIC: &[u8; 8] = b"RSFP\x01\0\0\0";
/// [`Fingerprints::bound`] leaves sets this small alone.
const MIN_BOUND: usize = 1 << 14;
const ENTRY: usize = 32;

impl Fingerprints {
    /// Nothing known, nothing covered: every record is written.
    pub fn empty() -> Self {
        Fingerprints::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The start of the coverage (`None`: nothing is covered).
    pub fn covers_from(&self) -> Option<DateTime<Utc>> {
        self.from
            .map(|ms| DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC))
    }

    /// Classifies `r` and, when it is to be written, remembers it. `skip: false` writes every
    /// record (a manual replay) while still remembering it; `previous_cursor: None` turns the
    /// lateness accounting off.
    pub fn check(
        &mut self,
        r: &Record,
        previous_cursor: Option<DateTime<Utc>>,
        skip: bool,
    ) -> Verdict {
        let id = r.id_hash;
        let content = r.content_hash;
        let t = r.updated_at.timestamp_millis();
        let fp = Fp {
            updated_ms: t,
            content,
        };
        // One lookup: the entry is read, and replaced when the record is to be written.
        let known = match self.map.entry(id) {
            Entry::Occupied(mut seen) => {
                let older = t < seen.get().updated_ms;
                let same = t == seen.get().updated_ms && content == seen.get().content;
                if older || same {
                    // A replay writes it all the same; the newest version stays remembered.
                    return match (skip, older) {
                        (false, _) => Verdict::Write { late: None },
                        (true, true) => Verdict::Stale,
                        (true, false) => Verdict::Unchanged,
                    };
                }
                seen.insert(fp);
                true
            }
            Entry::Vacant(slot) => {
                slot.insert(fp);
                self.from.is_some_and(|from| t >= from)
            }
        };
        let late = previous_cursor
            .filter(|c| skip && known && r.updated_at < *c)
            .map(|c| c - r.updated_at);
        Verdict::Write { late }
    }

    /// Bounds memory during a run. `floor` is a lower bound on what the next run's window
    /// start will be (the run's cursor so far, minus the buffer): entries older than it are
    /// dropped once the set has doubled, and beyond `max` the oldest go (cheap to call often).
    /// Dropping only ever costs a write the next run could have skipped.
    pub fn bound(&mut self, floor: Option<DateTime<Utc>>, max: usize) {
        self.bound_sliced(floor, (None, None), max);
    }

    /// [`Fingerprints::bound`] for a run read in slices, out of `updatedAt` order: besides
    /// what lies at or above `floor`, the entries within `band` (`[low, high]`: the part of
    /// the overlap the slices have still to read, where the loaded entries are) are kept.
    /// Coverage shrinks to `floor` as with `bound`: rows below it are then neither skipped
    /// nor called late by the next run, only written again. (An empty band: `bound`.)
    pub fn bound_sliced(
        &mut self,
        floor: Option<DateTime<Utc>>,
        band: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
        max: usize,
    ) {
        if self.map.len() <= self.next_bound.max(MIN_BOUND) {
            return;
        }
        if let Some(floor) = floor {
            let f = floor.timestamp_millis();
            let (low, high) = match band {
                (low, Some(high)) => (
                    low.map_or(i64::MIN, |t| t.timestamp_millis()),
                    high.timestamp_millis(),
                ),
                (_, None) => (i64::MAX, i64::MIN), // empty
            };
            self.map.retain(|_, fp| {
                fp.updated_ms >= f || (fp.updated_ms >= low && fp.updated_ms <= high)
            });
            self.dropped_below = Some(self.dropped_below.map_or(f, |d| d.max(f)));
        }
        if self.map.len() > max {
            let cut = self.cut(max);
            self.dropped_below = Some(self.dropped_below.map_or(cut + 1, |d| d.max(cut + 1)));
        }
        self.next_bound = self
            .map
            .len()
            .saturating_mul(2)
            .min(max.saturating_add(max / 4));
    }

    /// The newest `updatedAt` in the set.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.map
            .values()
            .map(|fp| fp.updated_ms)
            .max()
            .and_then(DateTime::from_timestamp_millis)
    }

    /// Keeps the newest `max` entries (strictly newer than the first that does not fit, so
    /// that a timestamp is either wholly in or wholly out); returns that first timestamp.
    fn cut(&mut self, max: usize) -> i64 {
        let mut times: Vec<i64> = self.map.values().map(|fp| fp.updated_ms).collect();
        let (_, cut, _) = times.select_nth_unstable_by(max, |a, b| b.cmp(a));
        let cut = *cut;
        self.map.retain(|_, fp| fp.updated_ms > cut);
        cut
    }

    /// After a run: the coverage becomes `covered` (what this run and the previous set
    /// together prove, see [`Fingerprints::after_run`]), then entries older than `keep_from`
    /// are dropped, then the oldest beyond `max`.
    fn prune(&mut self, covered: Option<i64>, keep_from: Option<i64>, max: usize) {
        let covered = match (covered, self.dropped_below.take()) {
            (Some(c), Some(d)) => Some(c.max(d)),
            (c, _) => c,
        };
        let mut from = match (covered, keep_from) {
            (Some(c), Some(k)) => Some(c.max(k)),
            (c, None) => c,
            (None, Some(_)) => None,
        };
        if let Some(k) = keep_from {
            self.map.retain(|_, fp| fp.updated_ms >= k);
        }
        if self.map.len() > max {
            let cut = self.cut(max);
            from = Some(from.map_or(cut + 1, |f| f.max(cut + 1)));
        }
        if self.map.is_empty() && from.is_none() {
            self.from = None;
        } else {
            self.from = from;
        }
    }

    /// The set to hand to the next run.
    ///
    /// * `previous_from`: the coverage of the set this run started with;
    /// * `since`: this run's window start (`None`: a full sync);
    /// * `completed`: whether every record since `since` was fetched (not a partial run);
    /// * `keep_from`: the next run's window start (`new cursor − buffer`);
    /// * `max`: the size bound.
    pub fn after_run(
        &mut self,
        previous_from: Option<DateTime<Utc>>,
        since: Option<DateTime<Utc>>,
        completed: bool,
        keep_from: Option<DateTime<Utc>>,
        max: usize,
    ) {
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        let prev = previous_from.map(ms);
        // A completed run fetched every version since `since`, so it covers that much too.
        let fetched = completed.then(|| since.map_or(i64::MIN, ms));
        let covered = match (prev, fetched) {
            (Some(p), Some(f)) => Some(p.min(f)),
            (p, f) => p.or(f),
        };
        self.prune(covered, keep_from.map(ms), max);
    }

    /// Adds what `other` remembers of rows another writer (a backfill's part) put in the
    /// lake: per id the newer version. The coverage becomes the narrower of the two — none
    /// if either covers nothing — since each vouches only for what it saw written.
    pub fn absorb(&mut self, other: Fingerprints) {
        for (id, fp) in other.map {
            match self.map.entry(id) {
                Entry::Occupied(mut seen) => {
                    if fp.updated_ms > seen.get().updated_ms {
                        seen.insert(fp);
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(fp);
                }
            }
        }
        self.from = match (self.from, other.from) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }

    /// The stored form: magic, coverage, count, then `(id hash, updatedAt ms, content hash)`
    /// sorted by id hash (so that a retried run writes the same bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut entries: Vec<(&u64, &Fp)> = self.map.iter().collect();
        entries.sort_unstable_by_key(|(id, _)| **id);
        let mut out = Vec::with_capacity(24 + entries.len() * ENTRY);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.from.unwrap_or(i64::MAX).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (id, fp) in entries {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&fp.updated_ms.to_le_bytes());
            out.extend_from_slice(&fp.content.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let word = |at: usize| -> [u8; 8] { bytes[at..at + 8].try_into().unwrap_or([0; 8]) };
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err("not a fingerprint set (bad header)".into());
        }
        let from = i64::from_le_bytes(word(8));
        let n = u64::from_le_bytes(word(16)) as usize;
        if bytes.len() != 24 + n.saturating_mul(ENTRY) {
            return Err(format!(
                "a fingerprint set of {n} entries cannot be {} bytes long",
                bytes.len()
            ));
        }
        let mut map = HashMap::with_capacity_and_hasher(n, Default::default());
        for e in bytes[24..].chunks_exact(ENTRY) {
            let id = u64::from_le_bytes(e[..8].try_into().unwrap_or([0; 8]));
            let updated_ms = i64::from_le_bytes(e[8..16].try_into().unwrap_or([0; 8]));
            let content = u128::from_le_bytes(e[16..].try_into().unwrap_or([0; 16]));
            map.insert(
                id,
                Fp {
                    updated_ms,
                    content,
                },
            );
        }
        Ok(Fingerprints {
            from: (from != i64::MAX).then_some(from),
            map,
            ..Fingerprints::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Entry, parse_record};

    fn rec(id: &str, t: &str, extra: &str) -> Record {
        let text = format!(r#"{{"id":"{id}","updatedAt":"{t}","x":"{extra}"}}"#);
        match parse_record(&text, false).unwrap() {
            Entry::Valid(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn ts(s: &str) -> DateTime<Utc> {
        crate::window::parse_ts(s).unwrap()
    }

    #[test]
    fn absorbing_a_part_keeps_the_newer_version_and_the_narrower_coverage() {
        let mut runs = Fingerprints::empty();
        runs.after_run(None, Some(ts("2024-01-01T00:00:00Z")), true, None, 10);
        assert_eq!(
            runs.check(&rec("a", "2024-01-02T00:00:00Z", "old"), None, true),
            Verdict::Write { late: None }
        );
        let mut part = Fingerprints::empty();
        for (id, t) in [("a", "2024-01-03T00:00:00Z"), ("b", "2024-01-02T00:00:00Z")] {
            let _ = part.check(&rec(id, t, "new"), None, false);
        }
        part.after_run(None, Some(ts("2024-01-01T12:00:00Z")), true, None, 10);
        runs.absorb(part);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs.covers_from(), Some(ts("2024-01-01T12:00:00Z")));
        // The part's newer version of a, and b, are known: not written again.
        assert_eq!(
            runs.check(&rec("a", "2024-01-03T00:00:00Z", "new"), None, true),
            Verdict::Unchanged
        );
        assert_eq!(
            runs.check(&rec("b", "2024-01-02T00:00:00Z", "new"), None, true),
            Verdict::Unchanged
        );
        // A part that covers nothing leaves a set that covers nothing (no false lateness).
        runs.absorb(Fingerprints::empty());
        assert_eq!(runs.covers_from(), None);
    }

    #[test]
    fn unchanged_stale_changed_and_late() {
        let cursor = Some(ts("2024-01-15T10:00:00Z"));
        let mut fps = Fingerprints::empty();
        // Nothing known: written, never late.
        let v = fps.check(&rec("a", "2024-01-15T09:00:00Z", "1"), cursor, true);
        assert_eq!(v, Verdict::Write { late: None });
        // The same bytes again: unchanged.
        let v = fps.check(&rec("a", "2024-01-15T09:00:00Z", "1"), cursor, true);
        assert_eq!(v, Verdict::Unchanged);
        // Same timestamp, other bytes: a second change within the same second is written,
        // and it is late (stamped before the cursor, not written before).
        let v = fps.check(&rec("a", "2024-01-15T09:00:00Z", "2"), cursor, true);
        assert_eq!(
            v,
            Verdict::Write {
                late: Some(TimeDelta::hours(1))
            }
        );
        // An older version than the one written: stale.
        let v = fps.check(&rec("a", "2024-01-15T08:00:00Z", "0"), cursor, true);
        assert_eq!(v, Verdict::Stale);
        // A replay (no skipping) writes it all the same.
        let v = fps.check(&rec("a", "2024-01-15T08:00:00Z", "0"), cursor, false);
        assert_eq!(v, Verdict::Write { late: None });
        let v = fps.check(&rec("a", "2024-01-15T09:00:00Z", "2"), cursor, false);
        assert_eq!(v, Verdict::Write { late: None });
    }

    #[test]
    fn lateness_needs_coverage() {
        let cursor = Some(ts("2024-01-15T10:00:00Z"));
        let mut fps = Fingerprints::empty();
        fps.after_run(
            None,
            Some(ts("2024-01-15T08:00:00Z")),
            true,
            Some(ts("2024-01-15T08:30:00Z")),
            100,
        );
        assert_eq!(fps.covers_from(), Some(ts("2024-01-15T08:30:00Z")));
        // Inside the coverage, unknown: late.
        let v = fps.check(&rec("b", "2024-01-15T09:00:00Z", "1"), cursor, true);
        assert_eq!(
            v,
            Verdict::Write {
                late: Some(TimeDelta::hours(1))
            }
        );
        // Before the coverage: written, lateness unknown.
        let v = fps.check(&rec("c", "2024-01-15T08:00:00Z", "1"), cursor, true);
        assert_eq!(v, Verdict::Write { late: None });
        // After the cursor: new, not late.
        let v = fps.check(&rec("d", "2024-01-15T10:00:00Z", "1"), cursor, true);
        assert_eq!(v, Verdict::Write { late: None });
    }

    #[test]
    fn pruning_keeps_the_window_and_the_bound() {
        let mut fps = Fingerprints::empty();
        for i in 0..10 {
            let t = format!("2024-01-15T10:0{i}:00Z");
            fps.check(&rec(&format!("r{i}"), &t, "x"), None, true);
        }
        let mut bounded = fps.clone();
        fps.after_run(None, None, true, Some(ts("2024-01-15T10:05:00Z")), 100);
        assert_eq!(fps.len(), 5, "10:05 … 10:09 are re-read by the next run");
        assert_eq!(fps.covers_from(), Some(ts("2024-01-15T10:05:00Z")));

        bounded.after_run(None, None, true, Some(ts("2024-01-15T10:00:00Z")), 3);
        assert_eq!(bounded.len(), 3, "the newest three");
        assert_eq!(
            bounded.covers_from(),
            Some(ts("2024-01-15T10:06:00Z") + TimeDelta::milliseconds(1))
        );

        // A partial run without a previous set proves nothing about what it did not fetch.
        let mut partial = Fingerprints::empty();
        partial.check(&rec("p", "2024-01-15T10:00:00Z", "x"), None, true);
        partial.after_run(None, None, false, Some(ts("2024-01-15T09:00:00Z")), 100);
        assert_eq!(partial.covers_from(), None);
        assert_eq!(partial.len(), 1, "but it remembers what it wrote");
    }

    #[test]
    fn memory_is_bounded_during_a_run() {
        let t0 = ts("2024-01-15T00:00:00Z");
        let mut fps = Fingerprints::empty();
        let n = 300_000;
        for i in 0..n {
            let t = replay_sync_ts(t0 + TimeDelta::seconds(i));
            fps.check(&rec(&format!("r{i}"), &t, "x"), None, true);
            if i % 1000 == 0 {
                // The cursor so far, minus a one-hour buffer.
                let floor = t0 + TimeDelta::seconds(i) - TimeDelta::hours(1);
                fps.bound(Some(floor), 500_000);
                assert!(fps.len() <= 2 * MIN_BOUND + 1000, "{i}: {}", fps.len());
            }
        }
        // The coverage does not claim what was dropped.
        let end = t0 + TimeDelta::seconds(n - 1);
        fps.after_run(None, None, true, Some(end - TimeDelta::hours(1)), 500_000);
        assert_eq!(fps.len(), 3601);
        assert_eq!(fps.covers_from(), Some(end - TimeDelta::hours(1)));

        // Beyond `max`, the newest stay and the coverage shrinks to them.
        let mut capped = Fingerprints::empty();
        for i in 0..200_000 {
            let t = replay_sync_ts(t0 + TimeDelta::seconds(i));
            capped.check(&rec(&format!("r{i}"), &t, "x"), None, true);
            capped.bound(None, 100_000);
        }
        assert!(capped.len() <= 125_000);
        capped.after_run(None, None, true, None, 100_000);
        assert!(capped.len() <= 100_000);
        let from = capped.covers_from().unwrap();
        assert!(from > t0 + TimeDelta::seconds(99_999), "{from}");
        assert!(from <= t0 + TimeDelta::seconds(100_000), "{from}");
    }

    fn replay_sync_ts(t: DateTime<Utc>) -> String {
        crate::window::format_ts(t)
    }

    #[test]
    fn encoding_round_trips_and_is_deterministic() {
        let mut fps = Fingerprints::empty();
        for i in 0..50 {
            fps.check(
                &rec(&format!("r{i}"), "2024-01-15T10:00:00Z", &i.to_string()),
                None,
                true,
            );
        }
        fps.after_run(None, Some(ts("2024-01-15T09:00:00Z")), true, None, 1000);
        let bytes = fps.encode();
        assert_eq!(bytes.len(), 24 + 50 * 32);
        let back = Fingerprints::decode(&bytes).unwrap();
        assert_eq!(back, fps);
        assert_eq!(
            back.encode(),
            bytes,
            "sorted: the same set gives the same bytes"
        );
        assert_eq!(
            Fingerprints::decode(&Fingerprints::empty().encode()).unwrap(),
            Fingerprints::empty()
        );
        assert!(Fingerprints::decode(b"nonsense").is_err());
        assert!(Fingerprints::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_sliced_bound_keeps_the_overlap_still_to_be_read() {
        let mut fps = Fingerprints::empty();
        let base = ts("2024-01-01T00:00:00Z");
        // 20,000 rows, one a minute: beyond what bounds leave alone.
        for i in 0..20_000i64 {
            let t = crate::window::format_ts(base + TimeDelta::minutes(i));
            let _ = fps.check(&rec(&format!("r{i}"), &t, ""), None, true);
        }
        assert_eq!(fps.newest(), Some(base + TimeDelta::minutes(19_999)));
        let floor = base + TimeDelta::minutes(19_000);
        let band = (
            Some(base + TimeDelta::minutes(100)),
            Some(base + TimeDelta::minutes(199)),
        );
        fps.bound_sliced(Some(floor), band, 500_000);
        assert_eq!(fps.len(), 1_000 + 100, "above the floor, and the band");
        // The band's entries still skip their rows.
        let t = crate::window::format_ts(base + TimeDelta::minutes(150));
        assert_eq!(
            fps.check(&rec("r150", &t, ""), None, true),
            Verdict::Unchanged
        );
        let t = crate::window::format_ts(base + TimeDelta::minutes(50));
        assert_eq!(
            fps.check(&rec("r50", &t, ""), None, true),
            Verdict::Write { late: None },
            "below the floor, outside the band: forgotten (written again)"
        );
    }
}
