//! CPU cost of parsing a page, one core, no I/O: ns per record for the page parser alone
//! (split + one-pass validation) and for the whole parse (plus timestamps, hashes, entries).
//!
//!     cargo bench --bench parse            # 200 pages of 1,000 records (~341 bytes each)
//!
//! Then the lines written for them: the seed's shape (`_synced_at` added), and another
//! shape's (`ts` in epoch seconds: `_record_id` and `_cursor` added too), against what
//! formatting `_cursor` with chrono's format string cost each line.
//!
//! Each figure is the best of 7 rounds, so other load on the machine matters less; the
//! serde_json slow path is measured on the same records for comparison.

use std::time::{Duration, Instant};

mod common;

use common::record;

use bytes::Bytes;
use replay_sync::record::{self, Entry};
use replay_sync::source::page::{PageScanner, RawElement};

fn best(rounds: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut n = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        n = f();
        best = best.min(t.elapsed());
    }
    (best, n)
}

fn main() {
    const PAGES: usize = 200;
    const PER_PAGE: usize = 1000;
    let pages: Vec<Bytes> = (0..PAGES)
        .map(|p| {
            let records: Vec<String> = (p * PER_PAGE..(p + 1) * PER_PAGE).map(record).collect();
            Bytes::from(format!(
                "{{\"data\":[{}],\"next\":null}}",
                records.join(",")
            ))
        })
        .collect();
    let texts: Vec<String> = (0..PAGES * PER_PAGE).map(record).collect();

    // The elements of every page, the page parser's output.
    let elements = |page: &Bytes| {
        let mut s = PageScanner::new("data", Some("next"));
        let mut out: Vec<RawElement> = Vec::new();
        s.feed_raw(page, &mut out).expect("valid page");
        s.finish().expect("complete page");
        out
    };
    let split = || pages.iter().map(|p| elements(p).len()).sum();
    let fields = replay_sync::fields::Fields::shared_default();
    let parse = || {
        let mut n = 0;
        for page in &pages {
            for e in elements(page) {
                assert!(matches!(e.parse(&fields), Ok(Entry::Valid(_))));
                n += 1;
            }
        }
        n
    };
    let slow = || {
        for t in &texts {
            assert!(matches!(
                record::parse_record_slow(t, false),
                Ok(Entry::Valid(_))
            ));
        }
        texts.len()
    };
    println!(
        "{PAGES} pages of {PER_PAGE} records, {} bytes each",
        record(123_456).len()
    );
    for (name, f) in [
        (
            "split + validate (page parser)",
            &split as &dyn Fn() -> usize,
        ),
        ("whole parse (entries)", &parse),
        ("serde_json path, per record", &slow),
    ] {
        let (t, n) = best(7, f);
        assert_eq!(n, PAGES * PER_PAGE, "every record");
        println!(
            "{name:<32} {:>7.1} ns/record {:>7.2} M records/s",
            t.as_nanos() as f64 / n as f64,
            n as f64 / t.as_secs_f64() / 1e6
        );
    }
    lines(&texts);
}

/// ns per line written: the seed's shape, another shape, and chrono's formatter alone.
fn lines(texts: &[String]) {
    let other = replay_sync::fields::Fields::from_lookup(&|k: &str| match k {
        "CURSOR_FIELD" => Some("ts".into()),
        "CURSOR_FORMAT" => Some("epoch_s".into()),
        _ => None,
    })
    .unwrap();
    let seed = replay_sync::fields::Fields::shared_default();
    let records = |fields: &replay_sync::fields::Fields, shaped: bool| -> Vec<record::Record> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = if shaped {
                    // The same record, stamped in epoch seconds under `ts`.
                    let cut = t.rfind(",\"updatedAt\"").unwrap();
                    format!("{},\"ts\":{}}}", &t[..cut], 1_705_307_400 + i)
                } else {
                    t.clone()
                };
                match record::parse_record_with(&t, false, fields) {
                    Ok(Entry::Valid(r)) => r,
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    };
    let (plain, shaped) = (records(&seed, false), records(&other, true));
    let write = |rs: &[record::Record]| {
        let mut out = Vec::with_capacity(1 << 20);
        for r in rs {
            r.write_line(&mut out, "2024-01-16T00:00:00.000Z");
            if out.len() > 1 << 20 {
                out.clear();
            }
        }
        rs.len()
    };
    let chrono_way = || {
        let mut n = 0;
        for r in &shaped {
            n += r
                .updated_at
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string()
                .len();
        }
        assert!(n > 0);
        shaped.len()
    };
    for (name, f) in [
        (
            "lines, seed's shape",
            &(|| write(&plain)) as &dyn Fn() -> usize,
        ),
        ("lines, another shape", &|| write(&shaped)),
        ("chrono format of _cursor alone", &chrono_way),
    ] {
        let (t, n) = best(7, f);
        println!("{name:<32} {:>7.1} ns/line", t.as_nanos() as f64 / n as f64);
    }
}
