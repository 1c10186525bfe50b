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
    ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses an RFC 3339 timestamp with any offset and normalises it to UTC. Fractional
/// seconds are kept (the cursor floors them later). A timestamp without a zone is refused:
/// it is ambiguous, and guessing could move the cursor by hours.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Converts a number of hours (decimals allowed) to a duration, rejecting negative,
/// non-finite and absurd values (more than ten years).
pub fn buffer_from_hours(hours: f64) -> Option<TimeDelta> {
    if !hours.is_finite() || hours < 0.0 || hours > 24.0 * 366.0 * 10.0 {
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
            .trunc_subsecs(0)
    })
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

#[cfg(test)]
mod tests {
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
}
