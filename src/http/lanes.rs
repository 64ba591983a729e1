//! Connections served on lanes: one thread per core, each with a
//! single-threaded tokio runtime, each connection on one lane for its whole
//! life (issue 14). On tokio's work-stealing runtime a connection's task
//! moved between the worker threads: its memory freed on another thread
//! than the one that allocated it, its wake-ups crossing threads, the
//! workers searching each other's queues. A lane does what an nginx worker
//! does — its own connections, its own timers and I/O readiness. Measured
//! at 128 connections: up to a tenth less CPU per request, a third of the
//! futex calls (README, Benchmark, step 22). The calls a lane makes (a
//! checkout's call to its tenant's API) go over connections of the lane's
//! own, driven on the lane (the direct client keeps its connections per
//! thread, `outbound::pool`; steps 33 and 38).
//!
//! The accept loop stays where it was and hands each accepted socket to the
//! next lane in turn. Background work (the delivery worker, the purger, the
//! reconciler, the inline deliveries a request starts) stays on the main
//! runtime.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tower::ServiceExt as _;

/// An accepted connection on its way to a lane: the socket (taken off the
/// accepting runtime's reactor), its peer, its connection slot and the
/// graceful-shutdown watcher it is served under.
pub struct Accepted {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub slot: OwnedSemaphorePermit,
    pub watcher: Watcher,
}

/// The running lanes. Dropping them closes their queues: each lane then
/// stops, dropping whatever it still serves (the caller has waited out the
/// graceful shutdown first).
pub struct Lanes {
    queues: Vec<UnboundedSender<Accepted>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: usize,
}

impl Lanes {
    /// Starts `count` lanes serving `app`, or says why a lane could not
    /// start (then none run).
    pub fn start(count: usize, app: &super::App, header_timeout: Duration) -> std::io::Result<Self> {
        let mut lanes = Self { queues: Vec::with_capacity(count), threads: Vec::with_capacity(count), next: 0 };
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (queue, mut accepted) = unbounded_channel::<Accepted>();
            let app = app.clone();
            let thread = std::thread::Builder::new().name(format!("payrelay-lane-{i}")).spawn(move || {
                runtime.block_on(async move {
                    // The store's answers to this lane's requests, in one
                    // wake-up per batch (`store::post`).
                    tokio::spawn(crate::store::open_post_here());
                    tokio::spawn(super::timers::keep_close(std::future::pending()));
                    while let Some(Accepted { stream, peer, slot, watcher }) = accepted.recv().await {
                        match tokio::net::TcpStream::from_std(stream) {
                            Ok(stream) => serve_connection(stream, peer, slot, watcher, &app, header_timeout),
                            Err(e) => tracing::warn!(error = %e, %peer, "cannot serve an accepted connection"),
                        }
                    }
                });
            })?;
            lanes.queues.push(queue);
            lanes.threads.push(thread);
        }
        Ok(lanes)
    }

    /// Hands `conn` to the next lane. A lane that has stopped (it cannot,
    /// short of a panic) gives the connection back to be dropped.
    pub fn hand(&mut self, conn: Accepted) -> Result<(), Accepted> {
        let lane = self.next % self.queues.len();
        self.next = self.next.wrapping_add(1);
        self.queues[lane].send(conn).map_err(|e| e.0)
    }

    /// Closes the lanes' queues and waits for their threads to end.
    pub async fn stop(self) {
        drop(self.queues);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Serves `stream` with `app` in a task of the current runtime, holding its
/// connection slot, under the graceful shutdown `watcher` belongs to.
pub fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    watcher: Watcher,
    app: &super::App,
    header_timeout: Duration,
) {
    let service = app.clone().map_request(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
        req.map(axum::body::Body::new)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let conn = watcher.watch(conn);
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    });
}
