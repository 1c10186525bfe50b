//! The buffer catches what the replica delivers late — a property test over random
//! schedules against a simulated lagging replica (`common::replica`), on the file backends
//! and on DynamoDB + S3 in moto.
//!
//! Each schedule has ≥ 30 runs at random intervals; between runs the primary takes updates
//! at random times, with random replication lags, in bursts on the same ids, some stamped on
//! the very second of a run, some changing a row twice within one second. After every run the
//! lake, read as a consumer reads it (per id the line with the greatest `updatedAt`, then the
//! latest `_synced_at`), must hold exactly what the replica showed at that run's time.
//! * every lag ≤ buffer: no row is ever missed;
//! * some lags > buffer: the same check finds the misses (so it can fail).
//!
//! Schedules come from fixed seeds (the test is deterministic); `LAG_SEED=N` adds one. Each
//! property also holds with the window read in time slices (2, 3 and 8 at once).

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use common::replica::{self, Replica};
use common::{Env, Kind, source};
use replay_sync::RunRequest;
use replay_sync::sync::Invocation;
use serde_json::Value;

on_both_backends_and_sliced!(
    no_row_is_missed_when_every_lag_fits_the_buffer,
    misses_are_detected_when_lags_exceed_the_buffer,
    an_audit_heals_and_counts_exactly_what_the_buffer_missed,
);

/// The same property with an API of another shape: nested epoch-millisecond records under
/// `result.items`, offset paging, `since` in epoch milliseconds (issue 21) — one stream on
/// both backends, and four slices on files.
mod another_shape {
    use super::*;

