//! An incremental parser for one response page: `{"data": [ … ], "next": "…", …}`.
//!
//! Bytes are fed as they arrive ([`PageScanner::feed`]); each element of the records array is
//! handed out as soon as its closing byte is seen, so neither a whole page nor the whole
//! result is ever held in memory — only the element being read. The top level is checked by
//! this state machine; every value it captures (records, the next-page field, other fields)
//! is checked by `serde_json`, so a body is accepted only if it is valid JSON.

use std::sync::Arc;

use serde::de::IgnoredAny;

use crate::fields::Fields;

use crate::json;
use crate::record::{self, Entry};

/// A parsed response page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParsedPage {
    pub entries: Vec<Entry>,
    /// The next page's URL from the body's next-page field (absent or null: none).
    pub next: Option<String>,
}

/// Parses a whole response body (see [`PageScanner`], which does the work
/// incrementally): a JSON object whose `records_field` is an array of records and whose
/// optional `next_field` is a URL string or null.
pub fn parse_page(
    body: &[u8],
    records_field: &str,
    next_field: Option<&str>,
) -> Result<ParsedPage, String> {
    let mut scanner = PageScanner::new(records_field, next_field);
    let mut entries = Vec::new();
    scanner.feed(body, &mut entries)?;
    let tail = scanner.finish()?;
    Ok(ParsedPage {
        entries,
        next: tail.next,
    })
}

/// Parses a page body fed in chunks of any size.
#[derive(Debug)]
pub struct PageScanner {
    records_field: String,
    /// `records_field` as keys from the top (empty for `.`: the body is the array).
    records_path: Vec<String>,
    /// How deep along `records_path` the scanner is (0: the body's own object).
    depth: usize,
    next_field: Option<String>,
    state: State,
    /// Bytes of the key or value being captured.
    buf: Vec<u8>,
    /// What the value being captured is.
    target: Target,
    value: ValueScan,
    seen_records: bool,
    next: Option<String>,
    /// Where records keep their key and time (`ID_FIELD`, `CURSOR_FIELD`, `CURSOR_FORMAT`).
    fields: Arc<Fields>,
    /// Top-level fields whose values the paging reads (counts, flags, tokens).
    watch: Vec<String>,
    /// Their values, as the page gave them.
    found: Vec<(String, serde_json::Value)>,
    /// Bytes consumed so far (for messages).
    offset: usize,
    /// Where the element being read started in the current chunk (`None`: in an earlier
    /// chunk, its first bytes are in `buf`).
    elem_start: Option<usize>,
    /// `MAX_RECORD_BYTES`: an element (or another top-level value) beyond this is not held.
    max_value: usize,
    /// The size of the value being read, once it passed `max_value` (`buf` then keeps only
    /// its first [`OVERSIZED_HEAD`] bytes).
    oversized: Option<usize>,
}

/// What is kept of an oversized record: enough to find its `id` in the usual case.
pub const OVERSIZED_HEAD: usize = 64 * 1024;

/// One element of the records array, as its bytes, not yet parsed: a range of the network
/// chunk it arrived in (no copy) unless it spanned chunks.
#[derive(Debug, Clone)]
pub struct RawElement {
    bytes: bytes::Bytes,
    /// A raw line break between tokens was seen (the record must be compacted).
    multiline: bool,
    /// Already validated by [`json::scan_object`], which found these values.
    scanned: Option<ScannedKeys>,
    /// The element was larger than `MAX_RECORD_BYTES`: `bytes` is only its head, and this
    /// its whole size.
    oversized: Option<(usize, usize)>,
}

/// Where a validated element's `id` and `updatedAt` values are.
#[derive(Debug, Clone)]
struct ScannedKeys {
    id: Option<std::ops::Range<usize>>,
    updated_at: Option<std::ops::Range<usize>>,
}

