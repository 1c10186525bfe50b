//! Pure time math for the replay window. No I/O, no clock: callers pass "now".
//!
//! * `since = cursor − buffer` (no cursor → no `since`: a full sync);
//! * timestamps on the wire and in the state are RFC 3339 UTC, whole seconds, with a `Z`;
//! * the new cursor is the greatest `updatedAt` durably written, floored to the second,
//!   clamped to the run's start, and never earlier than the stored cursor unless rewinding.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

/// A timestamp as stored in the state and sent as `since`: `2024-01-15T08:30:00Z`.
pub fn format_ts(ts: DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The compact form used inside object keys: `20240115T083000Z`.
pub fn format_compact(ts: DateTime<Utc>) -> String {
    ts.format("%Y%m%dT%H%M%SZ").to_string()
}

/// `_synced_at` form: RFC 3339 UTC with milliseconds.
pub fn format_millis(ts: DateTime<Utc>) -> String {
    let mut out = Vec::with_capacity(24);
    push_millis(&mut out, ts);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends [`format_millis`]'s text to `out`: digit by digit for years 0 to 9999 (every
/// line of another shape carries one, so no format string is read per record), chrono's
/// formatter for the others.
pub fn push_millis(out: &mut Vec<u8>, ts: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let year = ts.year();
    if !(0..=9999).contains(&year) {
        out.extend_from_slice(ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string().as_bytes());
        return;
    }
    // `nanosecond` exceeds 999,999,999 only within a leap second, which chrono writes as
    // second 60: so does this.
    let (second, nanos) = match ts.nanosecond() {
        n if n >= 1_000_000_000 => (60, n - 1_000_000_000),
        n => (ts.second(), n),
    };
    let millis = nanos / 1_000_000;
    let digits = |out: &mut Vec<u8>, v: u32, n: u32| {
        for p in (0..n).rev() {
            out.push(b'0' + (v / 10u32.pow(p) % 10) as u8);
        }
    };
    digits(out, year as u32, 4);
    out.push(b'-');
    digits(out, ts.month(), 2);
    out.push(b'-');
    digits(out, ts.day(), 2);
    out.push(b'T');
    digits(out, ts.hour(), 2);
    out.push(b':');
    digits(out, ts.minute(), 2);
    out.push(b':');
    digits(out, second, 2);
    out.push(b'.');
    digits(out, millis, 3);
    out.push(b'Z');
}

/// Parses an RFC 3339 timestamp with any offset and normalises it to UTC. Fractional
/// seconds are kept (the cursor floors them later). A timestamp without a zone is refused:
/// it is ambiguous, and guessing could move the cursor by hours.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    parse_utc_fast(s.as_bytes()).or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// The common form `YYYY-MM-DDTHH:MM:SS[.fraction]Z` read at fixed positions (once per
/// record, so it matters); `None` for anything else, which chrono's RFC 3339 parser then
/// decides (offsets, leap seconds, other separators, errors).
fn parse_utc_fast(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b.last() != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let n = num(20..b.len() - 1)?;
            n * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    let (sec, min, hour) = (num(17..19)?, num(14..16)?, num(11..13)?);
    if sec > 59 {
        return None; // a leap second: chrono's business
    }
    chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?
        .and_hms_nano_opt(hour, min, sec, nanos)
        .map(|t| t.and_utc())
}

/// Converts a number of hours (decimals allowed) to a duration, rejecting negative,
/// non-finite and absurd values (more than ten years).
pub fn buffer_from_hours(hours: f64) -> Option<TimeDelta> {
    if !hours.is_finite() || !(0.0..=24.0 * 366.0 * 10.0).contains(&hours) {
        return None;
    }
    TimeDelta::try_milliseconds((hours * 3_600_000.0).round() as i64)
}

/// The start of the window: `cursor − buffer`, floored to whole seconds (flooring only
/// ever widens an inclusive window, so it cannot lose a row). `None` means a full sync.
///
/// ```
/// use replay_sync::window::{format_ts, parse_ts, since};
/// let cursor = parse_ts("2024-01-15T10:30:00Z");
/// let start = since(cursor, chrono::TimeDelta::hours(2)).map(format_ts);
/// assert_eq!(start.as_deref(), Some("2024-01-15T08:30:00Z"));
/// assert_eq!(since(None, chrono::TimeDelta::hours(2)), None); // no state: full sync
/// ```
pub fn since(cursor: Option<DateTime<Utc>>, buffer: TimeDelta) -> Option<DateTime<Utc>> {
    cursor.map(|c| {
        c.checked_sub_signed(buffer)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
            .max(earliest())
            .trunc_subsecs(0)
    })
}

/// `0000-01-01T00:00:00Z`, the earliest instant RFC 3339 can write: a window never starts
/// before it (a cursor in year 0 minus a buffer would otherwise be sent as `-0001-…`).
pub fn earliest() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(0, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(DateTime::<Utc>::MIN_UTC, |t| t.and_utc())
}

/// What the checkpoint should store after a run.
///
/// * `stored`: the cursor in the state store when the run started;
/// * `max_written`: the greatest `updatedAt` among records durably written (`None` if none);
/// * `run_start`: the run's start time — a record stamped in the future must not push the
///   cursor past it, or rows written between now and then would be skipped forever;
/// * `rewind`: whether the operator allowed the cursor to move backwards.
///
/// The result is floored to whole seconds: `since` is inclusive, so re-reading a fraction
/// of a second is harmless, while rounding up could skip a row.
pub fn next_cursor(
    stored: Option<DateTime<Utc>>,
    max_written: Option<DateTime<Utc>>,
    run_start: DateTime<Utc>,
    rewind: bool,
) -> Option<DateTime<Utc>> {
    let Some(written) = max_written else {
        return stored; // nothing fetched: the cursor stays where it was
    };
    let candidate = written.min(run_start).trunc_subsecs(0);
    match stored {
        Some(s) if candidate < s && !rewind => Some(s),
        _ => Some(candidate),
    }
}

/// A time range `[since, until)` (whole seconds, as the API is asked for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Span {
    /// `since/until` (an ISO 8601 interval).
    pub fn format(&self) -> String {
        format!("{}/{}", format_ts(self.since), format_ts(self.until))
    }

    /// Spans as stored in the state: `A/B,C/D` (empty: none).
    pub fn format_list(spans: &[Span]) -> String {
        spans.iter().map(Span::format).collect::<Vec<_>>().join(",")
    }

    /// Reads [`Span::format_list`]'s form; `None` if any part is not `since/until` with
    /// `since < until`.
    pub fn parse_list(s: &str) -> Option<Vec<Span>> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let (a, b) = p.trim().split_once('/')?;
                let span = Span {
                    since: parse_ts(a)?,
                    until: parse_ts(b)?,
                };
                (span.since < span.until).then_some(span)
            })
            .collect()
    }
}

