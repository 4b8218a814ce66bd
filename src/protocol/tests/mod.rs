//! Codec tests: shared helpers and sample packets; the cases live in the
//! submodules.

mod vectors;

use super::*;

/// Encodes `packet` for `version`.
fn enc(packet: &Packet, version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    encode(packet, version, &mut out);
    out
}

/// Decodes exactly one whole packet from `bytes`.
fn dec(bytes: &[u8], version: Version) -> Result<Packet, DecodeError> {
    match decode(bytes, version, usize::MAX)? {
        Some((packet, used)) => {
            assert_eq!(
                used,
                bytes.len(),
                "decode consumed {used} of {}",
                bytes.len()
            );
            Ok(packet)
        }
        None => panic!("incomplete: {bytes:02x?}"),
    }
}
