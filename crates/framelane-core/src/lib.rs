//! framelane's back end, without Qt: the fast lane (shared-memory frames), the run records and
//! their queues, storage profiles and frame gating, the SQLite store, gRPC ingest, the encoder
//! service, replay, and the daemon that ties them together. See docs/ARCHITECTURE.md.

pub mod budget;
pub mod bus;
pub mod daemon;
pub mod encode;
/// The fast lane lives in its own crate (no FFmpeg or SQLite, so it also builds for Windows).
pub use framelane_fastlane as fastlane;
pub mod gating;
pub mod ingest;
pub mod live;
pub mod media;
pub mod metrics;
pub mod replay;
pub mod snapshot;
pub mod store;
