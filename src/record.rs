//! API records: parsing a page, validating `id`/`updatedAt`, and encoding JSON Lines.
//!
//! Records are kept as their original JSON text (lossless: numbers, key order and string
//! escapes are exactly what the API sent). Only whitespace between tokens is dropped, and
//! only when the record spans several lines, because a JSON Lines record must fit on one.
//! `_synced_at` is spliced in before the closing brace.

use std::ops::Range;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::fields::Fields;
use crate::json;

/// A valid record: it has an `id` and a parsable, zoned `updatedAt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Canonical JSON text of the `id` value (`"abc"` or `42`): the upsert key. Usually a
    /// range of `json` (no allocation), see [`Record::id`].
    id: IdText,
    /// XXH3-64 of `id`, computed once (batch index, fingerprints).
    pub id_hash: u64,
    /// XXH3-128 of the JSON text, computed where the record is parsed (fingerprints).
    pub content_hash: u128,
    /// `updatedAt`, normalised to UTC.
    pub updated_at: DateTime<Utc>,
    /// The record's JSON object text, on one line, valid UTF-8. Usually a range of the
    /// network chunk it arrived in (no copy): see [`Record::detach`].
    json: Bytes,
    /// Its line carries `_record_id` and `_cursor` (the shape is not the seed's: see
    /// [`Fields::cursor_column`]).
    cursor_column: bool,
}

/// Where a record's canonical id text lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IdText {
    /// `json[start..end]` is already canonical.
    InJson(u32, u32),
    Owned(Box<str>),
}

/// An item of the records array that cannot be synced, and why. It is written to
/// `_rejected/`, never dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: String,
    json: Box<str>,
    /// How the item goes into the line.
    form: Form,
}

/// How a rejected item is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// As sent, under `"record"`.
    Json,
    /// As a string under `"record_text"`: it holds a key twice, which would make the line
    /// unreadable as JSON.
    Text,
    /// Too large to hold: only its id (`json` is its raw JSON text, or `null`) and its
    /// size in bytes, under `"id"` and `"bytes"`.
    Oversized { bytes: u64 },
}

/// One item of a page's records array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Valid(Record),
    Rejected(Rejected),
}

impl Record {
    /// Canonical JSON text of the `id` value (`"abc"` or `42`): the upsert key.
    pub fn id(&self) -> &str {
        match &self.id {
            IdText::InJson(start, end) => self
                .json
                .get(*start as usize..*end as usize)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default(),
            IdText::Owned(s) => s,
        }
    }

    /// Size of the record's JSON text.
    pub fn json_len(&self) -> usize {
        self.json.len()
    }

    /// Encoded size of this record's line, `_synced_at` included (an upper bound).
    pub fn line_len(&self) -> usize {
        self.json.len()
            + SYNCED_AT_OVERHEAD
            + if self.cursor_column {
                CURSOR_OVERHEAD + ID_OVERHEAD + self.id().len()
            } else {
                0
            }
    }

