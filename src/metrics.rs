//! The run summary as CloudWatch metrics, in the Embedded Metric Format: one JSON line that
//! CloudWatch Logs turns into metrics (namespace `ReplaySync`), with the sync id as the
//! dimension (and the sync id with the status, to count runs by outcome).
//!
//! In Lambda the line goes to stdout; the local mode writes it to stderr with the logs, so
//! that stdout carries the summary alone.

use serde_json::{Value, json};

use crate::sync::RunSummary;

pub const NAMESPACE: &str = "ReplaySync";

/// `(metric name, unit, value)` for a summary.
pub fn values(s: &RunSummary) -> Vec<(&'static str, &'static str, f64)> {
    let buffer_s = s.buffer_hours * 3600.0;
    vec![
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
    ]
}

/// The EMF document for `s`, stamped `timestamp_ms`.
pub fn emf(s: &RunSummary, timestamp_ms: i64) -> Value {
    let values = values(s);
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["SyncId"], ["SyncId", "Status"]],
                "Metrics": values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        },
        "SyncId": s.sync_id,
        "Status": s.status.as_str(),
        "RunId": s.run_id,
    });
    for (name, _, v) in values {
        doc[name] = json!(v);
    }
    doc
}

/// The EMF line for `s`, stamped now.
pub fn emf_line(s: &RunSummary) -> String {
    emf(s, chrono::Utc::now().timestamp_millis()).to_string()
}
