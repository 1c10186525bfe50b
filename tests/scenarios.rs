//! The scenario suite of the contract, run against both backends: the embedded one (file
//! state, directory output) and the AWS one (DynamoDB + S3 on moto, through the real SDK).
//! The API is the real playground where it covers the case, else the fixture API.

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::SubsecRound;
use chrono::{DateTime, TimeDelta, Utc};
use common::fixture::{self, FixtureApi, Paging, Response, user};
use common::{Env, Kind, manual, peers, source, ts};
use replay_sync::config::BatchLimits;
use replay_sync::state::{Checkpoint, Commit, Lease, Plan, StateStore, SyncState};
use replay_sync::{Error, RunRequest, Status};
use serde_json::{Value, json};

// The real playground takes no upper bound, and these check one stream's requests.
on_both_backends!(
    compressed_objects_are_what_their_names_and_types_say,
    full_sync_lands_every_playground_user,
    second_run_sends_the_buffered_since,
    since_on_the_wire_is_the_seed_example,
    dry_run_writes_and_checkpoints_nothing,
    failure_mid_run_keeps_the_cursor,
    a_page_read_again_after_its_body_broke_is_no_disorder,
    an_audit_that_meets_a_running_sync_fails_to_be_retried,
    a_partial_manual_replay_says_how_to_finish_it,
);

// Every scenario again with the output compressed, gzip and zstd, on both backends.
on_both_backends_compressed!(
    full_sync_lands_every_playground_user,
    second_run_sends_the_buffered_since,
    dry_run_writes_and_checkpoints_nothing,
    failure_mid_run_keeps_the_cursor,
    lost_checkpoint_race_is_a_conflict,
    checkpoint_is_fenced_on_version_and_lease,
    override_replays_without_moving_the_cursor_back,
    rewind_moves_the_cursor_back,
    bad_records_are_rejected_not_dropped,
    future_records_are_written_but_the_cursor_is_clamped,
    batches_are_bounded_and_deduplicated,
    failed_checkpoint_then_retry_rewrites_the_same_keys,
    nothing_fetched_leaves_the_cursor,
    out_of_order_records_hold_the_cursor_when_stopping_early,
    stale_replica_versions_are_counted_not_written,
    objects_are_durable_before_the_manifest_and_the_checkpoint,
    a_quiet_run_reuses_the_fingerprint_set,
);

// The suite once more against a moto that enforces IAM, as a principal holding exactly the
// template's grants to the function: a call the template does not grant fails with 403.
on_aws_with_iam_enforced!(
    compressed_objects_are_what_their_names_and_types_say,
    full_sync_lands_every_playground_user,
    second_run_sends_the_buffered_since,
    since_on_the_wire_is_the_seed_example,
    dry_run_writes_and_checkpoints_nothing,
    failure_mid_run_keeps_the_cursor,
    a_page_read_again_after_its_body_broke_is_no_disorder,
    an_audit_that_meets_a_running_sync_fails_to_be_retried,
    a_partial_manual_replay_says_how_to_finish_it,
    lost_checkpoint_race_is_a_conflict,
    checkpoint_is_fenced_on_version_and_lease,
    override_replays_without_moving_the_cursor_back,
    rewind_moves_the_cursor_back,
    bad_records_are_rejected_not_dropped,
    future_records_are_written_but_the_cursor_is_clamped,
    batches_are_bounded_and_deduplicated,
    failed_checkpoint_then_retry_rewrites_the_same_keys,
    nothing_fetched_leaves_the_cursor,
    out_of_order_records_hold_the_cursor_when_stopping_early,
    stale_replica_versions_are_counted_not_written,
    objects_are_durable_before_the_manifest_and_the_checkpoint,
    a_quiet_run_reuses_the_fingerprint_set,
);

mod sliced {
    use super::*;
    on_both_backends_and_sliced!(
        lost_checkpoint_race_is_a_conflict,
        checkpoint_is_fenced_on_version_and_lease,
        override_replays_without_moving_the_cursor_back,
        rewind_moves_the_cursor_back,
        bad_records_are_rejected_not_dropped,
        future_records_are_written_but_the_cursor_is_clamped,
        batches_are_bounded_and_deduplicated,
        failed_checkpoint_then_retry_rewrites_the_same_keys,
        nothing_fetched_leaves_the_cursor,
        out_of_order_records_hold_the_cursor_when_stopping_early,
        stale_replica_versions_are_counted_not_written,
        objects_are_durable_before_the_manifest_and_the_checkpoint,
        a_quiet_run_reuses_the_fingerprint_set,
    );
}

/// Stores a cursor as if an earlier run had checkpointed it (version 1).
async fn seed(env: &Env, cursor: &str) {
    let c = common::commit(&env.state, &env.sync_id, Some(ts(cursor)), "seed").await;
    assert_eq!(c, Checkpoint::Committed { version: 1 });
}

fn updated(v: &Value) -> DateTime<Utc> {
    ts(v["updatedAt"].as_str().expect("updatedAt"))
}

fn strip_synced_at(mut v: Value) -> Value {
    let synced = v.as_object_mut().and_then(|o| o.remove("_synced_at"));
    let synced = synced.expect("every line has _synced_at");
    assert!(
        replay_sync::window::parse_ts(synced.as_str().unwrap()).is_some(),
        "_synced_at is RFC 3339: {synced}"
    );
    v
}