/// How records carry their time (`CURSOR_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CursorFormat {
    /// RFC 3339 with a zone, any fraction: a JSON string.
    #[default]
    Rfc3339,
    /// Seconds since the epoch (fractions allowed): a JSON number or a numeric string.
    EpochS,
    /// Milliseconds since the epoch: a JSON number or a numeric string.
    EpochMs,
}

impl CursorFormat {
    pub fn parse_name(name: &str) -> Option<CursorFormat> {
        match name {
            "rfc3339" => Some(CursorFormat::Rfc3339),
            "epoch_s" => Some(CursorFormat::EpochS),
            "epoch_ms" => Some(CursorFormat::EpochMs),
            _ => None,
        }
    }

    /// The time of a record's cursor value, given as its raw JSON text (`"…"`, or a number);
    /// `Err` says what the value is not. (Once per record: inlined into the record builder.)
    #[inline]
    pub fn read(self, raw: &str) -> Result<DateTime<Utc>, &'static str> {
        let unquoted = raw.strip_prefix('"').and_then(|u| u.strip_suffix('"'));
        match self {
            CursorFormat::Rfc3339 => {
                let text = match unquoted {
                    Some(plain) if !plain.contains('\\') => std::borrow::Cow::Borrowed(plain),
                    Some(_) => serde_json::from_str::<String>(raw)
                        .map_err(|_| "not a string")?
                        .into(),
                    None => return Err("not a string"),
                };
                parse_ts(&text)
                    .ok_or("not an RFC 3339 timestamp with a zone (e.g. 2024-01-15T10:30:00Z)")
            }
            CursorFormat::EpochS | CursorFormat::EpochMs => {
                let text = unquoted.unwrap_or(raw).trim();
                let per_second = if self == CursorFormat::EpochS {
                    1000.0
                } else {
                    1.0
                };
                let ms = match text.parse::<i64>() {
                    Ok(n) if self == CursorFormat::EpochMs => Some(n),
                    Ok(n) => n.checked_mul(1000),
                    Err(_) => text
                        .parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|f| (f * per_second).floor())
                        .filter(|f| f.abs() < 1e17)
                        .map(|f| f as i64),
                };
                ms.and_then(DateTime::from_timestamp_millis)
                    .filter(|t| *t >= earliest())
                    .ok_or(if self == CursorFormat::EpochS {
                        "not a number of seconds since the epoch (epoch_s)"
                    } else {
                        "not a number of milliseconds since the epoch (epoch_ms)"
                    })
            }
        }
    }
}

