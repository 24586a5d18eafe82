//! Writing transitions: the compare-and-set, pushing a stage's jobs, re-pushing
//! ones a stopped driver left, the idle mark, and cleaning up an ended pipeline.

use genq_redis::{NewJob, pipeline_scripts as scripts};
use tracing::info;

use super::{Applied, IDLE_RECHECK_MS, PendingStep, PipelineDriver};
use crate::{
    Pipeline, PipelineError, StageKind,
    keys::{ending_args, step_job_id},
    plan::Ops,
    record::Record,
};

impl PipelineDriver {
    pub(super) async fn apply(&self, rec: &Record, ops: &Ops) -> Result<Applied, PipelineError> {
        let cfg = self.queue.config();
        let body = serde_json::to_string(ops)
            .map_err(|e| PipelineError::BadInput(format!("transition not encodable: {e}")))?;
        let mut c = self.queue.connection();
        let reply: Vec<i64> = scripts::APPLY
            .key(&self.keys.base)
            .arg(&rec.id)
            .arg(&rec.ver)
            .arg(body)
            .arg(ending_args(cfg))
            .invoke_async(&mut c)
            .await?;
        Ok(match reply.as_slice() {
            [1, now] => Applied::Done {
                now_ms: (*now).max(0) as u64,
            },
            [0, ..] => Applied::Conflict,
            _ => Applied::Missing,
        })
    }

    pub(super) async fn push_steps(
        &self,
        pid: &str,
        pending: &[(String, PendingStep)],
    ) -> Result<(), PipelineError> {
        let jobs = pending
            .iter()
            .map(|(_, p)| {
                let idem = if p.idem.is_empty() { &p.id } else { &p.idem };
                NewJob::new(&p.queue, &p.job_type, p.payload.to_string())
                    .id(&p.id)
                    .idempotency_key(idem)
                    .pipeline(pid)
            })
            .collect();
        self.queue.push_bulk(jobs).await?;
        let mut inv = scripts::PUSHED.key(&self.keys.base);
        inv.arg(pid);
        for (key, p) in pending {
            inv.arg(key).arg(&p.queue);
        }
        let mut c = self.queue.connection();
        let late: Vec<String> = inv.invoke_async(&mut c).await?;
        for key in late {
            if let Some((_, p)) = pending.iter().find(|(k, _)| *k == key) {
                info!(pipeline_id = %pid, job_id = %p.id, "pipeline ended while its job was pushed; cancelling the job");
                self.queue.cancel(&p.queue, &p.id).await?;
            }
        }
        Ok(())
    }

