//! Random bytes from the kernel (getrandom(2)), for what no client may
//! guess: assigned client ids and password salts.

use std::io;

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match n {
            n if n >= 0 => done += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// A client id for a client that gave none, as mosquitto makes them:
/// `prefix` and 128 random bits written like a UUID.
pub fn client_id(prefix: &str) -> io::Result<String> {
    let mut bytes = [0u8; 16];
    fill(&mut bytes)?;
    let mut id = String::with_capacity(prefix.len() + 36);
    id.push_str(prefix);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push_str(&format!("{b:02X}"));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_differ() {
        let a = client_id("auto-").unwrap();
        let b = client_id("auto-").unwrap();
        assert_eq!(a.len(), 5 + 36);
        assert!(a.starts_with("auto-"));
        let groups: Vec<usize> = a[5..].split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_ne!(a, b);
    }
}
