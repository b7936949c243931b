//! Real mail clients driving the tunnel, each configured with exactly what `mailtun
//! snippet` prints for it (plus only what the README tells the user to add): mutt and
//! neomutt (under tmux), mbsync, offlineimap, fetchmail, alpine (under tmux).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::EXIT_CONFIG;
use crate::harness::{
    harness, mailtun_command, run_command, run_mailtun, run_tunnel, wait_for_sink_message,
};

#[test]
fn mutt_opens_the_inbox_with_the_pasted_imap_snippet() {
    opens_the_inbox("mutt");
}

#[test]
fn neomutt_opens_the_inbox_with_the_pasted_imap_snippet() {
    opens_the_inbox("neomutt");
}

/// `client` (mutt or neomutt) under tmux with `muttrc` as its whole configuration and
/// an empty home; `label` tells apart the tmux sessions of tests running at once.
fn mutt_screen(label: &str, client: &str, dir: &Path, muttrc: &Path) -> Tmux {
    let h = harness();
    Tmux::start(
        &format!("{label}-{client}"),
        &format!(
            "env KRB5_CONFIG={} HOME={} TERM=xterm {client} -n -F {}",
            h.get("KRB5_CONFIG"),
            dir.display(),
            muttrc.display()
        ),
    )
}

/// The message count mutt's and neomutt's default status line shows.
fn msgs(count: &str) -> String {
    format!("[Msgs:{count} ")
}

/// `client` (mutt or neomutt) with the IMAP snippet as its whole muttrc shows INBOX and
/// its message count.
fn opens_the_inbox(client: &str) {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = three_accounts(dir.path(), "");
    let muttrc = dir.path().join("muttrc");
    std::fs::write(&muttrc, snippet(&config, client, "test")).unwrap();
    let tmux = mutt_screen("inbox", client, dir.path(), &muttrc);
    let count = h.get("INBOX_MESSAGES");
    let screen = tmux.wait(20, |s| s.contains(&msgs(count)), |_, _| {});
    tmux.keys("q");
    std::thread::sleep(Duration::from_millis(300));
    drop(tmux);
    assert!(
        screen.contains(&format!("INBOX {}", msgs(count))),
        "{client}'s screen:\n{screen}"
    );
    assert!(
        screen.contains("Hello Alice"),
        "{client}'s screen:\n{screen}"
    );
}

#[test]
fn mutt_with_three_pasted_snippets_reads_pop3_and_imap_and_sends() {
    three_snippets_in_one_muttrc("mutt");
}

#[test]
fn neomutt_with_three_pasted_snippets_reads_pop3_and_imap_and_sends() {
    three_snippets_in_one_muttrc("neomutt");
}

/// The snippets of the IMAP, POP3 and SMTP accounts pasted one after the other as the
/// whole muttrc: `client` opens the POP3 spool (the last `spoolfile`), then the IMAP
/// INBOX, each through its own account's tunnel, and sends through the SMTP one.
fn three_snippets_in_one_muttrc(client: &str) {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = three_accounts(dir.path(), "");
    let muttrc = dir.path().join("muttrc");
    std::fs::write(
        &muttrc,
        ["test", "pop", "out"]
            .map(|a| snippet(&config, client, a))
            .concat(),
    )
    .unwrap();
    let host = h.get("MAIL_HOST");
    let count = h.get("INBOX_MESSAGES");
    let tmux = mutt_screen("three", client, dir.path(), &muttrc);
    let pop = format!(": pop://alice@{host}/ {}", msgs(count));
    let screen = tmux.wait(20, |s| s.contains(&pop), |_, _| {});
    assert!(screen.contains(&pop), "{client}'s screen:\n{screen}");
    assert!(
        screen.contains("Hello Alice"),
        "{client}'s screen:\n{screen}"
    );
    // change-folder to the IMAP INBOX.
    tmux.keys("c");
    std::thread::sleep(Duration::from_millis(300));
    tmux.keys("C-u");
    tmux.keys(&format!("imap://alice@{host}/INBOX"));
    tmux.keys("Enter");
    let imap = format!("INBOX {}", msgs(count));
    let screen = tmux.wait(20, |s| s.contains(&imap), |_, _| {});
    tmux.keys("q");
    std::thread::sleep(Duration::from_millis(300));
    drop(tmux);
    assert!(screen.contains(&imap), "{client}'s screen:\n{screen}");
    let subject = format!("{client}-smtp-{}-{:?}", std::process::id(), Instant::now());
    let mut child = Command::new(client)
        .args(["-n", "-F", muttrc.to_str().unwrap(), "-s", &subject])
        .arg("bob@example.test")
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mutt");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"Sent through mailtun.\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{client} failed:\n{}", log_of(&out));
    wait_for_sink_message(&format!("{client}'s message"), |m| {
        m.contains(&format!("Subject: {subject}")) && m.contains("Sent through mailtun.")
    });
}