    /// Appends the JSON Lines line for this record: the original object plus `_synced_at`
    /// (and, for a shape other than the seed's, its key as `_record_id`, a string, and its
    /// time as `_cursor`, RFC 3339 UTC).
    pub fn write_line(&self, out: &mut Vec<u8>, synced_at: &str) {
        // `json` is an object with at least one member (it has an `id`), ending in `}`.
        let body = self.json.strip_suffix(b"}").unwrap_or(&self.json);
        out.extend_from_slice(body);
        if self.cursor_column {
            // The key as a string: a string id is already one (canonical JSON text); a
            // number's text needs no escaping.
            let id = self.id();
            out.extend_from_slice(b",\"_record_id\":");
            if id.starts_with('"') {
                out.extend_from_slice(id.as_bytes());
            } else {
                out.push(b'"');
                out.extend_from_slice(id.as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(b",\"_cursor\":\"");
            crate::window::push_millis(out, self.updated_at);
            out.push(b'"');
        }
        out.extend_from_slice(b",\"_synced_at\":\"");
        out.extend_from_slice(synced_at.as_bytes());
        out.extend_from_slice(b"\"}\n");
    }

    /// The record's JSON text (no `_synced_at`).
    pub fn json(&self) -> &str {
        std::str::from_utf8(&self.json).unwrap_or_default()
    }

    /// Gives the record its own copy of its text, so that it no longer keeps the network
    /// chunk it came from alive (for records held long while most of their chunk is not).
    pub fn detach(&mut self) {
        self.json = Bytes::copy_from_slice(&self.json);
    }
}

impl Rejected {
    /// A hash of the item as sent and its reason: the same bad row read twice in one run
    /// (by two slices) is one row.
    pub fn content_hash(&self) -> u128 {
        xxhash_rust::xxh3::xxh3_128(format!("{}\n{}", self.reason, self.json).as_bytes())
    }

    /// Appends `{"reason":…,"record":<the item as sent>,"_synced_at":…}` and a newline; for
    /// an item that holds a key twice, `"record_text":"<the item as sent, as a string>"`
    /// instead of `"record"`, so that no line ever holds a key twice; for an item larger
    /// than `MAX_RECORD_BYTES`, `"id":<its id or null>,"bytes":<its size>`.
    pub fn write_line(&self, out: &mut Vec<u8>, synced_at: &str) {
        out.extend_from_slice(b"{\"reason\":");
        // Serialising a &str cannot fail.
        out.extend_from_slice(
            serde_json::to_string(&self.reason)
                .unwrap_or_default()
                .as_bytes(),
        );
        match self.form {
            Form::Json => {
                out.extend_from_slice(b",\"record\":");
                out.extend_from_slice(self.json.as_bytes());
            }
            Form::Text => {
                out.extend_from_slice(b",\"record_text\":");
                out.extend_from_slice(
                    serde_json::to_string(&*self.json)
                        .unwrap_or_default()
                        .as_bytes(),
                );
            }
            Form::Oversized { bytes } => {
                out.extend_from_slice(b",\"id\":");
                out.extend_from_slice(self.json.as_bytes());
                out.extend_from_slice(format!(",\"bytes\":{bytes}").as_bytes());
            }
        }
        out.extend_from_slice(b",\"_synced_at\":\"");
        out.extend_from_slice(synced_at.as_bytes());
        out.extend_from_slice(b"\"}\n");
    }
}

/// `,"_synced_at":"2024-01-15T10:30:00.000Z"` and the newline.
const SYNCED_AT_OVERHEAD: usize = 42;
/// `,"_cursor":"2024-01-15T10:30:00.000Z"`.
const CURSOR_OVERHEAD: usize = 37;
/// `,"_record_id":` and two quotes, beside the id's own text.
const ID_OVERHEAD: usize = 16;

/// The two fields the sync needs, borrowed from the record's text.
#[derive(Deserialize)]
struct Keys<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(rename = "updatedAt", borrow, default)]
    updated_at: Option<&'a RawValue>,
    /// Whether the record brings its own `_synced_at` (even `null`).
    #[serde(rename = "_synced_at", default)]
    synced_at: Present,
}

/// Whether a field is present, whatever its value.
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// Checks that no object in a JSON value holds a key twice (keys compared unescaped).
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        // Keys are borrowed from the text unless they hold an escape; a hash set only for
        // objects too large to compare key by key.
        let mut seen: Vec<Key<'de>> = Vec::new();
        let mut large: Option<std::collections::HashSet<Key<'de>, foldhash::fast::RandomState>> =
            None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let repeated = match &mut large {
                Some(set) => !set.insert(key.clone()),
                None => seen.contains(&key),
            };
            if repeated {
                return Err(serde::de::Error::custom(DuplicateKey(
                    key.as_str().to_string(),
                )));
            }
            if large.is_none() {
                seen.push(key);
                if seen.len() > 32 {
                    large = Some(seen.drain(..).collect());
                }
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(NoDuplicateKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
}

/// An object's key as [`NoDuplicateKeys`] compares it: borrowed from the text, or unescaped.
#[derive(Clone)]
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

/// Keys compare as text, however they were read (`"k"` and `"\u006b"` are one key).
impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key<'_> {}

impl std::hash::Hash for Key<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(s))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(s.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// The message of a duplicate found by [`NoDuplicateKeys`].
struct DuplicateKey(String);

impl std::fmt::Display for DuplicateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{DUPLICATE_MARK}{:?}", self.0)
    }
}

