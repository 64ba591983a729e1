//! The checkout relay (SPEC §3.1, §3.2): validate the shop page's five
//! fields, ask the tenant's API for the signed payment form, and check that
//! the form points at an allowed payment origin. The HTTP handlers in
//! `crate::http::checkout` turn the outcome into a page, JSON or a CVS post.

mod error;
mod payment_value;
mod request;
mod tenant_api;

pub use error::GatewayError;
pub use request::{CheckoutRequest, FIELDS, MAX_FIELD_BYTES};
pub use tenant_api::{PaymentRequest, TenantApiError, post_cvs, request_payment};
