//! `mailtun serve` (issue 14): real clients (curl, Python's imaplib) against the local
//! listener, no tunnel command; only the listener's owner gets in; many sessions at once;
//! SIGTERM drains.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::harness::{
    assert_contains, assert_lacks, assert_success, harness, mailtun_command, wait_for_sink_message,
};

/// A running `mailtun serve`, its ready lines read from stderr.
struct Serve {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Each ready line after `mailtun: serving `, in order.
    addrs: Vec<String>,
}

impl Serve {
    /// Starts `mailtun --config CONFIG serve -v ARGS` and waits for `listeners` ready lines.
    fn start(config: &Path, args: &[&str], listeners: usize) -> Serve {
        let mut cmd = mailtun_command(&["--config", config.to_str().unwrap(), "serve", "-v"]);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let all = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("mailtun: serving ") {
                    let _ = tx.send(rest.to_string());
                }
                let mut s = all.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut addrs = Vec::new();
        for _ in 0..listeners {
            match rx.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok(a) => addrs.push(a),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("no ready line; stderr: {}", stderr.lock().unwrap());
                }
            }
        }
        Serve {
            child,
            stderr,
            reader: Some(reader),
            addrs,
        }
    }

    fn port(&self, i: usize) -> u16 {
        self.addrs[i].rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The port of account `name`'s listener.
    fn port_of(&self, name: &str) -> u16 {
        let i = self
            .addrs
            .iter()
            .position(|a| a.starts_with(&format!("{name} (")))
            .unwrap_or_else(|| panic!("no listener for {name}: {:?}", self.addrs));
        self.port(i)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then the exit code and all of stderr.
    /// Stops it (SIGTERM), expects exit 0 and `line` in its log; returns the log.
    fn stop_logging(self, line: &str) -> String {
        let (code, stderr) = self.stop();
        assert_eq!(code, Some(0), "{stderr}");
        assert_contains(&stderr, line, "serve's log");
        stderr
    }

    fn stop(mut self) -> (Option<i32>, String) {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status.code(), self.stderr())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The harness account `test` served on an ephemeral loopback port.
fn served_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    harness().config(dir, &format!("listen = \"127.0.0.1:0\"\n{extra}"), "")
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "120"])
        .args(args)
        .output()
        .expect("curl (scripts/install-deps installs it)")
}

fn big_message() -> Vec<u8> {
    let m = std::fs::read(harness().path("BIG_MESSAGE")).unwrap();
    assert!(m.len() > 20_000_000, "the big message is {} bytes", m.len());
    m
}

fn curl_fetch_big(port: u16, out: &Path) -> Output {
    let uid = harness().get("BIG_MESSAGE_UID");
    curl(&[
        &format!("imap://127.0.0.1:{port}/INBOX;UID={uid}"),
        "-u",
        "alice:anything",
        "-o",
        out.to_str().unwrap(),
    ])
}

#[test]
fn curl_imap_fetches_the_20mb_message_byte_identical_through_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&served_config(dir.path(), ""), &[], 1);
    let out_file = dir.path().join("big.eml");
    let out = curl_fetch_big(serve.port(0), &out_file);
    assert_success(&out, "curl");
    assert!(
        std::fs::read(&out_file).unwrap() == big_message(),
        "the fetched message differs from the stored one"
    );
    let (code, stderr) = serve.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.starts_with("mailtun: serving test (imap) on 127.0.0.1:"),
        "{stderr}"
    );
    assert_contains(&stderr, "connection from 127.0.0.1:", "serve's log");
}

