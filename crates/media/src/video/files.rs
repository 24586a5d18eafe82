//! Small file-system helpers for the video operations.

use std::path::Path;

use tracing::warn;

use crate::MediaError;

/// The size of the file at `path`.
pub(crate) async fn file_len(path: &Path) -> Result<u64, MediaError> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|e| MediaError::io_at(path, e))?;
    Ok(metadata.len())
}

/// Deletes a temporary or partial output; failing to is only worth a warning.
pub(crate) async fn remove_quietly(path: &Path) {
    if let Err(error) = tokio::fs::remove_file(path).await
        && error.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), %error, "cannot remove a temporary or partial file");
    }
}
