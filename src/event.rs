//! What an invocation can ask for: a scheduled run (EventBridge) or a manual run with
//! overrides. Parsing is strict — an unknown or misspelt field is an error naming it, raised
//! before anything is read or written, so a typo can never silently run a normal sync.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::window;

/// How the run was triggered (reported in logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Scheduled,
    Manual,
}

/// A validated invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub trigger: Trigger,
    /// Start from this cursor instead of the stored one (manual replay).
    pub state_override: Option<DateTime<Utc>>,
    /// This run's buffer, replacing `BUFFER_HOURS`.
    pub buffer: Option<TimeDelta>,
    /// Plan and fetch; write nothing, checkpoint nothing.
    pub dry_run: bool,
    /// Allow the checkpoint to move the cursor backwards (only with `state_override`).
    pub rewind: bool,
    /// An audit replay: re-read `AUDIT_HOURS` before the cursor, write only what the lake
    /// lacks, count what the buffer missed.
    pub audit: bool,
    /// The EventBridge event id: a duplicate delivery of one scheduled event carries the
    /// same id, so a second run of it is recognised and skipped.
    pub event_id: Option<String>,
}

impl RunRequest {
    /// A normal scheduled run.
    pub fn scheduled() -> Self {
        RunRequest {
            trigger: Trigger::Scheduled,
            state_override: None,
            buffer: None,
            dry_run: false,
            rewind: false,
            audit: false,
            event_id: None,
        }
    }
}

/// A backfill's start, as the state machine's input or `replay-sync backfill` gives it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillStart {
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_hours: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// One slice of a backfill — or its next part, `read_from` on (`part` > 0).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceTask {
    pub backfill_id: String,
    pub since: String,
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub part: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_from: Option<String>,
}

/// A step of a backfill (the state machine's tasks invoke the function with these).
#[derive(Debug, Clone, PartialEq)]
pub enum BackfillStep {
    /// `{"backfill_plan": {"from": …, "to": …, "slice_hours": …, "max_concurrency": …}}`
    Plan(BackfillStart),
    /// `{"backfill_slice": {"backfill_id": …, "since": …, "until": …, "part": …}}` (a
    /// `done` field beside it, as the state machine's loop passes it, is ignored)
    Slice(SliceTask),
    /// `{"backfill_commit": {"backfill_id": …}}`
    Commit { backfill_id: String },
}

/// The backfill step `event` asks for, if it is one (`None`: a run).
pub fn parse_backfill(event: &Value) -> Option<Result<BackfillStep>> {
    let obj = event.as_object()?;
    let strict = |key: &str, allowed: &[&str]| reject_unknown(obj, allowed, "", key);
    let inner = |key: &str| {
        obj.get(key)
            .cloned()
            .ok_or_else(|| Error::event(key, "missing"))
    };
    let bad = |key: &str, e: serde_json::Error| Error::event(key, e.to_string());
    if obj.contains_key("backfill_plan") {
        return Some(
            strict("a backfill_plan event", &["backfill_plan"]).and_then(|_| {
                serde_json::from_value(inner("backfill_plan")?)
                    .map(BackfillStep::Plan)
                    .map_err(|e| bad("backfill_plan", e))
            }),
        );
    }
    if obj.contains_key("backfill_slice") {
        return Some(
            strict("a backfill_slice event", &["backfill_slice", "done"]).and_then(|_| {
                serde_json::from_value(inner("backfill_slice")?)
                    .map(BackfillStep::Slice)
                    .map_err(|e| bad("backfill_slice", e))
            }),
        );
    }
    if obj.contains_key("backfill_commit") {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct C {
            backfill_id: String,
        }
        return Some(
            strict("a backfill_commit event", &["backfill_commit"]).and_then(|_| {
                serde_json::from_value::<C>(inner("backfill_commit")?)
                    .map(|c| BackfillStep::Commit {
                        backfill_id: c.backfill_id,
                    })
                    .map_err(|e| bad("backfill_commit", e))
            }),
        );
    }
    None
}

/// The field naming a stream (several streams in one deployment): at an event's top, or
/// inside a backfill step's object. [`take_stream`] removes it before the event is parsed.
pub const STREAM_FIELD: &str = "stream";