#[test]
fn the_local_login_needs_the_accounts_user_and_then_shows_the_servers_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&served_config(dir.path(), ""), &[], 1);
    let port = serve.port(0);
    let out = curl(&["-v", &format!("imap://127.0.0.1:{port}/"), "-u", "bob:x"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_contains(
        &text,
        "< * OK [CAPABILITY IMAP4rev1 AUTH=PLAIN",
        "curl's greeting",
    );
    assert_contains(
        &text,
        "NO [AUTHENTICATIONFAILED] mailtun: the user must be `alice`",
        "curl as bob",
    );
    // Python's imaplib, with LOGIN: the tagged OK carries the server's capabilities.
    let script = format!(
        "import imaplib\nm = imaplib.IMAP4('127.0.0.1', {port})\nt, d = m.login('alice', 'x')\nprint(t, d[0].decode())\nt, d = m.select('INBOX')\nprint('select', t, d[0].decode())\nm.logout()\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_success(&out, "imaplib");
    assert!(text.starts_with("OK [CAPABILITY IMAP4rev1 "), "{text}");
    let what = "imaplib's login (the server's capabilities)";
    assert_contains(&text, " IDLE ", what);
    assert_lacks(&text, "AUTH=", what);
    assert_contains(
        &text,
        "authenticated to mail.example.test with GSSAPI",
        what,
    );
    assert_contains(&text, "select OK", "imaplib's select");
    let (code, stderr) = serve.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn local_password_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("local-pw");
    std::fs::write(&pw, "local-secret\n").unwrap();
    let extra = format!("local_password = {{ command = \"cat {}\" }}", pw.display());
    let serve = Serve::start(&served_config(dir.path(), &extra), &[], 1);
    let url = format!("imap://127.0.0.1:{}/INBOX", serve.port(0));
    let wrong = curl(&["-v", &url, "-u", "alice:guess"]);
    assert!(!wrong.status.success());
    assert_contains(
        &String::from_utf8_lossy(&wrong.stderr),
        "NO [AUTHENTICATIONFAILED] mailtun: wrong password",
        "curl with a wrong password",
    );
    let right = curl(&[&url, "-u", "alice:local-secret", "-X", "EXAMINE INBOX"]);
    assert_success(&right, "curl with the local_password");
    let (_, stderr) = serve.stop();
    assert_lacks(&stderr, "local-secret", "serve's log");
}

#[test]
fn curl_pop3_retrieves_the_20mb_message_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let config = served_config(dir.path(), "protocol = \"pop3\"\ntls = [\"starttls\"]");
    let serve = Serve::start(&config, &[], 1);
    let out_file = dir.path().join("big.eml");
    // Message 4 of the mailbox is the big one (as in the POP3 tunnel test).
    let out = curl(&[
        &format!("pop3://127.0.0.1:{}/4", serve.port(0)),
        "-u",
        "alice:x",
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert_success(&out, "curl");
    assert!(
        std::fs::read(&out_file).unwrap() == big_message(),
        "the retrieved message differs"
    );
    serve.stop_logging("serving test (pop3)");
}

#[test]
fn curl_smtp_sends_a_message_that_reaches_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let config = served_config(dir.path(), "protocol = \"smtp\"\ntls = [\"starttls\"]");
    let serve = Serve::start(&config, &[], 1);
    let marker = format!(
        "mailtun-serve-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    );
    let mail = dir.path().join("mail.txt");
    std::fs::write(&mail, format!("Subject: {marker}\r\n\r\nbody\r\n")).unwrap();
    let out = curl(&[
        &format!("smtp://127.0.0.1:{}", serve.port(0)),
        "-u",
        "alice:x",
        "--mail-from",
        "alice@example.test",
        "--mail-rcpt",
        "bob@example.test",
        "-T",
        mail.to_str().unwrap(),
    ]);
    assert_success(&out, "curl");
    wait_for_sink_message("the message sent with curl", |m| m.contains(&marker));
    let (code, stderr) = serve.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// A stand-in upstream that only counts the connections it gets.
fn counting_upstream() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    (l, port)
}

fn assert_no_upstream(l: &TcpListener) {
    assert_eq!(
        upstream_connections(l),
        0,
        "an upstream connection was made"
    );
}

fn upstream_connections(l: &TcpListener) -> usize {
    let mut n = 0;
    while l.accept().is_ok() {
        n += 1;
    }
    n
}

/// Waits up to 10 s for mailtun's connection to the stand-in upstream.
fn accept_upstream(l: &TcpListener) -> TcpStream {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match l.accept() {
            Ok((s, _)) => return s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no upstream connection"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Account `name` speaking `protocol`, listening on `listen`, whose upstream is the
/// stand-in on 127.0.0.1:`port` (STARTTLS on the plain port).
fn counted_account(name: &str, protocol: &str, listen: &str, port: u16, extra: &str) -> String {
    let h = harness();
    h.account_tables(
        name,
        &format!(
            "protocol = \"{protocol}\"\ntls = [\"starttls\"]\nplain_port = {port}\nlisten = \"{listen}\"\n{extra}"
        ),
        "",
    )
    .replace(
        &format!("connect = \"{}\"", h.get("MAIL_ADDR")),
        "connect = \"127.0.0.1\"",
    )
}

#[test]
fn pop3_and_smtp_logins_are_checked_before_any_upstream_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, port) = counting_upstream();
    let pw = dir.path().join("local-pw");
    std::fs::write(&pw, "local-secret\n").unwrap();
    let lp = format!("local_password = {{ command = \"cat {}\" }}", pw.display());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n{}",
            counted_account("pop", "pop3", "127.0.0.1:0", port, &lp),
            counted_account("sub", "smtp", "127.0.0.1:0", port, &lp)
        ),
    )
    .unwrap();
    let serve = Serve::start(&config, &[], 2);
    let pop = format!("pop3://127.0.0.1:{}/", serve.port_of("pop"));
    let sub = format!("smtp://127.0.0.1:{}", serve.port_of("sub"));
    let mail = dir.path().join("mail.txt");
    std::fs::write(&mail, "Subject: never sent\r\n\r\nbody\r\n").unwrap();
    let wrong = [
        ("bob:local-secret", "the user must be `alice`"),
        ("alice:guess", "wrong password (`local_password`)"),
    ];
    for (user, why) in wrong {
        let out = curl(&["-v", &pop, "-u", user]);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert_contains(&text, &format!("< -ERR [AUTH] mailtun: {why}"), user);
        let out = curl(&[
            "-v",
            &sub,
            "-u",
            user,
            "--mail-from",
            "alice@example.test",
            "--mail-rcpt",
            "bob@example.test",
            "-T",
            mail.to_str().unwrap(),
        ]);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert_contains(&text, &format!("< 535 5.7.8 mailtun: {why}"), user);
    }
    assert_eq!(
        upstream_connections(&upstream),
        0,
        "an upstream connection was made before a good login"
    );
    // Python's poplib with USER/PASS and the right password: now, and only now, mailtun
    // connects upstream; the stand-in hangs up, and the client gets POP3's failure reply.
    let script = format!(
        "import poplib\np = poplib.POP3('127.0.0.1', {})\nprint(p.getwelcome().decode())\np.user('alice')\ntry:\n    p.pass_('local-secret')\nexcept poplib.error_proto as e:\n    print('refused', e.args[0].decode())\n",
        serve.port_of("pop")
    );
    let client = std::thread::spawn(move || {
        Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap()
    });
    drop(accept_upstream(&upstream));
    let out = client.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_success(&out, "poplib");
    assert!(text.starts_with("+OK mailtun ready\n"), "{text}");
    assert_contains(&text, "refused -ERR [SYS/TEMP] mailtun: ", "poplib");
    // The listener keeps serving.
    let mut next = TcpStream::connect(("127.0.0.1", serve.port_of("sub"))).unwrap();
    let mut greeting = [0u8; 128];
    let n = next.read(&mut greeting).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&greeting[..n]),
        format!("220 {} ESMTP mailtun ready\r\n", harness().get("MAIL_HOST"))
    );
    let stderr = serve.stop_logging("local login refused: wrong password");
    assert_lacks(&stderr, "local-secret", "serve's log");
    assert_lacks(&stderr, "guess", "serve's log");
}

