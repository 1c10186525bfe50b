//! How a batch becomes the bytes of an object, and how to tell that two objects say the same:
//! JSON Lines today (compression will go here). A [`crate::sink::Sink`] only stores bytes under
//! a key with a content type; it never looks inside them.

use crate::record::{Record, Rejected};

/// Content type of data and rejected objects.
pub const JSONL: &str = "application/x-ndjson";
/// Content type of manifests.
pub const JSON: &str = "application/json";
/// Content type of fingerprint sets.
pub const BINARY: &str = "application/octet-stream";

/// The format of data and rejected objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// JSON Lines: one record per line, UTF-8, `\n`-terminated.
    #[default]
    Jsonl,
}

impl Format {
    /// The file name extension of its objects (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
        }
    }

    /// The content type its objects are stored with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => JSONL,
        }
    }

    /// A data object: each record as sent, plus `_synced_at`.
    pub fn records(self, records: &[Record], synced_at: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(records.iter().map(Record::line_len).sum());
        for r in records {
            r.write_line(&mut out, synced_at);
        }
        out
    }

    /// A rejected object: each rejected item with its reason, plus `_synced_at`.
    pub fn rejected(self, rejected: &[Rejected], synced_at: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for r in rejected {
            r.write_line(&mut out, synced_at);
        }
        out
    }
}

/// Whether an object holding `existing` already says what `body` says: the same bytes; for
/// JSON Lines, the same lines but for each line's `_synced_at` (the stamp of the attempt
/// that wrote it); for a JSON manifest, the same but for what describes the attempt rather
/// than what it wrote: its `synced_at`, the window's `until` (the planning attempt's clock),
/// and the `pages` and `bytes_fetched` it took (slices split at other moments read other
/// pages).
pub fn same_content(content_type: &str, existing: &[u8], body: &[u8]) -> bool {
    if existing == body {
        return true;
    }
    match content_type {
        JSONL => {
            let (mut a, mut b) = (existing.split(|&c| c == b'\n'), body.split(|&c| c == b'\n'));
            loop {
                match (a.next(), b.next()) {
                    (None, None) => return true,
                    (Some(x), Some(y)) if without_synced_at(x) == without_synced_at(y) => {}
                    _ => return false,
                }
            }
        }
        JSON => {
            let parse = |b: &[u8]| {
                serde_json::from_slice::<serde_json::Value>(b)
                    .ok()
                    .map(|mut v| {
                        if let Some(o) = v.as_object_mut() {
                            for attempt in ["synced_at", "pages", "bytes_fetched"] {
                                o.remove(attempt);
                            }
                            if let Some(w) = o.get_mut("window").and_then(|w| w.as_object_mut()) {
                                w.remove("until");
                            }
                        }
                        v
                    })
            };
            matches!((parse(existing), parse(body)), (Some(x), Some(y)) if x == y)
        }
        _ => false,
    }
}

/// A line without its closing `,"_synced_at":"…"}` (as every data and rejected line ends).
fn without_synced_at(line: &[u8]) -> &[u8] {
    const FIELD: &[u8] = b",\"_synced_at\":\"";
    let Some(body) = line.strip_suffix(b"\"}") else {
        return line;
    };
    match memchr::memmem::rfind(body, FIELD) {
        Some(at) if !body[at + FIELD.len()..].contains(&b'"') => &line[..at],
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_records_stamped_at_another_time_are_the_same_content() {
        let a = b"{\"id\":1,\"_synced_at\":\"2024-01-01T00:00:00.000Z\"}\n{\"id\":2,\"_synced_at\":\"2024-01-01T00:00:00.000Z\"}\n";
        let b = b"{\"id\":1,\"_synced_at\":\"2025-06-01T00:00:00.000Z\"}\n{\"id\":2,\"_synced_at\":\"2025-06-01T00:00:00.000Z\"}\n";
        assert!(same_content(JSONL, a, b));
        let c = b"{\"id\":1,\"_synced_at\":\"2025-06-01T00:00:00.000Z\"}\n{\"id\":3,\"_synced_at\":\"2025-06-01T00:00:00.000Z\"}\n";
        assert!(!same_content(JSONL, a, c), "another record");
        let d = b"{\"id\":1,\"_synced_at\":\"2025-06-01T00:00:00.000Z\"}\n";
        assert!(!same_content(JSONL, a, d), "fewer records");
        assert!(
            !same_content(BINARY, a, b),
            "only JSON Lines ignore the stamp"
        );
        let m1 = br#"{"run_id":"r","window":{"since":null,"until":"2024-01-01T00:00:00Z"},"objects":[],"synced_at":"x"}"#;
        let m2 = br#"{"run_id":"r","window":{"since":null,"until":"2024-02-01T00:00:00Z"},"objects":[],"synced_at":"y"}"#;
        let m3 = br#"{"run_id":"r","window":{"since":null,"until":"2024-02-01T00:00:00Z"},"objects":[1],"synced_at":"y"}"#;
        assert!(same_content(JSON, m1, m2));
        assert!(!same_content(JSON, m1, m3));
    }
}
