//! MQTT 5.0 properties (spec 2.2.2): identifiers, data types, and which
//! packets may carry each one. `spec` is the single table of identifiers and
//! placements; `read_value` and `write_value` hold the data types.

use super::packet::{DecodeError, Properties, Property, Version};
use super::reader::Reader;
use super::writer::{Sink, len_of};

/// Where a property list sits. PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and
/// UNSUBACK allow the same properties, so they share `Ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctx {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Auth,
}

impl Ctx {
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

const fn mask(ctxs: &[Ctx]) -> u16 {
    let mut m = 0;
    let mut i = 0;
    while i < ctxs.len() {
        m |= ctxs[i].bit();
        i += 1;
    }
    m
}

use Ctx::*;
const MESSAGE: u16 = mask(&[Publish, Will]);
const CONNECT_CONNACK: u16 = mask(&[Connect, ConnAck]);
const ALL: u16 = mask(&[
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Auth,
]);

/// The identifier of `p` and the places it may appear (spec table 2-4).
fn spec(p: &Property) -> (u8, u16) {
    use Property::*;
    match p {
        PayloadFormatIndicator(_) => (0x01, MESSAGE),
        MessageExpiryInterval(_) => (0x02, MESSAGE),
        ContentType(_) => (0x03, MESSAGE),
        ResponseTopic(_) => (0x08, MESSAGE),
        CorrelationData(_) => (0x09, MESSAGE),
        SubscriptionIdentifier(_) => (0x0B, mask(&[Publish, Subscribe])),
        SessionExpiryInterval(_) => (0x11, mask(&[Connect, ConnAck, Disconnect])),
        AssignedClientIdentifier(_) => (0x12, ConnAck.bit()),
        ServerKeepAlive(_) => (0x13, ConnAck.bit()),
        AuthenticationMethod(_) => (0x15, mask(&[Connect, ConnAck, Auth])),
        AuthenticationData(_) => (0x16, mask(&[Connect, ConnAck, Auth])),
        RequestProblemInformation(_) => (0x17, Connect.bit()),
        WillDelayInterval(_) => (0x18, Will.bit()),
        RequestResponseInformation(_) => (0x19, Connect.bit()),
        ResponseInformation(_) => (0x1A, ConnAck.bit()),
        ServerReference(_) => (0x1C, mask(&[ConnAck, Disconnect])),
        ReasonString(_) => (0x1F, mask(&[ConnAck, Ack, Disconnect, Auth])),
        ReceiveMaximum(_) => (0x21, CONNECT_CONNACK),
        TopicAliasMaximum(_) => (0x22, CONNECT_CONNACK),
        TopicAlias(_) => (0x23, Publish.bit()),
        MaximumQoS(_) => (0x24, ConnAck.bit()),
        RetainAvailable(_) => (0x25, ConnAck.bit()),
        UserProperty(..) => (0x26, ALL),
        MaximumPacketSize(_) => (0x27, CONNECT_CONNACK),
        WildcardSubscriptionAvailable(_) => (0x28, ConnAck.bit()),
        SubscriptionIdentifierAvailable(_) => (0x29, ConnAck.bit()),
        SharedSubscriptionAvailable(_) => (0x2A, ConnAck.bit()),
    }
}

/// Reads a property list (length, then properties) for `ctx`; empty without
/// touching `r` before 5.0, which has no properties.
pub(crate) fn read(r: &mut Reader, version: Version, ctx: Ctx) -> Result<Properties, DecodeError> {
    if version < Version::V5 {
        return Ok(Vec::new());
    }
    let len = r.varint()? as usize;
    // A length past the packet's end fails here, before anything is read.
    let props = Reader::new(r.take(len)?).list(read_value)?;
    let mut seen = 0u64;
    for prop in &props {
        let (id, allowed) = spec(prop);
        if allowed & ctx.bit() == 0 {
            // 2.2.2.2: an identifier not valid for its packet type is malformed.
            return Err(DecodeError::Malformed(
                "property not allowed in this packet",
            ));
        }
        // Only user properties repeat, and subscription identifiers in a
        // server's PUBLISH (3.3.2.3.8); every other repeat is a protocol error.
        let repeats = match prop {
            Property::UserProperty(..) => true,
            Property::SubscriptionIdentifier(_) => ctx == Publish,
            _ => false,
        };
        let bit = 1u64 << id; // identifiers are below 64
        if seen & bit != 0 && !repeats {
            return Err(DecodeError::Protocol("property included more than once"));
        }
        seen |= bit;
    }
    Ok(props)
}

fn read_value(r: &mut Reader) -> Result<Property, DecodeError> {
    use Property::*;
    Ok(match r.varint()? {
        0x01 => PayloadFormatIndicator(flag(r)?),
        0x02 => MessageExpiryInterval(r.u32()?),
        0x03 => ContentType(r.string()?),
        0x08 => ResponseTopic(r.string()?),
        0x09 => CorrelationData(r.binary()?.to_vec()),
        0x0B => SubscriptionIdentifier(nonzero(r.varint()?, "subscription identifier 0")?),
        0x11 => SessionExpiryInterval(r.u32()?),
        0x12 => AssignedClientIdentifier(r.string()?),
        0x13 => ServerKeepAlive(r.u16()?),
        0x15 => AuthenticationMethod(r.string()?),
        0x16 => AuthenticationData(r.binary()?.to_vec()),
        0x17 => RequestProblemInformation(flag(r)?),
        0x18 => WillDelayInterval(r.u32()?),
        0x19 => RequestResponseInformation(flag(r)?),
        0x1A => ResponseInformation(r.string()?),
        0x1C => ServerReference(r.string()?),
        0x1F => ReasonString(r.string()?),
        0x21 => ReceiveMaximum(nonzero(r.u16()?, "receive maximum 0")?),
        0x22 => TopicAliasMaximum(r.u16()?),
        // Alias 0 is well-formed but invalid: the broker answers 0x94 for it
        // like for any alias above its maximum (3.3.2.3.4).
        0x23 => TopicAlias(r.u16()?),
        0x24 => MaximumQoS(flag(r)?),
        0x25 => RetainAvailable(flag(r)?),
        0x26 => UserProperty(r.string()?, r.string()?),
        0x27 => MaximumPacketSize(nonzero(r.u32()?, "maximum packet size 0")?),
        0x28 => WildcardSubscriptionAvailable(flag(r)?),
        0x29 => SubscriptionIdentifierAvailable(flag(r)?),
        0x2A => SharedSubscriptionAvailable(flag(r)?),
        _ => return Err(DecodeError::Malformed("unknown property identifier")),
    })
}

/// A byte property the spec restricts to 0 or 1.
fn flag(r: &mut Reader) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        _ => Err(DecodeError::Protocol("property value other than 0 or 1")),
    }
}

