//! Where the sync state (the cursor, its version, the lease and the current plan) lives.
//!
//! # The protocol
//!
//! A run that writes takes a **lease** on the state item first ([`acquire`]): a conditional
//! write that succeeds only if the item is exactly as the run read it (same version, same
//! lease). The lease names its owner (the invocation's request id) and expires with the
//! invocation's deadline. A run that finds a live lease of another owner does nothing
//! (`skipped`); an expired lease may be taken over; the owner itself (a retry of the same
//! invocation) may take its own lease back.
//!
//! The **checkpoint** is fenced on both the version the run read and its lease: a holder
//! whose lease was taken over after it expired cannot move the cursor. It stores the cursor,
//! increments the version, records the invocation (so a duplicate delivery of the same event
//! is recognised) and releases the lease, all in one conditional write.
//!
//! The **plan** (`plan_version`, `plan_since`, `plan_until`) is stored with the lease and
//! outlives it: a run that plans the same window from the same version — a retry after a
//! crash or a failure — reuses `plan_until`, so it produces the same keys and the same bytes.

use std::future::Future;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use crate::error::Result;
use crate::window::{self, Span};

pub mod any;
pub mod dynamodb;
pub mod file;

/// The state of one sync id. An absent item reads as the default: version 0, no cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    /// `last_timestamp`: everything updated before it has been synced (minus replica lag).
    pub cursor: Option<DateTime<Utc>>,
    /// Incremented by every checkpoint; checkpoints and leases are conditioned on it.
    pub version: u64,
    /// The run currently holding the state, if any (it may have expired).
    pub lease: Option<Lease>,
    /// The window last planned (kept after the lease is released).
    pub plan: Option<Plan>,
    /// The invocation that took the last checkpoint (event id or request id).
    pub last_invocation: Option<String>,
    /// The output key of the fingerprint set the last checkpoint committed
    /// ([`crate::fingerprint`]).
    pub fingerprints: Option<String>,
    /// Ranges above the cursor that a run which stopped early fetched completely (slices done
    /// beyond a gap), cut to what no row within the buffer can still arrive in: the next run
    /// from this version need not fetch them again (`done_ranges`).
    pub done: DoneRanges,
}

/// Ranges complete beyond a gap, and the buffer they were cut with: they hold only for a
/// run whose buffer is no longer than that (a row later than the old buffer may still arrive
/// inside a longer one). Stored as `buffer_ms=7200000;A/B,C/D`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoneRanges {
    pub spans: Vec<Span>,
    /// The buffer in force when they were cut (`None`: unknown, as in a value stored before
    /// it was recorded: such ranges are read again).
    pub buffer: Option<TimeDelta>,
}

impl DoneRanges {
    /// `spans`, cut with `buffer`.
    pub fn new(spans: Vec<Span>, buffer: TimeDelta) -> Self {
        DoneRanges {
            spans,
            buffer: Some(buffer),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The ranges a run whose buffer is `buffer` may skip: all of them when they were cut
    /// with a buffer at least as long, none otherwise.
    pub fn usable(&self, buffer: TimeDelta) -> &[Span] {
        match self.buffer {
            Some(cut) if cut >= buffer => &self.spans,
            _ => &[],
        }
    }

    /// The stored form (`None`: nothing to store).
    pub fn format(&self) -> Option<String> {
        if self.spans.is_empty() {
            return None;
        }
        let list = Span::format_list(&self.spans);
        Some(match self.buffer {
            Some(b) => format!("buffer_ms={};{list}", b.num_milliseconds()),
            None => list,
        })
    }

    /// Reads a stored `done_ranges` value. One that cannot be read counts as none (and says
    /// so): that costs the next run a re-read, never a row.
    pub fn parse(stored: Option<&str>) -> DoneRanges {
        let Some(s) = stored else {
            return DoneRanges::default();
        };
        let (buffer, list) = match s.split_once(';') {
            Some((head, list)) => match head
                .strip_prefix("buffer_ms=")
                .and_then(|ms| ms.trim().parse::<i64>().ok())
                .and_then(TimeDelta::try_milliseconds)
            {
                Some(b) => (Some(b), list),
                None => (None, "?"),
            },
            None => (None, s),
        };
        match Span::parse_list(list) {
            Some(spans) => DoneRanges { spans, buffer },
            None => {
                tracing::warn!(done_ranges = %s, "cannot read done_ranges; the next run fetches them again");
                DoneRanges::default()
            }
        }
    }
}

/// A claim on the state item by one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The request id of the invocation holding it.
    pub owner: String,
    /// After this instant another run may take the lease over (stored in milliseconds).
    pub expires_at: DateTime<Utc>,
}

/// The window a run planned from a given version: `[since, until]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub version: u64,
    /// `None`: a full sync.
    pub since: Option<DateTime<Utc>>,
    /// The planning run's start: bounds the cursor and stamps `_synced_at`.
    pub until: DateTime<Utc>,
}

