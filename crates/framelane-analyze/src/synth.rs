//! Test videos with known content, for the tests and the benchmark: scenes of known lengths
//! (each its own colours, so cuts fall on known frames), an optional face picture moving across
//! them, and every frame's number written into its pixels (a row of black and white blocks),
//! so an exported JPEG can be checked to be the frame its manifest names. Frames are piped to
//! the `ffmpeg` tool (libx264 with B-frames).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::AnalyzeError;

/// A packed RGB picture.
#[derive(Debug, Clone)]
pub struct Sprite {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Sprite {
    /// Loads a PNG and keeps the `w` x `h` region at (`x`, `y`).
    pub fn from_png(path: &Path, (x, y, w, h): (u32, u32, u32, u32)) -> Result<Self, AnalyzeError> {
        let bytes = std::fs::read(path).map_err(|e| AnalyzeError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let image = framelane_core::media::decode_png(&bytes).map_err(|e| AnalyzeError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let (iw, ih) = (image.width, image.height);
        if w == 0
            || h == 0
            || x.checked_add(w).is_none_or(|r| r > iw)
            || y.checked_add(h).is_none_or(|b| b > ih)
        {
            return Err(AnalyzeError::Open {
                path: path.to_owned(),
                reason: format!("region {w}x{h} at ({x}, {y}) is outside the {iw}x{ih} picture"),
            });
        }
        let rgba = image.into_rgba();
        let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
        for row in y..y + h {
            let start = (row as usize * iw as usize + x as usize) * 4;
            for px in rgba[start..start + w as usize * 4].chunks_exact(4) {
                rgb.extend_from_slice(&px[..3]);
            }
        }
        Ok(Self {
            width: w,
            height: h,
            rgb,
        })
    }
}

/// A face shown over frames `start..end`, its top-left corner moving from `from` to `to`.
#[derive(Debug, Clone)]
pub struct FaceShot {
    pub start: u64,
    pub end: u64,
    pub from: (i32, i32),
    pub to: (i32, i32),
}

/// What to write.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Lengths of the scenes in frames, in order.
    pub scenes: Vec<u64>,
    pub face: Option<Sprite>,
    pub shots: Vec<FaceShot>,
    pub bframes: u32,
    pub gop: u32,
    pub crf: u32,
    /// x264 preset (ultrafast for big benchmark files).
    pub preset: String,
}

impl SynthSpec {
    pub fn new(width: u32, height: u32, fps: u32, scenes: Vec<u64>) -> Self {
        Self {
            width,
            height,
            fps,
            scenes,
            face: None,
            shots: Vec::new(),
            bframes: 2,
            gop: 48,
            crf: 18,
            preset: "veryfast".into(),
        }
    }

    pub fn frames(&self) -> u64 {
        self.scenes.iter().sum()
    }

    /// Frames that start a scene (every scene but the first).
    pub fn cut_frames(&self) -> Vec<u64> {
        let mut at = 0;
        let mut cuts = Vec::new();
        for (i, len) in self.scenes.iter().enumerate() {
            if i > 0 {
                cuts.push(at);
            }
            at += len;
        }
        cuts
    }

    /// Where the face's top-left corner is in frame `n`, if shown.
    pub fn face_at(&self, n: u64) -> Option<(i32, i32)> {
        let shot = self.shots.iter().find(|s| (s.start..s.end).contains(&n))?;
        let span = (shot.end - shot.start).max(2) - 1;
        let f = (n - shot.start) as f64 / span as f64;
        let lerp = |a: i32, b: i32| a + ((b - a) as f64 * f).round() as i32;
        Some((lerp(shot.from.0, shot.to.0), lerp(shot.from.1, shot.to.1)))
    }