fn nonzero<T: Default + PartialEq>(v: T, why: &'static str) -> Result<T, DecodeError> {
    if v == T::default() {
        Err(DecodeError::Protocol(why))
    } else {
        Ok(v)
    }
}

/// Writes a property list made of `lists` one after another; nothing before
/// 5.0.
pub(crate) fn write(w: &mut dyn Sink, version: Version, lists: &[&[Property]]) {
    if version < Version::V5 {
        return;
    }
    let all = || lists.iter().flat_map(|list| list.iter());
    w.varint(len_of(|len| all().for_each(|p| write_value(len, p))));
    all().for_each(|p| write_value(w, p));
}

fn write_value(w: &mut dyn Sink, p: &Property) {
    use Property::*;
    w.varint(usize::from(spec(p).0));
    match p {
        PayloadFormatIndicator(v)
        | RequestProblemInformation(v)
        | RequestResponseInformation(v)
        | MaximumQoS(v)
        | RetainAvailable(v)
        | WildcardSubscriptionAvailable(v)
        | SubscriptionIdentifierAvailable(v)
        | SharedSubscriptionAvailable(v) => w.u8(*v),
        ServerKeepAlive(v) | ReceiveMaximum(v) | TopicAliasMaximum(v) | TopicAlias(v) => w.u16(*v),
        MessageExpiryInterval(v)
        | SessionExpiryInterval(v)
        | WillDelayInterval(v)
        | MaximumPacketSize(v) => w.u32(*v),
        SubscriptionIdentifier(v) => w.varint(*v as usize),
        ContentType(s)
        | ResponseTopic(s)
        | AssignedClientIdentifier(s)
        | AuthenticationMethod(s)
        | ResponseInformation(s)
        | ServerReference(s)
        | ReasonString(s) => w.str(s),
        CorrelationData(b) | AuthenticationData(b) => w.binary(b),
        UserProperty(k, v) => {
            w.str(k);
            w.str(v);
        }
    }
}
