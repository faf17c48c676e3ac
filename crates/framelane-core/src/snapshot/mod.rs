//! Snapshot writer: encodes kept frames as PNG or JPEG files on its own thread, off the ingest
//! path, and indexes them in the store by (run, episode, step).
//!
//! Queue policy: bounded in frames, and each queued frame holds its bytes against the daemon's
//! memory ceiling. When the queue is full the newest frame is shed (counted as
//! `frame_queue_full`) at once under a `shed` profile, so that a slow disk or encoder never
//! slows ingest; under a `wait` profile the sender waits for room until its deadline first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::budget::Charge;
use crate::bus::{
    shed_kind, FrameImage, FrameIndexEntry, FrameKind, KeptFrame, RawPixelFormat, ShedCounters,
};
use crate::gating::FrameCompression;
use crate::media::{run_folder_name, ImageCodec};
use crate::store::StoreCommand;

/// Errors encoding or writing one snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
    #[error("JPEG encoding failed: {0}")]
    Jpeg(#[from] jpeg_encoder::EncodingError),
    #[error("a {0} frame cannot be written as a snapshot")]
    Unsupported(&'static str),
}

/// A kept frame waiting for the writer: the frame, its JPEG quality, and its bytes held
/// against the memory ceiling until it is written.
type QueuedSnapshot = (KeptFrame, u8, Charge);

/// What became of an offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// No room: shed and counted.
    Shed,
    /// The writer thread has stopped: refused and counted.
    Stopped,
}

/// Handle to the snapshot writer thread.
pub struct SnapshotWriter {
    sender: Option<mpsc::Sender<QueuedSnapshot>>,
    shed: Arc<ShedCounters>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SnapshotWriter {
    /// Whether the writer thread still runs (false once it has stopped or panicked).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Starts the thread; files go under `dir/<run>/<episode>/<step>.<ext>`. `panic_after`:
    /// a fault for tests of a dead writer, the thread panics before writing that many
    /// frames plus one (None in every real use).
    pub fn start(
        dir: &Path,
        capacity: usize,
        store: mpsc::Sender<StoreCommand>,
        shed: Arc<ShedCounters>,
        panic_after: Option<u64>,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let dir = dir.to_owned();
        let thread_shed = Arc::clone(&shed);
        let thread = std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                let _stage = tracing::info_span!("snapshot_writer").entered();
                write_loop(&dir, receiver, &store, &thread_shed, panic_after)
            })?;
        Ok(Self {
            sender: Some(sender),
            shed,
            thread: Some(thread),
        })
    }

    /// Queues a frame holding `charge`: without waiting (a full queue sheds it), or, with
    /// `wait_until`, waiting for room until then. A writer that has stopped refuses it (shed as
    /// `frame_writer_stopped`, and said so in the result).
    pub async fn offer(
        &self,
        frame: KeptFrame,
        jpeg_quality: u8,
        charge: Charge,
        wait_until: Option<Instant>,
    ) -> Offered {
        let Some(sender) = self.sender.as_ref().filter(|s| !s.is_closed()) else {
            self.shed
                .add(&frame.run_id, shed_kind::FRAME_WRITER_STOPPED, 1);
            return Offered::Stopped;
        };
        let permit = match wait_until {
            None => sender.try_reserve().ok(),
            Some(deadline) => tokio::time::timeout_at(deadline.into(), sender.reserve())
                .await
                .ok()
                .and_then(Result::ok),
        };
        match permit {
            Some(permit) => {
                permit.send((frame, jpeg_quality, charge));
                Offered::Queued
            }
            None if sender.is_closed() => {
                self.shed
                    .add(&frame.run_id, shed_kind::FRAME_WRITER_STOPPED, 1);
                Offered::Stopped
            }
            None => {
                self.shed.add(&frame.run_id, shed_kind::FRAME_QUEUE_FULL, 1);
                Offered::Shed
            }
        }
    }

    /// Writes what is queued and stops the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_loop(
    dir: &Path,
    mut receiver: mpsc::Receiver<QueuedSnapshot>,
    store: &mpsc::Sender<StoreCommand>,
    shed: &ShedCounters,
    panic_after: Option<u64>,
) {
    let mut encoded = Vec::new();
    let mut taken = 0u64;
    while let Some((frame, quality, charge)) = receiver.blocking_recv() {
        if panic_after.is_some_and(|n| taken >= n) {
            panic!("injected fault: the snapshot writer dies after {taken} frames");
        }
        taken += 1;
        let written = write_snapshot(dir, &frame, quality, &mut encoded);
        drop((frame.image, charge));
        match written {
            Ok(entry) => {
                if store
                    .blocking_send(StoreCommand::Frame(entry, Charge::none()))
                    .is_err()
                {
                    break;
                }
            }
            Err(err) => {
                tracing::warn!(run = %frame.run_id, episode = frame.episode, step = frame.step, error = %err, "snapshot not written");
                shed.add(&frame.run_id, shed_kind::FRAME_INVALID, 1);
            }
        }
    }
}