    /// Pushes the jobs of the current stage still marked as waiting (a driver was
    /// killed between marking and pushing them). Pushing is idempotent by id.
    pub(super) async fn repush_waiting(&self, rec: &Record) -> Result<(), PipelineError> {
        if rec.stage < 0 {
            return Ok(());
        }
        let k = rec.stage as usize;
        let next = rec.counts(k).next;
        if next == 0 {
            return Ok(());
        }
        let sk = self.keys.steps(&rec.id);
        let fields: Vec<String> = (0..next).map(|i| format!("j.{k}.{i}")).collect();
        let mut c = self.queue.connection();
        let specs: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&sk)
            .arg(&fields)
            .query_async(&mut c)
            .await?;
        let pending: Vec<(String, PendingStep)> = specs
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let step: PendingStep = serde_json::from_str(s.as_deref()?).ok()?;
                Some((format!("{k}.{i}"), step))
            })
            .collect();
        if !pending.is_empty() {
            info!(pipeline_id = %rec.id, jobs = pending.len(), "pushing pipeline jobs a stopped driver had not pushed");
            self.push_steps(&rec.id, &pending).await?;
        }
        Ok(())
    }

    pub(super) async fn idle(&self, rec: &Record) -> Result<(), PipelineError> {
        let mut c = self.queue.connection();
        let _: i64 = scripts::IDLE
            .key(&self.keys.base)
            .arg(&rec.id)
            .arg(&rec.ver)
            .arg(IDLE_RECHECK_MS)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// A finished pipeline: cancels its jobs still queued or running, then leaves
    /// `:active`. The first such move (a compare-and-set marks it `counted`) counts
    /// the outcome, once across all drivers.
    pub(super) async fn clean_up(&self, rec: &Record) -> Result<(), PipelineError> {
        let sk = self.keys.steps(&rec.id);
        let first = rec.text("counted").is_none();
        let mut ops = Ops {
            active: Some("drop"),
            ..Ops::default()
        };
        if first {
            ops.h.insert("counted".into(), "1".into());
        }
        if rec.stage >= 0 {
            let k = rec.stage as usize;
            let next = rec.counts(k).next;
            if next > 0 {
                let mut c = self.queue.connection();
                let mut pipe = redis::pipe();
                for i in 0..next {
                    pipe.hget(&sk, format!("s.{k}.{i}"))
                        .hget(&sk, format!("j.{k}.{i}"))
                        .hget(&sk, format!("fb.{k}.{i}"));
                }
                let vals: Vec<Option<String>> = pipe.query_async(&mut c).await?;
                for (i, v) in vals.chunks(3).enumerate() {
                    let fallback = v[2].as_deref() == Some("1");
                    let job_id = step_job_id(&rec.id, k, i, fallback);
                    let queue = match v[0].as_deref() {
                        Some("q") => v[1]
                            .as_deref()
                            .and_then(|j| serde_json::from_str::<PendingStep>(j).ok())
                            .map(|p| p.queue),
                        Some(s) => s.strip_prefix("p|").map(str::to_owned),
                        None => None,
                    };
                    if let Some(queue) = queue {
                        self.queue.cancel(&queue, &job_id).await?;
                        ops.s.insert(format!("s.{k}.{i}"), "c".into());
                        ops.sdel.push(format!("j.{k}.{i}"));
                    }
                }
            }
        }
        if let Applied::Done { .. } = self.apply(rec, &ops).await?
            && first
            && let Some(m) = &self.metrics
        {
            let outcome = rec.outcome.as_deref().unwrap_or(rec.status.as_str());
            m.finished_total
                .with_label_values(&[rec.ptype.as_str(), outcome])
                .inc();
            if let (Some(gate), Some(opened), Some(end)) = (
                rec.gate.as_deref(),
                rec.num("gate_opened"),
                rec.num("finished"),
            ) && rec.phase == "done"
                && rec.num("decided_at").is_none()
                && (outcome == "timed_out" || outcome == "cancelled")
            {
                m.gate_wait_seconds
                    .with_label_values(&[rec.ptype.as_str(), gate, outcome])
                    .observe(end.saturating_sub(opened) as f64 / 1000.0);
            }
        }
        Ok(())
    }

    pub(super) fn observe(&self, def: &Pipeline, rec: &Record, ops: &Ops, now_ms: u64) {
        let Some(m) = &self.metrics else { return };
        if rec.stage < 0 || !ops.now.iter().any(|f| f.starts_with("t1.")) {
            return;
        }
        let k = rec.stage as usize;
        let Some(stage) = def.stages.get(k) else {
            return;
        };
        if let StageKind::Gate { .. } = stage.kind {
            if let (Some(opened), Some(decided)) = (rec.num("gate_opened"), rec.num("decided_at")) {
                m.gate_wait_seconds
                    .with_label_values(&[rec.ptype.as_str(), stage.name.as_str(), "decided"])
                    .observe(decided.saturating_sub(opened) as f64 / 1000.0);
            }
        } else if let Some(t0) = rec.num(&format!("t0.{k}")) {
            m.stage_duration_seconds
                .with_label_values(&[rec.ptype.as_str(), stage.name.as_str()])
                .observe(now_ms.saturating_sub(t0) as f64 / 1000.0);
        }
    }
}
