//! One timer per runtime that is always due within a second, so that the
//! per-request timeouts (the store's 4 s answer, a tenant's 10 s call)
//! never wake the runtime's own reactor (issue 14).
//!
//! tokio wakes a runtime's driver (an `eventfd` write, and an `epoll_wait`
//! that returns at once) whenever a timer is registered that falls due
//! before the wake-up the driver promised itself when it last parked. A
//! lane whose wheel then held only 15 s request timeouts paid that for
//! every shorter timeout registered until it parked again: 0.36 writes per
//! checkout, 0.19 per stored notification, measured under load. With a
//! timer never more than a second away, the promised wake-up is always
//! sooner than any per-request timeout, and none of them wakes anything;
//! the keeper itself costs one wake-up a second.

use std::time::Duration;

use tokio::time::MissedTickBehavior;

/// How far ahead the keeper's timer is at most: shorter than every
/// per-request timeout (the shortest is the store's 4 s).
const PERIOD: Duration = Duration::from_secs(1);

/// Keeps a timer due within [`PERIOD`] on the current runtime until
/// `stop` resolves.
pub async fn keep_close(stop: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ticking = async {
        loop {
            tick.tick().await;
        }
    };
    tokio::select! {
        () = ticking => {}
        () = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_keeper_runs_until_stopped() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let keeper = tokio::spawn(keep_close(async {
            let _ = rx.await;
        }));
        // Its first tick is immediate; it goes on waiting for the next.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!keeper.is_finished());
        tx.send(()).ok();
        tokio::time::timeout(Duration::from_secs(5), keeper).await.expect("stops when told").expect("no panic");
    }
}
