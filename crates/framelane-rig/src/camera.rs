//! One camera: a capture thread (`rig-cap-NAME`) that never waits on encoding, and an encode
//! thread (`rig-enc-NAME`) that feeds the packet ring. Between them a bounded hand-off of
//! pooled buffers (at most `HANDOFF_FRAMES` frames and `HANDOFF_BYTES` bytes, see
//! [`handoff_frames`]); its policy is **drop the new frame** when full (capture must not
//! stall), counted in `dropped`. Keyframes are forced at every `gop_ms` boundary of
//! the shared monotonic clock, so all cameras' clips can start within one frame of each other.
//! A source that fails (device gone, stream drops, file ends) is reopened with backoff
//! (250 ms doubling to 5 s); its state and reason are shown; other cameras go on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use framelane_core::bus::RawPixelFormat;
use framelane_core::encode::packets::{EncodedPacket, PacketEncoder, StreamFormat};
use framelane_core::encode::{CodecFamily, EncoderSettings, Quality};
use framelane_core::fastlane::shm::monotonic_ns;
use serde::Serialize;

use crate::config::{parse_size, CameraConfig, RecordingConfig, SourceSpec};
use crate::ring::{PacketRing, TimedPacket};
use crate::source::Source;
use crate::RigError;

/// The newest frame, copied for previews at most this often.
const PREVIEW_EVERY_NS: u64 = 33_000_000;

/// A camera's newest frame for previews (packed RGB), refreshed by the capture thread when the
/// slot is free (never waiting for a reader), and only once something has asked for a preview.
#[derive(Debug, Default)]
pub struct Preview {
    pub width: u32,
    pub height: u32,
    /// Increases with every refresh; 0: none yet.
    pub seq: u64,
    pub rgb: Vec<u8>,
}

/// Frames waiting between capture and encoding, at most.
pub const HANDOFF_FRAMES: usize = 8;
/// Raw bytes a camera holds between capture and encoding, at most, counting the two buffers in
/// the threads' hands: 24 MiB. Two 1080p cameras would otherwise hold 2 × 10 × 6 MB of raw
/// frames whenever their encoders fall behind.
pub const HANDOFF_BYTES: usize = 24 << 20;

/// Frames the hand-off holds for frames of `frame_bytes`: what `HANDOFF_BYTES` allows after
/// the two in the threads' hands, from 1 to `HANDOFF_FRAMES` (7 at 720p RGB, 2 at 1080p).
pub fn handoff_frames(frame_bytes: usize) -> usize {
    (HANDOFF_BYTES / frame_bytes.max(1))
        .saturating_sub(2)
        .clamp(1, HANDOFF_FRAMES)
}
/// Hand-off latencies kept for the percentiles.
const LATENCY_SAMPLES: usize = 4096;

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a camera is doing, for the kiosk, the status and the tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CameraStatus {
    pub name: String,
    /// starting, live, retrying, failed.
    pub state: String,
    pub reason: String,
    pub captured: u64,
    /// Frames the encoder could not take in time (hand-off full).
    pub dropped: u64,
    pub encoded: u64,
    pub reopenings: u64,
    pub encoder: String,
    pub ring_packets: usize,
    pub ring_bytes: usize,
    pub ring_seconds: f64,
    /// Hand-off cost in microseconds (p50, p99, max) over the last samples.
    pub handoff_us: [f64; 3],
}

pub(crate) struct Shared {
    pub name: String,
    pub status: Mutex<CameraStatus>,
    pub ring: Mutex<PacketRing>,
    pub format: Mutex<Option<StreamFormat>>,
    pub stop: AtomicBool,
    handoff_ns: Mutex<Vec<u64>>,
    pub preview: Mutex<Preview>,
    /// Set by the first preview read: a headless rig never pays for preview copies.
    preview_wanted: AtomicBool,
}

impl Shared {
    fn set_state(&self, state: &str, reason: String) {
        let mut s = lock(&self.status);
        s.state = state.into();
        s.reason = reason;
    }
}

