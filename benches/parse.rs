//! CPU cost of parsing a page, one core, no I/O: ns per record for the page parser alone
//! (split + one-pass validation) and for the whole parse (plus timestamps, hashes, entries).
//!
//!     cargo bench --bench parse            # 200 pages of 1,000 records (~341 bytes each)
//!
//! Each figure is the best of 7 rounds, so other load on the machine matters less; the
//! serde_json slow path is measured on the same records for comparison.

use std::time::{Duration, Instant};

use bytes::Bytes;
use replay_sync::page::PageScanner;
use replay_sync::record::{self, Entry};

fn record(i: usize) -> String {
    format!(
        concat!(
            r#"{{"id":"u{:010}","name":"Person Number {}","email":"person.{}@example.com","#,
            r#""address":"{} Example Street, Apt {}\nSpringfield, IL 62704","company":"Example Holdings Ltd","#,
            r#""job":"Senior Quantity Surveyor","score":{}.{:03},"active":true,"tags":["alpha","beta"],"#,
            r#""createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-02-{:02}T{:02}:{:02}:{:02}Z"}}"#
        ),
        i,
        i,
        i,
        i % 9999,
        i % 97,
        i % 100_000,
        i % 1000,
        1 + (i / 86_400) % 28,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60
    )
}

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

    let split = || {
        let mut n = 0;
        for page in &pages {
            let mut s = PageScanner::new("data", Some("next"));
            let mut out = Vec::new();
            s.feed_raw(page, &mut out).expect("valid page");
            s.finish().expect("complete page");
            n += out.len();
        }
        n
    };
    let parse = || {
        let mut n = 0;
        for page in &pages {
            let mut s = PageScanner::new("data", Some("next"));
            let mut out = Vec::new();
            s.feed_raw(page, &mut out).expect("valid page");
            for e in &out {
                assert!(matches!(e.parse(), Ok(Entry::Valid(_))));
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
}
