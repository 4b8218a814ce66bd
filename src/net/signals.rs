//! SIGINT, SIGTERM, SIGHUP and SIGUSR1 as readable events of the poll loop, through a
//! signalfd: no handler runs at an arbitrary point, the loop reads them
//! like any other input.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR1 for the process (it has one thread) and
    /// opens a non-blocking signalfd that receives them instead.
    pub fn new() -> io::Result<Signals> {
        // SAFETY: plain libc calls on a zeroed sigset owned by this frame.
        unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut mask);
            libc::sigaddset(&mut mask, libc::SIGINT);
            libc::sigaddset(&mut mask, libc::SIGTERM);
            libc::sigaddset(&mut mask, libc::SIGHUP);
            libc::sigaddset(&mut mask, libc::SIGUSR1);
            if libc::sigprocmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &mask, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// The next pending signal number, if any.
    pub fn next(&self) -> Option<i32> {
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `size` bytes into `info`.
        let n = unsafe {
            libc::read(
                self.raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        (n as usize == size).then_some(info.ssi_signo as i32)
    }
}
