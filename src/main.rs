//! roost: parse the command line, load the config, set up logging, run.

use std::path::PathBuf;
use std::process::ExitCode;

use roost::config::{self, Settings};
use roost::net::Server;

/// Counts heap bytes for `$SYS/broker/heap/...` and `memory_limit`.
#[global_allocator]
static HEAP: roost::mem::Counting = roost::mem::Counting;

const USAGE: &str = "\
roost - an MQTT broker for small Linux gateways

Usage: roost [OPTIONS]
       roost passwd [-c | -D] [-b] FILE USER [PASSWORD]   (see roost passwd --help)

Options:
  -c, --config FILE   read settings from FILE (mosquitto.conf syntax)
  -p, --port PORT     listen on PORT (default 1883; 0 picks a free one)
      --bind ADDR     listen on ADDR (default 127.0.0.1)
  -v, --verbose       log debug messages (RUST_LOG overrides)
      --check-config  read the settings (and password and ACL files), say
                      whether they are valid, and exit
  -h, --help          show this help
  -V, --version       show the version

-p and --bind replace the listeners of the config file.";

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

fn settings(args: &Args) -> Result<Settings, String> {
    let mut settings = match &args.config {
        Some(path) => config::load(path)?,
        None => Settings::default(),
    };
    if args.port.is_some() || args.bind.is_some() {
        let ip = args.bind.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let port = args.port.unwrap_or(config::DEFAULT_PORT);
        settings.listeners = vec![std::net::SocketAddr::new(ip, port)];
    }
    settings.check()?;
    settings.broker.access = settings.load_access()?;
    Ok(settings)
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

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).is_some_and(|a| a == "passwd") {
        return passwd(&argv[2..]);
    }
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roost: {e}");
            return ExitCode::from(2);
        }
    };
    let level = if args.verbose { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let result = settings(&args).and_then(|s| {
        if args.check_only {
            let source = args.config.as_deref().map(|p| p.display().to_string());
            println!(
                "{}: configuration OK",
                source.as_deref().unwrap_or("defaults")
            );
            return Ok(());
        }
        let server = Server::bind(&s).map_err(|e| e.to_string())?;
        server.run().map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("roost: {e}");
            ExitCode::FAILURE
        }
    }
}
