//! Deterministic pseudo-random input: decode must never panic, and whatever
//! it accepts must re-encode to something that decodes to the same packet.

use super::*;

/// xorshift64: small, seedable, good enough to spray bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Decodes `bytes`; if a packet comes out, checks it survives a round trip.
/// Returns whether one did.
fn check(bytes: &[u8], version: Version) -> bool {
    let Ok(Some((packet, used))) = decode(bytes, version, 1 << 16) else {
        return false;
    };
    assert!(used <= bytes.len());
    let again = enc(&packet, version);
    assert_eq!(dec(&again, version), Ok(packet), "from {bytes:02x?}");
    true
}

#[test]
fn random_bytes_never_panic_and_what_decodes_round_trips() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut decoded = 0;
    for i in 0..30_000 {
        let len = rng.below(40);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        // Half get a remaining length that fits, so bodies are reached.
        if len >= 2 && i % 2 == 0 {
            bytes[1] = (len - 2) as u8;
        }
        for version in ALL_VERSIONS {
            decoded += usize::from(check(&bytes, version));
        }
    }
    assert!(decoded > 1000, "only {decoded} random inputs decoded");
}

#[test]
fn mutated_samples_never_panic_and_what_decodes_round_trips() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for version in ALL_VERSIONS {
        for packet in samples(version) {
            let valid = enc(&packet, version);
            for _ in 0..300 {
                let mut bytes = valid.clone();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(bytes.len());
                    match rng.below(4) {
                        0 => bytes[at] ^= 1 << rng.below(8),
                        1 => bytes[at] = rng.byte(),
                        2 => bytes.insert(at, rng.byte()),
                        _ => {
                            bytes.remove(at);
                            if bytes.is_empty() {
                                bytes.push(rng.byte());
                            }
                        }
                    }
                }
                check(&bytes, version);
            }
        }
    }
}

#[test]
fn huge_length_fields_are_handled() {
    // Lengths claiming far more than the packet holds, everywhere a length
    // can sit: remaining length at its maximum, string and property lengths.
    let cases: [&[u8]; 4] = [
        &[0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF],
        &[0x30, 4, 0xFF, 0xFF, b'a', b'b'],
        &[0x40, 8, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0x7F, 0],
        &[0x10, 4, 0xFF, 0xFF, 0, 0],
    ];
    let expected = [Ok(None), Err(()), Err(()), Err(())];
    for (bytes, want) in cases.into_iter().zip(expected) {
        for version in ALL_VERSIONS {
            let got = decode(bytes, version, usize::MAX)
                .map(|_| None::<()>)
                .map_err(|_| ());
            assert_eq!(got, want, "{bytes:02x?}");
        }
    }
}

#[test]
fn lists_of_tiny_items_are_allocated_to_their_exact_size() {
    // Found by the decode fuzz target: 1,500 two-byte Subscription
    // Identifiers (3 KB) made a 96 KiB property vector, 144 KiB at its
    // peak while growing. Each list is now counted, then allocated once.
    let n = 1500;
    let mut body = vec![0, 1, b't', 0xB8, 0x17]; // topic "t", 3000 bytes of properties
    body.extend([0x0B, 1].repeat(n));
    let Packet::Publish(p) = dec(&framed(0x30, &body), Version::V5).unwrap() else {
        panic!("not a PUBLISH");
    };
    assert_eq!((p.properties.len(), p.properties.capacity()), (n, n));

    let mut body = vec![0, 1, 0];
    body.extend([0, 1, b'a', 0].repeat(n));
    let Packet::Subscribe(s) = dec(&framed(0x82, &body), Version::V5).unwrap() else {
        panic!("not a SUBSCRIBE");
    };
    assert_eq!((s.filters.len(), s.filters.capacity()), (n, n));

    let mut body = vec![0, 1];
    body.extend([0, 1, b'a'].repeat(n));
    let Packet::Unsubscribe(u) = dec(&framed(0xA2, &body), Version::V311).unwrap() else {
        panic!("not an UNSUBSCRIBE");
    };
    assert_eq!((u.filters.len(), u.filters.capacity()), (n, n));
}

/// `body` behind a fixed header with `first` and its remaining length.
fn framed(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}
