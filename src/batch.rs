//! Groups valid records into bounded batches, one line per `id` per batch.
//!
//! A batch closes when adding the next *new* id would exceed `max_records` or `max_bytes`.
//! Within a batch, a second version of an id replaces the first in place when its
//! `updatedAt` is greater or equal (equal: the later-served copy wins), and is dropped
//! otherwise; both cases are counted as `deduplicated`. Across batches ids may repeat:
//! consumers take the line with the greatest `updatedAt` per id.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::config::BatchLimits;
use crate::record::Record;

#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    records: Vec<Record>,
    /// Position of each id in `records`, by the id's hash (ids are compared on a hit).
    index: HashMap<u64, usize, foldhash::fast::RandomState>,
    bytes: usize,
    deduplicated: u64,
    /// Bytes of records fetched since the batch started (or since its records were last
    /// detached), written or not.
    fetched: usize,
}

/// See [`Batcher::fetched`].
const RETAIN_FACTOR: usize = 2;

impl Batcher {
    pub fn new(limits: BatchLimits) -> Self {
        Batcher {
            limits,
            records: Vec::new(),
            index: HashMap::default(),
            bytes: 0,
            deduplicated: 0,
            fetched: 0,
        }
    }

    /// Adds a record. Returns the previous batch when this record did not fit into it.
    pub fn push(&mut self, record: Record) -> Option<Vec<Record>> {
        let next = self.records.len();
        match self.index.entry(record.id_hash) {
            Entry::Occupied(slot) => {
                let i = *slot.get();
                let current = &mut self.records[i];
                // Two ids with one 64-bit hash (never seen in practice): they must not be
                // merged, so the batch closes and the record starts the next one.
                if current.id() != record.id() {
                    let flushed = self.take();
                    self.bytes = record.line_len();
                    self.index.insert(record.id_hash, 0);
                    self.records.push(record);
                    return flushed;
                }
                self.deduplicated += 1;
                if record.updated_at >= current.updated_at {
                    self.bytes = self.bytes - current.line_len() + record.line_len();
                    *current = record;
                }
                None
            }
            Entry::Vacant(slot) => {
                let full = next > 0
                    && (next >= self.limits.max_records
                        || self.bytes + record.line_len() > self.limits.max_bytes);
                if !full {
                    slot.insert(next);
                    self.bytes += record.line_len();
                    self.records.push(record);
                    return None;
                }
                let flushed = self.take();
                self.bytes = record.line_len();
                self.index.insert(record.id_hash, 0);
                self.records.push(record);
                flushed
            }
        }
    }

    /// Counts `bytes` of fetched records, written or not. A record keeps the network chunk it
    /// arrived in alive: when a batch holds a few records of many chunks (most of the window
    /// already written, say), the chunks can far outweigh the batch. Once more than
    /// `2 × max_bytes` went by since the batch started (or since the last time), its records
    /// get copies of their own, so what a batch holds stays within a few times `max_bytes`.
    pub fn fetched(&mut self, bytes: usize) {
        self.fetched += bytes;
        if self.fetched > RETAIN_FACTOR.saturating_mul(self.limits.max_bytes) {
            self.fetched = 0;
            self.records.iter_mut().for_each(Record::detach);
        }
    }

    /// Closes the current batch, if it holds anything.
    pub fn take(&mut self) -> Option<Vec<Record>> {
        self.fetched = 0;
        if self.records.is_empty() {
            return None;
        }
        self.index.clear();
        self.bytes = 0;
        // The next batch is likely as large: no regrowing (and copying) it record by record.
        let capacity = self.records.len();
        Some(std::mem::replace(
            &mut self.records,
            Vec::with_capacity(capacity),
        ))
    }

    /// Records dropped because a newer (or equal) version of their id was in the same batch.
    pub fn deduplicated(&self) -> u64 {
        self.deduplicated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Entry;
    use crate::source::page::parse_page;

    fn recs(items: &[(&str, &str)]) -> Vec<Record> {
        let body = serde_json::json!({
            "data": items.iter().map(|(id, t)| serde_json::json!({"id": id, "updatedAt": t})).collect::<Vec<_>>()
        });
        parse_page(body.to_string().as_bytes(), "data", None)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| match e {
                Entry::Valid(r) => r,
                Entry::Rejected(r) => panic!("{r:?}"),
            })
            .collect()
    }

