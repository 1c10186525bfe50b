//! The DynamoDB state store. One item per sync id, partition key `sync_id` (string):
//! `last_timestamp` (S, RFC 3339 UTC), `version` (N), `updated_at` (S), `last_run_id` (S),
//! `last_invocation` (S), `fingerprints` (S, the key of the fingerprint set), `done_ranges`
//! (S, `since/until,…`: ranges a partial run completed above the cursor), while leased `lease_owner` (S) and `lease_expires_at` (S, RFC 3339
//! with milliseconds), and the plan `plan_version` (N), `plan_since` (S), `plan_until` (S).
//!
//! Reads are strongly consistent. The lease and the checkpoint are each one `UpdateItem`
//! whose `ConditionExpression` requires what the run read (version, lease owner); a
//! `ConditionalCheckFailedException` becomes "not taken" / [`Checkpoint::Conflict`].

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Utc};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;

use super::{Checkpoint, Commit, Lease, Plan, StateStore, SyncState};
use tracing::warn;

use crate::error::{Cause, Error, Result};
use crate::window;

#[derive(Debug, Clone)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
}

impl DynamoStateStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStateStore {
            client,
            table: table.into(),
        }
    }
}

impl DynamoStateStore {
    fn key(&self, sync_id: &str) -> (String, AttributeValue) {
        (
            "sync_id".to_string(),
            AttributeValue::S(sync_id.to_string()),
        )
    }

    /// The error of a failed call, classified here where the SDK answered: what to fix comes
    /// first, the SDK's own account after it.
    fn failed<E, R>(&self, op: &str, e: aws_sdk_dynamodb::error::SdkError<E, R>) -> Error
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        use aws_sdk_dynamodb::error::SdkError;
        let dispatch = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_));
        let code = e.as_service_error().and_then(|s| s.code());
        let cause = Cause::of(code, dispatch);
        let hint = cause.hint(
            "STATE_STORE",
            "dynamodb:GetItem and dynamodb:UpdateItem on the table",
        );
        Error::state(format!(
            "{op} on table {} failed: {}{}",
            self.table,
            hint.map(|h| format!("{h} — ")).unwrap_or_default(),
            DisplayErrorContext(&e)
        ))
        .caused(cause, e)
    }
}

/// Reads a string attribute (absent or NULL: `None`).
fn string<'a>(item: &'a Item, name: &str, where_: &str) -> Result<Option<&'a str>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s)),
        Some(other) => Err(Error::state(format!(
            "{where_}: {name} must be a string, got {other:?}"
        ))),
    }
}

fn timestamp(item: &Item, name: &str, where_: &str) -> Result<Option<DateTime<Utc>>> {
    string(item, name, where_)?
        .map(|s| {
            window::parse_ts(s).ok_or_else(|| {
                Error::state(format!(
                    "{where_}: {name} {s:?} is not an RFC 3339 timestamp"
                ))
            })
        })
        .transpose()
}

fn number(item: &Item, name: &str, where_: &str) -> Result<Option<u64>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(n)) => n
            .parse::<u64>()
            .map(Some)
            .map_err(|_| Error::state(format!("{where_}: {name} {n:?} is not a whole number"))),
        Some(other) => Err(Error::state(format!(
            "{where_}: {name} must be a number, got {other:?}"
        ))),
    }
}

type Item = std::collections::HashMap<String, AttributeValue>;

