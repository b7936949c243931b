//! Signals and secrets (issue 6): SIGTERM and SIGHUP end a running tunnel cleanly, a
//! client that closes its end mid-FETCH (SIGPIPE) is not a crash, core dumps are off,
//! and a configuration that names secrets and is readable by others draws a warning.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::EXIT_CONFIG;
use crate::fake_server::{Act, Cert, FakeServer, HOST, pki, send};
use crate::harness::{harness, mailtun_bin, mailtun_command};

/// Starts `mailtun -v --config CONFIG tunnel test` with piped stdin, stdout and stderr.
fn spawn(config: &Path) -> Child {
    mailtun_command(&["-v", "--config", config.to_str().unwrap(), "tunnel", "test"])
        .spawn()
        .expect("spawn mailtun")
}

/// The tunnel's stdout, and the first line read from it.
fn first_line(child: &mut Child) -> (BufReader<ChildStdout>, String) {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (out, line)
}

/// A config in `dir` for a `protocol` account on the fake server's SSL port at `port`,
/// logging in with PLAIN and a dummy password.
fn plain_login_account(dir: &Path, protocol: &str, port: u16) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.test]\nprotocol = \"{protocol}\"\nhost = \"{HOST}\"\nconnect = \"127.0.0.1\"\ntls_port = {port}\ntls = [\"implicit\"]\nca_file = \"{}\"\nuser = \"alice\"\nauth = [\"plain\"]\nmin_protection = \"tls\"\npassword = {{ command = \"echo not-a-real-password\" }}\ntimeout_secs = 5\n",
            pki().ca_file.display()
        ),
    )
    .unwrap();
    config
}

/// Sends `sig` (named `name`) to the tunnel while its client is still connected, and
/// checks that it closed the session cleanly: exit 0, the signal named on stderr, no
/// panic, and a TLS close_notify seen by `server`. `case` starts each failure message.
fn assert_signal_closes_cleanly(
    child: &mut Child,
    server: FakeServer,
    sig: libc::c_int,
    name: &str,
    case: &str,
) {
    signal(child, sig);
    let status = wait_within(child, Duration::from_secs(5));
    let stderr = stderr_of(child);
    let rec = server.finish();
    assert_eq!(status.code(), Some(0), "{case}: {status:?}; {stderr}");
    assert!(
        stderr.contains(&format!("{name}: closing the session")),
        "{case}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{case}: {stderr}");
    assert!(
        rec.closed_cleanly,
        "{case}: the server saw no TLS close_notify"
    );
}

fn wait_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("mailtun did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

#[test]
fn sigterm_and_sighup_close_the_session_with_a_tls_close_notify_and_exit_0() {
    for (name, sig) in [("SIGTERM", libc::SIGTERM), ("SIGHUP", libc::SIGHUP)] {
        let server = FakeServer::start(vec![
            Act::Tls(Cert::Good),
            send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake\r\n"),
            Act::ReadLine,
            send("{tag} OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n"),
            Act::ReadLine,
            send("{tag} OK NOOP done\r\n"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn(&plain_login_account(dir.path(), "imap", server.port));
        let (mut out, mut line) = first_line(&mut child);
        assert!(line.starts_with("* PREAUTH"), "{name}: {line:?}");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"a NOOP\r\n").unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "a OK NOOP done\r\n", "{name}");
        // The tunnel is idle in the relay, the client still connected: end it.
        assert_signal_closes_cleanly(&mut child, server, sig, name, name);
        drop(stdin);
    }
}

#[test]
fn sigterm_while_the_pop3_and_smtp_local_side_waits_closes_the_session_cleanly() {
    // POP3 and SMTP answer the client's login locally before the relay: a signal there
    // ends the session the same way.
    let cases: [(&str, Vec<Act>, &str); 2] = [
        (
            "pop3",
            vec![
                Act::Tls(Cert::Good),
                send("+OK fake POP3\r\n"),
                Act::ReadLine,
                send("+OK\r\nSASL PLAIN\r\n.\r\n"),
                Act::ReadLine,
                send("+OK Logged in.\r\n"),
                Act::ReadLine,
                send("+OK\r\nUIDL\r\n.\r\n"),
            ],
            "+OK",
        ),
        (
            "smtp",
            vec![
                Act::Tls(Cert::Good),
                send("220 fake ESMTP\r\n"),
                Act::ReadLine,
                send("250-mail.example.test\r\n250 AUTH PLAIN\r\n"),
                Act::ReadLine,
                send("235 2.7.0 ok\r\n"),
                Act::ReadLine,
                send("250-mail.example.test\r\n250 PIPELINING\r\n"),
            ],
            "220",
        ),
    ];
    for (protocol, script, greeting) in cases {
        let server = FakeServer::start(script);
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn(&plain_login_account(dir.path(), protocol, server.port));
        let (_out, line) = first_line(&mut child);
        assert!(line.starts_with(greeting), "{protocol}: {line:?}");
        let stdin = child.stdin.take().unwrap();
        assert_signal_closes_cleanly(&mut child, server, libc::SIGTERM, "SIGTERM", protocol);
        drop(stdin);
    }
}

#[test]
fn sigterm_ends_a_tunnel_to_dovecot_and_dovecot_sees_the_close() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = h.config(dir.path(), "tls = [\"implicit\"]", "");
    let mut child = spawn(&config);
    let (mut out, mut line) = first_line(&mut child);
    assert!(line.starts_with("* PREAUTH"), "{line:?}");
    // A command whose size marks this session in Dovecot's log (in=BYTES).
    let tag = format!("sig{:013}", std::process::id());
    let command = format!("{tag} NOOP\r\n");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(command.as_bytes()).unwrap();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "EOF before the NOOP reply"
        );
        if line.starts_with(&tag) {
            break;
        }
    }
    signal(&child, libc::SIGTERM);
    let status = wait_within(&mut child, Duration::from_secs(5));
    let stderr = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "{status:?}; {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Dovecot logs the end of alice's session: a close by the client, not a timeout.
    let log = std::path::Path::new(h.get("LOG_DIR")).join("dovecot.log");
    let marker = format!("in={} ", command.len());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("imap(alice)") && l.contains("Disconnected") && l.contains(&marker))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no disconnect with {marker} in Dovecot's log: {}",
            text.lines()
                .rfind(|l| l.contains("imap(alice)"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
}

#[test]
fn a_client_that_closes_stdout_mid_fetch_ends_the_tunnel_without_a_panic() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = h.config(dir.path(), "tls = [\"implicit\"]", "");
    let mut child = spawn(&config);
    let mut out = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            format!(
                "a SELECT INBOX\r\nb UID FETCH {} BODY[]\r\n",
                h.get("BIG_MESSAGE_UID")
            )
            .as_bytes(),
        )
        .unwrap();
    // Read a little of the 20 MB message, then go away.
    let mut got = vec![0u8; 256 * 1024];
    out.read_exact(&mut got).unwrap();
    drop(out);
    let status = wait_within(&mut child, Duration::from_secs(10));
    let stderr = stderr_of(&mut child);
    assert!(
        status.code().is_some(),
        "killed by a signal (SIGPIPE?): {status:?}; {stderr}"
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(stdin);
}

