//! Turning any accepted image into a PNG or JPEG that Telegram takes as a photo.

use image::codecs::png::CompressionType;
use image::{DynamicImage, GenericImageView};
use tracing::debug;

use super::decode::decode_sync;
use super::encode::{encode_jpeg, encode_png, encoded, prepare};
use super::resize::{resize, scaled};
use super::{EncodedImage, ImageFormat, ImageLimits};
use crate::MediaError;
use crate::blocking::run_blocking;

/// JPEG qualities tried at full size, best first, before [`JPEG_MIN_QUALITY`].
const JPEG_QUALITIES: [u8; 3] = [90, 80, 70];
/// The last quality tried at full size, and the quality of every downscaled JPEG.
const JPEG_MIN_QUALITY: u8 = 60;
/// When a JPEG is more than this many times the budget, no lower quality can bring
/// it under (90 → 60 saves a half to two thirds), so the ladder stops there and
/// takes a third of its size as the quality-60 size.
const HOPELESS_RATIO: usize = 3;
/// Each downscale step multiplies both sides by this.
const DOWNSCALE_STEP: f64 = 0.8;
/// An opaque image of at most this many pixels is sent as PNG when that fits.
const SMALL_PIXELS: u64 = 512 * 512;
/// Telegram refuses photos whose width + height exceed this.
const TELEGRAM_MAX_SIDE_SUM: u32 = 10_000;
/// No downscale goes below this many pixels on the short side.
const MIN_SIDE: u32 = 32;

/// Normalises to PNG (if it has transparency or is small) or JPEG, and shrinks
/// (JPEG quality 90→60, then downscale by 0.8 steps) until it fits `max_bytes`.
///
/// The input is decoded under `limits` (see [`decode`](crate::decode)); the output is
/// upright (EXIF orientation applied, metadata dropped), 8 bits a channel, and at
/// most 10,000 px in width + height, as Telegram requires of photos. A transparent
/// image stays PNG and only downscales. Fails with [`MediaError::TooLarge`] when
/// even a 32 px short side does not fit.
pub async fn normalize_for_telegram(
    bytes: Vec<u8>,
    max_bytes: usize,
    limits: ImageLimits,
) -> Result<EncodedImage, MediaError> {
    run_blocking("image normalize", move || {
        let image = decode_sync(&bytes, &limits)?;
        normalize_image(image, max_bytes)
    })
    .await
}

/// [`normalize_for_telegram`] on a decoded image.
fn normalize_image(image: DynamicImage, max_bytes: usize) -> Result<EncodedImage, MediaError> {
    let (image, transparent) = prepare(image);
    let image = fit_side_sum(image)?;
    if transparent || pixels(&image) <= SMALL_PIXELS {
        let png = encode_png(&image, CompressionType::Default)?;
        if png.len() <= max_bytes {
            return Ok(encoded(png, ImageFormat::Png, &image));
        }
        if transparent {
            return downscale_until_fits(&image, max_bytes, png.len(), ImageFormat::Png);
        }
    }
    match jpeg_quality_ladder(&image, max_bytes)? {
        Ladder::Fits(jpeg) => Ok(encoded(jpeg, ImageFormat::Jpeg, &image)),
        Ladder::TooBig { q60_len } => {
            downscale_until_fits(&image, max_bytes, q60_len, ImageFormat::Jpeg)
        }
    }
}

/// Downscales `image` so that width + height is within Telegram's photo limit.
fn fit_side_sum(image: DynamicImage) -> Result<DynamicImage, MediaError> {
    let (width, height) = image.dimensions();
    let sum = u64::from(width) + u64::from(height);
    if sum <= u64::from(TELEGRAM_MAX_SIDE_SUM) {
        return Ok(image);
    }
    let factor = f64::from(TELEGRAM_MAX_SIDE_SUM) / (f64::from(width) + f64::from(height));
    // Rounding may add a pixel per side; take one more off to stay within the sum.
    let (w, h) = scaled(width, height, factor);
    let (w, h) = (w.saturating_sub(1).max(1), h.saturating_sub(1).max(1));
    debug!(
        width,
        height, w, h, "downscaling to Telegram's width + height limit"
    );
    resize(&image, w, h)
}

/// How the full-size JPEG attempts ended.
enum Ladder {
    /// This encoding fits.
    Fits(Vec<u8>),
    /// None fits; the quality-60 encoding is (or, when it was skipped, would be at
    /// least) this many bytes.
    TooBig { q60_len: usize },
}