const DUPLICATE_MARK: &str = "duplicate key ";

/// The key (as JSON text) that some object in the JSON `text` holds twice, if any; `None`
/// also for text that is not valid JSON. No output line may hold one (DuckDB refuses it).
pub fn duplicate_key(text: &str) -> Option<String> {
    check_keys(text).ok().flatten()
}

/// One pass over the JSON `text`: `Err` if it is not valid JSON, else the key (as JSON text)
/// that some object holds twice, if any.
fn check_keys(text: &str) -> Result<Option<String>, serde_json::Error> {
    let Err(e) = serde_json::from_str::<NoDuplicateKeys>(text) else {
        return Ok(None);
    };
    let msg = e.to_string();
    match msg.strip_prefix(DUPLICATE_MARK) {
        // serde_json appends " at line L column C".
        Some(key) if e.is_data() => {
            // The pass stopped at the duplicate: the rest must still be valid JSON, or the
            // page is malformed.
            serde_json::from_str::<IgnoredAny>(text)?;
            Ok(Some(
                key.rsplit_once(" at line ")
                    .map_or(key, |(k, _)| k)
                    .to_string(),
            ))
        }
        // Not a duplicate: invalid JSON — or valid JSON that this pass cannot read (a number
        // beyond f64, such as 1e400), which the grammar-only pass then accepts.
        _ => serde_json::from_str::<IgnoredAny>(text).map(|_| None),
    }
}

/// Validates one element of the records array, given as its JSON text. `Err` means the
/// text is not valid JSON (the page is malformed); a valid element that cannot be synced is
/// an [`Entry::Rejected`]. `multiline`: the text may contain raw line breaks between tokens
/// (the scanner knows; when unsure, pass `true`).
pub fn parse_record(text: &str, multiline: bool) -> Result<Entry, serde_json::Error> {
    parse_record_with(text, multiline, &Fields::shared_default())
}

/// [`parse_record`] for records that keep their key and time at `fields`.
pub fn parse_record_with(
    text: &str,
    multiline: bool,
    fields: &Fields,
) -> Result<Entry, serde_json::Error> {
    parse_text(
        &Bytes::copy_from_slice(text.as_bytes()),
        text,
        multiline,
        fields,
    )
}

/// [`parse_record`] for an element held in `bytes`: a valid record keeps a range of
/// `bytes` (no copy). `Err` says why the element makes the page malformed (not UTF-8, not
/// valid JSON).
pub(crate) fn parse_element(
    bytes: &Bytes,
    multiline: bool,
    fields: &Fields,
) -> Result<Entry, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the body is not valid UTF-8".to_string())?;
    parse_text(bytes, text, multiline, fields)
        .map_err(|e| format!("the body is not valid JSON (in a record: {e})"))
}

/// The common case in one pass ([`json::scan_record`]); any doubt goes to serde_json, which
/// decides and words it. `text` is `bytes` as a str.
fn parse_text(
    bytes: &Bytes,
    text: &str,
    multiline: bool,
    fields: &Fields,
) -> Result<Entry, serde_json::Error> {
    match json::scan_record_with(text, fields) {
        Some(keys) => Ok(from_keys(
            bytes,
            text,
            keys.id,
            keys.updated_at,
            false,
            fields,
        )),
        None => parse_slow(bytes, text, multiline, fields),
    }
}

