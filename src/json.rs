//! A one-pass check of a record's JSON text that also finds its top-level `id` and
//! `updatedAt` values: the fast path of [`crate::record::parse_record`].
//!
//! [`scan_record`] answers `Some` only when it is certain: the text is one valid JSON object
//! (grammar, string escapes, no control characters in strings, nesting of at most
//! [`MAX_DEPTH`]) with no line break between tokens, no escape in a top-level key, no key
//! twice in any object, no escaped key in a nested one, and no top-level `_synced_at`. Anything else — including every invalid text — gets
//! `None`, and the caller lets `serde_json` decide and word the error. So this module can
//! only make valid records cheaper; it never decides a rejection or an error itself (the
//! fuzz target checks that both paths give the same entry for every element).
//!
//! UTF-8 is checked too (only strings may hold bytes beyond ASCII, and only strings that do
//! are run through `std::str::from_utf8`), so a scanned record needs no second pass.

use crate::fields::Fields;

/// Nesting beyond this is left to serde_json (whose own limit is 128).
pub const MAX_DEPTH: u32 = 64;

/// The raw text of the top-level `id` and `updatedAt` values (`None`: absent or `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys<'a> {
    pub id: Option<&'a str>,
    pub updated_at: Option<&'a str>,
}

/// A valid object found at the start of some bytes by [`scan_object`]: where it ends, and
/// where its `id` and `updatedAt` values are (`None`: absent or `null`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The object is `bytes[..end]`.
    pub end: usize,
    pub id: Option<std::ops::Range<usize>>,
    pub updated_at: Option<std::ops::Range<usize>>,
}

/// See the module documentation: `text` must be exactly one object.
pub fn scan_record(text: &str) -> Option<Keys<'_>> {
    scan_record_with(text, &Fields::shared_default())
}

/// [`scan_record`], finding the values at `fields`' paths (`ID_FIELD`, `CURSOR_FIELD`).
pub fn scan_record_with<'a>(text: &'a str, fields: &Fields) -> Option<Keys<'a>> {
    let s = scan_object_with(text.as_bytes(), fields).filter(|s| s.end == text.len())?;
    Some(Keys {
        id: s.id.and_then(|r| text.get(r)),
        updated_at: s.updated_at.and_then(|r| text.get(r)),
    })
}

/// Like [`scan_record`], for an object at the start of `b` followed by anything (a record
/// in the middle of a page): the incremental page parser finds each record's end with this
/// pass, which also validates it. `None` also when `b` ends before the object does.
pub fn scan_object(b: &[u8]) -> Option<Scanned> {
    scan_object_with(b, &Fields::shared_default())
}

/// [`scan_object`], finding the values at `fields`' paths: the top-level keys are compared
/// in the one pass; a nested path is then followed inside the (already validated) value.
pub fn scan_object_with(b: &[u8], fields: &Fields) -> Option<Scanned> {
    if !fields.cursor_column {
        // The seed's shape (`id`, `updatedAt`): literal keys, as cheap as before the shape
        // was configurable (one copy of the loop for them, compiled with the constants).
        return scan_keys(b, |key| {
            (key == RESERVED, key == b"id", key == b"updatedAt")
        });
    }
    let (id_key, cursor_key) = (fields.id.first(), fields.cursor.first());
    let column = crate::fields::CURSOR_COLUMN.as_bytes();
    let id_column = crate::fields::ID_COLUMN.as_bytes();
    let s = scan_keys(b, |key| {
        let reserved =
            key.first() == Some(&b'_') && (key == RESERVED || key == column || key == id_column);
        (reserved, key == id_key, key == cursor_key)
    })?;
    Some(Scanned {
        id: nested(b, s.id, fields.id.rest()).filter(|r| &b[r.clone()] != b"null"),
        updated_at: nested(b, s.updated_at, fields.cursor.rest())
            .filter(|r| &b[r.clone()] != b"null"),
        ..s
    })
}

