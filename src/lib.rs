//! framelane: live frames and telemetry from reinforcement-learning workers, robots and camera
//! rigs, shown in a Qt Quick window. See docs/ARCHITECTURE.md for the parts and how data flows.

pub mod bench;
pub mod demo;
pub mod fastlane;
pub mod ui;
