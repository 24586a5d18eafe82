//! Queue-style generation: submit a task, poll it, fetch its result, cancel it —
//! over genq's own task protocol or a vendor's (fal, Replicate, Runway, KIE,
//! ComfyUI; `crate::vendors`), chosen per provider ([`Vendor`]).

use std::{sync::Arc, time::Duration};

use genq_metrics::ProviderMetrics;
use serde::Deserialize;

pub use crate::task_types::{
    IDEMPOTENCY_HEADER, ProviderTask, TaskKind, TaskStatus, Vendor, VendorOptions, idempotency_key,
};
use crate::{
    ProviderConfig,
    call::{Caller, decode},
    error::{ProviderError, ProviderErrorKind},
    keys::KeyPool,
    vendors,
};

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
    options: Arc<VendorOptions>,
}

impl std::fmt::Debug for TaskClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskClient")
            .field("provider", &self.caller.name)
            .field("vendor", &self.options.vendor)
            .finish()
    }
}

impl TaskClient {
    /// A client of genq's own task protocol.
    pub fn new(
        cfg: &ProviderConfig,
        keys: KeyPool,
        metrics: ProviderMetrics,
    ) -> Result<Self, ProviderError> {
        Self::for_vendor(cfg, VendorOptions::new(Vendor::GenqTask), keys, metrics)
    }

    /// A client of `options.vendor`'s API at `cfg.base_url`.
    pub fn for_vendor(
        cfg: &ProviderConfig,
        options: VendorOptions,
        keys: KeyPool,
        metrics: ProviderMetrics,
    ) -> Result<Self, ProviderError> {
        let mut caller = Caller::new(cfg, keys, metrics)?;
        vendors::configure(&mut caller, &options)?;
        Ok(Self {
            caller: Arc::new(caller),
            options: Arc::new(options),
        })
    }

    pub fn name(&self) -> &str {
        &self.caller.name
    }

    pub fn vendor(&self) -> Vendor {
        self.options.vendor
    }

    /// Counts a submit repeated after an earlier one may have gone through
    /// (`genq_provider_resubmits_total`); jobkit calls it for vendors that do not
    /// [dedupe submits](Vendor::dedupes_submits).
    pub fn count_resubmit(&self) {
        self.caller
            .metrics
            .resubmits_total
            .with_label_values(&[&self.caller.name])
            .inc();
    }

    /// Asks the vendor to stop a task (best effort: a task that already ended, or a
    /// vendor without a cancel endpoint — KIE — is not an error).
    pub async fn cancel(&self, task: &ProviderTask) -> Result<(), ProviderError> {
        let key = self.key_of(task)?;
        let ctx = self.vendor_ctx();
        match self.options.vendor {
            Vendor::GenqTask => Ok(()),
            Vendor::Fal => vendors::fal::cancel(&ctx, &key, task).await,
            Vendor::Replicate => vendors::replicate::cancel(&ctx, &key, task).await,
            Vendor::Runway => vendors::runway::cancel(&ctx, &key, task).await,
            Vendor::Kie => vendors::kie::cancel(&ctx, &key, task).await,
            Vendor::ComfyUi => vendors::comfyui::cancel(&ctx, &key, task).await,
        }
    }

    fn vendor_ctx(&self) -> vendors::Ctx<'_> {
        vendors::Ctx {
            caller: &self.caller,
            options: &self.options,
        }
    }

    pub fn keys(&self) -> &KeyPool {
        &self.caller.keys
    }

    /// The vendor's settings (webhook, how long to wait in a slot, when to park).
    pub fn options(&self) -> &VendorOptions {
        &self.options
    }

    /// The Redis server's clock in ms (`None` if Redis cannot be asked).
    pub async fn server_time_ms(&self) -> Option<u64> {
        let mut c = self.caller.keys.inner().redis.clone();
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.ok()?;
        Some(secs * 1000 + micros / 1000)
    }

    /// Records that `job` waits on `task`, so that the vendor's webhook wakes it
    /// (only when webhooks are configured).
    pub async fn remember_waiting_job(
        &self,
        task: &ProviderTask,
        job: &crate::webhooks::WaitingJob,
    ) -> Result<(), ProviderError> {
        if self.options.webhook.is_none() {
            return Ok(());
        }
        crate::webhooks::remember_task(&self.caller.keys, &task.id, job).await
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
        let ctx = self.vendor_ctx();
        let (key, id) = match self.options.vendor {
            Vendor::GenqTask => return self.submit_genq(model, kind, input, idempotency_key).await,
            Vendor::Fal => vendors::fal::submit(&ctx, model, kind, &input).await?,
            Vendor::Replicate => vendors::replicate::submit(&ctx, model, kind, &input).await?,
            Vendor::Runway => vendors::runway::submit(&ctx, model, kind, &input).await?,
            Vendor::Kie => vendors::kie::submit(&ctx, model, kind, &input).await?,
            Vendor::ComfyUi => {
                vendors::comfyui::submit(&ctx, model, kind, &input, idempotency_key).await?
            }
        };
        Ok(ProviderTask {
            provider: self.caller.name.clone(),
            id,
            key: key.fingerprint().to_owned(),
            model: Some(model.to_owned()),
            submitted_at_ms: self.server_time_ms().await,
        })
    }

    async fn submit_genq(
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
            model: None,
            submitted_at_ms: self.server_time_ms().await,
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
        let ctx = self.vendor_ctx();
        match self.options.vendor {
            Vendor::GenqTask => {}
            Vendor::Fal => return vendors::fal::status(&ctx, &key, task).await,
            Vendor::Replicate => return vendors::replicate::status(&ctx, &key, task).await,
            Vendor::Runway => return vendors::runway::status(&ctx, &key, task).await,
            Vendor::Kie => return vendors::kie::status(&ctx, &key, task).await,
            Vendor::ComfyUi => return vendors::comfyui::status(&ctx, &key, task).await,
        }
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

    /// Downloads a result. genq's task protocol sends the task's key; a vendor's
    /// result gets the key only when it lies under the provider's base URL (a
    /// ComfyUI `/view`), never on a CDN (fal, Replicate, Runway and KIE hand out
    /// signed or public file URLs).
    pub async fn download(&self, task: &ProviderTask, url: &str) -> Result<Vec<u8>, ProviderError> {
        let key = self.key_of(task)?;
        let own = url.starts_with(&format!("{}/", self.caller.base_url));
        if self.options.vendor == Vendor::GenqTask || own {
            self.caller
                .send_with("file", &key, |http, _| http.get(url))
                .await
        } else {
            self.caller
                .send_public("file", self.caller.http.get(url))
                .await
        }
    }
}
