//! The one error type of this crate.

use std::path::Path;

/// What went wrong in a media operation. Every message names the problem (the
/// sizes, the limit, the file, or what ffmpeg said), so it can go to a log or, for
/// the input-side variants, to the user as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The input is not a format or shape this crate handles (not PNG/JPEG/WebP,
    /// no video stream, an upscale factor other than 2 or 4, ...).
    #[error("unsupported input: {0}")]
    Unsupported(String),
    /// The input, or the output an operation would make, is over a limit, or the
    /// output cannot be brought under the requested size.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The bytes claim a supported format but cannot be decoded (truncated, corrupt).
    #[error("cannot decode: {0}")]
    Decode(String),
    /// Encoding the result failed.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// ffmpeg or ffprobe is missing, failed, or produced something unusable.
    #[error("ffmpeg: {0}")]
    Ffmpeg(String),
    /// A file could not be read, written or removed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A blocking worker task panicked or was cancelled (a bug, not bad input).
    #[error("internal: {0}")]
    Internal(String),
}

impl MediaError {
    /// True when the input itself is at fault (unsupported, too large, undecodable):
    /// running the same operation again on the same input will fail the same way.
    /// Job handlers map these to a "bad input" failure that is never retried.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            MediaError::Unsupported(_) | MediaError::TooLarge(_) | MediaError::Decode(_)
        )
    }

    /// An [`MediaError::Io`] whose message names `path`, keeping the error kind.
    pub(crate) fn io_at(path: &Path, error: std::io::Error) -> Self {
        MediaError::Io(std::io::Error::new(
            error.kind(),
            format!("{}: {error}", path.display()),
        ))
    }
}
