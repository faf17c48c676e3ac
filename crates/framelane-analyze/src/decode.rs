//! Walking an episode video: every packet is demuxed and decoded (inter frames need their
//! references), every frame gets a cheap [`Signature`] read straight from the decoder's luma and
//! chroma planes, and a frame is converted to packed BGR only when the caller asks for it.
//!
//! Frame numbers count decoded frames in presentation order, from 0; times come from each
//! frame's own timestamp, so variable frame rate does not drift them.

use std::path::{Path, PathBuf};

use ff::ffi;
use ff::format::Pixel;
use ffmpeg_next as ff;

use crate::AnalyzeError;

/// Largest picture analysed (8192 x 8192): a header claiming more is refused before anything
/// is allocated for it.
pub const MAX_PIXELS: u64 = 8192 * 8192;

/// Bins of the luma histogram in a signature.
pub const LUMA_BINS: usize = 32;
/// Bins of each chroma histogram.
pub const CHROMA_BINS: usize = 16;
/// Samples a signature takes across a row and down a column, at most.
const SAMPLES_ACROSS: u32 = 128;
const SAMPLES_DOWN: u32 = 72;

/// A cheap per-frame summary: histograms of subsampled Y, U and V.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub luma: [u32; LUMA_BINS],
    pub cb: [u32; CHROMA_BINS],
    pub cr: [u32; CHROMA_BINS],
}

impl Default for Signature {
    fn default() -> Self {
        Self {
            luma: [0; LUMA_BINS],
            cb: [0; CHROMA_BINS],
            cr: [0; CHROMA_BINS],
        }
    }
}

fn histogram_distance(a: &[u32], b: &[u32]) -> f64 {
    let na: u64 = a.iter().map(|&v| u64::from(v)).sum();
    let nb: u64 = b.iter().map(|&v| u64::from(v)).sum();
    if na == 0 || nb == 0 {
        return if na == nb { 0.0 } else { 1.0 };
    }
    let l1: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) / na as f64 - f64::from(y) / nb as f64).abs())
        .sum();
    0.5 * l1
}

impl Signature {
    /// How different two frames look, 0 (same histograms) to 1 (disjoint): the mean of the
    /// total-variation distances of the three histograms.
    pub fn distance(&self, other: &Signature) -> f64 {
        (histogram_distance(&self.luma, &other.luma)
            + histogram_distance(&self.cb, &other.cb)
            + histogram_distance(&self.cr, &other.cr))
            / 3.0
    }

    fn clear(&mut self) {
        self.luma = [0; LUMA_BINS];
        self.cb = [0; CHROMA_BINS];
        self.cr = [0; CHROMA_BINS];
    }
}

/// How a decoded frame's chroma is laid out, for the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planes {
    /// Y, U, V planes; chroma subsampled by (1 << x_shift, 1 << y_shift).
    Planar { x_shift: u32, y_shift: u32 },
    /// Y plane and one interleaved UV plane at half size in both directions (NV12).
    SemiPlanar,
    /// Anything else: converted to a small YUV 4:2:0 picture first.
    Other,
}

fn planes_of(format: Pixel) -> Planes {
    match format {
        Pixel::YUV420P | Pixel::YUVJ420P => Planes::Planar {
            x_shift: 1,
            y_shift: 1,
        },
        Pixel::YUV422P | Pixel::YUVJ422P => Planes::Planar {
            x_shift: 1,
            y_shift: 0,
        },
        Pixel::YUV444P | Pixel::YUVJ444P => Planes::Planar {
            x_shift: 0,
            y_shift: 0,
        },
        Pixel::NV12 => Planes::SemiPlanar,
        _ => Planes::Other,
    }
}

/// A frame converted for analysis: packed BGR rows (what OpenCV expects), no padding.
#[derive(Debug, Clone, Default)]
pub struct BgrImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// What is known about the video before the walk.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    pub codec: String,
    /// Frames the container declares (0 when it does not say).
    pub declared_frames: u64,
    /// Average frame rate from the container (0 when unknown).
    pub fps: f64,
    pub duration_s: f64,
}

/// The frame the walk stands on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameStamp {
    /// Presentation-order number from 0.
    pub number: u64,
    /// Seconds from the stream's start, from the frame's timestamp.
    pub time: f64,
}

