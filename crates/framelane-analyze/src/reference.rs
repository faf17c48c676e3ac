//! Read loops for the benchmark, all over the same file and stride, each returning a checksum
//! of every frame it analysed (so "same frames, same pixels" can be checked):
//! - [`framelane_loop`]: the analysis's own walk: decode all, signature on all, convert the
//!   selected frames only;
//! - [`decode_convert_all`]: the original tool's read loop: every frame decoded and converted to
//!   BGR, every `stride`-th analysed;
//! - [`opencv_grab_retrieve`]: its planned fix: OpenCV `grab()` every frame, `retrieve()` only
//!   the analysed ones;
//! - [`full_rgb_scene_loop`]: a scene detector that converts every frame to full-size HSV.

use std::path::Path;
use std::time::Instant;

use opencv::core::Mat;
use opencv::prelude::*;
use opencv::{imgproc, videoio};
use serde::Serialize;

use crate::decode::{BgrImage, EpisodeDecoder, Signature};
use crate::scene::SceneDetector;
use crate::AnalyzeError;

/// What one loop did.
#[derive(Debug, Clone, Serialize)]
pub struct LoopFigures {
    pub name: String,
    pub frames: u64,
    pub analysed: u64,
    pub wall_s: f64,
    /// User + system CPU time of the process during the loop.
    pub cpu_s: f64,
    pub fps: f64,
    /// Scene cuts found (scene loops only).
    pub cuts: u64,
    /// (frame, checksum of its BGR pixels) of every analysed frame.
    #[serde(skip)]
    pub checksums: Vec<(u64, u64)>,
}

/// User + system CPU seconds this process has used so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A fast 64-bit checksum of a picture (8 bytes at a time, multiply-rotate mixing): cheap
/// enough that it does not weigh on the loops it checks, strong enough to tell frames apart.
pub fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = bytes.len() as u64 ^ K;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut v = [0u8; 8];
        v.copy_from_slice(word);
        h = (h ^ u64::from_le_bytes(v)).wrapping_mul(K).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    h ^ (h >> 31)
}

struct Meter {
    wall: Instant,
    cpu: f64,
}

impl Meter {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    fn finish(
        self,
        name: &str,
        frames: u64,
        analysed: u64,
        cuts: u64,
        checksums: Vec<(u64, u64)>,
    ) -> LoopFigures {
        let wall_s = self.wall.elapsed().as_secs_f64();
        LoopFigures {
            name: name.into(),
            frames,
            analysed,
            wall_s,
            cpu_s: cpu_seconds() - self.cpu,
            fps: if wall_s > 0.0 {
                frames as f64 / wall_s
            } else {
                0.0
            },
            cuts,
            checksums,
        }
    }
}

/// Decodes every frame of `path`, takes its signature and looks for cuts, and hands each frame
/// to `each`; returns (frames, cuts).
fn walk_with_cuts(
    path: &Path,
    threshold: f64,
    mut each: impl FnMut(&mut EpisodeDecoder, u64) -> Result<(), AnalyzeError>,
) -> Result<(u64, u64), AnalyzeError> {
    let mut decoder = EpisodeDecoder::open(path)?;
    let mut scene = SceneDetector::new(threshold, 6, 24);
    let mut signature = Signature::default();
    let (mut frames, mut cuts) = (0, 0);
    while let Some(stamp) = decoder.next_frame()? {
        frames += 1;
        decoder.signature(&mut signature)?;
        if scene
            .observe(stamp.number, stamp.time, &signature)
            .is_some()
        {
            cuts += 1;
        }
        each(&mut decoder, stamp.number)?;
    }
    Ok((frames, cuts))
}

/// The analysis's walk without detection: signature and cut detection on every frame, BGR
/// conversion of the frames the rules select (stride and cuts, no warm-up here so the three
/// loops analyse the same frames when the video has no cuts).
pub fn framelane_loop(
    path: &Path,
    stride: u64,
    threshold: f64,
) -> Result<LoopFigures, AnalyzeError> {
    let meter = Meter::start();
    let mut bgr = BgrImage::default();
    let mut checksums = Vec::new();
    let (frames, cuts) = walk_with_cuts(path, threshold, |decoder, number| {
        if number % stride == 0 {
            decoder.convert_bgr(&mut bgr)?;
            checksums.push((number, checksum(&bgr.data)));
        }
        Ok(())
    })?;
    let analysed = checksums.len() as u64;
    Ok(meter.finish(
        "framelane (decode all, convert selected)",
        frames,
        analysed,
        cuts,
        checksums,
    ))
}

