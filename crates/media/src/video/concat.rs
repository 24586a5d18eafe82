//! Joining video segments with ffmpeg's concat demuxer.

use std::path::{Path, PathBuf};

use tracing::info;

use super::files::remove_quietly;
use super::probe::{Probe, probe};
use super::tool::{Args, run_ffmpeg};
use crate::MediaError;

/// AAC bitrate (kbit/s) of the audio when an audio track is mixed in.
const MIXED_AUDIO_KBPS: &str = "128k";

/// Concatenates MP4 segments (same codec) with ffmpeg's concat demuxer, optionally
/// mixing in an audio track, into `out`.
///
/// The video is stream-copied, so the segments must share codec and size (checked
/// with ffprobe first, with an error naming the odd segment) and all have an audio
/// track or all have none. With `audio`, the track is re-encoded to AAC and padded
/// with silence or cut to the video's length; when the segments have their own
/// audio, the two are mixed, otherwise the track becomes the audio. `out` is
/// replaced if it exists and deleted when ffmpeg fails.
pub async fn concat_videos(
    segments: &[PathBuf],
    audio: Option<&Path>,
    out: &Path,
) -> Result<(), MediaError> {
    check_paths(segments, audio, out)?;
    let probes = probe_all(segments).await?;
    check_compatible(segments, &probes)?;
    if let Some(audio) = audio {
        tokio::fs::metadata(audio)
            .await
            .map_err(|e| MediaError::io_at(audio, e))?;
    }
    let segments_have_audio = probes.iter().all(|p| p.has_audio);
    let list = list_path(out);
    write_list(&list, segments).await?;
    let args = concat_args(&list, audio, segments_have_audio, out);
    let what = format!(
        "concatenating {} segments into {}",
        segments.len(),
        out.display()
    );
    let result = run_ffmpeg(args.as_slice(), &what).await;
    remove_quietly(&list).await;
    if result.is_err() {
        remove_quietly(out).await;
    }
    result?;
    let duration: f64 = probes.iter().map(|p| p.info.duration_secs).sum();
    info!(segments = segments.len(), duration, out = %out.display(), "concatenated");
    Ok(())
}

/// Refuses an empty list, an output that is also an input, and paths the concat
/// list cannot carry.
fn check_paths(segments: &[PathBuf], audio: Option<&Path>, out: &Path) -> Result<(), MediaError> {
    if segments.is_empty() {
        return Err(MediaError::Unsupported(
            "no segments to concatenate".to_owned(),
        ));
    }
    if segments.iter().any(|s| s == out) || audio == Some(out) {
        return Err(MediaError::Unsupported(format!(
            "the output {} is also one of the inputs",
            out.display()
        )));
    }
    if let Some(bad) = segments
        .iter()
        .find(|s| s.to_string_lossy().contains(['\n', '\r']))
    {
        return Err(MediaError::Unsupported(format!(
            "segment path {bad:?} contains a line break, which a concat list cannot hold"
        )));
    }
    Ok(())
}

/// Probes every segment, in order.
async fn probe_all(segments: &[PathBuf]) -> Result<Vec<Probe>, MediaError> {
    let mut probes = Vec::with_capacity(segments.len());
    for segment in segments {
        probes.push(probe(segment).await?);
    }
    Ok(probes)
}

/// Stream copy needs every segment to match the first in codec, size and having audio.
fn check_compatible(segments: &[PathBuf], probes: &[Probe]) -> Result<(), MediaError> {
    let (Some(first), Some(first_path)) = (probes.first(), segments.first()) else {
        return Ok(());
    };
    let describe = |p: &Probe| {
        let audio = if p.has_audio { "with" } else { "without" };
        format!(
            "{} {}x{} {audio} audio",
            p.info.codec, p.info.width, p.info.height
        )
    };
    for (index, (probe, path)) in probes.iter().zip(segments).enumerate().skip(1) {
        let same = probe.info.codec == first.info.codec
            && (probe.info.width, probe.info.height) == (first.info.width, first.info.height)
            && probe.has_audio == first.has_audio;
        if !same {
            return Err(MediaError::Unsupported(format!(
                "segment {} ({}) is {} but segment 1 ({}) is {}: concatenation needs \
                 the same codec, size and audio in every segment",
                index + 1,
                path.display(),
                describe(probe),
                first_path.display(),
                describe(first)
            )));
        }
    }
    Ok(())
}

/// The concat list's path: next to `out`, named after it.
fn list_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".concat.txt");
    out.with_file_name(name)
}

/// Writes the concat demuxer's list: one `file '<absolute path>'` line a segment.
async fn write_list(list: &Path, segments: &[PathBuf]) -> Result<(), MediaError> {
    let mut text = String::from("ffconcat version 1.0\n");
    for segment in segments {
        let absolute = std::path::absolute(segment).map_err(|e| MediaError::io_at(segment, e))?;
        text.push_str(&format!("file {}\n", quote(&absolute.to_string_lossy())));
    }
    tokio::fs::write(list, text)
        .await
        .map_err(|e| MediaError::io_at(list, e))
}

/// A path quoted for a concat list: in single quotes, each `'` written as `'\''`.
fn quote(path: &str) -> String {
    format!("'{}'", path.replace('\'', r"'\''"))
}

/// ffmpeg's arguments: copy the video; the audio as the options say.
fn concat_args(list: &Path, audio: Option<&Path>, segments_have_audio: bool, out: &Path) -> Args {
    let mut args = Args::default()
        .strs(&["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .strs(&["-f", "concat", "-safe", "0", "-i"])
        .arg(list);
    args = match (audio, segments_have_audio) {
        (None, _) => args.strs(&["-map", "0:v", "-map", "0:a?", "-c", "copy"]),
        (Some(track), true) => args.strs(&["-i"]).arg(track).strs(&[
            "-filter_complex",
            "[0:a][1:a:0]amix=inputs=2:duration=first:dropout_transition=0[mix]",
            "-map",
            "0:v:0",
            "-map",
            "[mix]",
        ]),
        (Some(track), false) => args.strs(&["-i"]).arg(track).strs(&[
            "-filter_complex",
            "[1:a:0]apad[pad]",
            "-map",
            "0:v:0",
            "-map",
            "[pad]",
            "-shortest",
        ]),
    };
    if audio.is_some() {
        args = args.strs(&["-c:v", "copy", "-c:a", "aac", "-b:a", MIXED_AUDIO_KBPS]);
    }
    args.strs(&["-movflags", "+faststart"]).arg(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_survive_the_concat_list() {
        assert_eq!(quote("/tmp/a.mp4"), "'/tmp/a.mp4'");
        assert_eq!(quote("/tmp/it's.mp4"), r"'/tmp/it'\''s.mp4'");
    }

    #[test]
    fn the_list_sits_next_to_the_output() {
        assert_eq!(
            list_path(Path::new("/tmp/x/out.mp4")),
            Path::new("/tmp/x/out.mp4.concat.txt")
        );
    }

    #[test]
    fn bad_path_sets_are_refused() {
        let out = Path::new("/tmp/out.mp4");
        let error = check_paths(&[], None, out).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unsupported input: no segments to concatenate"
        );
        let error = check_paths(&[out.to_path_buf()], None, out).unwrap_err();
        assert!(
            error.to_string().contains("also one of the inputs"),
            "{error}"
        );
    }
}
