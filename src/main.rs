//! The `mailtun` binary: parses the command line, sets up diagnostics, runs the command,
//! and is the only place that prints messages and chooses exit codes.

mod cli;
mod completion;
mod manual;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use mailtun::config::{self, Account, Config, ConfigError};
use mailtun::error::{Class, Failure, FailureKind, Step};
use mailtun::{session, tunnel};

use cli::{Cli, Command, OAuthAction, PasswordAction};

/// `eprintln!` that does not panic when stderr is closed (a mail client that went away
/// with it): the message is lost, the exit code stays the documented one. Every control
/// character but the line breaks is escaped on the way ([`mailtun::text::escape_lines`]):
/// server text is escaped where it is captured, and this keeps anything missed there
/// from reaching the terminal.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = mailtun::text::escape_lines(&format!($($arg)*));
        let _ = writeln!(std::io::stderr(), "{text}");
    }};
}

const EXIT_CONFIG: u8 = Class::Config.exit_code();
const EXIT_NETWORK: u8 = Class::Network.exit_code();
const EXIT_AUTH: u8 = Class::Auth.exit_code();

fn main() -> ExitCode {
    let cli = parse_command_line();
    if let Err(e) = init_logging(&cli) {
        eprintln!("mailtun: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Err(e) = mailtun::secret::forbid_core_dumps() {
        tracing::warn!("cannot disable core dumps: {e}");
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
        Command::Serve { ref accounts } => runtime.block_on(run_serve(&cli, accounts)),
        Command::Password { ref action } => run_password(&cli, action),
        Command::Probe { .. } => runtime.block_on(run_probe(&cli)),
        Command::Check { ref account, json } => runtime.block_on(run_check(&cli, account, json)),
        Command::Rimap { ref host, ref user } => runtime.block_on(run_rimap(&cli, host, user)),
        Command::Accounts { json, names } => run_accounts(&cli, json, names),
        Command::Completions { shell } => {
            print_stdout(&completion::script(shell));
            ExitCode::SUCCESS
        }
        Command::Man => {
            print_stdout(&manual::page());
            ExitCode::SUCCESS
        }
        Command::Oauth { ref action } => run_oauth(&cli, action),
        Command::Snippet {
            ref client,
            ref account,
        } => run_snippet(&cli, client, account),
    };
    // Reads of stdin may still be pending on a blocking thread; do not wait for them.
    runtime.shutdown_background();
    // A password command abandoned at the account's timeout dies with its children.
    mailtun::credentials::kill_running_commands();
    code
}

/// The command line, with alpine's `ssh-path` form (`mailtun [OPTIONS] HOST -l USER exec
/// /etc/rimapd`) turned into the hidden `rimap HOST USER` command.
fn parse_command_line() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    let is_subcommand = |s: &str| s == "help" || Cli::command().find_subcommand(s).is_some();
    match mailtun::alpine::recognise(&args, is_subcommand) {
        Some(call) => {
            let mut argv = vec![args[0].clone()];
            argv.extend(call.options);
            argv.extend(["rimap", "--", &call.host, &call.user].map(OsString::from));
            Cli::parse_from(argv)
        }
        None => Cli::parse(),
    }
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
            use std::os::unix::fs::OpenOptionsExt;
            // Only the user reads the log: it names servers, accounts and principals.
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
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
    serve(account).await
}

/// alpine's call: the IMAP account with this host and user, or a `* BYE` naming what
/// was looked for and the accounts that exist.
async fn run_rimap(cli: &Cli, host: &str, user: &str) -> ExitCode {
    let found =
        load_config(cli).and_then(|c| mailtun::alpine::find_account(&c, host, user).cloned());
    let account = match found {
        Ok(a) => a,
        Err(e) => {
            let failure = Failure::new(&format!("{user}@{host}"), Step::Config, e);
            return report(
                &failure,
                Some(config::Protocol::Imap),
                &mut std::io::stdout(),
            );
        }
    };
    tracing::info!(
        "alpine asked for {user} on {host}: account `{}`",
        account.name
    );
    serve(account).await
}

/// Authenticates `account` and hands the session to the client on stdin/stdout.
async fn serve(account: Account) -> ExitCode {
    let mut stdout = std::io::stdout();
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
    let mechanism = est.mechanism;
    let (client_in, client_out) = tunnel::client_stdio();
    match tunnel::hand_over(&account, est, client_in, client_out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A server that breaks the security layer is a protocol violation; anything
            // else is the link's (or the client's) end.
            let kind = match tunnel::LayerFailure::of(&e) {
                Some(error @ mailtun::sasl::SaslError::UnsealedLayerToken) => {
                    FailureKind::Mechanism {
                        mechanism: mechanism.as_str(),
                        error: error.clone(),
                    }
                }
                _ => FailureKind::Io(e),
            };
            let failure = Failure::new(&account.name, Step::Relay, kind);
            eprintln!("mailtun: {failure}");
            match failure.class() {
                Class::Protocol => ExitCode::from(Class::Protocol.exit_code()),
                _ => ExitCode::from(EXIT_NETWORK),
            }
        }
    }
}

