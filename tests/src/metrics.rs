//! A node's /metrics, read with a parser of Prometheus' text format.

use std::time::Duration;

pub use prometheus_parse::Scrape;

/// `GET /metrics` on `base` (http://host:port/), parsed.
pub fn scrape(base: &str) -> Scrape {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let text = ureq::get(&url)
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .into_string()
        .unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `name` with (at least) `labels`, or None.
pub fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(value)
}

/// The sum of the samples `name` whose label `label` passes `keep`.
pub fn sum(scrape: &Scrape, name: &str, label: &str, keep: impl Fn(&str) -> bool) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get(label).is_some_and(&keep))
        .map(value)
        .sum()
}

fn value(sample: &prometheus_parse::Sample) -> f64 {
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

/// `sample` on a node's RPC port (where /metrics needs no cookie).
pub fn of(node: &crate::NodeProcess, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(&scrape(&node.rpc.url), name, labels)
}
