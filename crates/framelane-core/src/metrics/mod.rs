//! Pipeline figures, one source for the window's metrics panel, the daemon's `Health` reply and
//! the Prometheus endpoint (`framelane serve --metrics ADDR`).
//!
//! Parts keep their own counters (atomics and [`Histogram`]s, updated on their threads without
//! locks or allocation); a [`MetricSource`] reads them into [`Family`] values when asked, at
//! most a few times a second, so nothing is copied while nobody looks.

mod histogram;
mod http;

use std::fmt::Write as _;
use std::sync::Arc;

pub use histogram::{Histogram, HistogramSnapshot, COUNT_BUCKETS, SECONDS_BUCKETS};
pub use http::{serve, MetricsServer};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Prefix of every exported name.
pub const PREFIX: &str = "framelane";

/// What a family measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; exported with the `_total` suffix.
    Counter,
    Gauge,
    Histogram,
}

/// One value of a family, for one label set.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Histogram(HistogramSnapshot),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// A named metric with its samples: `name` without the prefix and without `_total`.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// A family with one unlabelled number.
    pub fn single(name: &'static str, help: &'static str, kind: Kind, value: f64) -> Self {
        Self::new(name, help, kind).with(Vec::new(), value)
    }

    /// A family with one unlabelled histogram.
    pub fn histogram(name: &'static str, help: &'static str, snapshot: HistogramSnapshot) -> Self {
        let mut family = Self::new(name, help, Kind::Histogram);
        family.samples.push(Sample {
            labels: Vec::new(),
            value: Value::Histogram(snapshot),
        });
        family
    }

    /// Adds a number for a label set.
    pub fn with(mut self, labels: Vec<(&'static str, String)>, value: f64) -> Self {
        self.push(labels, value);
        self
    }

    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push(Sample {
            labels,
            value: Value::Number(value),
        });
    }
}

/// Anything that can report its figures.
pub trait MetricSource: Send + Sync + 'static {
    fn collect(&self, out: &mut Vec<Family>);
}

/// Several sources reported as one (the daemon's parts, the window's own figures).
#[derive(Default, Clone)]
pub struct Sources(Vec<Arc<dyn MetricSource>>);

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, source: Arc<dyn MetricSource>) {
        self.0.push(source);
    }

    pub fn families(&self) -> Vec<Family> {
        let mut out = Vec::new();
        for source in &self.0 {
            source.collect(&mut out);
        }
        out
    }
}

impl MetricSource for Sources {
    fn collect(&self, out: &mut Vec<Family>) {
        for source in &self.0 {
            source.collect(out);
        }
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sources({})", self.0.len())
    }
}

/// The figures as OpenMetrics text (what Prometheus scrapes).
pub fn openmetrics_text(source: &Arc<dyn MetricSource>) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(SourceCollector(Arc::clone(source))));
    let mut text = String::new();
    // Writing into a String cannot fail; a collector error would leave a partial text, which
    // Prometheus reports as a scrape error rather than wrong values.
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!(error = %err, "encoding the metrics failed");
    }
    text
}

/// The figures as a flat map, names as Prometheus shows them (`framelane_store_rows_total`,
/// `framelane_run_steps_total{run="a"}`); a histogram gives `_count`, `_sum`, `_p50` and `_p99`.
pub fn flatten(families: &[Family]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for family in families {
        for sample in &family.samples {
            let labels = label_text(&sample.labels);
            let base = format!("{PREFIX}_{}", family.name);
            match &sample.value {
                Value::Number(v) => {
                    let suffix = if family.kind == Kind::Counter {
                        "_total"
                    } else {
                        ""
                    };
                    out.push((format!("{base}{suffix}{labels}"), *v));
                }
                Value::Histogram(h) => {
                    out.push((format!("{base}_count{labels}"), h.count as f64));
                    out.push((format!("{base}_sum{labels}"), h.sum));
                    for (q, tag) in [(0.5, "p50"), (0.99, "p99")] {
                        if let Some(v) = h.quantile(q) {
                            out.push((format!("{base}_{tag}{labels}"), v));
                        }
                    }
                }
            }
        }
    }
    out
}

fn label_text(labels: &[(&'static str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut text = String::from("{");
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(
            text,
            "{key}=\"{}\"",
            value.replace('\\', "\\\\").replace('"', "\\\"")
        );
    }
    text.push('}');
    text
}

struct SourceCollector(Arc<dyn MetricSource>);

impl std::fmt::Debug for SourceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceCollector")
    }
}

impl Collector for SourceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut families = Vec::new();
        self.0.collect(&mut families);
        for family in &families {
            let metric_type = match family.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
            for sample in &family.samples {
                // An unlabelled sample is written without braces.
                if sample.labels.is_empty() {
                    encode_value(&mut metric, family.kind, &sample.value)?;
                } else {
                    let mut labelled = metric.encode_family(&sample.labels)?;
                    encode_value(&mut labelled, family.kind, &sample.value)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(
    encoder: &mut prometheus_client::encoding::MetricEncoder<'_>,
    kind: Kind,
    value: &Value,
) -> Result<(), std::fmt::Error> {
    match (value, kind) {
        (Value::Number(v), Kind::Counter) => {
            encoder.encode_counter::<NoLabelSet, _, f64>(&v.max(0.0), None)
        }
        (Value::Number(v), _) => encoder.encode_gauge(v),
        (Value::Histogram(h), _) => {
            encoder.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets(), None)
        }
    }
}

/// Resident memory of this process, in bytes (0 where it cannot be read).
pub fn resident_bytes() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let page = page_size();
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * page)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl MetricSource for Fixed {
        fn collect(&self, out: &mut Vec<Family>) {
            out.push(
                Family::new("run_steps", "Steps committed per run.", Kind::Counter)
                    .with(vec![("run", "a\"b".into())], 12.0),
            );
            out.push(Family::single(
                "store_queue_depth",
                "Queued.",
                Kind::Gauge,
                3.0,
            ));
            let h = Histogram::seconds();
            h.observe(0.003);
            out.push(Family::histogram(
                "store_commit_seconds",
                "Commit time.",
                h.snapshot(),
            ));
        }
    }

    #[test]
    fn the_text_uses_prometheus_naming_and_escapes_label_values() {
        let source: Arc<dyn MetricSource> = Arc::new(Fixed);
        let text = openmetrics_text(&source);
        assert!(
            text.contains("# TYPE framelane_run_steps counter"),
            "{text}"
        );
        assert!(
            text.contains("framelane_run_steps_total{run=\"a\\\"b\"} 12.0"),
            "{text}"
        );
        assert!(text.contains("framelane_store_queue_depth 3.0"), "{text}");
        assert!(
            text.contains("framelane_store_commit_seconds_bucket{le=\"0.004\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("framelane_store_commit_seconds_count 1"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn flattening_names_samples_as_prometheus_shows_them() {
        let mut families = Vec::new();
        Fixed.collect(&mut families);
        let flat: std::collections::HashMap<String, f64> = flatten(&families).into_iter().collect();
        assert_eq!(flat["framelane_run_steps_total{run=\"a\\\"b\"}"], 12.0);
        assert_eq!(flat["framelane_store_queue_depth"], 3.0);
        assert_eq!(flat["framelane_store_commit_seconds_count"], 1.0);
        let p50 = flat["framelane_store_commit_seconds_p50"];
        assert!(p50 > 0.002 && p50 <= 0.004, "{p50}");
    }

    #[test]
    fn resident_memory_is_read() {
        assert!(resident_bytes() > 1 << 20);
    }
}