async fn run_probe(cli: &Cli) -> ExitCode {
    let Command::Probe {
        host,
        protocol,
        connect,
        ca_file,
        plain_port,
        tls_port,
        timeout,
        json,
    } = &cli.command
    else {
        unreachable!("run_probe is called for probe only")
    };
    let opts = mailtun::probe::ProbeOptions {
        host: host.clone(),
        protocol: match protocol {
            cli::ProtocolArg::Imap => config::Protocol::Imap,
            cli::ProtocolArg::Pop3 => config::Protocol::Pop3,
            cli::ProtocolArg::Smtp => config::Protocol::Smtp,
        },
        connect: connect.clone(),
        ca_file: ca_file.clone(),
        plain_port: *plain_port,
        tls_port: *tls_port,
        timeout: std::time::Duration::from_secs((*timeout).max(1)),
    };
    let report = match mailtun::probe::probe(&opts).await {
        Ok(r) => r,
        Err(e) => {
            let failure = Failure::new(host, Step::Config, FailureKind::Transport(e));
            eprintln!("mailtun: {}", failure.kind);
            return ExitCode::from(failure.class().exit_code());
        }
    };
    print_report(&report, *json, mailtun::report::render_probe);
    match report.problem() {
        None => ExitCode::SUCCESS,
        Some(class) => ExitCode::from(class.exit_code()),
    }
}

async fn run_check(cli: &Cli, name: &str, json: bool) -> ExitCode {
    let account = match load_config(cli).and_then(|c| c.account(name).cloned()) {
        Ok(a) => a,
        Err(e) => {
            let failure = Failure::new(name, Step::Config, FailureKind::Config(e));
            return report_check_failure(&failure, json);
        }
    };
    match mailtun::check::check(&account).await {
        Ok(r) => {
            print_report(&r, json, mailtun::report::render_check);
            ExitCode::SUCCESS
        }
        Err(failure) => report_check_failure(&failure, json),
    }
}

/// A probe or check report on stdout: JSON with `--json`, else the human rendering
/// (coloured when stdout is a terminal that wants it).
fn print_report<T: serde::Serialize>(
    report: &T,
    json: bool,
    render: fn(&T, mailtun::report::Style) -> String,
) {
    let text = if json {
        serde_json::to_string_pretty(report).expect("reports serialize") + "\n"
    } else {
        let style = mailtun::report::Style {
            color: mailtun::report::want_color(std::io::stdout().is_terminal()),
        };
        render(report, style)
    };
    print_stdout(&text);
}

/// A failed check: the message and hint on stderr, and with `--json` a document on
/// stdout too (`ok`, `step`, `class`, `message`, `hint`).
fn report_check_failure(failure: &Failure, json: bool) -> ExitCode {
    if json {
        let doc = serde_json::json!({
            "ok": false,
            "account": failure.account,
            "step": failure.step.to_string(),
            "class": format!("{:?}", failure.class()).to_ascii_lowercase(),
            "message": failure.to_string(),
            "hint": failure.remedy(),
        });
        print_stdout(&(serde_json::to_string_pretty(&doc).expect("json") + "\n"));
    }
    report(failure, None, &mut std::io::sink())
}

/// Writes a report to stdout; a closed pipe (`| head`) is not an error.
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
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
    ExitCode::from(class.exit_code())
}

