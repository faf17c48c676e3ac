//! Demo producer: publishes a moving synthetic pattern and HUD values into a fast-lane segment
//! at a chosen size and rate, with rewards that behave like a learning run. Used by the GUI's
//! built-in demo run (which also records it through a daemon: `telemetry`), the tests and the
//! benchmarks.

mod telemetry;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use telemetry::{stream_demo_telemetry, DEMO_PROFILE};

use framelane_core::fastlane::{
    FastLaneError, FastLaneWriter, FrameGeometry, HudValues, PixelFormat, WriterConfig,
};

/// Steps per demo episode (4 s at the default 60 Hz).
pub const EPISODE_LENGTH: u64 = 240;
/// Pixels the pattern moves per frame.
const SCROLL_PER_FRAME: usize = 3;

/// What the demo producer publishes and for how long.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub run_id: String,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Frames per second; 0 publishes as fast as possible.
    pub rate_hz: f64,
    /// Stop after this many frames (None: no limit).
    pub frames: Option<u64>,
    /// Stop after this long (None: no limit).
    pub duration: Option<Duration>,
    pub capacity: u32,
    /// Updated with the number of the last frame published (for the demo's telemetry).
    pub published: Option<Arc<AtomicU64>>,
    /// A rate cap asked for over the control stream (frames per second; 0: none), applied
    /// from the next frame on.
    pub rate_cap_hz: Option<Arc<AtomicU32>>,
}

/// What a finished demo run achieved.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct DemoReport {
    pub frames: u64,
    pub seconds: f64,
    pub steps_per_second: f64,
}

/// The demo's moving pattern: a wide, smooth base image, of which each frame shows a window
/// shifted by the frame number. Smooth so that a scaled rendering can be compared to it.
pub struct DemoPattern {
    geometry: FrameGeometry,
    base: Vec<u8>,
    base_stride: usize,
}

impl DemoPattern {
    pub fn new(geometry: FrameGeometry) -> Self {
        let (w, h) = (geometry.width as usize, geometry.height as usize);
        let bpp = geometry.format.bytes_per_pixel();
        let base_stride = 2 * w * bpp;
        let mut base = vec![0u8; base_stride * h];
        for y in 0..h {
            for x in 0..2 * w {
                let [r, g, b] = Self::color(x % w, y, w, h);
                let px = &mut base[y * base_stride + x * bpp..][..bpp];
                match geometry.format {
                    PixelFormat::Rgb8 => px.copy_from_slice(&[r, g, b]),
                    PixelFormat::Rgba8 => px.copy_from_slice(&[r, g, b, 255]),
                    PixelFormat::Bgra8 => px.copy_from_slice(&[b, g, r, 255]),
                }
            }
        }
        Self {
            geometry,
            base,
            base_stride,
        }
    }

    /// Colour at base column `x` (0..w) and row `y`: a horizontal triangle wave in red, a
    /// vertical ramp in green, blue falling with green.
    pub fn color(x: usize, y: usize, w: usize, h: usize) -> [u8; 3] {
        let phase = x as f64 / w as f64;
        let tri = 1.0 - (2.0 * phase - 1.0).abs();
        let g = y as f64 / (h.max(2) - 1) as f64;
        [
            (tri * 255.0) as u8,
            (g * 255.0) as u8,
            (255.0 - g * 160.0) as u8,
        ]
    }

    /// Horizontal offset of frame `number` into the base image.
    pub fn offset(&self, number: u64) -> usize {
        (number as usize).wrapping_mul(SCROLL_PER_FRAME) % self.geometry.width as usize
    }

    /// Colour of pixel (x, y) of frame `number`.
    pub fn pixel(&self, number: u64, x: usize, y: usize) -> [u8; 3] {
        let w = self.geometry.width as usize;
        Self::color(
            (x + self.offset(number)) % w,
            y,
            w,
            self.geometry.height as usize,
        )
    }

