//! Moving one pipeline along: read it, decide (`plan.rs`), build the transition
//! (a stage started, jobs launched, a fallback, the end), apply it.

use std::collections::HashMap;

use genq_core::{JobStatus, failpoint};
use redis::AsyncCommands;
use serde_json::Value;
use tracing::{Instrument, info_span, warn};

use super::{Applied, CAS_TRIES, PendingStep, PipelineDriver};
use crate::{
    Pipeline, PipelineError, StageKind, StepSpec,
    keys::step_job_id,
    plan::{Decision, FinishOp, GateOp, Ops, decide},
    record::Record,
};

impl PipelineDriver {
    /// Advances one pipeline as far as it can go now.
    pub async fn tick(&self, pid: &str) -> Result<(), PipelineError> {
        self.tick_with(pid, false).await
    }

    pub(super) async fn tick_with(&self, pid: &str, thorough: bool) -> Result<(), PipelineError> {
        let span = info_span!("pipeline", pipeline_id = %pid);
        async move {
            for _ in 0..CAS_TRIES {
                let Some(rec) = self.load(pid).await? else {
                    let mut c = self.queue.connection();
                    let _: () = c.zrem(self.keys.active(), pid).await?;
                    return Ok(());
                };
                if rec.status == JobStatus::Queued {
                    return Ok(());
                }
                if rec.status.is_final() {
                    return self.clean_up(&rec).await;
                }
                if rec.cancel_requested {
                    self.client()
                        .cancel(pid, "cancelled by an operator")
                        .await?;
                    continue;
                }
                let def = match self.pipelines.get(&rec.ptype) {
                    Ok(d) => d,
                    Err(e) => {
                        let ops = finish_ops(&rec, "failed", "bad_input", &e.to_string(), "");
                        self.apply(&rec, &ops).await?;
                        continue;
                    }
                };
                let decision = decide(&def, &rec);
                if decision == Decision::Idle {
                    if thorough {
                        self.repush_waiting(&rec).await?;
                    }
                    self.idle(&rec).await?;
                    return Ok(());
                }
                let (ops, pending) = self.transition(&def, &rec, decision).await?;
                match self.apply(&rec, &ops).await? {
                    Applied::Done { now_ms } => {
                        self.observe(&def, &rec, &ops, now_ms);
                        if !pending.is_empty() {
                            failpoint("pipeline:before_push").await;
                            self.push_steps(pid, &pending).await?;
                        }
                    }
                    Applied::Conflict => {}
                    Applied::Missing => return Ok(()),
                }
            }
            warn!("pipeline kept moving under this driver; left to the next wake-up");
            Ok(())
        }
        .instrument(span)
        .await
    }

    pub(super) async fn load(&self, pid: &str) -> Result<Option<Record>, PipelineError> {
        let mut c = self.queue.connection();
        let fields: HashMap<String, String> = c.hgetall(self.keys.job(pid)).await?;
        Ok((!fields.is_empty()).then(|| Record::parse(pid, fields)))
    }

    /// The ops of one decided move, and the jobs to push once it is applied.
    pub(super) async fn transition(
        &self,
        def: &Pipeline,
        rec: &Record,
        decision: Decision,
    ) -> Result<(Ops, Vec<(String, PendingStep)>), PipelineError> {
        match self.build_transition(def, rec, decision).await {
            // a job that cannot be routed or pushed: the pipeline fails, it does not stall
            Err(PipelineError::BadInput(m)) => {
                Ok((finish_ops(rec, "failed", "bad_input", &m, ""), Vec::new()))
            }
            other => other,
        }
    }

