//! The DynamoDB state store. One item per sync id, partition key `sync_id` (string):
//! `last_timestamp` (S, RFC 3339 UTC), `version` (N), `updated_at` (S), `last_run_id` (S).
//!
//! Reads are strongly consistent. The checkpoint is one `UpdateItem` whose
//! `ConditionExpression` requires the version the run loaded; a
//! `ConditionalCheckFailedException` becomes [`Checkpoint::Conflict`].

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;
use chrono::{DateTime, Utc};

use super::{Checkpoint, StateStore, SyncState};
use crate::error::{Error, Result};
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

impl StateStore for DynamoStateStore {
    async fn load(&self, sync_id: &str) -> Result<SyncState> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("sync_id", AttributeValue::S(sync_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                Error::state(format!(
                    "GetItem on table {} failed: {}",
                    self.table,
                    DisplayErrorContext(&e)
                ))
            })?;
        let Some(item) = out.item() else {
            return Ok(SyncState::default());
        };
        let cursor = match item.get("last_timestamp") {
            None | Some(AttributeValue::Null(_)) => None,
            Some(AttributeValue::S(s)) => Some(window::parse_ts(s).ok_or_else(|| {
                Error::state(format!(
                    "item {sync_id} in {}: last_timestamp {s:?} is not an RFC 3339 timestamp",
                    self.table
                ))
            })?),
            Some(other) => {
                return Err(Error::state(format!(
                    "item {sync_id} in {}: last_timestamp must be a string, got {other:?}",
                    self.table
                )));
            }
        };
        let version = match item.get("version") {
            None => 0,
            Some(AttributeValue::N(n)) => n.parse::<u64>().map_err(|_| {
                Error::state(format!(
                    "item {sync_id} in {}: version {n:?} is not a whole number",
                    self.table
                ))
            })?,
            Some(other) => {
                return Err(Error::state(format!(
                    "item {sync_id} in {}: version must be a number, got {other:?}",
                    self.table
                )));
            }
        };
        Ok(SyncState { cursor, version })
    }

    async fn checkpoint(
        &self,
        sync_id: &str,
        expected: u64,
        cursor: Option<DateTime<Utc>>,
        run_id: &str,
    ) -> Result<Checkpoint> {
        let mut set = vec!["#v = :next", "#u = :now", "#r = :run"];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("sync_id", AttributeValue::S(sync_id.to_string()))
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#u", "updated_at")
            .expression_attribute_names("#r", "last_run_id")
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((expected + 1).to_string()))
            .expression_attribute_values(":now", AttributeValue::S(window::format_ts(Utc::now())))
            .expression_attribute_values(":run", AttributeValue::S(run_id.to_string()));
        if let Some(c) = cursor {
            set.push("#t = :ts");
            req = req
                .expression_attribute_names("#t", "last_timestamp")
                .expression_attribute_values(":ts", AttributeValue::S(window::format_ts(c)));
        }
        let condition = if expected == 0 {
            "attribute_not_exists(#v) OR #v = :expected"
        } else {
            "#v = :expected"
        };
        let result = req
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression(condition)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Checkpoint::Committed {
                version: expected + 1,
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(Checkpoint::Conflict)
            }
            Err(e) => Err(Error::state(format!(
                "UpdateItem on table {} failed: {}",
                self.table,
                DisplayErrorContext(&e)
            ))),
        }
    }
}
