//! genq's media operations for its job types: images (decode with limits, normalise
//! for Telegram, local upscale) and video (probe, fit under an upload limit, concat).
//!
//! CPU-heavy image work runs on tokio's blocking pool, so the public functions are
//! `async` and never stall the runtime; video work runs the `ffmpeg`/`ffprobe`
//! binaries (`apt-get install ffmpeg`) as child processes that are killed when the
//! calling future is dropped. Inputs are untrusted: formats are sniffed from the
//! bytes, and sizes are checked against [`ImageLimits`] before anything is decoded.
//! Every failure is a [`MediaError`] whose message names the problem;
//! [`MediaError::is_bad_input`] tells a job handler whether retrying could help.

mod blocking;
mod error;
mod picture;
mod video;

pub use error::MediaError;
pub use picture::{
    EncodedImage, ImageFormat, ImageLimits, TELEGRAM_FILE_LIMIT, TELEGRAM_PHOTO_LIMIT, decode,
    dimensions, normalize_for_telegram, upscale,
};
pub use video::{
    AudioPlan, CUT_FADE_SECS, FittedAudio, MAX_CLIPS, MAX_TEMPO, MIN_TEMPO, MediaInfo,
    VideoExpectation, VideoInfo, assemble_clips, check_video, concat_videos, fit_audio, fit_video,
    probe_media, probe_video,
};