async fn full_sync_lands_every_playground_user(kind: Kind) {
    let env = Env::new(kind).await;
    let api = peers::playground();
    let users = peers::playground_users(api);
    assert!(!users.is_empty(), "the playground serves users");
    let src = source(&format!("{}/incremental/timestamp", api.url()));

    let s = env.scheduled(&src).await;

    assert_eq!(s.status, Status::Completed);
    assert_eq!(s.since, None, "first run is a full sync");
    assert_eq!(s.counts.records_fetched, users.len() as u64);
    assert_eq!(s.counts.records_written, users.len() as u64);
    assert_eq!(s.counts.records_rejected, 0);
    assert_eq!(s.checkpoints, 1);
    assert!(s.counts.pages >= 1);

    // Every user landed, losslessly: each line is the API record plus `_synced_at`.
    let lines = env.lines(&s.objects).await;
    let by_id: HashMap<&str, &Value> = users
        .iter()
        .map(|u| (u["id"].as_str().unwrap(), u))
        .collect();
    assert_eq!(lines.len(), users.len());
    for line in lines {
        let rec = strip_synced_at(line);
        let id = rec["id"].as_str().unwrap();
        assert_eq!(&rec, by_id[id], "record {id} is kept as the API sent it");
    }

    // Keys live under PREFIX/SYNC_ID/ and are JSON Lines (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`
    // as OUTPUT_COMPRESSION says).
    let prefix = match kind {
        Kind::File => format!("{}/", env.sync_id),
        Kind::Aws => format!("raw/api/{}/", env.sync_id),
    };
    let ext = format!(".{}", common::compression().extension());
    for k in &s.objects {
        assert!(k.starts_with(&prefix) && k.ends_with(&ext), "{k}");
    }

    // The cursor is the greatest updatedAt written; the state says so.
    let max = users.iter().map(updated).max().unwrap();
    let state = env.state().await;
    assert_eq!(state.cursor, Some(max));
    assert_eq!(state.version, 1);
    assert_eq!(
        s.new_cursor.as_deref(),
        Some(replay_sync::window::format_ts(max).as_str())
    );

    // The manifest lists every data key with its count, and the window.
    let manifest_key = s.manifest.clone().unwrap();
    assert!(
        manifest_key.starts_with(&format!("{prefix}_manifests/"))
            && manifest_key.ends_with(".json")
    );
    let m: Value = serde_json::from_slice(&env.get(&manifest_key).await).unwrap();
    let listed: u64 = m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["records"].as_u64().unwrap())
        .sum();
    assert_eq!(listed, s.counts.records_written);
    let listed_keys: Vec<&str> = m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed_keys,
        s.objects.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(m["starting_version"], 0);
    assert_eq!(m["window"]["since"], Value::Null);
    assert_eq!(m["new_cursor"].as_str(), s.new_cursor.as_deref());

    // The summary has every field of the contract.
    let js = serde_json::to_value(&s).unwrap();
    for f in [
        "sync_id",
        "status",
        "since",
        "previous_cursor",
        "new_cursor",
        "records_fetched",
        "records_written",
        "records_rejected",
        "objects",
        "manifest",
        "pages",
        "checkpoints",
        "duration_ms",
    ] {
        assert!(js.get(f).is_some(), "summary lacks {f}: {js}");
    }
}

async fn second_run_sends_the_buffered_since(kind: Kind) {
    let env = Env::new(kind).await;
    let api = peers::playground();
    let users = peers::playground_users(api);
    let src = source(&format!("{}/incremental/timestamp", api.url()));
    let first = env.scheduled(&src).await;
    let cursor = env.state().await.cursor.unwrap();

    let second = env.scheduled(&src).await;

    let since = cursor - TimeDelta::hours(2);
    assert_eq!(
        second.since.as_deref(),
        Some(replay_sync::window::format_ts(since).as_str())
    );
    assert_eq!(second.previous_cursor, first.new_cursor);
    // The API filtered by that since: exactly the users updated at or after it came back.
    let expected = users.iter().filter(|u| updated(u) >= since).count() as u64;
    assert!(
        expected > 0,
        "the buffer window re-reads at least the newest user"
    );
    assert_eq!(second.counts.records_fetched, expected);
    assert_eq!(
        second.counts.records_skipped, expected,
        "nothing changed: the overlap is already in the lake"
    );
    assert_eq!(second.counts.records_written, 0);
    assert_eq!(second.counts.late_records, 0);
    assert!(second.counts.records_fetched < first.counts.records_fetched);
    // Nothing newer arrived: the cursor stays, the version moves on, the keys are new.
    assert_eq!(env.cursor_version().await, (Some(cursor), 2));
    assert!(second.objects.iter().all(|k| !first.objects.contains(k)));
}

async fn since_on_the_wire_is_the_seed_example(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(vec![user("a", "2024-01-15T09:00:00Z")], Paging::None);
    let src = source(&api.url("/incremental/timestamp"));

    let fresh = env.scheduled(&src).await;
    assert_eq!(
        api.requests()[0].param("since"),
        None,
        "no state: no since parameter"
    );
    assert_eq!(fresh.counts.records_written, 1);

    let req = RunRequest {
        state_override: Some(ts("2024-01-15T10:30:00Z")),
        ..manual()
    };
    let s = env.run_with(&src, &env.settings(), &req).await.unwrap();
    assert_eq!(
        api.requests()[1].param("since"),
        Some("2024-01-15T08:30:00Z")
    );
    assert_eq!(s.since.as_deref(), Some("2024-01-15T08:30:00Z"));
    assert_eq!(s.previous_cursor.as_deref(), Some("2024-01-15T10:30:00Z"));
    assert_eq!(s.counts.records_written, 1);
}

/// A state store whose checkpoint is beaten by a competitor holding the same version.
struct Racing<'a, S> {
    inner: &'a S,
    competitor: DateTime<Utc>,
}

impl<S: StateStore> StateStore for Racing<'_, S> {
    async fn load(&self, sync_id: &str) -> replay_sync::Result<SyncState> {
        self.inner.load(sync_id).await
    }

    async fn try_lease(
        &self,
        sync_id: &str,
        seen: &SyncState,
        lease: &Lease,
        plan: &Plan,
    ) -> replay_sync::Result<bool> {
        self.inner.try_lease(sync_id, seen, lease, plan).await
    }

    async fn checkpoint(
        &self,
        sync_id: &str,
        commit: &Commit<'_>,
    ) -> replay_sync::Result<Checkpoint> {
        // A competitor takes the lease over (as if ours had expired) and checkpoints first.
        let seen = self.inner.load(sync_id).await?;
        let lease = Lease {
            owner: "competitor".into(),
            expires_at: Utc::now() + chrono::TimeDelta::minutes(5),
        };
        let plan = seen.plan.clone().expect("the run stored its plan");
        assert!(self.inner.try_lease(sync_id, &seen, &lease, &plan).await?);
        let won = self
            .inner
            .checkpoint(
                sync_id,
                &Commit {
                    expected: commit.expected,
                    owner: "competitor",
                    cursor: Some(self.competitor),
                    run_id: "competitor",
                    invocation: Some("competitor"),
                    fingerprints: None,
                    done: &replay_sync::state::DoneRanges::default(),
                },
            )
            .await?;
        assert_eq!(
            won,
            Checkpoint::Committed {
                version: commit.expected + 1
            }
        );
        self.inner.checkpoint(sync_id, commit).await
    }

    async fn release(&self, sync_id: &str, owner: &str) -> replay_sync::Result<()> {
        self.inner.release(sync_id, owner).await
    }
}

