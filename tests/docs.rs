//! The documentation against the real binary and the parser's source.
//!
//! - Every fenced code block whose info string is `conf` in README.md and
//!   docs/*.md is a complete roost.conf. Each is written to a temporary
//!   file and must pass `roost --check-config -c FILE`; a failure names the
//!   Markdown file and the line of the block's opening fence.
//! - The examples name files the way a gateway keeps them
//!   (`/etc/roost/passwd`, `/etc/roost/gateway.pem`, ...), and
//!   `--check-config` reads those files. So before checking, the test
//!   rewrites the value of every key that names a file or directory to one
//!   it made in its temporary directory, of the right kind: a password file
//!   written by `roost passwd`, an ACL file, a CA and the certificates it
//!   signed (tests/common/pki.rs), an empty directory. The rest of each
//!   example is checked as written.
//! - A fenced block not marked `conf` (or `acl`: ACL files have `user` and
//!   `topic` lines too) whose every line starts with a config key is
//!   refused: config examples must carry the marker.
//! - The key tables of docs/configuration.md (tables whose first column is
//!   `key`) name exactly the keys roost reads, those of the table of keys
//!   in src/config/ (`roost::config::keys`). Its index (`## Every key`)
//!   is that table: each key with where it applies, what SIGHUP does with
//!   it and its line of doc; docs/mosquitto.md's `## Every mosquitto key`
//!   says for every mosquitto key what roost makes of it, and why. On a
//!   difference the test prints the table as it should read. And the
//!   binary must know each key in the tables: `--check-config` on a file
//!   with that key does not call it unknown or unsupported.
//! - The man pages: roost.conf(5) describes every key roost accepts at
//!   some value (those it reads, and mosquitto's at the values roost
//!   behaves as), its SIGHUP section names the keys SIGHUP applies, and
//!   its EXAMPLE
//!   passes `--check-config` like the Markdown examples; roost(8) names
//!   every option `roost --help` and `roost import-mosquitto-db --help`
//!   list, roost-passwd(1) every option of `roost passwd --help`.
//!
//! Every run of the binary is bounded by `common::TIMEOUT`.

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::{TIMEOUT, TempDir, text};
use roost::config::{Key, Reload, Scope, Support, keys};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A fenced code block: where it opens, its info string and its lines.
struct Block {
    file: String,
    line: usize,
    info: String,
    text: String,
}

