//! How a pipeline is declared: stages over existing job types.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One job a stage runs: its type, its payload, and (rarely) a queue other than
/// the job type's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSpec {
    pub job_type: String,
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

impl StepSpec {
    pub fn new(job_type: impl Into<String>, payload: Value) -> Self {
        Self {
            job_type: job_type.into(),
            payload,
            queue: None,
        }
    }
}

/// A builder could not make a stage's jobs from what came before (the pipeline
/// fails as `bad_input` with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl BuildError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// What a stage's builder sees: the pipeline's input and every earlier stage's
/// output by name, in order (a step's output is its job's result; a fan-out's the
/// array of its jobs' results in index order; a gate's `{choice, body, at}`).
#[derive(Debug, Clone, Copy)]
pub struct StageInput<'a> {
    pub input: &'a Value,
    pub outputs: &'a [(String, Value)],
}

impl<'a> StageInput<'a> {
    /// The output of the stage just before (the pipeline's input for the first).
    pub fn previous(&self) -> &'a Value {
        self.outputs.last().map(|(_, v)| v).unwrap_or(self.input)
    }

    /// The output of the stage called `name`.
    pub fn output(&self, name: &str) -> Option<&'a Value> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

type StepsFn = dyn Fn(&StageInput<'_>) -> Result<Vec<StepSpec>, BuildError> + Send + Sync;
type FallbackFn =
    dyn Fn(&StageInput<'_>, usize) -> Result<Option<StepSpec>, BuildError> + Send + Sync;
type GateTimeoutFn = dyn Fn(&Value) -> Option<Duration> + Send + Sync;
type PriceFn = dyn Fn(&Value) -> i64 + Send + Sync;

/// What kind of stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageKind {
    /// One job.
    Step,
    /// N jobs, at most `parallelism` at once.
    FanOut { parallelism: usize },
    /// Parks until a signal names one of `choices` (`cancel` always ends the
    /// pipeline) or `timeout` passes (the pipeline ends timed out).
    Gate {
        timeout: Duration,
        choices: Vec<String>,
    },
}

/// One stage of a pipeline.
#[derive(Clone)]
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    pub(crate) build: Option<Arc<StepsFn>>,
    pub(crate) fallback: Option<Arc<FallbackFn>>,
    pub(crate) gate_timeout: Option<Arc<GateTimeoutFn>>,
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Stage {
    /// The stage's jobs for this input (none for a gate).
    pub(crate) fn build(&self, input: &StageInput<'_>) -> Result<Vec<StepSpec>, BuildError> {
        match &self.build {
            Some(b) => {
                let specs = b(input)?;
                if self.kind == StageKind::Step && specs.len() != 1 {
                    return Err(BuildError(format!(
                        "step '{}' must build exactly one job, built {}",
                        self.name,
                        specs.len()
                    )));
                }
                Ok(specs)
            }
            None => Ok(Vec::new()),
        }
    }

    /// A gate's timeout for a run with this input.
    pub(crate) fn gate_timeout_for(&self, input: &Value) -> Option<Duration> {
        match &self.kind {
            StageKind::Gate { timeout, .. } => Some(
                self.gate_timeout
                    .as_ref()
                    .and_then(|f| f(input))
                    .unwrap_or(*timeout),
            ),
            _ => None,
        }
    }

    pub(crate) fn parallelism(&self) -> usize {
        match self.kind {
            StageKind::FanOut { parallelism } => parallelism,
            _ => 1,
        }
    }

    /// How the stage is described in the pipeline's record (for views and signals).
    pub(crate) fn descriptor(&self) -> Value {
        match &self.kind {
            StageKind::Step => serde_json::json!({"name": self.name, "kind": "step"}),
            StageKind::FanOut { parallelism } => {
                serde_json::json!({"name": self.name, "kind": "fan_out", "parallelism": parallelism})
            }
            StageKind::Gate { timeout, choices } => serde_json::json!({
                "name": self.name, "kind": "gate",
                "timeout_ms": timeout.as_millis() as u64, "choices": choices,
            }),
        }
    }
}

/// A pipeline type: a name, its stages, a price, and queue routes for its steps.
#[derive(Clone)]
pub struct Pipeline {
    pub name: String,
    pub stages: Vec<Stage>,
    price: Arc<PriceFn>,
    routes: HashMap<String, String>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("stages", &self.stages)
            .field("routes", &self.routes)
            .finish()
    }
}