async fn lost_checkpoint_race_is_a_conflict(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(vec![user("a", "2024-01-15T09:00:00Z")], Paging::None);
    let src = source(&api.url("/x"));
    let racing = Racing {
        inner: &env.state,
        competitor: ts("2024-01-01T00:00:00Z"),
    };

    let s = env
        .run_on(&racing, &src, &env.settings(), &RunRequest::scheduled())
        .await
        .unwrap();

    assert_eq!(s.status, Status::Conflict);
    assert_eq!(s.checkpoints, 0);
    // The winner's state stands; the loser did not move the cursor.
    assert_eq!(
        env.cursor_version().await,
        (Some(ts("2024-01-01T00:00:00Z")), 1)
    );
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert_eq!(
        s.counts.records_written, 1,
        "objects written by the loser are harmless overlap"
    );
}

async fn checkpoint_is_fenced_on_version_and_lease(kind: Kind) {
    let env = Env::new(kind).await;
    let id = &env.sync_id;
    let t1 = ts("2024-01-15T10:00:00Z");
    let now = Utc::now();
    let none = replay_sync::state::DoneRanges::default();
    let commit = |expected, owner, cursor| Commit {
        expected,
        owner,
        cursor,
        run_id: "r",
        invocation: Some("inv-1"),
        fingerprints: None,
        done: &none,
    };
    assert_eq!(
        env.state
            .checkpoint(id, &commit(0, "a", Some(t1)))
            .await
            .unwrap(),
        Checkpoint::Conflict,
        "no lease, no checkpoint"
    );
    assert_eq!(
        env.cursor_version().await,
        (None, 0),
        "a refused checkpoint creates nothing"
    );

    let plan = Plan {
        version: 0,
        since: None,
        until: now.trunc_subsecs(3),
    };
    let lease = |owner: &str, minutes| Lease {
        owner: owner.into(),
        expires_at: (now + chrono::TimeDelta::minutes(minutes)).trunc_subsecs(3),
    };
    let empty = SyncState::default();
    assert!(
        env.state
            .try_lease(id, &empty, &lease("a", 5), &plan)
            .await
            .unwrap()
    );
    assert!(
        !env.state
            .try_lease(id, &empty, &lease("b", 5), &plan)
            .await
            .unwrap(),
        "a lease is taken only from the state as read"
    );
    let leased = env.state().await;
    assert_eq!(leased.lease, Some(lease("a", 5)));
    assert_eq!(leased.plan, Some(plan.clone()));
    // b takes a's lease over (as after its expiry), conditioned on what it read.
    assert!(
        env.state
            .try_lease(id, &leased, &lease("b", 5), &plan)
            .await
            .unwrap()
    );
    assert_eq!(
        env.state
            .checkpoint(id, &commit(0, "a", Some(t1)))
            .await
            .unwrap(),
        Checkpoint::Conflict,
        "a holder whose lease was taken over is fenced out"
    );
    assert_eq!(
        env.state
            .checkpoint(id, &commit(3, "b", Some(t1)))
            .await
            .unwrap(),
        Checkpoint::Conflict,
        "a stale version is refused"
    );
    env.state.release(id, "a").await.unwrap(); // not a's: no effect
    assert_eq!(
        env.state
            .checkpoint(id, &commit(0, "b", Some(t1)))
            .await
            .unwrap(),
        Checkpoint::Committed { version: 1 }
    );
    let done = env.state().await;
    assert_eq!((done.cursor, done.version), (Some(t1), 1));
    assert_eq!(done.lease, None, "the checkpoint releases the lease");
    assert_eq!(done.last_invocation.as_deref(), Some("inv-1"));
    assert_eq!(done.plan, Some(plan), "the plan outlives the lease");
    assert_eq!(
        env.state
            .checkpoint(id, &commit(1, "b", None))
            .await
            .unwrap(),
        Checkpoint::Conflict,
        "one lease, one checkpoint"
    );

    // None leaves the cursor; release frees the lease for the next run.
    let plan2 = Plan {
        version: 1,
        ..done.plan.clone().unwrap()
    };
    assert!(
        env.state
            .try_lease(id, &done, &lease("c", 5), &plan2)
            .await
            .unwrap()
    );
    env.state.release(id, "c").await.unwrap();
    let released = env.state().await;
    assert_eq!(released.lease, None);
    assert!(
        env.state
            .try_lease(id, &released, &lease("d", 5), &plan2)
            .await
            .unwrap()
    );
    assert_eq!(
        env.state
            .checkpoint(id, &commit(1, "d", None))
            .await
            .unwrap(),
        Checkpoint::Committed { version: 2 }
    );
    assert_eq!(
        env.cursor_version().await,
        (Some(t1), 2),
        "None leaves the cursor"
    );
}

async fn dry_run_writes_and_checkpoints_nothing(kind: Kind) {
    let env = Env::new(kind).await;
    let api = peers::playground();
    let src = source(&format!("{}/incremental/timestamp", api.url()));
    let req = RunRequest {
        dry_run: true,
        ..manual()
    };

    let s = env.run_with(&src, &env.settings(), &req).await.unwrap();

    assert_eq!(s.status, Status::DryRun);
    assert!(s.counts.records_fetched > 0, "a dry run still fetches");
    assert_eq!(s.checkpoints, 0);
    assert!(s.objects.is_empty() && s.manifest.is_none());
    assert!(
        s.planned_cursor.is_some(),
        "a dry run reports the cursor it would store"
    );
    assert_eq!(s.new_cursor, None);
    assert!(env.keys().await.is_empty(), "nothing written");
    assert_eq!(
        env.cursor_version().await,
        (None, 0),
        "nothing checkpointed"
    );
}

