//! genq-media on real files made here: images with the `image` crate, videos with
//! ffmpeg's test sources. The video tests are skipped (with a note on stderr) when
//! ffmpeg is not installed.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use genq_media::{
    AudioPlan, ImageFormat, ImageLimits, MAX_TEMPO, MediaError, VideoExpectation, VideoInfo,
    assemble_clips, check_video, concat_videos, decode, dimensions, fit_audio, fit_video,
    normalize_for_telegram, probe_media, probe_video, upscale,
};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, GrayImage, ImageBuffer, Rgb, RgbImage, Rgba, RgbaImage};

// ---------------------------------------------------------------- image helpers

/// Deterministic noise: nothing for an encoder to compress.
fn noise(width: u32, height: u32, mut seed: u64) -> RgbImage {
    let len = (width * height * 3) as usize;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        // xorshift64
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        bytes.extend_from_slice(&seed.to_le_bytes());
    }
    bytes.truncate(len);
    RgbImage::from_raw(width, height, bytes).unwrap()
}

/// A smooth gradient, like a photo or a generated picture.
fn gradient(width: u32, height: u32) -> RgbImage {
    ImageBuffer::from_fn(width, height, |x, y| {
        Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
    })
}

fn png(image: &DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    let encoder =
        PngEncoder::new_with_quality(&mut bytes, CompressionType::Fast, FilterType::NoFilter);
    image.write_with_encoder(encoder).unwrap();
    bytes
}

fn jpeg(image: &DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
        .unwrap();
    bytes
}

fn webp(image: &DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::WebP)
        .unwrap();
    bytes
}

/// The sniffed format of encoded bytes.
fn format_of(bytes: &[u8]) -> image::ImageFormat {
    image::guess_format(bytes).unwrap()
}

