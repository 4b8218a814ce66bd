//! The one thing roost reads out of a certificate itself: the subject's
//! common name (CN), for `use_identity_as_username`. rustls has checked
//! the certificate by then; this only walks its DER far enough to find
//! the name, refusing anything malformed. Pure, no IO.

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0] EXPLICIT`, the optional version of a TBSCertificate.
const VERSION: u8 = 0xa0;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// The string types a CN is written in that are text as they are.
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;

/// The first CN in the subject of DER certificate `cert` (the one
/// OpenSSL, and so mosquitto, takes). None without one, for a CN in
/// another string type or with a NUL in it (mosquitto refuses those too),
/// or for bytes that are not a certificate.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let cert = expect(SEQUENCE, cert)?.0;
    let tbs = expect(SEQUENCE, cert)?.0;
    let mut rest = tbs;
    if let (VERSION, _, after) = element(rest)? {
        rest = after;
    }
    // serialNumber, signature, issuer, validity; then the subject.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let mut names = expect(SEQUENCE, rest)?.0;
    while !names.is_empty() {
        let (mut rdn, next) = expect(SET, names)?;
        names = next;
        while !rdn.is_empty() {
            let (attribute, next) = expect(SEQUENCE, rdn)?;
            rdn = next;
            let (oid, value) = expect(OID, attribute)?;
            if oid != COMMON_NAME {
                continue;
            }
            let (tag, text, _) = element(value)?;
            if ![UTF8_STRING, PRINTABLE_STRING, IA5_STRING].contains(&tag) || text.contains(&0) {
                return None;
            }
            return std::str::from_utf8(text).ok().map(String::from);
        }
    }
    None
}

/// The element at the start of `der` if its tag is `tag`: its contents
/// and what follows it.
fn expect(tag: u8, der: &[u8]) -> Option<(&[u8], &[u8])> {
    match element(der)? {
        (t, contents, rest) if t == tag => Some((contents, rest)),
        _ => None,
    }
}

/// The DER element at the start of `der`: tag, contents, what follows.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the next `n` bytes are the length (4 are plenty).
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len, rest) = rest.split_at(n);
        let len = len.iter().fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        (len, rest)
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    fn cert(subject: &[(DnType, DnValue)]) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for (kind, value) in subject {
            dn.push(kind.clone(), value.clone());
        }
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subjects_common_name_is_found() {
        let der = cert(&[
            (
                DnType::OrganizationName,
                DnValue::Utf8String("House".into()),
            ),
            (DnType::CommonName, DnValue::Utf8String("sensor-1".into())),
        ]);
        assert_eq!(common_name(&der).as_deref(), Some("sensor-1"));
        let printable = DnValue::PrintableString("kitchen 2".try_into().unwrap());
        let der = cert(&[(DnType::CommonName, printable)]);
        assert_eq!(common_name(&der).as_deref(), Some("kitchen 2"));
    }

    #[test]
    fn no_common_name_or_an_odd_one_is_none() {
        let der = cert(&[(
            DnType::OrganizationName,
            DnValue::Utf8String("House".into()),
        )]);
        assert_eq!(common_name(&der), None);
        let der = cert(&[(DnType::CommonName, DnValue::Utf8String("a\0b".into()))]);
        assert_eq!(common_name(&der), None, "an embedded NUL");
        let bmp = DnValue::BmpString("wide".try_into().unwrap());
        assert_eq!(common_name(&cert(&[(DnType::CommonName, bmp)])), None);
    }

    #[test]
    fn malformed_certificates_are_refused_not_a_panic() {
        let der = cert(&[(DnType::CommonName, DnValue::Utf8String("cut".into()))]);
        for end in 0..der.len() {
            assert_eq!(common_name(&der[..end]), None, "cut at {end}");
        }
        for at in 0..der.len() {
            let mut bad = der.clone();
            bad[at] ^= 0xff;
            // Anything but a panic; a flipped byte in the CN reads as
            // another name, or none.
            let _ = common_name(&bad);
        }
        assert_eq!(common_name(b""), None);
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