async fn override_replays_without_moving_the_cursor_back(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(
        vec![
            user("old", "2024-01-10T00:00:00Z"),
            user("new", "2024-01-20T00:00:00Z"),
        ],
        Paging::None,
    );
    let src = source(&api.url("/x"));
    env.scheduled(&src).await;
    assert_eq!(env.state().await.cursor, Some(ts("2024-01-20T00:00:00Z")));

    let req = RunRequest {
        state_override: Some(ts("2024-01-10T01:00:00Z")),
        buffer: Some(TimeDelta::hours(6)),
        ..manual()
    };
    let s = env.run_with(&src, &env.settings(), &req).await.unwrap();

    assert_eq!(s.since.as_deref(), Some("2024-01-09T19:00:00Z"));
    assert_eq!(
        s.counts.records_written, 2,
        "the replay re-reads the old row too"
    );
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-20T00:00:00Z"));
    assert_eq!(
        env.cursor_version().await,
        (Some(ts("2024-01-20T00:00:00Z")), 2)
    );
}

async fn rewind_moves_the_cursor_back(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(vec![user("old", "2024-01-10T00:00:00Z")], Paging::None);
    let src = source(&api.url("/x"));
    seed(&env, "2024-02-01T00:00:00Z").await;

    let req = RunRequest {
        state_override: Some(ts("2024-01-10T00:00:00Z")),
        rewind: true,
        ..manual()
    };
    let s = env.run_with(&src, &env.settings(), &req).await.unwrap();

    assert_eq!(s.counts.records_written, 1);
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-10T00:00:00Z"));
    assert_eq!(
        env.cursor_version().await,
        (Some(ts("2024-01-10T00:00:00Z")), 2)
    );
}

async fn bad_records_are_rejected_not_dropped(kind: Kind) {
    let env = Env::new(kind).await;
    let records = vec![
        user("good-1", "2024-01-15T10:00:00Z"),
        json!({"name": "no id", "updatedAt": "2024-01-15T10:00:00Z"}),
        json!({"id": "no-ts"}),
        json!({"id": "bad-ts", "updatedAt": "last tuesday"}),
        json!({"id": "naive-ts", "updatedAt": "2024-01-15T10:00:00"}),
        user("good-2", "2024-01-15T11:00:00Z"),
    ];
    let api = fixture::records_api(records, Paging::None);
    let src = source(&api.url("/x"));

    let s = env.scheduled(&src).await;

    assert_eq!(s.status, Status::Completed);
    assert_eq!(s.counts.records_fetched, 6);
    assert_eq!(s.counts.records_written, 2);
    assert_eq!(s.counts.records_rejected, 4);
    assert_eq!(s.rejected_objects.len(), 1);
    assert!(s.rejected_objects[0].contains(&format!("{}/_rejected/", env.sync_id)));
    let rejected = env.lines(&s.rejected_objects).await;
    assert_eq!(rejected.len(), 4);
    for r in &rejected {
        assert!(r["reason"].as_str().is_some_and(|x| !x.is_empty()), "{r}");
        assert!(r["record"].is_object(), "the original record is kept: {r}");
    }
    let reasons: Vec<&str> = rejected
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("`id`")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("`updatedAt`")),
        "{reasons:?}"
    );
    let good: HashSet<String> = env
        .lines(&s.objects)
        .await
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        good,
        HashSet::from(["good-1".to_string(), "good-2".to_string()])
    );
    assert_eq!(env.state().await.cursor, Some(ts("2024-01-15T11:00:00Z")));
    let m: Value = serde_json::from_slice(&env.get(s.manifest.as_ref().unwrap()).await).unwrap();
    assert_eq!(m["records_rejected"], 4);
}

async fn future_records_are_written_but_the_cursor_is_clamped(kind: Kind) {
    let env = Env::new(kind).await;
    let api = fixture::records_api(
        vec![
            user("past", "2024-01-15T10:00:00Z"),
            user("future", "2999-01-01T00:00:00Z"),
        ],
        Paging::None,
    );
    let src = source(&api.url("/x"));
    let before = Utc::now();

    let s = env.scheduled(&src).await;

    assert_eq!(
        s.counts.records_written, 2,
        "the future row is still written"
    );
    let cursor = env.state().await.cursor.unwrap();
    assert!(
        cursor <= Utc::now() && cursor >= before - TimeDelta::seconds(1),
        "clamped to the run's start: {cursor}"
    );
}

async fn batches_are_bounded_and_deduplicated(kind: Kind) {
    let env = Env::new(kind).await;
    // 25 ids; ids 0..5 also appear again later with a newer updatedAt, next to their
    // first copy in the API's order so that both land in the same batch.
    let mut records = Vec::new();
    for i in 0..25 {
        records.push(user(
            &format!("u{i:02}"),
            &format!("2024-01-15T10:{i:02}:00Z"),
        ));
    }
    for i in 0..5 {
        records.push(user(
            &format!("u{i:02}"),
            &format!("2024-01-15T10:{i:02}:30Z"),
        ));
    }
    let api = fixture::records_api(records, Paging::None);
    let src = source(&api.url("/x"));
    let mut settings = env.settings();
    settings.batch = common::per_slice(BatchLimits {
        max_records: 10,
        max_bytes: 1 << 20,
    });

    let s = env
        .run_with(&src, &settings, &RunRequest::scheduled())
        .await
        .unwrap();

    assert_eq!(s.counts.records_fetched, 30);
    assert_eq!(s.counts.records_deduplicated, 5);
    assert_eq!(s.counts.records_written, 25);
    assert_eq!(s.objects.len(), 3);
    let mut all = Vec::new();
    for key in &s.objects {
        let lines = env.lines(std::slice::from_ref(key)).await;
        assert!(
            !lines.is_empty() && lines.len() <= 10,
            "{key}: {} lines",
            lines.len()
        );
        let ids: HashSet<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids.len(),
            lines.len(),
            "an id appears at most once per batch"
        );
        all.extend(lines);
    }
    for l in &all {
        let i: u32 = l["id"].as_str().unwrap()[1..].parse().unwrap();
        let want = if i < 5 {
            format!("2024-01-15T10:{i:02}:30Z")
        } else {
            format!("2024-01-15T10:{i:02}:00Z")
        };
        assert_eq!(l["updatedAt"], want.as_str(), "the newest version wins");
    }
}

