//! The delivery worker: claim due callbacks with a lease → send each to its
//! tenant → record the attempt and what follows (delivered, retry at, dead).
//! Bounded concurrency; on shutdown it lets in-flight attempts finish and
//! gives back every lease it still holds; on start it simply claims what is
//! due, so pending deliveries resume after any restart.

mod context;
mod schedule;
mod send;
mod sign;
mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use context::{Handle, Worker};
pub use schedule::{next_outcome, parse_retry_after};
pub use send::attempt;
pub use sign::sign;

use crate::store::{Claimed, PurgePolicy, Purged, StoreError};

/// Attempts in flight at once, per instance.
pub const CONCURRENCY: usize = 64;
/// How often the worker looks in the store for due retries.
const POLL: Duration = Duration::from_millis(200);
/// While more is due than there are slots, the worker waits for this many
/// to free up and claims again at once (one claim, one commit, for several
/// slots) instead of sleeping until the next poll (issue 14: a backlog
/// drained in bursts of 64 every `POLL`).
const REFILL: u32 = 16;
/// How often retention and the caps run.
const PURGE_EVERY: Duration = Duration::from_secs(10);

/// A callback just stored with a lease for this instance, handed to the
/// worker directly so that its first attempt needs no claim round trip.
pub struct Handoff {
    pub callback: Claimed,
    pub leased_at: Instant,
}

/// Runs until `shutdown` is cancelled, then drains and releases its leases.
pub async fn run_worker(state: Worker, mut handoff: mpsc::Receiver<Handoff>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let tracker = TaskTracker::new();
    let owner = state.owner().to_owned();
    tracing::info!(owner, concurrency = CONCURRENCY, "delivery worker started");
    let mut next_poll = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            handed = handoff.recv() => {
                let Some(Handoff { callback, leased_at }) = handed else { continue };
                // Waited so long for a free slot that the lease may run out
                // soon: leave it to the poll after the lease, not twice.
                if leased_at.elapsed() > state.config().storage.lease / 2 {
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                start(&tracker, &state, callback, permit);
            }
            () = tokio::time::sleep_until(next_poll) => {
                poll(&state, &owner, &permits, &tracker, &shutdown).await;
                next_poll = tokio::time::Instant::now() + POLL;
            }
        }
    }
    tracker.close();
    let grace = state.config().delivery.timeout + Duration::from_secs(2);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("delivery attempts still running at shutdown; their leases are released");
    }
    match state.store().release(&owner).await {
        Ok(n) if n > 0 => tracing::info!(released = n, "delivery leases given back"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot release leases; they expire after [storage].lease"),
    }
    tracing::info!("delivery worker stopped");
}

/// Claims what is due in the store (retries, work left by a restart or by
/// another instance) as long as there are due rows, waiting for slots to
/// free up while the last claim came back full.
async fn poll(
    state: &Worker,
    owner: &str,
    permits: &Arc<Semaphore>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let mut more_due = false;
    loop {
        if more_due && permits.available_permits() < REFILL as usize {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                slots = permits.clone().acquire_many_owned(REFILL) => match slots {
                    Ok(slots) => drop(slots),
                    Err(_) => return,
                },
            }
        }
        let free = permits.available_permits();
        if free == 0 {
            return;
        }
        let lease = state.config().storage.lease;
        let batch = match state.store().claim_due(owner, lease, free).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim deliveries; trying again shortly");
                return;
            }
        };
        let claimed = batch.len();
        for callback in batch {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            start(tracker, state, callback, permit);
        }
        if claimed < free {
            return;
        }
        more_due = true;
    }
}

/// Starts an attempt in the worker's slot `permit`. Its future (the query,
/// the call, the record: kilobytes) is boxed where it is made: spawned by
/// value, it was copied again at each layer of the spawn (issue 14).
fn start(tracker: &TaskTracker, state: &Worker, callback: Claimed, permit: OwnedSemaphorePermit) {
    let state = state.clone();
    tracker.spawn(Box::pin(async move {
        deliver(&state, callback, Some(permit)).await;
    }));
}