#[test]
fn a_silent_client_is_sent_away_after_the_login_timeout_with_no_upstream_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, port) = counting_upstream();
    let extra = "listen_login_timeout_secs = 1";
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        ["imap", "pop3", "smtp"]
            .map(|p| counted_account(p, p, "127.0.0.1:0", port, extra))
            .join("\n"),
    )
    .unwrap();
    let serve = Serve::start(&config, &[], 3);
    let host = harness().get("MAIL_HOST");
    let expected = [
        (
            "imap",
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ID] mailtun ready\r\n* BYE mailtun: no login within 1 s\r\n".to_string(),
        ),
        (
            "pop3",
            "+OK mailtun ready\r\n-ERR mailtun: no login within 1 s\r\n".to_string(),
        ),
        (
            "smtp",
            format!("220 {host} ESMTP mailtun ready\r\n421 4.4.2 mailtun: no login within 1 s\r\n"),
        ),
    ];
    let clients: Vec<_> = expected
        .iter()
        .map(|(name, _)| {
            let mut c = TcpStream::connect(("127.0.0.1", serve.port_of(name))).unwrap();
            std::thread::spawn(move || {
                c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
                    .unwrap();
                let mut all = String::new();
                c.read_to_string(&mut all).map(|_| all)
            })
        })
        .collect();
    for ((name, want), client) in expected.iter().zip(clients) {
        let got = client.join().unwrap().expect("closed by mailtun");
        assert_eq!(&got, want, "{name}");
    }
    assert_no_upstream(&upstream);
    serve.stop_logging("account `pop3`: no local login within 1 s");
}