/// [`parse_element`] for an element that [`json::scan_object`] already validated (UTF-8
/// included), with the ranges of its `id` and `updatedAt` values in `bytes`: only those two
/// values are looked at as text.
pub(crate) fn parse_scanned(
    bytes: &Bytes,
    id: Option<Range<usize>>,
    updated: Option<Range<usize>>,
    fields: &Fields,
) -> Result<Entry, String> {
    let text = |r: &Range<usize>| {
        bytes
            .get(r.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
    };
    // Ranges from the scan are always text; were one not, the general path decides.
    let id = match id {
        Some(r) => match text(&r) {
            Some(t) => Some((t, Some(r))),
            None => return parse_element(bytes, false, fields),
        },
        None => None,
    };
    let updated = match updated {
        Some(r) => match text(&r) {
            Some(t) => Some(t),
            None => return parse_element(bytes, false, fields),
        },
        None => None,
    };
    Ok(build(bytes.clone(), id, updated, fields))
}

/// The entry for a records-array element of `size` bytes, more than `max`
/// (`MAX_RECORD_BYTES`), of which `head` is the start: rejected, keeping its id (when the
/// head holds it) and its size, never its content.
pub(crate) fn oversized(head: &[u8], size: usize, max: usize, fields: &Fields) -> Entry {
    let mut at = json::top_level_value(head, fields.id.first());
    for key in fields.id.rest() {
        at = at.and_then(|r| {
            json::top_level_value(&head[r.clone()], key.as_bytes())
                .map(|i| r.start + i.start..r.start + i.end)
        });
    }
    let id = at
        .and_then(|r| std::str::from_utf8(&head[r]).ok())
        .and_then(|raw| {
            canonical_id(raw, fields.id.as_str())
                .ok()
                .map(|c| c.into_owned())
        })
        .unwrap_or_else(|| "null".into());
    Entry::Rejected(Rejected {
        reason: format!(
            "the record is {size} bytes, more than MAX_RECORD_BYTES ({max}): kept out of memory and out of the lake; its id and size are here"
        ),
        json: id.into(),
        form: Form::Oversized { bytes: size as u64 },
    })
}

/// The slow path of [`parse_record`], also the reference for the fast one (the fuzz target
/// checks that both give the same entry).
#[doc(hidden)]
pub fn parse_record_slow(text: &str, multiline: bool) -> Result<Entry, serde_json::Error> {
    parse_record_slow_with(text, multiline, &Fields::shared_default())
}

/// [`parse_record_slow`] for records that keep their key and time at `fields`.
#[doc(hidden)]
pub fn parse_record_slow_with(
    text: &str,
    multiline: bool,
    fields: &Fields,
) -> Result<Entry, serde_json::Error> {
    parse_slow(
        &Bytes::copy_from_slice(text.as_bytes()),
        text,
        multiline,
        fields,
    )
}

/// The general path: serde_json validates and finds the keys. `text` is `bytes` as a str.
fn parse_slow(
    bytes: &Bytes,
    text: &str,
    multiline: bool,
    fields: &Fields,
) -> Result<Entry, serde_json::Error> {
    let reject = |reason: String, form: Form| {
        Ok(Entry::Rejected(Rejected {
            reason,
            json: one_line(text, multiline).0.into(),
            form,
        }))
    };
    // Valid JSON (or the page is malformed), and no key twice: one pass. A key twice would
    // make the output line unreadable (DuckDB refuses the whole glob).
    if let Some(key) = check_keys(text)? {
        return reject(
            format!(
                "the record holds the key {key} twice (a JSON Lines line may not; the record is kept as text in record_text)"
            ),
            Form::Text,
        );
    }
    let reject = |reason: String| reject(reason, Form::Json);
    if !text.starts_with(char::from(crate::json::OBJECT_START)) {
        return reject("the record is not a JSON object".into());
    }
    let found = if fields.is_default() {
        serde_json::from_str::<Keys>(text).map(|k| {
            (
                k.id.map(RawValue::get),
                k.updated_at.map(RawValue::get),
                k.synced_at.0,
            )
        })
    } else {
        at_paths(text, fields)
    };
    let (id, updated, synced_at) = match found {
        Ok(k) => k,
        // Keys we cannot use. (The text is valid JSON: checked above.)
        Err(e) if e.is_data() => {
            return reject(format!("the record's keys are unusable ({e})"));
        }
        Err(e) => return Err(e),
    };
    if synced_at {
        return reject(if fields.cursor_column {
            "the record has its own `_synced_at`, `_cursor` or `_record_id`, fields replay-sync adds to every line: a line may not hold one twice, and renaming it would change the record".into()
        } else {
            "the record has its own `_synced_at`, the field replay-sync adds to every line: a line may not hold it twice, and renaming it would change the record".into()
        });
    }
    Ok(from_keys(
        bytes,
        text,
        id.filter(|v| *v != "null"),
        updated.filter(|v| *v != "null"),
        multiline,
        fields,
    ))
}

/// The raw values at `fields`' paths in the object `text`, and whether it has its own
/// `_synced_at` (the general path for configured fields: rare, not the hot one).
type AtPaths<'a> = (Option<&'a str>, Option<&'a str>, bool);

fn at_paths<'a>(text: &'a str, fields: &Fields) -> Result<AtPaths<'a>, serde_json::Error> {
    type Object<'a> = std::collections::HashMap<String, &'a RawValue>;
    let top: Object = serde_json::from_str(text)?;
    let follow = |path: &crate::fields::FieldPath| -> Option<&'a str> {
        let first = std::str::from_utf8(path.first()).ok()?;
        let mut v: &'a RawValue = top.get(first)?;
        for key in path.rest() {
            let inner: Object = serde_json::from_str(v.get()).ok()?;
            v = inner.get(key.as_str())?;
        }
        Some(v.get())
    };
    let reserved = top.contains_key("_synced_at")
        || (fields.cursor_column
            && (top.contains_key(crate::fields::CURSOR_COLUMN)
                || top.contains_key(crate::fields::ID_COLUMN)));
    Ok((follow(&fields.id), follow(&fields.cursor), reserved))
}

