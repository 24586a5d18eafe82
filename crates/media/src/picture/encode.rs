//! Pixel-format preparation and PNG/JPEG encoding.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ColorType, DynamicImage, GenericImageView};

use super::{EncodedImage, ImageFormat};
use crate::MediaError;

/// Reduces `image` to 8 bits a channel and drops an alpha channel that no pixel
/// uses. Returns the image and whether it has transparency (some alpha below
/// opaque). The result is one of Luma8, LumaA8, Rgb8, Rgba8: what both encoders and
/// the resizer take.
pub(crate) fn prepare(image: DynamicImage) -> (DynamicImage, bool) {
    let color = image.color();
    let transparent = has_transparency(&image);
    let eight_bit = matches!(
        color,
        ColorType::L8 | ColorType::La8 | ColorType::Rgb8 | ColorType::Rgba8
    );
    if eight_bit && color.has_alpha() == transparent {
        return (image, transparent);
    }
    let grey = matches!(
        color,
        ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16
    );
    let prepared = match (grey, transparent) {
        (true, true) => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
        (true, false) => DynamicImage::ImageLuma8(image.to_luma8()),
        (false, true) => DynamicImage::ImageRgba8(image.to_rgba8()),
        (false, false) => DynamicImage::ImageRgb8(image.to_rgb8()),
    };
    (prepared, transparent)
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

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, LumaA, Rgba};

    #[test]
    fn an_unused_alpha_channel_is_dropped() {
        let opaque = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(4, 4, Rgba([1, 2, 3, 255])));
        let (prepared, transparent) = prepare(opaque);
        assert!(!transparent);
        assert_eq!(prepared.color(), ColorType::Rgb8);

        let grey = DynamicImage::ImageLumaA16(ImageBuffer::from_pixel(4, 4, LumaA([9, u16::MAX])));
        let (prepared, transparent) = prepare(grey);
        assert!(!transparent);
        assert_eq!(prepared.color(), ColorType::L8);

        let grey = DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(4, 4, LumaA([9, 0])));
        let (prepared, transparent) = prepare(grey);
        assert!(transparent);
        assert_eq!(prepared.color(), ColorType::La8);
    }

    #[test]
    fn transparency_is_kept_at_eight_bits() {
        let mut image = ImageBuffer::from_pixel(4, 4, Rgba([1u16, 2, 3, u16::MAX]));
        image.put_pixel(1, 1, Rgba([1, 2, 3, 0]));
        let (prepared, transparent) = prepare(DynamicImage::ImageRgba16(image));
        assert!(transparent);
        assert_eq!(prepared.color(), ColorType::Rgba8);
        assert!(encode_png(&prepared, CompressionType::Fast).is_ok());
    }
}
