//! Periodic jobs (Cleanup): pushed at each tick of a cron schedule. Every worker
//! process serving the job's queue runs the schedule; the push's idempotency key
//! names the tick, so several hosts push each tick once.

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{EnqueueOptions, JobClient};

/// A job pushed on a schedule.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub job_type: String,
    /// JSON.
    pub payload: String,
    pub schedule: cron::Schedule,
}

/// Pushes each scheduled job at its ticks until `stop`.
pub async fn run_schedules(client: JobClient, schedules: Vec<Scheduled>, stop: CancellationToken) {
    let tasks: Vec<_> = schedules
        .into_iter()
        .map(|s| tokio::spawn(run_one(client.clone(), s, stop.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn run_one(client: JobClient, s: Scheduled, stop: CancellationToken) {
    info!(job_type = %s.job_type, schedule = %s.schedule, "schedule started");
    while let Some(next) = s.schedule.upcoming(Utc).next() {
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let opts = EnqueueOptions {
            idempotency_key: Some(format!("schedule:{}:{}", s.job_type, next.timestamp())),
            ..EnqueueOptions::default()
        };
        match client.enqueue_json(&s.job_type, &s.payload, opts).await {
            Ok(p) if p.created => {
                info!(job_type = %s.job_type, job_id = %p.id, "scheduled job pushed")
            }
            Ok(_) => {}
            Err(e) => {
                warn!(job_type = %s.job_type, error = %e, "scheduled job could not be pushed")
            }
        }
    }
}
