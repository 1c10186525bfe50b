//! Fuzzes the response parser (`PageScanner`, which `parse_page` also uses):
//! * it never panics, whatever the bytes;
//! * the result does not depend on how the body is split into chunks;
//! * whatever it accepts is valid JSON (serde_json agrees);
//! * a plain `{"data": [...]}` body that serde_json accepts, it accepts too;
//! * the one-pass record check (`json::scan_record`) vouches only for what serde_json
//!   accepts, and the entry it leads to is the one the serde_json path gives;
//! * no output line (a record's or a rejection's) ever holds a key twice;
//! * the same with records keyed and stamped at nested paths in epoch milliseconds
//!   (`ID_FIELD=meta.id`, `CURSOR_FIELD=meta.ts`, `CURSOR_FORMAT=epoch_ms`), whose lines
//!   also carry `_record_id` and `_cursor`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replay_sync::source::page::PageScanner;
use replay_sync::json;
use replay_sync::fields::Fields;
use replay_sync::record::{self, Entry};

fn scan(data: &[u8], chunk: usize) -> Result<(Vec<Entry>, Option<String>), String> {
    let mut s = PageScanner::new("data", Some("next"));
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        s.feed(c, &mut out)?;
    }
    s.finish().map(|t| (out, t.next))
}

/// Nested paths, epoch milliseconds.
fn nested() -> Fields {
    Fields::from_lookup(&|k: &str| match k {
        "ID_FIELD" => Some("meta.id".into()),
        "CURSOR_FIELD" => Some("meta.ts".into()),
        "CURSOR_FORMAT" => Some("epoch_ms".into()),
        _ => None,
    })
    .expect("valid fields")
}

/// The input as one record: the fast path and the serde_json path agree.
fn record_paths_agree(data: &[u8], fields: &Fields) {
    // What the one-pass scan vouches for at the start of any bytes is UTF-8 and valid JSON.
    if let Some(s) = json::scan_object_with(data, fields) {
        let text = std::str::from_utf8(&data[..s.end]).expect("vouched for bad UTF-8");
        serde_json::from_str::<serde::de::IgnoredAny>(text).expect("vouched for invalid JSON");
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if json::scan_record_with(text, fields).is_some() {
        let slow =
            record::parse_record_slow_with(text, false, fields).expect("vouched for invalid JSON");
        let fast = record::parse_record_with(text, false, fields).expect("fast path failed");
        assert_eq!(fast, slow, "the fast path changed the entry");
    }
    // Whatever is accepted or rejected, its output line never holds a key twice.
    if let Ok(entry) = record::parse_record_with(text, true, fields) {
        let mut line = Vec::new();
        match &entry {
            Entry::Valid(r) => r.write_line(&mut line, "2024-01-01T00:00:00.000Z"),
            Entry::Rejected(r) => r.write_line(&mut line, "2024-01-01T00:00:00.000Z"),
        }
        let line = std::str::from_utf8(&line).expect("a line is UTF-8");
        assert_eq!(record::duplicate_key(line.trim_end()), None, "{line}");
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else { return };
    record_paths_agree(data, &Fields::default());
    record_paths_agree(data, &nested());
    let whole = scan(data, usize::MAX);
    let chunked = scan(data, split as usize % 17 + 1);
    assert_eq!(whole, chunked, "chunking changed the result");
    // Grammar-level validity: `Value` would also refuse numbers beyond f64 (valid JSON,
    // which the parser rightly keeps verbatim).
    let serde_ok = serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok();
    if whole.is_ok() {
        assert!(serde_ok, "accepted a body that is not valid JSON");
    }
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(data)
        && o.len() == 1
        && o.get("data").is_some_and(|d| d.is_array())
        && std::str::from_utf8(data).is_ok_and(|t| t.matches("\"data\"").count() == 1)
    {
        assert!(whole.is_ok(), "refused a valid page: {whole:?}");
    }
});