/// One attempt, recorded. The delivery slot (`permit`) is given back as
/// soon as the tenant has answered, before the record is written. Storage
/// errors are logged: the lease then expires and the attempt is made again
/// (at least once, never lost).
pub async fn deliver(state: &Worker, mut callback: Claimed, permit: Option<OwnedSemaphorePermit>) -> bool {
    // The worker's own attempts (they hold a slot) do not wait for their
    // record's commit; an inline one (a provider waits on its outcome) does.
    let wait_for_record = permit.is_none();
    let config = state.config();
    if !verify::first(state, &config, &mut callback).await {
        return false;
    }
    let (record, outcome) = attempt(state.outbound(), &config, &callback).await;
    drop(permit);
    let delivered = matches!(outcome, crate::store::Outcome::Delivered);
    let tenant = callback.tenant.as_ref().map_or("-", |t| t.as_str());
    crate::metrics::attempt(
        callback.provider.name(),
        tenant,
        delivered,
        matches!(outcome, crate::store::Outcome::Dead),
        Duration::from_millis(record.duration_ms),
    );
    match &outcome {
        crate::store::Outcome::Delivered => {
            tracing::debug!(delivery = %callback.id, provider = %callback.provider, tenant, attempt = record.n, status = ?record.status_code, ms = record.duration_ms, "delivered")
        }
        crate::store::Outcome::RetryAt(at) => tracing::warn!(
            delivery = %callback.id, provider = %callback.provider, tenant, attempt = record.n, status = ?record.status_code,
            error = record.error.as_deref().unwrap_or("-"), retry_in_ms = at - crate::store::now_ms(), "delivery failed; will retry"
        ),
        crate::store::Outcome::Dead => tracing::error!(
            delivery = %callback.id, provider = %callback.provider, tenant, attempt = record.n, status = ?record.status_code,
            error = record.error.as_deref().unwrap_or("-"), "delivery failed for the last time; callback is dead"
        ),
    }
    let recorded = if wait_for_record {
        state.store().record(callback.seq, record, outcome).await
    } else {
        state.store().record_later(callback.seq, record, outcome).await
    };
    if let Err(e) = recorded {
        tracing::error!(delivery = %callback.id, error = %e, "cannot record the attempt; it will be made again after the lease");
    }
    delivered
}

/// What a provider's resend of an accepted callback leads to.
pub enum Resend {
    /// Acknowledge it: the original is handled (or, `ack = "stored"`,
    /// queued again if it was dead).
    Acknowledge,
    /// `ack = "delivered"`: this attempt is due now; answer by its outcome.
    Attempt(Claimed),
    /// `ack = "delivered"`: no attempt is due yet (a resend does not burn
    /// the retry schedule), or the original is being attempted elsewhere.
    NotDue,
}

/// A resend of callback `id` (now in `status`). A dead original comes back
/// into the queue, due at once: the provider still cares, and the tenant
/// may be back. For an `inline` (`ack = "delivered"`) tenant the attempt
/// that is due, if any, is claimed for the caller to make now.
pub async fn on_resend(
    worker: &Worker,
    id: &crate::store::CallbackId,
    status: crate::store::Status,
    inline: bool,
    lease: Duration,
) -> Result<Resend, StoreError> {
    use crate::store::Status;
    if status == Status::Dead && worker.store().requeue(id).await? {
        tracing::info!(delivery = %id, "a resend brought a dead callback back");
    }
    if !inline || !matches!(status, Status::Pending | Status::Dead) {
        return Ok(Resend::Acknowledge);
    }
    Ok(match worker.store().claim_one(id, worker.owner(), lease).await? {
        Some(claimed) => Resend::Attempt(claimed),
        None => Resend::NotDue,
    })
}

/// One attempt now, in a task of its own on the worker's runtime (so that
/// it completes and is recorded even if the caller gives up, and outlives
/// the connection lane that asked), waited for at most `wait`:
/// did the tenant take it in that time?
pub async fn deliver_now(worker: &Worker, callback: Claimed, wait: Duration) -> bool {
    let attempt = worker.clone();
    let attempt = worker.spawn(async move { deliver(&attempt, callback, None).await });
    matches!(tokio::time::timeout(wait, attempt).await, Ok(Ok(true)))
}

/// One round of retention and caps, as the purger runs it, at `now_ms`
/// (the purger passes the time; tests pass a later one instead of waiting).
/// Also tells the notify path whether unroutable rows fill their caps.
pub async fn purge_at(state: &Worker, now_ms: i64) -> Result<Purged, StoreError> {
    let s = &state.config().storage;
    let policy = PurgePolicy {
        now_ms,
        retention: s.retention,
        dead_retention: s.dead_retention,
        keep_rejected: s.keep_rejected,
        keep_rejected_bytes: s.keep_rejected_bytes,
        keep_unroutable: s.keep_unroutable,
        keep_unroutable_bytes: s.keep_unroutable_bytes,
        unroutable_min_age: s.unroutable_min_age,
    };
    let purged = state.store().purge(policy).await?;
    if purged.unroutable_full != state.unroutable_full() {
        if purged.unroutable_full {
            tracing::error!(
                "unroutable callbacks younger than storage.unroutable_min_age fill their caps: new ones are not kept until room is made (fix the table and replay them, or raise the caps)"
            );
        } else {
            tracing::info!("room for unroutable callbacks again");
        }
        state.set_unroutable_full(purged.unroutable_full);
    }
    Ok(purged)
}

/// Retention and the caps on refused rows: at start, then every
/// [`PURGE_EVERY`] (SPEC: at least once a minute; the caps want it sooner).
/// `each_round` runs after every purge (the HTTP layer's own upkeep).
pub async fn run_purger(state: Worker, shutdown: CancellationToken, each_round: impl Fn() + Send) {
    loop {
        match purge_at(&state, crate::store::now_ms()).await {
            Ok(p) if p.delivered + p.rejected + p.unroutable + p.dead > 0 => tracing::info!(
                delivered = p.delivered,
                rejected = p.rejected,
                unroutable = p.unroutable,
                dead = p.dead,
                "purged old rows"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge failed; trying again next round"),
        }
        each_round();
        tokio::select! {
            () = tokio::time::sleep(PURGE_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
