//! End-to-end tests on the real server: one binary, a module per capability.

mod admin;
mod checkmac;
mod checkout;
mod checkout_json;
mod cli;
mod crash;
mod delivery;
mod funpoint_return;
mod helpers;
mod notify;
mod providers;
mod server;
