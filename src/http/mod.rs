//! The HTTP face of the gateway: one router, one middleware stack, one
//! accept loop. Each endpoint group has its own module.

mod admin;
mod body;
mod checkout;
mod client_ip;
mod cors;
mod edge;
mod funpoint_return;
mod health;
mod lanes;
mod metrics;
mod notify;
pub(crate) mod page;
mod returns;
mod server;
mod state;
pub(crate) mod timers;
mod trace;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http::{HeaderName, StatusCode};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub(crate) use admin::cross_site;
pub use server::serve;
pub use state::AppState;

/// The whole application as one service: the stack served as it is,
/// without a router around it only to hold it (a `Router` with nothing
/// but a fallback matched every path and boxed its future, issue 14).
pub type App = tower::util::BoxCloneSyncService<axum::extract::Request, axum::response::Response, Infallible>;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The PHP original's four paths, for sites switching without touching a
/// tenant or provider setting (SPEC §3).
pub const LEGACY_CHECKOUT: &str = "/payment_background_funpoint.php";
pub const LEGACY_CHECKOUT_JSON: &str = "/payment_background_funpoint_payment.php";
pub const LEGACY_NOTIFY: &str = "/payment_background_funpoint_receive.php";
pub const LEGACY_RETURN: &str = "/payment_background_funpoint_receive_mid.php";

/// Builds the whole application: routes and the one middleware stack.
/// `max_body_bytes` and `request_timeout` are fixed at start (a reload
/// does not change them).
pub fn router(state: AppState, max_body_bytes: usize, request_timeout: Duration) -> App {
    let legacy = Router::new()
        .route(LEGACY_CHECKOUT, post(checkout::page))
        .route(LEGACY_CHECKOUT_JSON, post(checkout::json).options(cors::preflight))
        .route(LEGACY_RETURN, post(funpoint_return::relay))
        .route(LEGACY_NOTIFY, post(notify::legacy_funpoint));

    let app = Router::new()
        .route("/funpoint/checkout", post(checkout::page))
        .route("/funpoint/checkout.json", post(checkout::json).options(cors::preflight))
        .route("/funpoint/return", post(funpoint_return::relay))
        .route("/sinopac/return", post(returns::sinopac))
        .route("/tappay/return/{tenant_id}", get(returns::tappay))
        .route("/{provider}/notify", post(notify::by_path))
        .route("/{provider}/notify/{tenant_id}", post(notify::by_path_tenant))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(legacy)
        .merge(admin::routes(state.clone()))
        .route("/metrics", get(metrics::render))
        .route_layer(metrics::TrackLayer)
        .fallback(not_found)
        .with_state(state.clone());

    // Outermost first: `edge` sets the request id, runs the rest in the
    // request's trace span (`trace`), and its grammar and CORS headers
    // cover the errors of every layer inside; the timeout and the body
    // limit right around the routes. The stack wraps the router once:
    // `Router::layer` wraps every route in each layer, boxed and cloned per
    // request (issue 14).
    let stack = tower::ServiceBuilder::new()
        .layer(edge::EdgeLayer(state))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout))
        .map_response(IntoResponse::into_response)
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .service(app);
    App::new(stack)
}

/// Is `path` one of the PHP original's four?
fn is_legacy(path: &str) -> bool {
    [LEGACY_CHECKOUT, LEGACY_CHECKOUT_JSON, LEGACY_NOTIFY, LEGACY_RETURN].contains(&path)
}

pub(crate) async fn not_found() -> impl IntoResponse {
    not_found_response()
}

fn not_found_response() -> axum::response::Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
