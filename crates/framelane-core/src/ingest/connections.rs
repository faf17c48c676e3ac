//! The cap on connections the daemon holds at once: every accepted connection takes a permit;
//! past the cap a new connection is closed at once and counted (a client sees the connection
//! refused and can retry; the connections already open are not slowed). Each connection's own
//! limits (streams, message size, idle streams) are the tonic server's.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Connections open now and refused so far (for `Health` and the metrics).
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: AtomicU64,
    pub refused: AtomicU64,
}

/// An accepted connection holding its permit; counted open until dropped.
pub struct CappedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    stats: Arc<ConnectionStats>,
}

impl Drop for CappedStream {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connected for CappedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts from `listener` on a task of its own and yields connections while fewer than
/// `max_connections` are open; the task ends when the server drops the stream.
pub fn capped_incoming(
    listener: TcpListener,
    max_connections: usize,
    stats: Arc<ConnectionStats>,
) -> ReceiverStream<Result<CappedStream, std::io::Error>> {
    let (sender, receiver) = mpsc::channel(16);
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                () = sender.closed() => return,
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, limit = max_connections, "connection refused: the daemon holds its most connections");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            stats.open.fetch_add(1, Ordering::Relaxed);
            let capped = CappedStream {
                inner: stream,
                _permit: permit,
                stats: Arc::clone(&stats),
            };
            if sender.send(Ok(capped)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(receiver)
}