/// The one pass: `classify` says of each top-level key whether it is reserved (the record
/// goes to serde_json, which words the rejection), the id's and the time's (the two may be
/// one key: `meta.id`, `meta.updated_at`). A key twice never gets that far: the key set sends
/// it to serde_json.
#[inline(always)]
fn scan_keys(b: &[u8], classify: impl Fn(&[u8]) -> (bool, bool, bool)) -> Option<Scanned> {
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut id = None;
    let mut updated = None;
    let mut i = ws(b, 1)?;
    if b.get(i) == Some(&b'}') {
        return Some(Scanned {
            end: i + 1,
            id: None,
            updated_at: None,
        });
    }
    let mut keys = KeySet::new();
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_start = i + 1;
        let key_end = key_start + plain_string(&b[key_start..])?;
        let (reserved, is_id, is_cursor) = classify(&b[key_start..key_end]);
        if reserved || !keys.insert(b, key_start, key_end - key_start) {
            return None;
        }
        i = ws(b, key_end + 1)?;
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = ws(b, i + 1)?;
        i = value(b, start, 1)?;
        if is_id {
            id = Some(start..i);
        }
        if is_cursor {
            updated = Some(start..i);
        }
        i = ws(b, i)?;
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1)?,
            Some(b'}') => break,
            _ => return None,
        }
    }
    let present = |v: Option<std::ops::Range<usize>>| v.filter(|r| &b[r.clone()] != b"null");
    Some(Scanned {
        end: i + 1,
        id: present(id),
        updated_at: present(updated),
    })
}

/// The value at `rest` (keys of nested objects) inside the value at `at` of `b`; `None`
/// where a key is missing or a value on the way is not an object.
fn nested(
    b: &[u8],
    at: Option<std::ops::Range<usize>>,
    rest: &[String],
) -> Option<std::ops::Range<usize>> {
    let mut r = at?;
    for key in rest {
        let inner = top_level_value(&b[r.clone()], key.as_bytes())?;
        r = r.start + inner.start..r.start + inner.end;
    }
    Some(r)
}

/// Where the value of the top-level `key` of the object starting `b` is, if it comes (whole)
/// before the text ends or stops being valid: for the head of a record too large to hold.
pub fn top_level_value(b: &[u8], key: &[u8]) -> Option<std::ops::Range<usize>> {
    if b.first() != Some(&OBJECT_START) {
        return None;
    }
    let mut i = ws_any(b, 1);
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let len = string(b.get(i + 1..)?)?;
        let k = &b[i + 1..i + 1 + len];
        i = ws_any(b, i + len + 2);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = ws_any(b, i + 1);
        let end = value_any(b, start)?;
        if k == key {
            return Some(start..end);
        }
        i = ws_any(b, end);
        if b.get(i) != Some(&b',') {
            return None;
        }
        i = ws_any(b, i + 1);
    }
}

/// Skips any JSON whitespace (line breaks included).
fn ws_any(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// [`value`] for a value that may span lines (compacting is not needed to find an id).
fn value_any(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => Some(i + 1 + string(&b[i + 1..])? + 1),
        b'-' | b'0'..=b'9' => number(b, i),
        b'{' | b'[' => value(b, i, 1),
        b't' => literal(b, i, b"true"),
        b'f' => literal(b, i, b"false"),
        b'n' => literal(b, i, b"null"),
        _ => None,
    }
}

/// The byte an object starts with (named: an unmatched brace in code confuses the tools
/// that measure functions by their braces).
pub(crate) const OBJECT_START: u8 = b'{';

/// The field replay-sync adds to every line: a record may not bring its own.
pub const RESERVED: &[u8] = b"_synced_at";

/// The keys of one object seen so far, to find a duplicate (which would make the output line
/// unreadable: DuckDB, Athena's SerDe and others refuse a key twice).
///
/// This runs for every key of every record, so it is built to cost a few nanoseconds per key:
/// each key is summed up by its first eight bytes and its length (one word), a 128-bit filter
/// of those words spares the comparisons for the usual distinct keys, and the first keys live
/// on the stack. Only a filter hit compares words, and only equal words compare bytes.
struct KeySet {
    filter: [u64; 2],
    words: [u64; INLINE_KEYS],
    /// `start << 32 | len` of each key in the scanned bytes.
    spans: [u64; INLINE_KEYS],
    n: usize,
    spill: Vec<(u64, u64)>,
}

const INLINE_KEYS: usize = 12;
/// More keys in one object than this go to the slow path (whose check is a hash set).
const MAX_FAST_KEYS: usize = 128;

