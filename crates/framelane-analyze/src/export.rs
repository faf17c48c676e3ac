//! Frames and crops are written as JPEG on a thread of their own ("analyze-export"), so the
//! analysis never pays for encoding. The queue between them is bounded (`EXPORT_QUEUE` jobs);
//! its policy is **wait**: a full queue makes the analysis wait (the user asked for every one
//! of these files), and every wait is counted and timed. Pixel buffers circulate through a
//! pool, so a steady run allocates none. Files are written under a temporary name and renamed,
//! so a killed run never leaves a half JPEG under a final name. Closing drains the queue.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use serde::Serialize;

use crate::AnalyzeError;

/// Jobs waiting for the writer, at most.
pub const EXPORT_QUEUE: usize = 16;

/// One JPEG to write: packed BGR pixels.
pub struct ExportJob {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub bgr: Vec<u8>,
}

/// What the exporter did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportStats {
    pub written: u64,
    pub bytes: u64,
    /// Times the analysis found the queue full and waited.
    pub waits: u64,
    pub wait_ms: f64,
    pub encode_ms: f64,
    pub queue_capacity: usize,
    pub policy: &'static str,
}

struct Shared {
    failure: Option<String>,
    /// Jobs finished, written or failed.
    done: u64,
    written: u64,
    bytes: u64,
    encode_ms: f64,
}

pub struct Exporter {
    sender: Option<SyncSender<ExportJob>>,
    pool: Receiver<Vec<u8>>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    submitted: u64,
    waits: u64,
    wait_ms: f64,
}

fn lock(shared: &(Mutex<Shared>, Condvar)) -> std::sync::MutexGuard<'_, Shared> {
    shared
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_jpeg(job: &ExportJob, quality: u8) -> Result<u64, String> {
    let (Ok(w), Ok(h)) = (u16::try_from(job.width), u16::try_from(job.height)) else {
        return Err(format!(
            "{}x{} is larger than JPEG allows",
            job.width, job.height
        ));
    };
    let mut part = job.path.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let encoder = jpeg_encoder::Encoder::new_file(&part, quality).map_err(|e| e.to_string())?;
    encoder
        .encode(&job.bgr, w, h, jpeg_encoder::ColorType::Bgr)
        .map_err(|e| e.to_string())?;
    std::fs::rename(&part, &job.path).map_err(|e| e.to_string())?;
    Ok(std::fs::metadata(&job.path).map(|m| m.len()).unwrap_or(0))
}

impl Exporter {
    pub fn start(quality: u8) -> Result<Self, AnalyzeError> {
        let (sender, jobs) = mpsc::sync_channel::<ExportJob>(EXPORT_QUEUE);
        let (give_back, pool) = mpsc::sync_channel::<Vec<u8>>(EXPORT_QUEUE + 2);
        let shared = Arc::new((
            Mutex::new(Shared {
                failure: None,
                done: 0,
                written: 0,
                bytes: 0,
                encode_ms: 0.0,
            }),
            Condvar::new(),
        ));
        let state = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("analyze-export".into())
            .spawn(move || {
                for job in jobs {
                    let started = Instant::now();
                    let result = write_jpeg(&job, quality);
                    let mut s = lock(&state);
                    s.encode_ms += started.elapsed().as_secs_f64() * 1e3;
                    match result {
                        Ok(bytes) => {
                            s.written += 1;
                            s.bytes += bytes;
                        }
                        Err(reason) => {
                            if s.failure.is_none() {
                                s.failure = Some(format!("{}: {reason}", job.path.display()));
                            }
                        }
                    }
                    s.done += 1;
                    drop(s);
                    state.1.notify_all();
                    // The pool is full only when buffers were allocated beyond it; drop those.
                    let _ = give_back.try_send(job.bgr);
                }
            })
            .map_err(|e| AnalyzeError::output("analyze-export thread", e))?;
        Ok(Self {
            sender: Some(sender),
            pool,
            shared,
            thread: Some(thread),
            submitted: 0,
            waits: 0,
            wait_ms: 0.0,
        })
    }

    /// A pixel buffer of `len` bytes, from the pool when one came back.
    pub fn buffer(&self, len: usize) -> Vec<u8> {
        let mut buffer = self.pool.try_recv().unwrap_or_default();
        buffer.clear();
        buffer.resize(len, 0);
        buffer
    }

    fn failure(&self) -> Option<String> {
        lock(&self.shared).failure.clone()
    }

