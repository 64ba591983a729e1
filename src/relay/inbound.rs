//! The phases of one inbound notification (see the module above).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use crate::config::{AckMode, Config, Tenant};
use crate::delivery::{self, Handle, Worker};
use crate::providers::{self, Parsed, Provider};
use crate::routing::RouteError;
use crate::store::{Accepted, CallbackId, Claimed, DedupKey, NewCallback, Status};
use crate::telemetry::scope;
use crate::throttle::Throttle;

/// What the provider is told: its acknowledgement, or an error with its
/// status and message (written in the provider's grammar by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ack,
    Refuse(StatusCode, String),
}

impl Answer {
    pub(super) fn refuse(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Refuse(status, message.into())
    }
}

/// What the relay works with: the config in force for this request, the
/// worker's context and hand-off queue, the throttle on refused callbacks,
/// the duplicates answered from memory.
pub struct Relay<'a> {
    pub config: Arc<Config>,
    pub worker: &'a Worker,
    pub handoff: &'a Handle,
    pub refused: &'a Throttle,
    pub recent: &'a super::Recent,
}

/// What a notify request brought.
pub struct Inbound {
    pub provider: &'static dyn Provider,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub remote: Option<IpAddr>,
    /// The tenant the path named (`/{provider}/notify/{tenant_id}`).
    pub path_tenant: Option<String>,
}

impl Inbound {
    fn row(&self, status: Status, tenant: Option<String>, reason: Option<String>) -> NewCallback {
        NewCallback {
            provider: self.provider.kind(),
            tenant,
            status,
            reason,
            content_type: self.content_type.clone(),
            body: self.body.clone(),
            remote_addr: self.remote.map(crate::domain::ip::text),
            simulated: false,
            dedup: None,
            path_tenant: self.path_tenant.clone(),
            lease: None,
            order_key: None,
            source: None,
            order: None,
        }
    }
}

/// Parse: the body the way its provider sends it. Unparseable → 400,
/// nothing stored.
pub fn parse(inbound: &Inbound) -> Result<Parsed, Answer> {
    inbound.provider.parse(&inbound.body, inbound.content_type.as_deref()).ok_or_else(|| {
        tracing::info!(provider = inbound.provider.name(), "unparseable callback refused");
        crate::metrics::callback_received(inbound.provider.name(), None, "unparseable");
        Answer::refuse(StatusCode::BAD_REQUEST, "Bad Request")
    })
}

/// Route: the tenant, by the payload's key or the path's tenant. None →
/// kept as `unroutable` (a path/payload mismatch as `rejected`), 400.
pub async fn route<'c>(relay: &'c Relay<'_>, inbound: &Inbound, parsed: &Parsed) -> Result<&'c Tenant, Answer> {
    let provider = inbound.provider;
    match provider.route(&relay.config.table, parsed, inbound.path_tenant.as_deref()) {
        Ok(tenant) => Ok(tenant),
        Err(e) => {
            let (status, tenant) = match &e {
                RouteError::TenantMismatch { tenant, .. } => (Status::Rejected, Some(tenant.clone())),
                _ => (Status::Unroutable, None),
            };
            tracing::warn!(provider = provider.name(), outcome = status.as_str(), reason = %e, "callback not routed");
            let kept = keep(relay, inbound.row(status, tenant, Some(e.to_string()))).await;
            Err(kept.or(Answer::refuse(StatusCode::BAD_REQUEST, providers::route_message(&e))))
        }
    }
}

