//! Running CPU-heavy work off the async runtime.

use crate::MediaError;

/// Runs `work` on tokio's blocking pool and returns its result. A panic inside
/// `work` becomes [`MediaError::Internal`] instead of unwinding into the caller.
pub(crate) async fn run_blocking<T, F>(what: &'static str, work: F) -> Result<T, MediaError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, MediaError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => Err(MediaError::Internal(format!(
            "{what} panicked: {}",
            panic_message(join.into_panic())
        ))),
        Err(join) => Err(MediaError::Internal(format!(
            "{what} was cancelled: {join}"
        ))),
    }
}

/// The text of a panic payload, when it has one.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}