#[test]
fn offlineimap_syncs_the_mailbox_with_the_pasted_snippet() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = three_accounts(dir.path(), "");
    let local = dir.path().join("mail");
    std::fs::create_dir_all(&local).unwrap();
    let rc = dir.path().join("offlineimaprc");
    // The snippet, plus the general section, the account and the local repository, as
    // the README says.
    std::fs::write(
        &rc,
        format!(
            "[general]\naccounts = test\nmetadata = {meta}\n\n[Account test]\nlocalrepository = test-local\nremoterepository = test-remote\n\n[Repository test-local]\ntype = Maildir\nlocalfolders = {local}\n\n{snippet}",
            meta = dir.path().join("meta").display(),
            local = local.display(),
            snippet = snippet(&config, "offlineimap", "test"),
        ),
    )
    .unwrap();
    let out = Command::new("offlineimap")
        .args(["-c", rc.to_str().unwrap(), "-o", "-u", "basic"])
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .env("HOME", dir.path())
        .output()
        .expect("run offlineimap (offlineimap3)");
    let log = log_of(&out);
    assert!(out.status.success(), "offlineimap failed: {log}");
    let files = inbox_files(&local);
    let expected: usize = h.get("INBOX_MESSAGES").parse().unwrap();
    assert_eq!(files.len(), expected, "{files:?}\n{log}");
    let big = std::fs::metadata(h.path("BIG_MESSAGE")).unwrap().len();
    assert!(
        files
            .iter()
            .any(|f| std::fs::metadata(f).unwrap().len() + 1_000_000 > big),
        "the 20 MB message was not synced: {files:?}"
    );
}

#[test]
fn mbsync_syncs_the_mailbox_with_the_pasted_snippet_and_the_big_message_intact() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = three_accounts(dir.path(), "");
    let local = dir.path().join("mail");
    std::fs::create_dir_all(&local).unwrap();
    let rc = dir.path().join("mbsyncrc");
    // The snippet, plus the local store and the channel, as the README says.
    std::fs::write(
        &rc,
        format!(
            "{}\nMaildirStore test-local\nPath {}/\nInbox {}/INBOX\n\nChannel test\nFar :test-remote:\nNear :test-local:\nPatterns INBOX\nCreate Near\nSyncState *\n",
            snippet(&config, "mbsync", "test"),
            local.display(),
            local.display()
        ),
    )
    .unwrap();
    let out = Command::new("mbsync")
        .args(["-c", rc.to_str().unwrap(), "-a"])
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .output()
        .expect("run mbsync");
    assert!(out.status.success(), "mbsync failed:\n{}", log_of(&out));
    let files = inbox_files(&local);
    let expected_count: usize = h.get("INBOX_MESSAGES").parse().unwrap();
    assert_eq!(files.len(), expected_count, "{files:?}");
    // mbsync stores messages with LF line ends and adds an X-TUID header of its own;
    // compare on that basis.
    let big = std::fs::read(h.path("BIG_MESSAGE")).unwrap();
    let big_lf: Vec<u8> = strip_cr(&big);
    let found = files
        .iter()
        .any(|f| without_tuid(&strip_cr(&std::fs::read(f).unwrap())) == big_lf);
    assert!(found, "no synced message equals the 20 MB message");
}

