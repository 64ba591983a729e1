//! What goes into the store and what comes out of it.

use std::time::Duration;

use bytes::Bytes;

pub use crate::domain::{CallbackId, TenantId};
pub use crate::routing::Provider;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Accepted, not yet delivered: the worker will (re)try it.
    Pending,
    Delivered,
    /// Every attempt failed; kept, visible, replayable.
    Dead,
    /// Refused (bad MAC, wrong merchant, path/payload mismatch, dropped simulation); never delivered.
    Rejected,
    /// No tenant found; kept for the operator, replayable with a newer table.
    Unroutable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Rejected => "rejected",
            Self::Unroutable => "unroutable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "dead" => Self::Dead,
            "rejected" => Self::Rejected,
            "unroutable" => Self::Unroutable,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The business key a provider's resends share, and how long it counts.
#[derive(Debug, Clone)]
pub struct DedupKey {
    pub key: String,
    pub window: Duration,
}

/// A callback to store.
#[derive(Debug, Clone)]
pub struct NewCallback {
    pub provider: Provider,
    pub tenant: Option<String>,
    /// `Pending`, `Rejected` or `Unroutable`.
    pub status: Status,
    /// Why it was rejected or unroutable (shown as its last error).
    pub reason: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub remote_addr: Option<String>,
    pub simulated: bool,
    /// Only for `Pending`: skip the insert if this key was accepted inside its window.
    pub dedup: Option<DedupKey>,
    /// The tenant the callback's path named, if any (for a replay of an
    /// unroutable one).
    pub path_tenant: Option<String>,
    /// Only for `Pending`: insert it already leased to this owner, for an
    /// attempt the caller makes itself (`ack = "delivered"`).
    pub lease: Option<(String, Duration)>,
    /// The order number it names (searchable: `?q=`).
    pub order_key: Option<String>,
    /// `None`: from the provider; `Some("reconcile")`: made by the reconciler.
    pub source: Option<&'static str>,
    /// Only for `Pending`: what it does to its order in the ledger.
    pub order: Option<super::orders::OrderMove>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Stored {
        id: CallbackId,
        seq: i64,
    },
    /// The dedup key was accepted before, as callback `id`, now in
    /// `status`, received at `received_ms`.
    Duplicate {
        id: CallbackId,
        status: Status,
        received_ms: i64,
    },
}

/// A pending callback leased for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The row's key in the store.
    pub seq: i64,
    pub id: CallbackId,
    pub provider: Provider,
    pub tenant: Option<TenantId>,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub remote_addr: Option<String>,
    pub simulated: bool,
    /// Attempts made before this one.
    pub attempts: u32,
    /// What the provider's query API said so far, if it was asked.
    pub verified: Option<Verified>,
    /// Queries that counted against the schedule.
    pub verify_tries: u32,
    /// `reconcile` for a notification the reconciler made; else from the provider.
    pub source: Option<String>,
    /// What the callback means to the shop (SPEC §9), when the relay has
    /// just read it; a claim from the store reads its body again.
    pub event: Option<&'static str>,
}

/// What the provider's query API said of a callback (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The provider confirms what the callback claims.
    Confirmed,
    /// The provider knows the payment and says otherwise.
    Contradicted,
    /// Not found, or still in progress: asked again later.
    NotYet,
    /// No usable answer (refused, timeout, 5xx, 429/403, bad signature).
    Unavailable,
}

impl Verified {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Contradicted => "contradicted",
            Self::NotYet => "not_yet",
            Self::Unavailable => "unavailable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Confirmed, Self::Contradicted, Self::NotYet, Self::Unavailable].into_iter().find(|v| v.as_str() == s)
    }
}

