//! End-to-end tests on the real server: one binary, a module per capability.

mod admin;
mod browser;
mod checkmac;
mod checkout;
mod checkout_json;
mod cli;
mod crash;
mod delivery;
mod funpoint_return;
mod helpers;
mod notify;
mod operations;
mod providers;
mod server;
