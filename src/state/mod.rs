//! Where the sync state (the cursor and its version) lives.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::error::Result;

pub mod dynamodb;
pub mod file;

/// The state of one sync id. An absent item reads as the default: version 0, no cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    /// `last_timestamp`: everything updated before it has been synced (minus replica lag).
    pub cursor: Option<DateTime<Utc>>,
    /// Incremented by every checkpoint; the checkpoint is conditioned on it.
    pub version: u64,
}

/// The outcome of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Checkpoint {
    /// The state now holds the new cursor at this version.
    Committed { version: u64 },
    /// The stored version was not the expected one: another run checkpointed first. Nothing
    /// was changed.
    Conflict,
}

/// A store of [`SyncState`]s keyed by sync id.
pub trait StateStore: Send + Sync {
    /// Reads the state with a strongly consistent read. An absent item is not an error.
    fn load(&self, sync_id: &str) -> impl Future<Output = Result<SyncState>> + Send;

    /// Atomically replaces the state if, and only if, its version is still `expected`
    /// (an absent item has version 0): stores `cursor` (left unset when `None`) and
    /// `expected + 1`, and returns [`Checkpoint::Committed`]. Otherwise changes nothing and
    /// returns [`Checkpoint::Conflict`]. `run_id` is recorded for operators.
    fn checkpoint(
        &self,
        sync_id: &str,
        expected: u64,
        cursor: Option<DateTime<Utc>>,
        run_id: &str,
    ) -> impl Future<Output = Result<Checkpoint>> + Send;
}
