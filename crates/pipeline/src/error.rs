use genq_redis::QueueError;

/// What can go wrong driving or asking about pipelines.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("pipeline definition '{pipeline}': {problem}")]
    Definition { pipeline: String, problem: String },
    #[error("unknown pipeline type '{0}'")]
    UnknownType(String),
    #[error("no pipeline '{0}'")]
    UnknownPipeline(String),
    #[error("invalid pipeline input: {0}")]
    BadInput(String),
    #[error("pipeline {id} is corrupt: {problem}")]
    Corrupt { id: String, problem: String },
}
