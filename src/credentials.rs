//! Where secrets come from: the OS keyring (Secret Service or the kernel's keyutils), a
//! password command, or a prompt on the controlling terminal.
//!
//! Every call may block (a command, D-Bus, a person typing); the session runs them off the
//! async threads. Secrets come back as [`Secret`]; no error message holds one.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyring_core::{CredentialStore, Entry};

use crate::config::{Account, KeyringStore, PasswordSource};
use crate::secret::Secret;

/// The keyring service name under which passwords are stored (user: the account name).
pub const KEYRING_SERVICE: &str = "mailtun";
/// How long a password or token command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A secret that could not be obtained. Messages never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the {store} keyring is not available: {detail}; {hint}")]
    KeyringUnavailable {
        store: &'static str,
        detail: String,
        hint: &'static str,
    },
    #[error(
        "the {store} keyring holds no password for account `{account}`; store one with `mailtun password set {account}`"
    )]
    NoKeyringEntry {
        store: &'static str,
        account: String,
    },
    #[error("the {store} keyring failed: {detail}")]
    Keyring { store: &'static str, detail: String },
    #[error("the {what} command `{command}` failed: {detail}")]
    Command {
        what: &'static str,
        command: String,
        detail: String,
    },
    #[error("the {what} command `{command}` did not finish within {secs} s")]
    CommandTimeout {
        what: &'static str,
        command: String,
        secs: u64,
    },
    #[error(
        "no password source: set `password = {{ keyring = true }}` or `password = {{ command = \"...\" }}`, or run mailtun from a terminal to be asked"
    )]
    NoTerminal,
    #[error("no OAuth token source: add `[accounts.NAME.oauth]` or set `oauth_token_command`")]
    NoTokenCommand,
    #[error(
        "account `{account}` has not signed in with OAuth (no tokens in the {store} keyring); run `mailtun oauth login {account}`"
    )]
    OAuthNotSignedIn {
        account: String,
        store: &'static str,
    },
    #[error(
        "account `{account}`: the OAuth provider refused to refresh the token ({reason}); sign in again with `mailtun oauth login {account}`"
    )]
    OAuthGrantRefused { account: String, reason: String },
    #[error("account `{account}`: OAuth {step}: {detail}")]
    OAuth {
        account: String,
        step: &'static str,
        detail: String,
    },
}

pub(crate) fn store_name(store: KeyringStore) -> &'static str {
    match store {
        KeyringStore::SecretService => "Secret Service",
        KeyringStore::Keyutils => "kernel keyutils",
    }
}

pub(crate) fn open_store(store: KeyringStore) -> Result<Arc<CredentialStore>, CredentialError> {
    let unavailable = |detail: String| CredentialError::KeyringUnavailable {
        store: store_name(store),
        detail,
        hint: match store {
            KeyringStore::SecretService => {
                "start a desktop session (or `dbus-run-session` with gnome-keyring), or use `keyring_store = \"keyutils\"`"
            }
            KeyringStore::Keyutils => {
                "the process needs a session keyring (log in normally, or run under `keyctl session -`)"
            }
        },
    };
    match store {
        KeyringStore::SecretService => zbus_secret_service_keyring_store::Store::new()
            .map(|s| s as Arc<CredentialStore>)
            .map_err(|e| unavailable(e.to_string())),
        KeyringStore::Keyutils => linux_keyutils_keyring_store::Store::new()
            .map(|s| s as Arc<CredentialStore>)
            .map_err(|e| unavailable(e.to_string())),
    }
}

fn entry(store: KeyringStore, account: &str) -> Result<Entry, CredentialError> {
    let s = open_store(store)?;
    Entry::new_in_store(&s, KEYRING_SERVICE, account).map_err(|e| keyring_error(store, account, e))
}

fn keyring_error(store: KeyringStore, account: &str, e: keyring_core::Error) -> CredentialError {
    match e {
        keyring_core::Error::NoEntry => CredentialError::NoKeyringEntry {
            store: store_name(store),
            account: account.to_string(),
        },
        keyring_core::Error::NoStorageAccess(d) => CredentialError::KeyringUnavailable {
            store: store_name(store),
            detail: d.to_string(),
            hint: match store {
                KeyringStore::SecretService => {
                    "unlock the keyring, or use `keyring_store = \"keyutils\"`"
                }
                KeyringStore::Keyutils => {
                    "the process needs a session keyring (log in normally, or run under `keyctl session -`)"
                }
            },
        },
        other => CredentialError::Keyring {
            store: store_name(store),
            detail: other.to_string(),
        },
    }
}

/// The account's password, from its configured source.
pub fn password(account: &Account) -> Result<Secret<String>, CredentialError> {
    match &account.password {
        PasswordSource::Keyring(store) => entry(*store, &account.name)?
            .get_password()
            .map(Secret::new)
            .map_err(|e| keyring_error(*store, &account.name, e)),
        PasswordSource::Command(cmd) => first_line_of("password", cmd),
        PasswordSource::Prompt => {
            let prompt = format!(
                "mailtun: password for account `{}` ({}@{}): ",
                account.name, account.user, account.host
            );
            rpassword::prompt_password(prompt)
                .map(Secret::new)
                .map_err(|_| CredentialError::NoTerminal)
        }
    }
}

/// The account's OAuth 2.0 access token: the built-in tokens when the account has
/// `[oauth]` (refreshed when needed), else `oauth_token_command`.
pub fn oauth_token(account: &Account) -> Result<Secret<String>, CredentialError> {
    if let Some(settings) = &account.oauth {
        return crate::oauth::access_token(account, settings);
    }
    match &account.oauth_token_command {
        Some(cmd) => first_line_of("OAuth token", cmd),
        None => Err(CredentialError::NoTokenCommand),
    }
}

/// Stores `password` for `account` in `store`.
pub fn set_password(
    store: KeyringStore,
    account: &str,
    password: &Secret<String>,
) -> Result<(), CredentialError> {
    entry(store, account)?
        .set_password(password.expose())
        .map_err(|e| keyring_error(store, account, e))
}

/// Removes the stored password of `account` from `store`.
pub fn delete_password(store: KeyringStore, account: &str) -> Result<(), CredentialError> {
    entry(store, account)?
        .delete_credential()
        .map_err(|e| keyring_error(store, account, e))
}

/// Runs `sh -c command` with no stdin and returns the first line of its output. Nothing
/// secret goes into its argv or environment; its output never reaches a message.
pub(crate) fn first_line_of(
    what: &'static str,
    command: &str,
) -> Result<Secret<String>, CredentialError> {
    let fail = |detail: String| CredentialError::Command {
        what,
        command: command.to_string(),
        detail,
    };
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        Secret::new(out)
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(|e| fail(e.to_string()))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CredentialError::CommandTimeout {
                    what,
                    command: command.to_string(),
                    secs: COMMAND_TIMEOUT.as_secs(),
                });
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(fail(format!("it exited with {status}")));
    }
    let text =
        std::str::from_utf8(out.expose()).map_err(|_| fail("its output is not UTF-8".into()))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(fail("its first output line is empty".into()));
    }
    Ok(Secret::new(line.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_gives_its_first_line_only() {
        let s = first_line_of("password", "printf 'hunter2\\nsecond\\n'").unwrap();
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_failing_command_is_reported_without_its_output() {
        let e = first_line_of("password", "echo c2VjcmV0 | base64 -d; exit 3").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("exited with"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
    }

    #[test]
    fn an_empty_output_is_an_error() {
        assert!(first_line_of("password", "true").is_err());
    }
}