impl KeySet {
    #[inline(always)]
    fn new() -> Self {
        KeySet {
            filter: [0; 2],
            words: [0; INLINE_KEYS],
            spans: [0; INLINE_KEYS],
            n: 0,
            spill: Vec::new(),
        }
    }

    /// Adds the key `b[start..start + len]`; `false` if it was already there (or the object
    /// is too large to tell).
    #[inline(always)]
    fn insert(&mut self, b: &[u8], start: usize, len: usize) -> bool {
        if self.n >= MAX_FAST_KEYS || len > u32::MAX as usize || start > u32::MAX as usize {
            return false; // serde_json's hash set decides, in linear time
        }
        // The key's first eight bytes (the bytes after a shorter key masked off): one load
        // where the text goes on that far, as it does but at the very end of a page.
        let head = match b.get(start..start + 8) {
            Some(w) => u64::from_le_bytes(w.try_into().unwrap_or_default()),
            None => b[start..]
                .iter()
                .take(8)
                .rev()
                .fold(0u64, |acc, &c| acc << 8 | u64::from(c)),
        };
        let head = if len >= 8 {
            head
        } else {
            head & ((1u64 << (8 * len)) - 1)
        };
        let word = head ^ (len as u64).rotate_right(8);
        let bit = (word.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) as usize;
        let (slot, mask) = (bit >> 6, 1u64 << (bit & 63));
        let span = (start as u64) << 32 | len as u64;
        if self.filter[slot] & mask != 0 {
            let same = |w: u64, sp: u64| {
                w == word && sp as u32 as usize == len && {
                    let s = (sp >> 32) as usize;
                    b[s..s + len] == b[start..start + len]
                }
            };
            let inline = self.n.min(INLINE_KEYS);
            if (0..inline).any(|j| same(self.words[j], self.spans[j]))
                || self.spill.iter().any(|&(w, sp)| same(w, sp))
            {
                return false;
            }
        }
        self.filter[slot] |= mask;
        if self.n < INLINE_KEYS {
            self.words[self.n] = word;
            self.spans[self.n] = span;
        } else {
            self.spill.push((word, span));
        }
        self.n += 1;
        true
    }
}

/// Skips spaces and tabs; a line break gives `None` (the record must be compacted, which
/// the slow path does).
#[inline]
fn ws(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(&c) = b.get(i) {
        // Compact JSON has no whitespace: one comparison for the usual case.
        if c > b' ' {
            return Some(i);
        }
        match c {
            b' ' | b'\t' => i += 1,
            b'\n' | b'\r' => return None,
            _ => return Some(i),
        }
    }
    Some(i)
}

/// The end (exclusive) of the value starting at `b[i]`.
fn value(b: &[u8], i: usize, depth: u32) -> Option<usize> {
    let c = *b.get(i)?;
    // Most values are strings: a branch that predicts well before the table.
    if c == b'"' {
        return Some(i + 1 + string(&b[i + 1..])? + 1);
    }
    match c {
        b'{' => object(b, i, depth + 1),
        b'[' => array(b, i, depth + 1),
        b't' => literal(b, i, b"true"),
        b'f' => literal(b, i, b"false"),
        b'n' => literal(b, i, b"null"),
        b'-' | b'0'..=b'9' => number(b, i),
        _ => None,
    }
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b[i..].starts_with(word).then_some(i + word.len())
}

fn object(b: &[u8], open: usize, depth: u32) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut i = ws(b, open + 1)?;
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    let mut keys = KeySet::new();
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        let len = string(&b[i..])?;
        // A key with an escape compares only once unescaped: serde_json decides.
        if b[i..i + len].contains(&b'\\') || !keys.insert(b, i, len) {
            return None;
        }
        i += len + 1;
        i = ws(b, i)?;
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1)?;
        i = ws(b, value(b, i, depth)?)?;
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1)?,
            Some(b'}') => return Some(i + 1),
            _ => return None,
        }
    }
}

fn array(b: &[u8], open: usize, depth: u32) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut i = ws(b, open + 1)?;
    if b.get(i) == Some(&b']') {
        return Some(i + 1);
    }
    loop {
        i = ws(b, value(b, i, depth)?)?;
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1)?,
            Some(b']') => return Some(i + 1),
            _ => return None,
        }
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; what follows is the caller's to check.
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |b: &[u8], i: usize| b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if b[i] == b'-' {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i += digits(b, i),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let n = digits(b, i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(b, i);
        if n == 0 {
            return None;
        }
        i += n;
    }
    Some(i)
}

