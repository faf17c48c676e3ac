//! Where a camera's frames come from: a synthetic source whose frames carry their frame number
//! and camera id in their pixels (tests, benchmarks, demos), OpenCV `VideoCapture` (a V4L2
//! device, a video file, an RTSP/HTTP stream), or a fast-lane run (a robot process already
//! publishing its frames). Frames are packed RGB of the configured size,
//! stamped with the one monotonic clock every camera shares.

use std::time::Duration;

use framelane_core::fastlane::shm::monotonic_ns;
use framelane_core::media::stamp::stamp;
use opencv::core::{Mat, Size};
use opencv::prelude::*;
use opencv::{imgproc, videoio};

use crate::config::SourceSpec;

/// Waits until monotonic time `due_ns`.
fn wait_until(due_ns: u64) {
    let now = monotonic_ns();
    if due_ns > now {
        std::thread::sleep(Duration::from_nanos(due_ns - now));
    }
}

/// Frames painted in memory at the camera's rate.
pub struct Synthetic {
    camera_id: u64,
    width: u32,
    height: u32,
    period_ns: u64,
    start_ns: u64,
    next: u64,
    background: Vec<u8>,
}

impl Synthetic {
    pub fn new(camera_id: u64, width: u32, height: u32, fps: u32) -> Self {
        let (w, h) = (width as usize, height as usize);
        let mut background = vec![0u8; w * h * 3];
        let tint = [
            (camera_id * 70 % 200) as u8 + 30,
            60,
            160u8.wrapping_sub((camera_id * 40) as u8),
        ];
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                background[i] = tint[0].saturating_add((x * 40 / w.max(1)) as u8);
                background[i + 1] = tint[1].saturating_add((y * 60 / h.max(1)) as u8);
                background[i + 2] = tint[2];
            }
        }
        Self {
            camera_id,
            width,
            height,
            period_ns: 1_000_000_000 / u64::from(fps.max(1)),
            start_ns: monotonic_ns(),
            next: 0,
            background,
        }
    }

    /// The next frame into `rgb`, at the camera's rate; its capture time.
    pub fn read_into(&mut self, rgb: &mut [u8]) -> Option<u64> {
        let due = self.start_ns + self.next * self.period_ns;
        wait_until(due);
        let captured = monotonic_ns();
        rgb.copy_from_slice(&self.background);
        // A bar that moves, so consecutive frames differ like a camera's.
        let (w, h) = (self.width as usize, self.height as usize);
        let bar = (self.next as usize * 4) % w.max(1);
        for y in 0..h / 2 {
            for x in bar..(bar + 8).min(w) {
                let i = (y * w + x) * 3;
                rgb[i..i + 3].fill(230);
            }
        }
        stamp(self.next, 0, rgb, self.width, self.height);
        stamp(self.camera_id, 1, rgb, self.width, self.height);
        self.next += 1;
        Some(captured)
    }
}

/// OpenCV capture, scaled to the configured size, paced at the configured rate for files.
pub struct Capture {
    capture: videoio::VideoCapture,
    is_file: bool,
    width: u32,
    height: u32,
    period_ns: u64,
    next_due: u64,
    frame: Mat,
    scaled: Mat,
}

impl Capture {
    fn open(spec: &SourceSpec, width: u32, height: u32, fps: u32) -> Result<Self, String> {
        let (capture, is_file) = match spec {
            SourceSpec::Device(index) => (
                videoio::VideoCapture::new(*index, videoio::CAP_V4L2).map_err(|e| e.message)?,
                false,
            ),
            SourceSpec::Open(target) => {
                let is_file = !target.contains("://");
                if is_file && !std::path::Path::new(target).is_file() {
                    return Err(format!("{target}: no such file"));
                }
                (
                    videoio::VideoCapture::from_file(target, videoio::CAP_FFMPEG)
                        .map_err(|e| e.message)?,
                    is_file,
                )
            }
            SourceSpec::Synthetic | SourceSpec::FastLane(_) => {
                return Err("not an OpenCV source".into())
            }
        };
        if !capture.is_opened().unwrap_or(false) {
            return Err("cannot be opened".into());
        }
        Ok(Self {
            capture,
            is_file,
            width,
            height,
            period_ns: 1_000_000_000 / u64::from(fps.max(1)),
            next_due: monotonic_ns(),
            frame: Mat::default(),
            scaled: Mat::default(),
        })
    }

    fn read(&mut self, rgb: &mut [u8]) -> Result<Option<u64>, String> {
        if self.is_file {
            wait_until(self.next_due);
            self.next_due += self.period_ns;
        }
        if !self.capture.read(&mut self.frame).map_err(|e| e.message)? || self.frame.empty() {
            return Ok(None);
        }
        let captured = monotonic_ns();
        let size = Size::new(self.width as i32, self.height as i32);
        let src = if self.frame.cols() != size.width || self.frame.rows() != size.height {
            imgproc::resize(
                &self.frame,
                &mut self.scaled,
                size,
                0.0,
                0.0,
                imgproc::INTER_AREA,
            )
            .map_err(|e| e.message)?;
            &self.scaled
        } else {
            &self.frame
        };
        let mut out = Mat::default();
        imgproc::cvt_color(src, &mut out, imgproc::COLOR_BGR2RGB, 0).map_err(|e| e.message)?;
        let bytes = out.data_bytes().map_err(|e| e.message)?;
        if bytes.len() != rgb.len() {
            return Err(format!(
                "frame of {} bytes, expected {}",
                bytes.len(),
                rgb.len()
            ));
        }
        rgb.copy_from_slice(bytes);
        Ok(Some(captured))
    }
}

