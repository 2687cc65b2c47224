//! Prometheus metrics. Counters and histograms are updated where things happen; gauges
//! that describe shared state (queue depth, jobs by state) are read at scrape time, so
//! every role reports the same truth.

pub mod referendum;

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::domain::{JobKind, QueueName};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// A request as counted: the route's template (never the path itself, whose ids would make
/// a series each), the method and the answer's status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// How long each route takes to answer, by method and status: the HTTP edge of every role.
#[derive(Clone)]
pub struct HttpMetrics {
    duration: Family<RequestLabel, Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            duration: Family::new_with_constructor(request_histogram as fn() -> Histogram),
        }
    }
}

impl HttpMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "amarvote_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route template, method and status",
            self.duration.clone(),
        );
    }

    pub fn observe(&self, request: &RequestLabel, took: Duration) {
        self.duration
            .get_or_create(request)
            .observe(took.as_secs_f64());
    }
}

/// The resident memory of this process, read when it is scraped.
#[derive(Clone, Default)]
pub struct ProcessMetrics {
    resident_bytes: Gauge,
}

impl ProcessMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "amarvote_process_resident_memory_bytes",
            "Resident memory of this process",
            self.resident_bytes.clone(),
        );
    }

    /// Reads the resident memory now, for the scrape under way.
    pub fn refresh(&self) {
        self.resident_bytes.set(resident_memory_bytes() as i64);
    }
}

pub struct Metrics {
    registry: Registry,
    chunk_seconds: Family<OperationLabel, Histogram>,
    chunks_failed: Family<QueueLabel, Counter>,
    jobs_started: Family<OperationLabel, Counter>,
    job_seconds: Family<OperationLabel, Histogram>,
    ballots_accepted: Family<StateLabel, Counter>,
    ballots_rejected: Family<ReasonLabel, Counter>,
    pub queue_depth: Family<QueueLabel, Gauge>,
    pub dead_letters: Family<QueueLabel, Gauge>,
    pub jobs: Family<StateLabel, Gauge>,
    process: ProcessMetrics,
    /// Every route of the election's API and of the referendum's, when served here.
    pub http: HttpMetrics,
    /// The referendum pipeline's metrics, under the names the operators' dashboards use.
    pub referendum: std::sync::Arc<referendum::ReferendumMetrics>,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

/// 0.5 ms to 16 s: an answer is fast, or something is wrong.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            chunk_seconds: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            chunks_failed: Family::default(),
            jobs_started: Family::default(),
            job_seconds: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            ballots_accepted: Family::default(),
            ballots_rejected: Family::default(),
            queue_depth: Family::default(),
            dead_letters: Family::default(),
            jobs: Family::default(),
            process: ProcessMetrics::default(),
            http: HttpMetrics::default(),
            referendum: referendum::ReferendumMetrics::new(),
        };
        registry.register(
            "amarvote_chunk_duration_seconds",
            "Time to do one chunk, by operation",
            m.chunk_seconds.clone(),
        );
        registry.register(
            "amarvote_chunks_failed",
            "Chunk attempts that failed, by queue",
            m.chunks_failed.clone(),
        );
        registry.register(
            "amarvote_jobs_started",
            "Jobs started, by operation",
            m.jobs_started.clone(),
        );
        registry.register(
            "amarvote_job_duration_seconds",
            "Time from a job's creation to its end, by operation",
            m.job_seconds.clone(),
        );
        registry.register(
            "amarvote_ballots_accepted",
            "Ballots recorded, by state",
            m.ballots_accepted.clone(),
        );
        registry.register(
            "amarvote_ballots_rejected",
            "Ballots refused, by reason",
            m.ballots_rejected.clone(),
        );
        registry.register(
            "amarvote_queue_depth",
            "Messages waiting, by queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "amarvote_queue_dead_letters",
            "Dead-lettered messages, by queue",
            m.dead_letters.clone(),
        );
        registry.register("amarvote_jobs", "Jobs by state", m.jobs.clone());
        m.process.register(&mut registry);
        m.http.register(&mut registry);
        m.referendum.register(&mut registry);
        Metrics { registry, ..m }
    }

    pub fn chunk_done(&self, kind: JobKind, took: Duration) {
        self.chunk_seconds
            .get_or_create(&OperationLabel {
                operation: kind.as_str().into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn chunk_failed(&self, queue: QueueName, _reason: &str) {
        self.chunks_failed
            .get_or_create(&QueueLabel {
                queue: queue.as_str().into(),
            })
            .inc();
    }

    pub fn job_started(&self, kind: JobKind) {
        self.jobs_started
            .get_or_create(&OperationLabel {
                operation: kind.as_str().into(),
            })
            .inc();
    }

    pub fn job_finished(&self, kind: JobKind, created_at: i64) {
        let seconds = (crate::domain::now_ms() - created_at) as f64 / 1000.0;
        self.job_seconds
            .get_or_create(&OperationLabel {
                operation: kind.as_str().into(),
            })
            .observe(seconds);
    }

    pub fn ballot_accepted(&self, state: &str) {
        self.ballots_accepted
            .get_or_create(&StateLabel {
                state: state.into(),
            })
            .inc();
    }

    pub fn ballot_rejected(&self, reason: &str) {
        self.ballots_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// The text exposition format, with the process's resident memory read now.
    pub fn render(&self) -> String {
        self.process.refresh();
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a string does not fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// VmRSS of this process (Linux), in bytes; 0 where unavailable.
pub fn resident_memory_bytes() -> u64 {
    proc_status_kib("VmRSS:") * 1024
}

/// VmHWM (peak resident memory) of this process, in bytes.
pub fn peak_memory_bytes() -> u64 {
    proc_status_kib("VmHWM:") * 1024
}

/// VmHWM of another process (a worker the benchmark started), in bytes.
pub fn peak_memory_of(pid: Option<u32>) -> u64 {
    pid.map(|p| proc_status_kib_of(&format!("/proc/{p}/status"), "VmHWM:") * 1024)
        .unwrap_or(0)
}

fn proc_status_kib(field: &str) -> u64 {
    proc_status_kib_of("/proc/self/status", field)
}

fn proc_status_kib_of(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
