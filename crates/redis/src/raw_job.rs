//! [`RawJob`]: one leased job as the consumer fetches it and the backend hands it
//! to apalis.

use std::sync::Arc;

use genq_core::{JobContext, ProgressSink};
use tokio_util::sync::CancellationToken;

/// One leased job, as the backend hands it to apalis: the payload is still JSON
/// text, decoded by the job type's handler (so a bad payload is that job's
/// bad-input failure, not a backend error).
#[derive(Debug, Clone)]
pub struct RawJob {
    pub id: String,
    pub queue: String,
    pub job_type: String,
    pub payload: String,
    /// 1 on the first run.
    pub attempt: u32,
    pub enqueued_at_ms: Option<u64>,
    /// Cancelled when a user or operator cancels the job, or its lease is lost.
    pub cancel: CancellationToken,
}

impl RawJob {
    /// The context a genq handler gets for this run.
    pub fn context(&self, progress: Arc<dyn ProgressSink>) -> JobContext {
        JobContext::new(
            &self.id,
            &self.queue,
            &self.job_type,
            self.attempt,
            self.cancel.clone(),
        )
        .with_progress_sink(progress)
    }
}