    /// Draws frame `number` into `dst` (tightly packed rows).
    pub fn render(&self, number: u64, dst: &mut [u8]) {
        let row = self.geometry.row_bytes();
        let start = self.offset(number) * self.geometry.format.bytes_per_pixel();
        for (y, out) in dst.chunks_exact_mut(row).enumerate() {
            out.copy_from_slice(&self.base[y * self.base_stride + start..][..row]);
        }
    }
}

/// HUD values the demo publishes with frame `number`; `episodic_return` is carried along.
pub fn demo_hud(number: u64, episodic_return: &mut f64, steps_per_second: f64) -> HudValues {
    let step_in_episode = number % EPISODE_LENGTH;
    if step_in_episode == 0 {
        *episodic_return = 0.0;
    }
    // A learning curve: the mean reward of an episode rises towards 0.6, under a wobble.
    let episode = number / EPISODE_LENGTH;
    let reward =
        0.6 * (1.0 - (-(episode as f64) / 6.0).exp()) + 0.25 * (number as f64 * 0.05).sin();
    *episodic_return += reward;
    HudValues {
        episode: number / EPISODE_LENGTH,
        step: number,
        reward,
        episodic_return: *episodic_return,
        steps_per_second,
    }
}

/// Publishes the demo pattern until `stop` is set or the configured frames or time are done.
/// Time between frames: the configured rate, or the cap asked for when lower (None: as fast as
/// possible).
fn pacing(config: &DemoConfig) -> Option<Duration> {
    let cap = config
        .rate_cap_hz
        .as_ref()
        .map_or(0, |c| c.load(Ordering::Relaxed));
    let rate = match (config.rate_hz > 0.0, cap > 0) {
        (true, true) => config.rate_hz.min(f64::from(cap)),
        (true, false) => config.rate_hz,
        (false, true) => f64::from(cap),
        (false, false) => return None,
    };
    Some(Duration::from_secs_f64(1.0 / rate))
}

pub fn run_demo(config: &DemoConfig, stop: &AtomicBool) -> Result<DemoReport, FastLaneError> {
    let mut writer_config = WriterConfig::new(config.width, config.height, config.format);
    writer_config.capacity = config.capacity;
    let mut writer = FastLaneWriter::create(&config.run_id, writer_config)?;
    let pattern = DemoPattern::new(writer.geometry());
    tracing::info!(run = %config.run_id, width = config.width, height = config.height, rate = config.rate_hz, "demo producer started");

    let started = Instant::now();
    let mut next_deadline = started;
    let mut episodic_return = 0.0;
    let (mut rate_window_start, mut rate_window_frames, mut measured_rate) = (started, 0u64, 0.0);
    loop {
        if stop.load(Ordering::Relaxed)
            || config.frames.is_some_and(|n| writer.published() >= n)
            || config.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        let number = writer.published() + 1;
        let hud = demo_hud(number, &mut episodic_return, measured_rate);
        writer.publish_with(&hud, |dst| pattern.render(number, dst));
        if let Some(published) = &config.published {
            published.store(number, Ordering::Release);
        }

        rate_window_frames += 1;
        let window = rate_window_start.elapsed();
        if window >= Duration::from_millis(500) {
            measured_rate = rate_window_frames as f64 / window.as_secs_f64();
            rate_window_start = Instant::now();
            rate_window_frames = 0;
        }
        if let Some(period) = pacing(config) {
            next_deadline += period;
            let now = Instant::now();
            if next_deadline > now {
                std::thread::sleep(next_deadline - now);
            } else if now - next_deadline > period * 4 {
                // Fell far behind (machine busy): do not burst to catch up.
                next_deadline = now;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let frames = writer.published();
    Ok(DemoReport {
        frames,
        seconds,
        steps_per_second: if seconds > 0.0 {
            frames as f64 / seconds
        } else {
            0.0
        },
    })
}
