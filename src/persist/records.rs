//! A journal record's body: a tag, then its fields in the snapshot's
//! layouts (`format.rs`). Records name a session by the key a `Session`
//! record declared; journals written before keys named it by client id in
//! every record (tags 1 to 8), and still replay: such a record reads as
//! what it said, in today's records.

use super::format::{
    BAD, opt_string, put_opt_str, put_u64, read_message, read_sub, u64, write_message, write_sub,
};
use crate::broker::{JournalRecord, Login, Who};
use crate::protocol::{DecodeError, Reader, Sink};

/// One journal record's body.
pub fn encode_record(rec: &JournalRecord, w: &mut Vec<u8>) {
    match rec {
        JournalRecord::Session {
            key,
            client_id,
            login,
            expiry,
        } => {
            w.u8(11);
            w.u8(u8::from(key.is_some()));
            w.u32(key.unwrap_or_default());
            w.str(client_id);
            w.u8(u8::from(login.is_some()));
            if let Some(login) = login {
                put_opt_str(w, login.username.as_deref());
                w.u8(login.listener);
            }
            w.u32(*expiry);
        }
        JournalRecord::Message { msg, publisher } => {
            w.u8(12);
            write_message(w, msg);
            w.u8(u8::from(publisher.is_some()));
            if let Some((who, packet_id)) = publisher {
                put_who(w, who);
                w.u16(*packet_id);
            }
        }
        JournalRecord::Released { who, packet_id } => {
            w.u8(13);
            put_who(w, who);
            w.u16(*packet_id);
        }
        JournalRecord::Subscribe { who, sub } => {
            w.u8(14);
            put_who(w, who);
            write_sub(w, sub);
        }
        JournalRecord::Unsubscribe { who, filter } => {
            w.u8(15);
            put_who(w, who);
            w.str(filter);
        }
        JournalRecord::SessionEnd { who } => {
            w.u8(16);
            put_who(w, who);
        }
        JournalRecord::Received {
            who,
            msg_id,
            packet_id,
        } => {
            w.u8(17);
            put_who(w, who);
            put_u64(w, *msg_id);
            w.u16(*packet_id);
        }
        JournalRecord::Delivered { who, msg_id } => {
            w.u8(18);
            put_who(w, who);
            put_u64(w, *msg_id);
        }
        JournalRecord::Sent {
            who,
            msg_id,
            packet_id,
        } => {
            w.u8(19);
            put_who(w, who);
            put_u64(w, *msg_id);
            w.u16(*packet_id);
        }
        JournalRecord::Dropped { who, msg_id } => {
            w.u8(20);
            put_who(w, who);
            put_u64(w, *msg_id);
        }
    }
}

/// The records one body holds: one, or for an old record the session it
/// spoke of, then what it said.
pub fn decode_record(body: &[u8]) -> Result<Vec<JournalRecord>, String> {
    let mut r = Reader::new(body);
    let recs = read_record(&mut r).map_err(|e| e.to_string())?;
    r.finish().map_err(|e| e.to_string())?;
    Ok(recs)
}

fn put_who(w: &mut Vec<u8>, who: &Who) {
    match who {
        Who::Key(key) => {
            w.u8(0);
            w.u32(*key);
        }
        Who::Name(client_id) => {
            w.u8(1);
            w.str(client_id);
        }
    }
}

fn who(r: &mut Reader) -> Result<Who, DecodeError> {
    match r.u8()? {
        0 => Ok(Who::Key(r.u32()?)),
        1 => Ok(Who::Name(r.string()?)),
        _ => Err(BAD),
    }
}

fn read_record(r: &mut Reader) -> Result<Vec<JournalRecord>, DecodeError> {
    let tag = r.u8()?;
    if tag < 11 {
        return read_old_record(tag, r);
    }
    Ok(vec![match tag {
        11 => {
            let key = match (r.u8()?, r.u32()?) {
                (0, _) => None,
                (_, key) => Some(key),
            };
            let client_id = r.string()?;
            let login = match r.u8()? {
                0 => None,
                _ => Some(Login {
                    username: opt_string(r)?,
                    listener: r.u8()?,
                }),
            };
            JournalRecord::Session {
                key,
                client_id,
                login,
                expiry: r.u32()?,
            }
        }
        12 => JournalRecord::Message {
            msg: read_message(r)?,
            publisher: match r.u8()? {
                0 => None,
                _ => Some((who(r)?, r.packet_id()?)),
            },
        },
        13 => JournalRecord::Released {
            who: who(r)?,
            packet_id: r.packet_id()?,
        },
        14 => JournalRecord::Subscribe {
            who: who(r)?,
            sub: read_sub(r)?,
        },
        15 => JournalRecord::Unsubscribe {
            who: who(r)?,
            filter: r.string()?,
        },
        16 => JournalRecord::SessionEnd { who: who(r)? },
        17 => JournalRecord::Received {
            who: who(r)?,
            msg_id: u64(r)?,
            packet_id: r.packet_id()?,
        },
        18 => JournalRecord::Delivered {
            who: who(r)?,
            msg_id: u64(r)?,
        },
        19 => JournalRecord::Sent {
            who: who(r)?,
            msg_id: u64(r)?,
            packet_id: r.packet_id()?,
        },
        20 => JournalRecord::Dropped {
            who: who(r)?,
            msg_id: u64(r)?,
        },
        _ => return Err(BAD),
    }])
}

