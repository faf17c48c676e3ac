//! `RunsPanel`: the daemon's runs (status, steps/s, episodes, shed counters, profile) for the
//! runs panel, followed over gRPC by a background thread.

#[cxx_qt::bridge]
pub mod qobject {
    unsafe extern "C++" {
        include!("cxx-qt-lib/qstring.h");
        type QString = cxx_qt_lib::QString;
    }

    extern "RustQt" {
        #[qobject]
        #[qml_element]
        #[qproperty(QString, address)]
        #[qproperty(QString, runs_json, cxx_name = "runsJson")]
        #[qproperty(QString, error)]
        type RunsPanel = super::RunsPanelRust;
    }

    impl cxx_qt::Threading for RunsPanel {}
    impl cxx_qt::Initialize for RunsPanel {}
}

use std::pin::Pin;

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use super::follower::Follower;
use framelane_core::ingest::client::watch_runs;
use framelane_core::ingest::proto::framelane_v1::RunSummary;

/// Rust state of the `RunsPanel` QObject.
#[derive(Default)]
pub struct RunsPanelRust {
    address: QString,
    runs_json: QString,
    error: QString,
    follower: Option<Follower>,
}

/// The run list as the QML runs panel reads it.
pub fn runs_to_json(runs: &[RunSummary]) -> String {
    let items: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| {
            let shed_total: u64 = run.shed.values().sum();
            serde_json::json!({
                "runId": run.run_id,
                "profile": run.profile,
                "steps": run.steps,
                "episodes": run.episodes,
                "stepsPerSecond": run.steps_per_second,
                "status": run.status,
                "shed": run.shed,
                "shedTotal": shed_total,
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

impl cxx_qt::Initialize for qobject::RunsPanel {
    fn initialize(self: Pin<&mut Self>) {
        self.on_address_changed(|panel| panel.follow()).release();
    }
}

impl qobject::RunsPanel {
    /// Follows the daemon's run list at the current address.
    fn follow(mut self: Pin<&mut Self>) {
        self.as_mut().rust_mut().follower = None;
        let address = self.address().to_string();
        let Ok(address) = address.parse::<std::net::SocketAddr>() else {
            self.set_error(QString::from(&format!("not a daemon address: {address:?}")));
            return;
        };
        let qt_thread = self.qt_thread();
        let errors = qt_thread.clone();
        let report = move |message: String| {
            let _ = errors.queue(move |panel| panel.set_error(QString::from(&message)));
        };
        let follower = Follower::spawn_async("runs-watch", report.clone(), move |stop| {
            watch_runs(
                address,
                move |runs| {
                    if stop.is_set() {
                        return false;
                    }
                    let Some(runs) = runs else { return true };
                    let json = runs_to_json(&runs);
                    qt_thread
                        .queue(move |mut panel| {
                            panel.as_mut().set_runs_json(QString::from(&json));
                            panel.as_mut().set_error(QString::default());
                        })
                        .is_ok()
                },
                report,
            )
        });
        self.as_mut().rust_mut().follower = follower;
    }
}