/// The record's text on one line (a range of `bytes` unless it had to be compacted), and
/// whether it was compacted.
fn one_line(text: &str, multiline: bool) -> (std::borrow::Cow<'_, str>, bool) {
    if multiline && text.contains(['\n', '\r']) {
        (compact(text).into(), true)
    } else {
        (text.into(), false)
    }
}

/// The entry for a JSON object `text` (already known to be valid JSON, held in `bytes`)
/// whose `id` and `updatedAt` values are `id` and `updated` (raw JSON borrowed from `text`;
/// `None`: absent or null).
fn from_keys(
    bytes: &Bytes,
    text: &str,
    id: Option<&str>,
    updated: Option<&str>,
    multiline: bool,
    fields: &Fields,
) -> Entry {
    let (line, compacted) = one_line(text, multiline);
    // Where `id` sits in the line: `raw` borrows from `text` (its offset is checked, not
    // assumed), and the line is `text` unless it was compacted.
    let id = id.map(|raw| {
        let range = (raw.as_ptr() as usize)
            .checked_sub(text.as_ptr() as usize)
            .map(|start| start..start + raw.len())
            .filter(|r| !compacted && line.get(r.clone()) == Some(raw));
        (raw, range)
    });
    let json = match line {
        std::borrow::Cow::Borrowed(_) => bytes.clone(),
        std::borrow::Cow::Owned(s) => Bytes::from(s),
    };
    build(json, id, updated, fields)
}

/// The entry for a valid JSON object `json` (UTF-8, on one line) whose `id` value is `raw`
/// — at `range` of `json` when given — and whose `updatedAt` value is `updated` (raw JSON;
/// `None`: absent or null).
fn build(
    json: Bytes,
    id: Option<(&str, Option<Range<usize>>)>,
    updated: Option<&str>,
    fields: &Fields,
) -> Entry {
    let reject = |reason: String| {
        Entry::Rejected(Rejected {
            reason,
            json: String::from_utf8_lossy(&json).into(),
            form: Form::Json,
        })
    };
    let Some((raw, range)) = id else {
        return reject(format!("missing `{}` (absent or null)", fields.id.as_str()));
    };
    let id = match canonical_id(raw, fields.id.as_str()) {
        // The raw text is canonical: the record's own text serves as the id.
        Ok(std::borrow::Cow::Borrowed(_)) => {
            match range.map(|r| (u32::try_from(r.start), u32::try_from(r.end))) {
                Some((Ok(s), Ok(e))) => IdText::InJson(s, e),
                _ => IdText::Owned(raw.into()),
            }
        }
        Ok(c) => IdText::Owned(c.into_owned().into_boxed_str()),
        Err(why) => return reject(why),
    };
    let Some(updated) = updated else {
        return reject(format!(
            "missing `{}` (absent or null)",
            fields.cursor.as_str()
        ));
    };
    // The seed's RFC 3339 string, unescaped, read in place (the common case, once per
    // record); anything else by the configured format.
    let plain = updated
        .strip_prefix('"')
        .and_then(|u| u.strip_suffix('"'))
        .filter(|p| fields.format == crate::window::CursorFormat::Rfc3339 && !p.contains('\\'));
    let read = match plain {
        Some(p) => crate::window::parse_ts(p)
            .ok_or("not an RFC 3339 timestamp with a zone (e.g. 2024-01-15T10:30:00Z)"),
        None => fields.format.read(updated),
    };
    let updated_at = match read {
        Ok(t) => t,
        Err(what) => return reject(format!("`{}` is {what}", fields.cursor.as_str())),
    };
    let id_hash = xxhash_rust::xxh3::xxh3_64(match &id {
        IdText::InJson(..) => raw.as_bytes(),
        IdText::Owned(s) => s.as_bytes(),
    });
    Entry::Valid(Record {
        id_hash,
        content_hash: xxhash_rust::xxh3::xxh3_128(&json),
        id,
        updated_at,
        json,
        cursor_column: fields.cursor_column,
    })
}

