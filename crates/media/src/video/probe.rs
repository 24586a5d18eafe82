//! Reading a video's duration, size and codec with ffprobe.

use std::path::Path;

use serde::Deserialize;

use super::VideoInfo;
use super::tool::{Args, FFPROBE, run, stderr_tail};
use crate::MediaError;

/// ffprobe accepts the file (JSON output); its duration, size, video codec.
///
/// Fails with [`MediaError::Io`] when the file cannot be read, [`MediaError::Decode`]
/// when ffprobe rejects it, and [`MediaError::Unsupported`] when it has no video
/// stream or no duration (a still image, an audio file).
pub async fn probe_video(path: &Path) -> Result<VideoInfo, MediaError> {
    probe(path).await.map(|probe| probe.info)
}

/// What ffprobe says about any media file (audio, video or both): its duration,
/// how many real video and audio streams it has, and the first video stream's size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MediaInfo {
    /// Container duration (or the first stream's that has one).
    pub duration_secs: f64,
    /// Video streams, not counting an audio file's cover art.
    pub video_streams: usize,
    pub audio_streams: usize,
    /// The first video stream's size, when there is one.
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// ffprobe accepts the file; its duration and streams. Fails like
/// [`probe_video`], and with [`MediaError::Unsupported`] when it has no duration.
pub async fn probe_media(path: &Path) -> Result<MediaInfo, MediaError> {
    let json = ffprobe_json(path).await?;
    parse_media(&json, path)
}

/// Reads ffprobe's JSON output for `path` as a [`MediaInfo`].
fn parse_media(json: &[u8], path: &Path) -> Result<MediaInfo, MediaError> {
    let probe = read_json(json, path)?;
    let video = probe.streams.iter().find(|s| s.is_video());
    let duration_secs = probe
        .format
        .as_ref()
        .and_then(|f| seconds(f.duration.as_deref()))
        .or_else(|| {
            probe
                .streams
                .iter()
                .find_map(|s| seconds(s.duration.as_deref()))
        })
        .ok_or_else(|| MediaError::Unsupported(format!("{}: no duration", path.display())))?;
    Ok(MediaInfo {
        duration_secs,
        video_streams: probe.streams.iter().filter(|s| s.is_video()).count(),
        audio_streams: probe.streams.iter().filter(|s| s.is_audio()).count(),
        width: video.and_then(|v| v.width),
        height: video.and_then(|v| v.height),
    })
}

/// A probed video: its [`VideoInfo`] and whether it has an audio track.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Probe {
    pub info: VideoInfo,
    pub has_audio: bool,
}

/// Runs ffprobe on `path` and reads its answer.
pub(crate) async fn probe(path: &Path) -> Result<Probe, MediaError> {
    let json = ffprobe_json(path).await?;
    parse(&json, path)
}

/// ffprobe's JSON description of `path` (format and streams).
async fn ffprobe_json(path: &Path) -> Result<Vec<u8>, MediaError> {
    tokio::fs::metadata(path)
        .await
        .map_err(|e| MediaError::io_at(path, e))?;
    let output = run(
        FFPROBE,
        Args::default()
            .strs(&["-v", "error", "-print_format", "json"])
            .strs(&["-show_format", "-show_streams"])
            .arg(path)
            .as_slice(),
    )
    .await?;
    if !output.status.success() {
        return Err(MediaError::Decode(format!(
            "ffprobe cannot read {}: {}",
            path.display(),
            stderr_tail(&output.stderr)
        )));
    }
    Ok(output.stdout)
}

/// ffprobe's JSON, the parts used here.
#[derive(Debug, Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
}

#[derive(Debug, Deserialize)]
struct StreamJson {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration: Option<String>,
    disposition: Option<DispositionJson>,
}

#[derive(Debug, Deserialize)]
struct DispositionJson {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Debug, Deserialize)]
struct FormatJson {
    duration: Option<String>,
}

impl StreamJson {
    /// A real video stream: not the cover art of an audio file.
    fn is_video(&self) -> bool {
        self.codec_type.as_deref() == Some("video")
            && self
                .disposition
                .as_ref()
                .is_none_or(|d| d.attached_pic == 0)
    }

