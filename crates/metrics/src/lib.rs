//! genq's Prometheus metrics, all under the `genq_` prefix. One [`WorkerMetrics`]
//! per worker process, registered in that process's own [`Registry`].
//!
//! Names follow the habits of other queues' exporters (asynq, Celery, Sidekiq):
//! queue depth and oldest-ready latency per queue, processed/failed counters by
//! type, duration histograms with real buckets.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder, core::Collector,
};

/// Duration buckets in seconds: from a no-op job to a 30-minute video.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1200.0, 1800.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("prometheus: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("metrics text is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// The metrics a worker process exports.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Finished runs by job type, queue and outcome (succeeded, retried, failed, cancelled).
    pub jobs_total: IntCounterVec,
    /// Run duration by job type, queue and outcome.
    pub job_duration_seconds: HistogramVec,
    /// Runs in progress by job type and queue.
    pub jobs_in_flight: IntGaugeVec,
    /// Retries scheduled, by job type, queue and failure class.
    pub job_retries_total: IntCounterVec,
    /// Failed runs (retried or not) by job type, queue and failure class.
    pub job_failures_total: IntCounterVec,
    /// Jobs per queue and state (ready, scheduled, running, dead).
    pub queue_depth: IntGaugeVec,
    /// Age of the oldest ready job per queue.
    pub queue_oldest_ready_age_seconds: prometheus::GaugeVec,
    /// 1 while a queue is paused.
    pub queue_paused: IntGaugeVec,
    /// 1 while the worker process runs (labels: instance, host).
    pub worker_up: IntGaugeVec,
    /// Redis errors seen by the worker process.
    pub redis_errors_total: IntCounterVec,
    /// Worker restarts after an error, by queue.
    pub worker_restarts_total: IntCounterVec,
    /// Jobs a worker stopped itself because it could not renew their leases in
    /// time (self-fencing), by queue.
    pub fenced_jobs_total: IntCounterVec,
    /// Concurrency limit per queue.
    pub worker_concurrency: IntGaugeVec,
    /// Seconds since the process started.
    pub process_start_time_seconds: IntGauge,
}

impl WorkerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, MetricsError> {
        let m = Self {
            jobs_total: IntCounterVec::new(
                Opts::new(
                    "genq_jobs_total",
                    "Finished job runs by job type, queue and outcome",
                ),
                &["job_type", "queue", "outcome"],
            )?,
            job_duration_seconds: HistogramVec::new(
                HistogramOpts::new("genq_job_duration_seconds", "Duration of job runs")
                    .buckets(DURATION_BUCKETS.to_vec()),
                &["job_type", "queue", "outcome"],
            )?,
            jobs_in_flight: IntGaugeVec::new(
                Opts::new("genq_jobs_in_flight", "Job runs in progress"),
                &["job_type", "queue"],
            )?,
            job_retries_total: IntCounterVec::new(
                Opts::new(
                    "genq_job_retries_total",
                    "Retries scheduled, by failure class",
                ),
                &["job_type", "queue", "class"],
            )?,
            job_failures_total: IntCounterVec::new(
                Opts::new(
                    "genq_job_failures_total",
                    "Failed job runs by failure class",
                ),
                &["job_type", "queue", "class"],
            )?,
            queue_depth: IntGaugeVec::new(
                Opts::new("genq_queue_depth", "Jobs per queue and state"),
                &["queue", "state"],
            )?,
            queue_oldest_ready_age_seconds: prometheus::GaugeVec::new(
                Opts::new(
                    "genq_queue_oldest_ready_age_seconds",
                    "Age of the oldest job waiting in the ready list",
                ),
                &["queue"],
            )?,
            queue_paused: IntGaugeVec::new(
                Opts::new("genq_queue_paused", "1 while the queue is paused"),
                &["queue"],
            )?,
            worker_up: IntGaugeVec::new(
                Opts::new("genq_worker_up", "1 while the worker process runs"),
                &["instance", "host"],
            )?,
            redis_errors_total: IntCounterVec::new(
                Opts::new(
                    "genq_redis_errors_total",
                    "Redis errors seen by the process",
                ),
                &["operation"],
            )?,
            worker_restarts_total: IntCounterVec::new(
                Opts::new(
                    "genq_worker_restarts_total",
                    "apalis worker restarts after an error",
                ),
                &["queue"],
            )?,
            fenced_jobs_total: IntCounterVec::new(
                Opts::new(
                    "genq_worker_fenced_jobs_total",
                    "Jobs the worker stopped itself because it could not renew their leases in time (self-fencing)",
                ),
                &["queue"],
            )?,
            worker_concurrency: IntGaugeVec::new(
                Opts::new("genq_worker_concurrency", "Concurrency limit per queue"),
                &["queue"],
            )?,
            process_start_time_seconds: IntGauge::new(
                "genq_process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
            )?,
        };
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.jobs_total.clone()),
            Box::new(m.job_duration_seconds.clone()),
            Box::new(m.jobs_in_flight.clone()),
            Box::new(m.job_retries_total.clone()),
            Box::new(m.job_failures_total.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.queue_oldest_ready_age_seconds.clone()),
            Box::new(m.queue_paused.clone()),
            Box::new(m.worker_up.clone()),
            Box::new(m.redis_errors_total.clone()),
            Box::new(m.worker_restarts_total.clone()),
            Box::new(m.fenced_jobs_total.clone()),
            Box::new(m.worker_concurrency.clone()),
            Box::new(m.process_start_time_seconds.clone()),
        ];
        for c in collectors {
            registry.register(c)?;
        }
        Ok(m)
    }
}