/// A record of a journal written before keys: every one named its session
/// by client id, and a subscription and a kept publisher's QoS 2 message
/// also carried what the session connected with.
fn read_old_record(tag: u8, r: &mut Reader) -> Result<Vec<JournalRecord>, DecodeError> {
    let name = |r: &mut Reader| r.string().map(Who::Name);
    let session = |client_id: &str, login, expiry| JournalRecord::Session {
        key: None,
        client_id: client_id.to_owned(),
        login,
        expiry,
    };
    Ok(match tag {
        1 => {
            let msg = read_message(r)?;
            match r.u8()? {
                0 => vec![JournalRecord::Message {
                    msg,
                    publisher: None,
                }],
                _ => {
                    let (client_id, packet_id, expiry) = (r.string()?, r.packet_id()?, r.u32()?);
                    vec![
                        session(&client_id, None, expiry),
                        JournalRecord::Message {
                            msg,
                            publisher: Some((Who::Name(client_id), packet_id)),
                        },
                    ]
                }
            }
        }
        2 => vec![JournalRecord::Released {
            who: name(r)?,
            packet_id: r.packet_id()?,
        }],
        3 => {
            let client_id = r.string()?;
            let login = Login {
                username: opt_string(r)?,
                listener: r.u8()?,
            };
            let expiry = r.u32()?;
            vec![
                session(&client_id, Some(login), expiry),
                JournalRecord::Subscribe {
                    who: Who::Name(client_id),
                    sub: read_sub(r)?,
                },
            ]
        }
        4 => vec![JournalRecord::Unsubscribe {
            who: name(r)?,
            filter: r.string()?,
        }],
        5 => vec![JournalRecord::SessionEnd { who: name(r)? }],
        6 => vec![JournalRecord::Received {
            who: name(r)?,
            msg_id: u64(r)?,
            packet_id: r.packet_id()?,
        }],
        7 => vec![JournalRecord::Delivered {
            who: name(r)?,
            msg_id: u64(r)?,
        }],
        8 => vec![JournalRecord::Sent {
            who: name(r)?,
            msg_id: u64(r)?,
            packet_id: r.packet_id()?,
        }],
        _ => return Err(BAD),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{StoredMessage, StoredSub};
    use crate::protocol::{QoS, SubOptions};

    fn message() -> StoredMessage {
        StoredMessage {
            id: 12,
            topic: "home/t".into(),
            payload: b"21".to_vec(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Vec::new(),
            expires_at: Some(99),
        }
    }

    fn sub() -> StoredSub {
        StoredSub {
            filter: "home/#".into(),
            options: SubOptions {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: true,
                retain_handling: 1,
            },
            id: 7,
        }
    }

    #[test]
    fn records_round_trip_and_a_cut_is_an_error() {
        let key = Who::Key(3);
        let records = [
            JournalRecord::Session {
                key: Some(3),
                client_id: "dashboard".into(),
                login: Some(Login {
                    username: Some("alice".into()),
                    listener: 1,
                }),
                expiry: 3600,
            },
            JournalRecord::Message {
                msg: message(),
                publisher: Some((key.clone(), 9)),
            },
            JournalRecord::Released {
                who: key.clone(),
                packet_id: 9,
            },
            JournalRecord::Subscribe {
                who: key.clone(),
                sub: sub(),
            },
            JournalRecord::Unsubscribe {
                who: key.clone(),
                filter: "a/#".into(),
            },
            JournalRecord::SessionEnd { who: key.clone() },
            JournalRecord::Received {
                who: key.clone(),
                msg_id: 12,
                packet_id: 4,
            },
            JournalRecord::Delivered {
                who: key.clone(),
                msg_id: 12,
            },
            JournalRecord::Sent {
                who: key.clone(),
                msg_id: 13,
                packet_id: 5,
            },
            JournalRecord::Dropped {
                who: key,
                msg_id: 14,
            },
        ];
        for rec in records {
            let mut body = Vec::new();
            encode_record(&rec, &mut body);
            assert_eq!(decode_record(&body).unwrap(), [rec]);
            assert!(decode_record(&body[..body.len() - 1]).is_err());
        }
    }

    /// What the journals before keys wrote, byte for byte.
    #[test]
    fn old_records_read_as_what_they_said() {
        let mut subscribe = vec![3];
        subscribe.str("dashboard");
        put_opt_str(&mut subscribe, Some("alice"));
        subscribe.u8(1);
        subscribe.u32(3600);
        write_sub(&mut subscribe, &sub());
        let name = || Who::Name("dashboard".into());
        assert_eq!(
            decode_record(&subscribe).unwrap(),
            [
                JournalRecord::Session {
                    key: None,
                    client_id: "dashboard".into(),
                    login: Some(Login {
                        username: Some("alice".into()),
                        listener: 1,
                    }),
                    expiry: 3600,
                },
                JournalRecord::Subscribe {
                    who: name(),
                    sub: sub(),
                },
            ]
        );
        let mut publish = vec![1];
        write_message(&mut publish, &message());
        publish.u8(1);
        publish.str("dashboard");
        publish.u16(9);
        publish.u32(60);
        assert_eq!(
            decode_record(&publish).unwrap(),
            [
                JournalRecord::Session {
                    key: None,
                    client_id: "dashboard".into(),
                    login: None,
                    expiry: 60,
                },
                JournalRecord::Message {
                    msg: message(),
                    publisher: Some((name(), 9)),
                },
            ]
        );
        let mut delivered = vec![7];
        delivered.str("dashboard");
        put_u64(&mut delivered, 12);
        assert_eq!(
            decode_record(&delivered).unwrap(),
            [JournalRecord::Delivered {
                who: name(),
                msg_id: 12
            }]
        );
    }
}