/// The id as canonical JSON text, so that `"42"` and `42` stay distinct keys and two
/// spellings of the same string (`"a"`, `"\u0061"`) are one key.
fn canonical_id<'a>(text: &'a str, path: &str) -> Result<std::borrow::Cow<'a, str>, String> {
    match text.as_bytes().first() {
        Some(b'"') if !text.contains('\\') => Ok(text.into()),
        Some(b'"') => serde_json::from_str::<String>(text)
            .ok()
            .and_then(|s| serde_json::to_string(&s).ok())
            .map(Into::into)
            .ok_or_else(|| format!("`{path}` is not a valid string")),
        Some(b'-' | b'0'..=b'9') => Ok(text.into()),
        _ => Err(format!("`{path}` must be a string or a number")),
    }
}

/// Removes whitespace between tokens (never inside strings). The value is unchanged.
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &str) -> Result<crate::source::page::ParsedPage, String> {
        crate::source::page::parse_page(body.as_bytes(), "data", Some("next"))
    }

    fn reason(body: &str) -> String {
        match &page(body).unwrap().entries[0] {
            Entry::Rejected(r) => r.reason.clone(),
            Entry::Valid(r) => panic!("expected a rejection, got {r:?}"),
        }
    }

    #[test]
    fn valid_page_keeps_records_verbatim() {
        let p = page(r#"{"data":[{"id":"a","n":1.50,"updatedAt":"2024-01-15T10:30:00Z","s":"x\u00e9"}],"next":null}"#)
            .unwrap();
        assert_eq!(p.next, None);
        let Entry::Valid(r) = &p.entries[0] else {
            panic!()
        };
        assert_eq!(r.id(), "\"a\"");
        let mut out = Vec::new();
        r.write_line(&mut out, "2024-01-16T00:00:00.000Z");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":\"a\",\"n\":1.50,\"updatedAt\":\"2024-01-15T10:30:00Z\",\"s\":\"x\\u00e9\",\"_synced_at\":\"2024-01-16T00:00:00.000Z\"}\n"
        );
        assert!(
            r.line_len()
                >= r.json().len() + ",\"_synced_at\":\"2024-01-16T00:00:00.000Z\"}\n".len() - 1
        );
    }

    #[test]
    fn multi_line_records_become_one_line_losslessly() {
        let body = "{\"data\": [\n  {\n    \"id\": 7,\n    \"address\": \"1 Main St\\nTown\",\n    \"updatedAt\": \"2024-01-15T10:30:00+02:00\"\n  }\n]}";
        let p = page(body).unwrap();
        let Entry::Valid(r) = &p.entries[0] else {
            panic!()
        };
        assert_eq!(
            r.json(),
            r#"{"id":7,"address":"1 Main St\nTown","updatedAt":"2024-01-15T10:30:00+02:00"}"#
        );
        assert_eq!(
            crate::window::format_ts(r.updated_at),
            "2024-01-15T08:30:00Z"
        );
        let mut out = Vec::new();
        r.write_line(&mut out, "t");
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["address"], "1 Main St\nTown");
    }

    #[test]
    fn next_page_field_is_read() {
        let p = page(r#"{"next":"http://h/p?page=2","data":[]}"#).unwrap();
        assert_eq!(p.next.as_deref(), Some("http://h/p?page=2"));
        assert!(p.entries.is_empty());
    }

    #[test]
    fn bad_records_are_rejected_with_a_reason() {
        assert!(
            reason(r#"{"data":[{"updatedAt":"2024-01-15T10:30:00Z"}]}"#).contains("missing `id`")
        );
        assert!(
            reason(r#"{"data":[{"id":null,"updatedAt":"2024-01-15T10:30:00Z"}]}"#)
                .contains("missing `id`")
        );
        assert!(reason(r#"{"data":[{"id":"a"}]}"#).contains("missing `updatedAt`"));
        assert!(reason(r#"{"data":[{"id":"a","updatedAt":"soon"}]}"#).contains("RFC 3339"));
        assert!(
            reason(r#"{"data":[{"id":"a","updatedAt":"2024-01-15T10:30:00"}]}"#)
                .contains("RFC 3339")
        );
        assert!(reason(r#"{"data":[{"id":"a","updatedAt":1705314600}]}"#).contains("not a string"));
        assert!(
            reason(r#"{"data":[{"id":{"x":1},"updatedAt":"2024-01-15T10:30:00Z"}]}"#)
                .contains("string or a number")
        );
        assert!(reason(r#"{"data":[["a","2024-01-15T10:30:00Z"]]}"#).contains("not a JSON object"));
        assert!(reason(r#"{"data":[42]}"#).contains("not a JSON object"));
        assert!(
            reason(r#"{"data":[{"id":"a","id":"b","updatedAt":"2024-01-15T10:30:00Z"}]}"#)
                .contains("holds the key \"id\" twice")
        );
    }

    #[test]
    fn the_slow_path_keeps_valid_json_it_cannot_read_as_numbers() {
        // Multi-line: the slow path. 1e400 is valid JSON beyond f64.
        let p = page("{\"data\":[{\n\"id\": \"a\",\n\"n\": 1e400,\n\"updatedAt\": \"2024-01-15T10:30:00Z\"}]}")
            .unwrap();
        let Entry::Valid(r) = &p.entries[0] else {
            panic!("{:?}", p.entries[0])
        };
        assert!(r.json().contains("1e400"));
        assert!(page("{\"data\":[{\n\"id\": \"a\",\n\"n\": 1e400,,\n}]}").is_err());
    }

    #[test]
    fn no_output_line_holds_a_key_twice() {
        let body = r#"{"data":[
            {"id":"a","updatedAt":"2024-01-15T10:30:00Z","_synced_at":"2099-01-01T00:00:00Z"},
            {"id":"b","updatedAt":"2024-01-15T10:30:00Z","_synced_at":null},
            {"id":"c","updatedAt":"2024-01-15T10:30:00Z","n":1,"n":2},
            {"id":"d","updatedAt":"2024-01-15T10:30:00Z","o":{"k":1,"\u006b":2}},
            [{"x":1,"x":1}],
            {"id":"e","updatedAt":"2024-01-15T10:30:00Z","o":{"_synced_at":1}}
        ]}"#;
        let p = page(body).unwrap();
        assert_eq!(p.entries.len(), 6);
        for (n, e) in p.entries.iter().enumerate() {
            let mut out = Vec::new();
            match e {
                Entry::Valid(r) => {
                    assert_eq!(n, 5, "only the last one is valid: {r:?}");
                    r.write_line(&mut out, "2024-01-16T00:00:00.000Z");
                }
                Entry::Rejected(r) => {
                    let want = if n < 2 { "_synced_at" } else { "twice" };
                    assert!(r.reason.contains(want), "{n}: {}", r.reason);
                    r.write_line(&mut out, "2024-01-16T00:00:00.000Z");
                }
            }
            let line = std::str::from_utf8(&out).unwrap();
            assert_eq!(duplicate_key(line.trim_end()), None, "{line}");
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if (2..5).contains(&n) {
                // Kept whole, as text.
                let kept = v["record_text"].as_str().unwrap();
                assert!(
                    kept.contains("\"x\":1") || kept.contains("\"id\""),
                    "{kept}"
                );
            }
        }
    }

    #[test]
    fn rejected_line_carries_reason_and_original() {
        let p = page(r#"{"data":[{"id":"a","updatedAt":"soon"}]}"#).unwrap();
        let Entry::Rejected(r) = &p.entries[0] else {
            panic!()
        };
        let mut out = Vec::new();
        r.write_line(&mut out, "2024-01-16T00:00:00.000Z");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["record"]["updatedAt"], "soon");
        assert!(v["reason"].as_str().unwrap().contains("RFC 3339"));
    }

    #[test]
    fn ids_are_canonical() {
        let p = page(r#"{"data":[{"id":"\u0061","updatedAt":"2024-01-15T10:30:00Z"},{"id":"42","updatedAt":"2024-01-15T10:30:00Z"},{"id":42,"updatedAt":"2024-01-15T10:30:00Z"}]}"#).unwrap();
        let ids: Vec<&str> = p
            .entries
            .iter()
            .map(|e| match e {
                Entry::Valid(r) => r.id(),
                Entry::Rejected(_) => panic!(),
            })
            .collect();
        assert_eq!(ids, ["\"a\"", "\"42\"", "42"]);

        // A pretty-printed record is compacted; its id is still exactly the id.
        let p = page("{\"data\":[{\n  \"x\": 1,\n  \"id\": \"b\",\n  \"updatedAt\": \"2024-01-15T10:30:00Z\"\n}]}")
            .unwrap();
        let Entry::Valid(r) = &p.entries[0] else {
            panic!()
        };
        assert_eq!(r.id(), "\"b\"");
        assert_eq!(
            r.json(),
            r#"{"x":1,"id":"b","updatedAt":"2024-01-15T10:30:00Z"}"#
        );
        assert_eq!(r.id_hash, xxhash_rust::xxh3::xxh3_64(b"\"b\""));
    }

    #[test]
    fn another_shape_writes_its_time_as_cursor_and_keeps_the_name_free() {
        let fields = crate::fields::Fields::from_lookup(&|k: &str| match k {
            "CURSOR_FIELD" => Some("ts".into()),
            "CURSOR_FORMAT" => Some("epoch_s".into()),
            _ => None,
        })
        .unwrap();
        let Entry::Valid(r) =
            parse_record_with(r#"{"id":1,"ts":1705307400}"#, false, &fields).unwrap()
        else {
            panic!("valid")
        };
        let mut line = Vec::new();
        r.write_line(&mut line, "2024-01-16T00:00:00.000Z");
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "{\"id\":1,\"ts\":1705307400,\"_record_id\":\"1\",\"_cursor\":\"2024-01-15T08:30:00.000Z\",\"_synced_at\":\"2024-01-16T00:00:00.000Z\"}\n"
        );
        assert!(line.len() <= r.line_len());
        // A string key is written as it is (escapes and all).
        let Entry::Valid(r) =
            parse_record_with(r#"{"id":"a\"b","ts":1705307400}"#, false, &fields).unwrap()
        else {
            panic!("valid")
        };
        let mut line = Vec::new();
        r.write_line(&mut line, "2024-01-16T00:00:00.000Z");
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["_record_id"], "a\"b");
        assert!(line.len() <= r.line_len());
        // As the APIs that key their records `_id` do: an ordinary field.
        let e = parse_record_with(r#"{"id":1,"ts":1705307400,"_id":"x"}"#, false, &fields);
        assert!(matches!(e, Ok(Entry::Valid(_))), "{e:?}");
        // A record with its own `_cursor` or `_record_id` would hold it twice: quarantined,
        // on both paths.
        for text in [
            r#"{"id":1,"ts":1705307400,"_cursor":"x"}"#,
            "{\"id\":1,\n\"ts\":1705307400,\"_cursor\":\"x\"}",
            r#"{"id":1,"ts":1705307400,"_record_id":"x"}"#,
            "{\"id\":1,\n\"ts\":1705307400,\"_record_id\":\"x\"}",
        ] {
            let e = parse_record_with(text, true, &fields).unwrap();
            assert!(
                matches!(&e, Entry::Rejected(r) if r.reason.contains("`_cursor` or `_record_id`")),
                "{e:?}"
            );
        }
        // The seed's shape adds nothing: `_cursor` is an ordinary field there.
        let e = parse_record(
            r#"{"id":1,"updatedAt":"2024-01-15T08:30:00Z","_cursor":"x"}"#,
            false,
        )
        .unwrap();
        assert!(matches!(e, Entry::Valid(_)));
    }
}