/// One open episode video.
pub struct EpisodeDecoder {
    path: PathBuf,
    input: ff::format::context::Input,
    decoder: ff::decoder::Video,
    stream_index: usize,
    time_base: f64,
    start_pts: i64,
    info: VideoInfo,
    packet: ff::Packet,
    decoded: ff::frame::Video,
    /// Frames handed out so far.
    frames: u64,
    draining: bool,
    finished: bool,
    /// Last timestamp seen, for frames without one.
    last_time: f64,
    signature_scaler: Option<ff::software::scaling::Context>,
    small: ff::frame::Video,
    bgr_scaler: Option<ff::software::scaling::Context>,
}

// SAFETY: the FFmpeg contexts belong to this value alone and are used through `&mut self` only,
// one thread at a time, which FFmpeg allows.
unsafe impl Send for EpisodeDecoder {}

impl EpisodeDecoder {
    /// Opens `path`; decoding is strict (`AV_EF_EXPLODE`): damaged data is an error naming the
    /// frame, not a silently concealed picture.
    pub fn open(path: &Path) -> Result<Self, AnalyzeError> {
        framelane_core::encode::init_ffmpeg();
        let open_err = |reason: String| AnalyzeError::Open {
            path: path.to_owned(),
            reason,
        };
        if !path.is_file() {
            return Err(open_err("no such file".into()));
        }
        let input =
            ff::format::input(path).map_err(|e| open_err(format!("not a readable video: {e}")))?;
        let stream = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| open_err("holds no video stream".into()))?;
        let stream_index = stream.index();
        let time_base = f64::from(stream.time_base());
        let start_pts = match stream.start_time() {
            t if t == ffi::AV_NOPTS_VALUE => 0,
            t => t,
        };
        let rate = stream.avg_frame_rate();
        let fps = if rate.numerator() > 0 && rate.denominator() > 0 {
            f64::from(rate)
        } else {
            0.0
        };
        let declared_frames = u64::try_from(stream.frames()).unwrap_or(0);
        let duration_s = if stream.duration() > 0 {
            stream.duration() as f64 * time_base
        } else if input.duration() > 0 {
            input.duration() as f64 / f64::from(ffi::AV_TIME_BASE)
        } else {
            0.0
        };
        let mut context = ff::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| open_err(format!("reading the codec parameters: {e}")))?;
        // SAFETY: the context was just allocated and is owned here; err_recognition is a plain
        // int field read by the decoder when it opens.
        unsafe {
            (*context.as_mut_ptr()).err_recognition |= ffi::AV_EF_EXPLODE;
        }
        let mut threading = ff::threading::Config::kind(ff::threading::Type::Frame);
        threading.count = 0;
        context.set_threading(threading);
        let decoder = context
            .decoder()
            .video()
            .map_err(|e| open_err(format!("opening the decoder: {e}")))?;
        if decoder.width() == 0 || decoder.height() == 0 {
            return Err(open_err("the video stream has no picture size".into()));
        }
        if u64::from(decoder.width()) * u64::from(decoder.height()) > MAX_PIXELS {
            return Err(open_err(format!(
                "{}x{} is larger than analysis takes ({MAX_PIXELS} pixels)",
                decoder.width(),
                decoder.height()
            )));
        }
        let codec = decoder
            .codec()
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let info = VideoInfo {
            width: decoder.width(),
            height: decoder.height(),
            codec,
            declared_frames,
            fps,
            duration_s,
        };
        Ok(Self {
            path: path.to_owned(),
            input,
            decoder,
            stream_index,
            time_base,
            start_pts,
            info,
            packet: ff::Packet::empty(),
            decoded: ff::frame::Video::empty(),
            frames: 0,
            draining: false,
            finished: false,
            last_time: 0.0,
            signature_scaler: None,
            small: ff::frame::Video::empty(),
            bgr_scaler: None,
        })
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames decoded so far.
    pub fn frames_decoded(&self) -> u64 {
        self.frames
    }

    fn corrupt(&self, reason: String) -> AnalyzeError {
        AnalyzeError::Corrupt {
            path: self.path.clone(),
            frame: self.frames,
            time: self.last_time,
            reason,
        }
    }

    /// Decodes the next frame in presentation order; None at the end of the video. A video
    /// that ends before the frames its container declares is [`AnalyzeError::Truncated`].
    pub fn next_frame(&mut self) -> Result<Option<FrameStamp>, AnalyzeError> {
        if self.finished {
            return Ok(None);
        }
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {
                    let number = self.frames;
                    self.frames += 1;
                    let time = match self.decoded.timestamp().or(self.decoded.pts()) {
                        Some(ts) => (ts - self.start_pts) as f64 * self.time_base,
                        None if self.info.fps > 0.0 => number as f64 / self.info.fps,
                        None => self.last_time,
                    };
                    self.last_time = time;
                    return Ok(Some(FrameStamp { number, time }));
                }
                Err(ff::Error::Eof) => {
                    self.finished = true;
                    // Containers count frames in their index; a cut-off file decodes fewer.
                    let declared = self.info.declared_frames;
                    if declared > 0 && self.frames < declared {
                        return Err(AnalyzeError::Truncated {
                            path: self.path.clone(),
                            decoded: self.frames,
                            declared,
                        });
                    }
                    return Ok(None);
                }
                Err(ff::Error::Other { errno }) if errno == libc_eagain() => {}
                Err(e) => return Err(self.corrupt(format!("decoding: {e}"))),
            }
            if self.draining {
                continue;
            }
            // The decoder wants input: the next packet of our stream.
            loop {
                match self.packet.read(&mut self.input) {
                    Ok(()) => {
                        if self.packet.stream() != self.stream_index {
                            continue;
                        }
                        if let Err(e) = self.decoder.send_packet(&self.packet) {
                            return Err(self.corrupt(format!("decoding a packet: {e}")));
                        }
                        break;
                    }
                    Err(ff::Error::Eof) => {
                        self.draining = true;
                        if let Err(e) = self.decoder.send_eof() {
                            return Err(self.corrupt(format!("flushing the decoder: {e}")));
                        }
                        break;
                    }
                    Err(e) => return Err(self.corrupt(format!("reading a packet: {e}"))),
                }
            }
        }
    }

    /// The signature of the frame `next_frame` returned last, into `out`.
    pub fn signature(&mut self, out: &mut Signature) -> Result<(), AnalyzeError> {
        out.clear();
        let format = self.decoded.format();
        let (width, height) = (self.decoded.width(), self.decoded.height());
        match planes_of(format) {
            Planes::Planar { x_shift, y_shift } => {
                sample_plane(&self.decoded, 0, width, height, &mut out.luma);
                let (cw, ch) = (width.div_ceil(1 << x_shift), height.div_ceil(1 << y_shift));
                sample_plane(&self.decoded, 1, cw, ch, &mut out.cb);
                sample_plane(&self.decoded, 2, cw, ch, &mut out.cr);
            }
            Planes::SemiPlanar => {
                sample_plane(&self.decoded, 0, width, height, &mut out.luma);
                let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
                sample_interleaved(&self.decoded, cw, ch, out);
            }
            Planes::Other => {
                let target = (SAMPLES_ACROSS.min(width) & !1).max(2);
                let target_h = (SAMPLES_DOWN.min(height) & !1).max(2);
                if self.signature_scaler.is_none() {
                    let scaler = ff::software::scaling::Context::get(
                        format,
                        width,
                        height,
                        Pixel::YUV420P,
                        target,
                        target_h,
                        ff::software::scaling::Flags::AREA,
                    )
                    .map_err(|e| self.corrupt(format!("preparing a {format:?} signature: {e}")))?;
                    self.signature_scaler = Some(scaler);
                }
                if let Some(scaler) = self.signature_scaler.as_mut() {
                    scaler.run(&self.decoded, &mut self.small).map_err(|e| {
                        AnalyzeError::Corrupt {
                            path: self.path.clone(),
                            frame: self.frames.saturating_sub(1),
                            time: self.last_time,
                            reason: format!("signature conversion: {e}"),
                        }
                    })?;
                }
                sample_plane(&self.small, 0, target, target_h, &mut out.luma);
                sample_plane(&self.small, 1, target / 2, target_h / 2, &mut out.cb);
                sample_plane(&self.small, 2, target / 2, target_h / 2, &mut out.cr);
            }
        }
        Ok(())
    }

    /// Converts the frame `next_frame` returned last to packed BGR, into `out` (its buffer is
    /// reused).
    pub fn convert_bgr(&mut self, out: &mut BgrImage) -> Result<(), AnalyzeError> {
        let (width, height, format) = (
            self.decoded.width(),
            self.decoded.height(),
            self.decoded.format(),
        );
        let stale = self.bgr_scaler.as_ref().is_none_or(|s| {
            let input = s.input();
            input.format != format || input.width != width || input.height != height
        });
        if stale {
            let scaler = ff::software::scaling::Context::get(
                format,
                width,
                height,
                Pixel::BGR24,
                width,
                height,
                ff::software::scaling::Flags::BILINEAR,
            )
            .map_err(|e| {
                self.corrupt(format!("preparing the BGR conversion from {format:?}: {e}"))
            })?;
            self.bgr_scaler = Some(scaler);
        }
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(self.corrupt(format!(
                "a {width}x{height} frame is larger than analysis takes"
            )));
        }
        let row = width as usize * 3;
        out.width = width;
        out.height = height;
        out.data.resize(row * height as usize, 0);
        let (Ok(h), Ok(stride)) = (i32::try_from(height), i32::try_from(row)) else {
            return Err(self.corrupt(format!("{width}x{height} is too large to convert")));
        };
        let Some(scaler) = self.bgr_scaler.as_mut() else {
            return Err(self.corrupt("no BGR conversion".into()));
        };
        // Straight into the caller's packed buffer: no intermediate frame, no second copy.
        // SAFETY: the scaler was made for this frame's format and size (checked above); the
        // source pointers and line sizes are the decoded frame's own; the destination holds
        // `height` rows of `row` bytes, exactly what a BGR24 picture of this size needs, and
        // BGR24 has one plane, so the other destination pointers are never read.
        let ret = unsafe {
            let src = self.decoded.as_ptr();
            let dst_data: [*mut u8; 4] = [
                out.data.as_mut_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ];
            let dst_stride: [i32; 4] = [stride, 0, 0, 0];
            ffi::sws_scale(
                scaler.as_mut_ptr(),
                (*src).data.as_ptr() as *const *const u8,
                (*src).linesize.as_ptr(),
                0,
                h,
                dst_data.as_ptr(),
                dst_stride.as_ptr(),
            )
        };
        if ret != h {
            let frame = self.frames.saturating_sub(1);
            return Err(AnalyzeError::Corrupt {
                path: self.path.clone(),
                frame,
                time: self.last_time,
                reason: format!("BGR conversion gave {ret} of {h} rows"),
            });
        }
        Ok(())
    }
}

