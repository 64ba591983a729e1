//! `POST /funpoint/return` (SPEC §3.4): the provider bounces the buyer's
//! browser here; it goes on to the tenant's result page with only the
//! fields that page needs. Nothing is stored.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;

use super::{AppState, body, page};
use crate::checkout::GatewayError;
use crate::domain::checkmac::FIELD as CHECK_MAC;
use crate::form::FormFields;
use crate::providers::funpoint;

/// The fields passed on, by RtnCode.
fn fields_for(rtn_code: Option<&str>) -> &'static [&'static str] {
    match rtn_code {
        Some("10100073") => &["MerchantTradeNo", "RtnCode", "ExpireDate", "PaymentNo", "TradeAmt"],
        Some("2") => &["MerchantTradeNo", "RtnCode", "ExpireDate", "BankCode", "vAccount", "TradeAmt"],
        _ => &["MerchantTradeNo", "RtnCode", "RtnMsg", "TradeAmt"],
    }
}

pub async fn relay(State(state): State<AppState>, body: Body) -> Response {
    match relay_inner(&state, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(code = e.code(), error = %e, "browser return refused");
            page::error(&e, false)
        }
    }
}

async fn relay_inner(state: &AppState, body: Body) -> Result<Response, GatewayError> {
    let bytes = body::read(body).await?;
    FormFields::parse(&bytes).map_err(|_| GatewayError::UnknownOrder)?;
    let form = funpoint::canonical_form(&bytes).ok_or(GatewayError::RespelledField)?;
    let config = state.config();
    let routed = crate::routing::funpoint(&config.table, form.get("MerchantTradeNo"), None)
        .map_err(|_| GatewayError::UnknownOrder)?;
    let tenant = routed.tenant;
    let Some(section) = tenant.funpoint.as_ref() else {
        return Err(GatewayError::UnknownOrder);
    };
    // A return without a CheckMacValue carries nothing to check (SPEC §3.4).
    if form.get(CHECK_MAC).is_some() && !funpoint::check_mac(section, &form) {
        return Err(GatewayError::BadCheckMac);
    }
    let fields: Vec<(&str, &str)> =
        fields_for(form.get("RtnCode")).iter().filter_map(|&name| form.get(name).map(|v| (name, v))).collect();
    tracing::debug!(tenant = %tenant.id, "browser return relayed");
    Ok(page::autosubmit(&tenant.base_url.join(&section.result_path), &[tenant.base_url.origin()], &fields))
}
