//! Partial input waits for more; oversized input fails from the fixed header.

use super::*;

#[test]
fn every_prefix_of_every_sample_is_incomplete() {
    for version in ALL_VERSIONS {
        for packet in samples(version) {
            let bytes = enc(&packet, version);
            for end in 0..bytes.len() {
                assert_eq!(
                    decode(&bytes[..end], version, usize::MAX),
                    Ok(None),
                    "{packet:?} cut at {end}"
                );
            }
        }
    }
}

#[test]
fn too_large_is_reported_from_the_fixed_header_alone() {
    // PUBLISH announcing 2,097,151 bytes, body not sent.
    let header = [0x30, 0xFF, 0xFF, 0x7F];
    let err = decode(&header, Version::V311, 1024);
    assert_eq!(
        err,
        Err(DecodeError::TooLarge {
            size: 2_097_155,
            max: 1024
        })
    );
}

#[test]
fn max_size_counts_the_fixed_header() {
    let bytes = enc(&Packet::Publish(publish(QoS::AtMostOnce, 0)), Version::V311);
    let n = bytes.len();
    assert!(matches!(decode(&bytes, Version::V311, n), Ok(Some((_, used))) if used == n));
    assert_eq!(
        decode(&bytes, Version::V311, n - 1),
        Err(DecodeError::TooLarge {
            size: n,
            max: n - 1
        })
    );
}

#[test]
fn remaining_length_cut_short_is_incomplete() {
    for header in [
        &[0x30][..],
        &[0x30, 0x80],
        &[0x30, 0xFF, 0xFF],
        &[0x30, 0xFF, 0xFF, 0xFF],
    ] {
        assert_eq!(decode(header, Version::V311, usize::MAX), Ok(None));
    }
}
