//! MOSAIC "FLAN" v1 segments (../shared/specs/mosaic-fastlane-v1.md): naming, header checks
//! and the HUD values MOSAIC workers publish. Slot reading is shared with our own layout in
//! [`super::reader`]; only what differs lives here.

use std::path::Path;

use super::format::{
    u32_at, FrameGeometry, PixelFormat, SegmentLayout, MAX_CAPACITY, MAX_DIMENSION,
};
use super::FastLaneError;

/// Prefix of MOSAIC segment file names.
pub const SEGMENT_PREFIX: &str = "mosaic.fastlane.";
pub const MAGIC: [u8; 4] = *b"FLAN";
pub const VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 80;
/// Bytes of `seq`, `frame_len` and `metadata_len` before each slot's payload.
pub const SLOT_HEADER_SIZE: usize = 16;

/// Header offsets, all little endian.
pub mod header {
    pub const VERSION: usize = 4;
    pub const FLAGS: usize = 8;
    pub const CAPACITY: usize = 12;
    pub const SLOT_SIZE: usize = 16;
    pub const PAYLOAD_SIZE: usize = 20;
    pub const WIDTH: usize = 24;
    pub const HEIGHT: usize = 28;
    pub const CHANNELS: usize = 32;
    pub const FORMAT_HASH: usize = 36;
    pub const HEAD: usize = 40;
    pub const LAST_REWARD: usize = 56;
    pub const ROLLING_RETURN: usize = 64;
    pub const STEP_RATE_HZ: usize = 72;
}

/// Slot offsets.
pub mod slot {
    pub const SEQ: usize = 0;
    pub const FRAME_LEN: usize = 8;
    pub const METADATA_LEN: usize = 12;
}

/// File name of the MOSAIC segment for a run id.
pub fn segment_name(run_id: &str) -> String {
    format!("{SEGMENT_PREFIX}{}", run_id.replace('/', "_"))
}

/// Validates a MOSAIC header against the mapping and returns the slot layout.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<SegmentLayout, FastLaneError> {
    let size = bytes.len();
    if size < HEADER_SIZE {
        return Err(FastLaneError::Truncated {
            path: path.to_owned(),
            size,
            needed: HEADER_SIZE,
            what: "MOSAIC header",
        });
    }
    if bytes[..4] != MAGIC {
        return Err(FastLaneError::BadMagic {
            path: path.to_owned(),
            found: String::from_utf8_lossy(&bytes[..4]).into_owned(),
            expected: "FLAN",
        });
    }
    let version = u32_at(bytes, header::VERSION);
    if version != VERSION {
        return Err(FastLaneError::UnsupportedVersion {
            path: path.to_owned(),
            version,
            supported: VERSION,
        });
    }
    let field = |name: &'static str, offset: usize| -> Result<u32, FastLaneError> {
        match u32_at(bytes, offset) {
            0 => Err(FastLaneError::ZeroField {
                path: path.to_owned(),
                field: name,
            }),
            v => Ok(v),
        }
    };
    let out_of_range =
        |name: &'static str, value: u64, expected: String| FastLaneError::FieldOutOfRange {
            path: path.to_owned(),
            field: name,
            value,
            expected,
        };
    let capacity = field("capacity", header::CAPACITY)?;
    let slot_size = field("slot_size", header::SLOT_SIZE)?;
    let payload_size = field("payload_size", header::PAYLOAD_SIZE)?;
    let width = field("width", header::WIDTH)?;
    let height = field("height", header::HEIGHT)?;
    let channels = field("channels", header::CHANNELS)?;
    if capacity > MAX_CAPACITY {
        return Err(out_of_range(
            "capacity",
            capacity.into(),
            format!("1..={MAX_CAPACITY}"),
        ));
    }
    for (name, value) in [("width", width), ("height", height)] {
        if value > MAX_DIMENSION {
            return Err(out_of_range(
                name,
                value.into(),
                format!("1..={MAX_DIMENSION}"),
            ));
        }
    }
    let format = PixelFormat::from_channels(channels)
        .ok_or_else(|| out_of_range("channels", channels.into(), "3 or 4".into()))?;
    if u64::from(slot_size) != u64::from(payload_size) + SLOT_HEADER_SIZE as u64 {
        return Err(out_of_range(
            "slot_size",
            slot_size.into(),
            format!("16 + payload_size = {}", u64::from(payload_size) + 16),
        ));
    }
    let geometry = FrameGeometry::packed(width, height, format);
    let frame_bytes = geometry.frame_bytes();
    if frame_bytes > payload_size as usize {
        return Err(out_of_range(
            "payload_size",
            payload_size.into(),
            format!("at least width*height*channels = {frame_bytes}"),
        ));
    }
    let needed = u64::from(capacity) * u64::from(slot_size) + HEADER_SIZE as u64;
    if needed > size as u64 {
        return Err(FastLaneError::ExceedsMapping {
            path: path.to_owned(),
            capacity: capacity.into(),
            slot_stride: slot_size.into(),
            needed,
            size,
        });
    }
    Ok(SegmentLayout {
        geometry,
        header_size: HEADER_SIZE,
        capacity: u64::from(capacity),
        slot_stride: slot_size as usize,
        pixel_offset: SLOT_HEADER_SIZE,
        payload_size: payload_size as usize,
    })
}

/// Episode and step, when a MOSAIC worker puts them in a frame's metadata JSON.
#[derive(Debug, Default, serde::Deserialize)]
pub struct FrameMetadata {
    #[serde(alias = "episode_index")]
    pub episode: Option<u64>,
    #[serde(alias = "step_index")]
    pub step: Option<u64>,
}