#[test]
fn a_unix_socket_client_of_another_uid_is_refused_by_so_peercred_before_any_upstream_connection() {
    use std::os::unix::fs::PermissionsExt;
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: setpriv to another uid needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run").join("mailtun.sock");
    let (upstream, port) = counting_upstream();
    let listen = format!("unix:{}", sock.display());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        counted_account("test", "imap", &listen, port, "listen_preauth = true"),
    )
    .unwrap();
    let serve = Serve::start(&config, &[], 1);
    // mailtun made the socket 0600 in a 0700 directory; this test loosens both, so that
    // uid 65534 reaches the socket and only SO_PEERCRED stands in its way.
    let mode =
        |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(dir.path(), 0o711);
    mode(sock.parent().unwrap(), 0o711);
    mode(&sock, 0o666);
    // socat reads all it gets; curl, when the refusal and the close come before it has
    // checked its own connect, reports only "Couldn't connect".
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["socat", "-u", "-T", "20"])
        .arg(format!("UNIX-CONNECT:{}", sock.display()))
        .arg("STDOUT")
        .output()
        .expect("socat (scripts/install-deps installs it)");
    assert_success(&out, "socat as uid 65534");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "* BYE [AUTHENTICATIONFAILED] mailtun: connection refused: this listener serves only uid 0\r\n",
        "what uid 65534 got"
    );
    assert_no_upstream(&upstream);
    // The owner's connection does reach the upstream (PREAUTH: at once).
    let own = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    drop(accept_upstream(&upstream));
    drop(own);
    serve.stop_logging("refused a connection from uid 65534 (the unix socket)");
}

#[test]
fn another_uid_is_refused_before_any_upstream_connection() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: setpriv to another uid needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (upstream, port) = counting_upstream();
    let config = served_config(
        dir.path(),
        &format!("tls = [\"starttls\"]\nplain_port = {port}\nlisten_preauth = true"),
    );
    crate::harness::replace_in_file(
        &config,
        &format!("connect = \"{}\"", harness().get("MAIL_ADDR")),
        "connect = \"127.0.0.1\"",
    );
    let serve = Serve::start(&config, &[], 1);
    let url = format!("imap://127.0.0.1:{}/", serve.port(0));
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-sv",
            "--max-time",
            "20",
            &url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert_contains(
        &text,
        "< * BYE [AUTHENTICATIONFAILED] mailtun: connection refused: this listener serves only uid 0",
        "the client's output",
    );
    assert_no_upstream(&upstream);
    // The owner's connection does reach the upstream (PREAUTH: at once).
    let mut own = TcpStream::connect(("127.0.0.1", serve.port(0))).unwrap();
    let mut upstream_conn = loop {
        match upstream.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    };
    drop(upstream_conn.write_all(b"* BYE no\r\n"));
    let mut reply = String::new();
    let _ = own.read_to_string(&mut reply);
    let (code, stderr) = serve.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("refused a connection from uid 65534 (127.0.0.1:"),
        "{stderr}"
    );
}

