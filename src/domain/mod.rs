//! Small newtypes that parse once: the routing table and the handlers only
//! ever see values that already passed these checks.

mod callback_id;
pub mod checkmac;
mod duration;
pub mod escape;
pub mod hex;
pub mod ip;
mod origin;
mod secret;
mod tenant_id;
pub mod time;

pub use callback_id::CallbackId;
pub use checkmac::{CheckMac, HashAlgorithm, HashKeys};
pub use duration::ConfigDuration;
pub use origin::Origin;
pub use secret::{ForwardSecret, Secret};
pub use tenant_id::TenantId;
