//! The run summary as CloudWatch metrics, in the Embedded Metric Format: one JSON line that
//! CloudWatch Logs turns into metrics (namespace `ReplaySync`), with the stream (its sync id)
//! as the dimension `Stream` (and the stream with the status, to count runs by outcome) —
//! and, deployed, the stack (`STACK_NAME`, set by the template) before it, so that two
//! stacks syncing the same stream never share metrics nor keep each other's alarms green.
//!
//! In Lambda the line goes to stdout; the local mode writes it to stderr with the logs, so
//! that stdout carries the summary alone.

use serde_json::{Value, json};

use crate::sync::RunSummary;

pub const NAMESPACE: &str = "ReplaySync";

/// The variable naming the stack, whose value becomes the `Stack` dimension.
pub const STACK_VAR: &str = "STACK_NAME";

/// `(metric name, unit, value)` for a summary.
pub fn values(s: &RunSummary) -> Vec<(&'static str, &'static str, f64)> {
    let buffer_s = s.buffer_hours * 3600.0;
    let mut v = vec![
        ("Runs", "Count", 1.0),
        ("RecordsFetched", "Count", s.counts.records_fetched as f64),
        ("RecordsWritten", "Count", s.counts.records_written as f64),
        ("RecordsSkipped", "Count", s.counts.records_skipped as f64),
        ("RecordsStale", "Count", s.counts.records_stale as f64),
        ("RecordsRejected", "Count", s.counts.records_rejected as f64),
        ("LateRecords", "Count", s.counts.late_records as f64),
        (
            "MaxLatenessSeconds",
            "Seconds",
            s.counts.max_lateness_seconds,
        ),
        // The fraction of the buffer the latest row used: the template alarms at 0.8.
        (
            "BufferUsed",
            "None",
            if buffer_s > 0.0 {
                s.counts.max_lateness_seconds / buffer_s
            } else {
                0.0
            },
        ),
        // Audits: rows the buffer missed (the template alarms on any).
        (
            "RecordsMissedByBuffer",
            "Count",
            s.counts.records_missed_by_buffer as f64,
        ),
        (
            "MaxMissedLatenessSeconds",
            "Seconds",
            s.counts.max_missed_lateness_seconds,
        ),
        ("DurationMs", "Milliseconds", s.duration_ms as f64),
    ];
    // How far the stored cursor lags the run's start: it grows while runs return `partial`
    // (or fail) without moving it, which the run counts alone would not show.
    if let Some(age) = cursor_age_seconds(s) {
        v.push(("CursorAgeSeconds", "Seconds", age));
    }
    v
}

/// The run's start less the stored cursor, in seconds (none without a cursor).
fn cursor_age_seconds(s: &RunSummary) -> Option<f64> {
    let cursor = crate::window::parse_ts(s.new_cursor.as_deref()?)?;
    let start = crate::window::parse_ts(&s.started_at)?;
    Some(((start - cursor).num_milliseconds() as f64 / 1000.0).max(0.0))
}

/// The EMF document for `s`, stamped `timestamp_ms`, of the stack `stack` if deployed.
pub fn emf(s: &RunSummary, timestamp_ms: i64, stack: Option<&str>) -> Value {
    let values = values(s);
    let dimensions = match stack {
        Some(_) => json!([["Stack", "Stream"], ["Stack", "Stream", "Status"]]),
        None => json!([["Stream"], ["Stream", "Status"]]),
    };
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimensions,
                "Metrics": values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        },
        "Stream": s.sync_id,
        "Status": s.status.as_str(),
        "RunId": s.run_id,
    });
    if let Some(stack) = stack {
        doc["Stack"] = json!(stack);
    }
    for (name, _, v) in values {
        doc[name] = json!(v);
    }
    doc
}

/// The EMF line for `s`, stamped now, with the stack that `STACK_NAME` names (if any).
pub fn emf_line(s: &RunSummary) -> String {
    let stack = std::env::var(STACK_VAR).ok().filter(|v| !v.is_empty());
    emf(s, chrono::Utc::now().timestamp_millis(), stack.as_deref()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RunRequest;

    #[test]
    fn the_stack_is_a_dimension_and_the_cursor_age_a_metric() {
        let mut s = RunSummary::new(
            "user",
            &RunRequest::scheduled(),
            chrono::TimeDelta::hours(2),
        );
        s.started_at = "2024-01-15T12:00:00.000Z".into();
        s.new_cursor = Some("2024-01-15T10:00:00Z".into());
        let doc = emf(&s, 1, Some("lake-prod"));
        let def = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(def["Dimensions"][0], json!(["Stack", "Stream"]));
        assert_eq!(def["Dimensions"][1], json!(["Stack", "Stream", "Status"]));
        assert_eq!(doc["Stream"], "user");
        assert_eq!(doc["Stack"], "lake-prod");
        assert_eq!(doc["CursorAgeSeconds"], 7200.0);
        assert!(def["Metrics"].to_string().contains("CursorAgeSeconds"));
        // Locally, no stack; no cursor, no age.
        s.new_cursor = None;
        let doc = emf(&s, 1, None);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            json!(["Stream"])
        );
        assert!(doc.get("CursorAgeSeconds").is_none());
        assert!(doc.get("Stack").is_none());
    }
}
