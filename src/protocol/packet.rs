//! MQTT control packets as plain data: what the decoder produces and the
//! encoder consumes. Shared by every protocol level; fields that only exist in
//! 5.0 (properties, reason codes) are empty or zero for 3.1 and 3.1.1.

/// The protocol level byte of CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// MQTT 3.1, protocol name "MQIsdp".
    V31 = 3,
    /// MQTT 3.1.1, protocol name "MQTT".
    V311 = 4,
    /// MQTT 5.0, protocol name "MQTT".
    V5 = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// One MQTT 5.0 property. Packets keep their properties as a list in wire
/// order: most packets carry none, so an empty `Vec` costs no allocation, and
/// user properties keep their order as the spec requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Property {
    PayloadFormatIndicator(u8),
    MessageExpiryInterval(u32),
    ContentType(String),
    ResponseTopic(String),
    CorrelationData(Vec<u8>),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(String),
    ServerKeepAlive(u16),
    AuthenticationMethod(String),
    AuthenticationData(Vec<u8>),
    RequestProblemInformation(u8),
    WillDelayInterval(u32),
    RequestResponseInformation(u8),
    ResponseInformation(String),
    ServerReference(String),
    ReasonString(String),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQoS(u8),
    RetainAvailable(u8),
    UserProperty(String, String),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(u8),
    SubscriptionIdentifierAvailable(u8),
    SharedSubscriptionAvailable(u8),
}

pub type Properties = Vec<Property>;

/// The value of the first `$variant` property in `$props`, for properties
/// holding one number: `property!(connect.properties, ReceiveMaximum)`.
#[macro_export]
macro_rules! property {
    ($props:expr, $variant:ident) => {
        $props.iter().find_map(|p| match p {
            $crate::protocol::Property::$variant(v) => Some(*v),
            _ => None,
        })
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    /// Clean Session (3.x) or Clean Start (5.0).
    pub clean_start: bool,
    /// A bridge, by mosquitto's convention: 0x80 added to a 3.x protocol
    /// level (`try_private`). Its messages are not sent back to it.
    pub bridge: bool,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// 3.x return code or 5.0 reason code.
    pub code: u8,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in 5.0 when a Topic Alias property names the topic.
    pub topic: String,
    /// 0 for QoS 0 (no packet identifier on the wire).
    pub packet_id: u16,
    pub properties: Properties,
    pub payload: Vec<u8>,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: u16,
    /// 5.0 reason code; 0 (success) for 3.x.
    pub reason: u8,
    pub properties: Properties,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained on subscribe, 1: only for a new subscription, 2: never.
    pub retain_handling: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub filters: Vec<(String, SubOptions)>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    /// Granted QoS (0..=2) or a failure code, one per filter.
    pub codes: Vec<u8>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub filters: Vec<String>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: u16,
    /// One reason code per filter in 5.0; empty (not on the wire) for 3.x.
    pub codes: Vec<u8>,
    pub properties: Properties,
}

/// DISCONNECT and AUTH: a reason code and properties (both absent in 3.x).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonOnly {
    pub reason: u8,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(ReasonOnly),
    Auth(ReasonOnly),
}

impl Packet {
    /// Drops the Reason String and User Properties of an ack, CONNACK,
    /// DISCONNECT or AUTH: a sender leaves them out rather than exceed the
    /// receiver's Maximum Packet Size ([MQTT-3.1.2-25]).
    pub fn drop_diagnostics(&mut self) {
        let properties = match self {
            Packet::ConnAck(p) => &mut p.properties,
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                &mut a.properties
            }
            Packet::SubAck(p) => &mut p.properties,
            Packet::UnsubAck(p) => &mut p.properties,
            Packet::Disconnect(p) | Packet::Auth(p) => &mut p.properties,
            _ => return,
        };
        properties.retain(|p| !matches!(p, Property::ReasonString(_) | Property::UserProperty(..)));
    }
}

