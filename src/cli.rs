//! The command line as the user types it (clap types); `main` resolves it.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

/// Reach IMAP servers with verified TLS and Kerberos, and hand the authenticated
/// session to a mail client as a tunnel.
#[derive(Debug, Parser)]
#[command(name = "mailtun", version, about, after_help = EXIT_CODES)]
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
    /// Store or delete an account's password in its keyring (`password = { keyring = true }`).
    Password {
        #[command(subcommand)]
        action: PasswordAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum PasswordAction {
    /// Store the password: asked on the terminal, or read from stdin when it is not one.
    Set { account: String },
    /// Remove the stored password.
    Delete { account: String },
}

pub const EXIT_CODES: &str = "\
Exit codes:
  0  the session ended normally
  2  usage error
  3  configuration error
  4  connection or TLS failure (unreachable, certificate not verified)
  5  policy refusal (no TLS or no acceptable mechanism where the account requires one)
  6  authentication failure (no Kerberos ticket, server refused)
  7  the server broke the protocol (e.g. bytes injected after STARTTLS)
SIGTERM or SIGHUP while the tunnel runs closes the session cleanly (exit 0).";
