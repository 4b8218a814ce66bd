//! roost: an MQTT broker for constrained Linux gateways.
//!
//! Where a packet goes: bytes arrive in [`net`] (the mio loop), are cut into
//! packets by [`protocol::decode`], and handed to [`broker::Broker`], which
//! answers with [`broker::Action`]s that the loop carries out.

pub mod auth;
pub mod bridge;
pub mod broker;
pub mod config;
pub mod logging;
pub mod mem;
pub mod net;
pub mod persist;
pub mod pidfile;
pub mod privileges;
pub mod protocol;
pub mod random;
pub mod tls;
