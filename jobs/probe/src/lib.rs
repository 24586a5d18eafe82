//! The `probe` job type: an operator's end-to-end check of a deployment (push one,
//! see it run, see it counted), and the job tests and benchmarks drive.
//!
//! It echoes its input, can sleep, report progress, and fail in any failure class
//! on chosen attempts, so every path of the framework can be exercised for real.

use std::time::Duration;

use genq_core::{FailureClass, Job, JobContext, JobError, RetryPolicy};
use serde::{Deserialize, Serialize};

/// Longest sleep a probe accepts.
pub const MAX_SLEEP_MS: u64 = 3_600_000;

/// What to do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbePayload {
    /// Returned as is.
    #[serde(default)]
    pub echo: serde_json::Value,
    /// Waits this long (cancellable).
    #[serde(default)]
    pub sleep_ms: u64,
    /// Reports progress in this many steps while sleeping.
    #[serde(default)]
    pub progress_steps: u8,
    /// Fails this way.
    #[serde(default)]
    pub fail: Option<ProbeFailure>,
    /// Panics on runs 1..=n.
    #[serde(default)]
    pub panic_until_attempt: u32,
}

/// A scripted failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeFailure {
    pub class: FailureClass,
    #[serde(default)]
    pub message: Option<String>,
    /// For rate_limited: the Retry-After to report.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// Fails on runs 1..=n only (then succeeds); every run when absent.
    #[serde(default)]
    pub until_attempt: Option<u32>,
}

/// What a successful probe returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeOutput {
    pub echo: serde_json::Value,
    pub attempt: u32,
    pub slept_ms: u64,
}

/// The probe job type.
#[derive(Debug, Clone)]
pub struct ProbeJob {
    timeout: Duration,
    policy: RetryPolicy,
}

impl Default for ProbeJob {
    fn default() -> Self {
        Self::new()
    }
}

impl ProbeJob {
    pub fn new() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
            policy: RetryPolicy::default(),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl Job for ProbeJob {
    type Payload = ProbePayload;
    type Output = ProbeOutput;
    const NAME: &'static str = "probe";
    const DEFAULT_QUEUE: &'static str = "default";

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.policy.clone()
    }

    fn validate(&self, p: &ProbePayload) -> Result<(), JobError> {
        if p.sleep_ms > MAX_SLEEP_MS {
            return Err(JobError::bad_input(format!(
                "sleep_ms {} is over the {MAX_SLEEP_MS} ms limit",
                p.sleep_ms
            )));
        }
        Ok(())
    }

    async fn run(&self, p: ProbePayload, ctx: JobContext) -> Result<ProbeOutput, JobError> {
        let attempt = ctx.attempt();
        record_run(ctx.id(), attempt);
        if attempt <= p.panic_until_attempt {
            panic!("probe asked to panic on run {attempt}");
        }
        sleep_with_progress(&ctx, p.sleep_ms, p.progress_steps).await;
        if let Some(f) = &p.fail
            && f.until_attempt.is_none_or(|n| attempt <= n)
        {
            let message = f
                .message
                .clone()
                .unwrap_or_else(|| format!("probe asked to fail as {} on run {attempt}", f.class));
            let mut err = JobError::new(f.class, message);
            err.retry_after = f.retry_after_ms.map(Duration::from_millis);
            return Err(err);
        }
        Ok(ProbeOutput {
            echo: p.echo,
            attempt,
            slept_ms: p.sleep_ms,
        })
    }
}

/// Where each run is recorded when `GENQ_PROBE_RUNS_LOG` names a file: one line
/// `<job id> <attempt> <process id>` per run started, appended (crash tests count
/// how often each job really ran, independently of Redis's own counters).
pub const RUNS_LOG_ENV: &str = "GENQ_PROBE_RUNS_LOG";

fn record_run(job_id: &str, attempt: u32) {
    use std::io::Write;
    let Some(path) = std::env::var_os(RUNS_LOG_ENV) else {
        return;
    };
    let line = format!("{job_id} {attempt} {}\n", std::process::id());
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not record the probe run in {RUNS_LOG_ENV}");
    }
}

async fn sleep_with_progress(ctx: &JobContext, sleep_ms: u64, steps: u8) {
    if sleep_ms == 0 {
        return;
    }
    let steps = u64::from(steps.max(1));
    for step in 1..=steps {
        tokio::time::sleep(Duration::from_millis(sleep_ms / steps)).await;
        if steps > 1 {
            let percent = (step * 100 / steps) as u8;
            // best effort: a lost progress report does not fail the probe
            let _ = ctx
                .progress(percent, Some(&format!("step {step} of {steps}")))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn ctx(attempt: u32) -> JobContext {
        JobContext::new("j1", "default", "probe", attempt, CancellationToken::new())
    }

    #[tokio::test]
    async fn echoes_and_fails_on_chosen_runs() {
        let job = ProbeJob::new();
        let out = job
            .run(
                ProbePayload {
                    echo: serde_json::json!({"hi": 1}),
                    ..Default::default()
                },
                ctx(1),
            )
            .await
            .unwrap();
        assert_eq!(out.echo, serde_json::json!({"hi": 1}));

        let p = ProbePayload {
            fail: Some(ProbeFailure {
                class: FailureClass::RateLimited,
                message: None,
                retry_after_ms: Some(1500),
                until_attempt: Some(1),
            }),
            ..Default::default()
        };
        let err = job.run(p.clone(), ctx(1)).await.unwrap_err();
        assert_eq!(err.class, FailureClass::RateLimited);
        assert_eq!(err.retry_after, Some(Duration::from_millis(1500)));
        assert_eq!(job.run(p, ctx(2)).await.unwrap().attempt, 2);
    }

    #[test]
    fn rejects_oversized_sleep_and_unknown_fields() {
        let job = ProbeJob::new();
        let err = job
            .validate(&ProbePayload {
                sleep_ms: MAX_SLEEP_MS + 1,
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.class, FailureClass::BadInput);
        assert!(serde_json::from_str::<ProbePayload>(r#"{"slep_ms": 5}"#).is_err());
    }
}