/// How `since` and `until` are sent (`API_SINCE_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    /// `2024-01-15T08:30:00Z` (the default).
    #[default]
    Rfc3339,
    /// `2024-01-15T08:30:00.000Z`.
    Rfc3339Millis,
    /// `1705307400`.
    EpochS,
    /// `1705307400000`.
    EpochMs,
}

impl WireFormat {
    pub fn parse_name(name: &str) -> Option<WireFormat> {
        match name {
            "rfc3339" => Some(WireFormat::Rfc3339),
            "rfc3339_millis" => Some(WireFormat::Rfc3339Millis),
            "epoch_s" => Some(WireFormat::EpochS),
            "epoch_ms" => Some(WireFormat::EpochMs),
            _ => None,
        }
    }

    pub fn format(self, ts: DateTime<Utc>) -> String {
        match self {
            WireFormat::Rfc3339 => format_ts(ts),
            WireFormat::Rfc3339Millis => format_millis(ts),
            WireFormat::EpochS => ts.timestamp().to_string(),
            WireFormat::EpochMs => ts.timestamp_millis().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn millis_are_written_as_chrono_writes_them() {
        use chrono::{NaiveDate, TimeZone};
        let chrono_way = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mut cases: Vec<DateTime<Utc>> = vec![
            Utc.with_ymd_and_hms(2024, 1, 15, 8, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + TimeDelta::milliseconds(999),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 59).unwrap()
                + TimeDelta::nanoseconds(1_999_999),
        ];
        // A leap second (nanoseconds past 999,999,999).
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        cases.push(leap);
        // And a spread of ordinary instants.
        let mut t = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap();
        for i in 0..2000i64 {
            t += TimeDelta::milliseconds(i * 7_919_777 + 13);
            cases.push(t);
        }
        for t in cases {
            let mut ours = Vec::new();
            push_millis(&mut ours, t);
            assert_eq!(String::from_utf8(ours).unwrap(), chrono_way(t), "{t:?}");
            assert_eq!(format_millis(t), chrono_way(t));
        }
    }

    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        parse_ts(s).unwrap()
    }

    #[test]
    fn seed_example_two_hour_buffer() {
        let since = since(
            Some(ts("2024-01-15T10:30:00Z")),
            buffer_from_hours(2.0).unwrap(),
        );
        assert_eq!(format_ts(since.unwrap()), "2024-01-15T08:30:00Z");
    }

    #[test]
    fn no_cursor_means_full_sync() {
        assert_eq!(since(None, TimeDelta::hours(2)), None);
    }

    #[test]
    fn fractional_buffer_and_zero_buffer() {
        let c = Some(ts("2024-01-15T10:30:00Z"));
        let half = since(c, buffer_from_hours(0.5).unwrap()).unwrap();
        assert_eq!(format_ts(half), "2024-01-15T10:00:00Z");
        let zero = since(c, buffer_from_hours(0.0).unwrap()).unwrap();
        assert_eq!(format_ts(zero), "2024-01-15T10:30:00Z");
    }

    #[test]
    fn the_window_never_starts_before_year_zero() {
        let c = parse_ts("0000-01-01T01:00:00Z");
        assert_eq!(
            since(c, TimeDelta::hours(2)).map(format_ts).as_deref(),
            Some("0000-01-01T00:00:00Z")
        );
        let far = since(c, TimeDelta::days(3650)).unwrap();
        assert_eq!(format_ts(far), "0000-01-01T00:00:00Z");
        assert_eq!(parse_ts(&format_ts(far)), Some(far), "RFC 3339 round trip");
    }

    #[test]
    fn since_floors_subseconds() {
        let c = Some(ts("2024-01-15T10:30:00.900Z"));
        let s = since(c, TimeDelta::zero()).unwrap();
        assert_eq!(format_ts(s), "2024-01-15T10:30:00Z");
    }

    #[test]
    fn bad_buffers_are_refused() {
        assert!(buffer_from_hours(-1.0).is_none());
        assert!(buffer_from_hours(f64::NAN).is_none());
        assert!(buffer_from_hours(f64::INFINITY).is_none());
        assert!(buffer_from_hours(1e12).is_none());
    }

    #[test]
    fn the_fast_form_parses_as_chrono_does() {
        let chrono = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let mut cases: Vec<String> = [
            "2024-01-15T10:30:00Z",
            "2024-02-29T23:59:59Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-10T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T23:60:00Z",
            "2016-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "2024-01-15T10:30:00.1Z",
            "2024-01-15T10:30:00.123456789Z",
            "2024-01-15T10:30:00.1234567891Z",
            "2024-01-15T10:30:00.Z",
            "2024-01-15T10:30:00,5Z",
            "2024-01-15t10:30:00Z",
            "2024-01-15 10:30:00Z",
            "2024-01-15T10:30:00z",
            "2024-01-15T10:30:00+00:00",
            "2024-01-15T10:30Z",
            "+2024-01-15T10:30:00Z",
            "2024-1-15T10:30:00ZZ",
            "2024-01-15T1a:30:00Z",
            "2024-01-15T10:30:0-Z",
        ]
        .map(String::from)
        .to_vec();
        // And a spread of valid and invalid dates in the fast form.
        for i in 0..5000u32 {
            let r = i.wrapping_mul(2_654_435_761);
            cases.push(format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z",
                1900 + r % 300,
                r % 14,
                (r >> 4) % 33,
                (r >> 9) % 25,
                (r >> 14) % 61,
                (r >> 20) % 61,
                [".5", "", ".000", ".123456"][(r >> 28) as usize % 4]
            ));
        }
        for c in &cases {
            assert_eq!(parse_ts(c), chrono(c), "{c}");
        }
        assert!(
            parse_utc_fast(b"2024-01-15T10:30:00Z").is_some(),
            "the fast path is taken"
        );
    }