pub struct Camera {
    pub(crate) shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Captured {
    captured_ns: u64,
    rgb: Vec<u8>,
}

fn settings_for(recording: &RecordingConfig, fps: u32) -> EncoderSettings {
    let family = if recording.codec == "av1" {
        CodecFamily::Av1
    } else {
        CodecFamily::H264
    };
    let mut settings = EncoderSettings::for_family(family);
    if let Some(crf) = recording.crf {
        settings.quality = Quality::Crf(crf);
    }
    if let Some(kbps) = recording.bitrate_kbps {
        settings.quality = Quality::BitrateKbps(kbps);
    }
    settings.fps = fps;
    // Keyframes come at the clock's GOP boundaries (forced); the encoder's own GOP is only a
    // backstop twice as long.
    settings.gop = Some(((fps as u64 * recording.gop_ms * 2 / 1000).max(2)) as u32);
    // No look-ahead, no B-frames: packets leave the encoder with their frame.
    settings.tune = Some("zerolatency".into());
    settings.preset = Some(recording.preset.clone().unwrap_or_else(|| {
        if family == CodecFamily::H264 {
            "veryfast"
        } else {
            "10"
        }
        .into()
    }));
    settings
}

impl Camera {
    pub fn start(
        id: u64,
        config: &CameraConfig,
        recording: &RecordingConfig,
    ) -> Result<Self, RigError> {
        let camera_err = |reason: String| RigError::Camera {
            camera: config.name.clone(),
            reason,
        };
        let (width, height) = parse_size(&config.size).map_err(camera_err)?;
        let spec = SourceSpec::parse(&config.source).map_err(camera_err)?;
        let span_ns = (recording.pre_roll_ms + 2 * recording.gop_ms + 1000) * 1_000_000;
        let shared = Arc::new(Shared {
            name: config.name.clone(),
            status: Mutex::new(CameraStatus {
                name: config.name.clone(),
                state: "starting".into(),
                ..CameraStatus::default()
            }),
            ring: Mutex::new(PacketRing::new(span_ns, (recording.ring_mb as usize) << 20)),
            format: Mutex::new(None),
            stop: AtomicBool::new(false),
            handoff_ns: Mutex::new(Vec::with_capacity(LATENCY_SAMPLES)),
            preview: Mutex::new(Preview::default()),
            preview_wanted: AtomicBool::new(false),
        });
        let queued = handoff_frames(width as usize * height as usize * 3);
        let (frames_tx, frames_rx) = mpsc::sync_channel::<Captured>(queued);
        // Buffers are made on demand, up to the hand-off's size plus the two in the threads'
        // hands: an encoder that keeps up circulates two or three, not ten.
        let (pool_tx, pool_rx) = mpsc::sync_channel::<Vec<u8>>(queued + 2);
        let mut threads = Vec::new();
        let spawn = |name: String, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(body)
                .map_err(|source| RigError::Thread { name, source })
        };
        let s = shared.clone();
        let fps = config.fps;
        threads.push(spawn(
            format!("rig-cap-{}", config.name),
            Box::new(move || {
                let handoff = Handoff {
                    frames: &frames_tx,
                    pool: &pool_rx,
                    buffers: queued + 2,
                };
                capture_loop(&s, &spec, id, width, height, fps, &handoff)
            }),
        )?);
        let s = shared.clone();
        let settings = settings_for(recording, fps);
        let gop_ns = recording.gop_ms * 1_000_000;
        threads.push(spawn(
            format!("rig-enc-{}", config.name),
            Box::new(move || {
                encode_loop(&s, &settings, width, height, gop_ns, &frames_rx, &pool_tx)
            }),
        )?);
        Ok(Self {
            shared,
            threads: Mutex::new(threads),
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn status(&self) -> CameraStatus {
        let mut status = lock(&self.shared.status).clone();
        {
            let ring = lock(&self.shared.ring);
            status.ring_packets = ring.len();
            status.ring_bytes = ring.bytes();
            status.ring_seconds = match (ring.oldest_ns(), ring.newest_ns()) {
                (Some(a), Some(b)) => (b - a) as f64 / 1e9,
                _ => 0.0,
            };
        }
        let mut samples = lock(&self.shared.handoff_ns).clone();
        if !samples.is_empty() {
            samples.sort_unstable();
            let at =
                |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize] as f64 / 1e3;
            status.handoff_us = [at(0.5), at(0.99), at(1.0)];
        }
        status
    }

    /// Runs `read` on the newest preview frame when it is newer than `seen`; its sequence.
    /// The first call turns previews on for this camera.
    pub fn with_preview<T>(&self, seen: u64, read: impl FnOnce(&Preview) -> T) -> Option<(u64, T)> {
        self.shared.preview_wanted.store(true, Ordering::Relaxed);
        let preview = lock(&self.shared.preview);
        (preview.seq > seen && !preview.rgb.is_empty()).then(|| (preview.seq, read(&preview)))
    }

    /// Whether the camera is capturing (cheaper than [`Self::status`]).
    pub fn is_live(&self) -> bool {
        lock(&self.shared.status).state == "live"
    }

    /// Capture time of the newest encoded packet.
    pub fn newest_ns(&self) -> Option<u64> {
        lock(&self.shared.ring).newest_ns()
    }

    pub fn interval(&self, from_ns: u64, to_ns: u64) -> (Option<StreamFormat>, Vec<TimedPacket>) {
        let packets = lock(&self.shared.ring).interval(from_ns, to_ns);
        (lock(&self.shared.format).clone(), packets)
    }

    /// Stops capture and encoding and waits for both threads.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sleeps `total`, waking early when asked to stop.
fn nap(stop: &AtomicBool, total: Duration) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(
            Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
        );
    }
}

/// The capture side of the hand-off: where frames go, where their buffers come back, and how
/// many buffers it may make.
#[derive(Clone, Copy)]
struct Handoff<'a> {
    frames: &'a SyncSender<Captured>,
    pool: &'a Receiver<Vec<u8>>,
    buffers: usize,
}

