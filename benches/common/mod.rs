//! What the benchmarks share.

/// Record `i` of the benchmark data: ~341 bytes, user-like fields, one `updatedAt` a
/// second from 2024-02-01T00:00:00Z, so that records come in ascending order (for the first
/// 2.4 million).
pub fn record(i: usize) -> String {
    let (h, m, s) = ((i / 3600) % 24, (i / 60) % 60, i % 60);
    let day = 1 + (i / 86_400) % 28;
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
        day,
        h,
        m,
        s
    )
}