    #[test]
    fn offsets_normalise_to_utc_and_naive_is_refused() {
        assert_eq!(
            format_ts(ts("2024-01-15T12:30:00+02:00")),
            "2024-01-15T10:30:00Z"
        );
        assert!(parse_ts("2024-01-15T10:30:00").is_none());
        assert!(parse_ts("yesterday").is_none());
    }

    #[test]
    fn cursor_is_max_written_floored() {
        let n = next_cursor(
            Some(ts("2024-01-15T10:00:00Z")),
            Some(ts("2024-01-15T11:00:00.750Z")),
            ts("2024-01-16T00:00:00Z"),
            false,
        );
        assert_eq!(format_ts(n.unwrap()), "2024-01-15T11:00:00Z");
    }

    #[test]
    fn cursor_is_clamped_to_run_start() {
        let n = next_cursor(
            None,
            Some(ts("2099-01-01T00:00:00Z")),
            ts("2024-01-16T00:00:00Z"),
            false,
        );
        assert_eq!(format_ts(n.unwrap()), "2024-01-16T00:00:00Z");
    }

    #[test]
    fn cursor_never_moves_backwards_unless_rewinding() {
        let stored = Some(ts("2024-01-15T10:00:00Z"));
        let older = Some(ts("2024-01-10T00:00:00Z"));
        let start = ts("2024-01-16T00:00:00Z");
        assert_eq!(next_cursor(stored, older, start, false), stored);
        assert_eq!(next_cursor(stored, older, start, true), older);
    }

    #[test]
    fn nothing_fetched_leaves_cursor() {
        let stored = Some(ts("2024-01-15T10:00:00Z"));
        assert_eq!(
            next_cursor(stored, None, ts("2024-01-16T00:00:00Z"), true),
            stored
        );
        assert_eq!(
            next_cursor(None, None, ts("2024-01-16T00:00:00Z"), false),
            None
        );
    }

    #[test]
    fn cursor_formats_read_strings_and_numbers() {
        let t = ts("2024-01-15T08:30:00Z");
        assert_eq!(
            CursorFormat::Rfc3339.read("\"2024-01-15T09:30:00+01:00\""),
            Ok(t)
        );
        assert!(CursorFormat::Rfc3339.read("1705307400").is_err());
        assert_eq!(CursorFormat::EpochS.read("1705307400"), Ok(t));
        assert_eq!(CursorFormat::EpochS.read("\"1705307400\""), Ok(t));
        assert_eq!(
            CursorFormat::EpochS.read("1705307400.25"),
            Ok(t + TimeDelta::milliseconds(250))
        );
        assert_eq!(CursorFormat::EpochMs.read("1705307400000"), Ok(t));
        assert_eq!(CursorFormat::EpochMs.read("\"1705307400000\""), Ok(t));
        assert!(CursorFormat::EpochMs.read("\"soon\"").is_err());
        assert!(CursorFormat::EpochS.read("1e300").is_err());
        assert!(CursorFormat::EpochS.read("true").is_err());
        assert_eq!(WireFormat::EpochS.format(t), "1705307400");
        assert_eq!(WireFormat::EpochMs.format(t), "1705307400000");
        assert_eq!(
            WireFormat::Rfc3339Millis.format(t),
            "2024-01-15T08:30:00.000Z"
        );
        assert_eq!(WireFormat::Rfc3339.format(t), "2024-01-15T08:30:00Z");
    }
}