fn is_condition_failure<E: ProvideErrorMetadata, R>(
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

impl StateStore for DynamoStateStore {
    async fn load(&self, sync_id: &str) -> Result<SyncState> {
        let (k, v) = self.key(sync_id);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(k, v)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("GetItem", e))?;
        let Some(item) = out.item() else {
            return Ok(SyncState::default());
        };
        let at = format!("item {sync_id} in {}", self.table);
        let lease = match (
            string(item, "lease_owner", &at)?,
            timestamp(item, "lease_expires_at", &at)?,
        ) {
            (Some(owner), Some(expires_at)) => Some(Lease {
                owner: owner.to_string(),
                expires_at,
            }),
            (None, None) => None,
            (owner, _) => {
                warn!(
                    sync_id = %sync_id,
                    table = %self.table,
                    has_owner = owner.is_some(),
                    "the state item holds half a lease (lease_owner and lease_expires_at go together): read as no lease; the next lease replaces it"
                );
                None
            }
        };
        let plan = match (
            number(item, "plan_version", &at)?,
            timestamp(item, "plan_until", &at)?,
        ) {
            (Some(version), Some(until)) => Some(Plan {
                version,
                since: timestamp(item, "plan_since", &at)?,
                until,
            }),
            _ => None,
        };
        Ok(SyncState {
            cursor: timestamp(item, "last_timestamp", &at)?,
            version: number(item, "version", &at)?.unwrap_or(0),
            lease,
            plan,
            last_invocation: string(item, "last_invocation", &at)?.map(str::to_string),
            fingerprints: string(item, "fingerprints", &at)?.map(str::to_string),
            done: super::DoneRanges::parse(string(item, "done_ranges", &at)?),
        })
    }

    async fn try_lease(
        &self,
        sync_id: &str,
        seen: &SyncState,
        lease: &Lease,
        plan: &Plan,
    ) -> Result<bool> {
        let (k, v) = self.key(sync_id);
        let mut set = vec!["#lo = :owner", "#le = :expires", "#pv = :pv", "#pu = :pu"];
        let mut remove = vec![];
        let mut condition = vec![version_condition(seen.version)];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#lo", "lease_owner")
            .expression_attribute_names("#le", "lease_expires_at")
            .expression_attribute_names("#pv", "plan_version")
            .expression_attribute_names("#ps", "plan_since")
            .expression_attribute_names("#pu", "plan_until")
            .expression_attribute_values(":expected", AttributeValue::N(seen.version.to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .expression_attribute_values(
                ":expires",
                AttributeValue::S(window::format_millis(lease.expires_at)),
            )
            .expression_attribute_values(":pv", AttributeValue::N(plan.version.to_string()))
            .expression_attribute_values(
                ":pu",
                AttributeValue::S(window::format_millis(plan.until)),
            );
        match plan.since {
            Some(since) => {
                set.push("#ps = :ps");
                req = req.expression_attribute_values(
                    ":ps",
                    AttributeValue::S(window::format_ts(since)),
                );
            }
            None => remove.push("#ps"),
        }
        match &seen.lease {
            // No lease, or half of one (an owner without an expiry, or the reverse, as a
            // hand edit can leave): `load` reads both as no lease, and so does this.
            None => condition
                .push("(attribute_not_exists(#lo) OR attribute_not_exists(#le))".to_string()),
            Some(l) => {
                condition.push("#lo = :seen_owner AND #le = :seen_expires".to_string());
                req = req
                    .expression_attribute_values(":seen_owner", AttributeValue::S(l.owner.clone()))
                    .expression_attribute_values(
                        ":seen_expires",
                        AttributeValue::S(window::format_millis(l.expires_at)),
                    );
            }
        }
        let mut update = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            update.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let result = req
            .update_expression(update)
            .condition_expression(condition.join(" AND "))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(self.failed("UpdateItem (lease)", e)),
        }
    }

    async fn checkpoint(&self, sync_id: &str, commit: &Commit<'_>) -> Result<Checkpoint> {
        let (k, v) = self.key(sync_id);
        let mut set = vec!["#v = :next", "#u = :now", "#r = :run"];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#u", "updated_at")
            .expression_attribute_names("#r", "last_run_id")
            .expression_attribute_names("#lo", "lease_owner")
            .expression_attribute_names("#le", "lease_expires_at")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(commit.expected.to_string()),
            )
            .expression_attribute_values(
                ":next",
                AttributeValue::N((commit.expected + 1).to_string()),
            )
            .expression_attribute_values(":now", AttributeValue::S(window::format_ts(Utc::now())))
            .expression_attribute_values(":run", AttributeValue::S(commit.run_id.to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(commit.owner.to_string()));
        if let Some(key) = commit.fingerprints {
            set.push("#f = :fp");
            req = req
                .expression_attribute_names("#f", "fingerprints")
                .expression_attribute_values(":fp", AttributeValue::S(key.to_string()));
        }
        let mut remove = vec!["#lo", "#le", "#d"];
        req = req.expression_attribute_names("#d", "done_ranges");
        if let Some(done) = commit.done.format() {
            remove.pop();
            set.push("#d = :done");
            req = req.expression_attribute_values(":done", AttributeValue::S(done));
        }
        if let Some(inv) = commit.invocation {
            set.push("#i = :inv");
            req = req
                .expression_attribute_names("#i", "last_invocation")
                .expression_attribute_values(":inv", AttributeValue::S(inv.to_string()));
        }
        if let Some(c) = commit.cursor {
            set.push("#t = :ts");
            req = req
                .expression_attribute_names("#t", "last_timestamp")
                .expression_attribute_values(":ts", AttributeValue::S(window::format_ts(c)));
        }
        let condition = format!("{} AND #lo = :owner", version_condition(commit.expected));
        let result = req
            .update_expression(format!(
                "SET {} REMOVE {}",
                set.join(", "),
                remove.join(", ")
            ))
            .condition_expression(condition)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Checkpoint::Committed {
                version: commit.expected + 1,
            }),
            Err(e) if is_condition_failure(&e) => Ok(Checkpoint::Conflict),
            Err(e) => Err(self.failed("UpdateItem (checkpoint)", e)),
        }
    }

    async fn release(&self, sync_id: &str, owner: &str) -> Result<()> {
        let (k, v) = self.key(sync_id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .expression_attribute_names("#lo", "lease_owner")
            .expression_attribute_names("#le", "lease_expires_at")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .update_expression("REMOVE #lo, #le")
            .condition_expression("#lo = :owner")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(self.failed("UpdateItem (release)", e)),
        }
    }
}

/// The item has `version` (an absent item, or one holding only a lease, has version 0).
fn version_condition(version: u64) -> String {
    if version == 0 {
        "(attribute_not_exists(#v) OR #v = :expected)".to_string()
    } else {
        "#v = :expected".to_string()
    }
}
