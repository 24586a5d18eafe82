//! The pipeline types genq ships, registered in one place (a new one = a function
//! here + one line in [`pipelines`]).
//!
//! - `probe-flow`: prepare (a probe) → fan-out of N probes, 3 at once → gate
//!   `review` → finish (a probe given the N outputs in order). For checking a
//!   deployment's pipelines end to end, tests and benchmarks.
//! - `probe-gate`: gate `approve` → a probe. A pipeline that parks at once.
//! - `promo` (when `[promo]` is enabled; see [`crate::promo`]): the promo video.

use std::time::Duration;

use genq_core::{FailureClass, Job};
use genq_job_probe::ProbeJob;
use genq_pipeline::{BuildError, Pipeline, PipelineError, PipelineRegistry, StepSpec};
use serde::Deserialize;
use serde_json::{Value, json};

/// Fan-out jobs of `probe-flow` at most.
pub const PROBE_FLOW_MAX_ITEMS: usize = 10_000;
/// Parallelism of `probe-flow`'s fan-out.
pub const PROBE_FLOW_PARALLELISM: usize = 3;
/// Default gate timeout of the probe pipelines.
pub const PROBE_GATE_TIMEOUT: Duration = Duration::from_secs(600);

/// The input of `probe-flow` and `probe-gate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFlowInput {
    /// Fan-out jobs (`probe-flow`).
    #[serde(default = "ten")]
    items: usize,
    /// Each probe sleeps this long.
    #[serde(default)]
    sleep_ms: u64,
    /// The gate's timeout for this run.
    #[serde(default)]
    gate_timeout_ms: Option<u64>,
    /// Fan-out job that fails for good (`probe-flow`).
    #[serde(default)]
    fail_index: Option<usize>,
    #[serde(default)]
    fail_class: Option<FailureClass>,
    /// Whether a failed fan-out job runs a fallback probe instead of failing the pipeline.
    #[serde(default)]
    fallback: bool,
    /// Credits the run costs.
    #[serde(default)]
    price: i64,
    /// Passed along.
    #[serde(default)]
    echo: Value,
}

fn ten() -> usize {
    10
}

fn parse(input: &Value) -> Result<ProbeFlowInput, BuildError> {
    let i: ProbeFlowInput = serde_json::from_value(input.clone())
        .map_err(|e| BuildError::new(format!("probe pipeline input: {e}")))?;
    if i.items > PROBE_FLOW_MAX_ITEMS {
        return Err(BuildError::new(format!(
            "probe pipeline input: items {} is over {PROBE_FLOW_MAX_ITEMS}",
            i.items
        )));
    }
    if i.sleep_ms > genq_job_probe::MAX_SLEEP_MS {
        return Err(BuildError::new(
            "probe pipeline input: sleep_ms is too long",
        ));
    }
    Ok(i)
}

fn probe(payload: Value) -> StepSpec {
    StepSpec::new(<ProbeJob as Job>::NAME, payload)
}

fn gate_timeout(input: &Value) -> Option<Duration> {
    parse(input)
        .ok()?
        .gate_timeout_ms
        .map(Duration::from_millis)
}

fn price(input: &Value) -> i64 {
    parse(input).map(|i| i.price.max(0)).unwrap_or(0)
}

/// `probe-flow` (see the module docs).
pub fn probe_flow() -> Pipeline {
    Pipeline::new("probe-flow")
        .step("prepare", |si| {
            let i = parse(si.input)?;
            Ok(probe(
                json!({"echo": {"items": i.items, "echo": i.echo}, "sleep_ms": i.sleep_ms}),
            ))
        })
        .fan_out("fan", PROBE_FLOW_PARALLELISM, |si| {
            let i = parse(si.input)?;
            Ok((0..i.items)
                .map(|n| {
                    let mut p = json!({"echo": {"index": n}, "sleep_ms": i.sleep_ms});
                    if i.fail_index == Some(n) {
                        let class = i.fail_class.unwrap_or(FailureClass::UserViolation);
                        p["fail"] =
                            json!({"class": class, "message": format!("probe {n} fails as asked")});
                    }
                    probe(p)
                })
                .collect())
        })
        .fallback(|si, n| {
            let i = parse(si.input)?;
            Ok(i.fallback
                .then(|| probe(json!({"echo": {"index": n, "fallback": true}}))))
        })
        .gate("review", PROBE_GATE_TIMEOUT)
        .gate_timeout_from(gate_timeout)
        .step("finish", |si| {
            let outputs = si
                .output("fan")
                .and_then(Value::as_array)
                .ok_or_else(|| BuildError::new("the fan-out's outputs are missing"))?;
            let joined: Vec<Value> = outputs.iter().map(|o| o["echo"].clone()).collect();
            let decision = si.output("review").cloned().unwrap_or(Value::Null);
            Ok(probe(
                json!({"echo": {"joined": joined, "review": decision["body"]}}),
            ))
        })
        .price(price)
}

/// `probe-gate` (see the module docs).
pub fn probe_gate() -> Pipeline {
    Pipeline::new("probe-gate")
        .gate("approve", PROBE_GATE_TIMEOUT)
        .gate_timeout_from(gate_timeout)
        .step("after", |si| {
            let i = parse(si.input)?;
            Ok(probe(json!({"echo": i.echo, "sleep_ms": i.sleep_ms})))
        })
        .price(price)
}

/// The pipeline types that need no configuration (`probe-flow`, `probe-gate`).
pub fn pipelines() -> Result<PipelineRegistry, PipelineError> {
    let mut r = PipelineRegistry::new();
    r.register(probe_flow())?;
    r.register(probe_gate())?;
    Ok(r)
}

/// Every pipeline type this configuration offers: [`pipelines`], plus `promo`
/// when `[promo]` is enabled.
pub fn pipelines_for(cfg: &genq_config::Config) -> Result<PipelineRegistry, PipelineError> {
    let mut r = pipelines()?;
    if cfg.promo.enabled {
        r.register(crate::promo::promo(&cfg.promo))?;
    }
    Ok(r)
}
