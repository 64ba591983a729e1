//! `POST /funpoint/checkout` (an auto-submitting form, or the CVS post) and
//! `POST /funpoint/checkout.json` (the payment form as JSON), SPEC §3.1–3.2.
//! Phases: read → validate → route → origin check → tenant API → answer.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};

use super::{AppState, body, client_ip::client_ip, page};
use crate::checkout::{self, CheckoutRequest, GatewayError, PaymentRequest};
use crate::form::{self, FormFields};

/// The page flow: errors as HTML unless the client asks for JSON.
pub async fn page(State(state): State<AppState>, req: Request) -> Response {
    let json = wants_json(req.headers());
    match relay(&state, req, false).await {
        Ok(payment) => answer_page(&state, payment).await.unwrap_or_else(|e| fail(&e, json)),
        Err(e) => fail(&e, json),
    }
}

/// The data flow: the tenant's `payment_value` as it was sent; errors as JSON.
pub async fn json(State(state): State<AppState>, req: Request) -> Response {
    match relay(&state, req, true).await {
        Ok(PaymentRequest { raw_value: Some(raw), .. }) => {
            let mut response = raw.get().to_owned().into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            response
        }
        // (Asked for with `keep_raw`: never the case.)
        Ok(_) => fail(&GatewayError::TenantApi(checkout::TenantApiError::NoPaymentValue), true),
        Err(e) => fail(&e, true),
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("application/json"))
}

fn fail(err: &GatewayError, json: bool) -> Response {
    match err {
        GatewayError::TenantApi(cause) => {
            tracing::warn!(code = err.code(), cause = %crate::telemetry::chain(cause), "checkout failed")
        }
        _ => tracing::info!(code = err.code(), error = %err, "checkout refused"),
    }
    page::error(err, json)
}

/// Steps 1–5 of SPEC §3.1, shared by both paths; `keep_raw` keeps the
/// tenant's `payment_value` bytes (the data flow answers them).
async fn relay(state: &AppState, req: Request, keep_raw: bool) -> Result<PaymentRequest, GatewayError> {
    let (parts, body_stream) = req.into_parts();
    let config = state.config();
    let buyer =
        client_ip(&parts.headers, parts.extensions.get::<ConnectInfo<SocketAddr>>(), &config.server.trusted_proxies);

    let bytes = body::read(Body::new(body_stream)).await?;
    let form = FormFields::parse(&bytes).map_err(|_| GatewayError::FieldTooLong)?;
    let request = CheckoutRequest::from_form(&form)?;

    let tenant = config.table.by_domain_code(request.domain()).ok_or(GatewayError::UnknownDomain)?;
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !tenant.origins.iter().any(|o| o.as_str() == origin) {
            return Err(GatewayError::OriginNotAllowed(origin.to_owned()));
        }
    }
    // Only a tenant with a Funpoint section has an API path; one without
    // still checks out through the default path.
    let api_path = tenant.funpoint.as_ref().map_or("/funpoint_api.php?action=funpoint", |f| f.api_path.as_str());
    let url = tenant.base_url.join(api_path);
    let buyer = buyer.map(crate::domain::ip::text).unwrap_or_default();
    tracing::debug!(tenant = %tenant.id, "asking the tenant API for the payment form");
    let payment = checkout::request_payment(
        state.outbound(),
        &url,
        form::encode(request.fields()),
        &buyer,
        config.delivery.timeout,
        keep_raw,
    )
    .await?;

    if !config.table.funpoint.payment_origins.contains(&payment.payment_origin) {
        return Err(GatewayError::PaymentOrigin(payment.payment_origin.to_string()));
    }
    tracing::debug!(tenant = %tenant.id, choose_payment = payment.choose_payment().unwrap_or("-"), "checkout relayed");
    record_order(state, &tenant.id, &payment).await;
    Ok(payment)
}

