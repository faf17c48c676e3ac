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

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("PNG: {0}")]
    Png(String),
    #[error("JPEG: {0}")]
    Jpeg(String),
    #[error("{codec} image of {width}x{height} is too large to decode")]
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