#[test]
fn beyond_max_connections_the_client_is_told_too_many_connections() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&served_config(dir.path(), "max_connections = 1"), &[], 1);
    let port = serve.port(0);
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut line = [0u8; 64];
    let n = first.read(&mut line).unwrap();
    assert!(
        line[..n].starts_with(b"* OK [CAPABILITY"),
        "{:?}",
        String::from_utf8_lossy(&line[..n])
    );
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reply = String::new();
    second.read_to_string(&mut reply).unwrap();
    assert_eq!(
        reply,
        "* BYE [UNAVAILABLE] mailtun: too many connections (max_connections = 1)\r\n"
    );
    drop(first);
    serve.stop();
}

#[test]
fn twenty_fetches_at_once_are_byte_identical_and_a_failing_account_disturbs_none() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let good = h.account_tables("good", "listen = \"127.0.0.1:0\"\nmax_connections = 32", "");
    let bad = h
        .account_tables("badca", "listen = \"127.0.0.1:0\"", "")
        .replace(h.get("CA_FILE"), h.get("UNKNOWN_CA_FILE"));
    std::fs::write(&config, format!("{good}\n{bad}")).unwrap();
    let serve = Serve::start(&config, &[], 2);
    let (good_port, bad_port) = (serve.port_of("good"), serve.port_of("badca"));
    let expected = big_message();
    let fetches: Vec<_> = (0..20)
        .map(|i| {
            let out = dir.path().join(format!("big-{i}.eml"));
            std::thread::spawn(move || (curl_fetch_big(good_port, &out), out))
        })
        .collect();
    let failing = curl(&[
        "-v",
        &format!("imap://127.0.0.1:{bad_port}/INBOX"),
        "-u",
        "alice:x",
    ]);
    let text = String::from_utf8_lossy(&failing.stderr);
    assert!(!failing.status.success());
    assert_contains(
        &text,
        "< * BYE [UNAVAILABLE] mailtun: ",
        "the client's output",
    );
    for f in fetches {
        let (out, file) = f.join().unwrap();
        assert_success(&out, "curl");
        assert!(
            std::fs::read(&file).unwrap() == expected,
            "{} differs",
            file.display()
        );
    }
    serve.stop_logging("account `badca`");
}

#[test]
fn sigterm_lets_running_fetches_complete_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&served_config(dir.path(), "drain_secs = 120"), &[], 1);
    let port = serve.port(0);
    let expected = big_message();
    let files: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("big-{i}.eml")))
        .collect();
    let fetches: Vec<_> = files
        .iter()
        .cloned()
        .map(|out| {
            let uid = harness().get("BIG_MESSAGE_UID").to_string();
            std::thread::spawn(move || {
                curl(&[
                    "--limit-rate",
                    "4M",
                    &format!("imap://127.0.0.1:{port}/INBOX;UID={uid}"),
                    "-u",
                    "alice:x",
                    "-o",
                    out.to_str().unwrap(),
                ])
            })
        })
        .collect();
    // Every fetch is under way: part of the message arrived, not all of it.
    for f in &files {
        while std::fs::metadata(f).map_or(0, |m| m.len()) < 1_000_000 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    serve.signal(libc::SIGTERM);
    for f in fetches {
        let out = f.join().unwrap();
        assert_success(&out, "curl");
    }
    for f in &files {
        assert!(
            std::fs::read(f).unwrap() == expected,
            "{} differs",
            f.display()
        );
    }
    serve.stop_logging("draining 3 session(s)");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting"
    );
}