impl RawElement {
    /// The element's bytes as the body gave them (only the head of an oversized one).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Validates the element: `Err` says the body is not valid JSON or UTF-8; a valid
    /// element that cannot be synced is an [`Entry::Rejected`].
    /// `fields` must be those of the scanner that found the element.
    pub fn parse(&self, fields: &Fields) -> Result<Entry, String> {
        if let Some((size, max)) = self.oversized {
            return Ok(record::oversized(&self.bytes, size, max, fields));
        }
        match &self.scanned {
            Some(k) => {
                record::parse_scanned(&self.bytes, k.id.clone(), k.updated_at.clone(), fields)
            }
            None => record::parse_element(&self.bytes, self.multiline, fields),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level `{`.
    Start,
    /// After `{` (`first`) or after `,` at the top level.
    KeyOrEnd {
        first: bool,
    },
    /// Inside a top-level key string.
    Key {
        escaped: bool,
    },
    Colon,
    /// Before a top-level value.
    Value,
    /// Capturing a top-level value (not the records array).
    Capture,
    /// Inside the records array, before an element (`first`: right after `[`).
    ElemOrEnd {
        first: bool,
    },
    /// Capturing an element.
    Elem,
    /// After an element.
    ElemCommaOrEnd,
    /// After a top-level value.
    AfterValue,
    /// After the top-level `}`.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Records,
    /// An object on the way to the records (`API_RECORDS_FIELD=result.items`).
    Descend,
    Next,
    /// A watched field (see [`PageScanner::with_watch`]).
    Watch,
    Skip,
}

/// Finds the end of one JSON value, tracking strings and nesting. String bodies — most of
/// a record — are skipped with `memchr`, not byte by byte.
#[derive(Debug, Default, Clone, Copy)]
struct ValueScan {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A number or literal: ends at the first delimiter, which is not part of it.
    scalar: bool,
    started: bool,
    /// A raw line break between tokens (never inside a string, in valid JSON).
    multiline: bool,
}

/// How a value scan step ended.
enum Scan {
    /// The value ends at this index (inclusive).
    End(usize),
    /// The value ended just before this index (a scalar met its delimiter).
    EndBefore(usize),
    /// The chunk ran out first.
    More,
}

impl ValueScan {
    fn step(&mut self, data: &[u8]) -> Scan {
        let mut i = 0;
        if !self.started && !data.is_empty() {
            self.started = true;
            match data[0] {
                b'{' | b'[' => self.depth = 1,
                b'"' => self.in_string = true,
                _ => self.scalar = true,
            }
            i = 1;
        }
        while i < data.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                let Some(k) = string_end(&data[i..]) else {
                    return Scan::More;
                };
                let j = i + k;
                if data[j] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                    if self.depth == 0 {
                        return Scan::End(j);
                    }
                }
                i = j + 1;
            } else if self.scalar {
                if matches!(data[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    return Scan::EndBefore(i);
                }
                i += 1;
            } else {
                match data[i] {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            return Scan::End(i);
                        }
                    }
                    b'\n' | b'\r' => self.multiline = true,
                    _ => {}
                }
                i += 1;
            }
        }
        Scan::More
    }
}

/// The first `"` or `\\` in `data`, eight bytes at a time (most strings in records are
/// short: a word-at-a-time scan beats setting up a vector search for each).
#[inline]
fn string_end(data: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    for (n, word) in words.enumerate() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let (q, b) = (w ^ QUOTES, w ^ BACKSLASHES);
        // A byte of `q` or `b` is zero where `w` has a quote or a backslash; the lowest flag
        // set by this test is always exact.
        let found = (q.wrapping_sub(ONES) & !q | b.wrapping_sub(ONES) & !b) & HIGHS;
        if found != 0 {
            return Some(n * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let base = data.len() - tail.len();
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|k| base + k)
}

/// The page's fields other than the records, known once the page is complete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PageTail {
    /// The next page's URL from the next-page field (absent, null or empty: none).
    pub next: Option<String>,
    /// The watched top-level fields the page had, with their values.
    pub fields: Vec<(String, serde_json::Value)>,
}