/// README.md and every docs/*.md, as paths relative to the project root.
fn markdown_files() -> Vec<String> {
    let mut files = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn blocks(file: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (n, line) in read(file).lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => {
                open = Some(Block {
                    file: file.into(),
                    line: n + 1,
                    info: info.trim().into(),
                    text: String::new(),
                });
            }
            (Some(_), Some("")) => out.push(open.take().unwrap()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{file}: a code block is not closed");
    out
}

/// The `conf` blocks of the Markdown files, and roost.conf(5)'s example.
fn conf_blocks() -> Vec<Block> {
    let mut out: Vec<Block> = markdown_files()
        .iter()
        .flat_map(|f| blocks(f))
        .filter(|b| b.info == "conf")
        .collect();
    let file = "docs/man/roost.conf.5";
    let man = read(file);
    let start = man
        .find(".SH EXAMPLE\n.nf\n")
        .expect("roost.conf.5: EXAMPLE");
    let example = &man[start..];
    let end = example.find("\n.fi\n").expect("roost.conf.5: .fi");
    out.push(Block {
        file: file.into(),
        line: man[..start].lines().count() + 2,
        info: "conf".into(),
        text: unroff(&example[".SH EXAMPLE\n.nf\n".len()..=end]),
    });
    out
}

/// roff text as it reads: `\-` is `-`, and other escapes are dropped.
fn unroff(text: &str) -> String {
    text.replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
}

/// Runs `roost --check-config -c path`, killed after `TIMEOUT`.
fn check_config(path: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("--check-config")
        .arg("-c")
        .arg(path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run roost");
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "roost --check-config -c {} took over {TIMEOUT:?}",
                path.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// The files and directories the examples' paths are rewritten to.
struct Fixtures {
    dir: TempDir,
    passwd: PathBuf,
    acl: PathBuf,
    ca: PathBuf,
    capath: PathBuf,
    server: pki::Issued,
    client: pki::Issued,
    empty: PathBuf,
    pid: PathBuf,
    log: PathBuf,
}

impl Fixtures {
    fn new() -> Fixtures {
        let dir = TempDir::new("roost-docs");
        let path = |name: &str| dir.path.join(name);
        let passwd = path("passwd");
        let out = Command::new(env!("CARGO_BIN_EXE_roost"))
            .args(["passwd", "-c", "-b"])
            .arg(&passwd)
            .args(["alice", "secret"])
            .stdin(Stdio::null())
            .output()
            .expect("run roost passwd");
        assert!(out.status.success(), "roost passwd: {}", text(&out.stderr));
        let acl = path("acl");
        std::fs::write(&acl, "user alice\ntopic readwrite home/#\n").unwrap();
        let ca = pki::Ca::new("roost docs CA");
        let capath = path("capath");
        std::fs::create_dir(&capath).unwrap();
        ca.write(&capath.join("ca.pem"));
        let empty = path("empty");
        std::fs::create_dir(&empty).unwrap();
        Fixtures {
            passwd,
            acl,
            ca: ca.write(&path("ca.pem")),
            capath,
            server: ca.server(&dir.path, "server"),
            client: ca.client(&dir.path, "client", "site1"),
            empty,
            pid: path("roost.pid"),
            log: path("roost.log"),
            dir,
        }
    }

    /// `line` with the file or directory it names replaced by a fixture.
    fn rewrite(&self, line: &str) -> String {
        let trimmed = line.trim();
        let (key, value) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        let fixture: &Path = match key {
            "password_file" => &self.passwd,
            "acl_file" => &self.acl,
            "certfile" => &self.server.cert,
            "keyfile" => &self.server.key,
            "cafile" | "bridge_cafile" => &self.ca,
            "capath" | "bridge_capath" => &self.capath,
            "bridge_certfile" => &self.client.cert,
            "bridge_keyfile" => &self.client.key,
            "persistence_location" | "include_dir" => &self.empty,
            "pid_file" => &self.pid,
            "log_dest" if first_word(value) == "file" => {
                return format!("log_dest file {}", self.log.display());
            }
            _ => return line.into(),
        };
        format!("{key} {}", fixture.display())
    }
}

/// Keys whose examples need a roost built with TLS.
const TLS_KEYS: &[&str] = &[
    "certfile",
    "keyfile",
    "cafile",
    "capath",
    "require_certificate",
    "use_identity_as_username",
    "tls_version",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_keyfile",
    "bridge_insecure",
    "bridge_alpn",
    "bridge_tls_version",
];

fn first_word(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

#[test]
fn every_conf_example_passes_check_config() {
    let fixtures = Fixtures::new();
    let blocks = conf_blocks();
    assert!(
        blocks.len() >= 10,
        "only {} conf examples found",
        blocks.len()
    );
    let mut failures = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let needs_tls = b.text.lines().any(|l| TLS_KEYS.contains(&first_word(l)));
        if needs_tls && !cfg!(feature = "tls") {
            eprintln!("SKIPPED: {}:{}: needs the `tls` feature", b.file, b.line);
            continue;
        }
        let conf: String = b.text.lines().map(|l| fixtures.rewrite(l) + "\n").collect();
        let path = fixtures.dir.path.join(format!("example-{i}.conf"));
        std::fs::write(&path, &conf).unwrap();
        let out = check_config(&path);
        if !out.status.success() {
            failures.push(format!(
                "{}:{}: the example does not pass --check-config:\n{}\n{}",
                b.file,
                b.line,
                in_the_docs(&text(&out.stderr), &path, b).trim(),
                conf
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// `err` with `path:N` (line N of the example as checked) said as the
/// line of the documentation it comes from.
fn in_the_docs(err: &str, path: &Path, b: &Block) -> String {
    let path = format!("{}:", path.display());
    let mut out = String::new();
    let mut rest = err;
    while let Some(i) = rest.find(&path) {
        out.push_str(&rest[..i]);
        rest = &rest[i + path.len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&format!("{}:{}", b.file, b.line + n)),
            Err(_) => out.push_str(&path),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[test]
fn config_examples_are_marked_conf() {
    let keys = parser_keys();
    let mut unmarked = Vec::new();
    for file in markdown_files() {
        for b in blocks(&file) {
            if b.info == "conf" || b.info == "acl" {
                continue;
            }
            let lines: Vec<&str> = b
                .text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            if !lines.is_empty() && lines.iter().all(|l| keys.contains(first_word(l))) {
                unmarked.push(format!("{}:{}", b.file, b.line));
            }
        }
    }
    assert!(
        unmarked.is_empty(),
        "config examples without the `conf` info string: {unmarked:?}"
    );
}

/// The keys in the first column of docs/configuration.md's key tables:
/// the first word of every code span there.
fn table_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut in_table = false;
    for line in read("docs/configuration.md").lines() {
        let Some(row) = line.trim().strip_prefix('|') else {
            in_table = false;
            continue;
        };
        let first = row.replace("\\|", "/");
        let first = first.split('|').next().unwrap_or("").trim();
        if first == "key" {
            in_table = true;
            continue;
        }
        if !in_table || first.starts_with("---") {
            continue;
        }
        for span in first.split('`').skip(1).step_by(2) {
            keys.insert(first_word(span).to_string());
        }
    }
    keys
}

/// The keys the parser accepts at some value, from its table.
fn parser_keys() -> BTreeSet<String> {
    keys()
        .filter(|k| k.accepted())
        .map(|k| k.name.to_string())
        .collect()
}

/// The keys roost reads (rather than accepting a mosquitto key at a value
/// roost behaves as anyway).
fn read_keys() -> BTreeSet<String> {
    keys()
        .filter(|k| k.support() == Support::Read)
        .map(|k| k.name.to_string())
        .collect()
}

#[test]
fn the_key_tables_list_every_key_roost_reads() {
    let table = table_keys();
    let parser = read_keys();
    let missing: Vec<_> = parser.difference(&table).collect();
    let extra: Vec<_> = table.difference(&parser).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/configuration.md's key tables and the parser differ:\n\
         read but not in a table: {missing:?} (add a row to the table of its section)\n\
         in a table but not read: {extra:?}"
    );
}

/// The lines of the first table after the line `heading` in `file`.
fn table_after(file: &str, heading: &str) -> Vec<String> {
    read(file)
        .lines()
        .skip_while(|l| *l != heading)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(String::from)
        .collect()
}

/// Asserts that `file` holds `want` as the table after `heading`; else
/// shows the table to put there.
fn assert_table(file: &str, heading: &str, want: &[String]) {
    let have = table_after(file, heading);
    if have != want {
        let first = have.iter().zip(want).position(|(h, w)| h != w);
        panic!(
            "{file}: the table after `{heading}` does not match the table of keys in \
             src/config/ (first difference at row {first:?}). It should read:\n\n{}\n",
            want.join("\n")
        );
    }
}

/// A Markdown table cell: `|` escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[test]
fn every_key_is_in_the_index_as_the_code_has_it() {
    let mut want = vec![
        "| key | applies to | SIGHUP | what it is |".to_string(),
        "| --- | --- | --- | --- |".to_string(),
    ];
    let mut read: Vec<&Key> = keys().filter(|k| k.support() == Support::Read).collect();
    read.sort_by_key(|k| k.name);
    for k in read {
        let scope = match k.scope {
            Scope::Global => "the broker",
            Scope::Listener => "its listener",
            Scope::Security => "every listener, or its own (`per_listener_settings`)",
            Scope::Bridge => "its bridge",
        };
        let reload = match k.reload {
            Reload::Applied => "applied",
            Reload::Restart => "restart",
            Reload::File => "file read again; a new name: restart",
        };
        let own = if k.mosquitto { "" } else { " (roost)" };
        want.push(format!(
            "| `{}`{own} | {scope} | {reload} | {} |",
            k.name,
            cell(k.doc)
        ));
    }
    assert_table("docs/configuration.md", "## Every key", &want);
}

#[test]
fn every_mosquitto_key_is_in_the_table_as_the_code_has_it() {
    let mut want = vec![
        "| key | in roost | what it is, or why not |".to_string(),
        "| --- | --- | --- |".to_string(),
    ];
    let mut theirs: Vec<&Key> = keys().filter(|k| k.mosquitto).collect();
    theirs.sort_by_key(|k| k.name);
    for k in theirs {
        let values = |same: &[&str]| {
            let list: Vec<String> = same.iter().map(|v| format!("`{v}`")).collect();
            list.join(", ")
        };
        let support = match k.support() {
            Support::Read => "supported".to_string(),
            Support::Other {
                same: [],
                warn: false,
            } => "not supported".to_string(),
            Support::Other {
                same: [],
                warn: true,
            } => "accepted, changes nothing (a warning says so)".to_string(),
            Support::Other { same, warn: false } => format!(
                "accepted at {}, which changes nothing; other values not supported",
                values(same)
            ),
            Support::Other { same, warn: true } => format!(
                "accepted at {}, which changes nothing; other values with a warning",
                values(same)
            ),
        };
        let name = match k.name {
            "auth_opt_" | "plugin_opt_" => format!("`{}*`", k.name),
            name => format!("`{name}`"),
        };
        want.push(format!("| {name} | {support} | {} |", cell(k.doc)));
    }
    assert_table("docs/mosquitto.md", "## Every mosquitto key", &want);
}

#[test]
fn the_binary_knows_every_key_in_the_tables() {
    let dir = TempDir::new("roost-docs-keys");
    let known = |key: &str| {
        let path = dir.path.join("key.conf");
        std::fs::write(&path, format!("{key} x\n")).unwrap();
        let err = text(&check_config(&path).stderr);
        !err.contains("unknown key") && !err.contains("does not support")
    };
    assert!(!known("no_such_key"), "the check cannot tell");
    let unknown: Vec<_> = table_keys().into_iter().filter(|k| !known(k)).collect();
    assert!(
        unknown.is_empty(),
        "keys in docs/configuration.md that roost refuses: {unknown:?}"
    );
}

/// The key each `.TP`/`.TQ` entry of roost.conf(5) starts with.
fn man_keys() -> BTreeSet<String> {
    let man = read("docs/man/roost.conf.5");
    let lines: Vec<&str> = man.lines().collect();
    let mut keys = BTreeSet::new();
    for pair in lines.windows(2) {
        if pair[0] != ".TP" && pair[0] != ".TQ" {
            continue;
        }
        let Some((macro_, rest)) = pair[1].split_once(' ') else {
            continue;
        };
        if [".B", ".BI", ".BR"].contains(&macro_) {
            let word = first_word(rest.trim_start_matches('"'));
            keys.insert(unroff(word).trim_matches('"').to_string());
        }
    }
    keys
}

#[test]
fn roost_conf_5_describes_every_key_the_parser_accepts() {
    let man = man_keys();
    let parser = parser_keys();
    let missing: Vec<_> = parser.difference(&man).collect();
    let extra: Vec<_> = man.difference(&parser).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/man/roost.conf.5 and the parser differ:\n\
         accepted but not described: {missing:?}\n\
         described but not accepted: {extra:?}"
    );
}

/// The keys roost.conf(5)'s SIGHUP section names in bold (`.B key`,
/// `.BR key ,`): those SIGHUP applies.
#[test]
fn roost_conf_5_names_the_keys_sighup_applies() {
    let man = read("docs/man/roost.conf.5");
    let start = man.find(".SH SIGHUP\n").expect("roost.conf.5: SIGHUP");
    let section = &man[start + 1..];
    let section = &section[..section.find("\n.SH ").unwrap_or(section.len())];
    let named: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix(".BR ").or_else(|| l.strip_prefix(".B ")))
        .map(|l| first_word(l).to_string())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    let applied: BTreeSet<String> = keys()
        .filter(|k| k.support() == Support::Read && k.reload == Reload::Applied)
        .map(|k| k.name.to_string())
        .collect();
    assert_eq!(named, applied, "docs/man/roost.conf.5's SIGHUP section");
}

/// The options `--help` lists for `args`: words starting with `-` at the
/// start of its indented lines.
fn help_options(args: &[&str]) -> Vec<String> {
    let out = common::run_roost(args);
    assert!(out.status.success());
    text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("  "))
        .flat_map(|l| {
            l.split_whitespace()
                .take_while(|w| w.starts_with('-'))
                .map(|w| w.trim_end_matches(',').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_man_pages_name_every_option() {
    for (args, page, at_least) in [
        (&["--help"][..], "docs/man/roost.8", 7),
        (&["passwd", "--help"][..], "docs/man/roost-passwd.1", 3),
        (
            &["import-mosquitto-db", "--help"][..],
            "docs/man/roost.8",
            3,
        ),
    ] {
        let options = help_options(args);
        assert!(options.len() >= at_least, "{args:?}: {options:?}");
        let man = unroff(&read(page));
        let missing: Vec<_> = options
            .iter()
            .filter(|o| {
                !man.split_whitespace()
                    .any(|w| w.trim_matches(['"', ',']) == *o)
            })
            .collect();
        assert!(missing.is_empty(), "{page} lacks {missing:?}");
    }
}
