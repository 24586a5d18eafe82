//! Pixel-format preparation and PNG/JPEG encoding.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, GenericImageView};

use super::{EncodedImage, ImageFormat};
use crate::MediaError;

/// Reduces `image` to 8 bits a channel and drops an alpha channel that no pixel
/// uses. Returns the image and whether it has transparency (some alpha below
/// opaque). The result is one of Luma8, LumaA8, Rgb8, Rgba8: what both encoders and
/// the resizer take.
pub(crate) fn prepare(image: DynamicImage) -> (DynamicImage, bool) {
    if has_transparency(&image) {
        let image = match image {
            DynamicImage::ImageRgba8(_) | DynamicImage::ImageLumaA8(_) => image,
            other => DynamicImage::ImageRgba8(other.to_rgba8()),
        };
        return (image, true);
    }
    let image = match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageLuma8(_) => image,
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLuma16(_) => {
            DynamicImage::ImageLuma8(image.to_luma8())
        }
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    (image, false)
}

/// True when some pixel is not fully opaque.
fn has_transparency(image: &DynamicImage) -> bool {
    match image {
        _ if !image.color().has_alpha() => false,
        DynamicImage::ImageRgba8(buffer) => buffer.pixels().any(|p| p.0[3] < u8::MAX),
        DynamicImage::ImageLumaA8(buffer) => buffer.pixels().any(|p| p.0[1] < u8::MAX),
        other => other.pixels().any(|(_, _, p)| p.0[3] < u8::MAX),
    }
}

/// Encodes a prepared image as PNG.
pub(crate) fn encode_png(
    image: &DynamicImage,
    compression: CompressionType,
) -> Result<Vec<u8>, MediaError> {
    let mut bytes = Vec::new();
    let encoder = PngEncoder::new_with_quality(&mut bytes, compression, FilterType::Adaptive);
    image
        .write_with_encoder(encoder)
        .map_err(|e| encode_error(image, "PNG", &e))?;
    Ok(bytes)
}

/// Encodes a prepared, opaque image as JPEG at `quality` (1–100).
pub(crate) fn encode_jpeg(image: &DynamicImage, quality: u8) -> Result<Vec<u8>, MediaError> {
    let mut bytes = Vec::new();
    let encoder = JpegEncoder::new_with_quality(&mut bytes, quality);
    image
        .write_with_encoder(encoder)
        .map_err(|e| encode_error(image, "JPEG", &e))?;
    Ok(bytes)
}

/// An [`EncodedImage`] of `bytes`, the encoding of `image` in `format`.
pub(crate) fn encoded(bytes: Vec<u8>, format: ImageFormat, image: &DynamicImage) -> EncodedImage {
    EncodedImage {
        bytes,
        format,
        width: image.width(),
        height: image.height(),
    }
}

/// The error for a failed encode, naming the image.
fn encode_error(image: &DynamicImage, format: &str, error: &image::ImageError) -> MediaError {
    MediaError::Encode(format!(
        "{format} encoding of a {}x{} {:?} image failed: {error}",
        image.width(),
        image.height(),
        image.color()
    ))
}
