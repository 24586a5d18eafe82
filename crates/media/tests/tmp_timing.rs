use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ImageBuffer, Rgb, RgbImage};
use std::time::Instant;
#[test]
fn timing() {
    let t = Instant::now();
    let mut seed = 7u64;
    let img: RgbImage = ImageBuffer::from_fn(4000, 3000, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let [r, g, b, ..] = seed.to_le_bytes();
        Rgb([r, g, b])
    });
    eprintln!("noise {:?}", t.elapsed());
    let t = Instant::now();
    let img = DynamicImage::ImageRgb8(img);
    let mut bytes = Vec::new();
    img.write_with_encoder(PngEncoder::new_with_quality(
        &mut bytes,
        CompressionType::Fast,
        FilterType::Sub,
    ))
    .unwrap();
    eprintln!("png {:?} {}", t.elapsed(), bytes.len());
    let t = Instant::now();
    let d = image::load_from_memory(&bytes).unwrap();
    eprintln!("png decode {:?}", t.elapsed());
    let t = Instant::now();
    let mut j = Vec::new();
    d.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
        &mut j, 90,
    ))
    .unwrap();
    eprintln!("jpeg90 {:?} {}", t.elapsed(), j.len());
    let t = Instant::now();
    let mut j = Vec::new();
    d.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
        &mut j, 60,
    ))
    .unwrap();
    eprintln!("jpeg60 {:?} {}", t.elapsed(), j.len());
    let t = Instant::now();
    let _ = d.has_alpha();
    eprintln!("{:?}", t.elapsed());
}
