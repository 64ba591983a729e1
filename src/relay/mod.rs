//! The inbound relay of a provider's server notification, one function per
//! phase: [`parse`] → [`route`] → [`verify`] → [`store`] → [`acknowledge`]
//! (which hands the callback to the worker, or delivers it at once for
//! `ack = "delivered"`). Nothing here knows HTTP: `http::notify` reads the
//! request, calls the phases and writes the [`Answer`] in the provider's
//! grammar. Nothing is acknowledged before it is committed.

mod inbound;
mod recent;

pub use inbound::{Answer, Inbound, Relay, acknowledge, parse, route, store, verify};
pub use recent::Recent;

#[cfg(test)]
mod tests;
