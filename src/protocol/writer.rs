//! Output for the encoder. Each packet body is written by one function over
//! `dyn Sink`, run once into [`Len`] to learn its size and once into the real
//! buffer, so lengths and bytes can never disagree.

pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    /// A Variable Byte Integer, minimally encoded [MQTT-1.5.5-1].
    fn varint(&mut self, mut v: usize) {
        debug_assert!(v <= 268_435_455, "variable byte integer {v} too large");
        loop {
            let byte = (v % 128) as u8;
            v /= 128;
            if v == 0 {
                self.u8(byte);
                return;
            }
            self.u8(byte | 0x80);
        }
    }

    /// Two-byte length, then the bytes. Nothing longer than 65535 bytes fits
    /// on the wire; the broker only sends fields it decoded or built short, so
    /// an oversized one is a bug, cut (in release builds) to keep the framing.
    fn binary(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= usize::from(u16::MAX), "field too long");
        let n = bytes.len().min(usize::from(u16::MAX));
        self.u16(n as u16);
        self.put(bytes.get(..n).unwrap_or_default());
    }

    fn str(&mut self, s: &str) {
        self.binary(s.as_bytes());
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts bytes instead of storing them.
pub(crate) struct Len(usize);

impl Sink for Len {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// How many bytes `write` produces.
pub(crate) fn len_of(write: impl FnOnce(&mut Len)) -> usize {
    let mut len = Len(0);
    write(&mut len);
    len.0
}