impl PageTail {
    /// The value at `path` (dotted: `meta.next_cursor`), if the page had it.
    pub fn get(&self, path: &str) -> Option<&serde_json::Value> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut v: &serde_json::Value = &self.fields.iter().find(|(k, _)| k == first)?.1;
        for p in parts {
            v = v.get(p)?;
        }
        Some(v)
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl PageScanner {
    pub fn new(records_field: &str, next_field: Option<&str>) -> Self {
        PageScanner {
            records_field: records_field.to_string(),
            records_path: if records_field == "." {
                Vec::new()
            } else {
                records_field.split('.').map(str::to_string).collect()
            },
            depth: 0,
            next_field: next_field.map(str::to_string),
            state: State::Start,
            buf: Vec::new(),
            target: Target::Skip,
            value: ValueScan::default(),
            seen_records: false,
            next: None,
            fields: Fields::shared_default(),
            watch: Vec::new(),
            found: Vec::new(),
            offset: 0,
            elem_start: None,
            max_value: usize::MAX,
            oversized: None,
        }
    }

    /// Reads records' key and time at `fields` (default: `id`, `updatedAt`, RFC 3339).
    pub fn with_fields(mut self, fields: Arc<Fields>) -> Self {
        self.fields = fields;
        self
    }

    /// Keeps the values of these top-level fields (the first part of each dotted path) for
    /// [`PageTail::fields`]: what paging and the completeness check read.
    pub fn with_watch<'a>(mut self, paths: impl IntoIterator<Item = &'a str>) -> Self {
        for p in paths {
            let first = p.split('.').next().unwrap_or(p).to_string();
            if !self.watch.contains(&first) {
                self.watch.push(first);
            }
        }
        self
    }

    /// Caps what is held of one record (or other top-level value) at `max` bytes
    /// (`MAX_RECORD_BYTES`): a larger record becomes an [`Entry::Rejected`] that keeps its
    /// id and size, a larger other field is skipped unchecked.
    pub fn with_max_value(mut self, max: usize) -> Self {
        self.max_value = max.max(1);
        self
    }

    /// Appends the next bytes of the value being captured, keeping at most `max_value`
    /// (past it, only the first [`OVERSIZED_HEAD`] bytes and the size).
    fn hold(&mut self, bytes: &[u8]) {
        match &mut self.oversized {
            Some(size) => *size += bytes.len(),
            None if self.buf.len() + bytes.len() > self.max_value => {
                let size = self.buf.len() + bytes.len();
                let keep = OVERSIZED_HEAD.min(self.max_value);
                if self.buf.len() < keep {
                    let more = (keep - self.buf.len()).min(bytes.len());
                    self.buf.extend_from_slice(&bytes[..more]);
                }
                self.buf.truncate(keep);
                self.oversized = Some(size);
            }
            None => self.buf.extend_from_slice(bytes),
        }
    }

    /// The element that ended in `chunk` at `end` (exclusive), from `elem_start` in this
    /// chunk or from the bytes held.
    fn element(&mut self, chunk: &bytes::Bytes, from: usize, end: usize) -> RawElement {
        let multiline = self.value.multiline;
        let (bytes, oversized) = match self.elem_start.take() {
            Some(start) if end - start > self.max_value => {
                let keep = OVERSIZED_HEAD.min(self.max_value);
                (chunk.slice(start..start + keep), Some(end - start))
            }
            Some(start) => (chunk.slice(start..end), None),
            None => {
                self.hold(&chunk[from..end]);
                let held = bytes::Bytes::from(std::mem::take(&mut self.buf));
                (held, self.oversized.take())
            }
        };
        RawElement {
            bytes,
            multiline,
            scanned: None,
            oversized: oversized.map(|size| (size, self.max_value)),
        }
    }

