//! The tonic server: both services on one listener, with the message size limits and HTTP/2
//! windows chosen for frame traffic.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::connections::capped_incoming;
use super::framelane_api::TelemetryService;
use super::mosaic_api::TrainerService;
use super::proto::{framelane_v1, gymgui};
use super::IngestCore;

/// Size limits of the gRPC server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest message accepted. 64 MiB: a raw 1920x1080 RGBA frame is 8 MiB, and MOSAIC's
    /// JSON render payloads are about 11 bytes per pixel value (a 640x480 RGB frame is ~10 MiB).
    pub max_message_bytes: usize,
    /// HTTP/2 stream and connection windows: 16 MiB, which measured 2.4x the default window's
    /// throughput for 96x96x3 frames per step.
    pub window_bytes: u32,
    /// Concurrent streams one connection may open (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS):
    /// 64, so one client cannot hold hundreds of half-sent messages on one connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 pings every 30 s; a peer that does not answer within 20 s is dropped with its
    /// streams (a worker whose machine died, a half-open connection).
    pub keepalive_interval: std::time::Duration,
    pub keepalive_timeout: std::time::Duration,
    /// A publish stream that delivers no message for this long (idle, or stalled inside a
    /// message) is ended with DEADLINE_EXCEEDED and its buffers freed: 120 s.
    pub idle_stream_timeout: std::time::Duration,
    /// Connections held at once, all clients together: 256. Past it a new connection is closed
    /// at once and counted (`framelane_ingest_connections_refused_total`).
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024 * 1024,
            window_bytes: 16 * 1024 * 1024,
            max_concurrent_streams: 64,
            keepalive_interval: std::time::Duration::from_secs(30),
            keepalive_timeout: std::time::Duration::from_secs(20),
            idle_stream_timeout: std::time::Duration::from_secs(120),
            max_connections: 256,
        }
    }
}

/// Serves both APIs on `listener` until `shutdown` resolves; in-flight publishes are committed
/// and acknowledged before this returns.
pub async fn serve(
    core: Arc<IngestCore>,
    listener: TcpListener,
    limits: ServerLimits,
    tls: Option<tonic::transport::Identity>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    if let Ok(address) = listener.local_addr() {
        core.set_listen_address(address.to_string());
    }
    let connections = core.connection_stats();
    let telemetry = framelane_v1::telemetry_server::TelemetryServer::new(TelemetryService {
        core: Arc::clone(&core),
    })
    .max_decoding_message_size(limits.max_message_bytes)
    .max_encoding_message_size(limits.max_message_bytes);
    let trainer =
        gymgui::trainer_service_server::TrainerServiceServer::new(TrainerService { core })
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);
    let mut builder = tonic::transport::Server::builder();
    if let Some(identity) = tls {
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    builder
        .initial_stream_window_size(limits.window_bytes)
        .initial_connection_window_size(limits.window_bytes)
        .max_concurrent_streams(Some(limits.max_concurrent_streams))
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .add_service(telemetry)
        .add_service(trainer)
        .serve_with_incoming_shutdown(
            capped_incoming(listener, limits.max_connections, connections),
            shutdown,
        )
        .await
}