/// Encodes `image` as JPEG at falling qualities until one fits `max_bytes`. An
/// encoding over [`HOPELESS_RATIO`] times the budget ends the ladder early: no
/// lower quality can fit, and each full-size encode of a large image is costly.
fn jpeg_quality_ladder(image: &DynamicImage, max_bytes: usize) -> Result<Ladder, MediaError> {
    for quality in JPEG_QUALITIES {
        let jpeg = encode_jpeg(image, quality)?;
        debug!(quality, bytes = jpeg.len(), max_bytes, "JPEG at full size");
        if jpeg.len() <= max_bytes {
            return Ok(Ladder::Fits(jpeg));
        }
        if jpeg.len() > max_bytes.saturating_mul(HOPELESS_RATIO) {
            return Ok(Ladder::TooBig {
                q60_len: jpeg.len() / HOPELESS_RATIO,
            });
        }
    }
    let jpeg = encode_jpeg(image, JPEG_MIN_QUALITY)?;
    debug!(
        quality = JPEG_MIN_QUALITY,
        bytes = jpeg.len(),
        max_bytes,
        "JPEG at full size"
    );
    if jpeg.len() <= max_bytes {
        return Ok(Ladder::Fits(jpeg));
    }
    Ok(Ladder::TooBig {
        q60_len: jpeg.len(),
    })
}

/// Downscales `image` by 0.8 steps (from the original each time, so quality does not
/// compound) until its encoding in `format` fits `max_bytes`. `full_len` is the
/// size of the full-size encoding (or a lower bound of it); the byte counts so far
/// predict how many steps are needed, so steps that cannot fit are skipped rather
/// than encoded.
fn downscale_until_fits(
    image: &DynamicImage,
    max_bytes: usize,
    full_len: usize,
    format: ImageFormat,
) -> Result<EncodedImage, MediaError> {
    let (width, height) = image.dimensions();
    let mut last = (width, height, full_len);
    let mut steps = 0;
    loop {
        steps += steps_needed(last.2, max_bytes);
        let (w, h) = scaled(width, height, DOWNSCALE_STEP.powi(steps));
        if w.min(h) < MIN_SIDE {
            return Err(cannot_fit(image, max_bytes, last, format));
        }
        let small = resize(image, w, h)?;
        let bytes = encode_as(&small, format)?;
        debug!(w, h, bytes = bytes.len(), max_bytes, ?format, "downscaled");
        if bytes.len() <= max_bytes {
            return Ok(encoded(bytes, format, &small));
        }
        last = (w, h, bytes.len());
    }
}

/// How many more 0.8 steps should bring `len` bytes to `max_bytes`, assuming the
/// size follows the pixel count (each step keeps 0.64 of the pixels); at least one.
/// Real images shrink more slowly than that, so this never skips a step that fits.
fn steps_needed(len: usize, max_bytes: usize) -> i32 {
    if max_bytes == 0 {
        return 1;
    }
    let ratio = max_bytes as f64 / len as f64;
    let steps = (ratio.ln() / (DOWNSCALE_STEP * DOWNSCALE_STEP).ln()).ceil();
    // Saturating cast; a zero-byte budget was handled above.
    (steps as i32).max(1)
}

/// Encodes a downscaled image the way its full-size attempt was encoded.
fn encode_as(image: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>, MediaError> {
    match format {
        ImageFormat::Png => encode_png(image, CompressionType::Default),
        ImageFormat::Jpeg => encode_jpeg(image, JPEG_MIN_QUALITY),
    }
}

/// The error when no downscale fits.
fn cannot_fit(
    image: &DynamicImage,
    max_bytes: usize,
    (w, h, len): (u32, u32, usize),
    format: ImageFormat,
) -> MediaError {
    MediaError::TooLarge(format!(
        "cannot fit the {}x{} image under {max_bytes} bytes: the smallest {format:?} tried, \
         {w}x{h}, was still {len} bytes, and going below {MIN_SIDE} px a side is pointless",
        image.width(),
        image.height()
    ))
}

/// Width × height.
fn pixels(image: &DynamicImage) -> u64 {
    u64::from(image.width()) * u64::from(image.height())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_plus_height_is_brought_within_telegrams_limit() {
        let wide = DynamicImage::ImageRgb8(image::RgbImage::new(9990, 20));
        let fitted = fit_side_sum(wide).unwrap();
        assert!(fitted.width() + fitted.height() <= TELEGRAM_MAX_SIDE_SUM);
        assert!(fitted.width() >= 9970, "{}", fitted.width());

        let fine = DynamicImage::ImageRgb8(image::RgbImage::new(8000, 2000));
        assert_eq!(fit_side_sum(fine).unwrap().dimensions(), (8000, 2000));
    }

    #[test]
    fn steps_follow_the_pixel_ratio() {
        assert_eq!(steps_needed(1000, 1000), 1);
        assert_eq!(steps_needed(1500, 1000), 1);
        assert_eq!(steps_needed(2000, 1000), 2);
        assert_eq!(steps_needed(4000, 1000), 4);
        assert_eq!(steps_needed(4000, 0), 1);
    }
}
