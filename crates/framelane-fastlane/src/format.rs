//! Byte layout of framelane segments (documented in docs/fastlane.md) and the values a frame
//! carries. Offsets here are the single source of truth for the writer and the reader.

use std::fmt;

/// Magic at offset 0 of every framelane segment.
pub const MAGIC: [u8; 8] = *b"FRAMELN\0";
/// Layout version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes before the first slot.
pub const HEADER_SIZE: usize = 256;
/// Bytes of scalar fields at the start of each slot, before the pixels.
pub const SLOT_HEADER_SIZE: usize = 64;
/// Slots start on cache-line boundaries so two slots never share a line.
pub const SLOT_ALIGN: usize = 64;
/// Longest run id, in bytes, stored in the header.
pub const MAX_RUN_ID_BYTES: usize = 127;
/// Largest width or height a reader accepts.
pub const MAX_DIMENSION: u32 = 16_384;
/// Most slots a reader accepts.
pub const MAX_CAPACITY: u32 = 1024;
/// Prefix of framelane segment file names in the segment directory.
pub const SEGMENT_PREFIX: &str = "framelane.";

/// Header field offsets.
pub mod header {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const HEADER_SIZE: usize = 12;
    pub const FLAGS: usize = 16;
    pub const PIXEL_FORMAT: usize = 20;
    pub const WIDTH: usize = 24;
    pub const HEIGHT: usize = 28;
    pub const ROW_STRIDE: usize = 32;
    pub const CAPACITY: usize = 36;
    pub const SLOT_STRIDE: usize = 40;
    pub const WRITER_PID: usize = 48;
    pub const WRITER_START_TICKS: usize = 56;
    pub const CREATED_UNIX_NS: usize = 64;
    pub const HEARTBEAT_MONO_NS: usize = 72;
    pub const HEAD: usize = 80;
    pub const RUN_ID_LEN: usize = 88;
    pub const RUN_ID: usize = 96;
    /// Futex word the writer bumps on every publish (when it sets `FLAG_NOTIFIES`).
    pub const PUBLISH_SEQ: usize = 224;
    /// Readers sleeping on `PUBLISH_SEQ`; the writer only makes the wake call when non-zero.
    pub const SLEEPERS: usize = 228;
}

/// Slot field offsets, relative to the slot start.
pub mod slot {
    pub const SEQ: usize = 0;
    pub const FRAME_NUMBER: usize = 8;
    pub const PRODUCER_MONO_NS: usize = 16;
    pub const EPISODE: usize = 24;
    pub const STEP: usize = 32;
    pub const REWARD: usize = 40;
    pub const EPISODIC_RETURN: usize = 48;
    pub const STEPS_PER_SECOND: usize = 56;
}

/// Header flag: the writer has gone; readers should detach and look for a new segment.
pub const FLAG_INVALIDATED: u32 = 1;
/// Header flag: the writer wakes sleeping readers through the `PUBLISH_SEQ` futex on every
/// publish. Without it (older writers, other implementations) readers poll `head`.
pub const FLAG_NOTIFIES: u32 = 2;

/// Which writer family made a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// framelane's own layout (this module).
    Framelane,
    /// MOSAIC's "FLAN" v1 layout, written by its Python workers.
    MosaicV1,
}

impl SegmentKind {
    pub fn label(self) -> &'static str {
        match self {
            SegmentKind::Framelane => "framelane",
            SegmentKind::MosaicV1 => "mosaic",
        }
    }
}

/// Pixel layout of a frame. Rows are tightly packed unless the segment says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Rgb8,
    Rgba8,
    Bgra8,
}