/// The outcome of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Checkpoint {
    /// The state now holds the new cursor at this version, and the lease is released.
    Committed { version: u64 },
    /// The stored version was not the expected one, or the lease is no longer ours:
    /// another run checkpointed or took over. Nothing was changed.
    Conflict,
}

/// What a checkpoint stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit<'a> {
    /// The version the run read; the item must still have it.
    pub expected: u64,
    /// The lease owner; the item must still be leased to it.
    pub owner: &'a str,
    /// The new cursor (left unchanged when `None`).
    pub cursor: Option<DateTime<Utc>>,
    /// Recorded for operators.
    pub run_id: &'a str,
    /// Recorded so that a duplicate of this invocation is recognised (`None`: a partial
    /// run, whose duplicate should go on with the work; the previous value stays).
    pub invocation: Option<&'a str>,
    /// The fingerprint set written for the next run (left unchanged when `None`).
    pub fingerprints: Option<&'a str>,
    /// Replaces the stored done ranges (empty: removes them).
    pub done: &'a DoneRanges,
}

/// A store of [`SyncState`]s keyed by sync id.
pub trait StateStore: Send + Sync {
    /// Reads the state with a strongly consistent read. An absent item is not an error.
    fn load(&self, sync_id: &str) -> impl Future<Output = Result<SyncState>> + Send;