/// The stream `event` names, if any, and the event without it. A backfill step may carry
/// it inside its object (the state machine's input is the plan's) or beside it; naming two
/// different streams is an error, as is a stream that is not a non-empty string.
pub fn take_stream(event: &Value) -> Result<(Option<String>, Value)> {
    let mut event = event.clone();
    let Some(obj) = event.as_object_mut() else {
        return Ok((None, event));
    };
    let mut found: Option<(String, String)> = None;
    take_one(obj, STREAM_FIELD, &mut found)?;
    // `{"stream": NAME}` alone (a schedule's input, `invoke --stream`) is a normal run.
    if found.is_some() && obj.is_empty() {
        return Ok((found.map(|(name, _)| name), Value::Null));
    }
    for step in ["backfill_plan", "backfill_slice", "backfill_commit"] {
        if let Some(Value::Object(inner)) = obj.get_mut(step) {
            take_one(inner, &format!("{step}.{STREAM_FIELD}"), &mut found)?;
        }
    }
    Ok((found.map(|(name, _)| name), event))
}

/// Removes `obj`'s stream field (at `path`) into `found` (name, where).
fn take_one(
    obj: &mut Map<String, Value>,
    path: &str,
    found: &mut Option<(String, String)>,
) -> Result<()> {
    let Some(v) = obj.remove(STREAM_FIELD) else {
        return Ok(());
    };
    let name = match v {
        Value::String(s) if !s.is_empty() => s,
        other => {
            return Err(Error::event(
                path,
                format!(
                    "expected the stream's name as a non-empty string, got {}",
                    json_kind(&other)
                ),
            ));
        }
    };
    match found {
        Some((first, at)) if *first != name => Err(Error::event(
            path,
            format!("names the stream {name:?}, but {at} names {first:?}"),
        )),
        _ => {
            *found = Some((name, path.to_string()));
            Ok(())
        }
    }
}

/// Fields of the EventBridge envelope (all AWS-controlled), and the stream a schedule's
/// input names (removed before parsing; listed so that an error names it).
const EVENTBRIDGE_FIELDS: &[&str] = &[
    "stream",
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
];
const MANUAL_FIELDS: &[&str] = &[
    "stream",
    "state_override",
    "buffer_hours",
    "dry_run",
    "rewind",
    "audit",
];
const OVERRIDE_FIELDS: &[&str] = &["last_timestamp"];

/// Parses an invocation payload. `null` (an invocation without a payload) is a scheduled run.
pub fn parse_event(event: &Value) -> Result<RunRequest> {
    let obj = match event {
        Value::Null => return Ok(RunRequest::scheduled()),
        Value::Object(o) => o,
        other => {
            return Err(Error::event(
                "event",
                format!("expected a JSON object, got {}", json_kind(other)),
            ));
        }
    };
    if obj.contains_key("detail-type") || obj.contains_key("source") {
        parse_scheduled(obj)
    } else {
        parse_manual(obj)
    }
}

fn parse_scheduled(obj: &Map<String, Value>) -> Result<RunRequest> {
    reject_unknown(
        obj,
        EVENTBRIDGE_FIELDS,
        "",
        "an EventBridge Scheduled Event",
    )?;
    match obj.get("detail-type") {
        Some(Value::String(s)) if s == "Scheduled Event" => Ok(RunRequest {
            event_id: match obj.get("id") {
                None => None,
                Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
                Some(other) => {
                    return Err(Error::event(
                        "id",
                        format!("expected the event id as a non-empty string, got {other}"),
                    ));
                }
            },
            ..RunRequest::scheduled()
        }),
        Some(other) => Err(Error::event(
            "detail-type",
            format!("only \"Scheduled Event\" is handled, got {other}"),
        )),
        None => Err(Error::event(
            "detail-type",
            "an EventBridge event must carry \"detail-type\": \"Scheduled Event\"",
        )),
    }
}

