//! How a batch becomes the bytes of an object, and how to tell that two objects say the same:
//! JSON Lines, plain or compressed (`OUTPUT_COMPRESSION`). A [`crate::sink::Sink`] only stores
//! bytes under a key with a content type; it never looks inside them.
//!
//! Compressed objects are stored as what they are — `application/gzip` (`.jsonl.gz`) or
//! `application/zstd` (`.jsonl.zst`) — with no `Content-Encoding`: an HTTP client (a
//! browser, `curl --compressed`, some SDKs) would otherwise decompress them behind the
//! reader's back, and the bytes read would not be the object. Athena, DuckDB and Spark pick
//! the codec from the extension.

use std::io::{Read, Write};

use crate::record::{Record, Rejected};

/// Content type of plain data and rejected objects.
pub const JSONL: &str = "application/x-ndjson";
/// Content type of gzip-compressed JSON Lines (`.jsonl.gz`).
pub const GZIP: &str = "application/gzip";
/// Content type of zstd-compressed JSON Lines (`.jsonl.zst`).
pub const ZSTD: &str = "application/zstd";
/// gzip level: the usual default (what `gzip` and Firehose use).
pub const GZIP_LEVEL: u32 = 6;
/// zstd level: fast, and still smaller than gzip.
pub const ZSTD_LEVEL: i32 = 3;
/// Content type of manifests.
pub const JSON: &str = "application/json";
/// Content type of fingerprint sets.
pub const BINARY: &str = "application/octet-stream";

/// The format of data and rejected objects: JSON Lines (one record per line, UTF-8,
/// `\n`-terminated), plain or compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    #[default]
    Jsonl,
    JsonlGzip,
    JsonlZstd,
}

impl Format {
    /// The format `OUTPUT_COMPRESSION` names (`none`, `gzip`, `zstd`).
    pub fn from_compression(name: &str) -> Option<Format> {
        match name {
            "none" => Some(Format::Jsonl),
            "gzip" => Some(Format::JsonlGzip),
            "zstd" => Some(Format::JsonlZstd),
            _ => None,
        }
    }

    /// The file name extension of its objects (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::JsonlGzip => "jsonl.gz",
            Format::JsonlZstd => "jsonl.zst",
        }
    }

    /// The content type its objects are stored with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => JSONL,
            Format::JsonlGzip => GZIP,
            Format::JsonlZstd => ZSTD,
        }
    }

    /// A data object: each record as sent, plus `_synced_at`.
    pub fn records(self, records: &[Record], synced_at: &str) -> std::io::Result<Vec<u8>> {
        let size = records.iter().map(Record::line_len).sum();
        self.encode(size, records, |r, out| r.write_line(out, synced_at))
    }

    /// A rejected object: each rejected item with its reason, plus `_synced_at`.
    pub fn rejected(self, rejected: &[Rejected], synced_at: &str) -> std::io::Result<Vec<u8>> {
        self.encode(0, rejected, |r, out| r.write_line(out, synced_at))
    }

    /// `items` as lines, straight into the codec (no plain copy of a compressed object is
    /// held beside it). `size`: the plain size, if known.
    /// An error (a codec that fails, which into memory it should not) fails the write, and
    /// so the run: never an object short of its rows.
    fn encode<T>(
        self,
        size: usize,
        items: &[T],
        line: impl Fn(&T, &mut Vec<u8>),
    ) -> std::io::Result<Vec<u8>> {
        fn through(
            mut w: impl Write,
            items: usize,
            mut line: impl FnMut(usize, &mut Vec<u8>),
        ) -> std::io::Result<()> {
            let mut buf = Vec::new();
            for i in 0..items {
                buf.clear();
                line(i, &mut buf);
                w.write_all(&buf)?;
            }
            Ok(())
        }
        match self {
            Format::Jsonl => {
                let mut out = Vec::with_capacity(size);
                for item in items {
                    line(item, &mut out);
                }
                Ok(out)
            }
            Format::JsonlGzip => {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(size / 4),
                    flate2::Compression::new(GZIP_LEVEL),
                );
                through(&mut e, items.len(), |i, buf| line(&items[i], buf))?;
                e.finish()
            }
            Format::JsonlZstd => {
                let mut e =
                    zstd::stream::write::Encoder::new(Vec::with_capacity(size / 4), ZSTD_LEVEL)?;
                through(&mut e, items.len(), |i, buf| line(&items[i], buf))?;
                e.finish()
            }
        }
    }
}

/// The JSON Lines an object of `content_type` holds (`None`: it cannot be decompressed).
pub fn lines_of(content_type: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match content_type {
        GZIP => flate2::read::MultiGzDecoder::new(body)
            .read_to_end(&mut out)
            .ok()?,
        ZSTD => zstd::stream::read::Decoder::new(body)
            .ok()?
            .read_to_end(&mut out)
            .ok()?,
        _ => return Some(body.to_vec()),
    };
    Some(out)
}

/// Whether an object holding `existing` already says what `body` says: the same bytes; for
/// JSON Lines (compressed or not: compared decompressed), the same lines but for each line's `_synced_at` (the stamp of the attempt
/// that wrote it); for a JSON manifest, the same but for what describes the attempt rather
/// than what it wrote: its `synced_at`, the window's `until` (the planning attempt's clock),
/// and the `pages` and `bytes_fetched` it took (slices split at other moments read other
/// pages).
pub fn same_content(content_type: &str, existing: &[u8], body: &[u8]) -> bool {
    if existing == body {
        return true;
    }
    match content_type {
        GZIP | ZSTD => match (
            lines_of(content_type, existing),
            lines_of(content_type, body),
        ) {
            (Some(a), Some(b)) => same_content(JSONL, &a, &b),
            _ => false,
        },
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
