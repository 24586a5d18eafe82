//! Still images: decoding with limits, normalising for Telegram, local upscaling.

mod decode;
mod encode;
mod normalize;
mod resize;
mod upscale;

pub use decode::{decode, dimensions};
pub use normalize::normalize_for_telegram;
pub use upscale::upscale;

use serde::{Deserialize, Serialize};

use crate::MediaError;

/// Telegram's photo upload limit.
pub const TELEGRAM_PHOTO_LIMIT: usize = 10 * 1024 * 1024;

/// Video (document) upload limit.
pub const TELEGRAM_FILE_LIMIT: usize = 50 * 1024 * 1024;

/// The format of an image this crate produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
}

impl ImageFormat {
    /// The MIME type, for an upload's `Content-Type`.
    pub fn mime_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
        }
    }
}

/// An encoded image and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedImage {
    pub bytes: Vec<u8>,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// What an input image may be: checked before decoding (from the byte count and the
/// header), so an oversized or decompression-bomb input costs no decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLimits {
    /// Largest accepted encoded input, in bytes.
    pub max_input_bytes: usize,
    /// Largest accepted width × height (also applies to an upscale's output).
    pub max_pixels: u64,
    /// Largest accepted width or height (also applies to an upscale's output).
    pub max_side: u32,
}

impl Default for ImageLimits {
    /// 20 MiB of input, 40 megapixels, 8192 px a side.
    fn default() -> Self {
        ImageLimits {
            max_input_bytes: 20 * 1024 * 1024,
            max_pixels: 40_000_000,
            max_side: 8192,
        }
    }
}

impl ImageLimits {
    /// Checks a `width`×`height` image against the side and pixel limits. `subject`
    /// starts the message: "image is", "upscaled image would be".
    pub(crate) fn check(&self, subject: &str, width: u32, height: u32) -> Result<(), MediaError> {
        if width == 0 || height == 0 {
            return Err(MediaError::Decode(format!(
                "{subject} {width}x{height}, which has no pixels"
            )));
        }
        if width.max(height) > self.max_side {
            return Err(MediaError::TooLarge(format!(
                "{subject} {width}x{height}, over the {} px side limit",
                self.max_side
            )));
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(MediaError::TooLarge(format!(
                "{subject} {width}x{height} ({}), over the {} pixel limit",
                megapixels(pixels),
                megapixels(self.max_pixels)
            )));
        }
        Ok(())
    }
}

/// `pixels` as "12.0 Mpx".
fn megapixels(pixels: u64) -> String {
    let mpx = pixels as f64 / 1_000_000.0;
    format!("{mpx:.1} Mpx")
}
