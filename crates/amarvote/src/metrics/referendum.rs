//! The referendum pipeline's Prometheus metrics.
//!
//! One [`ReferendumMetrics`] is shared (cheap clones of the same counters) by
//! every stage in a process; [`ReferendumMetrics::register`] adds them to
//! whichever registry the process exposes. Counters are updated where things
//! happen; the queue-depth gauge is refreshed by `referendum::stage::watch_queue_depth`, since
//! depth is a property of the shared broker, not of this process.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LawChoiceLabel {
    pub law_id: String,
    pub choice: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub queue: String,
}

#[derive(Clone)]
pub struct ReferendumMetrics {
    pub votes_submitted: Counter,
    pub votes_validated: Family<StatusLabel, Counter>,
    pub votes_aggregated: Family<LawChoiceLabel, Counter>,
    pub duplicate_attempts: Counter,
    pub batch_size: Family<StageLabel, Histogram>,
    pub batch_seconds: Family<StageLabel, Histogram>,
    pub submission_seconds: Histogram,
    /// From a vote's 202 to the validator's decision on it.
    pub validation_seconds: Histogram,
    pub queue_depth: Family<StreamLabel, Gauge>,
    /// 1 while this process's validator finds the registry ready, 0 while it
    /// holds votes because the registry is missing or not yet rebuilt; -1
    /// before it has looked.
    pub registry_ready: Gauge,
    pub rate_limited: Counter,
}

fn batch_size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for ReferendumMetrics {
    fn default() -> Self {
        ReferendumMetrics {
            votes_submitted: Counter::default(),
            votes_validated: Family::default(),
            votes_aggregated: Family::default(),
            duplicate_attempts: Counter::default(),
            batch_size: Family::new_with_constructor(batch_size_histogram as fn() -> Histogram),
            batch_seconds: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            submission_seconds: seconds_histogram(),
            validation_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            queue_depth: Family::default(),
            registry_ready: {
                let gauge = Gauge::default();
                gauge.set(-1);
                gauge
            },
            rate_limited: Counter::default(),
        }
    }
}

impl ReferendumMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds every metric to `registry` (counters gain the `_total` suffix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "votes_submitted",
            "Votes accepted by the API (202)",
            self.votes_submitted.clone(),
        );
        registry.register(
            "votes_validated",
            "Votes validated, by outcome",
            self.votes_validated.clone(),
        );
        registry.register(
            "votes_aggregated",
            "Votes counted into vote_results",
            self.votes_aggregated.clone(),
        );
        registry.register(
            "duplicate_attempts",
            "Repeated attempts by voters who had already voted",
            self.duplicate_attempts.clone(),
        );
        registry.register(
            "voter_registry_ready",
            "1 if the validator finds the voter registry ready, 0 while it holds votes \
             (registry lost or not rebuilt), -1 before it has looked",
            self.registry_ready.clone(),
        );
        registry.register(
            "votes_rate_limited",
            "Referendum requests refused for the client's rate (429)",
            self.rate_limited.clone(),
        );
        registry.register(
            "vote_batch_size",
            "Messages per batch, by stage",
            self.batch_size.clone(),
        );
        registry.register(
            "vote_batch_duration_seconds",
            "Time to process one batch, by stage",
            self.batch_seconds.clone(),
        );
        registry.register(
            "vote_submission_seconds",
            "Time from a vote's arrival to its 202 answer",
            self.submission_seconds.clone(),
        );
        registry.register(
            "vote_validation_seconds",
            "Time from a vote's 202 to its validator's decision",
            self.validation_seconds.clone(),
        );
        registry.register(
            "vote_queue_depth",
            "Messages waiting in each vote stream (on RabbitMQ, envelopes of up to 500 votes)",
            self.queue_depth.clone(),
        );
    }

    pub fn validated(&self, status: &str) -> Counter {
        self.votes_validated
            .get_or_create(&StatusLabel {
                status: status.to_owned(),
            })
            .clone()
    }

    pub fn observe_batch(&self, stage: &str, size: usize, seconds: f64) {
        let label = StageLabel {
            stage: stage.to_owned(),
        };
        self.batch_size.get_or_create(&label).observe(size as f64);
        self.batch_seconds.get_or_create(&label).observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exported_under_the_documented_names() {
        let metrics = ReferendumMetrics::new();
        metrics.votes_submitted.inc();
        metrics.validated("accepted").inc();
        metrics.observe_batch("aggregate", 100, 0.01);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "votes_submitted_total 1",
            "votes_validated_total{status=\"accepted\"} 1",
            "vote_batch_size_count{stage=\"aggregate\"} 1",
            "duplicate_attempts_total",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