    /// Feeds the next bytes of the body; completed records are parsed and appended to
    /// `out`. An error says what is wrong with the body (never quoting a record).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Entry>) -> Result<(), String> {
        let mut raw = Vec::new();
        let fed = self.feed_raw(&bytes::Bytes::copy_from_slice(chunk), &mut raw);
        // The elements completed before a structural error come first in the body: their
        // errors win, whatever the chunking.
        for r in &raw {
            out.push(r.parse(&self.fields)?);
        }
        fed
    }

    /// Like [`PageScanner::feed`], but hands out the completed elements unparsed (parse them
    /// with [`RawElement::parse`], in order, possibly elsewhere): the page's structure is
    /// checked here, each record's validity there. On an error, `out` holds the elements
    /// completed before it: parse them first, so that errors are reported in body order.
    pub fn feed_raw(
        &mut self,
        chunk: &bytes::Bytes,
        out: &mut Vec<RawElement>,
    ) -> Result<(), String> {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            match self.state {
                State::Elem => {
                    // Exclusive end of the element in this chunk.
                    let end = match self.value.step(&chunk[i..]) {
                        Scan::More => {
                            let from = self.elem_start.take().unwrap_or(i);
                            self.hold(&chunk[from..]);
                            i = chunk.len();
                            continue;
                        }
                        Scan::End(j) => i + j + 1,
                        Scan::EndBefore(j) => i + j,
                    };
                    let element = self.element(chunk, i, end);
                    out.push(element);
                    self.state = State::ElemCommaOrEnd;
                    i = end;
                    continue;
                }
                State::Capture => {
                    match self.value.step(&chunk[i..]) {
                        Scan::More => {
                            self.hold(&chunk[i..]);
                            i = chunk.len();
                        }
                        Scan::End(j) => {
                            self.hold(&chunk[i..=i + j]);
                            i += j + 1;
                            self.value_done()?;
                        }
                        Scan::EndBefore(j) => {
                            self.hold(&chunk[i..i + j]);
                            i += j;
                            self.value_done()?;
                        }
                    }
                    continue;
                }
                State::Key { escaped } => {
                    self.buf.push(b);
                    self.state = match (escaped, b) {
                        (true, _) => State::Key { escaped: false },
                        (false, b'\\') => State::Key { escaped: true },
                        (false, b'"') => {
                            self.key_done()?;
                            State::Colon
                        }
                        _ => State::Key { escaped: false },
                    };
                }
                _ if is_ws(b) => {}
                State::Start
                | State::KeyOrEnd { .. }
                | State::Colon
                | State::AfterValue
                | State::Done => self.top_level(b, i)?,
                State::Value => {
                    if !self.value_starts(b)? {
                        continue; // the value scanner sees this byte
                    }
                }
                State::ElemOrEnd { first } => match b {
                    b']' if first => self.array_done(),
                    b']' | b',' | b'}' | b':' => return Err(self.unexpected(b, i)),
                    _ => {
                        // The common case: a valid record wholly in this chunk, found and
                        // validated in one pass. Anything else (cut by the chunk's end,
                        // unusual, invalid) takes the general path below.
                        if b == b'{'
                            && let Some(found) = json::scan_object_with(&chunk[i..], &self.fields)
                            && found.end <= self.max_value
                        {
                            let end = i + found.end;
                            out.push(RawElement {
                                bytes: chunk.slice(i..end),
                                multiline: false,
                                scanned: Some(ScannedKeys {
                                    id: found.id,
                                    updated_at: found.updated_at,
                                }),
                                oversized: None,
                            });
                            self.state = State::ElemCommaOrEnd;
                            i = end;
                            continue;
                        }
                        self.start_value(State::Elem);
                        self.elem_start = Some(i);
                        continue;
                    }
                },
                State::ElemCommaOrEnd => match b {
                    b',' => self.state = State::ElemOrEnd { first: false },
                    b']' => self.array_done(),
                    _ => return Err(self.unexpected(b, i)),
                },
            }
            i += 1;
        }
        self.offset += chunk.len();
        Ok(())
    }

    /// One byte of the page's own structure outside the records array and the values (the
    /// braces, the colons and commas between its fields): the next state, or why the body
    /// is not what it must be. Not the hot path: a page has a handful of these.
    fn top_level(&mut self, b: u8, i: usize) -> Result<(), String> {
        match self.state {
            State::Start => match b {
                b'[' if self.records_path.is_empty() => {
                    self.target = Target::Records;
                    self.state = State::ElemOrEnd { first: true };
                }
                b'{' if !self.records_path.is_empty() => {
                    self.state = State::KeyOrEnd { first: true }
                }
                b'{' => {
                    return Err(
                        "the body is a JSON object, not the array of records (API_RECORDS_FIELD=.)"
                            .into(),
                    );
                }
                b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                    return Err(format!(
                        "the body is not a JSON object (it starts with {:?})",
                        b as char
                    ));
                }
                _ => return Err(self.unexpected(b, i)),
            },
            State::KeyOrEnd { first } => match b {
                b'"' => {
                    self.buf.clear();
                    self.buf.push(b);
                    self.state = State::Key { escaped: false };
                }
                b'}' if first => self.close_object(),
                _ => return Err(self.unexpected(b, i)),
            },
            State::Colon => match b {
                b':' => self.state = State::Value,
                _ => return Err(self.unexpected(b, i)),
            },
            State::AfterValue => match b {
                b',' => self.state = State::KeyOrEnd { first: false },
                b'}' => self.close_object(),
                _ => return Err(self.unexpected(b, i)),
            },
            State::Done => {
                return Err(format!(
                    "the body is not valid JSON (data after the end, at byte {})",
                    self.offset + i
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The first byte `b` of a top-level value (or one on the way to the records): the
    /// records array opens, an object on the way is entered, or any other value is captured
    /// — then `false`: the value scanner must see `b` too.
    fn value_starts(&mut self, b: u8) -> Result<bool, String> {
        match self.target {
            Target::Descend => {
                if b != b'{' {
                    return Err(format!(
                        "`{}` is not an object on the way to `{}` (API_RECORDS_FIELD)",
                        self.records_path[..=self.depth].join("."),
                        self.records_field
                    ));
                }
                self.depth += 1;
                self.state = State::KeyOrEnd { first: true };
            }
            Target::Records => {
                if b != b'[' {
                    return Err(format!(
                        "`{}` is not an array (API_RECORDS_FIELD must name the array of records)",
                        self.records_field
                    ));
                }
                self.state = State::ElemOrEnd { first: true };
            }
            _ => {
                self.start_value(State::Capture);
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Ends the page: checks that the body was complete and had the records array.
    pub fn finish(self) -> Result<PageTail, String> {
        match self.state {
            State::Done => {}
            State::Start if self.offset == 0 => return Err("the body is empty".into()),
            // A scalar value at the very end has no delimiter after it; but a complete
            // body always ends with `}`, so any other state is a cut-off body.
            _ => {
                return Err(format!(
                    "the body is truncated (JSON ended early, after {} bytes)",
                    self.offset
                ));
            }
        }
        if !self.seen_records {
            return Err(format!(
                "the response has no `{}` field (API_RECORDS_FIELD)",
                self.records_field
            ));
        }
        Ok(PageTail {
            next: self.next,
            fields: self.found,
        })
    }

    fn unexpected(&self, b: u8, i: usize) -> String {
        format!(
            "the body is not valid JSON (unexpected {:?} at byte {})",
            b as char,
            self.offset + i
        )
    }

    fn start_value(&mut self, state: State) {
        self.buf.clear();
        self.oversized = None;
        self.value = ValueScan::default();
        self.state = state;
    }

    fn key_done(&mut self) -> Result<(), String> {
        let raw = &self.buf[1..self.buf.len() - 1];
        // Escapes need decoding, and control characters make the key invalid JSON (found
        // by fuzzing): serde decides both.
        let key: std::borrow::Cow<str> = if raw.iter().any(|&b| b == b'\\' || b < 0x20) {
            serde_json::from_slice::<String>(&self.buf)
                .map_err(|e| format!("the body is not valid JSON (a bad key: {e})"))?
                .into()
        } else {
            String::from_utf8_lossy(raw)
        };
        let on_path = self
            .records_path
            .get(self.depth)
            .is_some_and(|p| *p == *key);
        self.target = if on_path && self.depth + 1 < self.records_path.len() {
            Target::Descend
        } else if on_path {
            if self.seen_records {
                return Err(format!("the body has `{}` twice", self.records_field));
            }
            Target::Records
        } else if self.depth > 0 {
            Target::Skip
        } else if self.next_field.as_deref() == Some(&*key) {
            Target::Next
        } else if self.watch.iter().any(|w| *w == *key) {
            self.found.push((key.into_owned(), serde_json::Value::Null));
            Target::Watch
        } else {
            Target::Skip
        };
        Ok(())
    }

    fn array_done(&mut self) {
        self.seen_records = true;
        // A body that is the array ends with it.
        self.state = if self.records_path.is_empty() {
            State::Done
        } else {
            State::AfterValue
        };
    }

    /// A `}`: the body ends, or an object on the way to the records does.
    fn close_object(&mut self) {
        if self.depth == 0 {
            self.state = State::Done;
        } else {
            self.depth -= 1;
            self.state = State::AfterValue;
        }
    }

    /// A top-level value other than the records array is complete in `buf`.
    fn value_done(&mut self) -> Result<(), String> {
        if let Some(size) = self.oversized.take() {
            if self.target == Target::Next {
                return Err(format!(
                    "the next-page field `{}` is {size} bytes long, more than MAX_RECORD_BYTES ({})",
                    self.next_field.as_deref().unwrap_or_default(),
                    self.max_value
                ));
            }
            // Another field of the page, too large to hold: its structure was followed,
            // its content is not ours to check.
            self.buf.clear();
            self.state = State::AfterValue;
            return Ok(());
        }
        let text = std::str::from_utf8(&self.buf)
            .map_err(|_| "the body is not valid UTF-8".to_string())?;
        match self.target {
            Target::Next => {
                let next: Option<String> = serde_json::from_str(text).map_err(|e| {
                    format!(
                        "the next-page field `{}` must be a URL string or null ({e})",
                        self.next_field.as_deref().unwrap_or_default()
                    )
                })?;
                self.next = next.filter(|s| !s.is_empty());
            }
            Target::Watch => {
                let v: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| format!("the body is not valid JSON ({e})"))?;
                if let Some(last) = self.found.last_mut() {
                    last.1 = v;
                }
            }
            _ => {
                serde_json::from_str::<IgnoredAny>(text)
                    .map_err(|e| format!("the body is not valid JSON ({e})"))?;
            }
        }
        self.state = State::AfterValue;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_chunks(body: &[u8], size: usize) -> Result<(Vec<Entry>, PageTail), String> {
        let mut s = PageScanner::new("data", Some("next"));
        let mut out = Vec::new();
        for c in body.chunks(size.max(1)) {
            s.feed(c, &mut out)?;
        }
        s.finish().map(|t| (out, t))
    }

    const BODY: &str = r#" {"meta": {"a": [1, {"b": "]}\"["}]}, "next": "http://h/p?page=2",
        "data": [ {"id": 1, "updatedAt": "2024-01-15T10:30:00Z", "s": "x}]\\\"{"} ,
                  {"id": "b", "updatedAt": "2024-01-15T11:30:00+01:00"}, 42, "str", null, true,
                  {"updatedAt": "2024-01-15T10:30:00Z"} ], "count": -1.5e3, "flag": false } "#;

    #[test]
    fn an_oversized_record_is_rejected_with_its_id_and_size_whatever_the_chunking() {
        let big = format!(
            r#"{{"id": "big", "updatedAt": "2024-01-15T10:30:00Z", "blob": "{}"}}"#,
            "x".repeat(300)
        );
        let body = format!(
            r#"{{"data": [{{"id": 1, "updatedAt": "2024-01-15T10:30:00Z"}}, {big}, {{"id": 2, "updatedAt": "2024-01-15T10:30:00Z"}}], "meta": "{}"}}"#,
            "m".repeat(500)
        );
        for size in [1, 7, 64, 100, 1000, usize::MAX] {
            let mut s = PageScanner::new("data", Some("next")).with_max_value(100);
            let mut out = Vec::new();
            for c in body.as_bytes().chunks(size.min(body.len())) {
                s.feed(c, &mut out).unwrap();
            }
            s.finish().unwrap();
            assert_eq!(out.len(), 3, "chunks of {size}");
            assert!(matches!(out[0], Entry::Valid(_)) && matches!(out[2], Entry::Valid(_)));
            let Entry::Rejected(r) = &out[1] else {
                panic!("chunks of {size}: {:?}", out[1])
            };
            let mut line = Vec::new();
            r.write_line(&mut line, "t");
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["id"], "big", "chunks of {size}: {v}");
            assert_eq!(
                v["bytes"].as_u64(),
                Some(big.len() as u64),
                "chunks of {size}"
            );
            assert!(v.get("record").is_none(), "the content is not kept");
        }
    }

    #[test]
    fn every_chunking_gives_the_same_result() {
        let whole = scan_in_chunks(BODY.as_bytes(), usize::MAX).unwrap();
        assert_eq!(whole.0.len(), 7);
        assert_eq!(whole.1.next.as_deref(), Some("http://h/p?page=2"));
        let valid = whole
            .0
            .iter()
            .filter(|e| matches!(e, Entry::Valid(_)))
            .count();
        assert_eq!(valid, 2);
        for size in 1..=BODY.len() {
            assert_eq!(
                scan_in_chunks(BODY.as_bytes(), size).unwrap(),
                whole,
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn malformed_bodies_are_errors_in_any_chunking() {
        let cases = [
            ("", "empty"),
            ("   ", "truncated"),
            ("<html>", "not valid JSON"),
            ("[1,2]", "not a JSON object"),
            (
                r#"{"data": [{"id": 1, "updatedAt": "2024-01-15T10:30:00Z"}"#,
                "truncated",
            ),
            (r#"{"data": [{"id": 1, "upd"#, "truncated"),
            (r#"{"data": [] "x": 1}"#, "not valid JSON"),
            // A raw control character in a top-level key (found by fuzzing).
            ("{\"dat\u{0}\": 1, \"data\": []}", "not valid JSON"),
            ("{\"data\": [], \"a\u{1e}b\": 1}", "not valid JSON"),
            // An invalid record before a structural error: the record's error comes first,
            // in any chunking (found by fuzzing).
            ("{\"data\": [d\" T", "in a record"),
            (r#"{"data": [1,]}"#, "not valid JSON"),
            (r#"{"data": [,1]}"#, "not valid JSON"),
            (
                r#"{"data": [{"id": 1,, "updatedAt": "x"}]}"#,
                "not valid JSON",
            ),
            (r#"{"data": [{"id": 1]}]}"#, "not valid JSON"),
            (r#"{"data": []}}"#, "not valid JSON"),
            (r#"{"data": [], "meta": [1,,2]}"#, "not valid JSON"),
            (r#"{"data": [], "meta": tru}"#, "not valid JSON"),
            (r#"{"data": {}}"#, "not an array"),
            (r#"{"data": null}"#, "not an array"),
            (r#"{"items": []}"#, "no `data` field"),
            (r#"{"data": [], "data": []}"#, "twice"),
            (r#"{"data": [], "next": 5}"#, "next-page field"),
            ("{\"data\": [\"\u{0}\"]}", "not valid JSON"),
            (r#"{data: []}"#, "not valid JSON"),
            (r#"{"data":{"id":1}}"#, "not an array"),
            (r#"{"data":[]} trailing"#, "not valid JSON"),
            (r#"{"data":[{"id":1,"#, "truncated"),
            ("<html>oops</html>", "not valid JSON"),
            // Found by fuzzing: a duplicate key before a syntax error.
            (
                r#"{"data": [{"id": "a","id": "atedAt": "2024-01-15T10:30:00Z"}]}"#,
                "not valid JSON",
            ),
        ];
        for (body, want) in cases {
            for size in [1, 2, 3, 7, usize::MAX] {
                let err = scan_in_chunks(body.as_bytes(), size).err();
                let err = err.unwrap_or_else(|| panic!("{body:?} (chunks of {size}) was accepted"));
                assert!(err.contains(want), "{body:?} (chunks of {size}): {err}");
            }
        }
    }

    #[test]
    fn string_end_finds_the_first_quote_or_backslash() {
        for len in 0..40 {
            for at in 0..=len {
                for stop in [b'"', b'\\'] {
                    let mut data = vec![b'a'; len];
                    // Bytes that differ from the targets by one bit, to catch bad masks.
                    for (i, b) in data.iter_mut().enumerate() {
                        *b = [b'a', b'#', b']', 0x22 ^ 0x80, 0xdc][i % 5];
                    }
                    if at < len {
                        data[at] = stop;
                    }
                    let want = data.iter().position(|&b| b == b'"' || b == b'\\');
                    assert_eq!(string_end(&data), want, "len {len} at {at}");
                }
            }
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let body = b"{\"data\": [{\"id\": \"\xff\", \"updatedAt\": \"2024-01-15T10:30:00Z\"}]}";
        assert!(scan_in_chunks(body, 5).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn escaped_key_names_are_decoded() {
        let (out, _) = scan_in_chunks(
            br#"{"d\u0061ta": [{"id": 1, "updatedAt": "2024-01-15T10:30:00Z"}]}"#,
            4,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn records_are_found_at_a_path_or_as_the_body_itself() {
        let rec = r#"{"id": 1, "updatedAt": "2024-01-15T10:30:00Z"}"#;
        let nested = format!(
            r#"{{"meta": {{"total": 1}}, "result": {{"page": 1, "items": [{rec}], "x": [1]}}, "total": 1}}"#
        );
        let top = format!("[{rec}, {rec}]");
        for size in [1, 3, 7, 1000] {
            let mut s = PageScanner::new("result.items", None).with_watch(["total"]);
            let mut out = Vec::new();
            for c in nested.as_bytes().chunks(size) {
                s.feed(c, &mut out).unwrap();
            }
            let tail = s.finish().unwrap();
            assert_eq!(out.len(), 1, "chunks of {size}");
            assert_eq!(tail.get("total"), Some(&serde_json::json!(1)));

            let mut s = PageScanner::new(".", None);
            let mut out = Vec::new();
            for c in top.as_bytes().chunks(size) {
                s.feed(c, &mut out).unwrap();
            }
            s.finish().unwrap();
            assert_eq!(out.len(), 2, "chunks of {size}");
        }
        let err = parse_page(br#"{"result": [1]}"#, "result.items", None).unwrap_err();
        assert!(err.contains("not an object"), "{err}");
        let err = parse_page(br#"{"result": {"other": []}}"#, "result.items", None).unwrap_err();
        assert!(err.contains("no `result.items` field"), "{err}");
        let err = parse_page(format!("{{\"data\": [{rec}]}}").as_bytes(), ".", None).unwrap_err();
        assert!(err.contains("API_RECORDS_FIELD=."), "{err}");
        assert!(parse_page(b"[]", ".", None).unwrap().entries.is_empty());
    }
}
