//! `user`: started as root, roost becomes that user once its listeners
//! are bound and its files open, as mosquitto does.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// An account to run as.
pub struct Account {
    name: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
}

impl Account {
    /// The account `user` names, when it applies: roost runs as root and
    /// `user` is another user. (mosquitto ignores `user` otherwise, too.)
    pub fn to_become(user: Option<&str>) -> Result<Option<Account>, String> {
        // SAFETY: no arguments, cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        match user {
            Some(name) if root && name != "root" => Account::find(name).map(Some),
            _ => Ok(None),
        }
    }

    /// Looks `name` up in the user database.
    fn find(name: &str) -> Result<Account, String> {
        let c_name = CString::new(name).map_err(|_| format!("`user {name}`: a bad name"))?;
        // SAFETY: zeroed is a valid passwd (null pointers, zero ids).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0u8; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, buf for its length.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 {
            let e = std::io::Error::from_raw_os_error(rc);
            return Err(format!("`user {name}`: cannot look the user up: {e}"));
        }
        if found.is_null() {
            return Err(format!("`user {name}`: there is no such user"));
        }
        Ok(Account {
            name: c_name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }

    pub fn name(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }

    /// Gives `files` that root owns (made by this start, or by an earlier
    /// one as root) to the account, so that it can go on writing them.
    /// Files of any other owner are left alone.
    pub fn hand_over(&self, files: &[PathBuf]) -> Result<(), String> {
        for file in files {
            if std::fs::metadata(file).is_ok_and(|m| m.uid() == 0) {
                std::os::unix::fs::chown(file, Some(self.uid), Some(self.gid))
                    .map_err(|e| format!("{}: cannot hand it to `user`: {e}", file.display()))?;
            }
        }
        Ok(())
    }

    /// Becomes the account: its groups, then its gid, then its uid (in
    /// that order: once the uid is given up, the rest no longer can be).
    pub fn become_it(&self) -> Result<(), String> {
        let fail = |what: &str| {
            let e = std::io::Error::last_os_error();
            Err(format!("`user {}`: {what} failed: {e}", self.name()))
        };
        // SAFETY: plain system calls on values; the name is NUL-terminated.
        unsafe {
            if libc::initgroups(self.name.as_ptr(), self.gid as _) != 0 {
                return fail("initgroups");
            }
            if libc::setgid(self.gid) != 0 {
                return fail("setgid");
            }
            if libc::setuid(self.uid) != 0 {
                return fail("setuid");
            }
        }
        Ok(())
    }
}
