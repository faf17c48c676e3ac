//! The consumer side: attaches to a run's segment (ours or MOSAIC's) and copies out the newest
//! stable frame, skipping slots the writer is overwriting.

use std::path::{Path, PathBuf};
use std::sync::atomic::{compiler_fence, fence, Ordering};
use std::time::Duration;

use super::format::{
    self, header, slot, u32_at, u64_at, FrameGeometry, FrameMeta, HudValues, PixelFormat,
    SegmentKind, SegmentLayout,
};
use super::mosaic;
use super::shm;
use super::FastLaneError;

/// A writer silent for longer than this is reported as [`WriterStatus::Silent`].
pub const SILENT_AFTER_NS: u64 = 3_000_000_000;

/// Result of one attempt to read the newest frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadOutcome {
    /// The writer has not published anything yet.
    NoFrameYet,
    /// The newest frame is the one read last time; nothing was copied.
    Unchanged,
    /// A new frame was copied into the destination.
    Frame(FrameMeta),
    /// Every candidate slot changed while being copied; try again next time.
    Torn,
}

/// What a reader can tell about the process that writes its segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterStatus {
    Alive,
    /// Alive as far as can be told, but nothing new for this long.
    Silent {
        idle_ms: u64,
    },
    /// The writer is gone; the reason is worded for a user.
    Gone {
        reason: String,
    },
    /// A new writer replaced the segment under the same name: re-attach.
    Replaced,
}

/// Reads the newest stable frames of one run.
pub struct FastLaneReader {
    run_id: String,
    path: PathBuf,
    kind: SegmentKind,
    segment: shm::MappedSegment,
    layout: SegmentLayout,
    last_frame: u64,
    frames_read: u64,
    frames_skipped: u64,
    torn_reads: u64,
    last_head: u64,
    last_head_change_ns: u64,
    metadata: Vec<u8>,
    /// The header mapped writable for the sleeper count, when the writer wakes readers.
    /// Guards the writable mapping below against a file cut while a reader sleeps (declared
    /// first: dropped before the mapping).
    _sleepers_guard: Option<shm::MappingGuard>,
    sleepers: Option<memmap2::MmapMut>,
}

/// How long a polling reader waits between looks at `head` (segments whose writer does not
/// wake readers: MOSAIC's, and any without `FLAG_NOTIFIES`).
pub const POLL_INTERVAL: Duration = Duration::from_millis(1);

impl FastLaneReader {
    /// Attaches to the run's framelane segment, or else its MOSAIC segment.
    pub fn attach(run_id: &str) -> Result<Self, FastLaneError> {
        let ours = shm::segment_path(&format::segment_name(run_id));
        let theirs = shm::segment_path(&mosaic::segment_name(run_id));
        for path in [&ours, &theirs] {
            if path.exists() {
                return Self::open(path);
            }
        }
        Err(FastLaneError::RunNotFound {
            run_id: run_id.to_owned(),
            looked_for: format!("{} and {}", ours.display(), theirs.display()),
        })
    }

    /// Opens a segment file by path; its kind is told from its magic.
    pub fn open(path: &Path) -> Result<Self, FastLaneError> {
        let segment = shm::map_segment(path).map_err(|e| FastLaneError::io(path, "open", e))?;
        let bytes = &segment.map[..];
        let (kind, layout, run_id) = if bytes.len() >= 4 && bytes[..4] == mosaic::MAGIC {
            let layout = mosaic::parse_header(path, bytes)?;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let run_id = name
                .strip_prefix(mosaic::SEGMENT_PREFIX)
                .unwrap_or(name)
                .to_owned();
            (SegmentKind::MosaicV1, layout, run_id)
        } else {
            let (layout, run_id) = parse_framelane_header(path, bytes)?;
            (SegmentKind::Framelane, layout, run_id)
        };
        let metadata =
            vec![0; layout.payload_size - layout.geometry.frame_bytes().min(layout.payload_size)];
        let notifies = kind == SegmentKind::Framelane
            && u32_at(&segment.map, header::FLAGS) & format::FLAG_NOTIFIES != 0;
        let sleepers = if notifies {
            shm::map_sleepers(path, segment.identity, format::HEADER_SIZE)
        } else {
            None
        };
        let sleepers_guard = sleepers
            .as_ref()
            .and_then(|m| shm::MappingGuard::new(m.as_ptr(), m.len()));
        let mut reader = Self {
            _sleepers_guard: sleepers_guard,
            sleepers,
            run_id,
            path: path.to_owned(),
            kind,
            segment,
            layout,
            last_frame: 0,
            frames_read: 0,
            frames_skipped: 0,
            torn_reads: 0,
            last_head: 0,
            last_head_change_ns: shm::monotonic_ns(),
            metadata,
        };
        reader.last_head = reader.head();
        Ok(reader)
    }

    /// Whether this reader sleeps until the writer wakes it (else it polls `head`).
    pub fn woken_by_writer(&self) -> bool {
        self.sleepers.is_some()
    }

