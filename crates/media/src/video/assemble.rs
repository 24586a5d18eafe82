//! Assembling clips into one video with a voice-over, and checking the result.

use std::path::{Path, PathBuf};

use tracing::info;

use super::files::{file_len, remove_quietly};
use super::probe::{MediaInfo, probe, probe_media};
use super::tool::{Args, run_ffmpeg};
use crate::MediaError;

/// Frames per second of an assembled video.
const FPS: u32 = 25;
/// Clips assembled at most.
pub const MAX_CLIPS: usize = 200;
/// The longest segment accepted.
pub const MAX_SEGMENT_SECS: f64 = 120.0;
/// AAC bitrate of the assembled video's audio.
const AUDIO_KBPS: &str = "128k";

/// Assembles `clips` in order into `out` (H.264 + AAC MP4): each clip made exactly
/// `segment_secs` long (its last frame held with `tpad`, or cut), scaled to the
/// first clip's size (aspect kept, letterboxed), at a constant frame rate; `audio`
/// is the only audio track, padded with silence or cut to the video's length. The
/// clips' own audio is dropped. `out` is replaced if it exists and deleted when
/// ffmpeg fails. Returns what ffprobe says about the result.
pub async fn assemble_clips(
    clips: &[PathBuf],
    audio: &Path,
    segment_secs: f64,
    out: &Path,
) -> Result<MediaInfo, MediaError> {
    check_inputs(clips, audio, segment_secs, out)?;
    let first = clips
        .first()
        .ok_or_else(|| MediaError::Unsupported("no clips to assemble".to_owned()))?;
    let size = probe(first).await?.info;
    let (width, height) = (even(size.width), even(size.height));
    for clip in &clips[1..] {
        probe(clip).await?;
    }
    let audio_info = probe_media(audio).await?;
    if audio_info.audio_streams == 0 {
        return Err(MediaError::Unsupported(format!(
            "{}: no audio stream",
            audio.display()
        )));
    }
    let total = segment_secs * clips.len() as f64;
    let args = assemble_args(clips, audio, segment_secs, (width, height), out);
    let what = format!("assembling {} clips into {}", clips.len(), out.display());
    if let Err(e) = run_ffmpeg(args.as_slice(), &what).await {
        remove_quietly(out).await;
        return Err(e);
    }
    let made = probe_media(out).await?;
    info!(clips = clips.len(), total, duration = made.duration_secs, width, height, out = %out.display(), "assembled");
    Ok(made)
}

/// Refuses no clips, too many, a bad segment length, and an output that is an input.
fn check_inputs(
    clips: &[PathBuf],
    audio: &Path,
    segment_secs: f64,
    out: &Path,
) -> Result<(), MediaError> {
    if clips.is_empty() || clips.len() > MAX_CLIPS {
        return Err(MediaError::Unsupported(format!(
            "{} clips: 1-{MAX_CLIPS} can be assembled",
            clips.len()
        )));
    }
    if !(segment_secs.is_finite() && segment_secs > 0.0 && segment_secs <= MAX_SEGMENT_SECS) {
        return Err(MediaError::Unsupported(format!(
            "a segment of {segment_secs} s: it must be above 0 and at most {MAX_SEGMENT_SECS} s"
        )));
    }
    if clips.iter().any(|c| c == out) || audio == out {
        return Err(MediaError::Unsupported(format!(
            "the output {} is also one of the inputs",
            out.display()
        )));
    }
    Ok(())
}

/// `n` rounded down to an even number (libx264 with yuv420p needs even sides), at least 2.
fn even(n: u32) -> u32 {
    (n / 2 * 2).max(2)
}

/// The filter graph: each clip normalised to `size`, FPS and `secs`, then
/// concatenated; the audio padded/cut to the total.
fn filter_graph(clips: usize, secs: f64, (width, height): (u32, u32)) -> String {
    let mut graph = String::new();
    for i in 0..clips {
        graph.push_str(&format!(
            "[{i}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease,\
             pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={FPS},format=yuv420p,\
             tpad=stop_mode=clone:stop_duration={secs:.3},trim=duration={secs:.3},\
             setpts=PTS-STARTPTS[v{i}];"
        ));
    }
    for i in 0..clips {
        graph.push_str(&format!("[v{i}]"));
    }
    let total = secs * clips as f64;
    graph.push_str(&format!(
        "concat=n={clips}:v=1:a=0[v];[{clips}:a:0]apad,atrim=end={total:.3},asetpts=PTS-STARTPTS[a]"
    ));
    graph
}

