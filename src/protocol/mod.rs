//! The MQTT 3.1, 3.1.1 and 5.0 wire format: pure functions over byte
//! slices, no sockets, no sessions. `decode` validates everything the specs
//! call malformed; `encode` writes what the broker sends.

mod decode;
mod encode;
mod packet;
mod properties;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use decode::decode;
pub use encode::{encode, encode_publish, publish_len};
pub use packet::*;