impl Pipeline {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            stages: Vec::new(),
            price: Arc::new(|_| 0),
            routes: HashMap::new(),
        }
    }

    /// A stage running one job built from what came before.
    pub fn step<F>(mut self, name: impl Into<String>, build: F) -> Self
    where
        F: Fn(&StageInput<'_>) -> Result<StepSpec, BuildError> + Send + Sync + 'static,
    {
        self.stages.push(Stage {
            name: name.into(),
            kind: StageKind::Step,
            build: Some(Arc::new(move |i| build(i).map(|s| vec![s]))),
            fallback: None,
            gate_timeout: None,
        });
        self
    }

    /// A stage running the jobs `build` makes, at most `parallelism` at once; the
    /// next stage gets their outputs in order.
    pub fn fan_out<F>(mut self, name: impl Into<String>, parallelism: usize, build: F) -> Self
    where
        F: Fn(&StageInput<'_>) -> Result<Vec<StepSpec>, BuildError> + Send + Sync + 'static,
    {
        self.stages.push(Stage {
            name: name.into(),
            kind: StageKind::FanOut { parallelism },
            build: Some(Arc::new(build)),
            fallback: None,
            gate_timeout: None,
        });
        self
    }

    /// A gate answered by `approve` or `cancel`.
    pub fn gate(self, name: impl Into<String>, timeout: Duration) -> Self {
        self.gate_with_choices(name, timeout, &["approve"])
    }

    /// A gate answered by any of `choices` (plus `cancel`, always allowed).
    pub fn gate_with_choices(
        mut self,
        name: impl Into<String>,
        timeout: Duration,
        choices: &[&str],
    ) -> Self {
        let mut choices: Vec<String> = choices.iter().map(|c| (*c).to_owned()).collect();
        if !choices.iter().any(|c| c == "cancel") {
            choices.push("cancel".to_owned());
        }
        self.stages.push(Stage {
            name: name.into(),
            kind: StageKind::Gate { timeout, choices },
            build: None,
            fallback: None,
            gate_timeout: None,
        });
        self
    }

    /// The timeout of the last gate added, for a run with this input (`None`:
    /// the declared one). For gates whose wait is configured per run.
    pub fn gate_timeout_from<F>(mut self, timeout: F) -> Self
    where
        F: Fn(&Value) -> Option<Duration> + Send + Sync + 'static,
    {
        if let Some(last) = self.stages.last_mut() {
            last.gate_timeout = Some(Arc::new(timeout));
        }
        self
    }

    /// A job to run instead when job `index` of the last stage added fails for
    /// good (not when it was cancelled); its output stands for the failed one's.
    /// `None`: no fallback for this run (the pipeline fails).
    pub fn fallback<F>(mut self, build: F) -> Self
    where
        F: Fn(&StageInput<'_>, usize) -> Result<Option<StepSpec>, BuildError>
            + Send
            + Sync
            + 'static,
    {
        if let Some(last) = self.stages.last_mut() {
            last.fallback = Some(Arc::new(build));
        }
        self
    }

    /// The price in credits of a run with this input (0 by default).
    pub fn price<F>(mut self, price: F) -> Self
    where
        F: Fn(&Value) -> i64 + Send + Sync + 'static,
    {
        self.price = Arc::new(price);
        self
    }

    /// Sends this pipeline's jobs of `job_type` to `queue` instead of the type's own.
    pub fn route(mut self, job_type: impl Into<String>, queue: impl Into<String>) -> Self {
        self.routes.insert(job_type.into(), queue.into());
        self
    }

    pub fn price_of(&self, input: &Value) -> i64 {
        (self.price)(input)
    }

    pub(crate) fn route_of(&self, job_type: &str) -> Option<&str> {
        self.routes.get(job_type).map(String::as_str)
    }

    /// Checks the declaration: a name, at least one stage, unique stage names,
    /// parallelism of at least 1, gates with a timeout, fallbacks only on steps
    /// and fan-outs.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err("the name must be 1-64 characters".to_owned());
        }
        if self.stages.is_empty() {
            return Err("a pipeline needs at least one stage".to_owned());
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.name.is_empty() {
                return Err(format!("stage {i} has no name"));
            }
            if self.stages[..i].iter().any(|o| o.name == s.name) {
                return Err(format!("stage name '{}' is used twice", s.name));
            }
            match &s.kind {
                StageKind::FanOut { parallelism: 0 } => {
                    return Err(format!(
                        "fan-out '{}' needs a parallelism of at least 1",
                        s.name
                    ));
                }
                StageKind::Gate { timeout, .. } if timeout.is_zero() => {
                    return Err(format!("gate '{}' needs a timeout", s.name));
                }
                StageKind::Gate { .. } if s.fallback.is_some() => {
                    return Err(format!("gate '{}' cannot have a fallback", s.name));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(v: Value) -> StepSpec {
        StepSpec::new("probe", v)
    }

    #[test]
    fn declarations_are_checked() {
        assert!(Pipeline::new("x").validate().is_err());
        let dup = Pipeline::new("x")
            .step("a", |_| Ok(probe(Value::Null)))
            .step("a", |_| Ok(probe(Value::Null)));
        assert!(dup.validate().unwrap_err().contains("twice"));
        let zero = Pipeline::new("x").fan_out("f", 0, |_| Ok(vec![]));
        assert!(zero.validate().unwrap_err().contains("parallelism"));
        let ok = Pipeline::new("x")
            .step("a", |_| Ok(probe(Value::Null)))
            .gate("g", Duration::from_secs(1));
        assert!(ok.validate().is_ok());
        match &ok.stages[1].kind {
            StageKind::Gate { choices, .. } => assert_eq!(choices, &["approve", "cancel"]),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn a_step_builds_exactly_one_job() {
        let p = Pipeline::new("x").step("a", |i| Ok(probe(i.previous().clone())));
        let input = serde_json::json!({"n": 1});
        let specs = p.stages[0]
            .build(&StageInput {
                input: &input,
                outputs: &[],
            })
            .unwrap();
        assert_eq!(specs, vec![probe(input.clone())]);
    }

    #[test]
    fn stage_input_finds_outputs_by_name() {
        let input = serde_json::json!(0);
        let outs = vec![
            ("a".to_owned(), serde_json::json!(1)),
            ("b".to_owned(), serde_json::json!(2)),
        ];
        let si = StageInput {
            input: &input,
            outputs: &outs,
        };
        assert_eq!(si.previous(), &serde_json::json!(2));
        assert_eq!(si.output("a"), Some(&serde_json::json!(1)));
        assert_eq!(si.output("z"), None);
    }
}
