//! The Prometheus endpoint: `GET /metrics` answers the figures as OpenMetrics text; every other
//! path is a 404 that names the right one. It runs on the daemon's tokio runtime; encoding a
//! scrape takes microseconds, so it needs no thread of its own.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

use super::{openmetrics_text, MetricSource};

/// The content type Prometheus asks for and parses as OpenMetrics.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running endpoint; dropping it stops it.
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl MetricsServer {
    /// The address it listens on (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Listens on `addr` and serves `source` on `runtime`. The bind happens here, so a taken port
/// is an error now, not a log line later.
pub fn serve(
    runtime: &tokio::runtime::Handle,
    addr: SocketAddr,
    source: Arc<dyn MetricSource>,
) -> std::io::Result<MetricsServer> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let listener = {
        let _context = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let source = Arc::clone(&source);
                async move {
                    (
                        [(header::CONTENT_TYPE, OPENMETRICS)],
                        openmetrics_text(&source),
                    )
                }
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "framelane serves its metrics at /metrics\n",
            )
                .into_response()
        });
    let (stop, stopped) = oneshot::channel::<()>();
    runtime.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "metrics endpoint failed");
        }
    });
    tracing::info!(address = %local_addr, "metrics endpoint listening");
    Ok(MetricsServer {
        local_addr,
        stop: Some(stop),
    })
}
