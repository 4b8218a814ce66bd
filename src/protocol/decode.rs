use super::packet::*;

/// Decodes one packet from the front of `buf`.
///
/// `version` is the connection's protocol level (use `Version::V311` before
/// CONNECT has been seen; CONNECT itself carries its own level). `max_size`
/// is the largest whole packet (fixed header included) accepted.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet,
/// `Ok(Some((packet, consumed)))` otherwise.
pub fn decode(
    buf: &[u8],
    version: Version,
    max_size: usize,
) -> Result<Option<(Packet, usize)>, DecodeError> {
    todo!("{buf:?} {version:?} {max_size}")
}
