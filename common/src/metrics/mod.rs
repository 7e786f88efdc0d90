//! Prometheus metrics of one service (infrastructure layer): one registry
//! per service and no process-global state, so services composed in one
//! process (`agentctl dev`, the tests) keep their own; the request metrics
//! that `server` records for every call ([`requests`]); and the
//! OpenMetrics text that `GET /metrics` answers. docs/metrics.md lists
//! every metric.
//!
//! Labels are bounded: gRPC methods and HTTP routes are the ones the
//! service serves (anything else is `unmatched`), codes and outcomes are
//! fixed sets, and no id of an agent, tenant or token is ever a label.

pub mod requests;

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry, Unit};

pub use prometheus_client::encoding::EncodeLabelSet as LabelSet;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;

use requests::RequestMetrics;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds: from a decision served from the cache (well
/// under a millisecond) to a call that waited for a database connection.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Latency histograms by label set `L`.
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// An empty [`LatencyFamily`].
pub fn latency_family<L: Clone + std::hash::Hash + Eq>() -> LatencyFamily<L> {
    Family::new_with_constructor(latency_histogram)
}

/// A service's registry; cheap to clone, shared by everything that
/// records or registers.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    requests: Arc<RequestMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry holding the request metrics every service records.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Arc::new(RequestMetrics::register(&mut registry));
        Self {
            registry: Arc::new(RwLock::new(registry)),
            requests,
        }
    }

    /// Registers `metric` (a clone of which the caller keeps to record
    /// into). `name` follows Prometheus conventions without the `_total`
    /// that counters get when encoded.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .register(name, help, metric);
    }

    /// Registers `metric` measured in seconds (`_seconds` is appended to
    /// `name`).
    pub fn register_seconds(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .register_with_unit(name, help, Unit::Seconds, metric);
    }

    /// Registers values read at every scrape from state the service keeps
    /// anyway (counters it already has, sizes, freshness).
    pub fn register_scrape(
        &self,
        read: impl Fn(&mut Scrape<'_>) -> fmt::Result + Send + Sync + 'static,
    ) {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .register_collector(Box::new(ScrapeCollector(Box::new(read))));
    }

    /// The OpenMetrics text of every metric ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            // Writing to a String fails only if a collector fails; the
            // scrape then shows what was encoded before it.
            tracing::error!(error = %err, "encoding the metrics failed");
        }
        text
    }

    pub(crate) fn requests(&self) -> &Arc<RequestMetrics> {
        &self.requests
    }
}

/// Where a [`Metrics::register_scrape`] reader writes its values.
pub struct Scrape<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Scrape<'_> {
    /// A counter (`_total` is appended to `name`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let metric = ConstCounter::new(value);
        metric.encode(self.encoder.encode_descriptor(
            name,
            &sentence(help),
            None,
            MetricType::Counter,
        )?)
    }

    /// A counter with one label whose values are `samples`' names.
    pub fn counters(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: &[(&str, u64)],
    ) -> fmt::Result {
        let mut family =
            self.encoder
                .encode_descriptor(name, &sentence(help), None, MetricType::Counter)?;
        for (label_value, value) in samples {
            let labels = [(label, *label_value)];
            ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) -> fmt::Result {
        let metric = ConstGauge::new(value);
        metric.encode(self.encoder.encode_descriptor(
            name,
            &sentence(help),
            None,
            MetricType::Gauge,
        )?)
    }

    /// A gauge in seconds (`_seconds` is appended to `name`).
    pub fn gauge_seconds(&mut self, name: &str, help: &str, value: f64) -> fmt::Result {
        let metric = ConstGauge::new(value);
        metric.encode(self.encoder.encode_descriptor(
            name,
            &sentence(help),
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?)
    }
}

/// A help text ending in a period, as the registry writes the help of the
/// metrics registered in it.
fn sentence(help: &str) -> String {
    format!("{help}.")
}

type Reader = Box<dyn Fn(&mut Scrape<'_>) -> fmt::Result + Send + Sync>;

struct ScrapeCollector(Reader);

impl fmt::Debug for ScrapeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScrapeCollector")
    }
}

impl Collector for ScrapeCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        (self.0)(&mut Scrape { encoder })
    }
}

/// A label set of one label, `outcome`, for counters of what happened.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}
