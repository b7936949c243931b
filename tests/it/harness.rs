//! The real servers of the test realm, and a small helper that runs the mailtun binary.
//!
//! `scripts/test` starts the harness and exports `MAILTUN_HARNESS_ENV`; when that is not
//! set, the first test starts one itself in `/tmp/mailtun-it` on 127.0.0.2.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The facts of the running harness (`STATE_DIR/env`).
pub struct Harness {
    vars: HashMap<String, String>,
}

impl Harness {
    pub fn get(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("harness env has no {key}"))
    }

    /// The value of `key`, when the harness has it (keys of optional parts such as the
    /// other realms of `--realms`).
    pub fn try_get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    pub fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(self.get(key))
    }

    /// A config file for one IMAP account named `test`, with `extra` TOML lines added to
    /// the account table and `gssapi` lines to its gssapi table.
    pub fn config(&self, dir: &Path, extra: &str, gssapi: &str) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, self.account_tables("test", extra, gssapi)).unwrap();
        path
    }

    /// The TOML of one account `name` on the harness's server as alice, with her ticket
    /// cache: `extra` lines in the account table, `gssapi` lines in its gssapi table.
    pub fn account_tables(&self, name: &str, extra: &str, gssapi: &str) -> String {
        format!(
            "[accounts.{name}]\nhost = \"{host}\"\nconnect = \"{addr}\"\nca_file = \"{ca}\"\nuser = \"alice\"\ntimeout_secs = 10\n{extra}\n[accounts.{name}.gssapi]\nccache = \"{cc}\"\n{gssapi}\n",
            host = self.get("MAIL_HOST"),
            addr = self.get("MAIL_ADDR"),
            ca = self.get("CA_FILE"),
            cc = self.get("ALICE_CCACHE"),
        )
    }

    /// Writes alice's password to `dir/pw` and returns the account line that reads it
    /// (`password = { command = "cat DIR/pw" }`).
    pub fn password_command(&self, dir: &Path) -> String {
        let file = dir.join("pw");
        std::fs::write(&file, format!("{}\n", self.get("PASSWORD"))).unwrap();
        format!("password = {{ command = \"cat {}\" }}", file.display())
    }
}

/// Replaces `from` (which must occur) by `to` in the file at `path`: a change to one
/// setting of a config file written by a helper.
pub fn replace_in_file(path: &Path, from: &str, to: &str) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        text.contains(from),
        "{} has no {from:?}: {text}",
        path.display()
    );
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// Fails unless `haystack` contains `needle`, naming `what` and showing all of
/// `haystack` (a client's transcript, a log).
#[track_caller]
pub fn assert_contains(haystack: &str, needle: &str, what: &str) {
    assert!(
        haystack.contains(needle),
        "{what}: no {needle:?} in:\n{haystack}"
    );
}

/// Fails if `haystack` contains `needle` (a secret in a log, a refused capability).
#[track_caller]
pub fn assert_lacks(haystack: &str, needle: &str, what: &str) {
    assert!(
        !haystack.contains(needle),
        "{what}: {needle:?} should not be in:\n{haystack}"
    );
}