fn capture_loop(
    shared: &Shared,
    spec: &SourceSpec,
    id: u64,
    width: u32,
    height: u32,
    fps: u32,
    handoff: &Handoff<'_>,
) {
    let Handoff {
        frames,
        pool,
        buffers,
    } = *handoff;
    let mut backoff = Duration::from_millis(250);
    let frame_bytes = width as usize * height as usize * 3;
    let mut spare: Vec<u8> = Vec::new();
    let mut made = 0usize;
    let mut last_preview = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let mut source = match Source::open(spec, id, width, height, fps) {
            Ok(source) => source,
            Err(reason) => {
                shared.set_state("retrying", format!("cannot open: {reason}"));
                lock(&shared.status).reopenings += 1;
                nap(&shared.stop, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        shared.set_state("live", String::new());
        while !shared.stop.load(Ordering::Relaxed) {
            let mut rgb = match pool.try_recv() {
                Ok(buffer) => buffer,
                Err(_) if spare.len() == frame_bytes => std::mem::take(&mut spare),
                Err(_) if made < buffers => {
                    made += 1;
                    vec![0u8; frame_bytes]
                }
                // Every buffer waits for the encoder: reuse the spare's memory (this frame will
                // not fit in the hand-off either, and is counted there).
                Err(_) => std::mem::take(&mut spare),
            };
            if rgb.len() != frame_bytes {
                rgb.resize(frame_bytes, 0);
            }
            let captured_ns = match source.read(&mut rgb) {
                Ok(Some(ns)) => ns,
                Ok(None) => {
                    shared.set_state("retrying", "the source ended".into());
                    spare = rgb;
                    break;
                }
                Err(reason) => {
                    shared.set_state("retrying", reason);
                    spare = rgb;
                    break;
                }
            };
            backoff = Duration::from_millis(250);
            lock(&shared.status).captured += 1;
            if shared.preview_wanted.load(Ordering::Relaxed)
                && captured_ns.saturating_sub(last_preview) >= PREVIEW_EVERY_NS
            {
                // try_lock: a preview being copied out is skipped, capture never waits.
                if let Ok(mut preview) = shared.preview.try_lock() {
                    preview.width = width;
                    preview.height = height;
                    preview.rgb.clear();
                    preview.rgb.extend_from_slice(&rgb);
                    preview.seq += 1;
                    last_preview = captured_ns;
                }
            }
            let t0 = monotonic_ns();
            let outcome = frames.try_send(Captured { captured_ns, rgb });
            let cost = monotonic_ns().saturating_sub(t0);
            match outcome {
                Ok(()) => {}
                Err(TrySendError::Full(back)) => {
                    lock(&shared.status).dropped += 1;
                    spare = back.rgb;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
            let mut samples = lock(&shared.handoff_ns);
            if samples.len() >= LATENCY_SAMPLES {
                samples.clear();
            }
            samples.push(cost);
        }
        lock(&shared.status).reopenings += 1;
        nap(&shared.stop, backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn encode_loop(
    shared: &Shared,
    settings: &EncoderSettings,
    width: u32,
    height: u32,
    gop_ns: u64,
    frames: &Receiver<Captured>,
    pool: &SyncSender<Vec<u8>>,
) {
    let mut encoder = match PacketEncoder::open(settings, RawPixelFormat::Rgb8, width, height) {
        Ok(encoder) => encoder,
        Err(err) => {
            shared.set_state("failed", format!("encoder: {err}"));
            return;
        }
    };
    lock(&shared.status).encoder = encoder.format().encoder.clone();
    *lock(&shared.format) = Some(encoder.format().clone());
    let fps = u64::from(settings.fps.max(1));
    let mut origin: Option<u64> = None;
    let mut last_pts: i64 = -1;
    let mut last_gop: Option<u64> = None;
    // Capture times of frames inside the encoder, by pts (no B-frames: packets leave in order).
    let mut in_flight: std::collections::VecDeque<(i64, u64)> = std::collections::VecDeque::new();
    let mut ready: Vec<EncodedPacket> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let frame = match frames.recv_timeout(Duration::from_millis(100)) {
            Ok(frame) => frame,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let start = *origin.get_or_insert(frame.captured_ns);
        // Presentation time from the capture time: a dropped frame leaves a gap, not a drift.
        let pts = (((frame.captured_ns - start) as u128 * fps as u128 + 500_000_000)
            / 1_000_000_000) as i64;
        let pts = pts.max(last_pts + 1);
        last_pts = pts;
        let gop = frame.captured_ns / gop_ns.max(1);
        let keyframe = last_gop != Some(gop);
        last_gop = Some(gop);
        in_flight.push_back((pts, frame.captured_ns));
        let result = encoder.encode(
            &frame.rgb,
            width as usize * 3,
            pts,
            keyframe,
            &mut |p: EncodedPacket| {
                ready.push(p);
            },
        );
        let _ = pool.try_send(frame.rgb);
        if let Err(err) = result {
            shared.set_state("failed", format!("encoding: {err}"));
            return;
        }
        let mut r = lock(&shared.ring);
        for packet in ready.drain(..) {
            while in_flight.front().is_some_and(|(p, _)| *p < packet.pts) {
                in_flight.pop_front();
            }
            let captured_ns = in_flight.front().map_or(frame.captured_ns, |(_, ns)| *ns);
            r.push(TimedPacket {
                captured_ns,
                packet,
            });
        }
        drop(r);
        lock(&shared.status).encoded += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_holds_fewer_frames_as_they_grow() {
        let rgb = |w: usize, h: usize| w * h * 3;
        assert_eq!(handoff_frames(rgb(84, 84)), HANDOFF_FRAMES);
        assert_eq!(handoff_frames(rgb(1280, 720)), 7);
        assert_eq!(handoff_frames(rgb(1920, 1080)), 2);
        // Never none: a 4K camera still has one frame of slack, past the byte budget.
        assert_eq!(handoff_frames(rgb(3840, 2160)), 1);
        for (w, h) in [(1280, 720), (1920, 1080)] {
            let held = (handoff_frames(rgb(w, h)) + 2) * rgb(w, h);
            assert!(held <= HANDOFF_BYTES, "{w}x{h}: {held} bytes held");
        }
    }
}