    /// Atomically sets `lease` and `plan` if, and only if, the item still has `seen`'s
    /// version and `seen`'s lease (owner and expiry; or none). Returns whether it did.
    fn try_lease(
        &self,
        sync_id: &str,
        seen: &SyncState,
        lease: &Lease,
        plan: &Plan,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Atomically, if and only if the item has version `commit.expected` and is leased to
    /// `commit.owner`: stores the cursor (left unset when `None`), version `expected + 1`,
    /// the run and invocation ids, the fingerprint key and the done ranges, removes the
    /// lease, and returns
    /// [`Checkpoint::Committed`].
    /// Otherwise changes nothing and returns [`Checkpoint::Conflict`].
    fn checkpoint(
        &self,
        sync_id: &str,
        commit: &Commit<'_>,
    ) -> impl Future<Output = Result<Checkpoint>> + Send;

    /// Removes the lease if `owner` still holds it (a failed run lets the next one start at
    /// once). Leaves the plan, so a retry reuses it.
    fn release(&self, sync_id: &str, owner: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Who asks for the lease.
#[derive(Debug, Clone)]
pub struct Claimant<'a> {
    /// The request id: the lease owner.
    pub owner: &'a str,
    /// The event id (scheduled events) or the request id: a duplicate has the same one.
    pub invocation: &'a str,
    /// The clock reading at the start of the run.
    pub now: DateTime<Utc>,
    /// When the lease expires (the invocation's deadline).
    pub expires_at: DateTime<Utc>,
    /// Replaces the stored cursor as the start of the window (manual replay).
    pub state_override: Option<DateTime<Utc>>,
    /// The window is `[cursor − buffer, now]`.
    pub buffer: TimeDelta,
}

/// The result of [`acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The run holds the lease on `state` and must work on `plan`.
    Leased { state: SyncState, plan: Plan },
    /// Another run holds a live lease.
    Held { state: SyncState, lease: Lease },
    /// This invocation already took the last checkpoint: a duplicate delivery or a retry
    /// after a crash that followed the checkpoint.
    Done { state: SyncState },
}

/// Attempts at the optimistic lease loop before reporting contention as a held lease.
const LEASE_ATTEMPTS: usize = 5;

/// Takes the lease on `sync_id` for `who`: read the item, decide, write conditioned on what
/// was read, and on a lost race read again.
pub async fn acquire<S: StateStore + ?Sized>(
    store: &S,
    sync_id: &str,
    who: &Claimant<'_>,
) -> Result<Acquired> {
    let mut state = store.load(sync_id).await?;
    for _ in 0..LEASE_ATTEMPTS {
        if state.version == u64::MAX {
            // The checkpoint could not increment it (it would wrap to 0 and undo fencing).
            return Err(crate::error::Error::state(format!(
                "the state item {sync_id} has version {}, which a checkpoint cannot increment: reset `version` (and nothing else) to a small number",
                u64::MAX
            )));
        }
        if state.last_invocation.as_deref() == Some(who.invocation) {
            return Ok(Acquired::Done { state });
        }
        if let Some(lease) = &state.lease
            && lease.owner != who.owner
            && lease.expires_at > who.now
        {
            let lease = lease.clone();
            return Ok(Acquired::Held { state, lease });
        }
        let since = window::since(who.state_override.or(state.cursor), who.buffer);
        let plan = match &state.plan {
            Some(p) if p.version == state.version && p.since == since => p.clone(),
            _ => Plan {
                version: state.version,
                since,
                // Stored with millisecond precision: a reused plan must be identical.
                until: who.now.trunc_subsecs(3),
            },
        };
        let lease = Lease {
            owner: who.owner.to_string(),
            expires_at: who.expires_at,
        };
        if store.try_lease(sync_id, &state, &lease, &plan).await? {
            state.lease = Some(lease);
            state.plan = Some(plan.clone());
            return Ok(Acquired::Leased { state, plan });
        }
        state = store.load(sync_id).await?;
    }
    match state.lease.clone() {
        Some(lease) => Ok(Acquired::Held { state, lease }),
        None => Err(crate::error::Error::state(format!(
            "could not take the lease on {sync_id} after {LEASE_ATTEMPTS} attempts (the item keeps changing)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_ranges_carry_the_buffer_that_cut_them() {
        let t = |s| window::parse_ts(s).unwrap();
        let spans = vec![Span {
            since: t("2024-01-15T12:00:00Z"),
            until: t("2024-01-15T22:00:00Z"),
        }];
        let done = DoneRanges::new(spans.clone(), TimeDelta::hours(2));
        let stored = done.format().unwrap();
        assert_eq!(
            stored,
            "buffer_ms=7200000;2024-01-15T12:00:00Z/2024-01-15T22:00:00Z"
        );
        assert_eq!(DoneRanges::parse(Some(&stored)), done);
        // Usable under the same or a shorter buffer, not a longer one.
        assert_eq!(done.usable(TimeDelta::hours(2)), &spans[..]);
        assert_eq!(done.usable(TimeDelta::hours(1)), &spans[..]);
        assert!(done.usable(TimeDelta::hours(3)).is_empty());
        // A value stored before the buffer was recorded: read, never skipped.
        let legacy = DoneRanges::parse(Some("2024-01-15T12:00:00Z/2024-01-15T22:00:00Z"));
        assert_eq!(legacy.spans, spans);
        assert!(legacy.usable(TimeDelta::zero()).is_empty());
        // Unreadable: none.
        assert_eq!(
            DoneRanges::parse(Some("buffer_ms=x;a/b")),
            DoneRanges::default()
        );
        assert_eq!(DoneRanges::default().format(), None);
    }
}