    async fn build_transition(
        &self,
        def: &Pipeline,
        rec: &Record,
        decision: Decision,
    ) -> Result<(Ops, Vec<(String, PendingStep)>), PipelineError> {
        match decision {
            Decision::Idle => Ok((Ops::default(), Vec::new())),
            Decision::Start(j) => self.start_stage(def, rec, j).await,
            Decision::Launch { stage, from, to } => {
                let outputs = self.outputs(def, rec, stage).await?;
                let specs = match def.stages[stage].build(&crate::StageInput {
                    input: &rec.input,
                    outputs: &outputs,
                }) {
                    Ok(s) => s,
                    Err(e) => {
                        let ops = finish_ops(rec, "failed", "bad_input", &e.0, "");
                        return Ok((ops, Vec::new()));
                    }
                };
                let n = rec.counts(stage).n;
                if specs.len() != n {
                    return Err(PipelineError::BadInput(format!(
                        "stage '{}' built {} jobs, not the {n} it started with (its builder must be deterministic)",
                        def.stages[stage].name,
                        specs.len()
                    )));
                }
                let mut ops = Ops::default();
                let pending = self.launch(def, rec, &mut ops, stage, &specs, from, to)?;
                ops.h.insert(format!("next.{stage}"), to.to_string());
                Ok((ops, pending))
            }
            Decision::Failed { stage, index } => self.failed_step(def, rec, stage, index).await,
            Decision::Mismatch => Ok((
                finish_ops(
                    rec,
                    "failed",
                    "bad_input",
                    &format!(
                        "the pipeline type '{}' changed: it has no stage {}",
                        rec.ptype, rec.stage
                    ),
                    "",
                ),
                Vec::new(),
            )),
        }
    }

    pub(super) async fn start_stage(
        &self,
        def: &Pipeline,
        rec: &Record,
        j: usize,
    ) -> Result<(Ops, Vec<(String, PendingStep)>), PipelineError> {
        let mut ops = Ops::default();
        if rec.stage < 0 {
            // kept once per distinct definition (a pipeline's hash holds the
            // digest): a long value would also turn every pipeline's hash from a
            // compact listpack into a hash table
            let stages: Vec<Value> = def.stages.iter().map(|s| s.descriptor()).collect();
            let json = Value::Array(stages).to_string();
            let digest = digest(&json);
            ops.h.insert("stages".into(), digest.clone());
            ops.defs.insert(digest, json);
        } else {
            let k = rec.stage as usize;
            ops.now.push(format!("t1.{k}"));
            ops.event(
                "stage_done",
                &[
                    ("stage", k.to_string()),
                    ("name", def.stages[k].name.clone()),
                ],
            );
        }
        if j >= def.stages.len() {
            let outputs = self.outputs(def, rec, j).await?;
            let result = outputs
                .last()
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let mut fin = finish_ops(rec, "succeeded", "", "", &result);
            fin.now = ops.now;
            fin.ev = ops.ev;
            fin.h.extend(ops.h);
            return Ok((fin, Vec::new()));
        }
        let stage = &def.stages[j];
        ops.h.insert("stage".into(), j.to_string());
        ops.h.insert("phase".into(), "steps".into());
        ops.now.push(format!("t0.{j}"));
        ops.event(
            "stage",
            &[("stage", j.to_string()), ("name", stage.name.clone())],
        );
        if let Some(timeout) = stage.gate_timeout_for(&rec.input) {
            ops.gate = Some(GateOp {
                name: stage.name.clone(),
                stage: j.to_string(),
                timeout_ms: (timeout.as_millis() as u64).max(1).to_string(),
            });
            return Ok((ops, Vec::new()));
        }
        let outputs = self.outputs(def, rec, j).await?;
        let specs = match stage.build(&crate::StageInput {
            input: &rec.input,
            outputs: &outputs,
        }) {
            Ok(s) => s,
            Err(e) => {
                let mut fin = finish_ops(rec, "failed", "bad_input", &e.0, "");
                fin.h.insert("failed_stage".into(), j.to_string());
                if let Some(f) = fin.finish.as_mut() {
                    f.stage = j.to_string();
                }
                return Ok((fin, Vec::new()));
            }
        };
        let n = specs.len();
        let to = n.min(stage.parallelism());
        ops.h.insert(format!("n.{j}"), n.to_string());
        ops.h.insert(format!("next.{j}"), to.to_string());
        match self.launch(def, rec, &mut ops, j, &specs, 0, to) {
            Ok(pending) => Ok((ops, pending)),
            Err(PipelineError::BadInput(m)) => {
                let mut fin = finish_ops(rec, "failed", "bad_input", &m, "");
                if let Some(f) = fin.finish.as_mut() {
                    f.stage = j.to_string();
                }
                Ok((fin, Vec::new()))
            }
            Err(e) => Err(e),
        }
    }