/// Decode and convert every frame; analyse every `stride`-th.
pub fn decode_convert_all(path: &Path, stride: u64) -> Result<LoopFigures, AnalyzeError> {
    let meter = Meter::start();
    let mut decoder = EpisodeDecoder::open(path)?;
    let mut bgr = BgrImage::default();
    let mut frames = 0;
    let mut checksums = Vec::new();
    while let Some(stamp) = decoder.next_frame()? {
        frames += 1;
        decoder.convert_bgr(&mut bgr)?;
        if stamp.number % stride == 0 {
            checksums.push((stamp.number, checksum(&bgr.data)));
        }
    }
    let analysed = checksums.len() as u64;
    Ok(meter.finish(
        "decode and convert every frame",
        frames,
        analysed,
        0,
        checksums,
    ))
}

/// OpenCV `VideoCapture`: `grab()` every frame, `retrieve()` every `stride`-th.
pub fn opencv_grab_retrieve(path: &Path, stride: u64) -> Result<LoopFigures, AnalyzeError> {
    let meter = Meter::start();
    let mut capture = videoio::VideoCapture::from_file(path, videoio::CAP_FFMPEG)?;
    if !capture.is_opened()? {
        return Err(AnalyzeError::Open {
            path: path.to_owned(),
            reason: "OpenCV cannot open it".into(),
        });
    }
    let mut frame = Mat::default();
    let mut frames = 0u64;
    let mut checksums = Vec::new();
    while capture.grab()? {
        if frames % stride == 0 {
            capture.retrieve(&mut frame, 0)?;
            let bytes = frame.data_bytes()?;
            checksums.push((frames, checksum(bytes)));
        }
        frames += 1;
    }
    let analysed = checksums.len() as u64;
    Ok(meter.finish("OpenCV grab/retrieve", frames, analysed, 0, checksums))
}

/// A scene detector that converts every frame to full-size HSV and histograms every pixel.
pub fn full_rgb_scene_loop(path: &Path, threshold: f64) -> Result<LoopFigures, AnalyzeError> {
    let meter = Meter::start();
    let mut decoder = EpisodeDecoder::open(path)?;
    let mut bgr = BgrImage::default();
    let mut hsv = Mat::default();
    let mut scene = SceneDetector::new(threshold, 6, 24);
    let mut signature = Signature::default();
    let (mut frames, mut cuts) = (0, 0);
    while let Some(stamp) = decoder.next_frame()? {
        frames += 1;
        decoder.convert_bgr(&mut bgr)?;
        let mat = Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(
            bgr.height as i32,
            bgr.width as i32,
            &bgr.data,
        )?;
        imgproc::cvt_color(&mat, &mut hsv, imgproc::COLOR_BGR2HSV, 0)?;
        signature = Signature::default();
        for px in hsv.data_bytes()?.chunks_exact(3) {
            signature.luma[(px[2] >> 3) as usize] += 1;
            signature.cb[((u16::from(px[0]) * 16) / 180).min(15) as usize] += 1;
            signature.cr[(px[1] >> 4) as usize] += 1;
        }
        if scene
            .observe(stamp.number, stamp.time, &signature)
            .is_some()
        {
            cuts += 1;
        }
    }
    let _ = signature;
    Ok(meter.finish("full-frame HSV scene detector", frames, 0, cuts, Vec::new()))
}

/// Scene detection alone through the analysis's signatures (no conversion at all).
pub fn signature_scene_loop(path: &Path, threshold: f64) -> Result<LoopFigures, AnalyzeError> {
    let meter = Meter::start();
    let (frames, cuts) = walk_with_cuts(path, threshold, |_, _| Ok(()))?;
    Ok(meter.finish("framelane plane signatures", frames, 0, cuts, Vec::new()))
}
