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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use crate::ingest::client::watch_runs;
use crate::ingest::proto::framelane_v1::RunSummary;

/// Rust state of the `RunsPanel` QObject.
#[derive(Default)]
pub struct RunsPanelRust {
    address: QString,
    runs_json: QString,
    error: QString,
    stop: Option<Arc<AtomicBool>>,
}

impl Drop for RunsPanelRust {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.store(true, Ordering::Relaxed);
        }
    }
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
        self.on_address_changed(|mut panel| {
            let address = panel.address().to_string();
            if let Some(stop) = panel.as_mut().rust_mut().stop.take() {
                stop.store(true, Ordering::Relaxed);
            }
            let Ok(address) = address.parse::<std::net::SocketAddr>() else {
                panel.set_error(QString::from(&format!("not a daemon address: {address:?}")));
                return;
            };
            let stop = Arc::new(AtomicBool::new(false));
            panel.as_mut().rust_mut().stop = Some(Arc::clone(&stop));
            let qt_thread = panel.qt_thread();
            let spawned = std::thread::Builder::new()
                .name("runs-watch".into())
                .spawn(move || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    let errors = qt_thread.clone();
                    runtime.block_on(watch_runs(
                        address,
                        |runs| {
                            if stop.load(Ordering::Relaxed) {
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
                        |message| {
                            let _ =
                                errors.queue(move |panel| panel.set_error(QString::from(&message)));
                        },
                    ));
                });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start the run list thread");
            }
        })
        .release();
    }
}