    /// Queues a JPEG; waits (counted) while the queue is full. Fails once the writer failed.
    pub fn submit(&mut self, job: ExportJob) -> Result<(), AnalyzeError> {
        if let Some(reason) = self.failure() {
            return Err(AnalyzeError::Output {
                path: job.path,
                reason: format!("export stopped: {reason}"),
            });
        }
        let Some(sender) = &self.sender else {
            return Err(AnalyzeError::output(job.path, "export already closed"));
        };
        self.submitted += 1;
        let job = match sender.try_send(job) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(job)) => job,
            Err(TrySendError::Disconnected(job)) => {
                return Err(AnalyzeError::output(job.path, "the export thread ended"))
            }
        };
        self.waits += 1;
        let started = Instant::now();
        let path = job.path.clone();
        let result = sender.send(job);
        self.wait_ms += started.elapsed().as_secs_f64() * 1e3;
        result.map_err(|_| AnalyzeError::output(path, "the export thread ended"))
    }

    /// Waits until every queued job is written (or failed): a checkpoint taken after this
    /// names only files that exist.
    pub fn flush(&self) -> Result<(), AnalyzeError> {
        let mut s = lock(&self.shared);
        while s.done < self.submitted && self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            // A timeout re-checks the thread: one that panicked notifies no one.
            s = match self
                .shared
                .1
                .wait_timeout(s, std::time::Duration::from_millis(200))
            {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        match &s.failure {
            Some(reason) => Err(AnalyzeError::output("export", reason)),
            None => Ok(()),
        }
    }

    /// Drains the queue, stops the thread and returns its figures; the first write error, if any.
    pub fn close(mut self) -> Result<ExportStats, AnalyzeError> {
        self.shutdown();
        let s = lock(&self.shared);
        let stats = ExportStats {
            written: s.written,
            bytes: s.bytes,
            waits: self.waits,
            wait_ms: self.wait_ms,
            encode_ms: s.encode_ms,
            queue_capacity: EXPORT_QUEUE,
            policy: "wait",
        };
        match &s.failure {
            Some(reason) => Err(AnalyzeError::Output {
                path: PathBuf::from("export"),
                reason: reason.clone(),
            }),
            None => Ok(stats),
        }
    }

    fn shutdown(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                lock(&self.shared)
                    .failure
                    .get_or_insert_with(|| "the export thread panicked".into());
            }
        }
    }

    /// Milliseconds the analysis has waited on a full queue so far.
    pub fn wait_ms(&self) -> f64 {
        self.wait_ms
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Copies the `w` x `h` region at (`x`, `y`) of a packed BGR picture `width` pixels wide into
/// `out` (packed).
pub fn copy_region(src: &[u8], width: u32, (x, y, w, h): (u32, u32, u32, u32), out: &mut [u8]) {
    let stride = width as usize * 3;
    let row = w as usize * 3;
    for (i, dst) in out.chunks_exact_mut(row).take(h as usize).enumerate() {
        let start = (y as usize + i) * stride + x as usize * 3;
        if let Some(line) = src.get(start..start + row) {
            dst.copy_from_slice(line);
        }
    }
}

/// Removes `*.part` files a killed run left in `dir`.
pub fn remove_partial_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|e| e == "part") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_drains_every_queued_job_and_counts_waits() {
        let dir = std::env::temp_dir().join(format!("framelane-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut exporter = Exporter::start(80).expect("start");
        let jobs = EXPORT_QUEUE * 3;
        for i in 0..jobs {
            let bgr = exporter.buffer(64 * 48 * 3);
            exporter
                .submit(ExportJob {
                    path: dir.join(format!("{i}.jpg")),
                    width: 64,
                    height: 48,
                    bgr,
                })
                .expect("submit");
        }
        let stats = exporter.close().expect("close");
        assert_eq!(stats.written, jobs as u64);
        for i in 0..jobs {
            assert!(
                dir.join(format!("{i}.jpg")).is_file(),
                "{i}.jpg written before close returned"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_write_error_is_reported_not_swallowed() {
        let mut exporter = Exporter::start(80).expect("start");
        let bgr = exporter.buffer(8 * 8 * 3);
        exporter
            .submit(ExportJob {
                path: PathBuf::from("/nonexistent-framelane-dir/x.jpg"),
                width: 8,
                height: 8,
                bgr,
            })
            .expect("queued");
        let err = exporter.close().expect_err("the write fails").to_string();
        assert!(err.contains("nonexistent-framelane-dir"), "{err}");
    }
}