    fn is_audio(&self) -> bool {
        self.codec_type.as_deref() == Some("audio")
    }
}

/// Reads ffprobe's JSON output for `path`.
fn parse(json: &[u8], path: &Path) -> Result<Probe, MediaError> {
    let probe = read_json(json, path)?;
    let unsupported = |what: &str| MediaError::Unsupported(format!("{}: {what}", path.display()));
    let video = probe
        .streams
        .iter()
        .find(|s| s.is_video())
        .ok_or_else(|| unsupported("no video stream"))?;
    let (Some(width), Some(height)) = (video.width, video.height) else {
        return Err(unsupported("the video stream has no width or height"));
    };
    let duration_secs = probe
        .format
        .as_ref()
        .and_then(|f| seconds(f.duration.as_deref()))
        .or_else(|| seconds(video.duration.as_deref()))
        .ok_or_else(|| unsupported("no duration (a still image or a broken file?)"))?;
    Ok(Probe {
        info: VideoInfo {
            duration_secs,
            width,
            height,
            codec: video
                .codec_name
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
        },
        has_audio: probe.streams.iter().any(StreamJson::is_audio),
    })
}

/// ffprobe's JSON, decoded.
fn read_json(json: &[u8], path: &Path) -> Result<ProbeJson, MediaError> {
    serde_json::from_slice(json).map_err(|e| {
        MediaError::Ffmpeg(format!(
            "ffprobe printed unreadable JSON for {}: {e}",
            path.display()
        ))
    })
}

/// A positive, finite duration from ffprobe's text ("2.000000"; "N/A" is none).
fn seconds(text: Option<&str>) -> Option<f64> {
    let value: f64 = text?.parse().ok()?;
    (value.is_finite() && value > 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
        "streams": [
            {"index": 0, "codec_name": "mjpeg", "codec_type": "video", "width": 300, "height": 300,
             "disposition": {"default": 0, "attached_pic": 1}},
            {"index": 1, "codec_name": "h264", "codec_type": "video", "width": 640, "height": 480,
             "duration": "2.000000", "disposition": {"default": 1, "attached_pic": 0}},
            {"index": 2, "codec_name": "aac", "codec_type": "audio", "duration": "2.01"}
        ],
        "format": {"filename": "a.mp4", "duration": "2.023000"}
    }"#;

    #[test]
    fn reads_the_first_real_video_stream_and_the_container_duration() {
        let probe = parse(SAMPLE.as_bytes(), Path::new("a.mp4")).unwrap();
        assert_eq!(
            probe.info,
            VideoInfo {
                duration_secs: 2.023,
                width: 640,
                height: 480,
                codec: "h264".into()
            }
        );
        assert!(probe.has_audio);
    }

    #[test]
    fn media_info_counts_streams() {
        let info = parse_media(SAMPLE.as_bytes(), Path::new("a.mp4")).unwrap();
        assert_eq!(info.video_streams, 1, "cover art is not a video stream");
        assert_eq!(info.audio_streams, 1);
        assert_eq!((info.width, info.height), (Some(640), Some(480)));
        let json = r#"{"streams": [{"codec_type": "audio", "duration": "3.5"}], "format": {}}"#;
        let info = parse_media(json.as_bytes(), Path::new("a.wav")).unwrap();
        assert_eq!(info.duration_secs, 3.5);
        assert_eq!((info.video_streams, info.audio_streams), (0, 1));
    }

    #[test]
    fn an_audio_file_is_unsupported() {
        let json = r#"{"streams": [{"codec_type": "audio", "codec_name": "mp3"}],
                       "format": {"duration": "3.0"}}"#;
        let error = parse(json.as_bytes(), Path::new("song.mp3")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unsupported input: song.mp3: no video stream"
        );
    }

    #[test]
    fn a_still_image_has_no_duration() {
        let json = r#"{"streams": [{"codec_type": "video", "codec_name": "png", "width": 4,
                        "height": 4}], "format": {"duration": "N/A"}}"#;
        let error = parse(json.as_bytes(), Path::new("a.png")).unwrap_err();
        assert!(matches!(error, MediaError::Unsupported(_)), "{error}");
        assert!(error.to_string().contains("no duration"), "{error}");
    }
}