    #[test]
    fn ids_sharing_a_hash_are_never_merged() {
        let mut rs = recs(&[("a", "2024-01-15T10:00:00Z"), ("b", "2024-01-15T10:00:00Z")]);
        rs[1].id_hash = rs[0].id_hash; // a collision, forced
        let mut b = Batcher::new(BatchLimits::default());
        let mut it = rs.into_iter();
        assert!(b.push(it.next().unwrap()).is_none());
        let first = b.push(it.next().unwrap()).expect("the batch closes");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].id(), "\"a\"");
        let second = b.take().unwrap();
        assert_eq!(second[0].id(), "\"b\"", "b is kept, in the next batch");
        assert_eq!(b.deduplicated(), 0);
    }

    #[test]
    fn newest_version_per_id_wins_within_a_batch() {
        let mut b = Batcher::new(BatchLimits::default());
        for r in recs(&[
            ("a", "2024-01-15T10:00:00Z"),
            ("b", "2024-01-15T10:00:00Z"),
            ("a", "2024-01-15T11:00:00Z"),
            ("a", "2024-01-15T09:00:00Z"),
        ]) {
            assert!(b.push(r).is_none());
        }
        let batch = b.take().unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].id(), "\"a\"");
        assert_eq!(
            crate::window::format_ts(batch[0].updated_at),
            "2024-01-15T11:00:00Z"
        );
        assert_eq!(b.deduplicated(), 2);
        assert!(b.take().is_none());
    }

    /// Records are ranges of the network chunk they arrived in; a batch that holds few
    /// records while many chunks go by copies them, so it stops keeping those chunks alive.
    #[test]
    fn sparse_batches_stop_holding_network_chunks() {
        let body = serde_json::json!({
            "data": (0..50).map(|i| serde_json::json!({"id": i, "updatedAt": "2024-01-15T10:00:00Z", "pad": "x".repeat(100)})).collect::<Vec<_>>()
        })
        .to_string();
        let chunk = bytes::Bytes::from(body);
        let mut scanner = crate::source::page::PageScanner::new("data", None);
        let mut raw = Vec::new();
        scanner.feed_raw(&chunk, &mut raw).unwrap();
        let in_chunk = |r: &Record| chunk.as_ptr_range().contains(&r.json().as_ptr());
        let records: Vec<Record> = raw
            .iter()
            .map(
                |e| match e.parse(&crate::fields::Fields::default()).unwrap() {
                    Entry::Valid(r) => r,
                    Entry::Rejected(r) => panic!("{r:?}"),
                },
            )
            .collect();
        assert!(records.iter().all(in_chunk), "no copy on the way in");
        let line = records[0].json_len();
        let mut b = Batcher::new(BatchLimits {
            max_records: 100,
            max_bytes: line * 10,
        });
        let mut records = records.into_iter();
        for r in records.by_ref().take(3) {
            b.fetched(r.json_len());
            assert!(b.push(r).is_none());
        }
        // Dense so far: the records still point into the chunk.
        let kept = b.take().unwrap();
        assert!(kept.iter().all(in_chunk));
        // One record written out of many fetched: it gets its own copy.
        let r = records.next().unwrap();
        b.fetched(r.json_len());
        assert!(b.push(r).is_none());
        b.fetched(line * 25);
        let sparse = b.take().unwrap();
        assert_eq!(sparse.len(), 1);
        assert!(!in_chunk(&sparse[0]), "the sparse batch copied its record");
        assert!(sparse[0].json().starts_with("{\"id\":3,"));
    }

    #[test]
    fn batches_are_bounded_by_records() {
        let mut b = Batcher::new(BatchLimits {
            max_records: 2,
            max_bytes: usize::MAX,
        });
        let mut batches = Vec::new();
        for r in recs(&[
            ("a", "2024-01-15T10:00:00Z"),
            ("b", "2024-01-15T10:00:00Z"),
            ("c", "2024-01-15T10:00:00Z"),
            ("d", "2024-01-15T10:00:00Z"),
            ("e", "2024-01-15T10:00:00Z"),
        ]) {
            batches.extend(b.push(r));
        }
        batches.extend(b.take());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[test]
    fn batches_are_bounded_by_bytes() {
        let rs = recs(&[
            ("a", "2024-01-15T10:00:00Z"),
            ("b", "2024-01-15T10:00:00Z"),
            ("c", "2024-01-15T10:00:00Z"),
        ]);
        let one = rs[0].line_len();
        let mut b = Batcher::new(BatchLimits {
            max_records: 100,
            max_bytes: one * 2,
        });
        let mut batches = Vec::new();
        for r in rs {
            batches.extend(b.push(r));
        }
        batches.extend(b.take());
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        for batch in &batches {
            assert!(
                crate::format::Format::Jsonl
                    .records(batch, "2024-01-16T00:00:00.000Z")
                    .unwrap()
                    .len()
                    <= one * 2
            );
        }
    }

    #[test]
    fn an_oversized_record_still_gets_a_batch_of_its_own() {
        let mut b = Batcher::new(BatchLimits {
            max_records: 100,
            max_bytes: 1,
        });
        let mut batches = Vec::new();
        for r in recs(&[("a", "2024-01-15T10:00:00Z"), ("b", "2024-01-15T10:00:00Z")]) {
            batches.extend(b.push(r));
        }
        batches.extend(b.take());
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
    }
}
