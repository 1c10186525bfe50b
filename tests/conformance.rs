//! The ports' promises, checked on every backend (as object_store's `integration.rs` runs one
//! suite on each store): `StateStore` — absent items, the lease, fencing on version and
//! owner, release; `Sink` — write-once keys, reads, flush, `put_once` convergence. The engine
//! relies on nothing else.

#[macro_use]
mod common;

use common::{Env, Kind, ts};
use replay_sync::error::{Cause, Error};
use replay_sync::format::JSONL;
use replay_sync::sink::any::AnySink;
use replay_sync::sink::{self, Put, Sink, put_once};
use replay_sync::state::any::AnyState;
use replay_sync::state::{Checkpoint, Commit, DoneRanges, Lease, Plan, StateStore, SyncState};
use replay_sync::window::Span;

/// No done ranges (a checkpoint that stores none removes them).
static NO_DONE: DoneRanges = DoneRanges {
    spans: Vec::new(),
    buffer: None,
};

on_both_backends!(
    state_store_absent_item_is_version_zero,
    state_store_lease_is_conditional_on_what_was_read,
    state_store_checkpoint_is_fenced_on_version_and_owner,
    state_store_release_only_by_the_owner_and_keeps_the_plan,
    sink_writes_each_key_once,
    sink_put_once_converges_and_never_overwrites,
    adapters_classify_failures_and_keep_their_source,
);

fn lease(owner: &str) -> Lease {
    Lease {
        owner: owner.into(),
        expires_at: chrono::Utc::now() + chrono::TimeDelta::minutes(5),
    }
}

fn plan(version: u64) -> Plan {
    Plan {
        version,
        since: Some(ts("2024-01-15T08:30:00Z")),
        until: ts("2024-01-15T10:30:00.123Z"),
    }
}

fn commit<'a>(expected: u64, owner: &'a str) -> Commit<'a> {
    Commit {
        expected,
        owner,
        cursor: Some(ts("2024-01-15T10:00:00Z")),
        run_id: "run-1",
        invocation: Some("inv-1"),
        fingerprints: Some("user/_fingerprints/x.bin"),
        done: &NO_DONE,
    }
}

async fn state_store_absent_item_is_version_zero(kind: Kind) {
    let env = Env::new(kind).await;
    assert_eq!(
        env.state.load(&env.sync_id).await.unwrap(),
        SyncState::default()
    );
}

async fn state_store_lease_is_conditional_on_what_was_read(kind: Kind) {
    let env = Env::new(kind).await;
    let (s, id) = (&env.state, env.sync_id.as_str());
    let seen = s.load(id).await.unwrap();
    assert!(s.try_lease(id, &seen, &lease("a"), &plan(0)).await.unwrap());
    // A second claimant that read the same (unleased) item loses.
    assert!(!s.try_lease(id, &seen, &lease("b"), &plan(0)).await.unwrap());
    let now = s.load(id).await.unwrap();
    assert_eq!(now.lease.as_ref().map(|l| l.owner.as_str()), Some("a"));
    assert_eq!(now.plan, Some(plan(0)), "the plan is stored with the lease");
    // Taking it over requires having read the current lease.
    assert!(s.try_lease(id, &now, &lease("b"), &plan(0)).await.unwrap());
    assert_eq!(
        s.load(id).await.unwrap().lease.map(|l| l.owner),
        Some("b".to_string())
    );
}

async fn state_store_checkpoint_is_fenced_on_version_and_owner(kind: Kind) {
    let env = Env::new(kind).await;
    let (s, id) = (&env.state, env.sync_id.as_str());
    let seen = s.load(id).await.unwrap();
    assert!(s.try_lease(id, &seen, &lease("a"), &plan(0)).await.unwrap());
    assert_eq!(
        s.checkpoint(id, &commit(7, "a")).await.unwrap(),
        Checkpoint::Conflict,
        "another version"
    );
    assert_eq!(
        s.checkpoint(id, &commit(0, "b")).await.unwrap(),
        Checkpoint::Conflict,
        "another owner"
    );
    assert_eq!(
        s.load(id).await.unwrap().version,
        0,
        "a conflict changes nothing"
    );
    let done = DoneRanges::new(
        vec![
            Span {
                since: ts("2024-01-15T11:00:00Z"),
                until: ts("2024-01-15T12:00:00Z"),
            },
            Span {
                since: ts("2024-01-16T00:00:00Z"),
                until: ts("2024-01-16T00:00:01Z"),
            },
        ],
        chrono::TimeDelta::hours(2),
    );
    assert_eq!(
        s.checkpoint(
            id,
            &Commit {
                done: &done,
                ..commit(0, "a")
            }
        )
        .await
        .unwrap(),
        Checkpoint::Committed { version: 1 }
    );
    let after = s.load(id).await.unwrap();
    assert_eq!(after.done, done, "the done ranges are stored");
    assert_eq!(after.version, 1);
    assert_eq!(after.cursor, Some(ts("2024-01-15T10:00:00Z")));
    assert_eq!(after.lease, None, "the checkpoint releases the lease");
    assert_eq!(after.last_invocation.as_deref(), Some("inv-1"));
    assert_eq!(
        after.fingerprints.as_deref(),
        Some("user/_fingerprints/x.bin")
    );
    // The same commit again: the version moved on, and the lease is gone.
    assert_eq!(
        s.checkpoint(id, &commit(0, "a")).await.unwrap(),
        Checkpoint::Conflict
    );
    // A commit that leaves the cursor and fingerprints unset keeps them.
    assert!(
        s.try_lease(id, &after, &lease("c"), &plan(1))
            .await
            .unwrap()
    );
    let keep = Commit {
        cursor: None,
        fingerprints: None,
        done: &NO_DONE,
        invocation: None,
        ..commit(1, "c")
    };
    assert_eq!(
        s.checkpoint(id, &keep).await.unwrap(),
        Checkpoint::Committed { version: 2 }
    );
    let kept = s.load(id).await.unwrap();
    assert_eq!(
        kept.done,
        DoneRanges::default(),
        "a checkpoint without done ranges removes them"
    );
    assert_eq!(kept.cursor, after.cursor);
    assert_eq!(kept.fingerprints, after.fingerprints);
    assert_eq!(kept.last_invocation, after.last_invocation);
}