/// A client's stdout, then its stderr.
fn log_of(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The message files of the INBOX in the Maildir tree at `local` (`INBOX/cur`, `INBOX/new`).
pub(crate) fn inbox_files(local: &Path) -> Vec<std::path::PathBuf> {
    ["cur", "new"]
        .iter()
        .filter_map(|d| std::fs::read_dir(local.join("INBOX").join(d)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .collect()
}

pub(crate) fn strip_cr(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, &b) in data.iter().enumerate() {
        if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

/// Removes the `X-TUID:` header line that mbsync adds while syncing.
pub(crate) fn without_tuid(data: &[u8]) -> Vec<u8> {
    let Some(at) = data.windows(8).position(|w| w == b"X-TUID: ") else {
        return data.to_vec();
    };
    let end = at
        + data[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len() - at, |p| p + 1);
    [&data[..at], &data[end..]].concat()
}

#[test]
fn fetchmail_retrieves_over_imap_through_the_pasted_snippet() {
    fetchmail_with_the_snippet_of("test");
}

#[test]
fn fetchmail_retrieves_over_pop3_through_the_pasted_snippet() {
    fetchmail_with_the_snippet_of("pop");
}

/// fetchmail with the snippet of `account`, plus the delivery options the README says to
/// add on its user line (here: leave the messages on the server, deliver one to a file).
fn fetchmail_with_the_snippet_of(account: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = three_accounts(dir.path(), "");
    fetchmail_fetches_hello_alice(dir.path(), |out_file| {
        format!(
            "{}  keep fetchall fetchlimit 1 mda \"cat > {}\"\n",
            snippet(&config, "fetchmail", account),
            out_file.display()
        )
    });
}

/// Runs fetchmail in `dir` with the fetchmailrc `rc` makes for its delivery file, and
/// checks that it fetched alice's "Hello Alice" message into that file.
fn fetchmail_fetches_hello_alice(dir: &Path, rc: impl FnOnce(&Path) -> String) {
    let h = harness();
    let out_file = dir.join("fetched.eml");
    let rc_file = dir.join("fetchmailrc");
    std::fs::write(&rc_file, rc(&out_file)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("fetchmail")
        .args(["-f", rc_file.to_str().unwrap(), "--nosyslog"])
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .env("HOME", dir)
        // Its own lock file: as root, fetchmail locks /var/run/fetchmail.pid otherwise,
        // and two fetchmail tests running at once would refuse each other.
        .arg("--pidfile")
        .arg(dir.join("fetchmail.pid"))
        .output()
        .expect("run fetchmail");
    // Exit 13 is "fetchlimit reached": one message fetched, others left on the server.
    let log = log_of(&out);
    assert!(
        matches!(out.status.code(), Some(0 | 13)),
        "fetchmail failed: {log}"
    );
    let fetched = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert!(
        fetched.contains("Subject: Hello Alice"),
        "fetched: {fetched}\nlog: {log}"
    );
}

// ---------------------------------------------------------------------------------------
// alpine, POP3 and SMTP through mutt and fetchmail, and the settings `mailtun snippet`
// prints for them, pasted as they are.

/// A config file with three accounts on the harness: `test` (IMAP), `pop` (POP3) and
/// `out` (SMTP submission), all with alice's Kerberos ticket.
fn three_accounts(dir: &Path, extra: &str) -> std::path::PathBuf {
    let h = harness();
    let mut text = String::new();
    for (name, protocol) in [("test", "imap"), ("pop", "pop3"), ("out", "smtp")] {
        text.push_str(&h.account_tables(name, &format!("protocol = \"{protocol}\"\n{extra}"), ""));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `mailtun --config CONFIG snippet CLIENT ACCOUNT`, which must succeed.
fn snippet(config: &Path, client: &str, account: &str) -> String {
    let out = run_mailtun(
        &[
            "--config",
            config.to_str().unwrap(),
            "snippet",
            client,
            account,
        ],
        b"",
    );
    assert_eq!(
        out.code,
        Some(0),
        "snippet {client} {account}: {}",
        out.stderr
    );
    out.stdout_text()
}

/// A terminal program under tmux, killed when dropped.
pub(crate) struct Tmux {
    session: String,
}

impl Tmux {
    pub(crate) fn start(label: &str, command: &str) -> Tmux {
        let session = format!("mailtun-{label}-{}", std::process::id());
        let t = Tmux { session };
        let out = t.run(&[
            "new-session",
            "-d",
            "-s",
            &t.session,
            "-x",
            "160",
            "-y",
            "40",
            &format!("{command} ; sleep 30"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").args(args).output().expect("tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(
            &self
                .run(&["capture-pane", "-p", "-t", &self.session])
                .stdout,
        )
        .into_owned()
    }

    pub(crate) fn keys(&self, keys: &str) {
        let _ = self.run(&["send-keys", "-t", &self.session, keys]);
    }

    /// The screen once `done` holds, or the last screen after `secs`; `react` may type
    /// something on each screen (to get past a prompt).
    pub(crate) fn wait(
        &self,
        secs: u64,
        done: impl Fn(&str) -> bool,
        react: impl Fn(&Tmux, &str),
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut screen = String::new();
        while Instant::now() < deadline {
            screen = self.screen();
            if done(&screen) {
                break;
            }
            react(self, &screen);
            std::thread::sleep(Duration::from_millis(200));
        }
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-session", "-t", &self.session]);
    }
}

/// Runs the mailtun binary with exactly `args` after argv[0], as alpine's c-client does
/// (no other options), with the configuration found through MAILTUN_CONFIG.
fn run_as_alpine(config: &Path, args: &[&str], stdin: &[u8]) -> (String, String, Option<i32>) {
    let mut command = mailtun_command(args);
    command.env("MAILTUN_CONFIG", config);
    let out = run_command(command, stdin);
    (out.stdout_text(), out.stderr, out.code)
}

#[test]
fn alpines_ssh_path_argv_gets_preauth_and_a_working_session() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = three_accounts(dir.path(), "");
    // alpine's default ssh-command "%s %s -l %s exec /etc/r%sd", host in other case.
    let host = h.get("MAIL_HOST").to_ascii_uppercase();
    let script = b"a SELECT INBOX\r\nb LOGOUT\r\n";
    let (out, err, code) = run_as_alpine(
        &config,
        &[&host, "-l", "alice", "exec", "/etc/rimapd"],
        script,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("* PREAUTH [CAPABILITY "), "{out}");
    assert!(
        out.contains(&format!("* {} EXISTS", h.get("INBOX_MESSAGES"))),
        "{out}"
    );
    assert!(out.contains("b OK"), "{out}");
    // With the configuration named in ssh-command, as `mailtun snippet alpine` prints it.
    let (out, err, code) = run_as_alpine(
        Path::new("/nonexistent/config.toml"),
        &[
            "--config",
            config.to_str().unwrap(),
            h.get("MAIL_HOST"),
            "-l",
            "alice",
            "exec",
            "/etc/rimapd",
        ],
        script,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("* PREAUTH "), "{out}");
}

#[test]
fn alpines_argv_without_a_matching_account_gets_bye_and_exit_3() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = three_accounts(dir.path(), "");
    let (out, err, code) = run_as_alpine(
        &config,
        &[h.get("MAIL_HOST"), "-l", "carol", "exec", "/etc/rimapd"],
        b"",
    );
    assert_eq!(code, Some(EXIT_CONFIG), "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with("* BYE [UNAVAILABLE] mailtun: "), "{out}");
    assert!(
        first.contains(&format!("user `carol` on host `{}`", h.get("MAIL_HOST"))),
        "{first}"
    );
    assert!(first.contains("out (smtp alice@"), "{first}");
    assert!(first.contains("pop (pop3 alice@"), "{first}");
    assert!(first.contains("test (imap alice@"), "{first}");
}

#[test]
fn alpine_opens_the_inbox_through_ssh_path() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = three_accounts(dir.path(), "");
    let pinerc = dir.path().join("pinerc");
    // The snippet as printed is the whole pinerc (alpine only greets a new user).
    std::fs::write(&pinerc, snippet(&config, "alpine", "test")).unwrap();
    let tmux = Tmux::start(
        "alpine",
        &format!(
            "env -u MAILTUN_CONFIG KRB5_CONFIG={} HOME={} TERM=xterm alpine -p {} -i",
            h.get("KRB5_CONFIG"),
            dir.path().display(),
            pinerc.display()
        ),
    );
    let count = h.get("INBOX_MESSAGES");
    let of_count = format!(" of {count}");
    let screen = tmux.wait(
        30,
        |s| s.contains(&of_count) && s.contains("Hello Alice"),
        |t, s| {
            if s.contains("Exit this greeting") {
                t.keys("E");
            }
        },
    );
    assert!(
        screen.contains("MESSAGE INDEX")
            && screen.contains("Folder: INBOX")
            && screen.contains(&of_count)
            && screen.contains("Big attachment"),
        "alpine's screen:\n{screen}"
    );
    // Jump to message 1 and open it: its body comes through the tunnel.
    tmux.keys("1");
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys("Enter");
    let first = format!("Message 1{of_count}");
    let screen = tmux.wait(10, |s| s.contains(&first), |_, _| {});
    assert!(screen.contains(&first), "alpine's screen:\n{screen}");
    tmux.keys("Enter");
    let screen = tmux.wait(15, |s| s.contains("first test message"), |_, _| {});
    assert!(
        screen.contains("Subject: Hello Alice") && screen.contains("first test message"),
        "alpine's screen:\n{screen}"
    );
    tmux.keys("q");
    std::thread::sleep(Duration::from_millis(300));
    tmux.keys("y");
    drop(tmux);
    // Leave the message unread, as the harness seeded it.
    let out = run_tunnel(
        &config,
        &[],
        b"a SELECT INBOX\r\nb STORE 1 -FLAGS.SILENT (\\Seen)\r\nc LOGOUT\r\n",
    );
    assert!(out.stdout_text().contains("b OK"), "{}", out.stdout_text());
}

#[test]
fn accounts_lists_effective_settings_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("pw");
    std::fs::write(&secret_file, "s3cret-Value-never-shown\n").unwrap();
    let config = three_accounts(
        dir.path(),
        &format!(
            "auth = \"auto\"\npassword = {{ command = \"cat {}\" }}",
            secret_file.display()
        ),
    );
    let c = config.to_str().unwrap();
    let out = run_mailtun(&["--config", c, "accounts", "--json"], b"");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = out.stdout_text();
    assert!(!text.contains("s3cret"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let accounts = v["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 3);
    let pop = accounts.iter().find(|a| a["name"] == "pop").unwrap();
    assert_eq!(pop["protocol"], "pop3");
    assert_eq!(pop["plain_port"], 110);
    assert_eq!(pop["tls_port"], 995);
    assert_eq!(pop["auth"][0], "GSSAPI");
    assert_eq!(pop["password"]["kind"], "command");
    assert_eq!(
        pop["password"]["command"],
        format!("cat {}", secret_file.display())
    );
    assert_eq!(pop["gssapi"]["target"], "pop/mail.example.test");
    let out = run_mailtun(&["--config", c, "accounts"], b"");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = out.stdout_text();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("[out]\n  protocol        smtp\n"), "{text}");
}

#[test]
fn accounts_lists_serve_kinit_cache_and_oauth_settings_without_secrets() {
    // The sources of `local_password` and `oauth.client_secret` are commands whose output
    // must never be run or shown; the OAuth tokens are not read either.
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "s3cret-Value-never-shown\n").unwrap();
    let ran = dir.path().join("ran");
    let cmd = format!("touch {} && cat {}", ran.display(), secret_file.display());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.work]\nhost = \"mail.example.org\"\nuser = \"alice\"\nlisten = \"127.0.0.1:1143\"\nmax_connections = 4\ndrain_secs = 3\nlocal_password = {{ command = \"{cmd}\" }}\n\
             password = {{ command = \"{cmd}\" }}\n\
             [accounts.work.gssapi]\nkinit = true\nkinit_cache = \"account\"\nccache = \"FILE:/tmp/work.cc\"\n\
             [accounts.o365]\nhost = \"outlook.office365.com\"\nuser = \"alice@example.org\"\nauth = [\"xoauth2\"]\n\
             [accounts.o365.oauth]\nprovider = \"microsoft\"\nclient_id = \"0000-aaaa\"\nclient_secret = {{ command = \"{cmd}\" }}\nflow = \"device\"\n\
             [accounts.idp]\nhost = \"mail.example.org\"\nuser = \"alice\"\nauth = [\"oauthbearer\"]\n\
             [accounts.idp.oauth]\nissuer = \"https://idp.example.org\"\nclient_id = \"mailtun\"\nclient_secret = {{ keyring = true }}\nscope = \"mail offline_access\"\nca_file = \"/etc/idp-ca.pem\"\n"
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let out = run_mailtun(&["--config", c, "accounts", "--json"], b"");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let json = out.stdout_text();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let by = |n: &str| {
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == n)
            .unwrap()
            .clone()
    };
    let work = by("work");
    assert_eq!(work["serve"]["listen"], "127.0.0.1:1143");
    assert_eq!(work["serve"]["listen_preauth"], false);
    assert_eq!(work["serve"]["max_connections"], 4);
    assert_eq!(work["serve"]["drain_secs"], 3);
    assert_eq!(work["serve"]["local_password"]["kind"], "command");
    assert_eq!(work["gssapi"]["kinit_cache"], "account");
    assert_eq!(work["oauth"], serde_json::Value::Null);
    let o365 = by("o365");
    assert_eq!(o365["oauth"]["provider"], "microsoft");
    assert_eq!(o365["oauth"]["client_id"], "0000-aaaa");
    assert_eq!(o365["oauth"]["client_secret"]["kind"], "command");
    assert_eq!(o365["oauth"]["flow"], "device");
    assert_eq!(
        o365["oauth"]["endpoints"]["token_endpoint"],
        "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    );
    let idp = by("idp");
    assert_eq!(idp["oauth"]["issuer"], "https://idp.example.org");
    assert_eq!(
        idp["oauth"]["client_secret"],
        serde_json::json!({ "kind": "keyring", "store": "keyutils", "service": "mailtun-oauth-client" })
    );
    assert_eq!(idp["oauth"]["scope"], "mail offline_access");
    assert_eq!(idp["oauth"]["ca_file"], "/etc/idp-ca.pem");
    assert_eq!(idp["serve"]["listen"], serde_json::Value::Null);

    let out = run_mailtun(&["--config", c, "accounts"], b"");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = out.stdout_text();
    for want in [
        "  serve           listen 127.0.0.1:1143, listen_preauth no, max_connections 4, drain_secs 3, local_password command `",
        "kinit yes, kinit_cache account,",
        "  oauth           provider microsoft (endpoints and scope preset), client_id 0000-aaaa, client_secret command `",
        "  oauth           issuer https://idp.example.org (endpoints discovered), client_id mailtun, client_secret keyring (keyutils, service mailtun-oauth-client), scope `mail offline_access`, flow (device when the provider has the endpoint, else browser), ca_file /etc/idp-ca.pem, tokens in keyring (keyutils)\n",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    for shown in [&json, &text, &out.stderr] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    assert!(!ran.exists(), "`accounts` ran a secret command");
}
