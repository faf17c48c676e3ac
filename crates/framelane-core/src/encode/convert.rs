//! Pixel conversion from the caller's memory straight into the encoder's frame with swscale.
//! Contexts and the destination frame are made once per file and reused for every frame. With
//! more than one convert thread the picture is cut into bands of rows, one swscale context per
//! band, converted in parallel.

use std::ptr;

use ff::ffi;
use ffmpeg_next as ff;

use crate::bus::RawPixelFormat;

use super::EncodeError;

/// The FFmpeg pixel format of a raw frame layout.
pub fn ffmpeg_pixel(format: RawPixelFormat) -> ff::format::Pixel {
    match format {
        RawPixelFormat::Rgb8 => ff::format::Pixel::RGB24,
        RawPixelFormat::Rgba8 => ff::format::Pixel::RGBA,
        RawPixelFormat::Bgra8 => ff::format::Pixel::BGRA,
        RawPixelFormat::Gray8 => ff::format::Pixel::GRAY8,
    }
}

/// The size a picture of `width` x `height` is coded at by encoder `encoder`: sides rounded up
/// to even (4:2:0 video) and up to the encoder's smallest (SVT-AV1 refuses sides under 64).
/// The picture sits in the top-left corner; the rest repeats its edge pixels ([`pad_edges`]).
pub fn coded_size(encoder: &str, width: u32, height: u32) -> (u32, u32) {
    let min = if encoder.contains("svtav1") { 64 } else { 2 };
    let side = |n: u32| n.max(min).div_ceil(2) * 2;
    (side(width), side(height))
}

/// Fills a frame coded larger than its picture ([`coded_size`]) outside the picture's
/// `width` x `height` by repeating the last column and row of every plane, so the padding
/// costs the encoder almost nothing and cropping it back on replay loses nothing.
pub fn pad_edges(frame: &mut ff::frame::Video, width: u32, height: u32) {
    let (coded_w, coded_h) = (frame.width() as usize, frame.height() as usize);
    let (w, h) = (width as usize, height as usize);
    if (w >= coded_w && h >= coded_h) || w == 0 || h == 0 {
        return;
    }
    let Some(descriptor) = frame.format().descriptor() else {
        return;
    };
    let (sub_w, sub_h) = (descriptor.log2_chroma_w(), descriptor.log2_chroma_h());
    // Bytes per sample: 2 above 8 bits; NV12-style planes interleave two chroma samples.
    // SAFETY: reading the format descriptor's first component; FFmpeg guarantees it exists
    // for every video format.
    let depth = unsafe { (*descriptor.as_ptr()).comp[0].depth } as usize;
    let sample = if depth > 8 { 2 } else { 1 };
    let planes = frame.planes();
    for p in 0..planes {
        let chroma = p == 1 || p == 2;
        let (shift_w, shift_h) = if chroma { (sub_w, sub_h) } else { (0, 0) };
        let interleaved = chroma && planes == 2;
        let group = sample * if interleaved { 2 } else { 1 };
        let plane_w = coded_w.div_ceil(1 << shift_w);
        let plane_h = coded_h.div_ceil(1 << shift_h);
        let used_w = w.div_ceil(1 << shift_w).min(plane_w);
        let used_h = h.div_ceil(1 << shift_h).min(plane_h);
        let stride = frame.stride(p);
        let data = frame.data_mut(p);
        for y in 0..used_h {
            let row = &mut data[y * stride..y * stride + plane_w * group];
            let (inside, outside) = row.split_at_mut(used_w * group);
            let last = &inside[(used_w - 1) * group..];
            for pixel in outside.chunks_exact_mut(group) {
                pixel.copy_from_slice(last);
            }
        }
        for y in used_h..plane_h {
            let (above, below) = data.split_at_mut(y * stride);
            let source = &above[(used_h - 1) * stride..(used_h - 1) * stride + plane_w * group];
            below[..plane_w * group].copy_from_slice(source);
        }
    }
}

/// One band of rows with its own swscale context.
struct Band {
    context: *mut ffi::SwsContext,
    first_row: usize,
    rows: usize,
}

// SAFETY: a band's swscale context is owned by the band and used by one thread at a time (the
// job that holds `&mut Band`); swscale contexts may move between threads under that rule.
unsafe impl Send for Band {}

impl Drop for Band {
    fn drop(&mut self) {
        // SAFETY: the context came from sws_getContext, is not null (checked at creation) and
        // is freed exactly once, here.
        unsafe { ffi::sws_freeContext(self.context) }
    }
}

/// Converts raw frames of one size and layout into the encoder's pixel format.
pub struct Converter {
    bands: Vec<Band>,
    input: RawPixelFormat,
    width: u32,
    height: u32,
    output: ff::format::Pixel,
    /// Vertical chroma subsampling of the output (rows per chroma row).
    chroma_rows: usize,
}

