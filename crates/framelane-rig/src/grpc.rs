//! The rig's gRPC API (`framelane.v1.Rig`, proto/framelane/v1/rig.proto): `Trigger` and
//! `GetRigStatus`, for lab software on this or another machine. Served on the `rig-grpc`
//! thread (a single-threaded runtime of its own: the rig's capture and encode threads never
//! share it) from `recording.grpc_listen`. An address beyond loopback needs a token, checked
//! in constant time on every call, like the daemon's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use framelane_core::ingest::check_bearer;
use framelane_core::ingest::proto::framelane_v1 as v1;
use tonic::{Request, Response, Status};

use crate::config::RigConfig;
use crate::control::ControlHandle;
use crate::RigError;

struct RigService {
    handle: ControlHandle,
    token: Option<String>,
}

#[tonic::async_trait]
impl v1::rig_server::Rig for RigService {
    async fn trigger(
        &self,
        request: Request<v1::TriggerRequest>,
    ) -> Result<Response<v1::TriggerReply>, Status> {
        check_bearer(&request, self.token.as_deref())?;
        let source: String = request.get_ref().source.chars().take(64).collect();
        match self.handle.trigger() {
            Some(n) => {
                tracing::info!(trigger = n, source = %source, "trigger over gRPC");
                Ok(Response::new(v1::TriggerReply { triggers: n }))
            }
            None => Err(Status::resource_exhausted(
                "the rig's trigger queue is full (clips are not being written: see GetRigStatus errors)",
            )),
        }
    }

    async fn get_rig_status(
        &self,
        request: Request<v1::RigStatusRequest>,
    ) -> Result<Response<v1::RigStatusReply>, Status> {
        check_bearer(&request, self.token.as_deref())?;
        let status = self.handle.status();
        let json = serde_json::to_string(&status).unwrap_or_default();
        Ok(Response::new(v1::RigStatusReply {
            cameras: status
                .cameras
                .iter()
                .map(|c| v1::RigCamera {
                    name: c.name.clone(),
                    state: c.state.clone(),
                    reason: c.reason.clone(),
                    captured: c.captured,
                    dropped: c.dropped,
                    encoded: c.encoded,
                    encoder: c.encoder.clone(),
                    ring_seconds: c.ring_seconds,
                })
                .collect(),
            triggers: status.triggers,
            clips_written: status.clips_written,
            clips_failed: status.clips_failed,
            disk_free_mb: status.disk_free_mb,
            errors: status.errors.clone(),
            last_clip: status.last_clip.map(|c| c.id).unwrap_or_default(),
            json,
        }))
    }
}

/// Binds the rig's gRPC address (`recording.grpc_listen`) before anything else starts, so a
/// taken port or a missing token fails the rig's start, naming the key.
pub(crate) fn bind(
    config: &RigConfig,
) -> Result<Option<(std::net::TcpListener, SocketAddr)>, RigError> {
    let Some(listen) = config.grpc_listen() else {
        return Ok(None);
    };
    let fail = |reason: String| RigError::Config {
        path: config.path.clone(),
        line: None,
        reason: format!("recording: grpc_listen {listen}: {reason}"),
    };
    if !listen.ip().is_loopback() && config.token.is_none() {
        return Err(fail(
            "listens beyond loopback and needs a token (--token or FRAMELANE_TOKEN)".into(),
        ));
    }
    let listener = std::net::TcpListener::bind(listen).map_err(|e| fail(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| fail(e.to_string()))?;
    let bound = listener.local_addr().map_err(|e| fail(e.to_string()))?;
    Ok(Some((listener, bound)))
}

/// Serves the bound listener on the `rig-grpc` thread until `stop` is set.
pub(crate) fn spawn(
    listener: std::net::TcpListener,
    handle: ControlHandle,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, RigError> {
    let token = handle.token();
    let thread = std::thread::Builder::new()
        .name("rig-grpc".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    tracing::error!(error = %err, "rig gRPC: no runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::error!(error = %err, "rig gRPC: listener");
                        return;
                    }
                };
                let service = v1::rig_server::RigServer::new(RigService { handle, token });
                let stopped = async move {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                };
                let served = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        stopped,
                    )
                    .await;
                if let Err(err) = served {
                    tracing::error!(error = %err, "rig gRPC server stopped");
                }
            });
        })
        .map_err(|source| RigError::Thread {
            name: "rig-grpc".into(),
            source,
        })?;
    Ok(thread)
}