/// Verify: what the provider signs and the tenant pins. Refused → kept as
/// `rejected`, 400. A simulation for a tenant that drops them is kept as
/// `rejected` and acknowledged (so the provider stops resending). `Ok`
/// says whether it is a simulation.
pub async fn verify(relay: &Relay<'_>, inbound: &Inbound, tenant: &Tenant, parsed: &Parsed) -> Result<bool, Answer> {
    let provider = inbound.provider;
    let tenant_id = tenant.id.to_string();
    if let Err(rejection) = provider.verify(tenant, parsed) {
        tracing::warn!(provider = provider.name(), tenant = %tenant_id, reason = rejection.message, "callback rejected");
        let kept =
            keep(relay, inbound.row(Status::Rejected, Some(tenant_id), Some(rejection.message.to_owned()))).await;
        return Err(kept.or(Answer::refuse(StatusCode::BAD_REQUEST, rejection.message)));
    }
    let simulated = provider.simulated(parsed);
    if simulated && tenant.drop_simulated {
        tracing::info!(provider = provider.name(), tenant = %tenant_id, "simulated payment dropped (drop_simulated)");
        let reason = "simulated payment dropped (drop_simulated)".to_owned();
        keep(relay, inbound.row(Status::Rejected, Some(tenant_id), Some(reason))).await;
        return Err(Answer::Ack);
    }
    Ok(simulated)
}

