//! Video: probing, fitting under an upload limit, concatenation, assembling clips
//! with a voice-over, fitting a voice to a length. Everything here runs
//! the `ffmpeg`/`ffprobe` binaries found on `PATH`.

mod assemble;
mod audio;
mod concat;
mod files;
mod fit;
mod probe;
mod tool;

pub use assemble::{MAX_CLIPS, VideoExpectation, assemble_clips, check_video};
pub use audio::{AudioPlan, CUT_FADE_SECS, FittedAudio, MAX_TEMPO, MIN_TEMPO, fit_audio};
pub use concat::concat_videos;
pub use fit::fit_video;
pub use probe::{MediaInfo, probe_media, probe_video};

use serde::{Deserialize, Serialize};

/// What ffprobe says about a video file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// Container duration (or the video stream's, when the container has none).
    pub duration_secs: f64,
    /// Coded width of the first video stream.
    pub width: u32,
    /// Coded height of the first video stream.
    pub height: u32,
    /// ffprobe's codec name of the first video stream: "h264", "hevc", "vp9", ...
    pub codec: String,
}
