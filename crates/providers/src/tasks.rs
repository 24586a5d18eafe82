//! The queue-style protocol: submit a task, poll it, fetch its result.

use std::{sync::Arc, time::Duration};

use genq_metrics::ProviderMetrics;
use serde::{Deserialize, Serialize};

use crate::{
    ProviderConfig,
    call::{Caller, decode},
    error::{ProviderError, ProviderErrorKind},
    keys::KeyPool,
};

/// The header a task submit carries its idempotency key in.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The idempotency key of the task a job submits: `genq-<job id>`, the same on
/// every run (attempt) of the job.
pub fn idempotency_key(job_id: &str) -> String {
    format!("genq-{job_id}")
}

/// What a task makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Video,
    FaceSwap,
    Upscale,
    Image,
}

/// A submitted task: its id and the key that submitted it (by fingerprint), which
/// polls and downloads it. Store it on the job before waiting (a checkpoint), so a
/// re-run resumes it instead of paying for a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderTask {
    pub provider: String,
    pub id: String,
    pub key: String,
}

/// Where a task stands.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskStatus {
    Pending {
        progress: Option<u8>,
    },
    Succeeded {
        url: String,
        content_type: Option<String>,
    },
    Failed(ProviderError),
}

#[derive(Deserialize)]
struct Submitted {
    id: String,
}

#[derive(Deserialize)]
struct Polled {
    status: String,
    #[serde(default)]
    progress: Option<u8>,
    #[serde(default)]
    result: Option<PolledResult>,
    #[serde(default)]
    error: Option<PolledError>,
}

#[derive(Deserialize)]
struct PolledResult {
    url: String,
    #[serde(default)]
    content_type: Option<String>,
}

#[derive(Deserialize)]
struct PolledError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A client of one queue-style provider. Cheap to clone.
#[derive(Clone)]
pub struct TaskClient {
    caller: Arc<Caller>,
}

impl std::fmt::Debug for TaskClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskClient")
            .field("provider", &self.caller.name)
            .finish()
    }
}

impl TaskClient {
    pub fn new(
        cfg: &ProviderConfig,
        keys: KeyPool,
        metrics: ProviderMetrics,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            caller: Arc::new(Caller::new(cfg, keys, metrics)?),
        })
    }

    pub fn name(&self) -> &str {
        &self.caller.name
    }

    pub fn keys(&self) -> &KeyPool {
        &self.caller.keys
    }

    /// Submits a task (a paid call) with header `Idempotency-Key: <idempotency_key>`:
    /// the provider answers a repeated key with the task it already created, so a
    /// job re-run that lost its checkpoint pays once. Jobs pass `genq-<job id>`
    /// ([`idempotency_key`]), the same on every run of the job.
    pub async fn submit(
        &self,
        model: &str,
        kind: TaskKind,
        input: serde_json::Value,
        idempotency_key: &str,
    ) -> Result<ProviderTask, ProviderError> {
        let url = self.caller.url("/tasks");
        let body = serde_json::json!({ "model": model, "kind": kind, "input": input });
        let (key, raw) = self
            .caller
            .send("submit", |http, _| {
                http.post(&url)
                    .header(IDEMPOTENCY_HEADER, idempotency_key)
                    .json(&body)
            })
            .await?;
        let submitted: Submitted = decode(&self.caller.name, "submit", &raw)?;
        Ok(ProviderTask {
            provider: self.caller.name.clone(),
            id: submitted.id,
            key: key.fingerprint().to_owned(),
        })
    }

    fn key_of(&self, task: &ProviderTask) -> Result<crate::ApiKey, ProviderError> {
        self.caller.keys.by_fingerprint(&task.key).ok_or_else(|| {
            ProviderError::new(
                ProviderErrorKind::Billing,
                format!(
                    "the key {} that submitted task {} is no longer configured",
                    task.key, task.id
                ),
            )
        })
    }

    /// Polls a task once.
    pub async fn status(&self, task: &ProviderTask) -> Result<TaskStatus, ProviderError> {
        let key = self.key_of(task)?;
        let url = self.caller.url(&format!("/tasks/{}", task.id));
        let raw = self
            .caller
            .send_with("poll", &key, |http, _| http.get(&url))
            .await?;
        let polled: Polled = decode(&self.caller.name, "poll", &raw)?;
        Ok(match polled.status.as_str() {
            "queued" | "running" => TaskStatus::Pending {
                progress: polled.progress,
            },
            "succeeded" => match polled.result {
                Some(r) => TaskStatus::Succeeded {
                    url: r.url,
                    content_type: r.content_type,
                },
                None => TaskStatus::Failed(ProviderError::transient(format!(
                    "task {} succeeded without a result",
                    task.id
                ))),
            },
            "failed" => {
                let e = polled.error.unwrap_or(PolledError {
                    code: String::new(),
                    message: String::new(),
                });
                let kind = match e.code.as_str() {
                    "content_policy" | "content_policy_violation" => {
                        ProviderErrorKind::ContentPolicy
                    }
                    "bad_input" | "invalid_request" => ProviderErrorKind::BadInput,
                    _ => ProviderErrorKind::Transient,
                };
                TaskStatus::Failed(ProviderError::new(
                    kind,
                    format!("task {} failed ({}): {}", task.id, e.code, e.message),
                ))
            }
            other => TaskStatus::Failed(ProviderError::transient(format!(
                "task {} has unknown status '{other}'",
                task.id
            ))),
        })
    }

    /// Polls until the task ends; its result URL. `on_progress` sees each reported percentage.
    pub async fn wait(
        &self,
        task: &ProviderTask,
        poll_interval: Duration,
        mut on_progress: impl FnMut(u8),
    ) -> Result<(String, Option<String>), ProviderError> {
        loop {
            match self.status(task).await? {
                TaskStatus::Pending { progress } => {
                    if let Some(p) = progress {
                        on_progress(p);
                    }
                    tokio::time::sleep(poll_interval).await;
                }
                TaskStatus::Succeeded { url, content_type } => return Ok((url, content_type)),
                TaskStatus::Failed(e) => return Err(e),
            }
        }
    }

    /// Downloads a result with the task's key.
    pub async fn download(&self, task: &ProviderTask, url: &str) -> Result<Vec<u8>, ProviderError> {
        let key = self.key_of(task)?;
        self.caller
            .send_with("file", &key, |http, _| http.get(url))
            .await
    }
}
