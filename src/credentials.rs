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
use zeroize::Zeroizing;

use crate::config::{Account, KeyringStore, PasswordSource};
use crate::secret::Secret;

/// The keyring service name under which passwords are stored (user: the account name).
pub const KEYRING_SERVICE: &str = "mailtun";
/// The keyring service of `local_password = { keyring = true }` (user: the account name):
/// the password a local client gives `mailtun serve`, kept apart from the account's own.
pub const LOCAL_KEYRING_SERVICE: &str = "mailtun-local";

/// Which of an account's stored passwords: its own (sent to the server, in a strong
/// mechanism) or the local one its `mailtun serve` listener asks of local clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Password,
    LocalPassword,
}

impl Stored {
    fn service(self) -> &'static str {
        match self {
            Stored::Password => KEYRING_SERVICE,
            Stored::LocalPassword => LOCAL_KEYRING_SERVICE,
        }
    }

    /// How `mailtun password` names it, for messages.
    fn command(self) -> &'static str {
        match self {
            Stored::Password => "mailtun password set",
            Stored::LocalPassword => "mailtun password set --local",
        }
    }
}
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
        "the {store} keyring holds no {what} for account `{account}`; store one with `{command} {account}`"
    )]
    NoKeyringEntry {
        store: &'static str,
        account: String,
        what: &'static str,
        command: &'static str,
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

fn entry(store: KeyringStore, which: Stored, account: &str) -> Result<Entry, CredentialError> {
    let s = open_store(store)?;
    Entry::new_in_store(&s, which.service(), account)
        .map_err(|e| keyring_error(store, which, account, e))
}

fn keyring_error(
    store: KeyringStore,
    which: Stored,
    account: &str,
    e: keyring_core::Error,
) -> CredentialError {
    match e {
        keyring_core::Error::NoEntry => CredentialError::NoKeyringEntry {
            store: store_name(store),
            account: account.to_string(),
            what: match which {
                Stored::Password => "password",
                Stored::LocalPassword => "local password (`local_password`)",
            },
            command: which.command(),
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
        PasswordSource::Keyring(store) => stored(*store, Stored::Password, &account.name),
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

/// The password a local client must give the account's `mailtun serve` listener
/// (`local_password`), or `None` when the account asks for none.
pub fn local_password(account: &Account) -> Result<Option<Secret<String>>, CredentialError> {
    match &account.serve.local_password {
        None => Ok(None),
        Some(PasswordSource::Keyring(store)) => {
            stored(*store, Stored::LocalPassword, &account.name).map(Some)
        }
        Some(PasswordSource::Command(cmd)) => first_line_of("local password", cmd).map(Some),
        // The configuration offers no prompt for it: the listener has no terminal.
        Some(PasswordSource::Prompt) => Err(CredentialError::NoTerminal),
    }
}

fn stored(
    store: KeyringStore,
    which: Stored,
    account: &str,
) -> Result<Secret<String>, CredentialError> {
    entry(store, which, account)?
        .get_password()
        .map(Secret::new)
        .map_err(|e| keyring_error(store, which, account, e))
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

/// Stores `password` as `account`'s password `which` in `store`.
pub fn set_password(
    store: KeyringStore,
    which: Stored,
    account: &str,
    password: &Secret<String>,
) -> Result<(), CredentialError> {
    entry(store, which, account)?
        .set_password(password.expose())
        .map_err(|e| keyring_error(store, which, account, e))
}

/// Removes `account`'s stored password `which` from `store`.
pub fn delete_password(
    store: KeyringStore,
    which: Stored,
    account: &str,
) -> Result<(), CredentialError> {
    entry(store, which, account)?
        .delete_credential()
        .map_err(|e| keyring_error(store, which, account, e))
}

/// The most a password or token command may print: its first line must fit. The output
/// goes into a buffer of this size allocated up front, so no reallocation leaves a copy
/// of the secret behind.
const MAX_OUTPUT: usize = 64 * 1024;

/// The process groups of the password and token commands running now.
static RUNNING: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Kills the process group of every password or token command still running: called
/// by the binary before it exits, for a command abandoned at the account's timeout.
pub fn kill_running_commands() {
    let groups = RUNNING.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups {
        kill_group(pgid);
    }
}

/// SIGKILL to every process of group `pgid` (a command's shell and what it started).
fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) takes plain values; a negative pid names a process group, and
        // `pgid` is one that mailtun created for the command (never 0, 1 or our own).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Whether the child `pid` has exited, without reaping it: until it is reaped its pid,
/// which is also its process group's id, cannot be given to another process.
fn has_exited(pid: i32) -> bool {
    // SAFETY: waitid fills the zeroed siginfo_t it is given; WNOWAIT leaves the child
    // to be reaped by `Child::wait`.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // An error (no such child) counts as exited, so the caller does not wait forever.
        r != 0 || info.si_pid() != 0
    }
}

/// Keeps a command's process group in [`RUNNING`] while it runs.
struct Registered(i32);

impl Registered {
    fn new(pgid: i32) -> Self {
        if let Ok(mut g) = RUNNING.lock() {
            g.push(pgid);
        }
        Registered(pgid)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut g) = RUNNING.lock() {
            g.retain(|&p| p != self.0);
        }
    }
}

/// Runs `sh -c command` with no stdin and returns the first line of its output. Nothing
/// secret goes into its argv or environment; its output never reaches a message.
pub(crate) fn first_line_of(
    what: &'static str,
    command: &str,
) -> Result<Secret<String>, CredentialError> {
    first_line_within(what, command, COMMAND_TIMEOUT)
}

/// [`first_line_of`] with a time limit. The command runs in a process group of its own;
/// when it does not finish in time, the whole group is killed (a shell's background
/// children too), and so is whatever the command left running in its group when it is
/// done, which would otherwise hold its output open.
fn first_line_within(
    what: &'static str,
    command: &str,
    timeout: Duration,
) -> Result<Secret<String>, CredentialError> {
    use std::os::unix::process::CommandExt;
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
        .process_group(0)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let pgid = child.id() as i32;
    let registered = Registered::new(pgid);
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || read_bounded(&mut stdout));
    let deadline = Instant::now() + timeout;
    loop {
        if has_exited(pgid) {
            break;
        }
        if Instant::now() >= deadline {
            kill_group(pgid);
            drop(registered);
            let _ = child.wait();
            return Err(CredentialError::CommandTimeout {
                what,
                command: command.to_string(),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The shell is done but not reaped yet, so its group id is still ours: what it left
    // in its group goes too.
    kill_group(pgid);
    drop(registered);
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    let (out, len) = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(fail(format!("it exited with {status}")));
    }
    let out = &out[..len];
    let first = out.split(|&b| b == b'\n').next().unwrap_or(&[]);
    if first.len() == out.len() && len == MAX_OUTPUT {
        return Err(fail(format!(
            "its first output line is longer than {MAX_OUTPUT} bytes"
        )));
    }
    let line = std::str::from_utf8(first).map_err(|_| fail("its output is not UTF-8".into()))?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(fail("its first output line is empty".into()));
    }
    // `to_string` allocates the exact length: the one copy lives in the Secret.
    Ok(Secret::new(line.to_string()))
}

/// Reads `r` to its end into a zeroizing buffer of [`MAX_OUTPUT`] bytes allocated up
/// front (what does not fit is read and wiped, so the command never blocks on a full
/// pipe); returns the buffer and how much of it was filled.
fn read_bounded(r: &mut impl Read) -> (Zeroizing<Vec<u8>>, usize) {
    let mut out = Zeroizing::new(vec![0u8; MAX_OUTPUT]);
    let mut len = 0;
    let mut scratch = Zeroizing::new([0u8; 4096]);
    loop {
        let n = if len < MAX_OUTPUT {
            r.read(&mut out[len..])
        } else {
            r.read(&mut scratch[..])
        };
        match n {
            Ok(0) => break,
            Ok(n) if len < MAX_OUTPUT => len += n,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (out, len)
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

    /// Whether process `pid` still runs (a zombie does not: it is only waiting to be
    /// reaped by whoever inherited it).
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let state = s.rsplit_once(") ")?.1.chars().next()?;
                Some(state != 'Z' && state != 'X')
            })
            .unwrap_or(false)
    }

    /// Whether process `pid` is gone: a SIGKILL takes effect when the target next runs,
    /// so this gives it up to 5 s (a bound, not a timing).
    fn gone(pid: &str) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    #[test]
    fn a_command_that_times_out_is_killed_with_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let command = format!(
            "echo $$ > {p}; sleep 1000 & echo $! >> {p}; sleep 1000",
            p = pids.display()
        );
        let e = first_line_within("password", &command, Duration::from_millis(500)).unwrap_err();
        assert!(matches!(e, CredentialError::CommandTimeout { .. }), "{e}");
        let pids = std::fs::read_to_string(&pids).unwrap();
        let left: Vec<&str> = pids.lines().filter(|p| !gone(p)).collect();
        for p in &left {
            // Clean up after a failure: these are this test's own sleeps.
            let _ = Command::new("kill").args(["-9", p]).status();
        }
        assert!(left.is_empty(), "still running: {left:?} of {pids:?}");
        assert!(RUNNING.lock().unwrap().is_empty());
    }

    #[test]
    fn what_a_finished_command_leaves_in_its_group_does_not_hold_the_output_open() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("pid");
        let command = format!("sleep 1000 & echo $! > {}; echo hunter2", pid.display());
        let s = first_line_within("password", &command, Duration::from_secs(20)).unwrap();
        assert_eq!(s.expose(), "hunter2");
        let pid = std::fs::read_to_string(&pid).unwrap();
        assert!(gone(pid.trim()), "the background sleep still runs");
    }

    #[test]
    fn a_first_line_longer_than_the_buffer_is_refused_and_a_long_rest_is_ignored() {
        let long = first_line_of("password", "head -c 70000 /dev/zero | tr '\\0' a").unwrap_err();
        assert!(long.to_string().contains("longer than"), "{long}");
        let s = first_line_of("password", "echo pw; head -c 200000 /dev/zero").unwrap();
        assert_eq!(s.expose(), "pw");
    }

    #[test]
    fn the_output_buffer_is_allocated_once_at_its_final_size() {
        // The command's output (a secret) lands in one zeroizing buffer that never grows,
        // so no reallocation leaves a copy behind.
        let mut input: &[u8] = &[b'x'; 3 * 4096 + 17];
        let (out, len) = read_bounded(&mut input);
        assert_eq!(len, 3 * 4096 + 17);
        assert_eq!(out.len(), MAX_OUTPUT);
        assert_eq!(out.capacity(), MAX_OUTPUT);
    }

    #[test]
    fn an_empty_output_is_an_error() {
        assert!(first_line_of("password", "true").is_err());
    }
}
