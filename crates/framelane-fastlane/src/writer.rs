//! The producer side: creates a run's segment and publishes frames into it without waiting.

use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use super::format::{self, header, read_array, slot, FrameGeometry, HudValues, PixelFormat};
use super::shm;
use super::{validate_run_id, FastLaneError};

/// Shape of the segment a writer creates.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Number of slots in the ring; several, so a fast producer never starves the reader.
    pub capacity: u32,
    /// Invalidate and unlink the segment when the process gets SIGINT or SIGTERM.
    pub cleanup_on_signal: bool,
}

impl WriterConfig {
    pub fn new(width: u32, height: u32, format: PixelFormat) -> Self {
        Self {
            width,
            height,
            format,
            capacity: 4,
            cleanup_on_signal: true,
        }
    }

    fn validate(&self) -> Result<FrameGeometry, FastLaneError> {
        if self.width == 0 || self.height == 0 {
            return Err(FastLaneError::InvalidGeometry(format!(
                "{}x{} has a zero dimension",
                self.width, self.height
            )));
        }
        if self.width > format::MAX_DIMENSION || self.height > format::MAX_DIMENSION {
            return Err(FastLaneError::InvalidGeometry(format!(
                "{}x{} exceeds the largest dimension {}",
                self.width,
                self.height,
                format::MAX_DIMENSION
            )));
        }
        if self.capacity < 2 || self.capacity > format::MAX_CAPACITY {
            return Err(FastLaneError::InvalidGeometry(format!(
                "capacity {} is outside 2..={}",
                self.capacity,
                format::MAX_CAPACITY
            )));
        }
        Ok(FrameGeometry::packed(self.width, self.height, self.format))
    }
}

/// Publishes the newest frame of one run into its shared-memory segment.
///
/// Single producer: one writer per run. `publish` copies the frame into the next slot under
/// its seqlock and returns; it never waits for a reader and never allocates.
pub struct FastLaneWriter {
    run_id: String,
    path: PathBuf,
    map: memmap2::MmapMut,
    geometry: FrameGeometry,
    capacity: u64,
    slot_stride: usize,
    published: u64,
    identity: shm::FileIdentity,
    cleanup: shm::CleanupRegistration,
}

