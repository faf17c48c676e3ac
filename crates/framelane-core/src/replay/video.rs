//! Reading frames back out of an encoded file: seek to the keyframe at or before the wanted
//! frame, decode forward to exactly that frame, convert only that one to RGBA. Sequential
//! requests (playback, stepping) decode forward from the current position without seeking.

use std::path::{Path, PathBuf};

use ff::ffi;
use ffmpeg_next as ff;

use super::ReplayError;

/// Frames a seek aims before the wanted one (covers the decode-time lead of B-frames).
const SEEK_MARGIN_FRAMES: u64 = 4;

/// A decoded picture, RGBA, rows packed.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbaFrame {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// One open video file.
pub struct VideoReader {
    path: PathBuf,
    input: ff::format::context::Input,
    decoder: ff::decoder::Video,
    stream_index: usize,
    time_base: ff::Rational,
    start_pts: i64,
    fps: f64,
    decoded: ff::frame::Video,
    scaler: Option<ff::software::scaling::Context>,
    converted: ff::frame::Video,
    /// Number of the frame decoded last; forward requests close to it skip the seek.
    position: Option<u64>,
    /// Frames within which a forward request decodes on instead of seeking.
    forward_window: u64,
    at_eof: bool,
    /// The picture's size when the file is coded larger (padding): pictures are cropped to it.
    crop: Option<(u32, u32)>,
}

// SAFETY: the FFmpeg contexts are owned by this value alone (no shared pointers escape it) and
// FFmpeg allows a context to move between threads as long as one thread uses it at a time,
// which `&mut self` on every method guarantees.
unsafe impl Send for VideoReader {}

