//! The ops that need not be committed at once (attempt records, the
//! ledger's checkouts): they wait here, off the writer's channel, for a
//! batch to ride with or for [`RECORD_DELAY`] to pass.

use std::sync::{Mutex, PoisonError};

use super::writer::{MAX_BATCH, Op, RECORD_DELAY};

/// The ops that may wait up to [`RECORD_DELAY`] for a batch to ride with,
/// and when the oldest of them was put there.
#[derive(Default)]
pub(super) struct Later(Mutex<Waiting>);

#[derive(Default)]
struct Waiting {
    ops: Vec<Op>,
    since: Option<tokio::time::Instant>,
}

/// Most ops waiting in [`Later`]: beyond, the writer is behind (a disk that
/// hangs) and a new one is refused rather than held in memory unbounded.
pub(super) const LATER_CAP: usize = 16 * MAX_BATCH;

/// What became of an op put in [`Later`].
pub(super) enum Pushed {
    Queued,
    /// Queued; the writer must be nudged: the first op of a window, or a
    /// batch's worth waiting.
    Nudge,
    /// Not queued: [`LATER_CAP`] ops wait already.
    Full,
}

impl Later {
    pub(super) fn push(&self, op: Op) -> Pushed {
        let mut w = self.lock();
        if w.ops.len() >= LATER_CAP {
            return Pushed::Full;
        }
        w.ops.push(op);
        w.since.get_or_insert_with(tokio::time::Instant::now);
        if w.ops.len() == 1 || w.ops.len() == MAX_BATCH { Pushed::Nudge } else { Pushed::Queued }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Everything waiting.
    pub(super) fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.lock()).ops
    }

    /// What a batch of accepts must take along: everything once it is due
    /// (waited [`RECORD_DELAY`], or a batch's worth), else only the
    /// checkouts (a callback must find the order it names). Attempt records
    /// left behind keep their window: each adds its own pages (its row, its
    /// index entries) to a commit that a provider waits for.
    pub(super) fn for_accepts(&self, now: tokio::time::Instant) -> Vec<Op> {
        let mut w = self.lock();
        let due = w.ops.len() >= MAX_BATCH || w.since.is_some_and(|t| now >= t + RECORD_DELAY);
        if due {
            return std::mem::take(&mut *w).ops;
        }
        if !w.ops.iter().any(|op| matches!(op, Op::Checkout(_))) {
            return Vec::new();
        }
        let (checkouts, rest) = std::mem::take(&mut w.ops).into_iter().partition(|op| matches!(op, Op::Checkout(_)));
        w.ops = rest;
        if w.ops.is_empty() {
            w.since = None;
        }
        checkouts
    }

    /// When what waits must be committed, if anything waits.
    pub(super) fn due(&self) -> Option<tokio::time::Instant> {
        self.lock().since.map(|t| t + RECORD_DELAY)
    }

    pub(super) fn full(&self) -> bool {
        self.lock().ops.len() >= MAX_BATCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::orders::NewOrder;
    use crate::store::types::{AttemptRecord, Outcome};
    use tokio::sync::oneshot;

    fn checkout() -> Op {
        Op::Checkout(Box::new(NewOrder {
            tenant: "t".into(),
            merchant_trade_no: "o".into(),
            merchant_id: None,
            amount: None,
            payment_type: None,
            at: 0,
            first_query_at: 0,
            recurring: None,
        }))
    }

    fn record() -> Op {
        let attempt = AttemptRecord {
            n: 1,
            at_ms: 0,
            status_code: Some(200),
            duration_ms: 1,
            error: None,
            response_excerpt: None,
        };
        Op::Record { seq: 1, attempt, outcome: Outcome::Delivered, reply: Some(oneshot::channel().0) }
    }

    #[test]
    fn accepts_take_checkouts_at_once_and_records_only_once_their_window_is_over() {
        let later = Later::default();
        let start = tokio::time::Instant::now();
        assert!(matches!(later.push(record()), Pushed::Nudge));
        later.push(checkout());
        let due = later.due().expect("a window");
        assert!(due >= start + RECORD_DELAY && due <= tokio::time::Instant::now() + RECORD_DELAY);
        let taken = later.for_accepts(due - RECORD_DELAY / 2);
        assert!(matches!(taken.as_slice(), [Op::Checkout(_)]), "the checkout, not the record");
        assert_eq!(later.due(), Some(due), "the record keeps its window");
        assert!(later.for_accepts(due - RECORD_DELAY / 2).is_empty());
        let taken = later.for_accepts(due);
        assert!(matches!(taken.as_slice(), [Op::Record { .. }]));
        assert_eq!(later.due(), None);
        for _ in 0..MAX_BATCH {
            later.push(record());
        }
        assert_eq!(later.for_accepts(tokio::time::Instant::now()).len(), MAX_BATCH, "a batch's worth goes at once");
    }

    #[test]
    fn later_nudges_at_the_first_op_and_a_batch_s_worth_and_refuses_past_its_cap() {
        let later = Later::default();
        let pushes: Vec<Pushed> = (0..LATER_CAP + 1).map(|_| later.push(Op::Nudge)).collect();
        let nudges: Vec<usize> =
            pushes.iter().enumerate().filter(|(_, p)| matches!(p, Pushed::Nudge)).map(|(i, _)| i).collect();
        assert_eq!(nudges, [0, MAX_BATCH - 1]);
        assert!(matches!(pushes[LATER_CAP], Pushed::Full));
        assert!(later.full());
        assert_eq!(later.take().len(), LATER_CAP);
        assert!(matches!(later.push(Op::Nudge), Pushed::Nudge), "a new window after the writer took them");
    }
}
