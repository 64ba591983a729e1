//! payrelay: a shared payment-gateway host in front of several shop sites.
//!
//! The binary (`src/main.rs`) is a thin shell over this library, which the
//! integration tests in `tests/api/` drive directly.

pub mod checkout;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod domain;
pub mod form;
pub mod http;
pub mod metrics;
pub mod outbound;
pub mod providers;
pub mod reconcile;
pub mod relay;
pub mod routing;
pub mod sandbox;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod verify;
