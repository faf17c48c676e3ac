//! framelane: live frames and telemetry from reinforcement-learning workers, robots and camera
//! rigs, shown in a Qt Quick window. See docs/ARCHITECTURE.md for the parts and how data flows.

pub mod bench;
pub mod bus;
pub mod daemon;
pub mod demo;
pub mod encode;
pub mod fastlane;
pub mod gating;
pub mod ingest;
pub mod replay;
pub mod snapshot;
pub mod store;
pub mod ui;
