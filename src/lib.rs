//! framelane, the application: the command line, the Qt Quick window (`ui`, the only Rust that
//! knows Qt), the demo producer and the benchmarks. The back end is the `framelane_core` crate.
//! See docs/ARCHITECTURE.md for the parts and how data flows.

pub mod bench;
pub mod demo;
pub mod proxy;
pub mod ui;