fn parse_manual(obj: &Map<String, Value>) -> Result<RunRequest> {
    reject_unknown(obj, MANUAL_FIELDS, "", "a manual event")?;
    let mut req = RunRequest {
        trigger: Trigger::Manual,
        ..RunRequest::scheduled()
    };

    if let Some(v) = obj.get("state_override") {
        let o = v.as_object().ok_or_else(|| {
            Error::event(
                "state_override",
                format!(
                    "expected an object like {{\"last_timestamp\": \"2024-01-15T10:30:00Z\"}}, got {}",
                    json_kind(v)
                ),
            )
        })?;
        reject_unknown(o, OVERRIDE_FIELDS, "state_override.", "state_override")?;
        let field = "state_override.last_timestamp";
        let ts = match o.get("last_timestamp") {
            Some(Value::String(s)) => window::parse_ts(s).ok_or_else(|| {
                Error::event(
                    field,
                    format!("expected an RFC 3339 timestamp with a zone such as 2024-01-15T10:30:00Z, got {s:?}"),
                )
            })?,
            Some(other) => {
                return Err(Error::event(
                    field,
                    format!("expected an RFC 3339 string, got {}", json_kind(other)),
                ));
            }
            None => return Err(Error::event(field, "is required inside state_override")),
        };
        req.state_override = Some(ts);
    }

    if let Some(v) = obj.get("buffer_hours") {
        let hours = v.as_f64().ok_or_else(|| {
            Error::event(
                "buffer_hours",
                format!(
                    "expected a non-negative number of hours, got {}",
                    json_kind(v)
                ),
            )
        })?;
        req.buffer = Some(window::buffer_from_hours(hours).ok_or_else(|| {
            Error::event(
                "buffer_hours",
                format!("expected a non-negative number of hours, got {hours}"),
            )
        })?);
    }

    req.dry_run = bool_field(obj, "dry_run")?;
    req.rewind = bool_field(obj, "rewind")?;
    req.audit = bool_field(obj, "audit")?;
    if req.audit && (req.state_override.is_some() || req.buffer.is_some()) {
        return Err(Error::event(
            "audit",
            "an audit re-reads AUDIT_HOURS before the stored cursor: not together with state_override or buffer_hours",
        ));
    }
    if req.rewind && req.state_override.is_none() {
        return Err(Error::event(
            "rewind",
            "only allowed together with state_override (it lets that override move the cursor backwards)",
        ));
    }
    Ok(req)
}

fn bool_field(obj: &Map<String, Value>, name: &str) -> Result<bool> {
    match obj.get(name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(Error::event(
            name,
            format!("expected true or false, got {}", json_kind(other)),
        )),
    }
}

