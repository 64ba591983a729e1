//! The other providers' browser returns (SPEC §4). Nothing is stored.
//!
//! - `POST /sinopac/return`: the buyer's browser goes on to the tenant's
//!   `return_path` with exactly the fields received, in their order.
//! - `GET /tappay/return/{tenant_id}?…`: 303 to the tenant's `return_path`
//!   with the query string unchanged.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, Uri, header};

use super::{AppState, body, page};
use crate::checkout::GatewayError;
use crate::form::FormFields;
use crate::routing::{self, Provider};

pub async fn sinopac(State(state): State<AppState>, body: Body) -> Response {
    match sinopac_inner(&state, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(provider = "sinopac", code = e.code(), error = %e, "browser return refused");
            page::error(&e, false)
        }
    }
}

async fn sinopac_inner(state: &AppState, body: Body) -> Result<Response, GatewayError> {
    let bytes = body::read(body).await?;
    let form = FormFields::parse(&bytes).map_err(|_| GatewayError::UnknownShop)?;
    let config = state.config();
    let routed = routing::route(&config.table, crate::providers::of(Provider::Sinopac), form.get("ShopNo"), None)
        .map_err(|_| GatewayError::UnknownShop)?;
    let tenant = routed.tenant;
    let section = tenant.sinopac.as_ref().ok_or(GatewayError::UnknownShop)?;
    let fields: Vec<(&str, &str)> = form.iter().collect();
    tracing::debug!(provider = "sinopac", tenant = %tenant.id, "browser return relayed");
    Ok(page::autosubmit(&tenant.base_url.join(&section.return_path), &[tenant.base_url.origin()], &fields))
}

pub async fn tappay(State(state): State<AppState>, Path(tenant_id): Path<String>, uri: Uri) -> Response {
    let config = state.config();
    let Some((tenant, section)) =
        config.table.tenant(&tenant_id).and_then(|t| t.tappay.as_ref().map(|section| (t, section)))
    else {
        tracing::info!(provider = "tappay", "browser return for an unknown tenant");
        return page::error(&GatewayError::UnknownTenant, false);
    };
    let mut location = tenant.base_url.join(&section.return_path);
    if let Some(query) = uri.query() {
        location.push(if location.contains('?') { '&' } else { '?' });
        location.push_str(query);
    }
    let Ok(location) = HeaderValue::from_str(&location) else {
        return page::error(&GatewayError::UnknownTenant, false);
    };
    tracing::debug!(provider = "tappay", tenant = %tenant.id, "browser return redirected");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
