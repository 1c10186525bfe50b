//! Groups valid records into bounded batches, one line per `id` per batch.
//!
//! A batch closes when adding the next *new* id would exceed `max_records` or `max_bytes`.
//! Within a batch, a second version of an id replaces the first in place when its
//! `updatedAt` is greater or equal (equal: the later-served copy wins), and is dropped
//! otherwise; both cases are counted as `deduplicated`. Across batches ids may repeat:
//! consumers take the line with the greatest `updatedAt` per id.

use std::collections::HashMap;

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
}

impl Batcher {
    pub fn new(limits: BatchLimits) -> Self {
        Batcher {
            limits,
            records: Vec::new(),
            index: HashMap::default(),
            bytes: 0,
            deduplicated: 0,
        }
    }

    /// Adds a record. Returns the previous batch when this record did not fit into it.
    pub fn push(&mut self, record: Record) -> Option<Vec<Record>> {
        let found = self.index.get(&record.id_hash).copied();
        // Two ids with one 64-bit hash (never seen in practice): they must not be merged, so
        // the batch closes and the record starts the next one.
        if let Some(i) = found
            && self.records[i].id() != record.id()
        {
            let flushed = self.take();
            self.bytes = record.line_len();
            self.index.insert(record.id_hash, 0);
            self.records.push(record);
            return flushed;
        }
        if let Some(i) = found {
            self.deduplicated += 1;
            let current = &mut self.records[i];
            if record.updated_at >= current.updated_at {
                self.bytes = self.bytes - current.line_len() + record.line_len();
                *current = record;
            }
            return None;
        }
        let full = !self.records.is_empty()
            && (self.records.len() >= self.limits.max_records
                || self.bytes + record.line_len() > self.limits.max_bytes);
        let flushed = if full { self.take() } else { None };
        self.bytes += record.line_len();
        self.index.insert(record.id_hash, self.records.len());
        self.records.push(record);
        flushed
    }

    /// Closes the current batch, if it holds anything.
    pub fn take(&mut self) -> Option<Vec<Record>> {
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

/// Encodes a batch as JSON Lines, each line carrying `_synced_at`.
pub fn encode(records: &[Record], synced_at: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(Record::line_len).sum());
    for r in records {
        r.write_line(&mut out, synced_at);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Entry, parse_page};

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
            assert!(encode(batch, "2024-01-16T00:00:00.000Z").len() <= one * 2);
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
