//! Fitting a voice-over to a video's length: a tempo change within sane bounds,
//! else silence after short speech, or faster speech cut with a fade.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::info;

use super::files::remove_quietly;
use super::probe::probe_media;
use super::tool::{Args, run_ffmpeg};
use crate::MediaError;

/// The slowest tempo a voice is stretched to (speech sounds dragged below this).
pub const MIN_TEMPO: f64 = 0.85;
/// The fastest tempo a voice is sped up to (speech sounds hurried above this).
pub const MAX_TEMPO: f64 = 1.25;
/// The fade-out over the cut when speech is too long even at [`MAX_TEMPO`].
pub const CUT_FADE_SECS: f64 = 0.5;
/// The longest target accepted.
pub const MAX_AUDIO_SECS: f64 = 3600.0;
/// AAC bitrate of the fitted track.
const AUDIO_KBPS: &str = "128k";

/// How a voice was fitted to its target length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AudioPlan {
    /// Played at `tempo` (in [`MIN_TEMPO`], [`MAX_TEMPO`]).
    Tempo { tempo: f64 },
    /// Short speech: `silence_secs` of silence appended.
    Pad { silence_secs: f64 },
    /// Long speech: sped up to [`MAX_TEMPO`], `cut_secs` cut at the end under a fade.
    SpeedAndCut { tempo: f64, cut_secs: f64 },
}

impl AudioPlan {
    /// The plan for speech of `speech_secs` to fill `target_secs`.
    pub fn for_lengths(speech_secs: f64, target_secs: f64) -> AudioPlan {
        let tempo = speech_secs / target_secs;
        if (MIN_TEMPO..=MAX_TEMPO).contains(&tempo) {
            AudioPlan::Tempo { tempo }
        } else if tempo < MIN_TEMPO {
            AudioPlan::Pad {
                silence_secs: target_secs - speech_secs,
            }
        } else {
            AudioPlan::SpeedAndCut {
                tempo: MAX_TEMPO,
                cut_secs: speech_secs / MAX_TEMPO - target_secs,
            }
        }
    }

    /// ffmpeg's audio filter for this plan, ending at exactly `target_secs`.
    fn filter(&self, target_secs: f64) -> String {
        let end = format!("apad,atrim=end={target_secs:.3},asetpts=PTS-STARTPTS");
        match self {
            AudioPlan::Tempo { tempo } => format!("atempo={tempo:.5},{end}"),
            AudioPlan::Pad { .. } => end,
            AudioPlan::SpeedAndCut { tempo, .. } => {
                let start = (target_secs - CUT_FADE_SECS).max(0.0);
                format!("atempo={tempo:.5},{end},afade=t=out:st={start:.3}:d={CUT_FADE_SECS}")
            }
        }
    }
}

impl std::fmt::Display for AudioPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AudioPlan::Tempo { tempo } => write!(f, "tempo x{tempo:.3}"),
            AudioPlan::Pad { silence_secs } => {
                write!(f, "padded with {silence_secs:.2} s of silence")
            }
            AudioPlan::SpeedAndCut { tempo, cut_secs } => write!(
                f,
                "tempo x{tempo:.2}, {cut_secs:.2} s cut with a {CUT_FADE_SECS} s fade"
            ),
        }
    }
}

/// A fitted track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedAudio {
    /// The input speech's length.
    pub speech_secs: f64,
    /// The output's length (ffprobe).
    pub duration_secs: f64,
    pub plan: AudioPlan,
}

/// Fits the speech in `input` (any format ffmpeg reads) to `target_secs` and writes
/// it to `out` as AAC in an MP4 (`.m4a`) container (replaced if it exists, deleted
/// when ffmpeg fails). See [`AudioPlan::for_lengths`] for how.
///
/// Fails with [`MediaError::Unsupported`] for a target out of (0, [`MAX_AUDIO_SECS`]]
/// or an input without an audio stream.
pub async fn fit_audio(
    input: &Path,
    target_secs: f64,
    out: &Path,
) -> Result<FittedAudio, MediaError> {
    if !(target_secs.is_finite() && target_secs > 0.0 && target_secs <= MAX_AUDIO_SECS) {
        return Err(MediaError::Unsupported(format!(
            "the target length {target_secs} s must be above 0 and at most {MAX_AUDIO_SECS} s"
        )));
    }
    let speech = probe_media(input).await?;
    if speech.audio_streams == 0 {
        return Err(MediaError::Unsupported(format!(
            "{}: no audio stream",
            input.display()
        )));
    }
    let plan = AudioPlan::for_lengths(speech.duration_secs, target_secs);
    let args = Args::default()
        .strs(&["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .strs(&["-map", "0:a:0", "-vn", "-sn", "-dn"])
        .strs(&["-af", &plan.filter(target_secs)])
        .strs(&["-t", &format!("{target_secs:.3}")])
        .strs(&["-c:a", "aac", "-b:a", AUDIO_KBPS, "-ar", "44100"])
        .strs(&["-movflags", "+faststart", "-f", "mp4"])
        .arg(out);
    let what = format!("fitting {} to {target_secs} s", input.display());
    if let Err(e) = run_ffmpeg(args.as_slice(), &what).await {
        remove_quietly(out).await;
        return Err(e);
    }
    let fitted = probe_media(out).await?;
    info!(
        speech = speech.duration_secs,
        target_secs,
        out = fitted.duration_secs,
        %plan,
        "voice fitted"
    );
    Ok(FittedAudio {
        speech_secs: speech.duration_secs,
        duration_secs: fitted.duration_secs,
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_tempo_bounds() {
        assert_eq!(
            AudioPlan::for_lengths(50.0, 50.0),
            AudioPlan::Tempo { tempo: 1.0 }
        );
        assert_eq!(
            AudioPlan::for_lengths(60.0, 50.0),
            AudioPlan::Tempo { tempo: 1.2 }
        );
        assert_eq!(
            AudioPlan::for_lengths(30.0, 50.0),
            AudioPlan::Pad { silence_secs: 20.0 }
        );
        match AudioPlan::for_lengths(75.0, 50.0) {
            AudioPlan::SpeedAndCut { tempo, cut_secs } => {
                assert_eq!(tempo, MAX_TEMPO);
                assert!((cut_secs - 10.0).abs() < 1e-9, "{cut_secs}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn filters_end_at_the_target() {
        let f = AudioPlan::Tempo { tempo: 0.9 }.filter(5.0);
        assert_eq!(
            f,
            "atempo=0.90000,apad,atrim=end=5.000,asetpts=PTS-STARTPTS"
        );
        let f = AudioPlan::SpeedAndCut {
            tempo: 1.25,
            cut_secs: 1.0,
        }
        .filter(5.0);
        assert!(f.ends_with("afade=t=out:st=4.500:d=0.5"), "{f}");
        assert_eq!(
            AudioPlan::Pad { silence_secs: 1.5 }.to_string(),
            "padded with 1.50 s of silence"
        );
    }
}
