//! A bounds-checked cursor over one packet's bytes. Every read checks the
//! length first, so a length field claiming more than the packet holds is an
//! error before anything is allocated.

use super::packet::DecodeError;

const PAST_END: DecodeError = DecodeError::Malformed("field runs past the end of the packet");

#[derive(Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails unless every byte was consumed: the fields the spec fixes must
    /// fill the packet exactly.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "unexpected bytes after the last field",
            ))
        }
    }

    /// Takes everything left (payloads).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(PAST_END);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A Variable Byte Integer inside the packet body (its end is known, so
    /// running out of bytes is malformed, not incomplete).
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        match varint(self.buf)? {
            Some((value, used)) => {
                self.take(used)?;
                Ok(value)
            }
            None => Err(PAST_END),
        }
    }

    /// Two-byte length followed by that many bytes.
    pub fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A UTF-8 Encoded String: well-formed UTF-8 [MQTT-1.5.4-1] without
    /// U+0000 [MQTT-1.5.4-2].
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let s = std::str::from_utf8(self.binary()?)
            .map_err(|_| DecodeError::Malformed("string is not valid UTF-8"))?;
        if s.contains('\0') {
            return Err(DecodeError::Malformed("string contains U+0000"));
        }
        Ok(s)
    }

    pub fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    /// Items read by `read` until the bytes run out, in a vector of
    /// exactly their number: a first pass counts them. A list grown by
    /// doubling would take up to three times its size at its peak (old and
    /// new buffer), and list items take far more room than their wire form
    /// (a 2-byte property is a 48-byte `Property`), so a packet of many
    /// tiny items would cost many times the packet-size limit.
    pub fn list<T>(
        &mut self,
        mut read: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let mut probe = self.clone();
        let mut n = 0;
        while !probe.is_empty() {
            read(&mut probe)?;
            n += 1;
        }
        let mut items = Vec::with_capacity(n);
        while !self.is_empty() {
            items.push(read(self)?);
        }
        Ok(items)
    }

    pub fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            // [MQTT-2.2.1-3] (5.0), [MQTT-2.3.1-1] (3.1.1)
            0 => Err(DecodeError::Protocol("packet identifier 0")),
            id => Ok(id),
        }
    }
}

/// Decodes a Variable Byte Integer from the front of `buf`: `Ok(None)` if
/// `buf` ends inside it, `(value, bytes used)` otherwise. More than four
/// bytes is malformed [MQTT-1.5.5-1]; non-minimal encodings are accepted.
pub(crate) fn varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value = 0u32;
    for (i, &b) in buf.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(DecodeError::Malformed(
            "variable byte integer longer than 4 bytes",
        ))
    } else {
        Ok(None)
    }
}