#[track_caller]
fn assert_too_large(result: Result<impl std::fmt::Debug, MediaError>, needle: &str) {
    match result {
        Err(MediaError::TooLarge(message)) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected TooLarge containing {needle:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- decode

#[tokio::test]
async fn decodes_png_jpeg_and_webp_whatever_they_are_called() {
    let image = DynamicImage::ImageRgb8(gradient(64, 48));
    for bytes in [png(&image), jpeg(&image), webp(&image)] {
        let decoded = decode(bytes.clone(), ImageLimits::default()).await.unwrap();
        assert_eq!((decoded.width(), decoded.height()), (64, 48));
        assert_eq!(dimensions(&bytes).unwrap(), (64, 48));
    }
}

#[tokio::test]
async fn decode_rejects_garbage_and_other_formats() {
    let limits = ImageLimits::default();
    for garbage in [
        b"".to_vec(),
        b"this is not an image at all".to_vec(),
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec(),
    ] {
        let error = decode(garbage.clone(), limits).await.unwrap_err();
        assert!(matches!(error, MediaError::Unsupported(_)), "{error}");
        assert!(error.is_bad_input());
        assert!(matches!(
            dimensions(&garbage),
            Err(MediaError::Unsupported(_))
        ));
    }
    let gif = decode(b"GIF89a\x01\x00\x01\x00".to_vec(), limits)
        .await
        .unwrap_err();
    assert!(
        gif.to_string().contains("GIF images are not supported"),
        "{gif}"
    );

    // A real PNG cut short: right signature, broken body.
    let mut truncated = png(&DynamicImage::ImageRgb8(noise(64, 64, 1)));
    truncated.truncate(truncated.len() / 2);
    let error = decode(truncated, limits).await.unwrap_err();
    assert!(matches!(error, MediaError::Decode(_)), "{error}");
}

#[tokio::test]
async fn decode_rejects_oversized_inputs_before_decoding() {
    let bytes = png(&DynamicImage::ImageRgb8(gradient(300, 200)));
    let tight_bytes = ImageLimits {
        max_input_bytes: 100,
        ..ImageLimits::default()
    };
    assert_too_large(
        decode(bytes.clone(), tight_bytes).await,
        "over the 100 byte input limit",
    );
    let tight_side = ImageLimits {
        max_side: 256,
        ..ImageLimits::default()
    };
    assert_too_large(
        decode(bytes.clone(), tight_side).await,
        "image is 300x200, over the 256 px side limit",
    );
    let tight_pixels = ImageLimits {
        max_pixels: 50_000,
        ..ImageLimits::default()
    };
    assert_too_large(
        decode(bytes, tight_pixels).await,
        "image is 300x200 (0.1 Mpx), over the 0.1 Mpx pixel limit",
    );
}

// ---------------------------------------------------------------- normalize

#[tokio::test]
async fn normalize_shrinks_a_large_noisy_image_under_the_limit() {
    let bytes = png(&DynamicImage::ImageRgb8(noise(4000, 3000, 7)));
    let max_bytes = 1024 * 1024;
    assert!(
        bytes.len() > 20 * max_bytes,
        "input is {} bytes",
        bytes.len()
    );
    let limits = ImageLimits {
        max_input_bytes: 64 * 1024 * 1024,
        ..ImageLimits::default()
    };

    let out = normalize_for_telegram(bytes, max_bytes, limits)
        .await
        .unwrap();

    assert!(out.bytes.len() <= max_bytes, "{} bytes", out.bytes.len());
    assert_eq!(out.format, ImageFormat::Jpeg);
    assert_eq!(format_of(&out.bytes), image::ImageFormat::Jpeg);
    assert!(
        out.width < 4000 && out.height < 3000,
        "{}x{}",
        out.width,
        out.height
    );
    // 0.8 steps keep the aspect ratio (up to rounding).
    assert_near(
        f64::from(out.width) / f64::from(out.height),
        4.0 / 3.0,
        0.01,
    );
    let decoded = decode(out.bytes, ImageLimits::default()).await.unwrap();
    assert_eq!((decoded.width(), decoded.height()), (out.width, out.height));
}

#[tokio::test]
async fn normalize_keeps_a_fitting_photo_at_full_size_as_jpeg() {
    let bytes = png(&DynamicImage::ImageRgb8(gradient(1280, 720)));
    let out = normalize_for_telegram(bytes, 1024 * 1024, ImageLimits::default())
        .await
        .unwrap();
    assert_eq!(
        (out.format, out.width, out.height),
        (ImageFormat::Jpeg, 1280, 720)
    );
    assert_eq!(format_of(&out.bytes), image::ImageFormat::Jpeg);
}

#[tokio::test]
async fn normalize_keeps_transparent_and_small_images_as_png() {
    let transparent = RgbaImage::from_fn(300, 200, |x, _| Rgba([200, 10, 10, (x % 256) as u8]));
    let bytes = png(&DynamicImage::ImageRgba8(transparent));
    let out = normalize_for_telegram(bytes, 1024 * 1024, ImageLimits::default())
        .await
        .unwrap();
    assert_eq!(
        (out.format, out.width, out.height),
        (ImageFormat::Png, 300, 200)
    );
    let decoded = decode(out.bytes, ImageLimits::default()).await.unwrap();
    assert!(decoded.color().has_alpha());

    // Small and opaque (even as a JPEG input): a lossless PNG when it fits.
    let small = jpeg(&DynamicImage::ImageRgb8(gradient(200, 100)));
    let out = normalize_for_telegram(small, 1024 * 1024, ImageLimits::default())
        .await
        .unwrap();
    assert_eq!(
        (out.format, out.width, out.height),
        (ImageFormat::Png, 200, 100)
    );
    assert_eq!(format_of(&out.bytes), image::ImageFormat::Png);
}

#[tokio::test]
async fn normalize_gives_up_on_an_impossible_budget() {
    let bytes = png(&DynamicImage::ImageRgb8(noise(400, 300, 3)));
    assert_too_large(
        normalize_for_telegram(bytes, 200, ImageLimits::default()).await,
        "cannot fit the 400x300 image under 200 bytes",
    );
}

// ---------------------------------------------------------------- upscale

#[tokio::test]
async fn upscale_gives_exact_dimensions() {
    let source = DynamicImage::ImageRgb8(gradient(120, 80));
    let out = upscale(png(&source), 2, ImageLimits::default())
        .await
        .unwrap();
    assert_eq!(
        (out.format, out.width, out.height),
        (ImageFormat::Png, 240, 160)
    );
    assert_eq!(dimensions(&out.bytes).unwrap(), (240, 160));

    let out = upscale(jpeg(&source), 4, ImageLimits::default())
        .await
        .unwrap();
    assert_eq!(
        (out.format, out.width, out.height),
        (ImageFormat::Jpeg, 480, 320)
    );
    assert_eq!(dimensions(&out.bytes).unwrap(), (480, 320));
}

#[tokio::test]
async fn upscale_refuses_other_factors_and_results_past_the_limits() {
    let small = png(&DynamicImage::ImageRgb8(gradient(16, 16)));
    let error = upscale(small, 3, ImageLimits::default()).await.unwrap_err();
    assert!(matches!(error, MediaError::Unsupported(_)), "{error}");
    assert!(error.to_string().contains("factor 3"), "{error}");

    let big = png(&DynamicImage::ImageLuma8(GrayImage::new(4096, 4096)));
    assert_too_large(
        upscale(big.clone(), 4, ImageLimits::default()).await,
        "upscaled image would be 16384x16384, over the 8192 px side limit",
    );
    let within_sides = png(&DynamicImage::ImageRgb8(gradient(600, 600)));
    let tight_pixels = ImageLimits {
        max_pixels: 1_000_000,
        ..ImageLimits::default()
    };
    assert_too_large(
        upscale(within_sides, 2, tight_pixels).await,
        "upscaled image would be 1200x1200 (1.4 Mpx), over the 1.0 Mpx pixel limit",
    );
}

// ---------------------------------------------------------------- video

/// A scratch directory removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("genq-media-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True when ffmpeg and ffprobe run; otherwise says why the test does nothing.
fn have_ffmpeg() -> bool {
    let runs = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let have = runs("ffmpeg") && runs("ffprobe");
    if !have {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed (apt-get install ffmpeg)");
    }
    have
}

/// Runs ffmpeg quietly with `args` (split at whitespace), writing `out`.
fn ffmpeg(args: &str, out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(args.split_whitespace())
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg {args} {} failed", out.display());
}

/// A `secs`-second 640x480 25 fps H.264 test pattern, no audio.
fn test_video(path: &Path, secs: u32) {
    let source = format!("testsrc=duration={secs}:size=640x480:rate=25");
    ffmpeg(&format!("-f lavfi -i {source} -pix_fmt yuv420p"), path);
}

/// The codec types of `path`'s streams, as ffprobe lists them.
fn stream_types(path: &Path) -> Vec<String> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[track_caller]
fn assert_near(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} is not within {tolerance} of {expected}"
    );
}

#[tokio::test]
async fn probes_a_video_and_rejects_what_is_not_one() {
    if !have_ffmpeg() {
        return;
    }
    let dir = Scratch::new("probe");
    let video = dir.path("clip.mp4");
    test_video(&video, 2);

    let info = probe_video(&video).await.unwrap();
    assert_near(info.duration_secs, 2.0, 0.05);
    assert_eq!(
        (info.width, info.height, info.codec.as_str()),
        (640, 480, "h264")
    );

    let garbage = dir.path("garbage.mp4");
    std::fs::write(&garbage, b"definitely not a video").unwrap();
    let error = probe_video(&garbage).await.unwrap_err();
    assert!(matches!(error, MediaError::Decode(_)), "{error}");
    assert!(error.to_string().contains("garbage.mp4"), "{error}");

    let missing = probe_video(&dir.path("missing.mp4")).await.unwrap_err();
    assert!(
        matches!(&missing, MediaError::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
        "{missing}"
    );
    assert!(missing.to_string().contains("missing.mp4"), "{missing}");
}

#[tokio::test]
async fn fits_a_video_under_a_small_limit() {
    if !have_ffmpeg() {
        return;
    }
    let dir = Scratch::new("fit");
    let video = dir.path("big.mp4");
    // Lossless H.264 with AAC audio: about 200 KB for 2 s.
    ffmpeg(
        "-f lavfi -i testsrc=duration=2:size=640x480:rate=25 \
         -f lavfi -i sine=frequency=440:duration=2 \
         -c:v libx264 -preset ultrafast -qp 0 -pix_fmt yuv420p -c:a aac -shortest",
        &video,
    );
    let max_bytes = 100 * 1024;
    let before = std::fs::metadata(&video).unwrap().len();
    assert!(before > max_bytes, "input is only {before} bytes");

    let fitted = fit_video(&video, max_bytes).await.unwrap();

    assert_ne!(fitted, video);
    assert_eq!(fitted.parent(), video.parent());
    assert_eq!(
        std::fs::metadata(&video).unwrap().len(),
        before,
        "input changed"
    );
    let after = std::fs::metadata(&fitted).unwrap().len();
    assert!(after <= max_bytes, "{after} bytes");
    let info = probe_video(&fitted).await.unwrap();
    assert_near(info.duration_secs, 2.0, 0.1);
    // ~300 kbit/s of video is too little for 480 lines: it comes down to 360.
    assert_eq!(
        (info.width, info.height, info.codec.as_str()),
        (480, 360, "h264")
    );
    assert_eq!(stream_types(&fitted), ["video", "audio"]);

    // Already under: the same path back, nothing written.
    assert_eq!(fit_video(&fitted, max_bytes).await.unwrap(), fitted);
    // Hopeless: refused without running ffmpeg.
    assert_too_large(
        fit_video(&video, 2_000).await,
        "below the 48 kbit/s minimum",
    );
}

#[tokio::test]
async fn concatenates_segments_with_and_without_an_audio_track() {
    if !have_ffmpeg() {
        return;
    }
    let dir = Scratch::new("concat");
    let (first, second) = (dir.path("one.mp4"), dir.path("two's.mp4"));
    test_video(&first, 2);
    test_video(&second, 1);
    let segments = [first.clone(), second.clone()];

    let joined = dir.path("joined.mp4");
    concat_videos(&segments, None, &joined).await.unwrap();
    let VideoInfo {
        duration_secs,
        width,
        codec,
        ..
    } = probe_video(&joined).await.unwrap();
    assert_near(duration_secs, 3.0, 0.1);
    assert_eq!((width, codec.as_str()), (640, "h264"));
    assert_eq!(stream_types(&joined), ["video"]);

    let music = dir.path("music.m4a");
    ffmpeg("-f lavfi -i sine=frequency=220:duration=5 -c:a aac", &music);
    let scored = dir.path("scored.mp4");
    concat_videos(&segments, Some(&music), &scored)
        .await
        .unwrap();
    assert_near(probe_video(&scored).await.unwrap().duration_secs, 3.0, 0.15);
    assert_eq!(stream_types(&scored), ["video", "audio"]);
    assert!(
        !dir.path("scored.mp4.concat.txt").exists(),
        "list left behind"
    );
}

#[tokio::test]
async fn mixes_a_short_track_into_segments_that_have_sound() {
    if !have_ffmpeg() {
        return;
    }
    let dir = Scratch::new("concat-mix");
    let segments: Vec<PathBuf> = (1..=2)
        .map(|n| {
            let path = dir.path(&format!("voiced{n}.mp4"));
            ffmpeg(
                "-f lavfi -i testsrc=duration=1:size=320x240:rate=25 \
                 -f lavfi -i sine=frequency=300:duration=1 \
                 -pix_fmt yuv420p -c:a aac -shortest",
                &path,
            );
            path
        })
        .collect();
    let music = dir.path("jingle.m4a");
    ffmpeg(
        "-f lavfi -i sine=frequency=220:duration=0.5 -c:a aac",
        &music,
    );
    let out = dir.path("mixed.mp4");

    concat_videos(&segments, Some(&music), &out).await.unwrap();

    assert_near(probe_video(&out).await.unwrap().duration_secs, 2.0, 0.15);
    assert_eq!(stream_types(&out), ["video", "audio"]);
}

#[tokio::test]
async fn concat_refuses_segments_that_do_not_match() {
    if !have_ffmpeg() {
        return;
    }
    let dir = Scratch::new("concat-mismatch");
    let first = dir.path("a.mp4");
    test_video(&first, 1);
    let small = dir.path("b.mp4");
    ffmpeg(
        "-f lavfi -i testsrc=duration=1:size=320x240:rate=25 -pix_fmt yuv420p",
        &small,
    );
    let out = dir.path("out.mp4");
    let error = concat_videos(&[first, small], None, &out)
        .await
        .unwrap_err();
    assert!(matches!(error, MediaError::Unsupported(_)), "{error}");
    assert!(
        error.to_string().contains("segment 2") && error.to_string().contains("320x240"),
        "{error}"
    );
    assert!(!out.exists());
}

// ------------------------------------------------------- promo: voice and assembly

/// `secs` of a 440 Hz tone as a 16 kHz mono WAV (like a speech API's answer).
fn test_speech(path: &Path, secs: f64) {
    ffmpeg(
        &format!("-f lavfi -i sine=frequency=440:duration={secs}:sample_rate=16000 -ac 1"),
        path,
    );
}

#[tokio::test]
async fn a_voice_is_fitted_by_tempo_by_padding_and_by_cutting() {
    if !have_ffmpeg() {
        return;
    }
    let dir = Scratch::new("voice");
    let cases = [
        // (speech secs, target secs, what the plan must be)
        (4.5, 5.0, "tempo"),
        (2.0, 5.0, "pad"),
        (8.0, 5.0, "cut"),
    ];
    for (i, (speech, target, kind)) in cases.into_iter().enumerate() {
        let input = dir.path(&format!("speech{i}.wav"));
        test_speech(&input, speech);
        let out = dir.path(&format!("voice{i}.m4a"));
        let fitted = fit_audio(&input, target, &out).await.unwrap();
        assert_near(fitted.speech_secs, speech, 0.05);
        assert_near(fitted.duration_secs, target, 0.1);
        let probed = probe_media(&out).await.unwrap();
        assert_eq!((probed.video_streams, probed.audio_streams), (0, 1));
        assert_near(probed.duration_secs, target, 0.1);
        match (kind, &fitted.plan) {
            ("tempo", AudioPlan::Tempo { tempo }) => assert_near(*tempo, 0.9, 0.01),
            ("pad", AudioPlan::Pad { silence_secs }) => assert_near(*silence_secs, 3.0, 0.05),
            ("cut", AudioPlan::SpeedAndCut { tempo, cut_secs }) => {
                assert_eq!(*tempo, MAX_TEMPO);
                assert_near(*cut_secs, 1.4, 0.05);
            }
            (kind, plan) => panic!("expected {kind}, got {plan:?}"),
        }
    }
    let silent = dir.path("silent.mp4");
    test_video(&silent, 1);
    let error = fit_audio(&silent, 5.0, &dir.path("x.m4a"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no audio stream"), "{error}");
}

#[tokio::test]
async fn clips_of_other_lengths_and_sizes_are_assembled_to_an_exact_length() {
    if !have_ffmpeg() {
        return;
    }
    let dir = Scratch::new("assemble");
    let short = dir.path("a.mp4");
    test_video(&short, 1);
    let long = dir.path("b.mp4");
    test_video(&long, 3);
    let other = dir.path("c.mp4");
    // another size, with an audio track of its own (dropped)
    ffmpeg(
        "-f lavfi -i testsrc=duration=2:size=320x180:rate=30 \
         -f lavfi -i sine=frequency=220:duration=2 -pix_fmt yuv420p -c:a aac -shortest",
        &other,
    );
    let voice = dir.path("voice.wav");
    test_speech(&voice, 4.0);
    let out = dir.path("promo.mp4");
    let clips = vec![short, long, other];

    let info = assemble_clips(&clips, &voice, 2.0, &out).await.unwrap();

    assert_near(info.duration_secs, 6.0, 0.2);
    assert_eq!((info.video_streams, info.audio_streams), (1, 1));
    assert_eq!((info.width, info.height), (Some(640), Some(480)));
    assert_eq!(stream_types(&out), ["video", "audio"]);
    let expected = VideoExpectation {
        duration_secs: 6.0,
        tolerance_secs: 1.0,
        video_streams: 1,
        audio_streams: 1,
        max_bytes: 50 * 1024 * 1024,
    };
    check_video(&out, &expected).await.unwrap();
    let wrong = VideoExpectation {
        duration_secs: 10.0,
        ..expected
    };
    let error = check_video(&out, &wrong).await.unwrap_err();
    assert!(error.to_string().contains("not 10.00 ± 1 s"), "{error}");

    let error = assemble_clips(&[], &voice, 2.0, &dir.path("none.mp4"))
        .await
        .unwrap_err();
    assert!(error.is_bad_input(), "{error}");
}