fn reject_unknown(
    obj: &Map<String, Value>,
    allowed: &[&str],
    path: &str,
    what: &str,
) -> Result<()> {
    // Report the first unknown field in a stable (sorted) order.
    let mut unknown: Vec<&String> = obj
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(k) => Err(Error::event(
            format!("{path}{k}"),
            format!(
                "unknown field in {what}; expected one of: {}",
                allowed.join(", ")
            ),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(v: Value) -> String {
        match parse_event(&v) {
            Err(Error::Event { field, .. }) => field,
            other => panic!("expected an event error for {v}, got {other:?}"),
        }
    }

    #[test]
    fn a_stream_is_taken_from_the_top_or_a_backfill_step() {
        let (name, rest) = take_stream(&json!({"stream": "users", "dry_run": true})).unwrap();
        assert_eq!(name.as_deref(), Some("users"));
        assert_eq!(rest, json!({"dry_run": true}));
        let plan = json!({"backfill_plan": {"stream": "orders", "from": "2024-01-01T00:00:00Z"}});
        let (name, rest) = take_stream(&plan).unwrap();
        assert_eq!(name.as_deref(), Some("orders"));
        assert_eq!(
            rest,
            json!({"backfill_plan": {"from": "2024-01-01T00:00:00Z"}})
        );
        let slice =
            json!({"stream": "orders", "backfill_slice": {"backfill_id": "b"}, "done": false});
        let (name, _) = take_stream(&slice).unwrap();
        assert_eq!(name.as_deref(), Some("orders"));
        let (name, rest) = take_stream(&Value::Null).unwrap();
        assert_eq!((name, rest), (None, Value::Null));
        let two = json!({"stream": "a", "backfill_commit": {"backfill_id": "b", "stream": "c"}});
        match take_stream(&two) {
            Err(Error::Event { field, message }) => {
                assert_eq!(field, "backfill_commit.stream");
                assert!(message.contains("\"a\""), "{message}");
            }
            other => panic!("{other:?}"),
        }
        for bad in [json!({"stream": ""}), json!({"stream": 3})] {
            assert!(
                matches!(take_stream(&bad), Err(Error::Event { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn scheduled_event_is_a_normal_run() {
        let ev = json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2024-01-15T10:30:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/replay-sync"], "detail": {}
        });
        let req = parse_event(&ev).unwrap();
        assert_eq!(
            req.event_id.as_deref(),
            Some("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"),
            "the id recognises duplicate deliveries"
        );
        assert_eq!(
            RunRequest {
                event_id: None,
                ..req
            },
            RunRequest::scheduled()
        );
        assert_eq!(parse_event(&Value::Null).unwrap(), RunRequest::scheduled());
        let mut bad = ev.clone();
        bad["id"] = json!(42);
        assert_eq!(field_of(bad), "id");
    }

    #[test]
    fn manual_event_with_every_field() {
        let r = parse_event(&json!({
            "state_override": {"last_timestamp": "2024-01-15T10:30:00Z"},
            "buffer_hours": 6, "dry_run": true, "rewind": true
        }))
        .unwrap();
        assert_eq!(r.trigger, Trigger::Manual);
        assert_eq!(
            r.state_override.map(window::format_ts).as_deref(),
            Some("2024-01-15T10:30:00Z")
        );
        assert_eq!(r.buffer, Some(TimeDelta::hours(6)));
        assert!(r.dry_run && r.rewind);
        let empty = parse_event(&json!({})).unwrap();
        assert_eq!(empty.trigger, Trigger::Manual);
        assert!(!empty.dry_run && empty.state_override.is_none());
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(field_of(json!({"dryrun": true})), "dryrun");
        assert_eq!(field_of(json!({"dry_run": "yes"})), "dry_run");
        assert_eq!(field_of(json!({"buffer_hours": -1})), "buffer_hours");
        assert_eq!(field_of(json!({"buffer_hours": "6"})), "buffer_hours");
        assert_eq!(
            field_of(json!({"state_override": {"last_timestamp": "yesterday"}})),
            "state_override.last_timestamp"
        );
        assert_eq!(
            field_of(json!({"state_override": {"last_timestamp": "2024-01-15T10:30:00"}})),
            "state_override.last_timestamp"
        );
        assert_eq!(
            field_of(
                json!({"state_override": {"last_timestamp": "2024-01-15T10:30:00Z", "version": 3}})
            ),
            "state_override.version"
        );
        assert_eq!(
            field_of(json!({"state_override": {}})),
            "state_override.last_timestamp"
        );
        assert_eq!(
            field_of(json!({"state_override": "2024-01-15T10:30:00Z"})),
            "state_override"
        );
        assert_eq!(field_of(json!({"rewind": true})), "rewind");
        assert_eq!(field_of(json!([1, 2])), "event");
        assert_eq!(
            field_of(json!({"detail-type": "Object Created", "source": "aws.s3"})),
            "detail-type"
        );
        // A manual override smuggled into a scheduled event must not be ignored.
        assert_eq!(
            field_of(
                json!({"detail-type": "Scheduled Event", "source": "aws.events", "dry_run": true})
            ),
            "dry_run"
        );
    }

    #[test]
    fn message_says_what_is_expected() {
        let e = parse_event(&json!({"bufer_hours": 6}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bufer_hours") && e.contains("buffer_hours"),
            "{e}"
        );
    }

    #[test]
    fn backfill_steps_are_parsed_strictly() {
        let plan = json!({"backfill_plan": {"from": "2024-01-01T00:00:00Z", "slice_hours": 6}});
        match parse_backfill(&plan) {
            Some(Ok(BackfillStep::Plan(p))) => {
                assert_eq!(p.from, "2024-01-01T00:00:00Z");
                assert_eq!(p.slice_hours, Some(6.0));
                assert_eq!(p.to, None);
            }
            other => panic!("{other:?}"),
        }
        // The state machine's loop passes `done` beside the slice.
        let slice = json!({"done": false, "backfill_slice": {"backfill_id": "b", "since": "2024-01-01T00:00:00Z", "part": 2}});
        assert!(matches!(
            parse_backfill(&slice),
            Some(Ok(BackfillStep::Slice(SliceTask { part: 2, .. })))
        ));
        let commit = json!({"backfill_commit": {"backfill_id": "b"}});
        assert!(matches!(
            parse_backfill(&commit),
            Some(Ok(BackfillStep::Commit { .. }))
        ));
        for bad in [
            json!({"backfill_plan": {"from": "x", "form": "typo"}}),
            json!({"backfill_plan": {"to": "2024-01-01T00:00:00Z"}}),
            json!({"backfill_commit": {"backfill_id": "b"}, "dry_run": true}),
            json!({"backfill_slice": {"since": "2024-01-01T00:00:00Z"}}),
        ] {
            assert!(
                matches!(parse_backfill(&bad), Some(Err(Error::Event { .. }))),
                "{bad}"
            );
        }
        assert!(parse_backfill(&json!({"dry_run": true})).is_none(), "a run");
    }

    #[test]
    fn an_audit_is_a_manual_event_alone() {
        let req = parse_event(&json!({"audit": true})).unwrap();
        assert!(req.audit && req.trigger == Trigger::Manual);
        assert_eq!(field_of(json!({"audit": "yes"})), "audit");
        assert_eq!(
            field_of(
                json!({"audit": true, "state_override": {"last_timestamp": "2024-01-15T10:30:00Z"}})
            ),
            "audit"
        );
        assert_eq!(
            field_of(json!({"audit": true, "buffer_hours": 48})),
            "audit"
        );
        assert!(
            parse_event(&json!({"audit": true, "dry_run": true}))
                .unwrap()
                .dry_run
        );
    }
}
