//! The protocols' own password logins (IMAP `LOGIN`, POP3 `USER`/`PASS` and `APOP`)
//! against the real Dovecot, through the tunnel, named in `auth` (never in "auto"),
//! only over verified TLS, with the password in no trace. The harness's Dovecot lists
//! `apop` in `auth_mechanisms` (its passdb is `{PLAIN}`), so it greets POP3 clients with
//! an APOP timestamp.

use crate::EXIT_CONFIG;
use crate::harness::{harness, replace_in_file, run_tunnel};
use crate::sasl::assert_no_secret;

fn account(
    dir: &std::path::Path,
    protocol: &str,
    tls: &str,
    auth: &str,
    extra: &str,
) -> std::path::PathBuf {
    let h = harness();
    let password = h.password_command(dir);
    h.config(
        dir,
        &format!(
            "protocol = \"{protocol}\"\ntls = [\"{tls}\"]\nauth = {auth}\n{password}\n{extra}"
        ),
        "",
    )
}

/// Dovecot's log lines since `from` (byte offset).
fn dovecot_log_since(from: u64) -> String {
    let path = format!("{}/dovecot.log", harness().get("LOG_DIR"));
    let text = std::fs::read(&path).unwrap_or_default();
    String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned()
}

fn dovecot_log_len() -> u64 {
    std::fs::metadata(format!("{}/dovecot.log", harness().get("LOG_DIR")))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[test]
fn imap_login_command_over_both_tls_methods() {
    for tls in ["starttls", "implicit"] {
        let dir = tempfile::tempdir().unwrap();
        let c = account(dir.path(), "imap", tls, "[\"imap-login\"]", "");
        let out = run_tunnel(&c, &["-vv"], b"a LOGOUT\r\n");
        assert_eq!(out.code, Some(0), "{tls}: {}", out.stderr);
        let first = out.first_line();
        assert!(
            first.contains(&format!("with IMAP-LOGIN over TLSv1.3 ({tls}")),
            "{first}"
        );
        assert!(first.ends_with("protection tls"), "{first}");
        assert!(out.stdout_text().contains("a OK Logout"));
        assert!(
            out.stderr.contains("C: m3 LOGIN alice [password]")
                || out.stderr.contains("LOGIN alice [password]"),
            "{}",
            out.stderr
        );
        assert_no_secret(&out.stderr);
    }
}

#[test]
fn imap_login_is_never_sent_without_tls() {
    // `tls = ["none"]` accepts only GSSAPI (the one mechanism with a security layer):
    // LOGIN, and SCRAM with it, is a configuration error, named.
    let dir = tempfile::tempdir().unwrap();
    let c = account(
        dir.path(),
        "imap",
        "none",
        "[\"imap-login\", \"scram-sha-256\"]",
        "min_protection = \"strong\"",
    );
    let out = run_tunnel(&c, &[], b"");
    assert_eq!(out.code, Some(EXIT_CONFIG), "{}", out.stderr);
    assert!(
        out.stderr.contains("\"imap-login\", \"scram-sha-256\""),
        "{}",
        out.stderr
    );
    // Listed alone, the configuration refuses it as not strong.
    let c = account(
        dir.path(),
        "imap",
        "none",
        "[\"imap-login\"]",
        "min_protection = \"strong\"",
    );
    let out = run_tunnel(&c, &[], b"");
    assert_eq!(out.code, Some(EXIT_CONFIG), "{}", out.stderr);
    assert!(out.stderr.contains("strong mechanism"), "{}", out.stderr);
}

#[test]
fn an_account_without_tls_that_skipped_the_configuration_check_still_gets_no_cleartext_session() {
    // The same account forced past the load-time check (as any future way to build an
    // account could): against the real Dovecot, which offers SCRAM-SHA-256 without TLS,
    // neither LOGIN nor SCRAM runs, and the session is refused as a policy failure.
    let dir = tempfile::tempdir().unwrap();
    let c = account(
        dir.path(),
        "imap",
        "starttls",
        "[\"imap-login\", \"scram-sha-256\"]",
        "min_protection = \"strong\"",
    );
    let mut acct = mailtun::config::Config::load(&c)
        .unwrap()
        .account("test")
        .unwrap()
        .clone();
    acct.tls = vec![mailtun::config::TlsMethod::None];
    let log_from = dovecot_log_len();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(mailtun::session::establish(&acct));
    let failure = match result {
        Ok(est) => panic!(
            "a session without TLS was established with {} (layer: {})",
            est.mechanism,
            est.layer.is_some()
        ),
        Err(f) => f,
    };
    assert_eq!(failure.class(), mailtun::error::Class::Policy, "{failure}");
    let log = dovecot_log_since(log_from);
    assert!(
        !log.lines()
            .any(|l| l.contains("imap-login: Info: Login:") && !l.contains(", TLS")),
        "Dovecot saw a login without TLS: {log}"
    );
}

#[test]
fn pop3_user_pass_over_stls_and_apop_over_both_tls_methods() {
    let h = harness();
    let cases = [
        ("starttls", "user-pass", "USER-PASS"),
        ("implicit", "user-pass", "USER-PASS"),
        ("starttls", "apop", "APOP"),
        ("implicit", "apop", "APOP"),
    ];
    for (tls, name, shown) in cases {
        let dir = tempfile::tempdir().unwrap();
        let c = account(dir.path(), "pop3", tls, &format!("[\"{name}\"]"), "");
        let log_from = dovecot_log_len();
        let script = b"USER alice\r\nPASS placeholder\r\nSTAT\r\nQUIT\r\n";
        let out = run_tunnel(&c, &["-vv"], script);
        assert_eq!(out.code, Some(0), "{name} over {tls}: {}", out.stderr);
        let first = out.first_line();
        assert!(
            first.starts_with(&format!(
                "+OK mailtun: alice authenticated to mail.example.test with {shown} over TLSv1.3 ({tls}"
            )),
            "{first}"
        );
        let stat = format!("+OK {} ", h.get("INBOX_MESSAGES"));
        assert!(out.stdout_text().contains(&stat), "{}", out.stdout_text());
        assert_no_secret(&out.stderr);
        if name == "apop" {
            assert!(out.stderr.contains("APOP alice [digest]"), "{}", out.stderr);
            let log = dovecot_log_since(log_from);
            assert!(log.contains("method=APOP"), "{log}");
        } else {
            assert!(out.stderr.contains("PASS [password]"), "{}", out.stderr);
        }
    }
}

#[test]
fn auto_never_picks_a_login_command() {
    // A POP3 account on "auto" with only a password: SCRAM, never USER/PASS or APOP.
    let dir = tempfile::tempdir().unwrap();
    let c = account(dir.path(), "pop3", "implicit", "\"auto\"", "");
    replace_in_file(
        &c,
        harness().get("ALICE_CCACHE"),
        &format!("FILE:{}/none", dir.path().display()),
    );
    let out = run_tunnel(&c, &["-v"], b"QUIT\r\n");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.first_line().contains("with SCRAM-SHA-256"),
        "{}",
        out.first_line()
    );
    assert!(!out.stderr.contains("USER-PASS") && !out.stderr.contains("APOP"));
}