    /// Waits until `head` differs from `seen_head` or `timeout` passes; true if it differs.
    /// Sleeps on the writer's publish futex when the writer wakes readers, else polls every
    /// [`POLL_INTERVAL`]. Also returns early when the writer goes (it wakes readers then).
    pub fn wait_for_head(&self, seen_head: u64, timeout: Duration) -> bool {
        if self.head() != seen_head {
            return true;
        }
        match &self.sleepers {
            Some(writable) => {
                // SAFETY: both fields are 4-aligned inside the validated header; the mappings
                // live as long as self.
                let (publish_seq, sleepers) = unsafe {
                    (
                        format::atomic_u32(self.segment.map.as_ptr(), header::PUBLISH_SEQ),
                        format::atomic_u32(writable.as_ptr(), header::SLEEPERS),
                    )
                };
                let expected = publish_seq.load(Ordering::SeqCst);
                sleepers.fetch_add(1, Ordering::SeqCst);
                if self.head() == seen_head {
                    shm::futex_wait(publish_seq, expected, timeout);
                }
                sleepers.fetch_sub(1, Ordering::SeqCst);
            }
            None => std::thread::sleep(POLL_INTERVAL.min(timeout)),
        }
        self.head() != seen_head
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> SegmentKind {
        self.kind
    }

    pub fn geometry(&self) -> FrameGeometry {
        self.layout.geometry
    }

    /// Frames copied out so far.
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Frames the writer published that this reader never copied (it only wants the newest).
    pub fn frames_skipped(&self) -> u64 {
        self.frames_skipped
    }

    /// Slot copies thrown away because the writer changed the slot meanwhile.
    pub fn torn_reads(&self) -> u64 {
        self.torn_reads
    }

    /// Number of frames the writer has published.
    pub fn head(&self) -> u64 {
        let base = self.segment.map.as_ptr();
        match self.kind {
            // SAFETY: HEAD is 8-aligned inside a validated header.
            SegmentKind::Framelane => unsafe {
                format::atomic_u64(base, header::HEAD).load(Ordering::Acquire)
            },
            SegmentKind::MosaicV1 => {
                let head = volatile_u64(&self.segment.map, mosaic::header::HEAD);
                fence(Ordering::Acquire);
                head
            }
        }
    }

    /// Copies the newest stable frame into `dst` (rows `dst_stride` bytes apart) unless it is
    /// the frame copied last time. Never blocks; a torn slot falls back to the one before it.
    pub fn read_newest(
        &mut self,
        dst: &mut [u8],
        dst_stride: usize,
    ) -> Result<ReadOutcome, FastLaneError> {
        self.check_destination(dst, dst_stride)?;
        self.check_intact()?;
        let Some(candidates) = self.candidates() else {
            return Ok(if self.last_head == 0 {
                ReadOutcome::NoFrameYet
            } else {
                ReadOutcome::Unchanged
            });
        };
        for number in candidates.rev() {
            if let Some(meta) = self.try_slot(number, Some((&mut *dst, dst_stride))) {
                self.note_copied(number);
                return Ok(ReadOutcome::Frame(meta));
            }
            self.torn_reads += 1;
        }
        // A file cut during the copies reads as torn slots: say what happened.
        self.check_intact()?;
        Ok(ReadOutcome::Torn)
    }

    /// The scalars (frame number, HUD values) of the newest stable frame not copied yet,
    /// without copying pixels. Lets a HUD be laid out for exactly the frame that
    /// [`Self::read_frame`] copies next.
    pub fn peek_newest(&mut self) -> Option<FrameMeta> {
        if self.cut_to().is_some() {
            return None;
        }
        let candidates = self.candidates()?;
        candidates
            .rev()
            .find_map(|number| self.try_slot(number, None))
    }

    /// Copies exactly publication `number`; `Ok(None)` when the writer has overwritten it.
    pub fn read_frame(
        &mut self,
        number: u64,
        dst: &mut [u8],
        dst_stride: usize,
    ) -> Result<Option<FrameMeta>, FastLaneError> {
        self.check_destination(dst, dst_stride)?;
        self.check_intact()?;
        if number == 0 || number <= self.last_frame {
            return Ok(None);
        }
        let meta = self.try_slot(number, Some((dst, dst_stride)));
        if meta.is_some() {
            self.note_copied(number);
        }
        Ok(meta)
    }

    /// The file's size when it is now shorter than the mapping (someone truncated it): reading
    /// a slot past the new end would be SIGBUS, so nothing is read then. Every public read
    /// checks once (one fstat); a file cut between the check and the copy faults inside the
    /// copy, where the mapping's SIGBUS guard turns the rest into zeros (the slot's sequence
    /// check then fails) and marks the segment cut, which this reports from then on.
    fn cut_to(&self) -> Option<u64> {
        let mapped = self.segment.map.len() as u64;
        match self.segment.file.metadata() {
            Ok(meta) if meta.len() < mapped => Some(meta.len()),
            Ok(meta) if self.segment.cut_while_mapped() => Some(meta.len().min(mapped)),
            Err(_) if self.segment.cut_while_mapped() => Some(0),
            _ => None,
        }
    }

    fn check_intact(&self) -> Result<(), FastLaneError> {
        match self.cut_to() {
            Some(size) => Err(FastLaneError::Truncated {
                path: self.path.clone(),
                size: size as usize,
                needed: self.segment.map.len(),
                what: "mapping (the file was cut while mapped)",
            }),
            None => Ok(()),
        }
    }

    fn check_destination(&self, dst: &[u8], dst_stride: usize) -> Result<(), FastLaneError> {
        let g = self.layout.geometry;
        let needed = dst_stride * (g.height as usize - 1) + g.row_bytes();
        if dst_stride < g.row_bytes() || dst.len() < needed {
            return Err(FastLaneError::DestinationTooSmall {
                got: dst.len(),
                stride: dst_stride,
                needed,
            });
        }
        Ok(())
    }

    /// Publication numbers that may hold a frame newer than the last one copied, oldest first;
    /// None when there is nothing new.
    fn candidates(&mut self) -> Option<std::ops::RangeInclusive<u64>> {
        let head = self.head();
        if head != self.last_head {
            self.last_head = head;
            self.last_head_change_ns = shm::monotonic_ns();
        }
        if head == 0 || head <= self.last_frame {
            return None;
        }
        let oldest = head
            .saturating_sub(self.layout.capacity - 1)
            .max(self.last_frame + 1)
            .max(1);
        Some(oldest..=head)
    }

    fn note_copied(&mut self, number: u64) {
        if self.last_frame > 0 && number > self.last_frame {
            self.frames_skipped += number - self.last_frame - 1;
        }
        self.last_frame = number;
        self.frames_read += 1;
    }

    /// Reads publication `number` (scalars, and pixels into `pixels` when given) if its slot
    /// holds exactly that publication, stable before and after the copy.
    fn try_slot(&mut self, number: u64, pixels: Option<(&mut [u8], usize)>) -> Option<FrameMeta> {
        let layout = self.layout;
        let index = ((number - 1) % layout.capacity) as usize;
        let slot_offset = layout.header_size + index * layout.slot_stride;
        let map = &self.segment.map;
        let base = map.as_ptr();
        let stable = 2 * number + 2;
        match self.kind {
            SegmentKind::Framelane => {
                // SAFETY: slot offsets were validated against the mapping at open and are
                // 8-aligned (header and stride are multiples of 64).
                unsafe {
                    let slot_base = base.add(slot_offset);
                    let seq = format::atomic_u64(slot_base, slot::SEQ);
                    if seq.load(Ordering::Acquire) != stable {
                        return None;
                    }
                    let load =
                        |offset| format::atomic_u64(slot_base, offset).load(Ordering::Relaxed);
                    let meta = FrameMeta {
                        frame_number: load(slot::FRAME_NUMBER),
                        producer_mono_ns: Some(load(slot::PRODUCER_MONO_NS)),
                        hud: HudValues {
                            episode: load(slot::EPISODE),
                            step: load(slot::STEP),
                            reward: f64::from_bits(load(slot::REWARD)),
                            episodic_return: f64::from_bits(load(slot::EPISODIC_RETURN)),
                            steps_per_second: f64::from_bits(load(slot::STEPS_PER_SECOND)),
                        },
                    };
                    if let Some((dst, dst_stride)) = pixels {
                        copy_rows(
                            slot_base.add(layout.pixel_offset),
                            &layout.geometry,
                            dst,
                            dst_stride,
                        );
                    }
                    // Pairs with the writer's release fence: if any copied byte came from a
                    // newer publication, the sequence read below differs.
                    fence(Ordering::Acquire);
                    (seq.load(Ordering::Relaxed) == stable && meta.frame_number == number)
                        .then_some(meta)
                }
            }
            SegmentKind::MosaicV1 => {
                if volatile_u64(map, slot_offset + mosaic::slot::SEQ) != stable {
                    return None;
                }
                fence(Ordering::Acquire);
                let frame_len = volatile_u32(map, slot_offset + mosaic::slot::FRAME_LEN) as usize;
                let metadata_len =
                    volatile_u32(map, slot_offset + mosaic::slot::METADATA_LEN) as usize;
                let g = layout.geometry;
                let hud = HudValues {
                    episode: 0,
                    step: 0,
                    reward: f64::from_bits(volatile_u64(map, mosaic::header::LAST_REWARD)),
                    episodic_return: f64::from_bits(volatile_u64(
                        map,
                        mosaic::header::ROLLING_RETURN,
                    )),
                    steps_per_second: f64::from_bits(volatile_u64(
                        map,
                        mosaic::header::STEP_RATE_HZ,
                    )),
                };
                // A frame with any other length is not a full frame of this geometry.
                let metadata_fits = frame_len + metadata_len <= layout.payload_size;
                if frame_len != g.frame_bytes() || !metadata_fits {
                    return None;
                }
                // SAFETY: the payload range was validated against the mapping at open.
                unsafe {
                    let payload = base.add(slot_offset + layout.pixel_offset);
                    if let Some((dst, dst_stride)) = pixels {
                        copy_rows(payload, &g, dst, dst_stride);
                    }
                    std::ptr::copy_nonoverlapping(
                        payload.add(frame_len),
                        self.metadata.as_mut_ptr(),
                        metadata_len,
                    );
                }
                fence(Ordering::Acquire);
                if volatile_u64(map, slot_offset + mosaic::slot::SEQ) != stable {
                    return None;
                }
                let mut meta = FrameMeta {
                    frame_number: number,
                    hud,
                    producer_mono_ns: None,
                };
                if metadata_len > 0 {
                    if let Ok(extra) = serde_json::from_slice::<mosaic::FrameMetadata>(
                        &self.metadata[..metadata_len],
                    ) {
                        meta.hud.episode = extra.episode.unwrap_or(0);
                        meta.hud.step = extra.step.unwrap_or(0);
                    }
                }
                Some(meta)
            }
        }
    }

    /// Checks the writer: closed flag, process, replacement of the file, heartbeat. Costs a
    /// stat and a /proc read; call it a few times a second, not per frame.
    pub fn writer_status(&self) -> WriterStatus {
        let map = &self.segment.map;
        let flags = match self.kind {
            // SAFETY: FLAGS is 4-aligned inside a validated header.
            SegmentKind::Framelane => unsafe {
                format::atomic_u32(map.as_ptr(), header::FLAGS).load(Ordering::Acquire)
            },
            SegmentKind::MosaicV1 => volatile_u32(map, mosaic::header::FLAGS),
        };
        if flags & format::FLAG_INVALIDATED != 0 {
            return WriterStatus::Gone {
                reason: "the writer closed the segment".into(),
            };
        }
        if let Some(size) = self.cut_to() {
            return WriterStatus::Gone {
                reason: format!(
                    "the segment was truncated to {size} of {} bytes while mapped; not read",
                    self.segment.map.len()
                ),
            };
        }
        match shm::FileIdentity::of_path(&self.path) {
            Err(_) => {
                return WriterStatus::Gone {
                    reason: "the segment was removed".into(),
                }
            }
            Ok(identity) if identity != self.segment.identity => return WriterStatus::Replaced,
            Ok(_) => {}
        }
        let now = shm::monotonic_ns();
        let last_sign_of_life = match self.kind {
            SegmentKind::Framelane => {
                let pid = u64_at(map, header::WRITER_PID) as u32;
                let ticks = u64_at(map, header::WRITER_START_TICKS);
                if !shm::writer_alive(pid, ticks) {
                    return WriterStatus::Gone {
                        reason: format!("writer process {pid} is gone"),
                    };
                }
                // SAFETY: HEARTBEAT_MONO_NS is 8-aligned inside a validated header.
                unsafe {
                    format::atomic_u64(map.as_ptr(), header::HEARTBEAT_MONO_NS)
                        .load(Ordering::Relaxed)
                }
            }
            SegmentKind::MosaicV1 => self.last_head_change_ns,
        };
        let idle = now.saturating_sub(last_sign_of_life);
        if idle > SILENT_AFTER_NS {
            WriterStatus::Silent {
                idle_ms: idle / 1_000_000,
            }
        } else {
            WriterStatus::Alive
        }
    }
}

/// Validates a framelane header against the mapping; returns the layout and the run id.
pub fn parse_framelane_header(
    path: &Path,
    bytes: &[u8],
) -> Result<(SegmentLayout, String), FastLaneError> {
    let size = bytes.len();
    if size < format::HEADER_SIZE {
        if size >= 8 && bytes[..8] != format::MAGIC {
            return Err(bad_magic(path, bytes));
        }
        return Err(FastLaneError::Truncated {
            path: path.to_owned(),
            size,
            needed: format::HEADER_SIZE,
            what: "header",
        });
    }
    if bytes[..8] != format::MAGIC {
        return Err(bad_magic(path, bytes));
    }
    let version = u32_at(bytes, header::VERSION);
    if version != format::VERSION {
        return Err(FastLaneError::UnsupportedVersion {
            path: path.to_owned(),
            version,
            supported: format::VERSION,
        });
    }
    let out_of_range =
        |field: &'static str, value: u64, expected: String| FastLaneError::FieldOutOfRange {
            path: path.to_owned(),
            field,
            value,
            expected,
        };
    let header_size = u32_at(bytes, header::HEADER_SIZE);
    if header_size as usize != format::HEADER_SIZE {
        return Err(out_of_range(
            "header_size",
            header_size.into(),
            format::HEADER_SIZE.to_string(),
        ));
    }
    let nonzero = |field: &'static str, offset: usize| match u32_at(bytes, offset) {
        0 => Err(FastLaneError::ZeroField {
            path: path.to_owned(),
            field,
        }),
        v => Ok(v),
    };
    let width = nonzero("width", header::WIDTH)?;
    let height = nonzero("height", header::HEIGHT)?;
    let capacity = nonzero("capacity", header::CAPACITY)?;
    let row_stride = nonzero("row_stride", header::ROW_STRIDE)?;
    for (field, value) in [("width", width), ("height", height)] {
        if value > format::MAX_DIMENSION {
            return Err(out_of_range(
                field,
                value.into(),
                format!("1..={}", format::MAX_DIMENSION),
            ));
        }
    }
    if capacity > format::MAX_CAPACITY {
        return Err(out_of_range(
            "capacity",
            capacity.into(),
            format!("1..={}", format::MAX_CAPACITY),
        ));
    }
    let code = u32_at(bytes, header::PIXEL_FORMAT);
    let pixel_format = PixelFormat::from_code(code).ok_or_else(|| {
        out_of_range(
            "pixel_format",
            code.into(),
            "1 (RGB), 2 (RGBA) or 3 (BGRA)".into(),
        )
    })?;
    let geometry = FrameGeometry {
        width,
        height,
        format: pixel_format,
        row_stride: row_stride as usize,
    };
    if geometry.row_stride < geometry.row_bytes() {
        return Err(out_of_range(
            "row_stride",
            row_stride.into(),
            format!(
                "at least width * bytes per pixel = {}",
                geometry.row_bytes()
            ),
        ));
    }
    let slot_stride = u64_at(bytes, header::SLOT_STRIDE);
    let min_stride = (format::SLOT_HEADER_SIZE + geometry.frame_bytes()) as u64;
    if slot_stride < min_stride || slot_stride % format::SLOT_ALIGN as u64 != 0 {
        return Err(out_of_range(
            "slot_stride",
            slot_stride,
            format!("a multiple of 64 of at least {min_stride}"),
        ));
    }
    let needed = u64::from(capacity)
        .checked_mul(slot_stride)
        .and_then(|v| v.checked_add(format::HEADER_SIZE as u64));
    match needed {
        Some(needed) if needed <= size as u64 => {}
        _ => {
            return Err(FastLaneError::ExceedsMapping {
                path: path.to_owned(),
                capacity: capacity.into(),
                slot_stride,
                needed: needed.unwrap_or(u64::MAX),
                size,
            })
        }
    }
    let id_len = (u64_at(bytes, header::RUN_ID_LEN) as usize).min(format::MAX_RUN_ID_BYTES);
    let run_id =
        String::from_utf8_lossy(&bytes[header::RUN_ID..header::RUN_ID + id_len]).into_owned();
    Ok((
        SegmentLayout {
            geometry,
            header_size: format::HEADER_SIZE,
            capacity: capacity.into(),
            slot_stride: slot_stride as usize,
            pixel_offset: format::SLOT_HEADER_SIZE,
            payload_size: slot_stride as usize - format::SLOT_HEADER_SIZE,
        },
        run_id,
    ))
}