/// Fails unless the client `what` exited 0, showing what it wrote to stdout and stderr.
#[track_caller]
pub fn assert_success(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits up to 10 s for a message in the harness's sink (`SINK_DIR`, where the SMTP relay
/// writes each message it accepts) of which `found` holds; fails with `what` otherwise.
pub fn wait_for_sink_message(what: &str, found: impl Fn(&str) -> bool) {
    let sink = harness().path("SINK_DIR");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let any = std::fs::read_dir(&sink)
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
            .any(|m| found(&String::from_utf8_lossy(&m)));
        if any {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not reach the sink"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The harness, started on first use if the test runner did not start one.
pub fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let env_file = match std::env::var_os("MAILTUN_HARNESS_ENV") {
            Some(p) => PathBuf::from(p),
            None => {
                let state = PathBuf::from("/tmp/mailtun-it");
                let status = Command::new(repo_root().join("scripts/harness"))
                    .args(["up", state.to_str().unwrap(), "--addr", "127.0.0.2"])
                    .stdout(Stdio::null())
                    .status()
                    .expect(
                        "run scripts/harness (are the packages of scripts/install-deps installed?)",
                    );
                assert!(status.success(), "scripts/harness up failed");
                state.join("env")
            }
        };
        let text = std::fs::read_to_string(&env_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", env_file.display()));
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Harness { vars }
    })
}

/// What a run of the binary produced.
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub code: Option<i32>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn first_line(&self) -> String {
        self.stdout_text()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

/// The mailtun binary under test.
pub fn mailtun_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailtun")
}

/// `mailtun ARGS` with the harness's Kerberos configuration, a clean environment for
/// Kerberos (no ambient ticket cache) and piped stdin, stdout and stderr.
pub fn mailtun_command(args: &[&str]) -> Command {
    let h = harness();
    let mut cmd = Command::new(mailtun_bin());
    cmd.args(args)
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .env("KRB5CCNAME", "FILE:/nonexistent/ambient-ccache")
        .env_remove("MAILTUN_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `mailtun ARGS` with `stdin` (see [`mailtun_command`]).
pub fn run_mailtun(args: &[&str], stdin: &[u8]) -> Output {
    run_command(mailtun_command(args), stdin)
}

/// Runs `mailtun FLAGS --config CONFIG tunnel test` with `stdin` (see [`run_mailtun`]).
pub fn run_tunnel(config: impl AsRef<Path>, flags: &[&str], stdin: &[u8]) -> Output {
    let config = config.as_ref().to_str().unwrap();
    let args: Vec<&str> = flags
        .iter()
        .copied()
        .chain(["--config", config, "tunnel", "test"])
        .collect();
    run_mailtun(&args, stdin)
}

/// Runs `command` (made by [`mailtun_command`], maybe changed) with `stdin`, and
/// collects what it wrote and its exit code.
pub fn run_command(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command.spawn().expect("spawn mailtun");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().expect("wait for mailtun");
    writer.join().unwrap();
    Output {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

/// The bytes of the first IMAP literal in `data` that follows `marker`.
pub fn literal_after<'a>(data: &'a [u8], marker: &[u8]) -> Option<&'a [u8]> {
    let at = data.windows(marker.len()).position(|w| w == marker)? + marker.len();
    let open = at + data[at..].iter().position(|&b| b == b'{')?;
    let close = open + data[open..].iter().position(|&b| b == b'}')?;
    let size: usize = std::str::from_utf8(&data[open + 1..close])
        .ok()?
        .parse()
        .ok()?;
    let start = close + 3; // "}\r\n"
    data.get(start..start + size)
}

/// Runs `mailtun ARGS` as a client that waits for replies: each step sends its bytes,
/// then waits until stdout holds its marker, as mutt or mbsync do before they log out.
///
/// Pipelining LOGOUT (or QUIT) behind a 20 MB FETCH is what no real client does, and
/// Dovecot 2.3 then sometimes drops the tail of its output when it closes: observed with
/// `openssl s_client` too (3 runs in 40 under load lost the last ~110 bytes), so tests of
/// large transfers wait for the reply before logging out.
pub fn run_mailtun_steps(args: &[&str], steps: &[(&[u8], &[u8])]) -> Output {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let mut child = mailtun_command(args).spawn().expect("spawn mailtun");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let mut out_pipe = child.stdout.take().unwrap();
    let sink = stdout.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = out_pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut err_pipe = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut input = child.stdin.take().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Where the search for the next marker starts. A reply ends the output until the next
    // command goes out, so only the last few KiB need a look.
    let mut scanned = 0;
    'steps: for (send, marker) in steps {
        if input.write_all(send).is_err() {
            break;
        }
        loop {
            {
                let out = stdout.lock().unwrap();
                let from = scanned.max(out.len().saturating_sub(4096)).min(out.len());
                if let Some(at) = out[from..].windows(marker.len()).position(|w| w == *marker) {
                    scanned = from + at + marker.len();
                    break;
                }
            }
            if std::time::Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                break 'steps;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    drop(input);
    let status = child.wait().expect("wait for mailtun");
    reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let stdout = std::mem::take(&mut *stdout.lock().unwrap());
    Output {
        stdout,
        stderr,
        code: status.code(),
    }
}