/// A state store that runs `hook` before each checkpoint: an error from it is the
/// checkpoint's result (the inner store is not asked).
struct BeforeCheckpoint<'a, S, H> {
    inner: &'a S,
    hook: H,
}

impl<S: StateStore, H: Fn() -> replay_sync::Result<()> + Send + Sync> StateStore
    for BeforeCheckpoint<'_, S, H>
{
    async fn load(&self, sync_id: &str) -> replay_sync::Result<SyncState> {
        self.inner.load(sync_id).await
    }

    async fn try_lease(
        &self,
        sync_id: &str,
        seen: &SyncState,
        lease: &Lease,
        plan: &Plan,
    ) -> replay_sync::Result<bool> {
        self.inner.try_lease(sync_id, seen, lease, plan).await
    }

    async fn checkpoint(
        &self,
        sync_id: &str,
        commit: &Commit<'_>,
    ) -> replay_sync::Result<Checkpoint> {
        (self.hook)()?;
        self.inner.checkpoint(sync_id, commit).await
    }

    async fn release(&self, sync_id: &str, owner: &str) -> replay_sync::Result<()> {
        self.inner.release(sync_id, owner).await
    }
}

async fn failed_checkpoint_then_retry_rewrites_the_same_keys(kind: Kind) {
    let env = Env::new(kind).await;
    let records: Vec<Value> = (0..12)
        .map(|i| user(&format!("r{i}"), &format!("2024-01-15T10:{i:02}:00Z")))
        .collect();
    let api = fixture::records_api(records, Paging::None);
    let src = source(&api.url("/x"));
    let mut settings = env.settings();
    settings.batch = common::per_slice(BatchLimits {
        max_records: 5,
        max_bytes: 1 << 20,
    });
    // The first checkpoint fails (a storage error), like a throttled table.
    let failed = std::sync::atomic::AtomicBool::new(false);
    let flaky = BeforeCheckpoint {
        inner: &env.state,
        hook: || {
            if failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                // What an adapter returns when the table is unavailable.
                Err(Error::state("injected: table unavailable"))
            }
        },
    };

    let err = env
        .run_on(&flaky, &src, &settings, &RunRequest::scheduled())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "StateStoreError");
    assert_eq!(
        env.cursor_version().await,
        (None, 0),
        "a failed run does not move the cursor"
    );
    let after_failure = env.keys().await;
    assert_eq!(
        after_failure.len(),
        5,
        "3 data objects, the fingerprint set and the manifest: {after_failure:?}"
    );

    let s = env
        .run_on(&flaky, &src, &settings, &RunRequest::scheduled())
        .await
        .unwrap();
    assert_eq!(s.status, Status::Completed);
    assert_eq!(
        env.keys().await,
        after_failure,
        "the retry rewrote the same keys, added none"
    );
    assert_eq!(env.lines(&s.objects).await.len(), 12);
    assert_eq!(
        env.cursor_version().await,
        (Some(ts("2024-01-15T10:11:00Z")), 1)
    );
}

async fn failure_mid_run_keeps_the_cursor(kind: Kind) {
    let env = Env::new(kind).await;
    seed(&env, "2024-01-15T00:00:00Z").await;
    // Page 1 is fine and names page 2; page 2 is cut off mid-way.
    let api = FixtureApi::start(|req, _| {
        if req.param("page") == Some("2") {
            Response::raw(
                200,
                r#"{"data": [{"id": "b", "updatedAt": "2024-01-15T12:00:00Z"}, {"id": "c", "upd"#,
            )
        } else {
            Response::json(
                &json!({"data": [user("a", "2024-01-15T11:00:00Z")], "next": "/x?page=2"}),
            )
        }
    });
    let src = common::source_with(&api.url("/x"), |a| a.next_page_field = Some("next".into()));
    let mut settings = env.settings();
    settings.batch = common::per_slice(BatchLimits {
        max_records: 1,
        max_bytes: 1 << 20,
    });

    let err = env
        .run_with(&src, &settings, &RunRequest::scheduled())
        .await
        .unwrap_err();

    assert_eq!(err.kind(), "MalformedResponse");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(
        env.cursor_version().await,
        (Some(ts("2024-01-15T00:00:00Z")), 1),
        "the cursor stays at the last durable checkpoint"
    );
    assert_eq!(api.requests().len(), 2);
}

async fn nothing_fetched_leaves_the_cursor(kind: Kind) {
    let env = Env::new(kind).await;
    seed(&env, "2024-01-15T10:00:00Z").await;
    let api = fixture::records_api(vec![user("old", "2024-01-01T00:00:00Z")], Paging::None);
    let src = source(&api.url("/x"));

    let s = env.scheduled(&src).await;

    assert_eq!(s.counts.records_fetched, 0);
    assert!(s.objects.is_empty());
    assert_eq!(s.new_cursor.as_deref(), Some("2024-01-15T10:00:00Z"));
    assert_eq!(env.state().await.cursor, Some(ts("2024-01-15T10:00:00Z")));
    assert!(
        api.requests()
            .iter()
            .any(|r| r.param("since") == Some("2024-01-15T08:00:00Z")),
        "the window starts at the cursor less the buffer"
    );
}