#[test]
fn mbsync_with_host_and_port_syncs_the_mailbox_and_the_big_message_intact() {
    use crate::clients::{inbox_files, strip_cr, without_tuid};
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&served_config(dir.path(), ""), &[], 1);
    let local = dir.path().join("mail");
    std::fs::create_dir_all(&local).unwrap();
    let rc = dir.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount test\nHost 127.0.0.1\nPort {port}\nUser alice\nPass x\nSSLType None\nAuthMechs LOGIN\n\nIMAPStore test-remote\nAccount test\n\nMaildirStore test-local\nPath {l}/\nInbox {l}/INBOX\n\nChannel test\nFar :test-remote:\nNear :test-local:\nPatterns INBOX\nCreate Near\nSyncState *\n",
            port = serve.port(0),
            l = local.display()
        ),
    )
    .unwrap();
    let out = Command::new("mbsync")
        .args(["-c", rc.to_str().unwrap(), "-a"])
        .output()
        .expect("run mbsync");
    assert_success(&out, "mbsync");
    let files = inbox_files(&local);
    let expected: usize = h.get("INBOX_MESSAGES").parse().unwrap();
    assert_eq!(files.len(), expected, "{files:?}");
    let big_lf = strip_cr(&big_message());
    assert!(
        files
            .iter()
            .any(|f| without_tuid(&strip_cr(&std::fs::read(f).unwrap())) == big_lf),
        "no synced message equals the 20 MB message"
    );
    let (code, stderr) = serve.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn mutt_with_an_imap_folder_on_the_listener_opens_the_inbox() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&served_config(dir.path(), ""), &[], 1);
    let muttrc = dir.path().join("muttrc");
    std::fs::write(
        &muttrc,
        format!(
            "set folder=imap://alice@127.0.0.1:{}/\nset spoolfile=+INBOX\nset imap_pass=x\nset ssl_starttls=no\nset ssl_force_tls=no\n",
            serve.port(0)
        ),
    )
    .unwrap();
    let tmux = crate::clients::Tmux::start(
        "serve-mutt",
        &format!(
            "env HOME={} TERM=xterm mutt -n -F {}",
            dir.path().display(),
            muttrc.display()
        ),
    );
    let count = h.get("INBOX_MESSAGES");
    let want = format!("[Msgs:{count} ");
    let screen = tmux.wait(20, |s| s.contains(&want), |_, _| {});
    tmux.keys("q");
    drop(tmux);
    assert_contains(&screen, &want, "mutt's screen");
    serve.stop_logging("authenticated to mail.example.test");
}

#[test]
fn a_unix_socket_listener_is_private_and_serves_curl() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run").join("mailtun.sock");
    let config = harness().config(
        dir.path(),
        &format!(
            "listen = \"unix:{}\"\nlisten_preauth = true",
            sock.display()
        ),
        "",
    );
    let serve = Serve::start(&config, &[], 1);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(mode(sock.parent().unwrap()), 0o700);
    let out = curl(&[
        "--unix-socket",
        sock.to_str().unwrap(),
        "imap://localhost/INBOX",
        "-X",
        "EXAMINE INBOX",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_success(&out, "curl --unix-socket");
    assert_contains(&text, "EXISTS", "the client's output");
    serve.stop_logging(&format!("on unix:{}", sock.display()));
    assert!(!sock.exists(), "the socket file stays after exit");
}

#[test]
fn systemd_socket_activation_serves_the_account_the_socket_is_named_after() {
    let dir = tempfile::tempdir().unwrap();
    // No `listen`: the socket comes from systemd-socket-activate, named `test`.
    let config = harness().config(dir.path(), "", "");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("stderr");
    let mut activate = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=test"])
        .arg(crate::harness::mailtun_bin())
        .args(["--config", config.to_str().unwrap(), "serve", "-v"])
        .env("KRB5_CONFIG", harness().get("KRB5_CONFIG"))
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd)");
    // Until systemd-socket-activate listens, curl cannot connect (exit 7).
    let out_file = dir.path().join("big.eml");
    let mut tries = 0;
    let out = loop {
        let out = curl_fetch_big(port, &out_file);
        if out.status.code() != Some(7) || tries == 100 {
            break out;
        }
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let stderr = || std::fs::read_to_string(&log).unwrap();
    assert_success(&out, "curl");
    assert!(
        std::fs::read(&out_file).unwrap() == big_message(),
        "the message differs"
    );
    // systemd-socket-activate execs mailtun in its own process.
    unsafe { libc::kill(activate.id() as i32, libc::SIGTERM) };
    let status = activate.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", stderr());
    assert_contains(
        &stderr(),
        &format!("mailtun: serving test (imap) on 127.0.0.1:{port}"),
        "serve's log",
    );
}

/// A loopback port that was free a moment ago (the snippet prints the configured port).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn snippet(config: &Path, client: &str, account: &str) -> String {
    let out = crate::harness::run_mailtun(
        &[
            "--config",
            config.to_str().unwrap(),
            "snippet",
            client,
            account,
        ],
        b"",
    );
    assert_eq!(out.code, Some(0), "snippet {client}: {}", out.stderr);
    out.stdout_text()
}

