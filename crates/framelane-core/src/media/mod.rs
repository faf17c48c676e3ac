//! Media helpers shared by the parts that store, replay, encode and show frames: decoding kept
//! images, the one checked copy of pixel rows into a caller's buffer, and file names for
//! recordings. Neutral ground: it knows no part above it.

pub mod image;
pub mod paths;
pub mod rows;
pub mod stamp;

pub use image::{
    decode_image, decode_jpeg, decode_png, raw_to_rgba, DecodedImage, ImageCodec, ImageError,
    RawPixelFormat,
};
pub use paths::{owner_suffix, run_folder_name, safe_component};
pub use rows::{copy_rows, RowCopyError};
