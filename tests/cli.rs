//! The command line as a user meets it: help, version, bad arguments,
//! `--check-config`, and `-p`/`--bind` taking the place of config listeners.

mod common;
#[path = "common/wire.rs"]
mod wire;

use common::{Roost, TempDir, run_roost, text};
use wire::Client;

#[test]
fn help_and_version() {
    let out = run_roost(&["--help"]);
    assert!(out.status.success());
    for flag in [
        "--config",
        "--port",
        "--bind",
        "--verbose",
        "--check-config",
    ] {
        assert!(text(&out.stdout).contains(flag), "help lacks {flag}");
    }
    let out = run_roost(&["-V"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("roost {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_argument_is_refused_with_status_2() {
    for args in [
        &["--frobnicate"][..],
        &["-p", "http"],
        &["--bind", "nowhere"],
        &["-p"],
    ] {
        let out = run_roost(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).starts_with("roost: "),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn check_config_validates_and_exits() {
    let dir = TempDir::new("roost-cli");
    let good = dir.path.join("good.conf");
    std::fs::write(
        &good,
        "# gateway\nlistener 1883 127.0.0.1\nallow_anonymous true\nmax_queued_messages 10\n",
    )
    .unwrap();
    let out = run_roost(&["--check-config", "-c", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration OK"));

    let bad = dir.path.join("bad.conf");
    std::fs::write(
        &bad,
        "listener 1883 127.0.0.1\npersistence_locatoin /var/lib/x\n",
    )
    .unwrap();
    let out = run_roost(&["--check-config", "-c", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:2: ", bad.display())), "{err}");
    assert!(err.contains("unknown key `persistence_locatoin`"), "{err}");

    // A missing password file is found by the check too.
    let missing = dir.path.join("missing.conf");
    std::fs::write(&missing, "password_file /nonexistent/pw\n").unwrap();
    let out = run_roost(&["--check-config", "-c", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/nonexistent/pw"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn port_and_bind_replace_the_config_listeners() {
    // The config names a port that is taken; -p 0 wins, so roost starts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = format!(
        "listener {} 127.0.0.1\nallow_anonymous true\n",
        taken.local_addr().unwrap().port()
    );
    let dir = TempDir::new("roost-cli-p");
    let path = dir.path.join("roost.conf");
    std::fs::write(&path, config).unwrap();
    let r = Roost::spawn(
        &[
            "-c",
            path.to_str().unwrap(),
            "-p",
            "0",
            "--bind",
            "127.0.0.1",
        ],
        None,
    );
    assert_ne!(r.port, taken.local_addr().unwrap().port());
    let mut c = Client::v4(&r.addr(), "cli");
    assert_eq!(c.subscribe(1, &[("t", 0)]), [0]);
}
