//! Local upscaling by 2 or 4.

use image::codecs::png::CompressionType;

use super::decode::{decode_sync, dimensions, sniff};
use super::encode::{encode_jpeg, encode_png, encoded, prepare};
use super::resize::resize;
use super::{EncodedImage, ImageFormat, ImageLimits};
use crate::MediaError;
use crate::blocking::run_blocking;

/// The factors [`upscale`] accepts.
const FACTORS: [u32; 2] = [2, 4];
/// JPEG quality of an upscaled JPEG: high, since this is the delivered result.
const UPSCALED_JPEG_QUALITY: u8 = 95;

/// Local high-quality upscale (fast_image_resize, Lanczos3) by 2 or 4; the output
/// side/pixel limits are enforced with a clear error (e.g. "upscaled image would be
/// 16384x16384, over the 8192 px side limit").
///
/// The output size is checked from the input's header before anything is decoded.
/// The result is a JPEG (quality 95) when the input was an opaque JPEG, otherwise a
/// PNG, so a lossless input stays lossless. It is not shrunk to any byte budget:
/// pass it to [`normalize_for_telegram`](crate::normalize_for_telegram) for that.
pub async fn upscale(
    bytes: Vec<u8>,
    factor: u32,
    limits: ImageLimits,
) -> Result<EncodedImage, MediaError> {
    if !FACTORS.contains(&factor) {
        return Err(MediaError::Unsupported(format!(
            "upscale factor {factor} is not supported (2 or 4)"
        )));
    }
    run_blocking("image upscale", move || {
        upscale_sync(&bytes, factor, &limits)
    })
    .await
}

/// [`upscale`] on the calling thread, with a valid factor.
fn upscale_sync(
    bytes: &[u8],
    factor: u32,
    limits: &ImageLimits,
) -> Result<EncodedImage, MediaError> {
    let (width, height) = dimensions(bytes)?;
    let (out_width, out_height) = (width.saturating_mul(factor), height.saturating_mul(factor));
    limits.check("upscaled image would be", out_width, out_height)?;
    let lossy_input = sniff(bytes)? == image::ImageFormat::Jpeg;
    let (image, transparent) = prepare(decode_sync(bytes, limits)?);
    let upscaled = resize(&image, out_width, out_height)?;
    if lossy_input && !transparent {
        let jpeg = encode_jpeg(&upscaled, UPSCALED_JPEG_QUALITY)?;
        return Ok(encoded(jpeg, ImageFormat::Jpeg, &upscaled));
    }
    let png = encode_png(&upscaled, CompressionType::Fast)?;
    Ok(encoded(png, ImageFormat::Png, &upscaled))
}
