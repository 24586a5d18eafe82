//! The values queue-style generation passes around: what a task makes, the task a
//! submit created (the job's checkpoint), where it stands, and which vendor API a
//! provider speaks with its settings.

use serde::{Deserialize, Serialize};

use crate::error::ProviderError;

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
    /// The model the task runs (fal addresses a request under its app id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// When it was submitted, by the Redis server's clock (ms): how long it has been
    /// waited on is measured from here, the same on every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at_ms: Option<u64>,
}

/// Which HTTP API a queue-style provider speaks (`kind` in `[providers.<name>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vendor {
    /// genq's own task protocol (docs/PROVIDER-PROTOCOLS.md section 2).
    GenqTask,
    /// fal's queue API (`queue.fal.run`).
    Fal,
    /// Replicate's predictions API.
    Replicate,
    /// Runway's developer API (`api.dev.runwayml.com`).
    Runway,
    /// KIE's market task API (Sora 2 and others).
    Kie,
    /// A self-hosted ComfyUI server.
    #[serde(rename = "comfyui")]
    ComfyUi,
}

impl Vendor {
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::GenqTask => "genq-task",
            Vendor::Fal => "fal",
            Vendor::Replicate => "replicate",
            Vendor::Runway => "runway",
            Vendor::Kie => "kie",
            Vendor::ComfyUi => "comfyui",
        }
    }

    /// Whether a repeated submit of one job is recognised by the vendor (an
    /// idempotency key, or for ComfyUI a prompt id genq chooses and looks up), so
    /// a re-run that lost its checkpoint pays once. The others are counted in
    /// `genq_provider_resubmits_total` when that happens.
    pub fn dedupes_submits(self) -> bool {
        matches!(self, Vendor::GenqTask | Vendor::ComfyUi)
    }
}

/// A vendor and its settings.
#[derive(Debug, Clone)]
pub struct VendorOptions {
    pub vendor: Vendor,
    /// Runway's `X-Runway-Version` (default `2024-11-06`).
    pub api_version: Option<String>,
    /// ComfyUI: the workflow in API format, with `"{{prompt}}"`-style placeholders.
    pub workflow: Option<serde_json::Value>,
    /// Extra fields merged into every request's model input (e.g. `aspect_ratio`).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// KIE: where base64 images are uploaded (its file upload API).
    pub upload_url: Option<String>,
    /// Where the vendor sends its completion webhook (fal, Replicate, KIE).
    pub webhook: Option<WebhookOptions>,
    /// How long a run waits on a task it submitted, polling while it holds its
    /// worker slot, before it parks the job (no slot held; it looks at the task
    /// again after the job's poll interval, or with a webhook after the webhook's
    /// `fallback_poll` unless the webhook wakes it first). Zero: parks at once.
    pub wait_in_slot: std::time::Duration,
    /// The longest a task is waited on, from its submit; then the job times out.
    pub max_task_wait: std::time::Duration,
}

impl VendorOptions {
    pub fn new(vendor: Vendor) -> Self {
        Self {
            vendor,
            api_version: None,
            workflow: None,
            params: serde_json::Map::new(),
            upload_url: None,
            webhook: None,
            wait_in_slot: std::time::Duration::from_secs(5),
            max_task_wait: std::time::Duration::from_secs(3600),
        }
    }
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

/// A provider's webhook settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOptions {
    /// The callback URL passed to the vendor on submit (served by genq's admin:
    /// `https://<host>/webhooks/<provider name>`).
    pub url: String,
    /// Replicate: the `whsec_…` signing secret; KIE: the webhook HMAC key.
    pub secret: Option<String>,
    /// fal: where its public keys are (default `crate::webhooks::FAL_JWKS_URL`).
    pub jwks_url: Option<String>,
    /// How often a parked job still polls, in case a webhook never comes.
    pub fallback_poll: std::time::Duration,
}
