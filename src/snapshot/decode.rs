//! Decoding kept frames (PNG, JPEG, raw pixels) for display, replay and dataset encoding.

use crate::bus::RawPixelFormat;

/// A decoded picture in one of the raw layouts.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    pub width: u32,
    pub height: u32,
    pub format: RawPixelFormat,
    pub pixels: Vec<u8>,
}

impl DecodedImage {
    pub fn into_rgba(self) -> Vec<u8> {
        raw_to_rgba(self.format, &self.pixels)
    }
}

/// RGBA copy of raw pixels.
pub fn raw_to_rgba(format: RawPixelFormat, pixels: &[u8]) -> Vec<u8> {
    match format {
        RawPixelFormat::Rgb8 => pixels
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        RawPixelFormat::Rgba8 => pixels.to_vec(),
        RawPixelFormat::Bgra8 => pixels
            .chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0], p[3]])
            .collect(),
        RawPixelFormat::Gray8 => pixels.iter().flat_map(|&g| [g, g, g, 255]).collect(),
    }
}

/// Decodes a PNG (8-bit grey, RGB or RGBA).
pub fn decode_png(bytes: &[u8]) -> Result<DecodedImage, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| format!("PNG: {e}"))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG: image too large")?];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("PNG: {e}"))?;
    buf.truncate(info.buffer_size());
    let format = match info.color_type {
        png::ColorType::Rgb => RawPixelFormat::Rgb8,
        png::ColorType::Rgba => RawPixelFormat::Rgba8,
        png::ColorType::Grayscale => RawPixelFormat::Gray8,
        png::ColorType::GrayscaleAlpha => {
            buf = buf
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect();
            RawPixelFormat::Rgba8
        }
        other => return Err(format!("PNG colour type {other:?} is not supported")),
    };
    Ok(DecodedImage {
        width: info.width,
        height: info.height,
        format,
        pixels: buf,
    })
}

/// Decodes a baseline or progressive JPEG (RGB or grey).
pub fn decode_jpeg(bytes: &[u8]) -> Result<DecodedImage, String> {
    let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(bytes));
    let pixels = decoder.decode().map_err(|e| format!("JPEG: {e}"))?;
    let info = decoder.info().ok_or("JPEG: no image information")?;
    let format = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => RawPixelFormat::Rgb8,
        jpeg_decoder::PixelFormat::L8 => RawPixelFormat::Gray8,
        other => return Err(format!("JPEG pixel format {other:?} is not supported")),
    };
    Ok(DecodedImage {
        width: u32::from(info.width),
        height: u32::from(info.height),
        format,
        pixels,
    })
}

/// Decodes by codec name ("png", "jpeg"/"jpg").
pub fn decode_image(codec: &str, bytes: &[u8]) -> Result<DecodedImage, String> {
    match codec {
        "png" => decode_png(bytes),
        "jpeg" | "jpg" => decode_jpeg(bytes),
        other => Err(format!("image codec {other:?} is not supported")),
    }
}
