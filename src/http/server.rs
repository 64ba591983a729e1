//! The accept loop. Hand-written rather than `axum::serve` for two things
//! axum does not expose: a header-read timeout (a client slow to send its
//! headers is cut off by `request_timeout` like one slow to send its body),
//! and the peer address for every request (`ConnectInfo`).

use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::lanes::{Accepted, Lanes, serve_connection};

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting and gives in-flight requests up to `grace` to finish. At most
/// `max_connections` are served at once: one more is closed as soon as it
/// is accepted, so that idle sockets cannot use up the file descriptors
/// real clients need (SPEC is silent; `[server] max_connections`).
pub async fn serve(
    listener: TcpListener,
    app: super::App,
    header_timeout: Duration,
    max_connections: usize,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
    let count = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut lanes = match Lanes::start(count, &app, header_timeout) {
        Ok(lanes) => Some(lanes),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the connection lanes; serving on the main runtime");
            None
        }
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            crate::metrics::connection_refused();
            tracing::debug!(%peer, max_connections, "connection refused: server.max_connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        match lanes.as_mut() {
            Some(lanes) => match stream.into_std() {
                Ok(stream) => {
                    // A stopped lane gives the connection back; it is closed.
                    let _ = lanes.hand(Accepted { stream, peer, slot, watcher });
                }
                Err(e) => tracing::warn!(error = %e, %peer, "cannot hand an accepted connection to a lane"),
            },
            None => serve_connection(stream, peer, slot, watcher, &app, header_timeout),
        }
    }
    drop(listener);
    tracing::info!("stopped accepting; finishing in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(?grace, "in-flight requests still running after the grace period; closing them");
    }
    if let Some(lanes) = lanes {
        lanes.stop().await;
    }
}