/// ffmpeg's arguments for [`assemble_clips`].
fn assemble_args(clips: &[PathBuf], audio: &Path, secs: f64, size: (u32, u32), out: &Path) -> Args {
    let mut args = Args::default().strs(&["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]);
    for clip in clips {
        args = args.strs(&["-i"]).arg(clip);
    }
    let total = secs * clips.len() as f64;
    args.strs(&["-i"])
        .arg(audio)
        .strs(&["-filter_complex", &filter_graph(clips.len(), secs, size)])
        .strs(&["-map", "[v]", "-map", "[a]"])
        .strs(&["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"])
        .strs(&["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", AUDIO_KBPS])
        .strs(&["-t", &format!("{total:.3}")])
        .strs(&["-sn", "-dn", "-movflags", "+faststart", "-f", "mp4"])
        .arg(out)
}

/// What an assembled video must be.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoExpectation {
    pub duration_secs: f64,
    /// How far the duration may be off.
    pub tolerance_secs: f64,
    pub video_streams: usize,
    pub audio_streams: usize,
    /// The file must be under this size.
    pub max_bytes: u64,
}

/// Checks `path` with ffprobe against `expected`; [`MediaError::Unsupported`]
/// naming every way it is off.
pub async fn check_video(
    path: &Path,
    expected: &VideoExpectation,
) -> Result<MediaInfo, MediaError> {
    let info = probe_media(path).await?;
    let bytes = file_len(path).await?;
    let problems = expectation_problems(&info, bytes, expected);
    if problems.is_empty() {
        Ok(info)
    } else {
        Err(MediaError::Unsupported(format!(
            "{}: {}",
            path.display(),
            problems.join("; ")
        )))
    }
}

fn expectation_problems(info: &MediaInfo, bytes: u64, e: &VideoExpectation) -> Vec<String> {
    let mut problems = Vec::new();
    if (info.duration_secs - e.duration_secs).abs() > e.tolerance_secs {
        problems.push(format!(
            "it is {:.2} s long, not {:.2} ± {} s",
            info.duration_secs, e.duration_secs, e.tolerance_secs
        ));
    }
    if info.video_streams != e.video_streams {
        problems.push(format!(
            "it has {} video streams, not {}",
            info.video_streams, e.video_streams
        ));
    }
    if info.audio_streams != e.audio_streams {
        problems.push(format!(
            "it has {} audio streams, not {}",
            info.audio_streams, e.audio_streams
        ));
    }
    if bytes >= e.max_bytes {
        problems.push(format!(
            "it is {bytes} bytes, not under {} bytes",
            e.max_bytes
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_normalises_every_clip_and_the_audio() {
        let g = filter_graph(2, 5.0, (320, 240));
        assert!(g.starts_with("[0:v:0]scale=320:240:"), "{g}");
        assert!(g.contains("tpad=stop_mode=clone:stop_duration=5.000,trim=duration=5.000"));
        assert!(g.contains("[v0][v1]concat=n=2:v=1:a=0[v]"), "{g}");
        assert!(
            g.ends_with("[2:a:0]apad,atrim=end=10.000,asetpts=PTS-STARTPTS[a]"),
            "{g}"
        );
        assert_eq!(even(321), 320);
        assert_eq!(even(1), 2);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let out = Path::new("/tmp/o.mp4");
        let a = Path::new("/tmp/a.m4a");
        assert!(check_inputs(&[], a, 5.0, out).is_err());
        let clips = vec![PathBuf::from("/tmp/c.mp4")];
        assert!(check_inputs(&clips, a, 0.0, out).is_err());
        assert!(check_inputs(&clips, out, 5.0, out).is_err());
        assert!(check_inputs(&clips, a, 5.0, out).is_ok());
    }

    #[test]
    fn expectations_name_each_problem() {
        let info = MediaInfo {
            duration_secs: 48.0,
            video_streams: 1,
            audio_streams: 0,
            width: Some(2),
            height: Some(2),
        };
        let e = VideoExpectation {
            duration_secs: 50.0,
            tolerance_secs: 1.0,
            video_streams: 1,
            audio_streams: 1,
            max_bytes: 100,
        };
        let p = expectation_problems(&info, 100, &e);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("48.00 s long"), "{p:?}");
    }
}