impl PixelFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 => 3,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
        }
    }

    /// Code stored in the segment header.
    pub fn code(self) -> u32 {
        match self {
            PixelFormat::Rgb8 => 1,
            PixelFormat::Rgba8 => 2,
            PixelFormat::Bgra8 => 3,
        }
    }

    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(PixelFormat::Rgb8),
            2 => Some(PixelFormat::Rgba8),
            3 => Some(PixelFormat::Bgra8),
            _ => None,
        }
    }

    /// Format for a channel count (3 = RGB, 4 = RGBA), as MOSAIC segments describe it.
    pub fn from_channels(channels: u32) -> Option<Self> {
        match channels {
            3 => Some(PixelFormat::Rgb8),
            4 => Some(PixelFormat::Rgba8),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb8 => "RGB",
            PixelFormat::Rgba8 => "RGBA",
            PixelFormat::Bgra8 => "BGRA",
        }
    }

    /// Parses a name as the CLI accepts it (`rgb`, `rgba`, `bgra`, any case).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "rgb" | "rgb8" => Some(PixelFormat::Rgb8),
            "rgba" | "rgba8" => Some(PixelFormat::Rgba8),
            "bgra" | "bgra8" => Some(PixelFormat::Bgra8),
            _ => None,
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Size and pixel layout of the frames in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameGeometry {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Bytes from one row to the next in the segment.
    pub row_stride: usize,
}

impl FrameGeometry {
    /// Geometry with tightly packed rows.
    pub fn packed(width: u32, height: u32, format: PixelFormat) -> Self {
        Self {
            width,
            height,
            format,
            row_stride: width as usize * format.bytes_per_pixel(),
        }
    }

    /// Bytes of one row of pixels, without padding.
    pub fn row_bytes(&self) -> usize {
        self.width as usize * self.format.bytes_per_pixel()
    }

    /// Bytes of one frame in the segment.
    pub fn frame_bytes(&self) -> usize {
        self.row_stride * self.height as usize
    }
}

/// HUD scalars that travel with each frame, inside its slot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HudValues {
    pub episode: u64,
    pub step: u64,
    pub reward: f64,
    pub episodic_return: f64,
    /// The producer's own rate, as it measures it.
    pub steps_per_second: f64,
}

/// What a reader learned about the frame it copied.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FrameMeta {
    /// 1-based publication number within the segment.
    pub frame_number: u64,
    pub hud: HudValues,
    /// CLOCK_MONOTONIC nanoseconds at publish, when the segment kind records it.
    pub producer_mono_ns: Option<u64>,
}

/// Slot stride for frames of `frame_bytes`, rounded up to the slot alignment.
pub fn slot_stride_for(frame_bytes: usize) -> Option<usize> {
    let raw = SLOT_HEADER_SIZE.checked_add(frame_bytes)?;
    raw.checked_add(SLOT_ALIGN - 1)
        .map(|v| v / SLOT_ALIGN * SLOT_ALIGN)
}

/// File name of the framelane segment for a run id (every `/` becomes `_`).
pub fn segment_name(run_id: &str) -> String {
    format!("{SEGMENT_PREFIX}{}", run_id.replace('/', "_"))
}

/// An 8-byte atomic at `offset` from `base`.
///
/// # Safety
/// `base + offset` must lie inside a live mapping, be 8-byte aligned, and stay mapped for `'a`.
pub(crate) unsafe fn atomic_u64<'a>(
    base: *const u8,
    offset: usize,
) -> &'a std::sync::atomic::AtomicU64 {
    &*(base.add(offset) as *const std::sync::atomic::AtomicU64)
}

/// A 4-byte atomic at `offset` from `base`.
///
/// # Safety
/// `base + offset` must lie inside a live mapping, be 4-byte aligned, and stay mapped for `'a`.
pub(crate) unsafe fn atomic_u32<'a>(
    base: *const u8,
    offset: usize,
) -> &'a std::sync::atomic::AtomicU32 {
    &*(base.add(offset) as *const std::sync::atomic::AtomicU32)
}

/// Where slots and pixels lie in a validated segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentLayout {
    pub geometry: FrameGeometry,
    pub header_size: usize,
    pub capacity: u64,
    pub slot_stride: usize,
    /// Offset of the pixels inside a slot.
    pub pixel_offset: usize,
    /// Bytes reserved per slot after the slot header (pixels and, for MOSAIC, metadata).
    pub payload_size: usize,
}

/// `N` bytes of `bytes` at `offset` (the caller has checked the length).
pub(crate) fn read_array<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

/// The little-endian u32 at `offset`.
pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(read_array(bytes, offset))
}

/// The little-endian u64 at `offset`.
pub(crate) fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(read_array(bytes, offset))
}
