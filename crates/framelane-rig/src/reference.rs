//! The design the rig replaces, for the benchmark: raw frames of the pre-roll kept in a
//! fixed-length deque per camera, and on a trigger every frame of the clip encoded through
//! OpenCV's `VideoWriter`, trying H264, avc1, then MJPG, as such rigs do.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use framelane_core::fastlane::shm::monotonic_ns;
use opencv::core::{Mat, Size, Vec3b};
use opencv::prelude::*;
use opencv::{imgproc, videoio};

use crate::camera::lock;
use crate::source::Synthetic;
use crate::RigError;

type Frames = VecDeque<(u64, Vec<u8>)>;

struct CameraState {
    /// The last `pre_frames` raw frames.
    deque: Mutex<Frames>,
    /// Frames of clips being collected after their trigger (trigger time, post end, frames).
    collecting: Mutex<Vec<(u64, Frames)>>,
    captured: Mutex<u64>,
}

/// The raw-deque rig: `cameras` synthetic cameras of `width` x `height` at `fps`.
pub struct DequeRig {
    cameras: Vec<Arc<CameraState>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    width: u32,
    height: u32,
    fps: u32,
    pre_ns: u64,
    post_ns: u64,
}

impl DequeRig {
    pub fn start(
        cameras: usize,
        width: u32,
        height: u32,
        fps: u32,
        pre_ms: u64,
        post_ms: u64,
    ) -> Result<Self, RigError> {
        let pre_frames = (pre_ms * u64::from(fps)).div_ceil(1000) as usize;
        let stop = Arc::new(AtomicBool::new(false));
        let mut states = Vec::new();
        let mut threads = Vec::new();
        for id in 0..cameras {
            let state = Arc::new(CameraState {
                deque: Mutex::new(VecDeque::with_capacity(pre_frames + 1)),
                collecting: Mutex::new(Vec::new()),
                captured: Mutex::new(0),
            });
            let (s, stop) = (state.clone(), stop.clone());
            let name = format!("deque-cap-{id}");
            threads.push(
                std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || {
                        let mut source = Synthetic::new(id as u64, width, height, fps);
                        let bytes = width as usize * height as usize * 3;
                        while !stop.load(Ordering::Relaxed) {
                            let mut rgb = vec![0u8; bytes];
                            let Some(ns) = source.read_into(&mut rgb) else {
                                break;
                            };
                            *lock(&s.captured) += 1;
                            for (_, frames) in lock(&s.collecting).iter_mut() {
                                frames.push_back((ns, rgb.clone()));
                            }
                            let mut deque = lock(&s.deque);
                            deque.push_back((ns, rgb));
                            while deque.len() > pre_frames {
                                deque.pop_front();
                            }
                        }
                    })
                    .map_err(|source| RigError::Thread { name, source })?,
            );
            states.push(state);
        }
        Ok(Self {
            cameras: states,
            stop,
            threads,
            width,
            height,
            fps,
            pre_ns: pre_ms * 1_000_000,
            post_ns: post_ms * 1_000_000,
        })
    }

    pub fn captured(&self) -> u64 {
        self.cameras.iter().map(|c| *lock(&c.captured)).sum()
    }

    /// Triggers now, waits for the post-roll and encodes every camera's clip into `dir` with
    /// OpenCV's VideoWriter; returns the files and the fourcc used.
    pub fn trigger_and_write(
        &self,
        dir: &Path,
        id: usize,
    ) -> Result<(Vec<PathBuf>, String), RigError> {
        let t = monotonic_ns();
        for camera in &self.cameras {
            let snapshot: Frames = lock(&camera.deque)
                .iter()
                .filter(|(ns, _)| *ns + self.pre_ns >= t)
                .cloned()
                .collect();
            lock(&camera.collecting).push((t, snapshot));
        }
        let end = t + self.post_ns;
        while monotonic_ns() < end {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut files = Vec::new();
        let mut used = String::new();
        for (i, camera) in self.cameras.iter().enumerate() {
            let frames = {
                let mut collecting = lock(&camera.collecting);
                match collecting.iter().position(|(at, _)| *at == t) {
                    Some(at) => collecting.remove(at).1,
                    None => VecDeque::new(),
                }
            };
            let (path, fourcc) = self.write(dir, id, i, &frames)?;
            used = fourcc;
            files.push(path);
        }
        Ok((files, used))
    }

    fn write(
        &self,
        dir: &Path,
        id: usize,
        camera: usize,
        frames: &Frames,
    ) -> Result<(PathBuf, String), RigError> {
        let size = Size::new(self.width as i32, self.height as i32);
        let err = |path: &Path, reason: String| RigError::Output {
            path: path.to_owned(),
            reason,
        };
        for (code, ext) in [("H264", "mp4"), ("avc1", "mp4"), ("MJPG", "avi")] {
            let path = dir.join(format!("deque-{id}-{camera}.{ext}"));
            let c: Vec<char> = code.chars().collect();
            let fourcc = videoio::VideoWriter::fourcc(c[0], c[1], c[2], c[3])
                .map_err(|e| err(&path, e.message))?;
            let Ok(mut writer) =
                videoio::VideoWriter::new(&path, fourcc, f64::from(self.fps), size, true)
            else {
                continue;
            };
            if !writer.is_opened().unwrap_or(false) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let mut bgr = Mat::default();
            for (_, rgb) in frames {
                let mat = Mat::new_rows_cols_with_bytes::<Vec3b>(size.height, size.width, rgb)
                    .map_err(|e| err(&path, e.message))?;
                imgproc::cvt_color(&mat, &mut bgr, imgproc::COLOR_RGB2BGR, 0)
                    .map_err(|e| err(&path, e.message))?;
                writer.write(&bgr).map_err(|e| err(&path, e.message))?;
            }
            writer.release().map_err(|e| err(&path, e.message))?;
            return Ok((path, code.to_owned()));
        }
        Err(err(
            dir,
            "no OpenCV VideoWriter codec opened (H264, avc1, MJPG)".into(),
        ))
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
