//! Unix domain socket listeners (`listener 0 PATH`), opened as mosquitto
//! 2.0 opens them: a stale socket at the path is replaced, the socket is
//! made with mode 0770 (umask 007: its owner's user and group may
//! connect), and it is removed when roost stops. mosquitto unlinks
//! whatever is at the path; roost replaces only a socket nobody listens
//! on, and refuses to start over any other file or a live socket.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// The longest path a socket address holds (`sun_path`, less its NUL).
const MAX_PATH: usize = 107;

/// What can be told without binding: the path fits a socket address,
/// its directory exists, and no other kind of file is in the way.
pub fn check(path: &Path) -> Result<(), String> {
    let at = format!("listener 0 {}", path.display());
    if path.as_os_str().len() > MAX_PATH {
        return Err(format!(
            "{at}: a Unix socket's path may be {MAX_PATH} bytes long at most"
        ));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("{at}: there is no directory {}", dir.display()));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => Err(format!(
            "{at}: a file that is not a socket is in the way (roost replaces only a \
             stale socket)"
        )),
        _ => Ok(()),
    }
}

/// A non-blocking socket listening at `path`, in place of a stale one.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    check(path)?;
    let fail = |e: io::Error| format!("cannot listen on unix socket {}: {e}", path.display());
    if std::fs::symlink_metadata(path).is_ok() {
        if UnixStream::connect(path).is_ok() {
            return Err(fail(io::ErrorKind::AddrInUse.into()) + " (something listens there)");
        }
        std::fs::remove_file(path).map_err(fail)?;
    }
    // SAFETY: umask(2) only swaps the process's mask, and start-up has
    // no other thread creating files meanwhile.
    let old = unsafe { libc::umask(0o007) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    Ok(listener)
}

/// At exit, as mosquitto: the socket file goes (left behind when roost,
/// become `user`, may not write its directory; the next start replaces
/// it).
pub fn remove(path: &Path) {
    let socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if socket {
        if let Err(e) = std::fs::remove_file(path) {
            log::debug!("cannot remove unix socket {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_is_replaced_and_anything_else_refused() {
        let dir = std::env::temp_dir().join(format!("roost-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        drop(bind(&path).unwrap());
        // Its listener closed, the file stays: stale.
        let live = bind(&path).unwrap();
        let e = bind(&path).unwrap_err();
        assert!(e.contains("something listens there"), "{e}");
        drop(live);
        remove(&path);
        assert!(!path.exists());
        std::fs::write(&path, "data").unwrap();
        let e = bind(&path).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        let e = check(&dir.join("no/such/dir.sock")).unwrap_err();
        assert!(e.contains("there is no directory"), "{e}");
        let e = check(&dir.join("x".repeat(MAX_PATH))).unwrap_err();
        assert!(e.contains("107 bytes"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