/// A query's outcome, as it is to be kept, and what follows it.
#[derive(Debug, Clone)]
pub struct VerifyNote {
    /// `None`: nothing was asked (the budget was spent); what was found before stays.
    pub verified: Option<Verified>,
    /// Why, with an excerpt of the provider's answer (never a credential).
    pub detail: String,
    pub then: AfterVerify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterVerify {
    /// Deliver now: the caller keeps its lease and makes the attempt.
    Deliver,
    /// Ask again at this unix-ms time; the query counted against the schedule.
    RetryAt(i64),
    /// Ask again at this time without counting (the query budget was spent).
    Defer(i64),
    /// Never delivered: `rejected` with the detail as its reason.
    Reject,
    /// The schedule ran out with the provider unavailable: `dead`, replayable.
    Dead,
}

/// One delivery attempt, as kept forever with its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub n: u32,
    pub at_ms: i64,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at this unix-ms time.
    RetryAt(i64),
    Dead,
}

/// What the purger keeps. Rejected and unroutable rows have caps of their
/// own (by count and by bytes of body, newest kept), so that junk refused
/// in bulk cannot push out an unroutable callback (which may be the only
/// copy of a real payment); unroutable rows younger than
/// `unroutable_min_age` are never purged by the caps.
#[derive(Debug, Clone, Copy)]
pub struct PurgePolicy {
    /// The time the purge runs at (unix ms): an injected clock for tests.
    pub now_ms: i64,
    pub retention: Duration,
    pub dead_retention: Duration,
    pub keep_rejected: u64,
    pub keep_rejected_bytes: u64,
    pub keep_unroutable: u64,
    pub keep_unroutable_bytes: u64,
    pub unroutable_min_age: Duration,
}

impl PurgePolicy {
    /// `retention` for delivered rows and `keep` rows of each refused kind,
    /// with no byte caps, no minimum age and no dead-row retention.
    pub fn simple(now_ms: i64, retention: Duration, keep: u64) -> Self {
        Self {
            now_ms,
            retention,
            dead_retention: Duration::MAX,
            keep_rejected: keep,
            keep_rejected_bytes: u64::MAX,
            keep_unroutable: keep,
            keep_unroutable_bytes: u64::MAX,
            unroutable_min_age: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub delivered: u64,
    pub rejected: u64,
    pub unroutable: u64,
    pub dead: u64,
    /// The unroutable rows left still fill a cap (all are young).
    pub unroutable_full: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackSummary {
    pub seq: i64,
    pub id: CallbackId,
    pub provider: Provider,
    pub tenant: Option<String>,
    pub status: Status,
    pub attempts: u32,
    pub received_at_ms: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CallbackDetail {
    pub summary: CallbackSummary,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub remote_addr: Option<String>,
    pub simulated: bool,
    pub next_attempt_at_ms: Option<i64>,
    pub path_tenant: Option<String>,
    pub attempts: Vec<AttemptRecord>,
    /// What the provider's query API said, and why (SPEC §8).
    pub verification: Option<(Verified, String)>,
}

/// What a replay puts back into the queue (due at once).
#[derive(Debug, Clone)]
pub enum Replay {
    /// One callback, if its status is one of `from`.
    One { id: CallbackId, from: Vec<Status> },
    /// One unroutable callback, now routed to `tenant`, with what a fresh
    /// callback gets (SPEC §7): its simulated mark and its dedup key. Not
    /// moved when another callback of its provider holds that key.
    Routed { id: CallbackId, tenant: String, simulated: bool, dedup_key: Option<String> },
    /// One unroutable callback refused on replay (rejected, with why).
    Refuse { id: CallbackId, tenant: Option<String>, reason: String },
    /// Every dead callback of a tenant (the morning after its outage).
    DeadOf { tenant: String },
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub tenant: Option<String>,
    pub provider: Option<String>,
    pub limit: u32,
    /// Only rows older than this `seq` (the cursor of the previous page).
    pub before_seq: Option<i64>,
    /// Only callbacks with this order key or id.
    pub q: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub by_status: Vec<(Status, u64)>,
    pub oldest_pending_ms: Option<i64>,
    /// Orders in the ledger with no payment result yet (SPEC §9).
    pub open_orders: u64,
    pub oldest_open_order_ms: Option<i64>,
}