/// Store: dedup check and insert, committed before this returns; the row
/// is leased to this instance from the start, so that its first attempt
/// (handed to the worker, or inline) needs no claim. Storage failing →
/// 503, so the provider resends.
pub async fn store(
    relay: &Relay<'_>,
    inbound: &Inbound,
    tenant: &Tenant,
    parsed: &Parsed,
    simulated: bool,
) -> Result<(Accepted, NewCallback), Answer> {
    let provider = inbound.provider;
    let config = &relay.config;
    let mut pending = inbound.row(Status::Pending, Some(tenant.id.to_string()), None);
    pending.simulated = simulated;
    pending.dedup = providers::tenant_dedup_key(provider, tenant, parsed)
        .map(|key| DedupKey { key, window: config.delivery.dedup_window });
    pending.lease = Some((relay.worker.owner().to_owned(), config.storage.lease));
    pending.order_key = provider.order_field().and_then(|f| parsed.field(f)).map(|v| v.into_owned());
    pending.order = crate::reconcile::order_move(provider, parsed);
    if let Some(dedup) = &pending.dedup
        && !inline(tenant, provider)
        && relay.recent.delivered_duplicate(
            &recent_key(provider, &dedup.key),
            &fingerprint(provider, parsed),
            relay.worker.store().clock().now_ms(),
        )
    {
        // The store said so within the last minute (see `Recent`).
        crate::metrics::callback_received(provider.name(), Some(tenant.id.as_str()), "duplicate");
        return Err(Answer::Ack);
    }
    if crate::reconcile::already_made(relay.worker, tenant, pending.order.as_ref()).await {
        // SPEC §9: the reconciler made and delivered this result already.
        crate::metrics::callback_received(provider.name(), Some(tenant.id.as_str()), "duplicate");
        return Err(Answer::Ack);
    }
    match relay.worker.store().accept(pending.clone()).await {
        Ok(accepted) => Ok((accepted, pending)),
        Err(e) => {
            tracing::error!(provider = provider.name(), tenant = %tenant.id, error = %e, "cannot store the callback; answering so that the provider resends");
            crate::metrics::callback_received(provider.name(), Some(tenant.id.as_str()), "storage_error");
            Err(Answer::refuse(StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable"))
        }
    }
}

/// Acknowledge: a stored callback goes to the worker and is acknowledged
/// (or, for `ack = "delivered"`, delivered now and answered by the outcome).
/// A duplicate is acknowledged — unless it differs from its original in a
/// field that matters (kept as `rejected` for the operator), and a resend
/// for an `ack = "delivered"` tenant gets the attempt that is due, if any.
pub async fn acknowledge(
    relay: &Relay<'_>,
    inbound: &Inbound,
    tenant: &Tenant,
    parsed: &Parsed,
    accepted: Accepted,
    pending: NewCallback,
) -> Answer {
    let provider = inbound.provider;
    // A callback to be verified by query is acknowledged once stored: the
    // provider's answer never waits on a query (SPEC §8).
    let inline = inline(tenant, provider);
    match accepted {
        Accepted::Stored { id, seq } => {
            crate::metrics::callback_received(provider.name(), Some(tenant.id.as_str()), "stored");
            scope::record(scope::Field::Delivery, id.as_str());
            let claimed = Claimed {
                seq,
                id,
                provider: provider.kind(),
                tenant: Some(tenant.id.clone()),
                content_type: pending.content_type,
                body: pending.body,
                remote_addr: pending.remote_addr,
                simulated: pending.simulated,
                attempts: 0,
                verified: None,
                verify_tries: 0,
                source: None,
                event: Some(provider.event(parsed)),
            };
            if !inline {
                relay.handoff.hand_off(claimed);
                return Answer::Ack;
            }
            deliver_now(relay, claimed).await
        }
        Accepted::Duplicate { id, status, received_ms } => {
            scope::record(scope::Field::Delivery, id.as_str());
            if let Some(answer) = Box::pin(conflicting(relay, inbound, parsed, tenant, &id)).await {
                return answer;
            }
            if status == Status::Delivered && !inline {
                remember(relay, provider, parsed, &pending, received_ms);
            }
            crate::metrics::callback_received(provider.name(), Some(tenant.id.as_str()), "duplicate");
            tracing::debug!(original = status.as_str(), "duplicate callback");
            let lease = relay.config.storage.lease;
            match Box::pin(delivery::on_resend(relay.worker, &id, status, inline, lease)).await {
                Ok(delivery::Resend::Acknowledge) => Answer::Ack,
                Ok(delivery::Resend::Attempt(claimed)) => deliver_now(relay, claimed).await,
                Ok(delivery::Resend::NotDue) => Answer::refuse(StatusCode::SERVICE_UNAVAILABLE, "Tenant unavailable"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot bring the original back");
                    Answer::refuse(StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable")
                }
            }
        }
    }
}

/// Is the tenant's callback delivered before it is acknowledged (`ack =
/// "delivered"`, not verified by query)?
fn inline(tenant: &Tenant, provider: &dyn Provider) -> bool {
    tenant.ack == AckMode::Delivered && !crate::verify::policy(tenant, provider.kind()).queries()
}

/// `{provider}\n{dedup_key}`, put together without the formatter: each
/// notification looks it up (issue 14).
fn recent_key(provider: &dyn Provider, dedup_key: &str) -> String {
    let name = provider.name();
    let mut key = String::with_capacity(name.len() + 1 + dedup_key.len());
    key.push_str(name);
    key.push('\n');
    key.push_str(dedup_key);
    key
}

/// The conflict fields' values, exactly as this callback carries them, each
/// prefixed with its length (no value can pass for another's neighbours).
fn fingerprint(provider: &dyn Provider, parsed: &Parsed) -> String {
    let mut out = String::new();
    for f in provider.conflict_fields() {
        match parsed.field(f) {
            Some(v) => out.push_str(&format!("{}:{v};", v.len())),
            None => out.push_str("-;"),
        }
    }
    out
}

/// A plain duplicate of a delivered callback: answered from memory next
/// time, within the original's dedup window and retention.
fn remember(relay: &Relay<'_>, provider: &dyn Provider, parsed: &Parsed, pending: &NewCallback, received_ms: i64) {
    let Some(dedup) = &pending.dedup else { return };
    let storage = &relay.config.storage;
    let until = received_ms + crate::store::ms(dedup.window).min(crate::store::ms(storage.retention));
    let now = relay.worker.store().clock().now_ms();
    relay.recent.remember(recent_key(provider, &dedup.key), fingerprint(provider, parsed), until, now);
}

/// `ack = "delivered"`: the provider hears its acknowledgement only if the
/// tenant took it within `inline_timeout`.
async fn deliver_now(relay: &Relay<'_>, claimed: Claimed) -> Answer {
    if Box::pin(delivery::deliver_now(relay.worker, claimed, relay.config.delivery.inline_timeout)).await {
        Answer::Ack
    } else {
        Answer::refuse(StatusCode::SERVICE_UNAVAILABLE, "Tenant unavailable")
    }
}

/// A "duplicate" that differs from its original in a field that matters
/// (an amount, an order id) is no resend: it is kept as `rejected` for the
/// operator and acknowledged once it is on disk (it may be the genuine one:
/// when it cannot be kept, the provider is told to try again). `None`: a
/// plain duplicate.
async fn conflicting(
    relay: &Relay<'_>,
    inbound: &Inbound,
    parsed: &Parsed,
    tenant: &Tenant,
    original_id: &CallbackId,
) -> Option<Answer> {
    let provider = inbound.provider;
    if provider.conflict_fields().is_empty() {
        return None;
    }
    let original = match relay.worker.store().get(original_id).await {
        Ok(Some(o)) => o,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the original of a duplicate");
            return Some(Answer::refuse(StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable"));
        }
    };
    let before = provider.parse(&original.body, original.content_type.as_deref())?;
    let field = providers::conflict(provider, parsed, &before)?;
    let reason = format!("conflicts with callback {original_id}: {field} differs");
    tracing::warn!(provider = provider.name(), tenant = %tenant.id, original = %original_id, field, "conflicting duplicate kept for the operator");
    crate::metrics::callback_received(provider.name(), Some(tenant.id.as_str()), "conflict");
    Some(match keep(relay, inbound.row(Status::Rejected, Some(tenant.id.to_string()), Some(reason))).await {
        Kept::Stored => Answer::Ack,
        Kept::Limited => Answer::refuse(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
        Kept::Full | Kept::Failed => Answer::refuse(StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable"),
    })
}

/// What became of a callback kept for the operator.
#[derive(Debug, PartialEq, Eq)]
enum Kept {
    Stored,
    /// The source address used up its allowance of refused callbacks.
    Limited,
    /// Young unroutable rows fill their caps; not kept.
    Full,
    /// The store failed (logged).
    Failed,
}

impl Kept {
    /// The answer to a refused callback: 429 when it was not kept for the
    /// allowance, else `refusal` (a failed write does not change a refusal).
    fn or(self, refusal: Answer) -> Answer {
        if self == Self::Limited { Answer::refuse(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests") } else { refusal }
    }
}

/// Stores a callback that will not be delivered (rejected, unroutable), for
/// the operator. Nothing is stored when the source address has used up its
/// allowance of refused callbacks, nor an unroutable one while young
/// unroutable rows fill their caps (see the purger).
async fn keep(relay: &Relay<'_>, callback: NewCallback) -> Kept {
    let ip = callback.remote_addr.as_deref().and_then(|a| a.parse().ok());
    if !relay.refused.allow(ip) {
        crate::metrics::callback_received(callback.provider.name(), callback.tenant.as_deref(), "limited");
        tracing::warn!(
            provider = callback.provider.name(),
            remote = callback.remote_addr.as_deref().unwrap_or("-"),
            "refused callbacks from this address are over server.refused_per_minute; not kept"
        );
        return Kept::Limited;
    }
    crate::metrics::callback_received(callback.provider.name(), callback.tenant.as_deref(), callback.status.as_str());
    if callback.status == Status::Unroutable && relay.worker.unroutable_full() {
        tracing::warn!(
            provider = callback.provider.name(),
            "unroutable callbacks fill storage.keep_unroutable(_bytes) with rows younger than unroutable_min_age; this one is not kept"
        );
        return Kept::Full;
    }
    match relay.worker.store().accept(callback).await {
        Ok(_) => Kept::Stored,
        Err(e) => {
            tracing::warn!(error = %e, "cannot keep a refused callback");
            Kept::Failed
        }
    }
}
