//! Re-encoding a video so it fits an upload limit.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use tracing::info;

use super::files::{file_len, remove_quietly};
use super::probe::{Probe, probe};
use super::tool::{Args, run_ffmpeg};
use crate::MediaError;

/// Re-encodes at most this many times, each time at a lower bitrate, before giving up.
const MAX_ATTEMPTS: u32 = 3;
/// Share of the byte budget given to the encoder's bitrate: x264's rate control
/// overshoots a little, and the container adds its own bytes.
const RATE_SHARE: f64 = 0.92;
/// Container bytes reserved up front, plus [`CONTAINER_BYTES_PER_SEC`] per second.
const CONTAINER_BYTES: u64 = 2 * 1024;
const CONTAINER_BYTES_PER_SEC: f64 = 1024.0;
/// Below this video bitrate (kbit/s) the result would be unwatchable: refuse instead.
const MIN_VIDEO_KBPS: u64 = 48;
/// AAC bitrate (kbit/s), and the lower one used when the whole budget is tight.
const AUDIO_KBPS: u64 = 64;
const AUDIO_KBPS_TIGHT: u64 = 32;
/// Below this total bitrate (kbit/s) the audio gets [`AUDIO_KBPS_TIGHT`].
const TIGHT_TOTAL_KBPS: u64 = 256;
/// Each retry aims this far below what the previous attempt's overshoot suggests.
const RETRY_MARGIN: f64 = 0.9;

/// Re-encodes with ffmpeg (libx264, computed bitrate from duration, AAC audio if
/// present) so the file is under `max_bytes`; returns the new path (never overwrites
/// the input in place; writes next to it). No-op copy-free return of the input path
/// when already under.
///
/// The output is `<stem>.fit.mp4` beside the input (replaced if it exists), H.264
/// yuv420p with `+faststart`, so Telegram can stream it. A low bitrate also lowers
/// the resolution (short side 360/480/720/1080 px). When even the minimum bitrate
/// cannot fit the duration, this fails with [`MediaError::TooLarge`] without running
/// ffmpeg; when ffmpeg's result overshoots, it retries at a lower bitrate (up to
/// three encodes).
pub async fn fit_video(path: &Path, max_bytes: u64) -> Result<PathBuf, MediaError> {
    let size = file_len(path).await?;
    if size <= max_bytes {
        return Ok(path.to_path_buf());
    }
    let probe = probe(path).await?;
    let out = fitted_path(path);
    let mut plan = Plan::new(&probe, max_bytes, path)?;
    let mut last_len = 0;
    for attempt in 1..=MAX_ATTEMPTS {
        if let Err(error) = encode(path, &out, &plan).await {
            remove_quietly(&out).await;
            return Err(error);
        }
        last_len = file_len(&out).await?;
        info!(path = %path.display(), attempt, size, last_len, max_bytes, ?plan, "re-encoded");
        if last_len <= max_bytes {
            return Ok(out);
        }
        plan.video_kbps = retry_kbps(plan.video_kbps, last_len, max_bytes);
        if plan.video_kbps < MIN_VIDEO_KBPS {
            break;
        }
    }
    remove_quietly(&out).await;
    Err(MediaError::TooLarge(format!(
        "could not re-encode {} ({size} bytes, {:.1} s) under {max_bytes} bytes: \
         the last attempt was {last_len} bytes",
        path.display(),
        probe.info.duration_secs
    )))
}

/// Bitrates and size of one encode.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    video_kbps: u64,
    /// None: no audio track.
    audio_kbps: Option<u64>,
    /// New width and height, when the resolution must come down.
    scale: Option<(u32, u32)>,
}

impl Plan {
    /// The plan for fitting the probed video into `max_bytes`.
    fn new(probe: &Probe, max_bytes: u64, path: &Path) -> Result<Plan, MediaError> {
        let duration = probe.info.duration_secs;
        let total_kbps = total_kbps(max_bytes, duration);
        let audio_kbps = if total_kbps < TIGHT_TOTAL_KBPS {
            AUDIO_KBPS_TIGHT
        } else {
            AUDIO_KBPS
        };
        let audio_kbps = probe.has_audio.then_some(audio_kbps);
        let video_kbps = total_kbps.saturating_sub(audio_kbps.unwrap_or(0));
        if video_kbps < MIN_VIDEO_KBPS {
            return Err(MediaError::TooLarge(format!(
                "{} is {duration:.1} s long: under {max_bytes} bytes it would get \
                 {video_kbps} kbit/s of video, below the {MIN_VIDEO_KBPS} kbit/s minimum",
                path.display()
            )));
        }
        let scale = downscaled(probe.info.width, probe.info.height, video_kbps);
        Ok(Plan {
            video_kbps,
            audio_kbps,
            scale,
        })
    }
}

/// The total bitrate (kbit/s) that `max_bytes` allows for `duration` seconds.
fn total_kbps(max_bytes: u64, duration: f64) -> u64 {
    let overhead = CONTAINER_BYTES as f64 + CONTAINER_BYTES_PER_SEC * duration;
    let payload_bits = (max_bytes as f64 - overhead).max(0.0) * 8.0 * RATE_SHARE;
    // Saturating float-to-int cast of a non-negative value.
    (payload_bits / duration / 1000.0) as u64
}