    /// Marks jobs `from..to` of `stage` as waiting to be pushed (their jobs kept in
    /// the record until pushed, so a killed driver's successor pushes them).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn launch(
        &self,
        def: &Pipeline,
        rec: &Record,
        ops: &mut Ops,
        stage: usize,
        specs: &[StepSpec],
        from: usize,
        to: usize,
    ) -> Result<Vec<(String, PendingStep)>, PipelineError> {
        let mut pending = Vec::new();
        for (i, spec) in specs.iter().enumerate().take(to).skip(from) {
            let step = self.pending_step(def, rec, spec, stage, i, false)?;
            let key = format!("{stage}.{i}");
            ops.s.insert(format!("s.{key}"), "q".into());
            ops.s.insert(
                format!("j.{key}"),
                serde_json::to_string(&step).unwrap_or_default(),
            );
            pending.push((key, step));
        }
        Ok(pending)
    }

    pub(super) fn pending_step(
        &self,
        def: &Pipeline,
        rec: &Record,
        spec: &StepSpec,
        stage: usize,
        index: usize,
        fallback: bool,
    ) -> Result<PendingStep, PipelineError> {
        let queue = match (&spec.queue, def.route_of(&spec.job_type)) {
            (Some(q), _) => q.clone(),
            (None, Some(q)) => q.to_owned(),
            (None, None) => self
                .jobs
                .queue_of(&spec.job_type)
                .map(str::to_owned)
                .map_err(|e| PipelineError::BadInput(e.to_string()))?,
        };
        genq_core::validate_queue_name(&queue)
            .map_err(|e| PipelineError::BadInput(e.to_string()))?;
        let id = step_job_id(&rec.id, stage, index, fallback);
        let payload = spec.payload.to_string();
        let max = self.queue.config().max_payload_bytes;
        let bad = |m: String| Err(PipelineError::BadInput(m));
        if spec.job_type.is_empty() || spec.job_type.len() > 64 {
            return bad(format!(
                "job type '{}' must be 1-64 characters",
                spec.job_type
            ));
        }
        if payload.len() > max {
            return bad(format!(
                "the payload of job {id} is {} bytes, over the {max}-byte limit",
                payload.len()
            ));
        }
        if id.len() > 64 {
            return bad(format!(
                "job id '{id}' is over 64 characters (a pipeline id of at most {} characters leaves room)",
                crate::client::MAX_PIPELINE_ID
            ));
        }
        let idem = format!("{id}@{}", rec.num("started").unwrap_or(0));
        Ok(PendingStep {
            id,
            queue,
            job_type: spec.job_type.clone(),
            payload: spec.payload.clone(),
            idem,
        })
    }

    pub(super) async fn failed_step(
        &self,
        def: &Pipeline,
        rec: &Record,
        stage: usize,
        index: Option<usize>,
    ) -> Result<(Ops, Vec<(String, PendingStep)>), PipelineError> {
        let next = rec.counts(stage).next;
        let mut c = self.queue.connection();
        let sk = self.keys.steps(&rec.id);
        let index = match index {
            Some(i) => i,
            None => {
                let fields: Vec<String> = (0..next).map(|i| format!("s.{stage}.{i}")).collect();
                let st: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(&sk)
                    .arg(&fields)
                    .query_async(&mut c)
                    .await?;
                match st
                    .iter()
                    .position(|s| matches!(s.as_deref(), Some("f" | "c")))
                {
                    Some(i) => i,
                    None => {
                        let msg = format!(
                            "stage {stage} counts a failed job but none is recorded as failed"
                        );
                        return Ok((finish_ops(rec, "failed", "transient", &msg, ""), Vec::new()));
                    }
                }
            }
        };
        let key = format!("{stage}.{index}");
        let (fb, class, error): (Option<String>, Option<String>, Option<String>) = redis::pipe()
            .hget(&sk, format!("fb.{key}"))
            .hget(&sk, format!("c.{key}"))
            .hget(&sk, format!("e.{key}"))
            .query_async(&mut c)
            .await?;
        let class = class.unwrap_or_else(|| "transient".into());
        let st = &def.stages[stage];
        if let Some(fallback) = &st.fallback
            && fb.as_deref() != Some("1")
            && class != "cancelled"
        {
            let outputs = self.outputs(def, rec, stage).await?;
            let si = crate::StageInput {
                input: &rec.input,
                outputs: &outputs,
            };
            match fallback(&si, index) {
                Ok(None) => {}
                Ok(Some(spec)) => {
                    let step = self.pending_step(def, rec, &spec, stage, index, true)?;
                    let mut ops = Ops::default();
                    ops.s.insert(format!("s.{key}"), "q".into());
                    ops.s.insert(format!("fb.{key}"), "1".into());
                    ops.s.insert(
                        format!("j.{key}"),
                        serde_json::to_string(&step).unwrap_or_default(),
                    );
                    ops.incr.insert(format!("failed.{stage}"), -1);
                    ops.hdel.push(format!("fail.{stage}"));
                    ops.event(
                        "fallback",
                        &[("stage", stage.to_string()), ("index", index.to_string())],
                    );
                    return Ok((ops, vec![(key, step)]));
                }
                Err(e) => {
                    return Ok((finish_ops(rec, "failed", "bad_input", &e.0, ""), Vec::new()));
                }
            }
        }
        let outcome = if class == "cancelled" {
            "cancelled"
        } else {
            "failed"
        };
        let message = format!(
            "stage '{}', job {}: {}",
            st.name,
            step_job_id(&rec.id, stage, index, fb.as_deref() == Some("1")),
            error.unwrap_or_default()
        );
        Ok((finish_ops(rec, outcome, &class, &message, ""), Vec::new()))
    }

    /// The outputs of stages `0..until`, by name.
    pub(super) async fn outputs(
        &self,
        def: &Pipeline,
        rec: &Record,
        until: usize,
    ) -> Result<Vec<(String, Value)>, PipelineError> {
        let until = until.min(def.stages.len());
        if until == 0 {
            return Ok(Vec::new());
        }
        let sk = self.keys.steps(&rec.id);
        let mut pipe = redis::pipe();
        for (k, st) in def.stages.iter().enumerate().take(until) {
            match st.kind {
                StageKind::Gate { .. } => {
                    pipe.cmd("HMGET").arg(&sk).arg(format!("g.{k}"));
                }
                StageKind::Step => {
                    pipe.cmd("HMGET").arg(&sk).arg(format!("o.{k}.0"));
                }
                StageKind::FanOut { .. } => {
                    let n = rec.counts(k).n;
                    let mut cmd = redis::cmd("HMGET");
                    cmd.arg(&sk);
                    // HMGET needs a field; index 0 of an empty fan-out reads nothing.
                    for i in 0..n.max(1) {
                        cmd.arg(format!("o.{k}.{i}"));
                    }
                    pipe.add_command(cmd);
                }
            }
        }
        let mut c = self.queue.connection();
        let rows: Vec<Vec<Option<String>>> = pipe.query_async(&mut c).await?;
        let parse = |v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null)
        };
        Ok(def
            .stages
            .iter()
            .enumerate()
            .take(until)
            .zip(rows)
            .map(|((k, st), row)| {
                let v = match st.kind {
                    StageKind::FanOut { .. } => {
                        let n = rec.counts(k).n;
                        Value::Array(row.iter().take(n).map(parse).collect())
                    }
                    _ => row.first().map(parse).unwrap_or(Value::Null),
                };
                (st.name.clone(), v)
            })
            .collect())
    }
}

/// A stable 64-bit FNV-1a digest (hex) of a stage description.
fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The ops that end a pipeline with `outcome` at its current stage.
fn finish_ops(rec: &Record, outcome: &str, class: &str, error: &str, result: &str) -> Ops {
    Ops {
        finish: Some(FinishOp {
            outcome: outcome.to_owned(),
            class: class.to_owned(),
            error: error.to_owned(),
            stage: rec.stage.max(-1).to_string(),
            result: result.to_owned(),
        }),
        ..Ops::default()
    }
}