fn write_snapshot(
    dir: &Path,
    frame: &KeptFrame,
    quality: u8,
    encoded: &mut Vec<u8>,
) -> Result<FrameIndexEntry, SnapshotError> {
    encoded.clear();
    let (kind, ext, width, height, format) = match (&frame.image, frame.compression) {
        (FrameImage::Encoded { codec, data }, _) => {
            encoded.extend_from_slice(data);
            match codec {
                ImageCodec::Png => (*codec, "png", 0, 0, "png".to_owned()),
                ImageCodec::Jpeg => (*codec, "jpg", 0, 0, "jpeg".to_owned()),
            }
        }
        (
            FrameImage::Raw {
                width,
                height,
                format,
                pixels,
            },
            FrameCompression::Png,
        ) => {
            encode_png(*width, *height, *format, pixels, encoded)?;
            (
                ImageCodec::Png,
                "png",
                *width,
                *height,
                format.label().to_owned(),
            )
        }
        (
            FrameImage::Raw {
                width,
                height,
                format,
                pixels,
            },
            FrameCompression::Jpeg,
        ) => {
            encode_jpeg(*width, *height, *format, pixels, quality, encoded)?;
            (
                ImageCodec::Jpeg,
                "jpg",
                *width,
                *height,
                format.label().to_owned(),
            )
        }
        (FrameImage::Raw { .. }, _) => {
            return Err(SnapshotError::Unsupported(
                "raw frame without png/jpeg compression",
            ))
        }
        (FrameImage::Reference(_), _) => return Err(SnapshotError::Unsupported("referenced")),
    };
    let folder = dir
        .join(run_folder_name(&frame.run_id))
        .join(frame.episode.to_string());
    std::fs::create_dir_all(&folder).map_err(|source| SnapshotError::Write {
        path: folder.clone(),
        source,
    })?;
    let path = folder.join(format!(
        "{}{}.{ext}",
        frame.step,
        crate::media::owner_suffix(&frame.worker_id, &frame.agent_id)
    ));
    std::fs::write(&path, &encoded[..]).map_err(|source| SnapshotError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(FrameIndexEntry {
        run_id: frame.run_id.clone(),
        worker_id: frame.worker_id.clone(),
        agent_id: frame.agent_id.clone(),
        episode: frame.episode,
        step: frame.step,
        kind: FrameKind::Image(kind),
        width,
        height,
        format,
        location: path.display().to_string(),
        data: None,
    })
}

fn encode_png(
    width: u32,
    height: u32,
    format: RawPixelFormat,
    pixels: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SnapshotError> {
    let mut encoder = png::Encoder::new(&mut *out, width, height);
    encoder.set_depth(png::BitDepth::Eight);
    // Fast compression: snapshots are for looking at, and encoding time is the budget here.
    encoder.set_compression(png::Compression::Fast);
    let converted;
    let (color, data): (png::ColorType, &[u8]) = match format {
        RawPixelFormat::Rgb8 => (png::ColorType::Rgb, pixels),
        RawPixelFormat::Rgba8 => (png::ColorType::Rgba, pixels),
        RawPixelFormat::Gray8 => (png::ColorType::Grayscale, pixels),
        RawPixelFormat::Bgra8 => {
            converted = pixels
                .chunks_exact(4)
                .flat_map(|p| [p[2], p[1], p[0], p[3]])
                .collect::<Vec<u8>>();
            (png::ColorType::Rgba, &converted)
        }
    };
    encoder.set_color(color);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(data)?;
    writer.finish()?;
    Ok(())
}

fn encode_jpeg(
    width: u32,
    height: u32,
    format: RawPixelFormat,
    pixels: &[u8],
    quality: u8,
    out: &mut Vec<u8>,
) -> Result<(), SnapshotError> {
    let (w, h) = (
        u16::try_from(width).map_err(|_| SnapshotError::Unsupported("wider than 65535 pixels"))?,
        u16::try_from(height)
            .map_err(|_| SnapshotError::Unsupported("taller than 65535 pixels"))?,
    );
    let color = match format {
        RawPixelFormat::Rgb8 => jpeg_encoder::ColorType::Rgb,
        RawPixelFormat::Rgba8 => jpeg_encoder::ColorType::Rgba,
        RawPixelFormat::Bgra8 => jpeg_encoder::ColorType::Bgra,
        RawPixelFormat::Gray8 => jpeg_encoder::ColorType::Luma,
    };
    jpeg_encoder::Encoder::new(&mut *out, quality).encode(pixels, w, h, color)?;
    Ok(())
}
