//! Rows written per run versus rows changed, in steady state: a 6 h buffer, a 15-minute
//! schedule, 1 % of the rows changing between runs. Measured twice on the same sequence of
//! changes, in the same run of this bench:
//!
//! * fingerprints (this project): unchanged rows in the overlap are not rewritten;
//! * the seed's behaviour (`FINGERPRINT_MAX=0`): every row in the window is written.
//!
//! ```text
//! cargo bench --bench overlap              # 20,000 rows, 30 warm-up runs, 40 measured
//! cargo bench --bench overlap -- 100000    # another table size
//! ```
//!
//! The engine runs as in production (file state, directory output, fsyncs); the source is
//! in memory (what is measured is what gets written, not HTTP).

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use replay_sync::config::BatchLimits;
use replay_sync::record::{Entry, parse_record};
use replay_sync::sink::dir::DirSink;
use replay_sync::source::{Chunk, PageEnd, Pages, Source};
use replay_sync::state::file::FileStateStore;
use replay_sync::sync::Invocation;
use replay_sync::{Engine, RunRequest, Settings};

const BUFFER_HOURS: i64 = 6;
const INTERVAL_MIN: i64 = 15;
const WARMUP: usize = 30;
const MEASURED: usize = 40;

/// The table as the API serves it: one current version per row.
#[derive(Clone)]
struct Table {
    rows: Vec<(DateTime<Utc>, u64)>,
}

impl Table {
    fn record(i: usize, at: DateTime<Utc>, version: u64) -> String {
        format!(
            r#"{{"id":"row-{i:07}","name":"Person {i}","email":"p{i}@example.com","version":{version},"updatedAt":"{}"}}"#,
            replay_sync::window::format_ts(at)
        )
    }
}

struct MemSource<'a>(&'a Table);

struct MemPages(Option<Vec<Entry>>);

impl Pages for MemPages {
    async fn next_chunk(&mut self) -> replay_sync::Result<Option<Chunk>> {
        Ok(self.0.take().map(|entries| Chunk {
            entries,
            page_end: Some(PageEnd {
                bytes: 0,
                more: false,
            }),
            restart: false,
        }))
    }
}

impl Source for MemSource<'_> {
    type Pages<'b>
        = MemPages
    where
        Self: 'b;

    fn open(
        &self,
        since: Option<DateTime<Utc>>,
        _: Option<DateTime<Utc>>,
        _: Option<tokio::time::Instant>,
    ) -> MemPages {
        let mut sel: Vec<(usize, DateTime<Utc>, u64)> = self
            .0
            .rows
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| since.is_none_or(|s| *at >= s))
            .map(|(i, (at, v))| (i, *at, *v))
            .collect();
        sel.sort_by_key(|(i, at, _)| (*at, *i));
        let entries = sel
            .into_iter()
            .map(|(i, at, v)| parse_record(&Table::record(i, at, v), false).expect("valid"))
            .collect();
        MemPages(Some(entries))
    }
}

struct Tally {
    written: u64,
    changed: u64,
    fetched: u64,
    time: Duration,
}

async fn steady_state(rows: usize, fingerprint_max: usize) -> Tally {
    let dir = tempfile::tempdir().unwrap();
    let state = FileStateStore::new(dir.path().join("state.json"));
    let sink = DirSink::new(dir.path().join("out"));
    let settings = Settings {
        sync_id: "user".into(),
        buffer: TimeDelta::hours(BUFFER_HOURS),
        batch: BatchLimits::default(),
        deadline_margin: Duration::from_secs(30),
        fingerprint_max,
        fetch_concurrency: 1,
        format: Default::default(),
        audit: TimeDelta::hours(24),
    };
    let start = replay_sync::window::parse_ts("2024-03-01T00:00:00Z").unwrap();
    // Every row last changed some time in the day before the start.
    let mut rng = fastrand::Rng::with_seed(7);
    let mut table = Table {
        rows: (0..rows)
            .map(|_| (start - TimeDelta::seconds(rng.i64(1..86_400)), 0))
            .collect(),
    };
    let mut tally = Tally {
        written: 0,
        changed: 0,
        fetched: 0,
        time: Duration::ZERO,
    };
    for k in 0..WARMUP + MEASURED {
        let now = start + TimeDelta::minutes(INTERVAL_MIN * k as i64);
        // 1 % of the rows change during the interval before this run.
        let changes = rows / 100;
        for _ in 0..changes {
            let i = rng.usize(..rows);
            let at = now - TimeDelta::seconds(rng.i64(0..INTERVAL_MIN * 60));
            let (t, v) = &mut table.rows[i];
            *t = at.max(*t);
            *v += 1;
        }
        let inv = Invocation {
            request_id: format!("run-{k}"),
            started_at: now,
            deadline: None,
            lease_until: now + TimeDelta::minutes(15),
        };
        let source = MemSource(&table);
        let engine = Engine {
            state: &state,
            source: &source,
            sink: &sink,
            settings: &settings,
        };
        let clock = Instant::now();
        let s = engine
            .run(&RunRequest::scheduled(), &inv)
            .await
            .expect("run");
        if k >= WARMUP {
            tally.time += clock.elapsed();
            tally.written += s.counts.records_written;
            tally.fetched += s.counts.records_fetched;
            tally.changed += changes as u64;
        }
    }
    tally
}

fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "{rows} rows, {BUFFER_HOURS} h buffer, a run every {INTERVAL_MIN} min, 1 % of rows changing per run; {MEASURED} runs measured after {WARMUP}"
    );
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>9} {:>10}",
        "", "changed/run", "fetched/run", "written/run", "×changed", "ms/run"
    );
    for (name, max) in [("fingerprints", 500_000), ("seed (write the window)", 0)] {
        let t = rt.block_on(steady_state(rows, max));
        let per = |x: u64| x as f64 / MEASURED as f64;
        println!(
            "{:<28} {:>12.0} {:>12.0} {:>12.0} {:>9.2} {:>10.1}",
            name,
            per(t.changed),
            per(t.fetched),
            per(t.written),
            t.written as f64 / t.changed as f64,
            t.time.as_secs_f64() * 1000.0 / MEASURED as f64
        );
    }
}
