//! Process-level Qt application: builds the QML engine (cpp/app.cpp), loads the main window and
//! runs the event loop on the calling (main) thread.

#[cxx_qt::bridge(namespace = "framelane")]
pub mod ffi {
    /// What the Qt application should do, decided by the command line.
    #[derive(Debug, Default, Clone)]
    struct AppOptions {
        /// Run shown when the window opens (empty: none until the user picks one).
        initial_run_id: String,
        window_title: String,
        /// Load the QML, render one frame, report problems and exit.
        smoke_test: bool,
        /// Quit after this many milliseconds (0: run until the window is closed).
        exit_after_ms: u64,
        /// Before quitting, save a screenshot of the window here (empty: none).
        screenshot_path: String,
        /// Before quitting, write presentation statistics as JSON here (empty: none).
        stats_path: String,
        /// Also rewrite the statistics file this often while running (0: only at the end).
        stats_interval_ms: u64,
        /// Quit (after the screenshot and statistics) as soon as this file exists (empty: no).
        quit_file: String,
        /// Sample on a GUI-thread timer of this period instead of every rendered frame (0).
        poll_interval_ms: u32,
        /// Live view frame-rate cap (0: none).
        max_fps: u32,
        window_width: u32,
        window_height: u32,
        fullscreen: bool,
        /// Telemetry daemon to show runs and plots from (empty: none).
        daemon_address: String,
        /// Recorded run plotted when the window opens (empty: none).
        plot_run_id: String,
        /// Data directory of the store, for replay (empty: replay unavailable).
        data_dir: String,
        /// Recorded run opened in the replay view when the window opens (empty: none).
        replay_run_id: String,
        /// Worker of that run whose episodes are shown first (empty: the run's first).
        replay_worker: String,
        /// Agent of that worker whose episodes and frames are shown first (empty: the first).
        replay_agent: String,
        /// Analysis output folder opened in the Replay tab when the window opens (empty: none).
        analysis_dir: String,
        /// Rig clip (its id) opened in the Replay tab when the window opens (empty: none).
        replay_clip: String,
        /// Play that clip once it is open.
        play_clip: bool,
        /// rig.yaml of a rig to run as a kiosk in the window (empty: the normal window).
        rig_config: String,
        /// Show the daemon's kept frames even when the run has a fast-lane segment.
        no_shared_memory: bool,
        /// Producer rate to ask for over the control stream when the window opens (-1: none).
        ask_rate_hz: i32,
        /// Ask the producer to slow down after sustained skipping.
        auto_slow: bool,
        /// Open with the metrics panel shown.
        show_metrics: bool,
    }

    unsafe extern "C++" {
        include!("framelane/app.h");
        /// Runs the application; returns the process exit code.
        #[cxx_name = "runApplication"]
        fn run_application(options: &AppOptions) -> i32;
    }
}
