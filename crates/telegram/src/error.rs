//! What can go wrong in the bot.

use teloxide::RequestError;

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("queue: {0}")]
    Queue(#[from] genq_redis::QueueError),
    #[error("pipelines: {0}")]
    Pipeline(#[from] genq_pipeline::PipelineError),
    #[error("store: {0}")]
    Store(#[from] genq_store::StoreError),
    #[error("Telegram: {0}")]
    Telegram(#[from] RequestError),
    #[error("Telegram file download: {0}")]
    Download(#[from] teloxide::DownloadError),
    #[error("artifacts: {0}")]
    Artifacts(#[from] genq_artifacts::ArtifactError),
    #[error("limits: {0}")]
    Limits(#[from] crate::orders::limits::LimitError),
    #[error("chat state: {0}")]
    State(#[from] crate::conversation::chat_state::StateError),
    #[error("could not encode: {0}")]
    Encode(String),
    #[error("job type {0} is not configured (no provider for it)")]
    NotConfigured(&'static str),
    #[error("{0}")]
    Setup(String),
}