/// The newest frames of a fast-lane run: each read waits (polling every 2 ms, at most 2 s) for
/// a frame newer than the last one, at most at the camera's rate, converts it to RGB and
/// scales it to the configured size.
pub struct FastLane {
    reader: framelane_core::fastlane::FastLaneReader,
    raw: Vec<u8>,
    rgb: Vec<u8>,
    width: u32,
    height: u32,
    period_ns: u64,
    next_due: u64,
    scaled: Mat,
}

impl FastLane {
    fn open(run: &str, width: u32, height: u32, fps: u32) -> Result<Self, String> {
        let reader =
            framelane_core::fastlane::FastLaneReader::attach(run).map_err(|e| e.to_string())?;
        let g = reader.geometry();
        let raw = vec![0u8; g.width as usize * g.height as usize * g.format.bytes_per_pixel()];
        Ok(Self {
            reader,
            raw,
            rgb: Vec::new(),
            width,
            height,
            period_ns: 1_000_000_000 / u64::from(fps.max(1)),
            next_due: monotonic_ns(),
            scaled: Mat::default(),
        })
    }

    fn read(&mut self, out: &mut [u8]) -> Result<Option<u64>, String> {
        use framelane_core::fastlane::{PixelFormat, ReadOutcome, WriterStatus};
        wait_until(self.next_due);
        self.next_due = monotonic_ns() + self.period_ns;
        let g = self.reader.geometry();
        let stride = g.width as usize * g.format.bytes_per_pixel();
        let give_up = monotonic_ns() + 2_000_000_000;
        loop {
            match self
                .reader
                .read_newest(&mut self.raw, stride)
                .map_err(|e| e.to_string())?
            {
                ReadOutcome::Frame(_) => break,
                ReadOutcome::NoFrameYet | ReadOutcome::Unchanged | ReadOutcome::Torn => {
                    if let WriterStatus::Gone { reason } = self.reader.writer_status() {
                        return Err(format!("the fast-lane writer is gone: {reason}"));
                    }
                    if self.reader.writer_status() == WriterStatus::Replaced {
                        return Err("the fast-lane segment was replaced; attaching again".into());
                    }
                    if monotonic_ns() > give_up {
                        return Err("no new fast-lane frame for 2 s".into());
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        let captured = monotonic_ns();
        let pixels = g.width as usize * g.height as usize;
        self.rgb.resize(pixels * 3, 0);
        match g.format {
            PixelFormat::Rgb8 => self.rgb.copy_from_slice(&self.raw[..pixels * 3]),
            PixelFormat::Rgba8 => {
                for (d, s) in self.rgb.chunks_exact_mut(3).zip(self.raw.chunks_exact(4)) {
                    d.copy_from_slice(&s[..3]);
                }
            }
            PixelFormat::Bgra8 => {
                for (d, s) in self.rgb.chunks_exact_mut(3).zip(self.raw.chunks_exact(4)) {
                    d[0] = s[2];
                    d[1] = s[1];
                    d[2] = s[0];
                }
            }
        }
        if g.width == self.width && g.height == self.height {
            out.copy_from_slice(&self.rgb);
        } else {
            let src = Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(
                g.height as i32,
                g.width as i32,
                &self.rgb,
            )
            .map_err(|e| e.message)?;
            let size = Size::new(self.width as i32, self.height as i32);
            imgproc::resize(&src, &mut self.scaled, size, 0.0, 0.0, imgproc::INTER_AREA)
                .map_err(|e| e.message)?;
            let bytes = self.scaled.data_bytes().map_err(|e| e.message)?;
            if bytes.len() != out.len() {
                return Err(format!(
                    "scaled frame of {} bytes, expected {}",
                    bytes.len(),
                    out.len()
                ));
            }
            out.copy_from_slice(bytes);
        }
        Ok(Some(captured))
    }
}

pub enum Source {
    Synthetic(Box<Synthetic>),
    Capture(Box<Capture>),
    FastLane(Box<FastLane>),
}

impl Source {
    pub fn open(
        spec: &SourceSpec,
        camera_id: u64,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Self, String> {
        match spec {
            SourceSpec::Synthetic => Ok(Self::Synthetic(Box::new(Synthetic::new(
                camera_id, width, height, fps,
            )))),
            SourceSpec::FastLane(run) => {
                FastLane::open(run, width, height, fps).map(|f| Self::FastLane(Box::new(f)))
            }
            other => Capture::open(other, width, height, fps).map(|c| Self::Capture(Box::new(c))),
        }
    }

    /// The next frame into `rgb` (width x height x 3); its capture time, None at the end of
    /// a file or stream, an error when the source failed.
    pub fn read(&mut self, rgb: &mut [u8]) -> Result<Option<u64>, String> {
        match self {
            Self::Synthetic(s) => Ok(s.read_into(rgb)),
            Self::Capture(c) => c.read(rgb),
            Self::FastLane(f) => f.read(rgb),
        }
    }
}
