//! The state store chosen by `STATE_STORE`: one type over both adapters, built from the
//! configured location.

use crate::config::StateLocation;
use crate::error::{Error, Result};

use super::dynamodb::DynamoStateStore;
use super::file::FileStateStore;
use super::{Checkpoint, Commit, Lease, Plan, StateStore, SyncState};

/// The state store chosen by `STATE_STORE`.
#[derive(Debug, Clone)]
pub enum AnyState {
    File(FileStateStore),
    DynamoDb(DynamoStateStore),
}

impl StateStore for AnyState {
    async fn load(&self, sync_id: &str) -> Result<SyncState> {
        match self {
            AnyState::File(s) => s.load(sync_id).await,
            AnyState::DynamoDb(s) => s.load(sync_id).await,
        }
    }

    async fn try_lease(
        &self,
        sync_id: &str,
        seen: &SyncState,
        lease: &Lease,
        plan: &Plan,
    ) -> Result<bool> {
        match self {
            AnyState::File(s) => s.try_lease(sync_id, seen, lease, plan).await,
            AnyState::DynamoDb(s) => s.try_lease(sync_id, seen, lease, plan).await,
        }
    }

    async fn checkpoint(&self, sync_id: &str, commit: &Commit<'_>) -> Result<Checkpoint> {
        match self {
            AnyState::File(s) => s.checkpoint(sync_id, commit).await,
            AnyState::DynamoDb(s) => s.checkpoint(sync_id, commit).await,
        }
    }

    async fn release(&self, sync_id: &str, owner: &str) -> Result<()> {
        match self {
            AnyState::File(s) => s.release(sync_id, owner).await,
            AnyState::DynamoDb(s) => s.release(sync_id, owner).await,
        }
    }
}

impl AnyState {
    /// The store at `location`. `aws` is the loaded AWS configuration, needed (and loaded by
    /// the caller, once) only for a DynamoDB location.
    pub fn open(location: &StateLocation, aws: Option<&aws_config::SdkConfig>) -> Result<Self> {
        match location {
            StateLocation::File { path } => Ok(AnyState::File(FileStateStore::new(path))),
            StateLocation::DynamoDb { table } => {
                let aws = aws.ok_or_else(|| {
                    Error::config(
                        "STATE_STORE",
                        "a DynamoDB table needs the AWS configuration",
                    )
                })?;
                Ok(AnyState::DynamoDb(DynamoStateStore::new(
                    aws_sdk_dynamodb::Client::new(aws),
                    table,
                )))
            }
        }
    }
}