async fn state_store_release_only_by_the_owner_and_keeps_the_plan(kind: Kind) {
    let env = Env::new(kind).await;
    let (s, id) = (&env.state, env.sync_id.as_str());
    let seen = s.load(id).await.unwrap();
    assert!(s.try_lease(id, &seen, &lease("a"), &plan(0)).await.unwrap());
    s.release(id, "b").await.unwrap();
    assert!(
        s.load(id).await.unwrap().lease.is_some(),
        "not b's to release"
    );
    s.release(id, "a").await.unwrap();
    let after = s.load(id).await.unwrap();
    assert_eq!(after.lease, None);
    assert_eq!(after.plan, Some(plan(0)), "a retry reuses the plan");
    assert_eq!(after.version, 0);
}

async fn sink_writes_each_key_once(kind: Kind) {
    let env = Env::new(kind).await;
    let sink = &env.sink;
    let key = sink.key(&format!("{}/a.jsonl", env.sync_id));
    assert_eq!(sink.get(&key).await.unwrap(), None);
    assert_eq!(
        sink.put_new(&key, "one\n".into(), JSONL).await.unwrap(),
        Put::Created
    );
    assert_eq!(
        sink.put_new(&key, "two\n".into(), JSONL).await.unwrap(),
        Put::Exists
    );
    sink.flush().await.unwrap();
    assert_eq!(
        sink.get(&key).await.unwrap().as_deref(),
        Some(&b"one\n"[..])
    );
    assert_eq!(
        env.get(&key).await,
        b"one\n",
        "what a reader of the lake sees"
    );
}

async fn sink_put_once_converges_and_never_overwrites(kind: Kind) {
    let env = Env::new(kind).await;
    let sink = &env.sink;
    let rel = format!("{}/r-00000.jsonl", env.sync_id);
    let line = |id: u32, at: &str| format!("{{\"id\":{id},\"_synced_at\":\"{at}\"}}\n");
    let first = line(1, "2024-01-01T00:00:00.000Z");
    let k1 = put_once(sink, &rel, first.clone().into(), JSONL)
        .await
        .unwrap();
    assert_eq!(k1, sink.key(&rel));
    // The same records stamped at another time: converged, the first object kept.
    let restamped = line(1, "2025-06-01T00:00:00.000Z");
    let k2 = put_once(sink, &rel, restamped.into(), JSONL).await.unwrap();
    assert_eq!(k2, k1);
    assert_eq!(sink.get(&k1).await.unwrap().unwrap(), first.as_bytes());
    // Other records: beside it, never over it.
    let other = line(2, "2025-06-01T00:00:00.000Z");
    let k3 = put_once(sink, &rel, other.clone().into(), JSONL)
        .await
        .unwrap();
    assert_eq!(k3, sink.key(&sink::alternative(&rel, 1)));
    assert_eq!(sink.get(&k3).await.unwrap().unwrap(), other.as_bytes());
    assert_eq!(sink.get(&k1).await.unwrap().unwrap(), first.as_bytes());
    sink.flush().await.unwrap();
}

/// A store that cannot be used fails with an error that says what to fix, classified where
/// the SDK (or the file system) answered, with the adapter's own error as its `source`.
async fn adapters_classify_failures_and_keep_their_source(kind: Kind) {
    let env = Env::new(kind).await;
    let (state, sink, expected) = match kind {
        Kind::Aws => (
            AnyState::DynamoDb(replay_sync::state::dynamodb::DynamoStateStore::new(
                common::dynamodb_client(),
                common::peers::unique("no-such-table"),
            )),
            AnySink::S3(replay_sync::sink::s3::S3Sink::new(
                common::s3_client(),
                common::peers::unique("no-such-bucket"),
                "raw",
            )),
            Cause::Missing,
        ),
        Kind::File => {
            // A regular file where the directories should be.
            let common::Lake::Dir(root) = &env.lake else {
                unreachable!()
            };
            let path = root.join("not-a-directory");
            std::fs::create_dir_all(root).unwrap();
            std::fs::write(&path, "").unwrap();
            (
                AnyState::File(replay_sync::state::file::FileStateStore::new(
                    path.join("state.json"),
                )),
                AnySink::Dir(replay_sync::sink::dir::DirSink::new(path.join("out"))),
                Cause::Other,
            )
        }
    };
    let check = |e: Error, what: &str| {
        assert_eq!(e.cause(), Some(expected), "{what}: {e}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "{what}: the adapter's error is kept: {e:?}"
        );
        if expected == Cause::Missing {
            assert!(e.to_string().contains("does not exist"), "{what}: {e}");
        }
    };
    check(state.load(&env.sync_id).await.unwrap_err(), "state load");
    let key = sink.key("x/a.jsonl");
    check(
        sink.put_new(&key, "a\n".into(), JSONL).await.unwrap_err(),
        "sink put",
    );
}