fn libc_eagain() -> i32 {
    // EAGAIN: the decoder needs another packet before it can give a frame.
    11
}

fn sample_step(extent: u32, samples: u32) -> usize {
    (extent / samples).max(1) as usize
}

/// Adds a subsampled histogram of plane `plane` (`width` x `height` bytes) to `bins`.
fn sample_plane(frame: &ff::frame::Video, plane: usize, width: u32, height: u32, bins: &mut [u32]) {
    let data = frame.data(plane);
    let stride = frame.stride(plane);
    let shift = 8 - bins.len().trailing_zeros();
    let (sx, sy) = (
        sample_step(width, SAMPLES_ACROSS),
        sample_step(height, SAMPLES_DOWN),
    );
    for y in (0..height as usize).step_by(sy) {
        let start = y * stride;
        let Some(row) = data.get(start..start + width as usize) else {
            break;
        };
        for &v in row.iter().step_by(sx) {
            bins[(v >> shift) as usize] += 1;
        }
    }
}

/// Chroma histograms of an interleaved UV plane (NV12).
fn sample_interleaved(frame: &ff::frame::Video, width: u32, height: u32, out: &mut Signature) {
    let data = frame.data(1);
    let stride = frame.stride(1);
    let shift = 8 - CHROMA_BINS.trailing_zeros();
    let (sx, sy) = (
        sample_step(width, SAMPLES_ACROSS),
        sample_step(height, SAMPLES_DOWN),
    );
    for y in (0..height as usize).step_by(sy) {
        let start = y * stride;
        let Some(row) = data.get(start..start + 2 * width as usize) else {
            break;
        };
        for uv in row.chunks_exact(2).step_by(sx) {
            out.cb[(uv[0] >> shift) as usize] += 1;
            out.cr[(uv[1] >> shift) as usize] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_zero_for_equal_and_one_for_disjoint_histograms() {
        let mut a = Signature::default();
        a.luma[0] = 10;
        a.cb[0] = 10;
        a.cr[0] = 10;
        assert_eq!(a.distance(&a.clone()), 0.0);
        let mut b = Signature::default();
        b.luma[31] = 5;
        b.cb[15] = 5;
        b.cr[15] = 5;
        assert!((a.distance(&b) - 1.0).abs() < 1e-12);
        // Scale does not matter: the histograms are normalised.
        let mut c = a.clone();
        c.luma[0] = 1000;
        c.cb[0] = 1000;
        c.cr[0] = 1000;
        assert_eq!(a.distance(&c), 0.0);
    }

    #[test]
    fn empty_histograms_are_equal_and_unlike_a_full_one() {
        let empty = Signature::default();
        assert_eq!(empty.distance(&Signature::default()), 0.0);
        let mut full = Signature::default();
        full.luma[3] = 1;
        assert!(empty.distance(&full) > 0.3);
    }
}
