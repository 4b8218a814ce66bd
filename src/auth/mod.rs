//! Authentication and authorisation from mosquitto's files: the password
//! file (`password_file`, see [`password_file`] and [`hash`]) and the ACL
//! file (`acl_file`, see [`acl`]). [`load`] reads them into the
//! [`Access`] the broker core consults; calling it again and handing the
//! result to [`crate::broker::Broker::set_access`] is a reload.
//! `roost passwd` ([`passwd`]) edits password files.

pub mod acl;
pub mod hash;
pub mod passwd;
pub mod password_file;

use std::path::Path;
use std::rc::Rc;

use crate::broker::{Access, Credentials};
use acl::{Acl, Op};
use password_file::PasswordFile;

/// Access control by password file, ACL file or both.
#[derive(Debug)]
pub struct FileAccess {
    /// None: any user name and password are accepted, as by mosquitto
    /// without a password file.
    passwords: Option<PasswordFile>,
    /// None: every client may publish and subscribe to anything.
    acl: Option<Acl>,
}

/// Reads the configured files; None when neither is configured. Errors
/// name the file and line, so a reload that fails can keep the old rules.
pub fn load(
    password_file: Option<&Path>,
    acl_file: Option<&Path>,
) -> Result<Option<Rc<dyn Access>>, String> {
    if password_file.is_none() && acl_file.is_none() {
        return Ok(None);
    }
    let access = FileAccess {
        passwords: password_file.map(PasswordFile::load).transpose()?,
        acl: acl_file.map(Acl::load).transpose()?,
    };
    Ok(Some(Rc::new(access)))
}

impl FileAccess {
    fn acl_allows(&self, client_id: &str, username: Option<&str>, op: Op, topic: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.allows(client_id, username, op, topic))
    }
}

impl Access for FileAccess {
    fn authenticate(&self, creds: &Credentials) -> bool {
        match (&self.passwords, creds.username) {
            (Some(passwords), Some(user)) => passwords.check(user, creds.password),
            _ => true,
        }
    }

    fn login(&self, username: &str) -> Option<u64> {
        match &self.passwords {
            Some(passwords) => passwords.fingerprint(username),
            None => Some(0),
        }
    }

    fn may_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.acl_allows(client_id, username, Op::Write, topic)
    }

    fn may_read(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.acl_allows(client_id, username, Op::Read, topic)
    }
}