async fn out_of_order_records_hold_the_cursor_when_stopping_early(kind: Kind) {
    let env = Env::new(kind).await;
    let records: Vec<Value> = (0..300)
        .map(|i| {
            let t = ts("2024-01-15T00:00:00Z") + TimeDelta::minutes(i);
            user(&format!("u{i:03}"), &replay_sync::window::format_ts(t))
        })
        .collect();
    // Newest first, 30 pages of 10, each taking 100 ms: about 3 s to read.
    let recs = records.clone();
    let api = FixtureApi::start(move |req, _| {
        fixture::records_page(&recs, Paging::LinkHeader(10), req)
            .delayed(std::time::Duration::from_millis(100))
    });
    let src = source(&api.url("/x?order=desc"));
    let mut settings = env.settings();
    settings.batch.max_records = 20 * common::slices();

    // The invocation has 1.5 s: it stops early with some records written.
    let short =
        replay_sync::sync::Invocation::new("short", Some(std::time::Duration::from_millis(1500)));
    let s = env
        .run_as(
            &env.state,
            &src,
            &settings,
            &RunRequest::scheduled(),
            &short,
        )
        .await
        .unwrap();
    assert_eq!(s.status, Status::Partial, "{s:?}");
    assert!(
        s.counts.records_written > 0 && s.counts.records_written < 300,
        "{s:?}"
    );
    assert!(
        s.reason.as_deref().unwrap_or("").contains("ascending"),
        "{s:?}"
    );
    // The newest records were written, the oldest were not: the cursor must not move.
    assert_eq!(s.checkpoints, 1);
    assert_eq!(env.cursor_version().await, (None, 1));

    let s = env
        .run_with(&src, &settings, &RunRequest::scheduled())
        .await
        .unwrap();
    assert_eq!(s.status, Status::Completed);
    assert_eq!(
        s.counts.records_fetched, 300,
        "the window was read again, whole"
    );
    assert_eq!(
        s.counts.records_written + s.counts.records_skipped,
        300,
        "what the partial run wrote is known, the rest is written: {s:?}"
    );
    assert!(s.counts.records_skipped > 0);
    assert_eq!(
        env.cursor_version().await,
        (Some(ts("2024-01-15T04:59:00Z")), 2)
    );
}

async fn stale_replica_versions_are_counted_not_written(kind: Kind) {
    let env = Env::new(kind).await;
    let mut newer = user("a", "2024-01-15T10:00:00Z");
    newer["name"] = "newer".into();
    let records = std::sync::Arc::new(std::sync::Mutex::new(vec![newer]));
    let api = fixture::shared_records_api(records.clone(), Paging::None);
    let src = source(&api.url("/x"));
    let first = env.scheduled(&src).await;
    assert_eq!(first.counts.records_written, 1);

    // Another replica, further behind, answers next: it still has a's older version.
    *records.lock().unwrap() = vec![
        user("a", "2024-01-15T09:00:00Z"),
        user("b", "2024-01-15T09:30:00Z"),
    ];
    let s = env.scheduled(&src).await;
    assert_eq!(s.counts.records_fetched, 2);
    assert_eq!(s.counts.records_stale, 1, "a's old version is stale");
    assert_eq!(s.counts.records_written, 1, "only b is written");
    let lines = env.lines(&s.objects).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], "b");
    assert_eq!(
        s.counts.late_records, 1,
        "b is stamped before the cursor and new: late"
    );
    assert_eq!(s.counts.max_lateness_seconds, 30.0 * 60.0);
    assert_eq!(
        env.cursor_version().await,
        (Some(ts("2024-01-15T10:00:00Z")), 2),
        "the cursor does not go back"
    );
}

/// What the engine asked of the sink and the state store, in order.
type Journal = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A sink that notes each write and flush.
#[derive(Clone)]
struct JournalSink {
    inner: replay_sync::app::AnySink,
    journal: Journal,
}

impl replay_sync::sink::Sink for JournalSink {
    fn key(&self, rel: &str) -> String {
        self.inner.key(rel)
    }

    async fn put_new(
        &self,
        key: &str,
        body: bytes::Bytes,
        content_type: &'static str,
    ) -> replay_sync::Result<replay_sync::sink::Put> {
        let put = self.inner.put_new(key, body, content_type).await?;
        self.journal.lock().unwrap().push(format!("put {key}"));
        Ok(put)
    }

    async fn flush(&self) -> replay_sync::Result<()> {
        self.inner.flush().await?;
        self.journal.lock().unwrap().push("flush".into());
        Ok(())
    }

    async fn get(&self, key: &str) -> replay_sync::Result<Option<Vec<u8>>> {
        self.inner.get(key).await
    }
}

/// Objects are made durable (a sink flush: one group commit of the directories on a file
/// system) after they are written and before the manifest that lists them; the manifest,
/// before the checkpoint that commits it.
async fn objects_are_durable_before_the_manifest_and_the_checkpoint(kind: Kind) {
    let env = Env::new(kind).await;
    let mut records: Vec<Value> = (0..5)
        .map(|i| user(&format!("u{i}"), &format!("2024-01-15T09:0{i}:00Z")))
        .collect();
    records.push(json!({"id": "no-time"}));
    let api = fixture::records_api(records, Paging::None);
    let src = source(&api.url("/x"));
    let mut settings = env.settings();
    settings.batch = common::per_slice(BatchLimits {
        max_records: 2,
        max_bytes: 1 << 20,
    });
    let journal = Journal::default();
    let sink = JournalSink {
        inner: env.sink.clone(),
        journal: journal.clone(),
    };
    let state = BeforeCheckpoint {
        inner: &env.state,
        hook: || {
            journal.lock().unwrap().push("checkpoint".into());
            Ok(())
        },
    };
    let inv = replay_sync::sync::Invocation::new("journal", None);
    let s = replay_sync::Engine {
        state: &state,
        source: &src,
        sink: &sink,
        settings: &settings,
    }
    .run(&RunRequest::scheduled(), &inv)
    .await
    .unwrap();
    assert_eq!(s.status, Status::Completed);
    assert_eq!(
        (s.counts.records_written, s.counts.records_rejected),
        (5, 1)
    );
    assert_eq!(s.objects.len(), 3);

    let journal = journal.lock().unwrap().clone();
    let at = |what: &dyn Fn(&String) -> bool| journal.iter().position(what);
    let manifest = at(&|e| e.contains("/_manifests/")).expect("a manifest");
    let checkpoint = at(&|e| e == "checkpoint").expect("a checkpoint");
    let flushes: Vec<usize> = (0..journal.len())
        .filter(|&i| journal[i] == "flush")
        .collect();
    let puts: Vec<usize> = (0..journal.len())
        .filter(|&i| journal[i].starts_with("put ") && i != manifest)
        .collect();
    // Three data objects, the rejected one, the fingerprints.
    assert_eq!(puts.len(), 5, "{journal:?}");
    let last_put = *puts.last().unwrap();
    assert!(
        flushes.iter().any(|&f| last_put < f && f < manifest),
        "a flush between the last object and the manifest: {journal:?}"
    );
    assert!(
        flushes.iter().any(|&f| manifest < f && f < checkpoint),
        "a flush between the manifest and the checkpoint: {journal:?}"
    );
    assert_eq!(checkpoint, journal.len() - 1, "{journal:?}");
}

