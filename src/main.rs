//! The `mailtun` binary: parses the command line, sets up diagnostics, runs the command,
//! and is the only place that prints messages and chooses exit codes.

mod cli;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use mailtun::config::{self, Config, ConfigError};
use mailtun::error::{Class, Failure, FailureKind, Step};
use mailtun::{session, tunnel};

use cli::{Cli, Command};

const EXIT_CONFIG: u8 = 3;
const EXIT_NETWORK: u8 = 4;
const EXIT_POLICY: u8 = 5;
const EXIT_AUTH: u8 = 6;
const EXIT_PROTOCOL: u8 = 7;

fn exit_code(class: Class) -> u8 {
    match class {
        Class::Config => EXIT_CONFIG,
        Class::Network => EXIT_NETWORK,
        Class::Policy => EXIT_POLICY,
        Class::Auth => EXIT_AUTH,
        Class::Protocol => EXIT_PROTOCOL,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("mailtun: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailtun: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command {
        Command::Tunnel { ref account } => runtime.block_on(run_tunnel(&cli, account)),
    };
    // Reads of stdin may still be pending on a blocking thread; do not wait for them.
    runtime.shutdown_background();
    code
}

fn init_logging(cli: &Cli) -> Result<(), String> {
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .without_time();
    match &cli.log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    let path = config::locate(cli.config.as_deref()).ok_or_else(|| ConfigError {
        file: "config.toml".into(),
        location: None,
        account: None,
        message: "no configuration file: set --config, MAILTUN_CONFIG, or HOME".into(),
    })?;
    Config::load(&path)
}

async fn run_tunnel(cli: &Cli, name: &str) -> ExitCode {
    // stdout carries the protocol and nothing else.
    let mut stdout = std::io::stdout();
    let account = match load_config(cli).and_then(|c| c.account(name).cloned()) {
        Ok(a) => a,
        Err(e) => {
            let failure = Failure::new(name, Step::Config, FailureKind::Config(e));
            return report(&failure, Some(config::Protocol::Imap), &mut stdout);
        }
    };
    let est = match session::establish(&account).await {
        Ok(est) => est,
        Err(failure) => return report(&failure, Some(account.protocol), &mut stdout),
    };
    tracing::info!(
        "account `{}`: authenticated with {} over {}, protection {}",
        account.name,
        est.mechanism,
        est.tls
            .as_ref()
            .map_or("no TLS".to_string(), |t| t.to_string()),
        est.combination
    );
    let greeting = tunnel::greeting(&account, &est);
    let (client_in, mut out) = tunnel::client_stdio();
    use tokio::io::AsyncWriteExt;
    if out.write_all(&greeting).await.is_err() || out.flush().await.is_err() {
        return ExitCode::SUCCESS;
    }
    match tunnel::relay(est.link, est.leftover, client_in, out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let failure = Failure::new(&account.name, Step::Relay, FailureKind::Io(e));
            eprintln!("mailtun: {failure}");
            ExitCode::from(EXIT_NETWORK)
        }
    }
}

/// Tells the client (on stdout, in its protocol) and the user (on stderr).
fn report(
    failure: &Failure,
    protocol: Option<config::Protocol>,
    stdout: &mut impl Write,
) -> ExitCode {
    let class = failure.class();
    if let Some(p) = protocol {
        let summary = failure.kind.to_string();
        let _ = stdout.write_all(&tunnel::failure_reply(p, class, &summary));
        let _ = stdout.flush();
    }
    eprintln!("mailtun: {failure}");
    if let Some(remedy) = failure.remedy() {
        eprintln!("mailtun: hint: {remedy}");
    }
    ExitCode::from(exit_code(class))
}
