//! The rig: its cameras, the trigger queue, the clip thread (`rig-clip`) and the control
//! socket (`rig-control`, `<output>/rig.sock`: one line per command, `trigger` or `status`).
//!
//! Overlapping triggers follow the config's policy: `extend` (a trigger before the running
//! clip's end moves its end to that trigger's post-roll; one clip, no frame lost) or `next`
//! (every trigger is a clip of its own; their frames overlap). The trigger queue holds
//! `TRIGGER_QUEUE` triggers; beyond that a trigger is refused and counted (a stuck disk must
//! not grow memory without bound). Before a clip is written the free space of the output folder
//! is checked against `disk_reserve_mb`: below it the clip is not written and the error says so.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use framelane_core::fastlane::shm::monotonic_ns;

use crate::camera::{lock, Camera};
use crate::clip::{self, ClipDescription};
use crate::config::{OverlapPolicy, RigConfig};
pub use crate::control::{free_mb, RigStatus, TriggerHandle};
pub(crate) use crate::control::{status, trigger, ControlHandle, State};
use crate::RigError;

/// Triggers waiting for their clip, at most.
pub const TRIGGER_QUEUE: usize = 64;
/// The control socket's file name in the output folder.
pub const SOCKET: &str = "rig.sock";
/// A clip is written this long after its end at the latest, even if a camera lags or failed.
const CAMERA_GRACE: Duration = Duration::from_secs(3);

pub struct Rig {
    config: RigConfig,
    cameras: Arc<Vec<Camera>>,
    triggers: SyncSender<u64>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    socket: PathBuf,
    grpc_addr: Option<std::net::SocketAddr>,
}

struct Pending {
    triggers: Vec<u64>,
    from_ns: u64,
    to_ns: u64,
}