/// Provider call metrics, shared by every provider client of a process.
#[derive(Clone)]
pub struct ProviderMetrics {
    /// Calls by provider, operation and outcome (ok or a failure class).
    pub calls_total: IntCounterVec,
    /// Call latency by provider and operation.
    pub call_duration_seconds: HistogramVec,
    /// API keys cooling down, by provider.
    pub keys_cooling: IntGaugeVec,
    /// Task submits repeated after an earlier run's submit may have reached a
    /// vendor that has no idempotency key (a possible second charge), by provider.
    pub resubmits_total: IntCounterVec,
    /// The limits a key runs under (shared by every host), by provider, key
    /// fingerprint and limit (`in_flight`: the adaptive one as it moves, else the
    /// configured one; `rpm`, `tpm`).
    pub effective_limit: IntGaugeVec,
    /// Runs deferred for want of capacity under genq's own limits, by provider and
    /// reason (`in_flight`, `rpm`, `tpm`, `cooling`, `vendor_429`).
    pub deferred_total: IntCounterVec,
}

impl ProviderMetrics {
    pub fn new(registry: &Registry) -> Result<Self, MetricsError> {
        let m = Self {
            calls_total: IntCounterVec::new(
                Opts::new(
                    "genq_provider_calls_total",
                    "Provider calls by operation and outcome",
                ),
                &["provider", "operation", "outcome"],
            )?,
            call_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "genq_provider_call_duration_seconds",
                    "Provider call latency",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["provider", "operation"],
            )?,
            keys_cooling: IntGaugeVec::new(
                Opts::new("genq_provider_keys_cooling", "API keys cooling down"),
                &["provider"],
            )?,
            resubmits_total: IntCounterVec::new(
                Opts::new(
                    "genq_provider_resubmits_total",
                    "Task submits repeated to a vendor without idempotency keys after an earlier submit may have gone through",
                ),
                &["provider"],
            )?,
            effective_limit: IntGaugeVec::new(
                Opts::new(
                    "genq_provider_effective_limit",
                    "The limit an API key runs under (in_flight, rpm, tpm), shared by every host",
                ),
                &["provider", "key", "limit"],
            )?,
            deferred_total: IntCounterVec::new(
                Opts::new(
                    "genq_provider_deferred_total",
                    "Runs deferred for want of capacity under genq's provider limits",
                ),
                &["provider", "reason"],
            )?,
        };
        registry.register(Box::new(m.resubmits_total.clone()))?;
        registry.register(Box::new(m.calls_total.clone()))?;
        registry.register(Box::new(m.call_duration_seconds.clone()))?;
        registry.register(Box::new(m.keys_cooling.clone()))?;
        registry.register(Box::new(m.effective_limit.clone()))?;
        registry.register(Box::new(m.deferred_total.clone()))?;
        Ok(m)
    }
}