#[test]
fn msmtp_with_the_printed_snippet_logs_in_and_sends_through_the_smtp_listener() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pw = dir.path().join("local-pw");
    std::fs::write(&pw, "local-secret\n").unwrap();
    let config = harness().config(
        dir.path(),
        &format!(
            "protocol = \"smtp\"\ntls = [\"starttls\"]\nlisten = \"127.0.0.1:{port}\"\nlocal_password = {{ command = \"cat {}\" }}",
            pw.display()
        ),
        "",
    );
    let rc = dir.path().join("msmtprc");
    // The snippet logs in with AUTH PLAIN and reads `local_password` as mailtun does.
    let text = snippet(&config, "msmtp", "test");
    assert_contains(&text, "\nauth plain\nuser alice\n", "the msmtp snippet");
    std::fs::write(&rc, text).unwrap();
    let mut perms = std::fs::metadata(&rc).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&rc, perms).unwrap();
    let serve = Serve::start(&config, &[], 1);
    let marker = format!(
        "mailtun-msmtp-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    );
    let mut msmtp = Command::new("msmtp")
        .args([
            "-C",
            rc.to_str().unwrap(),
            "-a",
            "test",
            "-f",
            "alice@example.test",
            "bob@example.test",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("msmtp (scripts/install-deps installs it)");
    msmtp
        .stdin
        .take()
        .unwrap()
        .write_all(format!("Subject: {marker}\n\nsent by msmtp\n").as_bytes())
        .unwrap();
    let out = msmtp.wait_with_output().unwrap();
    assert_success(&out, "msmtp");
    wait_for_sink_message("the message sent with msmtp", |m| m.contains(&marker));
    let (code, stderr) = serve.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn git_send_email_with_the_printed_snippet_sends_a_patch_through_the_smtp_listener() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = harness().config(
        dir.path(),
        &format!("protocol = \"smtp\"\ntls = [\"starttls\"]\nlisten = \"127.0.0.1:{port}\""),
        "",
    );
    // The snippet as a user pastes it into ~/.gitconfig, after their name.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let gitconfig = format!(
        "[user]\n\tname = Alice\n\temail = alice@example.test\n{}",
        snippet(&config, "git-send-email", "test")
    );
    std::fs::write(home.join(".gitconfig"), gitconfig).unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let marker = format!(
        "mailtun-git-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    );
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_CONFIG_GLOBAL")
            .stdin(Stdio::null())
            .output()
            .expect("git (scripts/install-deps installs git-email)");
        assert_success(&out, &format!("git {args:?}"));
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(&["add", "README"]);
    git(&["commit", "-q", "-m", &marker]);
    let serve = Serve::start(&config, &[], 1);
    git(&[
        "send-email",
        "--to=bob@example.test",
        "--from=alice@example.test",
        "--confirm=never",
        "--suppress-cc=all",
        "-1",
    ]);
    wait_for_sink_message("the patch sent with git send-email", |m| {
        m.contains(&marker) && m.contains("+hello")
    });
    serve.stop_logging("authenticated to mail.example.test");
}

#[test]
fn the_printed_curl_snippet_lists_the_mailboxes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = harness().config(dir.path(), &format!("listen = \"127.0.0.1:{port}\""), "");
    let text = snippet(&config, "curl", "test");
    let line = text
        .lines()
        .find(|l| l.starts_with("curl ") && l.ends_with("/'"))
        .unwrap_or_else(|| panic!("no listing command: {text}"));
    let serve = Serve::start(&config, &[], 1);
    let out = Command::new("sh")
        .args(["-c", &format!("{line} -sS --max-time 60")])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_success(&out, line);
    assert_contains(&listing, "INBOX", "curl's listing");
    serve.stop();
}

#[test]
fn after_drain_secs_an_idle_session_is_closed_and_serve_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&served_config(dir.path(), "drain_secs = 1"), &[], 1);
    let mut client = TcpStream::connect(("127.0.0.1", serve.port(0))).unwrap();
    client.write_all(b"a LOGIN alice x\r\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\r\na OK ") {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // A second client connected and never logged in.
    let mut waiting = TcpStream::connect(("127.0.0.1", serve.port(0))).unwrap();
    let mut greeting = [0u8; 256];
    let n = waiting.read(&mut greeting).unwrap();
    assert!(greeting[..n].starts_with(b"* OK "));
    // The first stays logged in and silent; SIGTERM, then drain_secs, then the end.
    serve.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    let mut told = String::new();
    waiting.read_to_string(&mut told).unwrap();
    assert_eq!(told, "* BYE mailtun: shutting down\r\n");
    serve.stop_logging("still running after drain_secs: closing them");
}