impl Rig {
    pub fn start(config: RigConfig) -> Result<Self, RigError> {
        let grpc = crate::grpc::bind(&config)?;
        let out = config.output_dir();
        std::fs::create_dir_all(&out).map_err(|e| RigError::Output {
            path: out.clone(),
            reason: e.to_string(),
        })?;
        let socket = out.join(SOCKET);
        if UnixStream::connect(&socket).is_ok() {
            return Err(RigError::Output {
                path: socket,
                reason: "another rig records into this folder".into(),
            });
        }
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(|e| RigError::Output {
            path: socket.clone(),
            reason: format!("control socket: {e}"),
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| RigError::Output {
                path: socket.clone(),
                reason: e.to_string(),
            })?;
        let mut cameras = Vec::new();
        for (i, camera) in config.cameras.iter().enumerate() {
            cameras.push(Camera::start(i as u64, camera, &config.recording)?);
        }
        let cameras = Arc::new(cameras);
        let (triggers, received) = mpsc::sync_channel::<u64>(TRIGGER_QUEUE);
        let state = Arc::new(Mutex::new(State {
            started: Some(Instant::now()),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (cameras, state, stop, config) =
                (cameras.clone(), state.clone(), stop.clone(), config.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("rig-clip".into())
                    .spawn(move || clip_loop(&config, &cameras, &received, &state, &stop))
                    .map_err(|source| RigError::Thread {
                        name: "rig-clip".into(),
                        source,
                    })?,
            );
        }
        if config.recording.trigger_on_episode_end {
            if let Some(data_dir) = config.telemetry_data_dir() {
                let handle = TriggerHandle {
                    triggers: triggers.clone(),
                    state: state.clone(),
                };
                let (stop, runs) = (stop.clone(), config.recording.trigger_runs.clone());
                // Taken here, not in the thread: an episode the daemon receives after `start`
                // returns must count even when the thread is scheduled later than that.
                let since = unix_now_ns();
                threads.push(
                    std::thread::Builder::new()
                        .name("rig-telemetry".into())
                        .spawn(move || {
                            episode_trigger_loop(&data_dir, &runs, since, &handle, &stop)
                        })
                        .map_err(|source| RigError::Thread {
                            name: "rig-telemetry".into(),
                            source,
                        })?,
                );
            }
        }
        let rig_for_control = ControlHandle {
            triggers: triggers.clone(),
            state: state.clone(),
            cameras: cameras.clone(),
            config: config.clone(),
            seq: Arc::new(AtomicU64::new(0)),
        };
        let mut grpc_addr = None;
        if let Some((listener, bound)) = grpc {
            threads.push(crate::grpc::spawn(
                listener,
                rig_for_control.clone(),
                stop.clone(),
            )?);
            tracing::info!(address = %bound, "rig gRPC API listening");
            grpc_addr = Some(bound);
        }
        if let Some(data_dir) = config.telemetry_data_dir() {
            let (state, stop, out) = (state.clone(), stop.clone(), config.output_dir());
            threads.push(
                std::thread::Builder::new()
                    .name("rig-register".into())
                    .spawn(move || crate::registry::register_loop(&data_dir, &out, &state, &stop))
                    .map_err(|source| RigError::Thread {
                        name: "rig-register".into(),
                        source,
                    })?,
            );
        }
        {
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("rig-control".into())
                    .spawn(move || control_loop(&listener, &rig_for_control, &stop))
                    .map_err(|source| RigError::Thread {
                        name: "rig-control".into(),
                        source,
                    })?,
            );
        }
        Ok(Self {
            config,
            cameras,
            triggers,
            state,
            stop,
            threads,
            socket,
            grpc_addr,
        })
    }

    /// Where the rig's gRPC API listens (`recording.grpc_listen`, the port chosen when it was
    /// 0), if it serves one.
    pub fn grpc_addr(&self) -> Option<std::net::SocketAddr> {
        self.grpc_addr
    }

    /// Triggers a clip now; false when the trigger queue is full (counted).
    pub fn trigger(&self) -> bool {
        trigger(&self.triggers, &self.state)
    }

    /// A handle other threads (a key reader, a telemetry watcher) trigger through.
    pub fn trigger_handle(&self) -> TriggerHandle {
        TriggerHandle {
            triggers: self.triggers.clone(),
            state: self.state.clone(),
        }
    }

    pub fn status(&self) -> RigStatus {
        status(&self.cameras, &self.state, &self.config)
    }

    /// Clips written so far (cheap: no file system access, no camera figures).
    pub fn clips_written(&self) -> u64 {
        lock(&self.state).written
    }

    pub fn config(&self) -> &RigConfig {
        &self.config
    }

    pub fn cameras(&self) -> &[Camera] {
        &self.cameras
    }

    /// Finished clips, oldest first.
    pub fn clips(&self) -> Vec<(PathBuf, ClipDescription)> {
        clip::list(&self.config.output_dir())
    }

    /// The `n` newest finished clips, newest first (reads only those).
    pub fn newest_clips(&self, n: usize) -> Vec<(PathBuf, ClipDescription)> {
        clip::newest(&self.config.output_dir(), n)
    }

    /// Stops: cameras first, then the clip thread writes what is pending, then the control
    /// socket goes.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for camera in self.cameras.iter() {
            camera.stop();
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn clip_loop(
    config: &RigConfig,
    cameras: &[Camera],
    received: &Receiver<u64>,
    state: &Mutex<State>,
    stop: &AtomicBool,
) {
    let pre = config.recording.pre_roll_ms * 1_000_000;
    let post = config.recording.post_roll_ms * 1_000_000;
    let out = config.output_dir();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut seq = 0u64;
    loop {
        match received.recv_timeout(Duration::from_millis(20)) {
            Ok(t) => {
                let extend = config.recording.overlap == OverlapPolicy::Extend;
                match pending.back_mut() {
                    Some(last) if extend && t <= last.to_ns => {
                        last.triggers.push(t);
                        last.to_ns = t + post;
                    }
                    _ => pending.push_back(Pending {
                        triggers: vec![t],
                        from_ns: t.saturating_sub(pre),
                        to_ns: t + post,
                    }),
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let stopping = stop.load(Ordering::Relaxed);
        lock(state).pending = pending.len();
        while let Some(front) = pending.front() {
            let now = monotonic_ns();
            let caught_up = cameras
                .iter()
                .all(|c| c.newest_ns().is_some_and(|n| n >= front.to_ns) || !c.is_live());
            let overdue = now > front.to_ns + CAMERA_GRACE.as_nanos() as u64;
            if !(caught_up || overdue || stopping) {
                break;
            }
            let Some(job) = pending.pop_front() else {
                break;
            };
            seq += 1;
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let id = format!("clip-{unix_ms}-{seq:04}");
            let started = Instant::now();
            let reserve = config.recording.disk_reserve_mb;
            let result = match free_mb(&out) {
                Some(free) if free < reserve => Err(format!(
                    "{id}: not written: {free} MB free in {}, below the {reserve} MB reserve",
                    out.display()
                )),
                _ => clip::write(
                    &out,
                    &id,
                    cameras,
                    &job.triggers,
                    job.from_ns,
                    job.to_ns,
                    config.recording.pre_roll_ms,
                    config.recording.post_roll_ms,
                    &config.recording.codec,
                    config.telemetry_data_dir().as_deref(),
                )
                .map_err(|e| format!("{id}: {e}")),
            };
            let mut s = lock(state);
            match result {
                Ok(description) => {
                    tracing::info!(clip = %id, ms = started.elapsed().as_millis() as u64, "clip written");
                    s.written += 1;
                    s.bytes_written += description
                        .cameras
                        .iter()
                        .filter_map(|c| std::fs::metadata(out.join(&id).join(&c.file)).ok())
                        .map(|m| m.len())
                        .sum::<u64>();
                    s.last_clip = Some(description);
                }
                Err(error) => {
                    tracing::error!(%error, "clip failed");
                    // A half-written clip folder (no clip.json) is never listed; remove it so
                    // it does not hold the space a full disk needs back.
                    let _ = std::fs::remove_dir_all(out.join(&id));
                    s.failed += 1;
                    if s.errors.len() >= 32 {
                        s.errors.remove(0);
                    }
                    s.errors.push(error);
                }
            }
        }
        if stopping && pending.is_empty() {
            return;
        }
    }
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Polls the daemon's store (every 200 ms) for episodes it received from `since` (Unix ns) on
/// and triggers a clip for each (of `runs`, when not empty). A store that cannot be opened yet
/// (the daemon not started) is retried.
fn episode_trigger_loop(
    data_dir: &Path,
    runs: &[String],
    since: u64,
    trigger: &TriggerHandle,
    stop: &AtomicBool,
) {
    let database = data_dir.join(framelane_core::store::DATABASE_FILE);
    // Rows carry the time the daemon received them, and become visible at their commit, a
    // little later: each look reaches back OVERLAP_NS and skips the episodes it has already
    // triggered on.
    const OVERLAP_NS: u64 = 5_000_000_000;
    let mut seen: std::collections::HashSet<(String, u64, u64)> = std::collections::HashSet::new();
    let mut reader: Option<framelane_core::store::StoreReader> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if reader.is_none() {
            reader = framelane_core::store::StoreReader::open(&database).ok();
        }
        let Some(store) = reader.as_ref() else {
            continue;
        };
        let now = unix_now_ns();
        let from = now.saturating_sub(OVERLAP_NS).max(since);
        match store.episodes_received_between(from, now, clip::TELEMETRY_LIMIT) {
            Ok(items) => {
                for item in &items {
                    let key = (item.run_id.clone(), item.episode, item.received_unix_ns);
                    if (runs.is_empty() || runs.contains(&item.run_id)) && seen.insert(key) {
                        trigger.trigger();
                    }
                }
                seen.retain(|(_, _, received)| *received >= from);
            }
            Err(_) => reader = None,
        }
    }
}

fn control_loop(listener: &UnixListener, rig: &ControlHandle, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                // A command is one short line; a client that sends more is cut off at 256 bytes
                // (nothing it sends can grow this thread's memory).
                let mut line = String::new();
                let mut reader = BufReader::new(std::io::Read::take(&stream, 256));
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let reply = match line.trim() {
                    "trigger" => match rig.trigger() {
                        Some(n) => format!("ok trigger {n}"),
                        None => "error: the trigger queue is full".into(),
                    },
                    "status" => serde_json::to_string(&rig.status()).unwrap_or_default(),
                    other => format!("error: unknown command {other:?} (trigger, status)"),
                };
                let mut writer = &stream;
                let _ = writeln!(writer, "{reply}");
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Sends one command to the rig recording into `output_dir` and returns its reply.
pub fn send_command(output_dir: &Path, command: &str) -> Result<String, RigError> {
    let socket = output_dir.join(SOCKET);
    let err = |reason: String| RigError::Output {
        path: socket.clone(),
        reason,
    };
    let mut stream =
        UnixStream::connect(&socket).map_err(|e| err(format!("no rig is running here ({e})")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| err(e.to_string()))?;
    writeln!(stream, "{command}").map_err(|e| err(e.to_string()))?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .map_err(|e| err(e.to_string()))?;
    Ok(reply.trim().to_owned())
}
