//! The recording rig: cameras capture on threads of their own, each camera encodes continuously
//! into a ring of encoded packets bounded by time and bytes (trimmed a whole GOP at a time, so
//! it always starts on a keyframe), and a trigger saves, for every camera, a clip from before
//! the trigger to after it by packet copy, with a JSON description beside it.
//!
//! Parts: `config` (rig.yaml, validated with file, line and key), `source` (synthetic, OpenCV
//! capture), `ring` (the packet ring), `camera` (capture and encode threads, state and
//! counters), `clip` (choosing packets for an interval, writing clips), `control` (the rig's
//! counters, status and trigger handles, shared by everything that acts on it), `rig` (cameras,
//! triggers and the clip thread together; the control socket), `grpc` (the rig's gRPC API),
//! `registry` (clips listed in the telemetry daemon's store).

pub mod camera;
pub mod clip;
pub mod config;
mod control;
pub mod error;
mod grpc;
pub mod reference;
pub mod registry;
pub mod rig;
pub mod ring;
pub mod source;

pub use config::RigConfig;
pub use error::RigError;
pub use rig::Rig;