/// The largest short side that `video_kbps` carries well.
fn short_side_cap(video_kbps: u64) -> u32 {
    match video_kbps {
        0..300 => 360,
        300..700 => 480,
        700..1500 => 720,
        _ => 1080,
    }
}

/// The new size when the short side is over the bitrate's cap; even sides, as
/// yuv420p needs.
fn downscaled(width: u32, height: u32, video_kbps: u64) -> Option<(u32, u32)> {
    let cap = short_side_cap(video_kbps);
    let short = width.min(height);
    if short <= cap {
        return None;
    }
    let factor = f64::from(cap) / f64::from(short);
    let even = |side: u32| {
        // Saturating float-to-int cast; at least 2 px.
        let side = (f64::from(side) * factor / 2.0).round() as u32 * 2;
        side.max(2)
    };
    Some((even(width), even(height)))
}

/// The video bitrate for the next attempt after one that came out at `len` bytes.
fn retry_kbps(video_kbps: u64, len: u64, max_bytes: u64) -> u64 {
    let ratio = max_bytes as f64 / len as f64 * RETRY_MARGIN;
    // Saturating float-to-int cast of a non-negative value.
    (video_kbps as f64 * ratio) as u64
}

/// `<stem>.fit.mp4` next to `path`.
fn fitted_path(path: &Path) -> PathBuf {
    let mut name = path.file_stem().map(OsString::from).unwrap_or_default();
    name.push(".fit.mp4");
    path.with_file_name(name)
}

/// Runs one ffmpeg encode of `input` into `out` following `plan`.
async fn encode(input: &Path, out: &Path, plan: &Plan) -> Result<(), MediaError> {
    let kbps = format!("{}k", plan.video_kbps);
    let mut args = Args::default()
        .strs(&["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .strs(&["-map", "0:v:0", "-c:v", "libx264", "-preset", "fast"])
        .strs(&["-b:v", &kbps, "-maxrate", &kbps, "-bufsize", &kbps])
        .strs(&["-pix_fmt", "yuv420p"]);
    if let Some((width, height)) = plan.scale {
        args = args.strs(&["-vf", &format!("scale={width}:{height}")]);
    }
    args = match plan.audio_kbps {
        Some(audio) => args
            .strs(&["-map", "0:a:0", "-c:a", "aac", "-ac", "2"])
            .strs(&["-b:a", &format!("{audio}k")]),
        None => args.strs(&["-an"]),
    };
    let args = args
        .strs(&["-sn", "-dn", "-movflags", "+faststart", "-f", "mp4"])
        .arg(out);
    let what = format!("re-encoding {} into {}", input.display(), out.display());
    run_ffmpeg(args.as_slice(), &what).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VideoInfo;

    fn probe(duration_secs: f64, width: u32, height: u32, has_audio: bool) -> Probe {
        Probe {
            info: VideoInfo {
                duration_secs,
                width,
                height,
                codec: "h264".into(),
            },
            has_audio,
        }
    }

    #[test]
    fn the_output_sits_next_to_the_input() {
        assert_eq!(
            fitted_path(Path::new("/tmp/x/clip.mp4")),
            Path::new("/tmp/x/clip.fit.mp4")
        );
        assert_eq!(
            fitted_path(Path::new("clip.fit.mp4")),
            Path::new("clip.fit.fit.mp4")
        );
    }

    #[test]
    fn a_small_budget_lowers_bitrate_audio_and_resolution() {
        let plan = Plan::new(&probe(10.0, 1920, 1080, true), 300 * 1024, Path::new("a")).unwrap();
        assert_eq!(plan.audio_kbps, Some(AUDIO_KBPS_TIGHT));
        assert!(
            plan.video_kbps > MIN_VIDEO_KBPS && plan.video_kbps < 300,
            "{plan:?}"
        );
        assert_eq!(plan.scale, Some((640, 360)));
    }

    #[test]
    fn a_large_budget_keeps_the_resolution() {
        let plan = Plan::new(&probe(60.0, 1280, 720, false), 50 << 20, Path::new("a")).unwrap();
        assert_eq!(plan.audio_kbps, None);
        assert!(plan.video_kbps > 6000, "{plan:?}");
        assert_eq!(plan.scale, None);
    }

    #[test]
    fn an_impossible_budget_is_refused_before_encoding() {
        let error = Plan::new(
            &probe(600.0, 640, 480, true),
            100 * 1024,
            Path::new("long.mp4"),
        )
        .unwrap_err();
        assert!(matches!(error, MediaError::TooLarge(_)), "{error}");
        assert!(
            error.to_string().contains("long.mp4 is 600.0 s long"),
            "{error}"
        );
    }

    #[test]
    fn retries_aim_below_the_overshoot() {
        assert_eq!(retry_kbps(1000, 200, 100), 450);
    }
}
