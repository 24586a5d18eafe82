//! Lanczos3 resizing with fast_image_resize.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

use crate::MediaError;

/// `image` resized to exactly `width`×`height` with a Lanczos3 convolution (alpha
/// premultiplied while filtering). `image` must be prepared (8-bit Luma/LumaA/Rgb/Rgba).
pub(crate) fn resize(
    image: &DynamicImage,
    width: u32,
    height: u32,
) -> Result<DynamicImage, MediaError> {
    let mut resized = DynamicImage::new(width, height, image.color());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(image, &mut resized, &options)
        .map_err(|e| {
            MediaError::Internal(format!(
                "resizing a {}x{} {:?} image to {width}x{height} failed: {e}",
                image.width(),
                image.height(),
                image.color()
            ))
        })?;
    Ok(resized)
}

/// `width`×`height` scaled by `factor`, rounded, at least 1×1.
pub(crate) fn scaled(width: u32, height: u32, factor: f64) -> (u32, u32) {
    (scale_side(width, factor), scale_side(height, factor))
}

/// One side scaled by `factor`, rounded, at least 1.
fn scale_side(side: u32, factor: f64) -> u32 {
    // Saturating float-to-int cast; the clamp keeps it at least 1.
    (f64::from(side) * factor)
        .round()
        .clamp(1.0, f64::from(u32::MAX)) as u32
}