/// `mailtun serve`: binds every listener first (any failure: nothing is served), says
/// so once per listener, then serves until SIGTERM or SIGINT, and exits 0.
async fn run_serve(cli: &Cli, names: &[String]) -> ExitCode {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailtun: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Sockets passed by systemd replace `listen`: without names on the command line,
    // any account may be named by one.
    let passed = mailtun::serve::activation::take_passed();
    let accounts: Vec<Account> = if names.is_empty() {
        config
            .accounts
            .values()
            .filter(|a| !passed.is_empty() || a.serve.listen.is_some())
            .cloned()
            .collect()
    } else {
        let mut v = Vec::new();
        for n in names {
            match config.account(n) {
                Ok(a) => v.push(a.clone()),
                Err(e) => {
                    eprintln!("mailtun: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
        v
    };
    if accounts.is_empty() {
        eprintln!(
            "mailtun: serve: no account in {} has `listen`; add `listen = \"127.0.0.1:PORT\"` to one",
            config.file.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    // Installed before the first listener is ready, so no signal is missed.
    let shutdown = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        async move {
            let term = async {
                match term.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = term => tracing::info!("SIGTERM: no more connections"),
                _ = int => tracing::info!("SIGINT: no more connections"),
            }
        }
    };
    let mut served = Vec::new();
    let activated = !passed.is_empty();
    if activated {
        match mailtun::serve::adopt_passed(passed, &accounts) {
            Ok(s) => served = s,
            Err(e) => {
                eprintln!("mailtun: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    for account in accounts.into_iter().filter(|_| !activated) {
        match mailtun::serve::bind(&account) {
            Ok(listener) => served.push(mailtun::serve::Served { account, listener }),
            Err(e) => {
                eprintln!("mailtun: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    for s in &served {
        eprintln!(
            "mailtun: serving {} ({}) on {}",
            s.account.name,
            s.account.protocol,
            s.listener.describe()
        );
    }
    mailtun::serve::run(served, shutdown).await;
    ExitCode::SUCCESS
}

fn run_accounts(cli: &Cli, json: bool, names: bool) -> ExitCode {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailtun: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let text = if names {
        config.accounts.keys().map(|n| format!("{n}\n")).collect()
    } else if json {
        format!("{:#}\n", mailtun::listing::json(&config))
    } else {
        mailtun::listing::text(&config)
    };
    print!("{text}");
    ExitCode::SUCCESS
}

fn run_snippet(cli: &Cli, client: &str, account: &str) -> ExitCode {
    use mailtun::snippet::{self, Client, Invocation};
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailtun: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let account = match config.account(account) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mailtun: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (exe, cwd) = match (std::env::current_exe(), std::env::current_dir()) {
        (Ok(e), Ok(c)) => (e, c),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("mailtun: cannot tell where this program is: {e}");
            return ExitCode::FAILURE;
        }
    };
    let default = config::default_location();
    let invocation = Invocation::new(&exe, &config.file, default.as_deref(), &cwd);
    let local_user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok();
    let client = Client::parse(client).expect("clap checked the client name");
    match snippet::render(client, account, &invocation, local_user.as_deref()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailtun: {e}");
            ExitCode::from(mailtun::error::EXIT_USAGE)
        }
    }
}

fn run_password(cli: &Cli, action: &PasswordAction) -> ExitCode {
    use mailtun::credentials::{self, Stored};
    let (PasswordAction::Set { account, local } | PasswordAction::Delete { account, local }) =
        action;
    let account = match load_config(cli).and_then(|c| c.account(account).cloned()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mailtun: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (which, source, key, what) = if *local {
        let source = account.serve.local_password.clone();
        (
            Stored::LocalPassword,
            source,
            "local_password",
            "local password",
        )
    } else {
        let source = Some(account.password.clone());
        (Stored::Password, source, "password", "password")
    };
    let Some(config::PasswordSource::Keyring(store)) = source else {
        eprintln!(
            "mailtun: account `{}` does not keep its {what} in a keyring; set `{key} = {{ keyring = true }}` first",
            account.name
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let result = match action {
        PasswordAction::Set { .. } => read_new_secret(&account.name, what).and_then(|p| {
            credentials::set_password(store, which, &account.name, &p).map_err(|e| e.to_string())
        }),
        PasswordAction::Delete { .. } => {
            credentials::delete_password(store, which, &account.name).map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailtun: account `{}`: {e}", account.name);
            ExitCode::from(EXIT_AUTH)
        }
    }
}

/// A new password or client secret (`what`): from the terminal when stdin is one, else
/// the first line of stdin. Never from argv.
fn read_new_secret(account: &str, what: &str) -> Result<mailtun::secret::Secret<String>, String> {
    use mailtun::secret::Secret;
    if std::io::stdin().is_terminal() {
        let p =
            rpassword::prompt_password(format!("mailtun: new {what} for account `{account}`: "))
                .map_err(|e| format!("cannot read the {what}: {e}"))?;
        if p.is_empty() {
            return Err(format!("the {what} is empty"));
        }
        Ok(Secret::new(p))
    } else {
        // Room for any sane password up front: a line that fits never reallocates, so no
        // copy of it is left behind in freed memory.
        let mut raw = String::with_capacity(4096);
        let read = std::io::stdin().read_line(&mut raw);
        let raw = Secret::new(raw);
        read.map_err(|e| format!("cannot read the {what} from stdin: {e}"))?;
        let line = Secret::new(raw.expose().trim_end_matches(['\r', '\n']).to_string());
        if line.expose().is_empty() {
            return Err(format!("the {what} read from stdin is empty"));
        }
        Ok(line)
    }
}

/// `mailtun oauth login|status|logout ACCOUNT`.
fn run_oauth(cli: &Cli, action: &OAuthAction) -> ExitCode {
    use mailtun::oauth::{self, Flow};
    let (OAuthAction::Login { account, .. }
    | OAuthAction::Status { account }
    | OAuthAction::Logout { account }
    | OAuthAction::Secret { account, .. }) = action;
    let account = match load_config(cli).and_then(|c| c.account(account).cloned()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mailtun: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(settings) = account.oauth.clone() else {
        eprintln!(
            "mailtun: account `{}` has no `[accounts.{}.oauth]` table; add one (see the README, \"OAuth 2.0\")",
            account.name, account.name
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    if matches!(action, OAuthAction::Secret { .. })
        && settings.client_secret != Some(oauth::ClientSecretSource::Keyring)
    {
        eprintln!(
            "mailtun: account `{}` does not keep its OAuth client secret in a keyring; set `client_secret = {{ keyring = true }}` in `[accounts.{}.oauth]` first",
            account.name, account.name
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let name = account.name.as_str();
    let result = match action {
        OAuthAction::Login { device, browser, .. } => {
            let flow = match (device, browser) {
                (true, _) => Some(Flow::Device),
                (_, true) => Some(Flow::Browser),
                _ => None,
            };
            oauth::login(&account, &settings, flow, &mut |line| eprintln!("mailtun: {line}"))
                .map(|s| print_oauth_status(name, &s))
        }
        OAuthAction::Status { .. } => oauth::status(&account, &settings)
            .map(|s| match s {
                Some(s) => print_oauth_status(name, &s),
                None => println!(
                    "account `{name}`: not signed in; run `mailtun oauth login {name}`"
                ),
            })
            .and_then(|()| oauth::client_secret_status(&account, &settings))
            .map(|c| print_client_secret_status(name, c)),
        OAuthAction::Secret { delete, .. } => oauth_secret(&account, &settings, *delete),
        OAuthAction::Logout { .. } => oauth::logout(&account, &settings).map(|l| {
            if l.revoked {
                println!("account `{name}`: tokens revoked at the provider and deleted");
            } else {
                println!(
                    "account `{name}`: tokens deleted (the provider has no revocation endpoint: they stay valid there until they expire)"
                );
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailtun: {e}");
            ExitCode::from(EXIT_AUTH)
        }
    }
}

/// One line for `oauth login` and `oauth status`: expiry, scope, refresh token, keyring.
fn print_oauth_status(name: &str, s: &mailtun::oauth::Status) {
    let expiry = if s.expires_in >= 0 {
        format!("valid for {} s more", s.expires_in)
    } else {
        format!("expired {} s ago", -s.expires_in)
    };
    let refresh = if s.has_refresh_token {
        "stored"
    } else {
        "none"
    };
    println!(
        "account `{name}`: signed in; access token {expiry}; scope `{}`; refresh token {refresh}; keyring: {}",
        s.scope, s.keyring
    );
}

/// Where the client secret comes from, for `oauth status` (never the secret).
fn print_client_secret_status(name: &str, c: mailtun::oauth::SecretStatus) {
    use mailtun::oauth::SecretStatus;
    match c {
        SecretStatus::None => {}
        SecretStatus::Command(c) => {
            println!("account `{name}`: client secret from the command `{c}`")
        }
        SecretStatus::Keyring {
            store,
            stored: true,
        } => println!("account `{name}`: client secret stored in the {store} keyring"),
        SecretStatus::Keyring {
            store,
            stored: false,
        } => println!(
            "account `{name}`: client secret not stored in the {store} keyring; run `mailtun oauth secret {name}`"
        ),
    }
}

/// `oauth secret ACCOUNT [--delete]`: stores (read from the terminal or stdin) or deletes
/// the client secret kept with `client_secret = { keyring = true }`.
fn oauth_secret(
    account: &config::Account,
    settings: &mailtun::oauth::OAuthSettings,
    delete: bool,
) -> Result<(), mailtun::credentials::CredentialError> {
    use mailtun::oauth;
    let name = account.name.as_str();
    if delete {
        return oauth::delete_client_secret(account, settings)
            .map(|()| println!("account `{name}`: client secret deleted from the keyring"));
    }
    read_new_secret(name, "OAuth client secret")
        .map_err(|detail| mailtun::credentials::CredentialError::OAuth {
            account: name.to_string(),
            step: "client secret",
            detail,
        })
        .and_then(|secret| oauth::set_client_secret(account, settings, &secret))
        .map(|()| println!("account `{name}`: client secret stored in the keyring"))
}