impl Converter {
    pub fn new(
        input: RawPixelFormat,
        width: u32,
        height: u32,
        output: ff::format::Pixel,
        threads: u32,
    ) -> Result<Self, EncodeError> {
        let descriptor = output
            .descriptor()
            .ok_or_else(|| EncodeError::Settings(format!("pixel format {output:?} unknown")))?;
        let chroma_rows = 1usize << descriptor.log2_chroma_h();
        // Bands hold a whole number of chroma rows; tiny pictures get one band.
        let threads = (threads.max(1) as usize).min((height as usize / 16).max(1));
        let step = (height as usize).div_ceil(threads).div_ceil(chroma_rows) * chroma_rows;
        let mut bands = Vec::with_capacity(threads);
        let mut first_row = 0;
        while first_row < height as usize {
            let rows = step.min(height as usize - first_row);
            // SAFETY: plain values and null filter/parameter pointers, which sws_getContext
            // accepts; a null result is checked below.
            let context = unsafe {
                ffi::sws_getContext(
                    width as i32,
                    rows as i32,
                    ffmpeg_pixel(input).into(),
                    width as i32,
                    rows as i32,
                    output.into(),
                    ffi::SWS_BILINEAR,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    ptr::null(),
                )
            };
            if context.is_null() {
                return Err(EncodeError::Settings(format!(
                    "swscale cannot convert {} {width}x{height} to {output:?}",
                    input.label()
                )));
            }
            bands.push(Band {
                context,
                first_row,
                rows,
            });
            first_row += rows;
        }
        Ok(Self {
            bands,
            input,
            width,
            height,
            output,
            chroma_rows,
        })
    }

    pub fn input(&self) -> (RawPixelFormat, u32, u32) {
        (self.input, self.width, self.height)
    }

    /// Converts `pixels` (rows `stride` bytes apart) into `frame`, which must have the output
    /// format and size.
    pub fn run(
        &mut self,
        pixels: &[u8],
        stride: usize,
        frame: &mut ff::frame::Video,
    ) -> Result<(), EncodeError> {
        let row = self.width as usize * self.input.bytes_per_pixel();
        let height = self.height as usize;
        if stride < row || pixels.len() < stride * (height - 1) + row {
            return Err(EncodeError::FrameSize {
                expected: format!("{}x{} {}", self.width, self.height, self.input.label()),
                got: format!("{} bytes with stride {stride}", pixels.len()),
            });
        }
        // The frame may be coded larger than the picture (padding, see `coded_size`).
        if frame.format() != self.output
            || frame.width() < self.width
            || frame.height() < self.height
        {
            return Err(EncodeError::Settings("destination frame mismatch".into()));
        }
        let planes = frame.planes().min(4);
        // Plane addresses as integers so the band jobs may run on other threads; each band
        // writes only its own rows of each plane.
        let mut dst_base = [0usize; 4];
        let mut dst_stride = [0i32; 4];
        // SAFETY: `frame` is an allocated video frame of `planes` planes (checked against our
        // format above); reading its plane pointers and line sizes does not alias anything.
        unsafe {
            let raw = frame.as_mut_ptr();
            for p in 0..planes {
                dst_base[p] = (*raw).data[p] as usize;
                dst_stride[p] = (*raw).linesize[p];
            }
        }
        let chroma_rows = self.chroma_rows;
        let job = |band: &mut Band| {
            let src = [
                pixels[band.first_row * stride..].as_ptr(),
                ptr::null(),
                ptr::null(),
                ptr::null(),
            ];
            let src_stride = [stride as i32, 0, 0, 0];
            let mut dst = [ptr::null_mut::<u8>(); 4];
            for p in 0..planes {
                let rows_before = if p == 0 || p == 3 {
                    band.first_row
                } else {
                    band.first_row / chroma_rows
                };
                dst[p] = (dst_base[p] as *mut u8)
                    .wrapping_offset(rows_before as isize * dst_stride[p] as isize);
            }
            // SAFETY: the source holds `band.rows` rows of `stride` bytes from `band.first_row`
            // (length checked above); each destination pointer addresses this band's rows of a
            // plane of `frame`, which no other band writes; the context belongs to this band.
            unsafe {
                ffi::sws_scale(
                    band.context,
                    src.as_ptr(),
                    src_stride.as_ptr(),
                    0,
                    band.rows as i32,
                    dst.as_ptr(),
                    dst_stride.as_ptr(),
                )
            }
        };
        let results: Vec<i32> = if self.bands.len() == 1 {
            vec![job(&mut self.bands[0])]
        } else {
            let job = &job;
            std::thread::scope(|scope| {
                let (first, rest) = self.bands.split_first_mut().expect("at least one band");
                let handles: Vec<_> = rest
                    .iter_mut()
                    .map(|band| scope.spawn(move || job(band)))
                    .collect();
                let mut out = vec![job(first)];
                out.extend(handles.into_iter().map(|h| h.join().unwrap_or(-1)));
                out
            })
        };
        if results.iter().any(|&r| r <= 0) {
            return Err(EncodeError::Codec(format!(
                "swscale failed converting {} to {:?}",
                self.input.label(),
                self.output
            )));
        }
        Ok(())
    }
}