fn bad_magic(path: &Path, bytes: &[u8]) -> FastLaneError {
    let n = bytes.len().min(8);
    FastLaneError::BadMagic {
        path: path.to_owned(),
        found: String::from_utf8_lossy(&bytes[..n]).into_owned(),
        expected: "FRAMELN\\0",
    }
}

/// Copies a frame's rows out of a slot, adapting to the destination's row stride.
///
/// # Safety
/// `src` must point at `geometry.frame_bytes()` readable bytes.
unsafe fn copy_rows(src: *const u8, geometry: &FrameGeometry, dst: &mut [u8], dst_stride: usize) {
    let row = geometry.row_bytes();
    if dst_stride == geometry.row_stride && row == geometry.row_stride {
        std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), geometry.frame_bytes());
        return;
    }
    for y in 0..geometry.height as usize {
        std::ptr::copy_nonoverlapping(
            src.add(y * geometry.row_stride),
            dst.as_mut_ptr().add(y * dst_stride),
            row,
        );
    }
}

/// Reads a field another process may be changing (MOSAIC fields may be unaligned).
fn volatile_u64(map: &[u8], offset: usize) -> u64 {
    let bytes = &map[offset..offset + 8];
    // SAFETY: the range is in bounds (checked by slicing); read_volatile of a byte array has
    // no alignment requirement and is not merged or elided by the compiler.
    let value = unsafe { std::ptr::read_volatile(bytes.as_ptr() as *const [u8; 8]) };
    compiler_fence(Ordering::SeqCst);
    u64::from_le_bytes(value)
}