/// The checkout goes into the order ledger (SPEC §9): handed to the
/// store's writer before the buyer gets the form, and committed with the
/// writer's next batch (within 20 ms) without the buyer waiting for the
/// disk. A failed write is logged and counted, and the checkout goes on:
/// the payment and its notifications do not depend on the ledger, only the
/// reconciliation of this one order does.
async fn record_order(state: &AppState, tenant: &crate::domain::TenantId, payment: &checkout::PaymentRequest) {
    let [trade_no, merchant_id, amount, payment_type, period_type, frequency, exec_times] = payment.fields.get_all([
        "MerchantTradeNo",
        "MerchantID",
        "TotalAmount",
        "ChoosePayment",
        "PeriodType",
        "Frequency",
        "ExecTimes",
    ]);
    let Some(merchant_trade_no) = trade_no.filter(|m| !m.is_empty()) else { return };
    let now = state.store().clock().now_ms();
    let after = state.config().reconcile.after;
    let order = crate::store::NewOrder {
        tenant: tenant.to_string(),
        merchant_trade_no: merchant_trade_no.to_owned(),
        merchant_id: merchant_id.map(str::to_owned),
        amount: amount.and_then(|a| a.trim().parse().ok()),
        payment_type: payment_type.map(str::to_owned),
        at: now,
        first_query_at: now + crate::store::ms(after),
        recurring: crate::reconcile::recurring(period_type, frequency, exec_times, after),
    };
    if let Err(e) = state.store().checkout(order).await {
        tracing::error!(tenant = %tenant, error = %e, "cannot record the checkout in the order ledger; it will not be reconciled");
        crate::metrics::reconcile_error("ledger_write");
    }
}

/// The CVS passthrough's policy: scripts and forms work inside an opaque
/// origin; it may navigate the top window on (to the payment pages).
const CVS_CSP: &str = "sandbox allow-forms allow-scripts allow-top-navigation";

fn config_origins(state: &AppState) -> Vec<crate::domain::Origin> {
    state.config().table.funpoint.payment_origins.clone()
}

/// The provider's `Location`, resolved against the payment URL, if its
/// origin is an allowed payment origin; otherwise the checkout fails with
/// 8000208 rather than send the buyer elsewhere.
fn allowed_location(
    allowed: &[crate::domain::Origin],
    payment: &PaymentRequest,
    location: &HeaderValue,
) -> Result<HeaderValue, GatewayError> {
    let refused = || GatewayError::PaymentOrigin("(redirect)".to_owned());
    let text = location.to_str().map_err(|_| refused())?;
    let url = payment.payment_url.join(text).map_err(|_| refused())?;
    let origin = crate::domain::Origin::of_url(&url).ok_or_else(refused)?;
    if !allowed.contains(&origin) {
        return Err(GatewayError::PaymentOrigin(origin.to_string()));
    }
    HeaderValue::from_str(url.as_str()).map_err(|_| refused())
}

/// Steps 6–7: CVS is posted server-side and the provider's answer passed
/// through; everything else becomes the auto-submitting form.
async fn answer_page(state: &AppState, payment: PaymentRequest) -> Result<Response, GatewayError> {
    if payment.choose_payment() == Some("CVS") {
        let timeout = state.config().delivery.timeout;
        let answer = checkout::post_cvs(state.outbound(), &payment, timeout).await?;
        // A redirect goes on only to an allowed payment origin.
        let location = match (answer.status.is_redirection(), &answer.location) {
            (true, Some(location)) => Some(allowed_location(&config_origins(state), &payment, location)?),
            _ => None,
        };
        let mut response = (answer.status, answer.body).into_response();
        let headers = response.headers_mut();
        if let Some(ct) = answer.content_type {
            headers.insert(header::CONTENT_TYPE, ct);
        }
        if let Some(location) = location {
            headers.insert(header::LOCATION, location);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The provider's page is served on the gateway's origin (the admin
        // console's too): boxed in a sandbox without that origin, never
        // sniffed into another type, no referrer sent on.
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CVS_CSP));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        return Ok(response);
    }
    let fields: Vec<(&str, &str)> = payment.field_pairs().collect();
    // The payment origin first, then the other allowed payment origins (a
    // payment page may redirect the buyer on to one of them).
    let config = state.config();
    let mut allowed = vec![&payment.payment_origin];
    allowed.extend(config.table.funpoint.payment_origins.iter().filter(|o| **o != payment.payment_origin));
    Ok(page::autosubmit(payment.payment_url.as_str(), &allowed, &fields))
}
