//! What the relay's integration tests share: Java's partitioner, the `relay` binary as a
//! child process, and the checks on what reached Kafka.

#![allow(dead_code)] // each test binary uses its own subset

use uuid::Uuid;

/// Kafka's default partitioner for a keyed record, as the Java client computes it:
/// `toPositive(murmur2(key)) % partitions`.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's murmur2 (org.apache.kafka.common.utils.Utils#murmur2), written out again
/// here so the test checks the relay against Java's algorithm, not against itself.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// A plain HTTP/1.0 GET against a local server: `(status, body)`.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of a Prometheus sample, e.g. `chronicle_relay_published_events_total`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A relay child process of the `relay` binary, killed when dropped.
pub struct RelayProcess {
    pub child: std::process::Child,
    pub metrics_addr: String,
    pub log: std::path::PathBuf,
}

impl RelayProcess {
    pub fn spawn(database_url: &str, brokers: &str, topic_prefix: &str, batch_size: u32) -> Self {
        let port = relay::testing::free_port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("relay-{}.log", Uuid::now_v7().simple()));
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_relay"))
            .env("CHRONICLE_RELAY_DATABASE_URL", database_url)
            .env("KAFKA_BROKERS", brokers)
            .env("CHRONICLE_TOPIC_PREFIX", topic_prefix)
            .env("CHRONICLE_RELAY_METRICS_ADDR", &metrics_addr)
            .env("CHRONICLE_RELAY_BATCH_SIZE", batch_size.to_string())
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the relay binary");
        Self {
            child,
            metrics_addr,
            log,
        }
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The role `/healthz` reports, once the process serves it.
    pub async fn role(&self) -> Option<String> {
        let (status, body) = http_get(&self.metrics_addr, "/healthz").await.ok()?;
        if status != 200 {
            return None;
        }
        let health: serde_json::Value = serde_json::from_str(&body).ok()?;
        health["role"].as_str().map(str::to_owned)
    }

    pub async fn published(&self) -> Option<f64> {
        let (_, body) = http_get(&self.metrics_addr, "/metrics").await.ok()?;
        metric(&body, "chronicle_relay_published_events_total")
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Checks what consumers rely on: every expected event arrived, and each stream's events
/// arrived in version order (first deliveries; redeliveries may repeat older ones).
/// Returns how many records were redeliveries.
pub fn assert_complete_and_ordered(
    records: &[relay::testing::ConsumedRecord],
    expected: &std::collections::HashSet<Uuid>,
) -> usize {
    use std::collections::{BTreeMap, HashSet};
    let mut seen = HashSet::new();
    let mut first_versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    // Kafka orders per partition; a stream lives in one partition, so per-partition
    // offset order is the order a consumer of the stream sees.
    let mut ordered: Vec<_> = records.iter().collect();
    ordered.sort_by_key(|r| (r.topic.clone(), r.partition, r.offset));
    let mut duplicates = 0;
    for record in ordered {
        if seen.insert(record.event.event_id) {
            first_versions
                .entry(record.event.stream_id.as_str())
                .or_default()
                .push(record.event.stream_version);
        } else {
            duplicates += 1;
        }
    }
    let missing: Vec<&Uuid> = expected.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never reached Kafka",
        missing.len(),
        expected.len()
    );
    let unexpected = seen.iter().filter(|id| !expected.contains(*id)).count();
    assert_eq!(unexpected, 0, "records of events that were never committed");
    for (stream, versions) in first_versions {
        let in_order: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(versions, in_order, "stream {stream} arrived out of order");
    }
    duplicates
}