    async fn shaped<F: std::future::Future>(test: F) -> F::Output {
        SHAPED.with(|s| s.set(true));
        let out = test.await;
        SHAPED.with(|s| s.set(false));
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_row_is_missed_on_files() {
        shaped(no_row_is_missed_when_every_lag_fits_the_buffer(Kind::File)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_row_is_missed_on_aws() {
        shaped(no_row_is_missed_when_every_lag_fits_the_buffer(Kind::Aws)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_row_is_missed_in_4_slices_on_files() {
        shaped(common::sliced(
            4,
            no_row_is_missed_when_every_lag_fits_the_buffer(Kind::File),
        ))
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn misses_are_detected_on_files() {
        shaped(misses_are_detected_when_lags_exceed_the_buffer(Kind::File)).await
    }
}

/// Two more concurrency levels, swapped between the backends.
mod more_slices {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_row_is_missed_in_8_slices_on_files() {
        common::sliced(
            8,
            no_row_is_missed_when_every_lag_fits_the_buffer(Kind::File),
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_row_is_missed_in_3_slices_on_aws() {
        common::sliced(
            3,
            no_row_is_missed_when_every_lag_fits_the_buffer(Kind::Aws),
        )
        .await
    }
}

/// A random schedule: run times, and the updates the primary takes.
struct Schedule {
    runs: Vec<DateTime<Utc>>,
    replica: Arc<Replica>,
}

const IDS: usize = 30;

fn schedule(seed: u64, max_lag: TimeDelta) -> Schedule {
    let mut rng = fastrand::Rng::with_seed(seed);
    let replica = Arc::new(Replica::default());
    let start = common::ts("2024-03-01T00:00:00Z");
    let n_runs = 30 + rng.usize(..8);
    let mut runs = Vec::new();
    let mut t = start;
    let max_lag_s = max_lag.num_seconds();
    let lag = |rng: &mut fastrand::Rng| match rng.u8(..10) {
        0 => TimeDelta::zero(),
        1 => max_lag, // the worst case, exactly
        _ => TimeDelta::seconds(rng.i64(0..=max_lag_s)),
    };
    for _ in 0..n_runs {
        let interval = TimeDelta::seconds(rng.i64(5 * 60..=45 * 60));
        let (from, to) = (t, t + interval);
        // Updates in (from, to].
        for _ in 0..rng.usize(..8) {
            let at = from + TimeDelta::seconds(rng.i64(1..=interval.num_seconds()));
            let id = format!("u{:02}", rng.usize(..IDS));
            if rng.u8(..4) == 0 {
                // A burst on one id, some within the same second.
                for k in 0..2 + rng.usize(..3) {
                    let at = at + TimeDelta::seconds(rng.i64(0..=1) * k as i64);
                    replica.update(&id, at.min(to), lag(&mut rng));
                }
            } else {
                replica.update(&id, at, lag(&mut rng));
            }
        }
        // On the second of the run itself, visible at once (equal to the run's start, which
        // bounds the cursor).
        if rng.u8(..3) == 0 {
            replica.update(&format!("u{:02}", rng.usize(..IDS)), to, TimeDelta::zero());
        }
        // Fresh rows keep the cursor close to the run's time, so the late ones matter.
        replica.update(
            &format!("u{:02}", rng.usize(..IDS)),
            to - TimeDelta::seconds(1),
            TimeDelta::zero(),
        );
        runs.push(to);
        t = to;
    }
    Schedule { runs, replica }
}

/// What a consumer sees: per id, `(updatedAt, _synced_at, seq)` of the winning line.
type View = BTreeMap<String, (DateTime<Utc>, String, u64)>;

thread_local! {
    /// The test running on this thread reads the replica through [`replica::shaped_api`].
    static SHAPED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn shaped() -> bool {
    SHAPED.with(|s| s.get())
}

/// A line's id and time, in the seed's shape or the other one.
fn id_and_time(l: &Value) -> (String, DateTime<Utc>) {
    if shaped() {
        let ms = l["meta"]["ts"].as_i64().unwrap();
        (
            l["meta"]["id"].as_str().unwrap().to_string(),
            DateTime::from_timestamp_millis(ms).unwrap(),
        )
    } else {
        (
            l["id"].as_str().unwrap().to_string(),
            common::ts(l["updatedAt"].as_str().unwrap()),
        )
    }
}

fn absorb(view: &mut View, lines: &[Value]) {
    for l in lines {
        let (id, at) = id_and_time(l);
        let cand = (
            at,
            l["_synced_at"].as_str().unwrap().to_string(),
            l["seq"].as_u64().unwrap(),
        );
        let cur = view.entry(id).or_insert_with(|| cand.clone());
        if (&cand.0, &cand.1) > (&cur.0, &cur.1) {
            *cur = cand;
        }
    }
}

/// Outcome of running a schedule.
#[derive(Debug, Default)]
struct Outcome {
    /// `(run, id)` pairs where the lake lacked the replica's version.
    misses: Vec<(usize, String)>,
    late: u64,
    max_lateness: f64,
    written: u64,
    skipped: u64,
    changed_rows: u64,
    /// Ranges read beyond the initial cut of each window: splits (with slices).
    splits: usize,
}

async fn play(kind: Kind, seed: u64, max_lag: TimeDelta, buffer: TimeDelta) -> Outcome {
    let env = Env::new(kind).await;
    let sched = schedule(seed, max_lag);
    // With slices, short pages: a slice spans several, so dense slices get split.
    let per_page = if common::slices() > 1 { 2 } else { 7 };
    let (api, src) = if shaped() {
        let api = replica::shaped_api(sched.replica.clone(), per_page);
        let url = api.url("/users");
        let mut vars = replica::SHAPED.to_vec();
        if common::slices() > 1 {
            vars.push(("API_UNTIL_PARAM", "updated_before"));
        }
        let cfg = replay_sync::Config::from_lookup(|k| {
            if k == "API_URL" {
                return Some(url.clone());
            }
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let src = replay_sync::source::http::HttpSource::new(cfg.api).unwrap();
        (api, src)
    } else {
        let api = replica::api(sched.replica.clone(), per_page);
        let src = source(&api.url("/users"));
        (api, src)
    };
    let mut settings = env.settings();
    settings.buffer = buffer;
    let mut view = View::new();
    let mut out = Outcome::default();
    let mut seen_versions = std::collections::BTreeSet::new();
    for (k, &now) in sched.runs.iter().enumerate() {
        sched.replica.set_now(now);
        let inv = Invocation {
            request_id: format!("run-{k}"),
            started_at: now,
            deadline: None,
            lease_until: now + TimeDelta::minutes(15),
        };
        let s = env
            .run_as(&env.state, &src, &settings, &RunRequest::scheduled(), &inv)
            .await
            .unwrap_or_else(|e| panic!("seed {seed} run {k}: {e}"));
        assert_eq!(
            s.status,
            replay_sync::Status::Completed,
            "seed {seed} run {k}"
        );
        assert_eq!(
            s.counts.records_fetched,
            s.counts.records_written
                + s.counts.records_rejected
                + s.counts.records_deduplicated
                + s.counts.records_skipped
                + s.counts.records_stale,
            "seed {seed} run {k}: every fetched record is accounted for"
        );
        absorb(&mut view, &env.lines(&s.objects).await);
        out.late += s.counts.late_records;
        out.max_lateness = out.max_lateness.max(s.counts.max_lateness_seconds);
        out.written += s.counts.records_written;
        out.skipped += s.counts.records_skipped;
        for (id, u) in sched.replica.visible(now) {
            seen_versions.insert(u.seq);
            let got = view.get(&id).map(|v| v.2);
            if got != Some(u.seq as u64) {
                out.misses.push((k, id));
            }
        }
    }
    out.changed_rows = seen_versions.len() as u64;
    if common::slices() > 1 {
        // The windows were read in slices: ranges with an upper bound, and more ranges than
        // a fixed cut gives (dense slices were split).
        let reqs = api.requests();
        let (since, until) = match shaped() {
            true => ("updated_after", "updated_before"),
            false => ("since", "until"),
        };
        let ranges: std::collections::BTreeSet<_> = reqs
            .iter()
            .filter(|r| r.param("page").is_none() && r.param("offset").is_none_or(|o| o == "0"))
            .map(|r| {
                (
                    r.param(since).map(str::to_string),
                    r.param(until).map(str::to_string),
                )
            })
            .collect();
        assert!(reqs.iter().any(|r| r.param(until).is_some()), "seed {seed}");
        // Each run's window starts cut in `slices()`; more ranges were split off.
        out.splits = ranges
            .len()
            .saturating_sub(sched.runs.len() * common::slices());
    }
    // The lake as a whole (not just what the summaries listed) gives the same view.
    let keys: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.ends_with(".jsonl") && !k.contains("/_"))
        .collect();
    let mut whole = View::new();
    absorb(&mut whole, &env.lines(&keys).await);
    assert_eq!(
        whole, view,
        "seed {seed}: every object is listed by its run"
    );
    out
}

fn seeds() -> Vec<u64> {
    let mut s = vec![1, 2, 3, 5, 8, 13, 21, 34];
    if let Some(extra) = std::env::var("LAG_SEED").ok().and_then(|v| v.parse().ok()) {
        s.push(extra);
    }
    s
}

async fn no_row_is_missed_when_every_lag_fits_the_buffer(kind: Kind) {
    let (max_lag, buffer) = (TimeDelta::minutes(90), TimeDelta::hours(2));
    let seeds = match kind {
        Kind::File => seeds(),
        Kind::Aws => seeds().into_iter().take(3).collect(),
    };
    let (mut late, mut max_lateness, mut splits) = (0, 0.0f64, 0);
    for seed in seeds {
        let o = play(kind, seed, max_lag, buffer).await;
        assert!(o.misses.is_empty(), "seed {seed}: missed {:?}", o.misses);
        assert!(o.written > 0, "seed {seed}: data arrived");
        assert!(
            o.max_lateness <= max_lag.num_seconds() as f64,
            "seed {seed}: {o:?}"
        );
        late += o.late;
        max_lateness = max_lateness.max(o.max_lateness);
        splits += o.splits;
    }
    if common::slices() > 1 {
        eprintln!("{} slices: {splits} splits", common::slices());
        assert!(splits > 0, "dense slices were split");
    }
    assert!(late > 0, "the schedules do deliver rows late");
    assert!(
        max_lateness > 30.0 * 60.0,
        "and some of them very late: {max_lateness}"
    );
}

async fn misses_are_detected_when_lags_exceed_the_buffer(kind: Kind) {
    let (max_lag, buffer) = (TimeDelta::hours(3), TimeDelta::minutes(20));
    let seeds = match kind {
        Kind::File => seeds(),
        Kind::Aws => seeds().into_iter().take(3).collect(),
    };
    let mut missed = 0;
    for seed in seeds {
        let o = play(kind, seed, max_lag, buffer).await;
        missed += o.misses.len();
    }
    assert!(
        missed > 0,
        "a buffer shorter than the lag misses rows, and the check sees it"
    );
}

/// Lags up to 3 h against a 20-minute buffer: the normal runs miss rows (asserted), then an
/// audit (24 h deep) at a time when every late row is visible writes every one of them and
/// counts exactly those older than what a normal run re-reads; a second audit over the
/// unchanged lake writes nothing.
async fn an_audit_heals_and_counts_exactly_what_the_buffer_missed(kind: Kind) {
    let (max_lag, buffer) = (TimeDelta::hours(3), TimeDelta::minutes(20));
    let seeds = match kind {
        Kind::File => seeds(),
        Kind::Aws => seeds().into_iter().take(3).collect(),
    };
    let mut missed_total = 0;
    for seed in seeds {
        let env = Env::new(kind).await;
        let sched = schedule(seed, max_lag);
        let per_page = if common::slices() > 1 { 2 } else { 7 };
        let api = replica::api(sched.replica.clone(), per_page);
        let src = source(&api.url("/users"));
        let mut settings = env.settings();
        settings.buffer = buffer;
        settings.audit = TimeDelta::hours(24);
        let run = |now: DateTime<Utc>, k: String, req: RunRequest| {
            let inv = Invocation {
                request_id: k,
                started_at: now,
                deadline: None,
                lease_until: now + TimeDelta::minutes(15),
            };
            let (env, src, settings) = (&env, &src, &settings);
            async move {
                env.run_as(&env.state, src, settings, &req, &inv)
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
            }
        };
        let mut view = View::new();
        for (k, &now) in sched.runs.iter().enumerate() {
            sched.replica.set_now(now);
            let s = run(now, format!("run-{k}"), RunRequest::scheduled()).await;
            assert_eq!(
                s.counts.records_missed_by_buffer, 0,
                "only audits count misses"
            );
            absorb(&mut view, &env.lines(&s.objects).await);
        }
        // Later, every late row has reached the replica.
        let at = *sched.runs.last().unwrap() + TimeDelta::hours(4);
        sched.replica.set_now(at);
        let cursor = env.state().await.cursor.expect("a cursor");
        let visible = sched.replica.visible(at);
        let lacking: Vec<&replica::Update> = visible
            .values()
            .filter(|u| view.get(&u.id).map(|v| v.2) != Some(u.seq as u64))
            .collect();
        let expected = lacking
            .iter()
            .filter(|u| u.at < cursor - buffer && u.at >= cursor - TimeDelta::hours(24))
            .count() as u64;
        // The normal runs missed them: the lake lacks versions older than they re-read.
        let audit = RunRequest {
            audit: true,
            trigger: replay_sync::event::Trigger::Manual,
            ..RunRequest::scheduled()
        };
        let s = run(at, "audit".into(), audit.clone()).await;
        assert_eq!(
            s.counts.records_missed_by_buffer, expected,
            "seed {seed}: exactly the rows the buffer missed: {s:?}"
        );
        assert_eq!(
            s.since.as_deref(),
            Some(replay_sync::window::format_ts(cursor - TimeDelta::hours(24)).as_str())
        );
        if expected > 0 {
            assert!(s.counts.max_missed_lateness_seconds > buffer.num_seconds() as f64);
        }
        absorb(&mut view, &env.lines(&s.objects).await);
        for (id, u) in &visible {
            assert_eq!(
                view.get(id).map(|v| v.2),
                Some(u.seq as u64),
                "seed {seed}: the audit healed {id}"
            );
        }
        assert!(
            env.state().await.cursor >= Some(cursor),
            "an audit never moves the cursor back"
        );
        // Nothing changed since: a second audit writes no data object.
        let again = run(at, "audit-2".into(), audit).await;
        assert!(again.objects.is_empty(), "seed {seed}: {again:?}");
        assert_eq!(again.counts.records_missed_by_buffer, 0);
        missed_total += expected;
    }
    assert!(
        missed_total > 0,
        "the schedules do miss rows the audit then finds"
    );
}
