//! The verify phase of a delivery (SPEC §8): for a tenant whose section
//! queries its provider, the worker asks before the first attempt, keeps
//! what was found with the callback, and goes on only if the policy lets
//! it. A query not answered is asked again on the delivery schedule; the
//! provider's acknowledgement never waited on any of it.

use crate::config::Config;
use crate::store::{AfterVerify, Claimed, Verified, now_ms};
use crate::verify::{self, Verdict};

use super::Worker;

/// Verifies `callback` if its tenant asks for it and it was not verified
/// already; `true`: make the delivery attempt now.
pub(super) async fn first(state: &Worker, config: &Config, callback: &mut Claimed) -> bool {
    let Some(tenant) = callback.tenant.as_ref().and_then(|t| config.table.tenant(t.as_str())) else {
        return true; // the attempt reports the missing tenant
    };
    let policy = verify::policy(tenant, callback.provider);
    let settled = match callback.verified {
        None => false,
        Some(Verified::Confirmed) => true,
        // "mark" asks once and delivers whatever it found.
        Some(_) => policy == crate::config::QueryPolicy::Mark,
    };
    if !policy.queries() || settled {
        return true;
    }
    let account = verify::account(tenant, callback.provider);
    let api = config.apis.of(callback.provider);
    let verdict = match state.budget().take(&account, api.per_second) {
        Ok(()) => {
            verify::query(
                state.client(),
                config,
                tenant,
                callback.provider,
                &callback.body,
                callback.content_type.as_deref(),
            )
            .await
        }
        Err(wait) => return defer(state, callback, wait).await,
    };
    if let Some(pause) = verdict.retry_after {
        state.budget().pause(&account, pause);
    }
    let tenant_id = tenant.id.as_str();
    crate::metrics::verification(callback.provider.name(), tenant_id, verdict.verified.as_str());
    let then = verify::next(policy, &verdict, callback.verify_tries, &config.delivery.retry, now_ms());
    log(callback, tenant_id, &verdict, then);
    callback.verified = Some(verdict.verified);
    match state.store().verify_note(callback.seq, verify::note(verdict, then)).await {
        Ok(moved) => moved && then == AfterVerify::Deliver,
        Err(e) => {
            tracing::error!(delivery = %callback.id, error = %e, "cannot keep the verification; it is asked again after the lease");
            false
        }
    }
}

/// The account's query budget is spent: ask again when it has room,
/// without counting this against the schedule.
async fn defer(state: &Worker, callback: &Claimed, wait: std::time::Duration) -> bool {
    let at = now_ms() + crate::store::ms(wait) + i64::from(fastrand::u16(..250));
    let detail = "waiting for the provider account's query budget".to_owned();
    let note = crate::store::VerifyNote { verified: None, detail, then: AfterVerify::Defer(at) };
    if let Err(e) = state.store().verify_note(callback.seq, note).await {
        tracing::warn!(delivery = %callback.id, error = %e, "cannot defer the verification; it is asked again after the lease");
    }
    false
}

fn log(callback: &Claimed, tenant: &str, verdict: &Verdict, then: AfterVerify) {
    let (id, provider, outcome) = (&callback.id, callback.provider.name(), verdict.verified.as_str());
    match then {
        AfterVerify::Deliver => tracing::info!(delivery = %id, provider, tenant, outcome, "verified by query"),
        AfterVerify::RetryAt(at) | AfterVerify::Defer(at) => tracing::warn!(
            delivery = %id, provider, tenant, outcome, detail = verdict.detail, retry_in_ms = at - now_ms(), "not verified yet; will ask again"
        ),
        AfterVerify::Reject => {
            tracing::warn!(delivery = %id, provider, tenant, outcome, detail = verdict.detail, "verification refused the callback; never delivered")
        }
        AfterVerify::Dead => {
            tracing::error!(delivery = %id, provider, tenant, detail = verdict.detail, "the provider stayed unavailable; callback is dead")
        }
    }
}
