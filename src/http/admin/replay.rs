//! Replay: put a stored callback back into the delivery queue. Any status
//! but `rejected` (a forged or mismatched callback stays out); an
//! `unroutable` one is routed afresh with today's table, the way it came in
//! (payload key, or the tenant its path named).

use crate::http::AppState;
use crate::providers;
use crate::store::{CallbackDetail, CallbackId, Replay, Status, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no such callback")]
    NotFound,
    #[error("a rejected callback is never delivered")]
    Rejected,
    #[error("still unroutable: {0}")]
    StillUnroutable(String),
    /// Routed afresh, it is refused as a fresh one would be (now `rejected`).
    #[error("not queued: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Replays callback `id`; the row as it is afterwards.
pub async fn one(state: &AppState, id: &str) -> Result<CallbackDetail, ReplayError> {
    let id = &CallbackId::parse(id).ok_or(ReplayError::NotFound)?;
    let store = state.store();
    let detail = store.get(id).await?.ok_or(ReplayError::NotFound)?;
    // A replayed callback is no longer "delivered": its resends go to the store.
    state.recent().forget_all();
    match detail.summary.status {
        Status::Rejected => return Err(ReplayError::Rejected),
        Status::Unroutable => route_afresh(state, &detail).await?,
        Status::Pending | Status::Delivered | Status::Dead => {
            let from = vec![Status::Pending, Status::Delivered, Status::Dead];
            store.replay(Replay::One { id: id.clone(), from }).await?;
        }
    }
    let after = store.get(id).await?.ok_or(ReplayError::NotFound)?;
    tracing::info!(delivery = %id, provider = %after.summary.provider, tenant = after.summary.tenant.as_deref().unwrap_or("-"), was = detail.summary.status.as_str(), "callback replayed");
    Ok(after)
}

/// Replays every `dead` callback of `tenant`; how many.
pub async fn dead_of(state: &AppState, tenant: &str) -> Result<u64, ReplayError> {
    state.recent().forget_all();
    let n = state.store().replay(Replay::DeadOf { tenant: tenant.to_owned() }).await?;
    tracing::info!(tenant, replayed = n, "dead callbacks replayed");
    Ok(n)
}

/// SPEC §7: an unroutable callback replayed is treated as new: routed with
/// today's table, verified, its SimulatePaid marked or dropped, its dedup
/// key taken (a key already held makes it a duplicate, not a delivery).
async fn route_afresh(state: &AppState, detail: &CallbackDetail) -> Result<(), ReplayError> {
    let still = |why: String| ReplayError::StillUnroutable(why);
    let provider = providers::of(detail.summary.provider);
    let parsed = provider
        .parse(&detail.body, detail.content_type.as_deref())
        .ok_or_else(|| still("the body does not parse".to_owned()))?;
    let config = state.config();
    let tenant =
        provider.route(&config.table, &parsed, detail.path_tenant.as_deref()).map_err(|e| still(e.to_string()))?;
    let id = detail.summary.id.clone();
    let refuse = |reason: String| Replay::Refuse { id: id.clone(), tenant: Some(tenant.id.to_string()), reason };
    let refused = if let Err(r) = provider.verify(tenant, &parsed) {
        Some(r.message.to_owned())
    } else if provider.simulated(&parsed) && tenant.drop_simulated {
        Some("simulated payment dropped (drop_simulated)".to_owned())
    } else {
        None
    };
    if let Some(reason) = refused {
        state.store().replay(refuse(reason.clone())).await?;
        return Err(ReplayError::Refused(format!("tenant {}: {reason}", tenant.id)));
    }
    let dedup_key = providers::tenant_dedup_key(provider, tenant, &parsed);
    let routed = Replay::Routed {
        id: id.clone(),
        tenant: tenant.id.to_string(),
        simulated: provider.simulated(&parsed),
        dedup_key: dedup_key.clone(),
    };
    if state.store().replay(routed).await? == 0 && dedup_key.is_some() {
        // Not moved: another callback holds its key (it came again and was
        // accepted since). Delivering this one too would be a second delivery.
        let reason = "a duplicate of a callback accepted since".to_owned();
        state.store().replay(refuse(reason.clone())).await?;
        return Err(ReplayError::Refused(reason));
    }
    Ok(())
}