#[test]
fn a_non_loopback_listen_address_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = harness().config(dir.path(), "listen = \"0.0.0.0:1143\"", "");
    let out = crate::harness::run_mailtun(&["--config", config.to_str().unwrap(), "serve"], b"");
    assert_eq!(out.code, Some(crate::EXIT_CONFIG), "{}", out.stderr);
    assert_contains(&out.stderr, "account `test`", "mailtun's stderr");
    assert_contains(&out.stderr, "listen_on_network", "mailtun's stderr");
}

#[test]
fn a_socket_from_systemd_named_after_no_account_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n{}",
            h.account_tables("one", "", ""),
            h.account_tables("two", "", "")
        ),
    )
    .unwrap();
    let port = free_port();
    let mut activate = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=three"])
        .arg(crate::harness::mailtun_bin())
        .args(["--config", config.to_str().unwrap(), "serve"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate");
    let mut tries = 0;
    while TcpStream::connect(("127.0.0.1", port)).is_err() && tries < 100 {
        tries += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = activate.wait().unwrap();
    let mut stderr = String::new();
    activate
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(crate::EXIT_CONFIG), "{stderr}");
    assert_contains(
        &stderr,
        "socket 0 named `three`, which names no account to serve",
        "serve's log",
    );
}

#[test]
fn a_local_password_in_the_keyring_is_kept_apart_from_the_accounts_own() {
    // Both in the kernel keyring (a fresh session keyring): `password set` stores the
    // account's password (SCRAM upstream), `password set --local` the listener's. The
    // account's own password does not open the listener; the local one does.
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = h.config(
        dir.path(),
        &format!(
            "auth = [\"scram-sha-256\"]\npassword = {{ keyring = true }}\nkeyring_store = \"keyutils\"\nlisten = \"127.0.0.1:{port}\"\nlocal_password = {{ keyring = true }}"
        ),
        "",
    );
    let bin = crate::harness::mailtun_bin();
    let url = format!("imap://127.0.0.1:{port}/INBOX");
    let script = format!(
        "set -e
printf '%s\\n' \"$PW\" | {bin} --config {c} password set test
printf 'local-Secret.1\\n' | {bin} --config {c} password set --local test
unset PW
{bin} --config {c} serve -v 2>{log} & pid=$!
for i in $(seq 100); do grep -q 'serving test' {log} && break; sleep 0.1; done
if curl -sS --max-time 30 '{url}' -u \"alice:$UPSTREAM\" -X 'EXAMINE INBOX' >/dev/null 2>&1; then echo 'UPSTREAM PASSWORD LET IN'; fi
curl -sS --max-time 30 '{url}' -u 'alice:local-Secret.1' -X 'EXAMINE INBOX' && echo LOCAL-OK
{bin} --config {c} password delete --local test
kill $pid; wait $pid || true",
        c = config.display(),
        log = dir.path().join("serve.log").display(),
    );
    let out = Command::new("keyctl")
        .args(["session", "-", "sh", "-c", &script])
        .env("PW", h.get("PASSWORD"))
        .env("UPSTREAM", h.get("PASSWORD"))
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .output()
        .expect("keyctl (package keyutils)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    let all = format!("{stdout}\n{}\n{log}", String::from_utf8_lossy(&out.stderr));
    assert_success(&out, "the keyring session");
    assert_lacks(&stdout, "UPSTREAM PASSWORD LET IN", "the listener");
    assert_contains(&stdout, "LOCAL-OK", "curl with the local password");
    assert_contains(&log, "wrong password (`local_password`)", "serve's log");
    assert_contains(&log, "with SCRAM-SHA-256", "serve's log");
    assert_lacks(&all, "local-Secret.1", "output and log");
    assert_lacks(&all, h.get("PASSWORD"), "output and log");
}