    /// Paints frame `n` into `rgb` (packed, `width * height * 3`).
    pub fn paint(&self, n: u64, rgb: &mut [u8]) {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut scene = 0;
        let mut at = 0;
        for (i, len) in self.scenes.iter().enumerate() {
            if n < at + len {
                scene = i;
                break;
            }
            at += len;
            scene = i;
        }
        let base = scene_colour(scene);
        for y in 0..h {
            let shade = (y * 64 / h.max(1)) as u8;
            for x in 0..w {
                let i = (y * w + x) * 3;
                let ripple = ((x / 8 + y / 8) % 2) as u8 * 12;
                rgb[i] = base[0].saturating_add(shade / 2).saturating_add(ripple);
                rgb[i + 1] = base[1].saturating_add(shade / 3);
                rgb[i + 2] = base[2].saturating_add(shade);
            }
        }
        if let (Some(face), Some((fx, fy))) = (&self.face, self.face_at(n)) {
            for sy in 0..face.height as i32 {
                let y = fy + sy;
                if y < 0 || y >= h as i32 {
                    continue;
                }
                for sx in 0..face.width as i32 {
                    let x = fx + sx;
                    if x < 0 || x >= w as i32 {
                        continue;
                    }
                    let s = ((sy as usize) * face.width as usize + sx as usize) * 3;
                    let d = (y as usize * w + x as usize) * 3;
                    rgb[d..d + 3].copy_from_slice(&face.rgb[s..s + 3]);
                }
            }
        }
        stamp(n, rgb, self.width, self.height);
    }

    /// Writes the video to `path` through the ffmpeg tool.
    pub fn write(&self, path: &Path) -> Result<PathBuf, AnalyzeError> {
        let err = |reason: String| AnalyzeError::output(path, reason);
        let mut child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
            ])
            .args(["-s", &format!("{}x{}", self.width, self.height)])
            .args(["-r", &self.fps.to_string(), "-i", "-"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                &self.preset,
                "-crf",
                &self.crf.to_string(),
            ])
            .args([
                "-bf",
                &self.bframes.to_string(),
                "-g",
                &self.gop.to_string(),
            ])
            // Cuts fall where the scenes say, not where x264's scene detection would put keyframes.
            .args([
                "-sc_threshold",
                "0",
                "-pix_fmt",
                "yuv420p",
                "-movflags",
                "+faststart",
            ])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("starting ffmpeg: {e}")))?;
        let mut frame = vec![0u8; self.width as usize * self.height as usize * 3];
        {
            let Some(mut stdin) = child.stdin.take() else {
                return Err(err("ffmpeg has no stdin".into()));
            };
            for n in 0..self.frames() {
                self.paint(n, &mut frame);
                if let Err(e) = stdin.write_all(&frame) {
                    return Err(err(format!("writing frame {n} to ffmpeg: {e}")));
                }
            }
        }
        let output = child
            .wait_with_output()
            .map_err(|e| err(format!("waiting for ffmpeg: {e}")))?;
        if !output.status.success() {
            return Err(err(format!(
                "ffmpeg failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(path.to_owned())
    }
}

/// Colours far apart from scene to scene.
fn scene_colour(scene: usize) -> [u8; 3] {
    const COLOURS: [[u8; 3]; 6] = [
        [20, 40, 140],
        [150, 30, 30],
        [30, 130, 40],
        [140, 120, 20],
        [100, 20, 120],
        [20, 120, 130],
    ];
    COLOURS[scene % COLOURS.len()]
}

pub use framelane_core::media::stamp::{STAMP_BITS, STAMP_BLOCK};

/// Writes frame number `n` into the bottom stamp row.
pub fn stamp(n: u64, rgb: &mut [u8], width: u32, height: u32) {
    framelane_core::media::stamp::stamp(n, 0, rgb, width, height);
}

/// Reads the frame number [`stamp`] wrote.
pub fn read_stamp(pixels: &[u8], width: u32, height: u32, channels: usize) -> Option<u64> {
    framelane_core::media::stamp::read_stamp(pixels, width, height, channels, 0)
}