impl VideoReader {
    /// Opens `path`; `fps` is the file's frame rate as the index recorded it (0: from the file).
    pub fn open(path: &Path, fps: u32, gop: u32) -> Result<Self, ReplayError> {
        crate::encode::init_ffmpeg();
        let err = |what: &str, e: ff::Error| ReplayError::Video {
            path: path.to_owned(),
            reason: format!("{what}: {e}"),
        };
        let input = ff::format::input(path).map_err(|e| err("opening", e))?;
        let stream = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| ReplayError::Video {
                path: path.to_owned(),
                reason: "no video stream".into(),
            })?;
        let stream_index = stream.index();
        let time_base = stream.time_base();
        let start_pts = match stream.start_time() {
            t if t == ffi::AV_NOPTS_VALUE => 0,
            t => t,
        };
        let rate = stream.avg_frame_rate();
        let fps = if fps > 0 {
            fps as f64
        } else if rate.denominator() != 0 && rate.numerator() > 0 {
            f64::from(rate)
        } else {
            30.0
        };
        let mut context = ff::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| err("reading codec parameters", e))?;
        let mut threading = ff::threading::Config::kind(ff::threading::Type::Slice);
        threading.count = 0;
        context.set_threading(threading);
        let decoder = context
            .decoder()
            .video()
            .map_err(|e| err("opening the decoder", e))?;
        Ok(Self {
            path: path.to_owned(),
            input,
            decoder,
            stream_index,
            time_base,
            start_pts,
            fps,
            decoded: ff::frame::Video::empty(),
            scaler: None,
            converted: ff::frame::Video::empty(),
            position: None,
            forward_window: gop.max(1) as u64,
            at_eof: false,
            crop: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pictures come out cropped to `width` x `height` from the top-left corner: the size the
    /// index recorded for a file coded padded (odd sides, sides under the encoder's smallest).
    /// A size larger than the coded one changes nothing.
    pub fn crop_to(&mut self, width: u32, height: u32) {
        self.crop = (width > 0 && height > 0).then_some((width, height));
    }

    fn frame_number(&self, pts: i64) -> u64 {
        let seconds = (pts - self.start_pts) as f64 * f64::from(self.time_base);
        (seconds * self.fps).round().max(0.0) as u64
    }

    fn pts_of(&self, frame: u64) -> i64 {
        let seconds = frame as f64 / self.fps;
        self.start_pts + (seconds / f64::from(self.time_base)).round() as i64
    }

    /// Seeks to the keyframe at or before `frame`.
    fn seek(&mut self, frame: u64) -> Result<(), ReplayError> {
        let ts = self.pts_of(frame);
        // SAFETY: `self.input` is an open format context owned by this reader; the stream
        // index was checked when the reader opened; av_seek_frame reads only its arguments.
        let ret = unsafe {
            ffi::av_seek_frame(
                self.input.as_mut_ptr(),
                self.stream_index as i32,
                ts,
                ffi::AVSEEK_FLAG_BACKWARD,
            )
        };
        if ret < 0 {
            return Err(ReplayError::Video {
                path: self.path.clone(),
                reason: format!("seeking to frame {frame}: {}", ff::Error::from(ret)),
            });
        }
        self.decoder.flush();
        self.position = None;
        self.at_eof = false;
        Ok(())
    }

    /// Decodes the next frame; returns its number, or None at the end of the file.
    fn decode_next(&mut self) -> Result<Option<u64>, ReplayError> {
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {
                    let pts = self
                        .decoded
                        .timestamp()
                        .or(self.decoded.pts())
                        .unwrap_or(self.start_pts);
                    let number = self.frame_number(pts);
                    self.position = Some(number);
                    return Ok(Some(number));
                }
                Err(ff::Error::Eof) => return Ok(None),
                Err(ff::Error::Other { errno }) if errno == libc::EAGAIN => {}
                Err(e) => {
                    return Err(ReplayError::Video {
                        path: self.path.clone(),
                        reason: format!("decoding: {e}"),
                    })
                }
            }
            if self.at_eof {
                return Ok(None);
            }
            let mut packet = ff::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.is_corrupt() {
                        // The demuxer cut this packet short (the file ends inside it).
                        self.at_eof = true;
                        let _ = self.decoder.send_eof();
                    } else if packet.stream() == self.stream_index {
                        // A damaged packet (a file cut short by a crash) ends decoding there.
                        if self.decoder.send_packet(&packet).is_err() {
                            self.at_eof = true;
                            let _ = self.decoder.send_eof();
                        }
                    }
                }
                Err(ff::Error::Eof) | Err(_) => {
                    self.at_eof = true;
                    let _ = self.decoder.send_eof();
                }
            }
        }
    }

    /// The picture of frame `frame` as RGBA, or None when the file does not hold it.
    pub fn frame(&mut self, frame: u64) -> Result<Option<RgbaFrame>, ReplayError> {
        let forward = self
            .position
            .is_some_and(|p| p < frame && frame - p <= self.forward_window);
        if forward {
            if let Some(found) = self.decode_until(frame)? {
                return Ok(found);
            }
        }
        // Demuxers search keyframes by decode time, which runs ahead of presentation time when
        // there are B-frames: aim a few frames early, and a GOP earlier if that still lands
        // after the wanted frame.
        for back in [
            SEEK_MARGIN_FRAMES,
            self.forward_window + SEEK_MARGIN_FRAMES,
            frame,
        ] {
            self.seek(frame.saturating_sub(back))?;
            if let Some(found) = self.decode_until(frame)? {
                return Ok(found);
            }
            if back >= frame {
                break;
            }
        }
        Ok(None)
    }

    /// Decodes forward to `frame`: Some(Some) found, Some(None) the file ends or skips it,
    /// None when decoding started after it (seek earlier).
    fn decode_until(&mut self, frame: u64) -> Result<Option<Option<RgbaFrame>>, ReplayError> {
        let mut first = true;
        loop {
            match self.decode_next()? {
                Some(n) if n == frame => return self.convert().map(|f| Some(Some(f))),
                Some(n) if n > frame => return Ok(if first { None } else { Some(None) }),
                Some(_) => first = false,
                None => return Ok(Some(None)),
            }
        }
    }

    /// Goes back to the first frame: the next [`Self::next_frame`] returns it.
    pub fn rewind(&mut self) -> Result<(), ReplayError> {
        self.seek(0)
    }

    /// The next picture in presentation order with its frame number (numbers may skip where
    /// the recording dropped frames), or None at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<(u64, RgbaFrame)>, ReplayError> {
        match self.decode_next()? {
            Some(n) => Ok(Some((n, self.convert()?))),
            None => Ok(None),
        }
    }

    /// Frames per second the frame numbers count in.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// Decodes every frame from the start, calling `visit(number, picture)`.
    pub fn for_each(&mut self, mut visit: impl FnMut(u64, &RgbaFrame)) -> Result<u64, ReplayError> {
        self.seek(0)?;
        let mut count = 0;
        while let Some(n) = self.decode_next()? {
            let picture = self.convert()?;
            visit(n, &picture);
            count += 1;
        }
        Ok(count)
    }

    /// Counts the decodable frames (no conversion).
    pub fn count_frames(&mut self) -> Result<u64, ReplayError> {
        self.seek(0)?;
        let mut count = 0;
        while self.decode_next()?.is_some() {
            count += 1;
        }
        Ok(count)
    }

    fn convert(&mut self) -> Result<RgbaFrame, ReplayError> {
        let (width, height, format) = (
            self.decoded.width(),
            self.decoded.height(),
            self.decoded.format(),
        );
        let stale = self.scaler.as_ref().is_none_or(|s| {
            s.input().width != width || s.input().height != height || s.input().format != format
        });
        if stale {
            self.scaler = Some(
                ff::software::scaling::Context::get(
                    format,
                    width,
                    height,
                    ff::format::Pixel::RGBA,
                    width,
                    height,
                    ff::software::scaling::Flags::BILINEAR,
                )
                .map_err(|e| ReplayError::Video {
                    path: self.path.clone(),
                    reason: format!("colour conversion: {e}"),
                })?,
            );
            self.converted = ff::frame::Video::new(ff::format::Pixel::RGBA, width, height);
        }
        if let Some(scaler) = self.scaler.as_mut() {
            scaler
                .run(&self.decoded, &mut self.converted)
                .map_err(|e| ReplayError::Video {
                    path: self.path.clone(),
                    reason: format!("colour conversion: {e}"),
                })?;
        }
        let (width, height) = match self.crop {
            Some((w, h)) => (w.min(width), h.min(height)),
            None => (width, height),
        };
        let row = width as usize * 4;
        let stride = self.converted.stride(0);
        let data = self.converted.data(0);
        let mut rgba = Vec::with_capacity(row * height as usize);
        for y in 0..height as usize {
            rgba.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        Ok(RgbaFrame {
            width,
            height,
            rgba,
        })
    }
}
