//! roost: parse the command line, load the config, set up logging, run.

use std::path::PathBuf;
use std::process::ExitCode;

use roost::config::{self, Settings};
use roost::net::Server;
use roost::pidfile::PidFile;
use roost::privileges::Account;

/// Counts heap bytes for `$SYS/broker/heap/...` and `memory_limit`.
#[global_allocator]
static HEAP: roost::mem::Counting = roost::mem::Counting;

const USAGE: &str = "\
roost - an MQTT broker for small Linux gateways

Usage: roost [OPTIONS]
       roost passwd [-c | -D] [-b] FILE USER [PASSWORD]   (see roost passwd --help)
       roost import-mosquitto-db [-c CONFIG] FILE   (see roost import-mosquitto-db --help)

Options:
  -c, --config FILE   read settings from FILE (mosquitto.conf syntax)
  -p, --port PORT     listen on PORT (default 1883; 0 picks a free one)
      --bind ADDR     listen on ADDR (default 127.0.0.1)
  -v, --verbose       log everything, whatever log_type says (RUST_LOG,
                      when set, decides instead)
      --check-config  read the settings (and password, ACL and TLS
                      certificate files, and check the log and pid files
                      can be written), say whether they are valid, and exit
  -h, --help          show this help
  -V, --version       show the version

-p and --bind replace the listeners of the config file.

Manual: man roost, man roost.conf (every config key), man roost-passwd;
in the source, docs/man/ and docs/.";

struct Args {
    config: Option<PathBuf>,
    port: Option<u16>,
    bind: Option<std::net::IpAddr>,
    verbose: bool,
    check_only: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        config: None,
        port: None,
        bind: None,
        verbose: false,
        check_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-c" | "--config" => args.config = Some(value(&arg)?.into()),
            "-p" | "--port" => {
                let v = value(&arg)?;
                args.port = Some(v.parse().map_err(|_| format!("bad port `{v}`"))?);
            }
            "--bind" => {
                let v = value(&arg)?;
                args.bind = Some(v.parse().map_err(|_| format!("bad address `{v}`"))?);
            }
            "-v" | "--verbose" => args.verbose = true,
            "--check-config" => args.check_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("roost {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    Ok(Some(args))
}

/// The config file's settings, with `-p`/`--bind` applied.
fn settings(args: &Args) -> Result<Settings, String> {
    let mut settings = match &args.config {
        Some(path) => config::load(path)?,
        None => Settings::default(),
    };
    if args.port.is_some() || args.bind.is_some() {
        let ip = args.bind.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let port = args.port.unwrap_or(config::DEFAULT_PORT);
        settings.replace_listeners(std::net::SocketAddr::new(ip, port));
    }
    Ok(settings)
}

/// Checks what start-up would and reads the password and ACL files.
fn ready(settings: &mut Settings) -> Result<(), String> {
    settings.check()?;
    let access = settings.load_access()?;
    for (auth, access) in settings.broker.auth.iter_mut().zip(access) {
        auth.access = access;
    }
    Ok(())
}

/// `--check-config`: everything but listening; warnings on stderr.
fn check_config(args: &Args) -> Result<(), String> {
    let mut settings = settings(args)?;
    ready(&mut settings)?;
    Account::to_become(settings.user.as_deref())?;
    settings.check_paths()?;
    // By hand, outside roost.service's sandbox: the paths that sandbox
    // would not let roost write, when the config is the one it runs.
    if let Some(unit) = config::service::Sandbox::installed() {
        if args.config.as_deref().is_some_and(|c| unit.runs(c)) {
            unit.check(&settings)?;
        }
    }
    roost::net::check_transports(&settings)?;
    for warning in &settings.warnings {
        eprintln!("roost: warning: {warning}");
    }
    let source = args.config.as_deref().map(|p| p.display().to_string());
    println!(
        "{}: configuration OK",
        source.as_deref().unwrap_or("defaults")
    );
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let mut settings = settings(args)?;
    // Before the log file is opened, so that one roost may not write is
    // refused with the reason (under systemd: the sandbox) as the others.
    settings.check_paths()?;
    roost::logging::init(&settings.log, args.verbose)?;
    for warning in &settings.warnings {
        log::warn!("{warning}");
    }
    ready(&mut settings)?;
    let account = Account::to_become(settings.user.as_deref())?;
    let server = Server::bind(&settings).map_err(|e| e.to_string())?;
    let _pid_file = settings
        .pid_file
        .as_deref()
        .map(PidFile::create)
        .transpose()?;
    if let Some(account) = account {
        // The Unix sockets too: mosquitto, which binds as `user`, makes
        // them that user's, for its group's clients.
        let mut files = settings.written_files();
        files.extend(settings.unix_sockets());
        account.hand_over(&files)?;
        account.become_it()?;
        settings.check_paths_as(&account.name())?;
        log::info!("running as user {}", account.name());
    }
    server.run().map_err(|e| e.to_string())
}

/// `roost passwd ...`: the mosquitto_passwd work-alike.
fn passwd(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", roost::auth::passwd::USAGE);
        return ExitCode::SUCCESS;
    }
    match roost::auth::passwd::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roost passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `roost import-mosquitto-db ...`: mosquitto's state into roost's file.
fn import_mosquitto_db(args: &[String]) -> ExitCode {
    use roost::persist::import;
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", import::USAGE);
        return ExitCode::SUCCESS;
    }
    match import::run(args) {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roost import-mosquitto-db: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("passwd") => return passwd(&argv[2..]),
        Some("import-mosquitto-db") => return import_mosquitto_db(&argv[2..]),
        _ => {}
    }
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roost: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if args.check_only {
        check_config(&args)
    } else {
        run(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Said twice when stderr is a log destination too: once in the
            // log, once as the reason for the exit status; but once in the
            // journal, where both would land, with an error's priority.
            log::error!("{e}");
            let journal = roost::logging::stderr_is_journal();
            if !(journal && roost::logging::logs_to_stderr()) {
                eprintln!("{}roost: {e}", if journal { "<3>" } else { "" });
            }
            ExitCode::FAILURE
        }
    }
}
