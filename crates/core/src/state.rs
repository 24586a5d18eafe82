//! What a job looks like from outside: its status, progress, result and the
//! completion events other processes follow.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::error::FailureClass;

/// A new, unique, time-ordered job id (a ULID).
pub fn new_job_id() -> String {
    ulid::Ulid::new().to_string()
}

/// The lifecycle: queued → running → succeeded | failed | cancelled. `Scheduled` is
/// a queued job not yet due (delayed, or waiting for its retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Scheduled,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    AwaitingApproval,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::AwaitingApproval => "awaiting_approval",
        }
    }

    /// Succeeded, failed and cancelled are final.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status name is not one of the lifecycle's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown job status '{0}'")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            JobStatus::Queued,
            JobStatus::Scheduled,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
            JobStatus::AwaitingApproval,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Progress reported by a running handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0-100.
    pub percent: u8,
    /// A short note for operators and status messages ("polling provider task 3f2…").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One job as stored: readable by id while its data lives (results keep for a TTL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub id: String,
    pub queue: String,
    pub job_type: String,
    pub status: JobStatus,
    /// Runs started so far (1 on the first run).
    pub attempts: u32,
    /// The payload as pushed (JSON text, or whatever was placed in the queue by hand).
    pub payload: String,
    pub progress: Option<Progress>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub error_class: Option<FailureClass>,
    pub idempotency_key: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub enqueued_at_ms: Option<u64>,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// When a scheduled job becomes due.
    pub due_at_ms: Option<u64>,
    /// The worker instance holding (or last holding) the job.
    pub worker: Option<String>,
    pub cancel_requested: bool,
    /// Scheduled while it waits on a vendor's task it submitted (parked: no worker
    /// slot held); its progress is the task's.
    #[serde(default)]
    pub parked: bool,
}

/// A final outcome, published on the queue's completion event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionEvent {
    /// The stream entry id (for resuming a follower).
    pub event_id: String,
    pub job_id: String,
    pub queue: String,
    pub job_type: String,
    pub status: JobStatus,
    pub attempts: u32,
    pub error_class: Option<FailureClass>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for s in [
            "queued",
            "scheduled",
            "running",
            "succeeded",
            "failed",
            "cancelled",
            "awaiting_approval",
        ] {
            assert_eq!(s.parse::<JobStatus>().unwrap().as_str(), s);
        }
        assert!("done".parse::<JobStatus>().is_err());
        assert!(JobStatus::Failed.is_final());
        assert!(!JobStatus::Scheduled.is_final());
    }

    #[test]
    fn job_ids_are_unique_and_ordered() {
        let a = new_job_id();
        let b = new_job_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 26);
    }
}
