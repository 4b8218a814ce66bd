use super::packet::*;

/// Appends `packet` encoded for `version` to `out`.
pub fn encode(packet: &Packet, version: Version, out: &mut Vec<u8>) {
    todo!("{packet:?} {version:?} {}", out.len())
}

/// Appends a PUBLISH to `out`.
pub fn encode_publish(p: &PublishRef<'_>, version: Version, out: &mut Vec<u8>) {
    todo!("{p:?} {version:?} {}", out.len())
}

/// The whole encoded size of a PUBLISH (fixed header included), to honour a
/// client's Maximum Packet Size without encoding it first.
pub fn publish_len(p: &PublishRef<'_>, version: Version) -> usize {
    todo!("{p:?} {version:?}")
}
