//! Video: probing, fitting under an upload limit, concatenation. Everything here runs
//! the `ffmpeg`/`ffprobe` binaries found on `PATH`.

mod concat;
mod files;
mod fit;
mod probe;
mod tool;

pub use concat::concat_videos;
pub use fit::fit_video;
pub use probe::probe_video;

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
