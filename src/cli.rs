//! The command line as the user types it (clap types); `main` resolves it.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

/// Reach IMAP servers with verified TLS and Kerberos, and hand the authenticated
/// session to a mail client as a tunnel.
#[derive(Debug, Parser)]
#[command(name = "mailtun", version, about, after_help = exit_codes_help())]
pub struct Cli {
    /// Configuration file (default: $MAILTUN_CONFIG, else $XDG_CONFIG_HOME/mailtun/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More detail on stderr: -v for each step, -vv for the protocol exchange (secrets
    /// replaced by markers).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Write diagnostics to FILE instead of stderr.
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Authenticate ACCOUNT, then speak pre-authenticated IMAP on stdin/stdout
    /// (mutt `set tunnel`, mbsync `Tunnel`, offlineimap `preauthtunnel`).
    Tunnel {
        /// The account's name in the configuration file.
        account: String,
    },
    /// Listen on each account's `listen` address (or the named accounts') and give every
    /// local client that connects its own authenticated session, as `tunnel` does, until
    /// SIGTERM or SIGINT. Only the user running it gets in.
    Serve {
        /// Accounts to serve (default: every account with `listen`).
        accounts: Vec<String>,
    },
    /// Store or delete an account's password in its keyring (`password = { keyring = true }`).
    Password {
        #[command(subcommand)]
        action: PasswordAction,
    },
    /// Sign in with OAuth 2.0 (`[accounts.X.oauth]`), show or end that sign-in, store the
    /// client secret.
    Oauth {
        #[command(subcommand)]
        action: OAuthAction,
    },
    /// List the accounts with their effective settings (never a secret).
    Accounts {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print only the names, one a line (for shell completion).
        #[arg(long, hide = true, conflicts_with = "json")]
        names: bool,
    },
    /// Print the lines to paste into CLIENT's configuration for ACCOUNT.
    Snippet {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(mailtun::snippet::Client::NAMES))]
        client: String,
        /// The account's name in the configuration file.
        account: String,
    },
    /// alpine's `ssh-path` form `mailtun HOST -l USER exec /etc/rimapd`, once recognised:
    /// the tunnel of the IMAP account with that host and user.
    #[command(hide = true)]
    Rimap { host: String, user: String },
    /// Show what HOST offers on its plain and TLS ports (certificate, mechanisms), what
    /// mailtun would choose and why, and a configuration block. Never authenticates.
    Probe {
        /// The server's name, as checked in its certificate.
        host: String,
        #[arg(long, value_enum, default_value_t = ProtocolArg::Imap)]
        protocol: ProtocolArg,
        /// Dial this address instead of HOST.
        #[arg(long, value_name = "ADDR")]
        connect: Option<String>,
        /// Also trust this CA (PEM), as `ca_file` does.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// The STARTTLS port (default: 143, 110 or 587).
        #[arg(long, value_name = "N")]
        plain_port: Option<u16>,
        /// The implicit-TLS port (default: 993, 995 or 465).
        #[arg(long, value_name = "N")]
        tls_port: Option<u16>,
        /// Seconds allowed for each port.
        #[arg(long, value_name = "SECS", default_value_t = 15)]
        timeout: u64,
        /// One JSON document on stdout instead of tables (keys documented in the README).
        #[arg(long)]
        json: bool,
    },
    /// Connect and authenticate ACCOUNT as `tunnel` would, log out, and show each step
    /// with its time and round trips.
    Check {
        /// The account's name in the configuration file.
        account: String,
        /// One JSON document on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the completion script for SHELL, which also completes account names
    /// (bash: /usr/share/bash-completion/completions/mailtun, or `source <(mailtun
    /// completions bash)` in ~/.bashrc).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page mailtun(1) in roff (`mailtun man | man -l -`).
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    Imap,
    Pop3,
    Smtp,
}

#[derive(Debug, Subcommand)]
pub enum PasswordAction {
    /// Store the password: asked on the terminal, or read from stdin when it is not one.
    Set {
        /// The account's name in the configuration file.
        account: String,
        /// The local password of `mailtun serve` (`local_password = { keyring = true }`)
        /// instead of the account's own.
        #[arg(long)]
        local: bool,
    },
    /// Remove the stored password.
    Delete {
        /// The account's name in the configuration file.
        account: String,
        /// The local password of `mailtun serve` instead of the account's own.
        #[arg(long)]
        local: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OAuthAction {
    /// Sign in once; the tokens go to the account's keyring.
    Login {
        /// The account's name in the configuration file.
        account: String,
        /// RFC 8628 device flow: a URL and a code to enter in any browser.
        #[arg(long, conflicts_with = "browser")]
        device: bool,
        /// Authorization code with PKCE, redirected to a one-shot listener on 127.0.0.1.
        #[arg(long)]
        browser: bool,
    },
    /// When the access token expires, its scopes, which keyring holds it, and whether the
    /// client secret is stored (never a token or a secret).
    Status {
        /// The account's name in the configuration file.
        account: String,
    },
    /// Revoke the tokens at the provider (RFC 7009), then delete them.
    Logout {
        /// The account's name in the configuration file.
        account: String,
    },
    /// Store the OAuth client secret in the account's keyring (`client_secret = { keyring =
    /// true }`): asked on the terminal, or read from stdin when it is not one.
    Secret {
        /// The account's name in the configuration file.
        account: String,
        /// Remove the stored client secret instead.
        #[arg(long)]
        delete: bool,
    },
}

/// The exit-code table as `--help` shows it, from [`mailtun::error::exit_codes`].
pub fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes:\n");
    for (code, meaning) in mailtun::error::exit_codes() {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text.push_str(mailtun::error::EXIT_SIGNAL_NOTE);
    text
}
