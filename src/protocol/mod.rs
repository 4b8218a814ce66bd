//! The MQTT 3.1, 3.1.1 and 5.0 wire format: pure functions over byte
//! slices, no sockets, no sessions. `decode` validates everything the specs
//! call malformed; `encode` writes what the broker sends.
//!
//! `decode` does not know who sent a packet or what the session holds, so
//! these checks are the broker's: a Subscription Identifier in a client's
//! PUBLISH [MQTT-3.3.4-6] (accepted, even repeated, as in a server's
//! PUBLISH); Topic Alias 0 or above the maximum (0x94); topic filter syntax
//! (SUBACK 0x8F); client identifier rules; a second CONNECT; packets that
//! only the server sends; reason codes valid for their packet type.

mod decode;
mod encode;
mod packet;
mod properties;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use decode::decode;
pub use encode::{encode, encode_publish, encode_publish_head, publish_len};
pub use packet::*;
// The snapshot file (`crate::persist`) reuses the field readers and
// writers and the property codec for its records.
pub(crate) use properties::{Ctx, read as read_properties, write as write_properties};
pub(crate) use reader::Reader;
pub(crate) use writer::Sink;