impl FastLaneWriter {
    /// Creates the segment for `run_id`, replacing a stale one whose writer has died.
    pub fn create(run_id: &str, config: WriterConfig) -> Result<Self, FastLaneError> {
        validate_run_id(run_id)?;
        let geometry = config.validate()?;
        let slot_stride = format::slot_stride_for(geometry.frame_bytes())
            .ok_or_else(|| FastLaneError::InvalidGeometry("frame too large".into()))?;
        let len = (config.capacity as usize)
            .checked_mul(slot_stride)
            .and_then(|v| v.checked_add(format::HEADER_SIZE))
            .ok_or_else(|| FastLaneError::InvalidGeometry("segment too large".into()))?;
        let path = shm::segment_path(&format::segment_name(run_id));
        refuse_if_live(&path)?;

        let mut segment =
            shm::create_segment(&path, len).map_err(|e| FastLaneError::io(&path, "create", e))?;
        write_header(
            &mut segment.map,
            run_id,
            &geometry,
            config.capacity,
            slot_stride,
        );
        if let Err(err) = shm::publish_segment(&segment, &path) {
            let _ = shm::unlink_segment(&segment.temp_path);
            return Err(FastLaneError::io(&path, "rename into place", err));
        }
        let identity = segment.identity;
        let map = segment.map;
        let cleanup = if config.cleanup_on_signal {
            // SAFETY: FLAGS is 4-aligned inside the header; the registration is released in
            // Drop before the mapping is unmapped.
            let flags = unsafe { format::atomic_u32(map.as_ptr(), header::FLAGS) };
            shm::register_cleanup(&path, flags, format::FLAG_INVALIDATED)
        } else {
            shm::register_cleanup_disabled()
        };
        Ok(Self {
            run_id: run_id.to_owned(),
            path,
            map,
            geometry,
            capacity: u64::from(config.capacity),
            slot_stride,
            published: 0,
            identity,
            cleanup,
        })
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn geometry(&self) -> FrameGeometry {
        self.geometry
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Publishes one frame (tightly packed rows) with its HUD values; returns its frame number.
    pub fn publish(&mut self, pixels: &[u8], hud: &HudValues) -> Result<u64, FastLaneError> {
        let frame_bytes = self.geometry.frame_bytes();
        if pixels.len() != frame_bytes {
            return Err(FastLaneError::FrameSizeMismatch {
                got: pixels.len(),
                expected: frame_bytes,
                geometry: format!(
                    "{}x{} {}",
                    self.geometry.width, self.geometry.height, self.geometry.format
                ),
            });
        }
        Ok(self.publish_with(hud, |slot_pixels| slot_pixels.copy_from_slice(pixels)))
    }

    /// Publishes a frame that `fill` draws straight into the slot (no intermediate buffer);
    /// returns its frame number. `fill` gets exactly `geometry().frame_bytes()` bytes and must
    /// not block: readers skip the slot while it runs.
    pub fn publish_with(&mut self, hud: &HudValues, fill: impl FnOnce(&mut [u8])) -> u64 {
        let frame_bytes = self.geometry.frame_bytes();
        let number = self.published + 1;
        let index = ((number - 1) % self.capacity) as usize;
        let base = self.map.as_mut_ptr();
        let slot_offset = format::HEADER_SIZE + index * self.slot_stride;
        let now = shm::monotonic_ns();
        // SAFETY: every offset is inside the mapping (checked at creation) and 8-aligned
        // (header and slot stride are multiples of 64). Only this writer stores to the segment;
        // readers in other mappings only load, and discard what changed under them.
        unsafe {
            let slot_base = base.add(slot_offset);
            let seq = format::atomic_u64(slot_base, slot::SEQ);
            seq.store(2 * number + 1, Ordering::Relaxed);
            // Readers that see any byte below also see the odd sequence above.
            fence(Ordering::Release);
            let store = |offset: usize, value: u64| {
                format::atomic_u64(slot_base, offset).store(value, Ordering::Relaxed)
            };
            store(slot::FRAME_NUMBER, number);
            store(slot::PRODUCER_MONO_NS, now);
            store(slot::EPISODE, hud.episode);
            store(slot::STEP, hud.step);
            store(slot::REWARD, hud.reward.to_bits());
            store(slot::EPISODIC_RETURN, hud.episodic_return.to_bits());
            store(slot::STEPS_PER_SECOND, hud.steps_per_second.to_bits());
            let pixels = std::slice::from_raw_parts_mut(
                slot_base.add(format::SLOT_HEADER_SIZE),
                frame_bytes,
            );
            fill(pixels);
            seq.store(2 * number + 2, Ordering::Release);
            format::atomic_u64(base, header::HEAD).store(number, Ordering::Release);
            format::atomic_u64(base, header::HEARTBEAT_MONO_NS).store(now, Ordering::Relaxed);
            // Wake readers sleeping on the publish word. The bump and the sleeper check are
            // SeqCst, as are the reader's sleeper count and its futex compare: either the
            // reader sees the new word and does not sleep, or the writer sees the sleeper and
            // wakes it. Nobody sleeping costs no system call.
            let publish_seq = format::atomic_u32(base, header::PUBLISH_SEQ);
            publish_seq.fetch_add(1, Ordering::SeqCst);
            if format::atomic_u32(base, header::SLEEPERS).load(Ordering::SeqCst) != 0 {
                shm::futex_wake_all(publish_seq);
            }
        }
        self.published = number;
        number
    }

    /// Tells readers the writer is alive while it has no new frame to publish.
    pub fn heartbeat(&mut self) {
        // SAFETY: HEARTBEAT_MONO_NS is 8-aligned inside the header.
        unsafe {
            format::atomic_u64(self.map.as_mut_ptr(), header::HEARTBEAT_MONO_NS)
                .store(shm::monotonic_ns(), Ordering::Relaxed);
        }
    }
}

impl Drop for FastLaneWriter {
    fn drop(&mut self) {
        self.cleanup.release();
        // SAFETY: FLAGS is 4-aligned inside the header, which is still mapped.
        unsafe {
            format::atomic_u32(self.map.as_mut_ptr(), header::FLAGS)
                .fetch_or(format::FLAG_INVALIDATED, Ordering::Release);
            // Sleeping readers learn at once that the writer has gone.
            let publish_seq = format::atomic_u32(self.map.as_mut_ptr(), header::PUBLISH_SEQ);
            publish_seq.fetch_add(1, Ordering::SeqCst);
            shm::futex_wake_all(publish_seq);
        }
        // Only remove the file if it is still ours; a restarted run may have replaced it.
        if shm::FileIdentity::of_path(&self.path).ok() == Some(self.identity) {
            if let Err(err) = shm::unlink_segment(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %err, "could not remove fast-lane segment");
            }
        }
    }
}

/// Refuses to replace a segment whose writer still runs.
fn refuse_if_live(path: &Path) -> Result<(), FastLaneError> {
    let Ok(existing) = shm::map_segment(path) else {
        return Ok(());
    };
    let bytes = &existing.map[..];
    if bytes.len() < format::HEADER_SIZE || bytes[..8] != format::MAGIC {
        return Ok(());
    }
    let pid = u64::from_le_bytes(read_array(bytes, header::WRITER_PID)) as u32;
    let ticks = u64::from_le_bytes(read_array(bytes, header::WRITER_START_TICKS));
    let flags = u32::from_le_bytes(read_array(bytes, header::FLAGS));
    if flags & format::FLAG_INVALIDATED == 0
        && pid != std::process::id()
        && shm::writer_alive(pid, ticks)
    {
        return Err(FastLaneError::SegmentBusy {
            path: path.to_owned(),
            pid,
        });
    }
    Ok(())
}

fn write_header(
    map: &mut [u8],
    run_id: &str,
    geometry: &FrameGeometry,
    capacity: u32,
    slot_stride: usize,
) {
    let put = |map: &mut [u8], offset: usize, bytes: &[u8]| {
        map[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(map, header::MAGIC, &format::MAGIC);
    put(map, header::VERSION, &format::VERSION.to_le_bytes());
    put(
        map,
        header::HEADER_SIZE,
        &(format::HEADER_SIZE as u32).to_le_bytes(),
    );
    put(map, header::FLAGS, &format::FLAG_NOTIFIES.to_le_bytes());
    put(
        map,
        header::PIXEL_FORMAT,
        &geometry.format.code().to_le_bytes(),
    );
    put(map, header::WIDTH, &geometry.width.to_le_bytes());
    put(map, header::HEIGHT, &geometry.height.to_le_bytes());
    put(
        map,
        header::ROW_STRIDE,
        &(geometry.row_stride as u32).to_le_bytes(),
    );
    put(map, header::CAPACITY, &capacity.to_le_bytes());
    put(
        map,
        header::SLOT_STRIDE,
        &(slot_stride as u64).to_le_bytes(),
    );
    put(
        map,
        header::WRITER_PID,
        &u64::from(std::process::id()).to_le_bytes(),
    );
    put(
        map,
        header::WRITER_START_TICKS,
        &shm::own_start_ticks().to_le_bytes(),
    );
    put(map, header::CREATED_UNIX_NS, &shm::unix_ns().to_le_bytes());
    put(
        map,
        header::HEARTBEAT_MONO_NS,
        &shm::monotonic_ns().to_le_bytes(),
    );
    put(map, header::HEAD, &0u64.to_le_bytes());
    let id = run_id.as_bytes();
    put(map, header::RUN_ID_LEN, &(id.len() as u64).to_le_bytes());
    put(map, header::RUN_ID, id);
}
