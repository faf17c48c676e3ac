//! `RunCatalog`: the list of fast-lane runs the run picker shows, refreshed by a background
//! thread so that listing /dev/shm never runs on the GUI thread.

#[cxx_qt::bridge]
pub mod qobject {
    unsafe extern "C++" {
        include!("cxx-qt-lib/qstring.h");
        type QString = cxx_qt_lib::QString;
    }

    extern "RustQt" {
        #[qobject]
        #[qml_element]
        #[qproperty(QString, runs_json, cxx_name = "runsJson")]
        #[qproperty(i32, count)]
        #[qproperty(QString, error)]
        type RunCatalog = super::RunCatalogRust;

        /// Removes segments whose writer is gone; returns how many were removed.
        #[qinvokable]
        #[cxx_name = "cleanStale"]
        fn clean_stale(self: Pin<&mut RunCatalog>) -> i32;
    }

    impl cxx_qt::Threading for RunCatalog {}
    impl cxx_qt::Initialize for RunCatalog {}
}

use std::pin::Pin;
use std::time::Duration;

use cxx_qt::Threading;
use cxx_qt_lib::QString;

use framelane_core::fastlane::{clean_stale_segments, list_segments, SegmentInfo};

/// How often the discovery thread lists segments.
const REFRESH_INTERVAL: Duration = Duration::from_millis(1000);

/// Rust state of the `RunCatalog` QObject.
#[derive(Default)]
pub struct RunCatalogRust {
    runs_json: QString,
    count: i32,
    error: QString,
}

/// The run list as the QML run picker reads it.
pub fn runs_to_json(runs: &[SegmentInfo]) -> String {
    let items: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| {
            serde_json::json!({
                "runId": run.run_id,
                "kind": run.kind.label(),
                "path": run.path.display().to_string(),
                "bytes": run.bytes,
                "ageSeconds": run.age.as_secs_f64(),
                "width": run.geometry.map_or(0, |g| g.width),
                "height": run.geometry.map_or(0, |g| g.height),
                "format": run.geometry.map_or("", |g| g.format.name()),
                "frames": run.frames_published,
                "state": run.state_label(),
                "stale": run.is_stale(),
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

impl cxx_qt::Initialize for qobject::RunCatalog {
    fn initialize(self: Pin<&mut Self>) {
        let qt_thread = self.qt_thread();
        let spawned = std::thread::Builder::new()
            .name("fastlane-discovery".into())
            .spawn(move || loop {
                let (json, count, error) = match list_segments() {
                    Ok(runs) => (runs_to_json(&runs), runs.len() as i32, String::new()),
                    Err(err) => ("[]".to_owned(), 0, err.to_string()),
                };
                let delivered = qt_thread.queue(move |mut catalog| {
                    catalog.as_mut().set_runs_json(QString::from(&json));
                    catalog.as_mut().set_count(count);
                    catalog.as_mut().set_error(QString::from(&error));
                });
                // The catalog was destroyed: stop listing.
                if delivered.is_err() {
                    break;
                }
                std::thread::sleep(REFRESH_INTERVAL);
            });
        if let Err(err) = spawned {
            tracing::error!(error = %err, "could not start the fast-lane discovery thread");
        }
    }
}

impl qobject::RunCatalog {
    fn clean_stale(self: Pin<&mut Self>) -> i32 {
        match clean_stale_segments() {
            Ok(removed) => removed.len() as i32,
            Err(err) => {
                self.set_error(QString::from(&err.to_string()));
                -1
            }
        }
    }
}