fn volatile_u32(map: &[u8], offset: usize) -> u32 {
    let bytes = &map[offset..offset + 4];
    // SAFETY: as in volatile_u64.
    let value = unsafe { std::ptr::read_volatile(bytes.as_ptr() as *const [u8; 4]) };
    compiler_fence(Ordering::SeqCst);
    u32::from_le_bytes(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{FastLaneWriter, WriterConfig};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn unique_run(tag: &str) -> String {
        format!("test-{tag}-{}-{}", std::process::id(), shm::monotonic_ns())
    }

    /// Pixels that can be checked against the frame number alone.
    fn pattern(number: u64, out: &mut [u8]) {
        let seed = number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = (seed >> ((i % 8) * 8)) as u8 ^ (i as u8);
        }
    }

    fn hud_for(number: u64) -> HudValues {
        HudValues {
            episode: number / 1000,
            step: number,
            reward: number as f64 * 0.25,
            episodic_return: -(number as f64),
            steps_per_second: number as f64 + 0.5,
        }
    }

    /// Slots of the stress test's ring: as few as possible, so the writer laps the reader.
    fn config_capacity() -> u32 {
        2
    }

    #[test]
    fn seqlock_stress_never_accepts_a_torn_or_mismatched_frame() {
        const PUBLISHES: u64 = 150_000;
        let run = unique_run("stress");
        let mut config = WriterConfig::new(32, 16, PixelFormat::Rgba8);
        config.capacity = config_capacity();
        config.cleanup_on_signal = false;
        let mut writer = FastLaneWriter::create(&run, config).expect("create writer");
        let frame_bytes = writer.geometry().frame_bytes();
        let done = Arc::new(AtomicBool::new(false));

        // The reader reports its torn copies as it goes, so the writer can keep going until
        // the race this test is about has really happened.
        let torn_seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reader_torn = Arc::clone(&torn_seen);
        let reader_done = Arc::clone(&done);
        let reader_run = run.clone();
        let reader = std::thread::Builder::new()
            .name("stress-reader".into())
            .spawn(move || {
                let mut reader = FastLaneReader::attach(&reader_run).expect("attach");
                let stride = reader.geometry().row_bytes();
                let mut buf = vec![0u8; frame_bytes];
                let mut expected = vec![0u8; frame_bytes];
                let (mut accepted, mut mismatched, mut last) = (0u64, 0u64, 0u64);
                while !reader_done.load(Ordering::Acquire) {
                    if let ReadOutcome::Frame(meta) =
                        reader.read_newest(&mut buf, stride).expect("read")
                    {
                        pattern(meta.frame_number, &mut expected);
                        let ok = buf == expected
                            && meta.hud == hud_for(meta.frame_number)
                            && meta.frame_number > last;
                        if !ok {
                            mismatched += 1;
                        }
                        last = meta.frame_number;
                        accepted += 1;
                    }
                    reader_torn.store(reader.torn_reads(), Ordering::Relaxed);
                }
                (accepted, mismatched, last, reader.torn_reads())
            })
            .expect("spawn reader");

        let mut frame = vec![0u8; frame_bytes];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut number = 0;
        while number < PUBLISHES
            || (torn_seen.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline)
        {
            number += 1;
            pattern(number, &mut frame);
            assert_eq!(
                writer.publish(&frame, &hud_for(number)).expect("publish"),
                number
            );
        }
        done.store(true, Ordering::Release);
        let (accepted, mismatched, last, torn) = reader.join().expect("reader thread");
        eprintln!("stress: {number} published, {accepted} accepted, {torn} torn copies rejected");
        assert_eq!(
            mismatched, 0,
            "accepted frames whose pixels or HUD did not match their number"
        );
        assert!(accepted > 0, "the reader never saw a frame");
        assert!(
            last > 2 * u64::from(config_capacity()),
            "the reader read while the ring wrapped around (last frame read {last})"
        );
        assert!(
            torn > 0,
            "no torn copy was provoked in {number} publishes: the test did not exercise the seqlock"
        );
    }

    #[test]
    fn reader_follows_the_newest_frame_and_counts_skips() {
        let run = unique_run("newest");
        let mut config = WriterConfig::new(4, 2, PixelFormat::Rgb8);
        config.cleanup_on_signal = false;
        let mut writer = FastLaneWriter::create(&run, config).expect("create");
        let mut reader = FastLaneReader::attach(&run).expect("attach");
        let g = reader.geometry();
        // QImage-like destination with padded rows.
        let stride = 16;
        let mut dst = vec![0u8; stride * g.height as usize];
        assert_eq!(
            reader.read_newest(&mut dst, stride).expect("read"),
            ReadOutcome::NoFrameYet
        );
        let mut frame = vec![0u8; g.frame_bytes()];
        for n in 1..=3u64 {
            pattern(n, &mut frame);
            writer.publish(&frame, &hud_for(n)).expect("publish");
        }
        match reader.read_newest(&mut dst, stride).expect("read") {
            ReadOutcome::Frame(meta) => {
                assert_eq!(meta.frame_number, 3);
                assert_eq!(meta.hud, hud_for(3));
                assert!(meta.producer_mono_ns.is_some());
            }
            other => panic!("expected a frame, got {other:?}"),
        }
        for y in 0..g.height as usize {
            assert_eq!(
                &dst[y * stride..y * stride + 12],
                &frame[y * 12..y * 12 + 12]
            );
        }
        assert_eq!(
            reader.read_newest(&mut dst, stride).expect("read"),
            ReadOutcome::Unchanged
        );
        for n in 4..=6u64 {
            pattern(n, &mut frame);
            writer.publish(&frame, &hud_for(n)).expect("publish");
        }
        assert!(
            matches!(reader.read_newest(&mut dst, stride).expect("read"), ReadOutcome::Frame(m) if m.frame_number == 6)
        );
        assert_eq!(reader.frames_skipped(), 2);
        assert_eq!(reader.writer_status(), WriterStatus::Alive);
        let mut small = vec![0u8; 4];
        assert!(matches!(
            reader.read_newest(&mut small, stride),
            Err(FastLaneError::DestinationTooSmall { .. })
        ));
        drop(writer);
        assert!(matches!(reader.writer_status(), WriterStatus::Gone { .. }));
        assert!(
            !reader.path().exists(),
            "writer removes its segment on drop"
        );
    }

    #[test]
    fn a_restarted_run_is_reported_as_replaced() {
        let run = unique_run("restart");
        let mut config = WriterConfig::new(8, 8, PixelFormat::Rgba8);
        config.cleanup_on_signal = false;
        let first = FastLaneWriter::create(&run, config).expect("create");
        let reader = FastLaneReader::attach(&run).expect("attach");
        // A new writer in this process replaces the segment (same pid counts as not live).
        let second = FastLaneWriter::create(&run, config).expect("replace");
        assert_eq!(reader.writer_status(), WriterStatus::Replaced);
        drop(first);
        assert!(
            second.path().exists(),
            "the old writer must not remove its successor's segment"
        );
    }

    fn header_bytes(width: u32, height: u32, capacity: u32) -> Vec<u8> {
        let geometry = FrameGeometry::packed(width, height, PixelFormat::Rgb8);
        let stride = format::slot_stride_for(geometry.frame_bytes()).expect("stride");
        let mut bytes = vec![0u8; format::HEADER_SIZE + stride * capacity as usize];
        bytes[..8].copy_from_slice(&format::MAGIC);
        let mut put = |offset: usize, v: &[u8]| bytes[offset..offset + v.len()].copy_from_slice(v);
        put(header::VERSION, &format::VERSION.to_le_bytes());
        put(
            header::HEADER_SIZE,
            &(format::HEADER_SIZE as u32).to_le_bytes(),
        );
        put(header::PIXEL_FORMAT, &1u32.to_le_bytes());
        put(header::WIDTH, &width.to_le_bytes());
        put(header::HEIGHT, &height.to_le_bytes());
        put(
            header::ROW_STRIDE,
            &(geometry.row_stride as u32).to_le_bytes(),
        );
        put(header::CAPACITY, &capacity.to_le_bytes());
        put(header::SLOT_STRIDE, &(stride as u64).to_le_bytes());
        bytes
    }

    #[test]
    fn malformed_headers_give_their_specific_error() {
        let path = Path::new("/dev/shm/framelane.bad");
        let good = header_bytes(8, 4, 2);
        assert!(parse_framelane_header(path, &good).is_ok());

        assert!(matches!(
            parse_framelane_header(path, &good[..100]),
            Err(FastLaneError::Truncated { size: 100, .. })
        ));
        let mut wrong_magic = good.clone();
        wrong_magic[..4].copy_from_slice(b"NOPE");
        assert!(matches!(
            parse_framelane_header(path, &wrong_magic),
            Err(FastLaneError::BadMagic { .. })
        ));
        let mut wrong_version = good.clone();
        wrong_version[header::VERSION] = 9;
        assert!(matches!(
            parse_framelane_header(path, &wrong_version),
            Err(FastLaneError::UnsupportedVersion { version: 9, .. })
        ));
        let mut zero_width = good.clone();
        zero_width[header::WIDTH..header::WIDTH + 4].fill(0);
        assert!(matches!(
            parse_framelane_header(path, &zero_width),
            Err(FastLaneError::ZeroField { field: "width", .. })
        ));
        let mut huge = good.clone();
        huge[header::CAPACITY..header::CAPACITY + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            parse_framelane_header(path, &huge),
            Err(FastLaneError::ExceedsMapping { .. })
        ));
        let mut overflow = good.clone();
        overflow[header::SLOT_STRIDE..header::SLOT_STRIDE + 8]
            .copy_from_slice(&(u64::MAX - 63).to_le_bytes());
        assert!(matches!(
            parse_framelane_header(path, &overflow),
            Err(FastLaneError::ExceedsMapping { .. })
        ));
        let mut absurd = good.clone();
        absurd[header::HEIGHT..header::HEIGHT + 4].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(matches!(
            parse_framelane_header(path, &absurd),
            Err(FastLaneError::FieldOutOfRange {
                field: "height",
                ..
            })
        ));
        let message = parse_framelane_header(path, &zero_width)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("/dev/shm/framelane.bad") && message.contains("width"),
            "{message}"
        );
    }

    /// Readers sleeping on the publish futex, as the writer sees them.
    fn sleepers_of(reader: &FastLaneReader) -> u32 {
        u32_at(&reader.segment.map, header::SLEEPERS)
    }

    #[test]
    fn a_sleeping_reader_is_woken_by_the_next_publish_not_by_its_timeout() {
        let run = unique_run("wake");
        let mut config = WriterConfig::new(2, 2, PixelFormat::Rgb8);
        config.cleanup_on_signal = false;
        let mut writer = FastLaneWriter::create(&run, config).expect("create");
        let reader = FastLaneReader::attach(&run).expect("attach");
        assert!(reader.woken_by_writer(), "our writers wake readers");
        let long = Duration::from_secs(60);
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| {
                let started = std::time::Instant::now();
                (reader.wait_for_head(0, long), started.elapsed())
            });
            // Publish only once the reader sleeps, so the wake (not a look at head) is tested.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while sleepers_of(&reader) == 0 && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            assert_eq!(sleepers_of(&reader), 1, "the reader never went to sleep");
            writer.publish(&[7u8; 12], &hud_for(1)).expect("publish");
            let (changed, waited) = waiting.join().expect("waiter");
            assert!(changed, "head changed");
            assert!(
                waited < long / 2,
                "woken by the publish, not the timeout ({waited:?})"
            );
        });
        assert_eq!(sleepers_of(&reader), 0, "the sleeper count is given back");
    }

    #[test]
    fn a_writer_that_goes_wakes_its_sleeping_readers() {
        let run = unique_run("wake-gone");
        let mut config = WriterConfig::new(2, 2, PixelFormat::Rgb8);
        config.cleanup_on_signal = false;
        let writer = FastLaneWriter::create(&run, config).expect("create");
        let reader = FastLaneReader::attach(&run).expect("attach");
        let long = Duration::from_secs(60);
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| {
                let started = std::time::Instant::now();
                reader.wait_for_head(0, long);
                started.elapsed()
            });
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while sleepers_of(&reader) == 0 && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            drop(writer);
            let waited = waiting.join().expect("waiter");
            assert!(waited < long / 2, "woken when the writer went ({waited:?})");
        });
        assert!(matches!(reader.writer_status(), WriterStatus::Gone { .. }));
    }

    #[test]
    fn a_segment_without_the_notify_flag_is_polled() {
        let run = unique_run("no-notify");
        let mut config = WriterConfig::new(2, 2, PixelFormat::Rgb8);
        config.cleanup_on_signal = false;
        let writer = FastLaneWriter::create(&run, config).expect("create");
        // An older writer: the same layout without the flag.
        let path = shm::segment_path(&format::segment_name(&run));
        let mut bytes = std::fs::read(&path).expect("read segment");
        bytes[header::FLAGS..header::FLAGS + 4].copy_from_slice(&0u32.to_le_bytes());
        let copy = shm::segment_path(&format!("{}-old", format::segment_name(&run)));
        std::fs::write(&copy, &bytes).expect("write copy");
        let reader = FastLaneReader::open(&copy).expect("open");
        assert!(!reader.woken_by_writer());
        let started = std::time::Instant::now();
        assert!(!reader.wait_for_head(0, Duration::from_secs(5)));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a poll waits one interval, not the timeout"
        );
        let _ = std::fs::remove_file(&copy);
        drop(writer);
    }

    #[test]
    fn a_segment_cut_short_while_mapped_is_reported_not_read() {
        let run = unique_run("cut");
        let mut config = WriterConfig::new(64, 64, PixelFormat::Rgb8);
        config.cleanup_on_signal = false;
        let mut writer = FastLaneWriter::create(&run, config).expect("create");
        let mut reader = FastLaneReader::attach(&run).expect("attach");
        let g = reader.geometry();
        let mut dst = vec![0u8; g.frame_bytes()];
        writer
            .publish(&vec![9u8; g.frame_bytes()], &hud_for(1))
            .expect("publish");
        assert!(matches!(
            reader.read_newest(&mut dst, g.row_stride),
            Ok(ReadOutcome::Frame(_))
        ));
        writer
            .publish(&vec![8u8; g.frame_bytes()], &hud_for(2))
            .expect("publish");
        // Someone cuts the file to its first 200 bytes: every slot is now past the end.
        std::fs::OpenOptions::new()
            .write(true)
            .open(reader.path())
            .and_then(|f| f.set_len(200))
            .expect("truncate");
        // Without the check this read is a SIGBUS that kills the test process.
        match reader.read_newest(&mut dst, g.row_stride) {
            Err(FastLaneError::Truncated { size: 200, .. }) => {}
            other => panic!("expected a truncated error, got {other:?}"),
        }
        assert!(reader.peek_newest().is_none());
        assert!(reader.read_frame(2, &mut dst, g.row_stride).is_err());
        match reader.writer_status() {
            WriterStatus::Gone { reason } => {
                assert!(reason.contains("truncated to 200"), "{reason}")
            }
            other => panic!("expected gone, got {other:?}"),
        }
        // The writer's own header stores stay inside the first page, which still exists.
        drop(writer);
    }

    #[test]
    fn a_segment_cut_to_nothing_while_mapped_is_reported_gone_not_a_crash() {
        let run = unique_run("cut-all");
        let mut config = WriterConfig::new(64, 64, PixelFormat::Rgb8);
        config.cleanup_on_signal = false;
        let writer = FastLaneWriter::create(&run, config).expect("create");
        let reader = FastLaneReader::attach(&run).expect("attach");
        let path = reader.path().to_owned();
        // The writer is done with its file (as a crashed one would be); then the file is cut
        // to nothing, header and all.
        std::mem::forget(writer);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .expect("truncate");
        // The status check reads the header's flags before it looks at the file's size:
        // without the SIGBUS guard that read kills the process.
        match reader.writer_status() {
            WriterStatus::Gone { reason } => assert!(reason.contains("truncated"), "{reason}"),
            other => panic!("expected gone, got {other:?}"),
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_segment_cut_while_a_reader_sleeps_on_it_wakes_the_reader_not_a_crash() {
        let run = unique_run("cut-sleeping");
        let mut config = WriterConfig::new(8, 8, PixelFormat::Rgb8);
        config.cleanup_on_signal = false;
        let writer = FastLaneWriter::create(&run, config).expect("create");
        let reader = FastLaneReader::attach(&run).expect("attach");
        assert!(
            reader.sleepers.is_some(),
            "a framelane writer wakes its readers"
        );
        let path = reader.path().to_owned();
        let head = reader.head();
        std::thread::scope(|scope| {
            let sleeper = scope.spawn(|| reader.wait_for_head(head, Duration::from_secs(3)));
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while sleepers_of(&reader) == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the reader never slept"
                );
                std::thread::yield_now();
            }
            // The writer is gone (as a crashed one would be) and its file is cut to nothing
            // while the reader sleeps on it: its wake-up bookkeeping must not be a SIGBUS.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(0))
                .expect("truncate");
            let _ = sleeper.join().expect("the sleeping reader returns");
        });
        std::mem::forget(writer);
        match reader.writer_status() {
            WriterStatus::Gone { reason } => assert!(reason.contains("truncated"), "{reason}"),
            other => panic!("expected gone, got {other:?}"),
        }
        let _ = std::fs::remove_file(&path);
    }
}
