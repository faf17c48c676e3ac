//! Everything Qt-facing in Rust: the cxx-qt QObjects QML uses and the entry into the Qt event
//! loop. No other part of the crate knows Qt.

pub mod analysis_view;
pub mod app;
pub mod clip_catalog;
pub mod clip_player;
pub mod daemon_metrics;
pub mod follower;
pub mod list_rows;
pub mod live_view;
pub mod replay_episodes;
pub mod replay_plot;
pub mod replay_view;
pub mod rig_kiosk;
pub mod run_catalog;
pub mod run_plot;
pub mod runs_panel;
pub mod view_worker;

/// Errors of the GUI part, worded for the user.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(
        "no display: DISPLAY and WAYLAND_DISPLAY are unset.\n  \
         Run under a virtual X server:   xvfb-run -a {program} {args}\n  \
         or render without a window:    QT_QPA_PLATFORM=offscreen {program} {args}"
    )]
    NoDisplay { program: String, args: String },
    #[error("the Qt application exited with code {0}")]
    QtExit(i32),
}

pub use app::ffi::AppOptions;

/// Whether Qt will find somewhere to draw: a display server or an explicit QPA platform.
pub fn display_available() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// Runs the Qt Quick application on the calling thread, which must be the main thread.
pub fn run_gui(options: &AppOptions, args_for_hint: &str) -> Result<(), UiError> {
    if !display_available() {
        return Err(UiError::NoDisplay {
            program: std::env::args()
                .next()
                .unwrap_or_else(|| "framelane".into()),
            args: args_for_hint.to_owned(),
        });
    }
    cxx_qt::init_crate!(framelane);
    cxx_qt::init_qml_module!("dev.framelane");
    match app::ffi::run_application(options) {
        0 => Ok(()),
        code => Err(UiError::QtExit(code)),
    }
}
