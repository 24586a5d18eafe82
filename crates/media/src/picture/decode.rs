//! Sniffing, limit checks and decoding.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, metadata::Orientation};

use super::ImageLimits;
use crate::MediaError;
use crate::blocking::run_blocking;

/// Decodes any PNG/JPEG/WebP (sniffed from the bytes, not trusted from a name),
/// checks limits.
///
/// The byte count is checked first, then the dimensions from the header, and only
/// then is the image decoded. EXIF orientation is applied, so the result is upright.
pub async fn decode(bytes: Vec<u8>, limits: ImageLimits) -> Result<DynamicImage, MediaError> {
    run_blocking("image decode", move || decode_sync(&bytes, &limits)).await
}

/// Image dimensions without a full decode where possible.
///
/// Reads only the header. These are the dimensions as displayed: a JPEG whose EXIF
/// orientation turns it by 90° reports them swapped, as [`decode`] would return it.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), MediaError> {
    let mut decoder = open(bytes)?;
    let (width, height) = decoder.dimensions();
    Ok(if turns_sideways(orientation(&mut decoder)) {
        (height, width)
    } else {
        (width, height)
    })
}

/// What [`decode`] does, on the calling thread.
pub(crate) fn decode_sync(bytes: &[u8], limits: &ImageLimits) -> Result<DynamicImage, MediaError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(MediaError::TooLarge(format!(
            "image is {} bytes, over the {} byte input limit",
            bytes.len(),
            limits.max_input_bytes
        )));
    }
    let mut decoder = open(bytes)?;
    let (width, height) = decoder.dimensions();
    limits.check("image is", width, height)?;
    let orientation = orientation(&mut decoder);
    let mut image = DynamicImage::from_decoder(decoder).map_err(from_image_error)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// A decoder for `bytes` positioned after the header, for the format the bytes are.
fn open(bytes: &[u8]) -> Result<impl ImageDecoder + '_, MediaError> {
    let format = sniff(bytes)?;
    ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(from_image_error)
}

/// The format of `bytes` from their magic number; only PNG, JPEG and WebP pass.
pub(crate) fn sniff(bytes: &[u8]) -> Result<image::ImageFormat, MediaError> {
    use image::ImageFormat as F;
    match image::guess_format(bytes) {
        Ok(format @ (F::Png | F::Jpeg | F::WebP)) => Ok(format),
        Ok(other) => Err(MediaError::Unsupported(format!(
            "{} images are not supported (PNG, JPEG or WebP only)",
            format_name(other)
        ))),
        Err(_) => Err(MediaError::Unsupported(format!(
            "not a PNG, JPEG or WebP image ({} bytes starting {})",
            bytes.len(),
            hex_prefix(bytes)
        ))),
    }
}

/// "GIF", "TIFF", ... for a message.
fn format_name(format: image::ImageFormat) -> String {
    format
        .extensions_str()
        .first()
        .map_or_else(|| format!("{format:?}"), |ext| ext.to_uppercase())
}

/// The first bytes as hex, so a message shows what was actually received.
fn hex_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(empty)".to_owned();
    }
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The EXIF orientation, or none when it is absent or unreadable.
fn orientation(decoder: &mut impl ImageDecoder) -> Orientation {
    decoder.orientation().unwrap_or(Orientation::NoTransforms)
}

/// True when applying `orientation` swaps width and height.
fn turns_sideways(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Sorts the `image` crate's errors into ours.
pub(crate) fn from_image_error(error: image::ImageError) -> MediaError {
    use image::ImageError as E;
    match error {
        E::Limits(_) => MediaError::TooLarge(error.to_string()),
        E::Unsupported(_) => MediaError::Unsupported(error.to_string()),
        E::Encoding(_) => MediaError::Encode(error.to_string()),
        E::Decoding(_) | E::Parameter(_) | E::IoError(_) => MediaError::Decode(error.to_string()),
    }
}
