//! Counting a broker's fsyncs with perf.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::Scratch;
use super::common::ANSWER_TIMEOUT;

/// The system calls counted as fsyncs.
const FSYNC_EVENTS: &str = "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync";

/// Counts a process's `fsync` and `fdatasync` calls between `start` and
/// `stop` with `perf stat` on their tracepoints, which costs the process
/// nothing (strace would stop it at every system call, slowing the very
/// runs whose speed is measured). perf starts with counting off and is
/// switched on and off through a pair of FIFOs, each command acknowledged,
/// so the count covers exactly the window.
struct FsyncCounter {
    perf: Child,
    ctl: File,
    ack: File,
    dir: Scratch,
}

impl FsyncCounter {
    /// Starts perf on `pid`, counting from when this returns.
    fn start(pid: u32, name: &str) -> Result<FsyncCounter, String> {
        let mut counter = FsyncCounter::spawn(pid, name)?;
        counter.command("enable")?;
        Ok(counter)
    }

    fn spawn(pid: u32, name: &str) -> Result<FsyncCounter, String> {
        let dir = Scratch::new(std::env::temp_dir().join(format!(
            "roost-bench-perf-{}-{}",
            std::process::id(),
            name.replace(' ', "-")
        )))?;
        let fifo = |file: &str| -> Result<File, String> {
            let path = dir.0.join(file);
            let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
            // SAFETY: a valid NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(format!(
                    "mkfifo {}: {}",
                    path.display(),
                    io::Error::last_os_error()
                ));
            }
            // Read-write, so that opening does not wait for perf's end.
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        let (ctl, ack) = (fifo("ctl")?, fifo("ack")?);
        let errors = File::create(dir.0.join("stderr")).map_err(|e| e.to_string())?;
        let perf = Command::new("perf")
            .args(["stat", "--delay=-1", "-x,", "-e", FSYNC_EVENTS, "-p"])
            .arg(pid.to_string())
            .arg("--control")
            .arg(format!(
                "fifo:{},{}",
                dir.0.join("ctl").display(),
                dir.0.join("ack").display()
            ))
            .arg("-o")
            .arg(dir.0.join("counts"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(errors)
            .spawn()
            .map_err(|e| format!("running perf: {e}"))?;
        Ok(FsyncCounter {
            perf,
            ctl,
            ack,
            dir,
        })
    }

    /// Sends `enable` or `disable` and waits for perf's `ack`.
    fn command(&mut self, cmd: &str) -> Result<(), String> {
        self.ctl
            .write_all(format!("{cmd}\n").as_bytes())
            .map_err(|e| format!("perf --control: {e}"))?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let mut pfd = libc::pollfd {
            fd: self.ack.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            if let Ok(Some(status)) = self.perf.try_wait() {
                let said = fs::read_to_string(self.dir.0.join("stderr")).unwrap_or_default();
                return Err(format!("perf exited ({status}): {}", said.trim()));
            }
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
                let mut answer = [0u8; 4];
                self.ack
                    .read_exact(&mut answer)
                    .map_err(|e| format!("perf --control: {e}"))?;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "perf did not acknowledge `{cmd}` within {ANSWER_TIMEOUT:?}"
                ));
            }
        }
    }

    /// Stops counting and perf; the calls counted.
    fn stop(mut self) -> Result<u64, String> {
        self.command("disable")?;
        // SAFETY: plain syscall on our own, not yet reaped, child.
        unsafe {
            libc::kill(self.perf.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while self.perf.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = self.perf.kill();
                return Err(String::from("perf did not stop on SIGINT"));
            }
            thread::sleep(Duration::from_millis(10));
        }
        let path = self.dir.0.join("counts");
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // CSV lines `count,unit,event,...`, one per event.
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.contains(",syscalls:"))
            .map(|l| l.split(',').next().and_then(|n| n.parse().ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("{}: a count is missing:\n{text}", path.display()))?;
        if counts.len() != 2 {
            return Err(format!("{}: expected 2 counts:\n{text}", path.display()));
        }
        Ok(counts.iter().sum())
    }
}

impl Drop for FsyncCounter {
    fn drop(&mut self) {
        let _ = self.perf.kill();
        let _ = self.perf.wait();
    }
}

/// Runs `f`, counting the fsyncs of `pid` meanwhile. The count is None,
/// with the reason on stderr, when perf is not installed, may not trace
/// (that wants root or `kernel.perf_event_paranoid` -1) or fails.
pub(super) fn count_fsyncs<T>(
    pid: u32,
    name: &str,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<(T, Option<u64>), String> {
    let not_counted = |e: String| eprintln!("{name}: fsyncs not counted: {e}");
    let counter = FsyncCounter::start(pid, name).map_err(not_counted).ok();
    let result = f()?;
    let fsyncs = counter.and_then(|c| c.stop().map_err(not_counted).ok());
    Ok((result, fsyncs))
}
