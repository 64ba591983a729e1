//! Replay: put a stored callback back into the delivery queue. Any status
//! but `rejected` (a forged or mismatched callback stays out); an
//! `unroutable` one is routed afresh with today's table, the way it came in
//! (payload key, or the tenant its path named).

use crate::http::AppState;
use crate::providers;
use crate::store::{CallbackDetail, Replay, Status, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no such callback")]
    NotFound,
    #[error("a rejected callback is never delivered")]
    Rejected,
    #[error("still unroutable: {0}")]
    StillUnroutable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Replays callback `id`; the row as it is afterwards.
pub async fn one(state: &AppState, id: &str) -> Result<CallbackDetail, ReplayError> {
    let store = state.store();
    let detail = store.get(id).await?.ok_or(ReplayError::NotFound)?;
    let what = match detail.summary.status {
        Status::Rejected => return Err(ReplayError::Rejected),
        Status::Unroutable => Replay::Routed { id: id.to_owned(), tenant: route_afresh(state, &detail)? },
        Status::Pending | Status::Delivered | Status::Dead => {
            Replay::One { id: id.to_owned(), from: vec![Status::Pending, Status::Delivered, Status::Dead] }
        }
    };
    store.replay(what).await?;
    let after = store.get(id).await?.ok_or(ReplayError::NotFound)?;
    tracing::info!(delivery = %id, provider = %after.summary.provider, tenant = after.summary.tenant.as_deref().unwrap_or("-"), was = detail.summary.status.as_str(), "callback replayed");
    Ok(after)
}

/// Replays every `dead` callback of `tenant`; how many.
pub async fn dead_of(state: &AppState, tenant: &str) -> Result<u64, ReplayError> {
    let n = state.store().replay(Replay::DeadOf { tenant: tenant.to_owned() }).await?;
    tracing::info!(tenant, replayed = n, "dead callbacks replayed");
    Ok(n)
}

fn route_afresh(state: &AppState, detail: &CallbackDetail) -> Result<String, ReplayError> {
    let still = |why: String| ReplayError::StillUnroutable(why);
    let provider = providers::by_name(&detail.summary.provider)
        .ok_or_else(|| still(format!("unknown provider {:?}", detail.summary.provider)))?;
    let parsed = provider
        .parse(&detail.body, detail.content_type.as_deref())
        .ok_or_else(|| still("the body does not parse".to_owned()))?;
    let config = state.config();
    let tenant =
        provider.route(&config.table, &parsed, detail.path_tenant.as_deref()).map_err(|e| still(e.to_string()))?;
    provider.verify(tenant, &parsed).map_err(|r| still(format!("tenant {}: {}", tenant.id, r.message)))?;
    Ok(tenant.id.to_string())
}