/// A PUBLISH to encode, borrowed from wherever its parts live, so one shared
/// message is encoded for many subscribers without being copied first.
/// `extra` carries the per-delivery properties (subscription identifiers,
/// the remaining message expiry, a topic alias) written after `properties`.
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    pub packet_id: u16,
    pub properties: &'a [Property],
    pub extra: &'a [Property],
    pub payload: &'a [u8],
}

impl Publish {
    pub fn as_ref(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: &self.properties,
            extra: &[],
            payload: &self.payload,
        }
    }
}

/// Why bytes could not be decoded. Each maps to the 5.0 reason code the
/// broker sends (in DISCONNECT, or CONNACK for a bad CONNECT) before closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes break the wire format: 0x81 Malformed Packet.
    Malformed(&'static str),
    /// Well-formed but forbidden by the spec: 0x82 Protocol Error.
    Protocol(&'static str),
    /// The fixed header announces more than the allowed maximum: 0x95.
    TooLarge { size: usize, max: usize },
    /// CONNECT with a protocol name/level this broker does not speak:
    /// CONNACK 0x01 (3.x) or 0x84 (5.0).
    UnsupportedVersion(u8),
}

impl DecodeError {
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::Malformed(_) => reason::MALFORMED_PACKET,
            DecodeError::Protocol(_) => reason::PROTOCOL_ERROR,
            DecodeError::TooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::UnsupportedVersion(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Malformed(why) => write!(f, "malformed packet: {why}"),
            DecodeError::Protocol(why) => write!(f, "protocol error: {why}"),
            DecodeError::TooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the maximum of {max}")
            }
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported protocol level {v}"),
        }
    }
}

/// 5.0 reason codes the broker uses (spec section 2.4), and 3.x CONNACK codes.
pub mod reason {
    pub const SUCCESS: u8 = 0x00;
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const IMPLEMENTATION_SPECIFIC: u8 = 0x83;
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    pub const CLIENT_ID_NOT_VALID: u8 = 0x85;
    pub const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_ID_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const QUOTA_EXCEEDED: u8 = 0x97;

    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
    pub const QOS_NOT_SUPPORTED: u8 = 0x9B;

    /// Words for the reason codes the broker closes or refuses with, sent
    /// as a v5 Reason String.
    pub fn describe(code: u8) -> Option<&'static str> {
        Some(match code {
            MALFORMED_PACKET => "malformed packet",
            PROTOCOL_ERROR => "protocol error",
            UNSUPPORTED_PROTOCOL_VERSION => "unsupported protocol version",
            CLIENT_ID_NOT_VALID => "client identifier not valid",
            BAD_USERNAME_OR_PASSWORD => "bad user name or password",
            NOT_AUTHORIZED => "not authorized",
            SERVER_SHUTTING_DOWN => "server shutting down",
            BAD_AUTHENTICATION_METHOD => "enhanced authentication is not supported",
            KEEP_ALIVE_TIMEOUT => "keep alive timeout",
            SESSION_TAKEN_OVER => "session taken over by another connection",
            RECEIVE_MAXIMUM_EXCEEDED => "receive maximum exceeded",
            TOPIC_ALIAS_INVALID => "topic alias invalid",
            TOPIC_NAME_INVALID => "topic name has more than 200 levels",
            PACKET_TOO_LARGE => "packet too large",
            PAYLOAD_FORMAT_INVALID => "payload is not valid UTF-8",
            RETAIN_NOT_SUPPORTED => "retained messages are not supported",
            QOS_NOT_SUPPORTED => "QoS not supported",
            _ => return None,
        })
    }

    /// 3.1/3.1.1 CONNACK return codes.
    pub const V3_UNACCEPTABLE_PROTOCOL_VERSION: u8 = 0x01;
    pub const V3_IDENTIFIER_REJECTED: u8 = 0x02;
    pub const V3_BAD_USERNAME_OR_PASSWORD: u8 = 0x04;
    pub const V3_NOT_AUTHORIZED: u8 = 0x05;
    /// 3.1.1 SUBACK failure.
    pub const V3_SUBACK_FAILURE: u8 = 0x80;
}