/// Storage must not grow by a fingerprint set per run: a run that changes nothing (every row
/// of its window already in the lake) keeps the set the state already names.
async fn a_quiet_run_reuses_the_fingerprint_set(kind: Kind) {
    let env = Env::new(kind).await;
    let records = std::sync::Arc::new(std::sync::Mutex::new(vec![
        user("a", "2024-01-15T10:00:00Z"),
        user("b", "2024-01-15T10:30:00Z"),
    ]));
    let api = fixture::shared_records_api(records.clone(), Paging::None);
    let src = source(&api.url("/x"));
    let first = env.scheduled(&src).await;
    assert_eq!(first.counts.records_written, 2);
    let set = env.state().await.fingerprints.expect("a fingerprint set");
    let fingerprint_objects = |keys: Vec<String>| {
        keys.into_iter()
            .filter(|k| k.contains("/_fingerprints/"))
            .count()
    };
    assert_eq!(fingerprint_objects(env.keys().await), 1);

    // Twice nothing new: no new set, the state keeps naming the first.
    for _ in 0..2 {
        let quiet = env.scheduled(&src).await;
        assert_eq!(quiet.status, Status::Completed);
        assert_eq!(
            (quiet.counts.records_fetched, quiet.counts.records_skipped),
            (2, 2)
        );
        assert_eq!(quiet.counts.records_written, 0);
        assert_eq!(
            env.state().await.fingerprints.as_deref(),
            Some(set.as_str())
        );
        assert_eq!(fingerprint_objects(env.keys().await), 1);
    }

    // A change: a new set, named by the state, and the next run skips the changed row.
    records.lock().unwrap()[0] = user("a", "2024-01-15T11:00:00Z");
    let changed = env.scheduled(&src).await;
    assert_eq!(changed.counts.records_written, 1);
    let newer = env.state().await.fingerprints.unwrap();
    assert_ne!(newer, set);
    assert_eq!(fingerprint_objects(env.keys().await), 2);
    let after = env.scheduled(&src).await;
    assert_eq!(
        (after.counts.records_written, after.counts.records_skipped),
        (0, 2)
    );
}

/// gzip and zstd objects: named `.jsonl.gz`/`.jsonl.zst`, holding that codec's bytes, stored
/// as `application/gzip`/`application/zstd` with no `Content-Encoding` (no HTTP client
/// decompresses them behind the reader's back), and decompressing to the very lines a plain
/// run writes; the rejected objects too.
async fn compressed_objects_are_what_their_names_and_types_say(kind: Kind) {
    use replay_sync::format::Format;
    let records = vec![
        user("a", "2024-01-15T10:00:00Z"),
        user("b", "2024-01-15T11:00:00Z"),
        json!({"id": "no-time"}),
    ];
    let api = fixture::records_api(records, Paging::None);
    let src = source(&api.url("/x"));
    let mut plain: Option<Vec<Value>> = None;
    for (format, magic, content_type) in [
        (Format::Jsonl, &b"{"[..], "application/x-ndjson"),
        (Format::JsonlGzip, &[0x1f, 0x8b][..], "application/gzip"),
        (
            Format::JsonlZstd,
            &[0x28, 0xb5, 0x2f, 0xfd][..],
            "application/zstd",
        ),
    ] {
        let env = Env::new(kind).await;
        let settings = replay_sync::Settings {
            format,
            ..env.settings()
        };
        let s = env
            .run_with(&src, &settings, &RunRequest::scheduled())
            .await
            .unwrap();
        assert_eq!(s.counts.records_written, 2);
        assert_eq!(s.rejected_objects.len(), 1);
        for key in s.objects.iter().chain(&s.rejected_objects) {
            assert!(key.ends_with(&format!(".{}", format.extension())), "{key}");
            let body = env.get(key).await;
            assert!(
                body.starts_with(magic),
                "{key}: {:?}",
                &body[..4.min(body.len())]
            );
            if let common::Lake::S3 { client, bucket, .. } = &env.lake {
                let head = client
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(head.content_type(), Some(content_type), "{key}");
                assert_eq!(head.content_encoding(), None, "{key}");
            }
        }
        let mut lines: Vec<Value> = env
            .lines(&[s.objects.clone(), s.rejected_objects.clone()].concat())
            .await
            .into_iter()
            .map(|mut l| {
                l.as_object_mut().unwrap().remove("_synced_at");
                l
            })
            .collect();
        lines.sort_by_key(|l| l.to_string());
        match &plain {
            None => plain = Some(lines),
            Some(p) => assert_eq!(&lines, p, "{format:?} holds the same lines as plain output"),
        }
    }
}