/// The index of the closing quote of a string whose body starts at `b[0]`, checking its
/// escapes, that it holds no control character, and that it is UTF-8.
fn string(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut ascii = true;
    loop {
        i += if ascii {
            special::<true>(&b[i..])?
        } else {
            special::<false>(&b[i..])?
        };
        match b[i] {
            b'"' => {
                if !ascii {
                    std::str::from_utf8(&b[..i]).ok()?;
                }
                return Some(i);
            }
            b'\\' => match *b.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => i += 6,
                _ => return None,
            },
            0x80.. => ascii = false, // checked as a whole at the end
            _ => return None,        // a control character
        }
    }
}

/// Like [`string`], but any escape or byte beyond ASCII gives `None` (a top-level key must
/// compare as written).
fn plain_string(b: &[u8]) -> Option<usize> {
    let i = special::<true>(b)?;
    (b[i] == b'"').then_some(i)
}

/// The first quote, backslash or control character (below 0x20) in `b` — and, with `HIGH`,
/// byte beyond ASCII — eight bytes at a time.
#[inline]
fn special<const HIGH: bool>(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    const SPACES: u64 = ONES * 0x20;
    let words = b.chunks_exact(8);
    let tail = words.remainder();
    for (n, word) in words.enumerate() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let (q, s) = (w ^ QUOTES, w ^ BACKSLASHES);
        // Zero bytes of `q`/`s` are quotes/backslashes; `w - 0x20` borrows out of the bytes
        // below 0x20 (`& !w` ignores bytes >= 0x80). The lowest flag is always exact.
        let mut found = q.wrapping_sub(ONES) & !q | s.wrapping_sub(ONES) & !s;
        found |= w.wrapping_sub(SPACES) & !w;
        if HIGH {
            found |= w;
        }
        found &= HIGHS;
        if found != 0 {
            return Some(n * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let base = b.len() - tail.len();
    tail.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20 || (HIGH && c >= 0x80))
        .map(|k| base + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_keys_of_a_plain_record() {
        let k = scan_record(
            r#"{"id":"u1","n":-1.5e+3,"a":[1,{"x":[]},"\"\\\/\b\f\n\r\t\u00e9"],"updatedAt":"2024-01-15T10:30:00Z","b":null,"t":true,"f":false}"#,
        )
        .unwrap();
        assert_eq!(k.id, Some(r#""u1""#));
        assert_eq!(k.updated_at, Some(r#""2024-01-15T10:30:00Z""#));
        let k = scan_record(r#"{ "id" : 42 , "updatedAt" :null }"#).unwrap();
        assert_eq!((k.id, k.updated_at), (Some("42"), None));
        assert_eq!(
            scan_record("{}"),
            Some(Keys {
                id: None,
                updated_at: None
            })
        );
    }

    #[test]
    fn the_id_is_found_in_a_head() {
        let head = br#"{ "name": "x", "id" : "u-7", "blob": "aaaaaaaaaaa"#;
        let r = top_level_value(head, b"id").unwrap();
        assert_eq!(&head[r], br#""u-7""#);
        assert_eq!(top_level_value(br#"{"blob":"aaa"#, b"id"), None);
        assert_eq!(
            top_level_value(br#"{"a":{"id":1},"id":2}"#, b"id").map(|r| r.start),
            Some(19)
        );
        assert_eq!(top_level_value(b"[1]", b"id"), None);
    }

    #[test]
    fn utf8_is_checked_in_strings() {
        assert!(
            scan_object("{\"id\":\"caf\u{e9} \u{1F600}\",\"x\":[\"\u{4e2d}\"]}".as_bytes())
                .is_some()
        );
        for bad in [
            &b"{\"id\":\"caf\xc3\"}"[..], // cut sequence
            b"{\"id\":\"\xff\"}",         // never UTF-8
            b"{\"id\":\"\xed\xa0\x80\"}", // a surrogate
            b"{\"id\":\"\xc0\xaf\"}",     // overlong
            b"{\"id\":1,\"\xc3\xa9\":2}", // beyond ASCII in a top-level key: serde decides
            b"{\"id\":1}\xc3",
            b"{\"id\":\xc3\xa9}",
        ] {
            assert_eq!(
                scan_object(bad).filter(|s| s.end == bad.len()),
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn leaves_every_doubt_to_serde() {
        for text in [
            "",
            "[]",
            "{",
            "{}}",
            r#"{"id":1,}"#,
            r#"{"id":1 "x":2}"#,
            r#"{"id":01}"#,
            r#"{"id":1.}"#,
            r#"{"id":1e}"#,
            r#"{"id":-}"#,
            r#"{"id":tru}"#,
            r#"{"id":"a"b}"#,
            r#"{"id":"\x"}"#,
            r#"{"id":"\u00g0"}"#,
            "{\"id\":\"a\tb\"}",
            "{\"id\":1,\n\"x\":2}",
            r#"{"i\u0064":1}"#,
            r#"{"id":1,"id":2}"#,
            r#"{"updatedAt":"a","updatedAt":"b"}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":{"b":1,}}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a" 1}"#,
            r#"{"a":1}x"#,
            r#"{"id":1,"a":1,"b":2,"a":3}"#,
            r#"{"id":1,"n":{"x":1,"x":2}}"#,
            r#"{"id":1,"n":[{"x":1,"y":{"z":1,"z":1}}]}"#,
            r#"{"id":1,"n":{"\u0078":1}}"#,
            r#"{"id":1,"_synced_at":"2099-01-01T00:00:00Z"}"#,
        ] {
            assert_eq!(scan_record(text), None, "{text}");
        }
        // Same key in different objects, and many distinct keys, are fine.
        assert!(scan_record(r#"{"id":1,"x":{"x":1,"id":2},"y":[{"x":1},{"x":2}]}"#).is_some());
        let wide: Vec<String> = (0..100).map(|k| format!("\"k{k}\":{k}")).collect();
        assert!(scan_record(&format!("{{{}}}", wide.join(","))).is_some());
        let wide: Vec<String> = (0..100).map(|k| format!("\"k{}\":{k}", k % 99)).collect();
        assert_eq!(scan_record(&format!("{{{}}}", wide.join(","))), None);
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(70), "]".repeat(70));
        assert_eq!(scan_record(&deep), None);
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(60), "]".repeat(60));
        assert!(scan_record(&ok).is_some());
    }

    #[test]
    fn special_bytes_are_found_in_any_position() {
        for len in 0..40 {
            for at in 0..len {
                for c in [b'"', b'\\', 0x00, 0x1f] {
                    let mut b = vec![b'a'; len];
                    b[at] = c;
                    assert_eq!(special::<false>(&b), Some(at), "{len} {at} {c}");
                    assert_eq!(special::<true>(&b), Some(at), "{len} {at} {c}");
                }
                let mut b = vec![b'a'; len];
                b[at] = 0xc3;
                assert_eq!(special::<true>(&b), Some(at), "{len} {at}");
                assert_eq!(special::<false>(&b), None, "{len} {at}");
            }
            let mut b = vec![b'a'; len];
            b.iter_mut().step_by(3).for_each(|c| *c = 0xc3);
            b.iter_mut().skip(1).step_by(3).for_each(|c| *c = 0x20);
            assert_eq!(special::<false>(&b), None);
        }
    }

    #[test]
    fn finds_values_at_configured_paths_in_the_same_pass() {
        let fields = crate::fields::Fields::from_lookup(&|k: &str| match k {
            "ID_FIELD" => Some("meta.id".into()),
            "CURSOR_FIELD" => Some("meta.at".into()),
            _ => None,
        })
        .unwrap();
        let text = r#"{"x":1,"meta":{"at":1705307400000,"id":"n1","z":{"id":2}},"id":"top"}"#;
        let k = scan_record_with(text, &fields).unwrap();
        assert_eq!(k.id, Some(r#""n1""#));
        assert_eq!(k.updated_at, Some("1705307400000"));
        // Missing on the way, or not an object: absent.
        let k = scan_record_with(r#"{"meta":5,"id":1}"#, &fields).unwrap();
        assert_eq!((k.id, k.updated_at), (None, None));
        let k = scan_record_with(r#"{"meta":{"id":null}}"#, &fields).unwrap();
        assert_eq!(k.id, None);
    }
}
