//! What the benchmarks share: percentiles, and the report each writes for the summary of
//! `./dev bench` (`.chronicle/bench/<name>.json`, read by `infra/bench/report.py`).
//!
//! Every figure is Chronicle's against a raw baseline measured on the same machine in the
//! same run; the ratio is the figure that travels between machines.

use std::path::PathBuf;

use serde::Serialize;

/// One path measured: Chronicle's figure, the baseline's, and the goal.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub path: String,
    pub chronicle: f64,
    /// `None` where there is no raw equivalent (freshness has none).
    pub baseline: Option<f64>,
    pub unit: String,
    /// `chronicle / baseline` for rates; absent without a baseline.
    pub ratio: Option<f64>,
    /// What the figure should be, in words, e.g. `>= 0.8x` or `< 150 ms`.
    pub goal: Option<String>,
    pub met: Option<bool>,
}

impl Row {
    /// A rate (higher is better) against its baseline, with a minimum ratio as the goal.
    pub fn rate(path: &str, unit: &str, chronicle: f64, baseline: f64, goal: Option<f64>) -> Self {
        let ratio = chronicle / baseline.max(f64::MIN_POSITIVE);
        Self {
            path: path.to_owned(),
            chronicle,
            baseline: Some(baseline),
            unit: unit.to_owned(),
            ratio: Some(ratio),
            goal: goal.map(|goal| format!(">= {goal}x")),
            met: goal.map(|goal| ratio >= goal),
        }
    }

    /// A latency (lower is better) against a ceiling, with the baseline's latency beside
    /// it when there is one.
    pub fn latency(
        path: &str,
        chronicle_ms: f64,
        baseline_ms: Option<f64>,
        below_ms: Option<f64>,
    ) -> Self {
        Self {
            path: path.to_owned(),
            chronicle: chronicle_ms,
            baseline: baseline_ms,
            unit: "ms".to_owned(),
            ratio: None,
            goal: below_ms.map(|limit| format!("< {limit} ms")),
            met: below_ms.map(|limit| chronicle_ms < limit),
        }
    }

    /// A count that must be zero (errors, losses).
    pub fn zero(path: &str, count: u64) -> Self {
        Self {
            path: path.to_owned(),
            chronicle: count as f64,
            baseline: None,
            unit: "count".to_owned(),
            ratio: None,
            goal: Some("0".to_owned()),
            met: Some(count == 0),
        }
    }
}

/// A point of a latency-under-load curve: what was offered, what was served, how fast.
#[derive(Debug, Clone, Serialize)]
pub struct LoadPoint {
    pub series: String,
    /// Concurrent clients (closed loop) or offered rate per second (open loop).
    pub load: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A benchmark's figures, written for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bench: String,
    pub rows: Vec<Row>,
    pub load: Vec<LoadPoint>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(bench: &str) -> Self {
        Self {
            bench: bench.to_owned(),
            rows: Vec::new(),
            load: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Writes the report where `./dev bench` collects it (`CHRONICLE_BENCH_DIR`, else
    /// `.chronicle/bench` at the workspace root).
    pub fn write(&self) {
        let dir = std::env::var_os("CHRONICLE_BENCH_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.chronicle/bench"),
            PathBuf::from,
        );
        let path = dir.join(format!("{}.json", self.bench));
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            std::fs::write(
                &path,
                serde_json::to_vec_pretty(self).expect("reports serialize"),
            )
        });
        if let Err(error) = written {
            eprintln!("could not write {}: {error}", path.display());
        }
    }
}

/// The `q`-quantile (0..=1) of ascending `sorted` values, nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Which of the customers `ids` are searchable in the search index behind `alias` now;
/// `None` when Elasticsearch did not answer (the caller asks again).
pub async fn searchable(es: &read_model::Es, alias: &str, ids: &[String]) -> Option<Vec<String>> {
    let query = serde_json::json!({
        "size": ids.len(), "_source": ["customer_id"],
        "query": {"terms": {"customer_id": ids}}
    });
    let (_, response) = es
        .request(
            read_model::es::Method::Post,
            &format!("/{alias}/_search"),
            Some(query),
            &[404],
        )
        .await
        .ok()?;
    Some(
        response["hits"]["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|hit| hit["_source"]["customer_id"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn rows_say_whether_their_goal_is_met() {
        assert_eq!(
            Row::rate("p", "x/s", 80.0, 100.0, Some(0.8)).met,
            Some(true)
        );
        assert_eq!(
            Row::rate("p", "x/s", 79.0, 100.0, Some(0.8)).met,
            Some(false)
        );
        assert_eq!(Row::latency("l", 149.0, None, Some(150.0)).met, Some(true));
        assert_eq!(Row::zero("e", 1).met, Some(false));
    }
}
