//! The config file's line syntax, against mosquitto 2.0.11 itself: every
//! file here is given to mosquitto (`mosquitto -c FILE`), to
//! `roost --check-config` and to roost's start-up, and they must agree on
//! whether it starts. mosquitto "starts" when it logs that it is running,
//! roost when it logs a listening socket; either "refuses" when it exits
//! first. Where mosquitto is not installed its half is skipped, saying so.
//!
//! The rules (src/config/reader.rs): a comment is a line whose first
//! character is `#`; key and value are separated by spaces, not tabs;
//! what follows a switch or a number is ignored; a file name takes the
//! rest of the line; CRLF, NUL bytes, a byte order mark, empty values.
//! And mosquitto keys roost does not read, at the values it behaves as
//! anyway. Where roost refuses what mosquitto reads as a number by C's
//! atoi (`100x` as 100, `lots` as 0), or a key at a value asking for what
//! roost does not do, the difference is written down here and in
//! docs/mosquitto.md, and checked as such.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TIMEOUT, TempDir, have, text};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Starts,
    Refuses,
}
use Outcome::{Refuses, Starts};

/// Runs `cmd` until its output (stdout and stderr) has a line ending in
/// `marker`, then kills it (Starts), or until it exits first (Refuses);
/// the output too, for failure messages.
fn run(mut cmd: Command, dir: &Path, marker: &str) -> (Outcome, String) {
    let out_path = dir.join("out.log");
    let out = File::create(&out_path).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        if output.lines().any(|l| l.contains(marker)) {
            let _ = child.kill();
            let _ = child.wait();
            return (Starts, output);
        }
        if child.try_wait().unwrap().is_some() {
            let output = std::fs::read_to_string(&out_path).unwrap_or_default();
            return (Refuses, output);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} neither started nor exited within {TIMEOUT:?}:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// A config file's bytes; `PORT` becomes a free port and `DIR` the test's
/// directory.
struct Case {
    name: &'static str,
    bytes: &'static [u8],
    roost: Outcome,
    /// What mosquitto 2.0.11 does where it differs from roost, and why.
    mosquitto_differs: Option<&'static str>,
}

const fn agree(name: &'static str, bytes: &'static [u8], outcome: Outcome) -> Case {
    Case {
        name,
        bytes,
        roost: outcome,
        mosquitto_differs: None,
    }
}

/// Lines mosquitto starts with and roost refuses: a number mosquitto
/// reads by atoi, taking what is not a number, and a key at a value
/// asking for what roost does not do.
const fn roost_refuses(name: &'static str, bytes: &'static [u8], why: &'static str) -> Case {
    Case {
        name,
        bytes,
        roost: Refuses,
        mosquitto_differs: Some(why),
    }
}

const CASES: &[Case] = &[
    agree(
        "a comment after a switch",
        b"listener PORT 127.0.0.1\nallow_anonymous true  # x\n",
        Starts,
    ),
    agree(
        "a word after a switch",
        b"listener PORT 127.0.0.1\nallow_anonymous true false\n",
        Starts,
    ),
    agree(
        "a comment after a number",
        b"listener PORT 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100 # x\n",
        Starts,
    ),
    agree(
        "a tab after a number",
        b"listener PORT 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100\t\n",
        Starts,
    ),
    agree(
        "a comment after a listener's address",
        b"listener PORT 127.0.0.1 # x\nallow_anonymous true\n",
        Starts,
    ),
    agree(
        "a comment in place of a listener's address",
        b"listener PORT # every interface\nallow_anonymous true\n",
        Starts,
    ),
    agree(
        "a comment after a log destination",
        b"listener PORT 127.0.0.1\nallow_anonymous true\nlog_dest stderr # x\n",
        Starts,
    ),
    agree(
        "leading spaces and runs of spaces",
        b"   listener   PORT   127.0.0.1\n  allow_anonymous    true\n",
        Starts,
    ),
    agree(
        "a line of spaces",
        b"listener PORT 127.0.0.1\n    \nallow_anonymous true\n",
        Starts,
    ),
    agree(
        "CRLF line ends",
        b"listener PORT 127.0.0.1\r\nallow_anonymous true\r\n\r\n",
        Starts,
    ),
    agree(
        "no newline at the end",
        b"listener PORT 127.0.0.1\nallow_anonymous true",
        Starts,
    ),
    agree(
        "a NUL byte ends the line",
        b"listener PORT 127.0.0.1\nallow_anonymous true\0 junk\n",
        Starts,
    ),
    agree(
        "a comment that is not UTF-8",
        b"# caf\xe9\nlistener PORT 127.0.0.1\nallow_anonymous true\n",
        Starts,
    ),
    agree("1 for true", b"listener PORT 127.0.0.1\nallow_anonymous 1\n", Starts),
    agree(
        "a file name: the rest of the line, blanks around it trimmed",
        b"listener PORT 127.0.0.1\nallow_anonymous true\npid_file \t DIR/my pid # not a comment \t\n",
        Starts,
    ),
    agree(
        "a bridge: words after a switch, comments after a topic rule and an address, a client id with a space",
        b"listener PORT 127.0.0.1\nallow_anonymous true\nconnection b\naddress 127.0.0.1:1 # x\n\
          topic a/# out 1 # x\ntry_private false # x\nremote_clientid my bridge\n\
          restart_timeout 30\n",
        Starts,
    ),
    agree(
        "a byte order mark",
        b"\xef\xbb\xbflistener PORT 127.0.0.1\nallow_anonymous true\n",
        Refuses,
    ),
    agree(
        "a byte order mark before a comment",
        b"\xef\xbb\xbf# roost\nlistener PORT 127.0.0.1\nallow_anonymous true\n",
        Refuses,
    ),
    agree(
        "an indented comment",
        b"listener PORT 127.0.0.1\nallow_anonymous true\n  # x\n",
        Refuses,
    ),
    agree(
        "a tab between key and value",
        b"listener PORT 127.0.0.1\nallow_anonymous\ttrue\n",
        Refuses,
    ),
    agree(
        "a leading tab",
        b"listener PORT 127.0.0.1\n\tallow_anonymous true\n",
        Refuses,
    ),
    agree(
        "a line of tabs",
        b"listener PORT 127.0.0.1\nallow_anonymous true\n\t\n",
        Refuses,
    ),
    agree(
        "a tab and a comment after a switch",
        b"listener PORT 127.0.0.1\nallow_anonymous true\t# x\n",
        Refuses,
    ),
    agree(
        "no value",
        b"listener PORT 127.0.0.1\nallow_anonymous\n",
        Refuses,
    ),
    agree(
        "a value of spaces",
        b"listener PORT 127.0.0.1\nallow_anonymous true\npid_file    \n",
        Refuses,
    ),
    agree(
        "an upper-case key",
        b"listener PORT 127.0.0.1\nALLOW_ANONYMOUS true\n",
        Refuses,
    ),
    agree(
        "an upper-case switch",
        b"listener PORT 127.0.0.1\nallow_anonymous TRUE\n",
        Refuses,
    ),
    agree(
        "yes for true",
        b"listener PORT 127.0.0.1\nallow_anonymous yes\n",
        Refuses,
    ),
    agree(
        "a file name that is not UTF-8",
        b"listener PORT 127.0.0.1\nallow_anonymous true\npid_file DIR/caf\xe9\n",
        Refuses,
    ),
    agree(
        "a comment after a file name is part of it",
        b"listener PORT 127.0.0.1\npassword_file DIR/passwd # x\n",
        Refuses,
    ),
    agree(
        "mosquitto keys at values roost behaves as",
        b"listener PORT 127.0.0.1\nallow_anonymous true\nqueue_qos0_messages false\n\
          allow_zero_length_clientid true\nmax_qos 2\nrequire_certificate false\n\
          use_username_as_clientid false\nset_tcp_nodelay true\nupgrade_outgoing_qos false\n\
          retained_persistence false\ncheck_retain_source false\nmax_inflight_bytes 0\n",
        Starts,
    ),
    roost_refuses(
        "a mosquitto key at a value roost does not do",
        b"listener PORT 127.0.0.1\nallow_anonymous true\nqueue_qos0_messages true\n",
        "roost queues no QoS 0 messages for offline clients",
    ),
    roost_refuses(
        "a number with letters after it",
        b"listener PORT 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100x\n",
        "mosquitto reads 100",
    ),
    roost_refuses(
        "a word for a number",
        b"listener PORT 127.0.0.1\nallow_anonymous true\nmax_queued_messages lots\n",
        "mosquitto reads 0: no limit",
    ),
];

#[test]
fn config_lines_mean_what_they_mean_to_mosquitto() {
    let with_mosquitto = have("mosquitto");
    if !with_mosquitto {
        eprintln!("SKIPPED: mosquitto not installed; checking roost's half only");
    }
    let dir = TempDir::new("roost-syntax");
    // mosquitto started as root writes its pid file as user mosquitto.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o777)).unwrap();
    // The password file of the case that names one: a file that reads.
    std::fs::write(dir.path.join("passwd"), "").unwrap();
    let mut failures = Vec::new();
    for case in CASES {
        let port = free_port().to_string();
        let dir_text = dir.path.to_str().unwrap().as_bytes();
        let bytes = replace(
            &replace(case.bytes, b"PORT", port.as_bytes()),
            b"DIR",
            dir_text,
        );
        let conf = dir.path.join("case.conf");
        std::fs::write(&conf, &bytes).unwrap();

        let check = Command::new(env!("CARGO_BIN_EXE_roost"))
            .arg("--check-config")
            .arg("-c")
            .arg(&conf)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let checked = if check.status.success() {
            Starts
        } else {
            Refuses
        };
        let mut roost = Command::new(env!("CARGO_BIN_EXE_roost"));
        roost.arg("-c").arg(&conf).env_remove("RUST_LOG");
        let (started, roost_out) = run(roost, &dir.path, "listening on");
        // Killed, roost leaves its pid file, which mosquitto (as user
        // mosquitto) could not write over.
        let pid_file = dir.path.join("my pid # not a comment");
        let _ = std::fs::remove_file(&pid_file);
        if checked != case.roost || started != case.roost {
            failures.push(format!(
                "{}: roost --check-config {checked:?}, start-up {started:?}, want {:?}\n{}{}",
                case.name,
                case.roost,
                text(&check.stderr),
                roost_out
            ));
        }
        if with_mosquitto {
            let mut mosquitto = Command::new("mosquitto");
            mosquitto.arg("-c").arg(&conf);
            let (outcome, out) = run(mosquitto, &dir.path, " running");
            let want = match (case.mosquitto_differs, case.roost) {
                (None, roost) => roost,
                (Some(_), Refuses) => Starts,
                (Some(_), Starts) => Refuses,
            };
            if outcome != want {
                failures.push(format!(
                    "{}: mosquitto {outcome:?}, want {want:?} ({})\n{out}",
                    case.name,
                    case.mosquitto_differs.unwrap_or("as roost")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(i) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}