/// Pipeline metrics of a process that drives pipelines (a worker).
#[derive(Clone)]
pub struct PipelineMetrics {
    /// Pipelines ended, by type and outcome (succeeded, failed, cancelled,
    /// timed_out); each counted once across all drivers.
    pub finished_total: IntCounterVec,
    /// How long each step or fan-out stage took, by type and stage.
    pub stage_duration_seconds: HistogramVec,
    /// How long a gate waited for its answer, by type, gate and outcome (the
    /// choice, `timed_out`, or `cancelled`).
    pub gate_wait_seconds: HistogramVec,
    /// Pipelines now queued, active (steps in flight) and parked at a gate (the
    /// whole deployment's figure: every driver reports the same).
    pub pipelines: IntGaugeVec,
}

/// Gate waits: seconds to an hour.
pub const GATE_WAIT_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

impl PipelineMetrics {
    pub fn new(registry: &Registry) -> Result<Self, MetricsError> {
        let m = Self {
            finished_total: IntCounterVec::new(
                Opts::new(
                    "genq_pipelines_finished_total",
                    "Pipelines ended, by type and outcome",
                ),
                &["type", "outcome"],
            )?,
            stage_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "genq_pipeline_stage_duration_seconds",
                    "Duration of pipeline step and fan-out stages",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["type", "stage"],
            )?,
            gate_wait_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "genq_pipeline_gate_wait_seconds",
                    "How long pipeline gates waited for an answer",
                )
                .buckets(GATE_WAIT_BUCKETS.to_vec()),
                &["type", "gate", "outcome"],
            )?,
            pipelines: IntGaugeVec::new(
                Opts::new(
                    "genq_pipelines",
                    "Pipelines by state (queued, active, parked) in the whole deployment",
                ),
                &["state"],
            )?,
        };
        for state in ["queued", "active", "parked"] {
            m.pipelines.with_label_values(&[state]).set(0);
        }
        registry.register(Box::new(m.finished_total.clone()))?;
        registry.register(Box::new(m.stage_duration_seconds.clone()))?;
        registry.register(Box::new(m.gate_wait_seconds.clone()))?;
        registry.register(Box::new(m.pipelines.clone()))?;
        Ok(m)
    }
}

/// The registry's metrics in Prometheus text format.
pub fn render(registry: &Registry) -> Result<String, MetricsError> {
    let mut buf = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    Ok(String::from_utf8(buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_genq_prefixed_metrics() {
        let registry = Registry::new();
        let m = WorkerMetrics::new(&registry).unwrap();
        m.jobs_total
            .with_label_values(&["probe", "default", "succeeded"])
            .inc();
        m.job_duration_seconds
            .with_label_values(&["probe", "default", "succeeded"])
            .observe(0.003);
        let text = render(&registry).unwrap();
        assert!(
            text.contains(
                "genq_jobs_total{job_type=\"probe\",outcome=\"succeeded\",queue=\"default\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("genq_job_duration_seconds_bucket{job_type=\"probe\",outcome=\"succeeded\",queue=\"default\",le=\"0.005\"} 1"));
        // registering twice in one registry is refused
        assert!(WorkerMetrics::new(&registry).is_err());
    }
}
