use genq_core::RegistryError;

/// What can go wrong talking to the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("invalid job: {0}")]
    InvalidJob(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Queue(#[from] RegistryError),
    #[error("job {id} not found in queue '{queue}'")]
    NotFound { queue: String, id: String },
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}
