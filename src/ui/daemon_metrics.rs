//! `DaemonMetrics`: the daemon's pipeline figures (the ones its Prometheus endpoint serves), read
//! once a second from its `Health` reply by a `daemon-metrics` follower, for the metrics panel.

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
        /// The figures as a JSON object, names as Prometheus shows them ("{}" before the first).
        #[qproperty(QString, figures, cxx_name = "figuresJson")]
        /// Why the figures are not coming (empty while they are).
        #[qproperty(QString, error)]
        type DaemonMetrics = super::DaemonMetricsRust;
    }

    impl cxx_qt::Threading for DaemonMetrics {}
    impl cxx_qt::Initialize for DaemonMetrics {}
}

use std::pin::Pin;
use std::time::Duration;

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use super::follower::Follower;
use framelane_core::ingest::client::{connect, daemon_metrics};

/// How often the figures are read.
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct DaemonMetricsRust {
    address: QString,
    figures: QString,
    error: QString,
    follower: Option<Follower>,
}

impl cxx_qt::Initialize for qobject::DaemonMetrics {
    fn initialize(mut self: Pin<&mut Self>) {
        self.as_mut().set_figures(QString::from("{}"));
        self.on_address_changed(|view| view.follow()).release();
    }
}

impl qobject::DaemonMetrics {
    fn follow(mut self: Pin<&mut Self>) {
        self.as_mut().rust_mut().follower = None;
        let address = self.address().to_string();
        if address.is_empty() {
            return;
        }
        let Ok(address) = address.parse::<std::net::SocketAddr>() else {
            self.as_mut()
                .set_error(QString::from(&format!("not a daemon address: {address:?}")));
            return;
        };
        let qt_thread = self.qt_thread();
        let report = {
            let qt_thread = qt_thread.clone();
            move |message: String| {
                let _ = qt_thread.queue(move |view| view.set_error(QString::from(&message)));
            }
        };
        let follower = Follower::spawn_async("daemon-metrics", report, move |stop| async move {
            let mut client = None;
            while !stop.is_set() {
                if client.is_none() {
                    client = connect(address).await.ok();
                }
                let outcome = match client.as_mut() {
                    Some(c) => daemon_metrics(c).await.map_err(|e| e.to_string()),
                    None => Err(format!("daemon at {address} not reachable")),
                };
                if outcome.is_err() {
                    client = None;
                }
                let delivered = qt_thread.queue(move |mut view| match outcome {
                    Ok(figures) => {
                        let json = serde_json::to_string(&figures).unwrap_or_else(|_| "{}".into());
                        view.as_mut().set_figures(QString::from(&json));
                        view.as_mut().set_error(QString::default());
                    }
                    Err(err) => view.as_mut().set_error(QString::from(&err)),
                });
                if delivered.is_err() {
                    return;
                }
                tokio::time::sleep(INTERVAL).await;
            }
        });
        self.as_mut().rust_mut().follower = follower;
    }
}