/// A page whose body breaks off is read again from its start: its first rows come twice.
/// That is the same page, not disorder: a run that then stops at the deadline moves its
/// cursor over what it wrote, in order (issue 20, 2).
async fn a_page_read_again_after_its_body_broke_is_no_disorder(kind: Kind) {
    let env = Env::new(kind).await;
    let records: Vec<Value> = (0..300)
        .map(|i| {
            let t = ts("2024-01-15T00:00:00Z") + TimeDelta::minutes(i);
            user(&format!("u{i:03}"), &replay_sync::window::format_ts(t))
        })
        .collect();
    let recs = records.clone();
    let api = FixtureApi::start(move |req, index| {
        let page = fixture::records_page(&recs, Paging::LinkHeader(10), req);
        match req.param("page") {
            // The first answer of page 2 breaks off halfway through its body.
            Some("2") if index == 1 => {
                let half = page.body.len() / 2;
                page.truncated(half)
            }
            // Page 5 does not come before the deadline.
            Some(p) if p.parse::<u32>().unwrap_or(0) > 4 => {
                page.delayed(std::time::Duration::from_secs(30))
            }
            _ => page,
        }
    });
    let src = source(&api.url("/x"));
    // Time for a retry (which needs 10 s before the deadline), then a stop at 10 s.
    let short =
        replay_sync::sync::Invocation::new("short", Some(std::time::Duration::from_secs(11)));
    let settings = replay_sync::Settings {
        deadline_margin: std::time::Duration::from_secs(1),
        ..env.settings()
    };
    let s = env
        .run_as(
            &env.state,
            &src,
            &settings,
            &RunRequest::scheduled(),
            &short,
        )
        .await
        .unwrap();
    let page2 = api
        .requests()
        .iter()
        .filter(|r| r.param("page") == Some("2"))
        .count();
    assert_eq!(page2, 2, "page 2 was read again after its body broke off");
    assert_eq!(s.status, Status::Partial, "{s:?}");
    assert!(s.counts.records_written >= 40, "{s:?}");
    assert!(
        !s.reason.as_deref().unwrap_or("").contains("ascending"),
        "a page read again is not disorder: {s:?}"
    );
    let (cursor, version) = env.cursor_version().await;
    assert_eq!(version, 1);
    assert!(
        cursor.is_some_and(|c| c >= ts("2024-01-15T00:39:00Z")),
        "the cursor moved over what was written in order: {cursor:?}"
    );
}

/// A scheduled run that meets another run's lease is `skipped` (the next tick makes it
/// good); an audit fails with `StateBusy`, so that Lambda retries it instead of that day's
/// audit silently not happening (issue 20, 8).
async fn an_audit_that_meets_a_running_sync_fails_to_be_retried(kind: Kind) {
    let env = Env::new(kind).await;
    seed(&env, "2024-01-15T10:00:00Z").await;
    let api = fixture::records_api(vec![user("a", "2024-01-15T09:00:00Z")], Paging::None);
    let src = source(&api.url("/x"));
    let seen = env.state().await;
    let lease = Lease {
        owner: "running-sync".into(),
        expires_at: Utc::now() + TimeDelta::minutes(5),
    };
    let plan = Plan {
        version: seen.version,
        since: None,
        until: Utc::now(),
    };
    assert!(
        env.state
            .try_lease(&env.sync_id, &seen, &lease, &plan)
            .await
            .unwrap()
    );
    let s = env.scheduled(&src).await;
    assert_eq!(s.status, Status::Skipped, "{s:?}");
    let audit = RunRequest {
        audit: true,
        ..manual()
    };
    let err = env
        .run_with(&src, &env.settings(), &audit)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "StateBusy", "{err}");
    assert!(err.to_string().contains("running-sync"), "{err}");
    assert!(api.requests().is_empty(), "nothing was read");
    // Once the sync is done, the retried audit runs.
    env.state
        .release(&env.sync_id, "running-sync")
        .await
        .unwrap();
    let s = env.run_with(&src, &env.settings(), &audit).await.unwrap();
    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert_eq!(s.counts.records_fetched, 1);
}

/// A manual replay that stops at the deadline below the stored cursor is not continued by
/// the scheduled runs (they go on from the stored cursor): its summary says so, and names
/// the override that finishes it; invoked with it, every row lands (issue 20, 7).
async fn a_partial_manual_replay_says_how_to_finish_it(kind: Kind) {
    let env = Env::new(kind).await;
    seed(&env, "2024-01-20T00:00:00Z").await;
    let records: Vec<Value> = (0..300)
        .map(|i| {
            let t = ts("2024-01-15T02:00:00Z") + TimeDelta::minutes(i);
            user(&format!("r{i:03}"), &replay_sync::window::format_ts(t))
        })
        .collect();
    let slow = Arc::new(AtomicBool::new(true));
    let s2 = slow.clone();
    let api = FixtureApi::start(move |req, _| {
        let page = fixture::records_page(&records, Paging::LinkHeader(10), req);
        let n: u32 = req.param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        if s2.load(Ordering::SeqCst) && n > 4 {
            page.delayed(std::time::Duration::from_secs(30))
        } else {
            page
        }
    });
    let src = source(&api.url("/x"));
    let replay = |at: &str| RunRequest {
        state_override: Some(ts(at)),
        ..manual()
    };
    let short =
        replay_sync::sync::Invocation::new("short", Some(std::time::Duration::from_millis(1500)));
    let s = env
        .run_as(
            &env.state,
            &src,
            &env.settings(),
            &replay("2024-01-15T04:00:00Z"),
            &short,
        )
        .await
        .unwrap();
    assert_eq!(s.status, Status::Partial, "{s:?}");
    assert_eq!(s.counts.records_written, 40, "{s:?}");
    let reason = s.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("not continued by the scheduled runs"),
        "{reason}"
    );
    // The override whose window (2 h before it) starts where the replay got.
    let hint = r#"{"state_override": {"last_timestamp": "2024-01-15T04:39:00Z"}}"#;
    assert!(reason.contains(hint), "{reason}");
    assert_eq!(
        env.cursor_version().await,
        (Some(ts("2024-01-20T00:00:00Z")), 2),
        "the cursor never moves back"
    );
    // Invoked as the summary says, the replay finishes.
    slow.store(false, Ordering::SeqCst);
    let s = env
        .run_with(&src, &env.settings(), &replay("2024-01-15T04:39:00Z"))
        .await
        .unwrap();
    assert_eq!(s.status, Status::Completed, "{s:?}");
    assert_eq!(s.reason, None);
    let keys: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.ends_with(".jsonl") && !k.contains("/_"))
        .collect();
    let ids: std::collections::HashSet<String> = env
        .lines(&keys)
        .await
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 300, "every row of the replay landed");
}