#[test]
fn core_dumps_are_off_while_mailtun_runs() {
    // A server that never answers keeps mailtun waiting, holding its password.
    let server = FakeServer::silent();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.test]\nhost = \"{HOST}\"\nconnect = \"127.0.0.1\"\nplain_port = {}\ntls = [\"starttls\"]\nuser = \"alice\"\nauth = [\"scram-sha-256\"]\npassword = {{ command = \"echo x\" }}\ntimeout_secs = 3\n",
            server.port
        ),
    )
    .unwrap();
    let mut child = spawn(&config);
    std::thread::sleep(Duration::from_millis(300));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    server.finish();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit listed");
    let values: Vec<&str> = core.split_whitespace().skip(4).take(2).collect();
    assert_eq!(values, ["0", "0"], "{core}");
}

#[test]
fn a_config_naming_secrets_readable_by_others_draws_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    for (what, line) in [
        ("password command", "password = { command = \"echo x\" }"),
        ("OAuth token command", "oauth_token_command = \"echo t\""),
        (
            "client key",
            "client_cert = \"/nonexistent/c.pem\"\nclient_key = \"/nonexistent/k.pem\"",
        ),
    ] {
        std::fs::write(
            &config,
            format!(
                "[accounts.test]\nhost = \"{HOST}\"\nconnect = \"127.0.0.1\"\nplain_port = 1\ntls = [\"starttls\"]\nuser = \"alice\"\n{line}\ntimeout_secs = 2\n"
            ),
        )
        .unwrap();
        for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false)] {
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
            let mut child = spawn(&config);
            drop(child.stdin.take());
            let status = wait_within(&mut child, Duration::from_secs(10));
            let stderr = stderr_of(&mut child);
            assert_ne!(status.code(), Some(0), "{what} {mode:o}: {stderr}");
            assert_eq!(
                stderr.contains("is readable by others"),
                warned,
                "{what} {mode:o}: {stderr}"
            );
            if warned {
                assert!(stderr.contains(what), "{what} {mode:o}: {stderr}");
                assert!(stderr.contains("chmod 600"), "{stderr}");
            }
        }
    }
    // Without anything secret in it, a readable file is fine.
    std::fs::write(
        &config,
        format!("[accounts.test]\nhost = \"{HOST}\"\nplain_port = 1\ntls = [\"starttls\"]\ntimeout_secs = 2\n"),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = spawn(&config);
    drop(child.stdin.take());
    wait_within(&mut child, Duration::from_secs(10));
    assert!(!stderr_of(&mut child).contains("readable by others"));
}

#[test]
fn a_closed_stderr_is_not_a_crash() {
    // A client that closed the read end of mailtun's stderr: the messages are lost, the
    // exit code is still the documented one (3: configuration), not a panic's 101.
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two descriptors, which are owned below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    use std::os::fd::FromRawFd;
    // SAFETY: both descriptors were just created by pipe(2) and are owned once each.
    let (read, write) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read);
    let out = Command::new(mailtun_bin())
        .args(["--config", "/nonexistent/mailtun.toml", "tunnel", "test"])
        .env_remove("MAILTUN_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(write))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{:?}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("* BYE [UNAVAILABLE]"));
}
