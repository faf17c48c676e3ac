//! Decoding kept frames (PNG, JPEG, raw pixels) for display, replay and dataset encoding.

/// Pixel layouts a worker may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawPixelFormat {
    Rgb8,
    Rgba8,
    Bgra8,
    Gray8,
}

impl RawPixelFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            RawPixelFormat::Rgb8 => 3,
            RawPixelFormat::Rgba8 | RawPixelFormat::Bgra8 => 4,
            RawPixelFormat::Gray8 => 1,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RawPixelFormat::Rgb8 => "rgb8",
            RawPixelFormat::Rgba8 => "rgba8",
            RawPixelFormat::Bgra8 => "bgra8",
            RawPixelFormat::Gray8 => "gray8",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "rgb8" => Some(RawPixelFormat::Rgb8),
            "rgba8" => Some(RawPixelFormat::Rgba8),
            "bgra8" => Some(RawPixelFormat::Bgra8),
            "gray8" => Some(RawPixelFormat::Gray8),
            _ => None,
        }
    }
}

/// Most pixels a kept image may decode to (8K UHD fits): a few bytes of PNG or JPEG can claim
/// billions of pixels, so the size in the header is checked before anything is allocated.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 25;
/// Longest side a kept image may have.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

fn check_dimensions(codec: ImageCodec, width: u32, height: u32) -> Result<(), ImageError> {
    if width == 0
        || height == 0
        || width > MAX_IMAGE_SIDE
        || height > MAX_IMAGE_SIDE
        || u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS
    {
        return Err(ImageError::TooLarge {
            codec,
            width,
            height,
        });
    }
    Ok(())
}

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("PNG: {0}")]
    Png(String),
    #[error("JPEG: {0}")]
    Jpeg(String),
    #[error("{codec} image of {width}x{height} is outside what is decoded (1 to 16384 per side, at most 33.5 million pixels)")]
    TooLarge {
        codec: ImageCodec,
        width: u32,
        height: u32,
    },
    #[error("{0} is not supported")]
    Unsupported(String),
}

/// The still-image codecs kept frames are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageCodec {
    Png,
    Jpeg,
}

impl ImageCodec {
    /// The codec of a stored name or file extension ("png", "jpeg", "jpg").
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "png" => Some(ImageCodec::Png),
            "jpeg" | "jpg" => Some(ImageCodec::Jpeg),
            _ => None,
        }
    }

    /// The name stored in the frames table and used as the file extension.
    pub fn name(self) -> &'static str {
        match self {
            ImageCodec::Png => "png",
            ImageCodec::Jpeg => "jpeg",
        }
    }
}

impl std::fmt::Display for ImageCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageCodec::Png => "PNG",
            ImageCodec::Jpeg => "JPEG",
        })
    }
}

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
pub fn decode_png(bytes: &[u8]) -> Result<DecodedImage, ImageError> {
    let png_error = |e: png::DecodingError| ImageError::Png(e.to_string());
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(png_error)?;
    let (width, height) = (reader.info().width, reader.info().height);
    check_dimensions(ImageCodec::Png, width, height)?;
    let size = reader.output_buffer_size().ok_or(ImageError::TooLarge {
        codec: ImageCodec::Png,
        width,
        height,
    })?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(png_error)?;
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
        other => {
            return Err(ImageError::Unsupported(format!(
                "PNG colour type {other:?}"
            )))
        }
    };
    Ok(DecodedImage {
        width: info.width,
        height: info.height,
        format,
        pixels: buf,
    })
}

/// Decodes a baseline or progressive JPEG (RGB or grey).
pub fn decode_jpeg(bytes: &[u8]) -> Result<DecodedImage, ImageError> {
    let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(bytes));
    decoder
        .read_info()
        .map_err(|e| ImageError::Jpeg(e.to_string()))?;
    if let Some(info) = decoder.info() {
        check_dimensions(
            ImageCodec::Jpeg,
            u32::from(info.width),
            u32::from(info.height),
        )?;
    }
    let pixels = decoder
        .decode()
        .map_err(|e| ImageError::Jpeg(e.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| ImageError::Jpeg("no image information".into()))?;
    let format = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => RawPixelFormat::Rgb8,
        jpeg_decoder::PixelFormat::L8 => RawPixelFormat::Gray8,
        other => {
            return Err(ImageError::Unsupported(format!(
                "JPEG pixel format {other:?}"
            )))
        }
    };
    Ok(DecodedImage {
        width: u32::from(info.width),
        height: u32::from(info.height),
        format,
        pixels,
    })
}

/// Decodes a kept image.
pub fn decode_image(codec: ImageCodec, bytes: &[u8]) -> Result<DecodedImage, ImageError> {
    match codec {
        ImageCodec::Png => decode_png(bytes),
        ImageCodec::Jpeg => decode_jpeg(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG whose header claims `width` x `height` (the pixel data is never reached).
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, width, height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().expect("header");
            // A first data chunk (an empty zlib stream): decoders read the header up to it.
            writer
                .write_chunk(
                    png::chunk::IDAT,
                    &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
                )
                .expect("IDAT");
            std::mem::forget(writer);
        }
        bytes
    }

    #[test]
    fn a_png_claiming_billions_of_pixels_is_refused_before_allocating() {
        match decode_png(&png_header(100_000, 100_000)) {
            Err(ImageError::TooLarge { width, height, .. }) => {
                assert_eq!((width, height), (100_000, 100_000))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        match decode_png(&png_header(16_000, 16_000)) {
            Err(ImageError::TooLarge { .. }) => {}
            other => panic!("256 Mpx is over the pixel cap: {other:?}"),
        }
    }

    #[test]
    fn a_jpeg_claiming_a_huge_size_is_refused_before_decoding() {
        let mut bytes = Vec::new();
        jpeg_encoder::Encoder::new(&mut bytes, 90)
            .encode(&[128u8; 8 * 8 * 3], 8, 8, jpeg_encoder::ColorType::Rgb)
            .expect("encode");
        // Patch the frame header (SOF0: FF C0, length, precision, height, width).
        let sof = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("SOF0");
        bytes[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
        bytes[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
        match decode_jpeg(&bytes) {
            Err(ImageError::TooLarge { width, height, .. }) => {
                assert_eq!((width, height), (60_000, 60_000))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}
