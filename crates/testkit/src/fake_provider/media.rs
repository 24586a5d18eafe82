//! The files the fake provider hands out: gradient PNGs (cached by size), a WAV
//! tone as long as its text, a short MP4 made once per process with ffmpeg; and decoding the
//! base64 images requests carry.

use std::{
    collections::HashMap,
    io::Cursor,
    sync::{LazyLock, Mutex},
};

use axum::body::Bytes;
use base64::{Engine, engine::general_purpose::STANDARD_PAD_INDIFFERENT};
use image::{
    ImageEncoder, RgbImage,
    codecs::png::{CompressionType, FilterType, PngEncoder},
};
use tokio::sync::OnceCell;

use super::lock;

/// The largest width or height the fake provider renders.
pub(crate) const MAX_SIDE: u32 = 4096;

/// What `GET /queue/files/{id}` answers with.
#[derive(Debug, Clone)]
pub(crate) struct FileData {
    pub bytes: Bytes,
    pub content_type: &'static str,
}

/// PNGs already rendered, by (width, height), shared by every fake provider of the process.
static PNGS: LazyLock<Mutex<HashMap<(u32, u32), Bytes>>> = LazyLock::new(Default::default);

/// The MP4, made once per process (a failure is not kept: the next task tries again).
static VIDEO: OnceCell<Bytes> = OnceCell::const_new();

/// A PNG of `width` × `height` showing a gradient; rendered once per size.
pub(crate) async fn png(width: u32, height: u32) -> Result<Bytes, String> {
    if let Some(bytes) = lock(&PNGS).get(&(width, height)) {
        return Ok(bytes.clone());
    }
    let bytes = tokio::task::spawn_blocking(move || render_png(width, height))
        .await
        .map_err(|e| format!("rendering the PNG failed: {e}"))??;
    lock(&PNGS).insert((width, height), bytes.clone());
    Ok(bytes)
}

/// Renders and encodes the gradient (fast compression: it is a test fixture).
fn render_png(width: u32, height: u32) -> Result<Bytes, String> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        let r = (u64::from(x) * 255 / u64::from(width.max(1))) as u8;
        let g = (u64::from(y) * 255 / u64::from(height.max(1))) as u8;
        image::Rgb([r, g, 160])
    });
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
        .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("encoding the PNG failed: {e}"))?;
    Ok(Bytes::from(out))
}

/// Words per second the fake's speech is "spoken" at.
pub(crate) const SPEECH_WORDS_PER_SEC: f64 = 2.5;
/// The longest speech the fake makes.
const MAX_SPEECH_SECS: f64 = 900.0;

/// `secs` (0.5 s at least) of a quiet 440 Hz tone, 16 kHz mono 16-bit PCM, as a WAV file.
pub(crate) fn wav(secs: f64) -> Bytes {
    const RATE: u32 = 16_000;
    let secs = if secs.is_finite() {
        secs.clamp(0.5, MAX_SPEECH_SECS)
    } else {
        0.5
    };
    let samples = (secs * f64::from(RATE)).round() as u32;
    let data_len: u32 = samples * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let t = f64::from(i) / f64::from(RATE);
        let sample = ((t * 440.0 * std::f64::consts::TAU).sin() * 3000.0) as i16;
        out.extend_from_slice(&sample.to_le_bytes());
    }
    Bytes::from(out)
}

/// A 1 s 320×240 test-pattern MP4, made with ffmpeg the first time it is asked for.
pub(crate) async fn video() -> Result<Bytes, String> {
    VIDEO.get_or_try_init(make_video).await.cloned()
}

async fn make_video() -> Result<Bytes, String> {
    let dir = std::env::temp_dir().join(format!(
        "genq-fake-provider-{}-{}",
        std::process::id(),
        ulid::Ulid::new()
    ));
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let out = dir.join("out.mp4");
    let result = tokio::process::Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc=duration=1:size=320x240:rate=10")
        .args(["-pix_fmt", "yuv420p"])
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let bytes = match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("ffmpeg not installed on the fake provider".to_owned())
        }
        Err(e) => Err(format!("running ffmpeg failed: {e}")),
        Ok(o) if !o.status.success() => Err(format!(
            "ffmpeg failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => tokio::fs::read(&out)
            .await
            .map(Bytes::from)
            .map_err(|e| format!("reading ffmpeg's output: {e}")),
    };
    let _ = tokio::fs::remove_dir_all(&dir).await;
    if bytes.is_ok() {
        tracing::info!("fake provider: made the test MP4 with ffmpeg");
    }
    bytes
}

/// Decodes the base64 image in field `field` (blocking: call off the async threads);
/// its width and height.
pub(crate) fn decode_image(field: &str, b64: &str) -> Result<(u32, u32), String> {
    let bytes = STANDARD_PAD_INDIFFERENT
        .decode(b64.trim())
        .map_err(|e| format!("`{field}` is not valid base64: {e}"))?;
    let img = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("`{field}`: {e}"))?
        .decode()
        .map_err(|e| format!("`{field}` is not a decodable image: {e}"))?;
    Ok((img.width(), img.height()))
}
