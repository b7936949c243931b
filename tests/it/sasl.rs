//! Every password mechanism Dovecot offers, through the tunnel, over both TLS methods;
//! and the refusals of the policy. The password comes from a password command.

use crate::harness::{harness, mailtun_bin, replace_in_file, run_mailtun, run_tunnel};

use crate::EXIT_POLICY;
use base64::Engine;

fn account(dir: &std::path::Path, tls: &str, auth: &str, extra: &str) -> std::path::PathBuf {
    let h = harness();
    let password = h.password_command(dir);
    h.config(
        dir,
        &format!("tls = [\"{tls}\"]\nauth = {auth}\n{password}\n{extra}"),
        "",
    )
}

/// No trace, at the highest verbosity, shows the password or its base64.
pub fn assert_no_secret(trace: &str) {
    let pw = harness().get("PASSWORD");
    let b64 = base64::engine::general_purpose::STANDARD;
    assert!(!trace.contains(pw), "the password leaked into the trace");
    for form in [
        b64.encode(pw),
        b64.encode(format!("\0alice\0{pw}")),
        b64.encode(format!("alice\0alice\0{pw}")),
    ] {
        assert!(
            !trace.contains(&form),
            "an encoding of the password leaked into the trace"
        );
    }
}

/// A `-vv` trace of an authentication: every SASL payload is shown as the marker, and
/// no base64 run long enough to be a token, a proof or a password appears anywhere.
fn assert_payloads_hidden(trace: &str, case: &str) {
    assert!(
        trace.contains("[SASL payload]"),
        "{case}: the exchange is traced with markers: {trace}"
    );
    for word in trace.split(|c: char| c.is_whitespace() || c == '"' || c == '(' || c == ')') {
        let b64ish = word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
        assert!(
            !(b64ish && word.len() >= 24),
            "{case}: something like a SASL payload is in the trace: {word}"
        );
    }
}

#[test]
fn every_password_mechanism_works_over_both_tls_methods_without_leaking_the_password() {
    for mech in ["scram-sha-256", "scram-sha-1", "cram-md5", "plain", "login"] {
        for tls in ["starttls", "implicit"] {
            let dir = tempfile::tempdir().unwrap();
            let config = account(dir.path(), tls, &format!("[\"{mech}\"]"), "");
            let out = run_tunnel(&config, &["-vv"], b"a LOGOUT\r\n");
            assert_eq!(out.code, Some(0), "{mech} over {tls}: {}", out.stderr);
            let first = out.first_line();
            assert!(
                first.contains(&format!(
                    "with {} over TLSv1.3 ({tls}",
                    mech.to_ascii_uppercase()
                )),
                "{first}"
            );
            let strong = !matches!(mech, "plain" | "login" | "cram-md5");
            let expected = if strong {
                "protection tls+strong"
            } else {
                "protection tls"
            };
            assert!(first.ends_with(expected), "{mech}: {first}");
            assert!(
                out.stdout_text().contains("a OK Logout"),
                "{}",
                out.stdout_text()
            );
            assert_no_secret(&out.stderr);
            assert_payloads_hidden(&out.stderr, &format!("{mech} over {tls}"));
        }
    }
}

/// GSSAPI at `-vv`, with a ticket from the cache and with one obtained from the password
/// (`gssapi.kinit`), on IMAP, POP3 and SMTP; and the password mechanisms on POP3 and
/// SMTP: the password, its base64 forms and every token stay out of the trace.
#[test]
fn gssapi_and_the_pop3_and_smtp_exchanges_at_vv_show_markers_only() {
    let h = harness();
    let cases = [
        ("imap", "[\"gssapi\"]", ""),
        ("imap", "[\"gssapi\"]", "kinit"),
        ("pop3", "[\"gssapi\"]", "kinit"),
        ("smtp", "[\"gssapi\"]", "kinit"),
        ("pop3", "[\"scram-sha-256\"]", ""),
        ("pop3", "[\"plain\"]", ""),
        ("pop3", "[\"login\"]", ""),
        ("smtp", "[\"scram-sha-1\"]", ""),
        ("smtp", "[\"plain\"]", ""),
        ("smtp", "[\"login\"]", ""),
        ("smtp", "[\"cram-md5\"]", ""),
    ];
    for (protocol, auth, how) in cases {
        let case = format!("{protocol} {auth} {how}");
        let dir = tempfile::tempdir().unwrap();
        let config = account(
            dir.path(),
            "implicit",
            auth,
            &format!("protocol = \"{protocol}\""),
        );
        if how == "kinit" {
            // No ticket in the cache: the password goes to the KDC for one.
            replace_in_file(
                &config,
                h.get("ALICE_CCACHE"),
                &format!("FILE:{}/none", dir.path().display()),
            );
            let text = std::fs::read_to_string(&config).unwrap()
                + "kinit = true\nprincipal = \"alice@EXAMPLE.TEST\"\n";
            std::fs::write(&config, text).unwrap();
        }
        let out = run_mailtun(
            &["-vv", "--config", config.to_str().unwrap(), "check", "test"],
            b"",
        );
        assert_eq!(out.code, Some(0), "{case}: {}", out.stderr);
        assert!(
            out.stdout_text().contains("authenticated with"),
            "{case}: {}",
            out.stdout_text()
        );
        assert_no_secret(&out.stderr);
        assert_no_secret(&out.stdout_text());
        assert_payloads_hidden(&out.stderr, &case);
    }
}

#[test]
fn auto_prefers_gssapi_then_falls_back_to_scram_without_a_ticket() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = account(dir.path(), "starttls", "\"auto\"", "");
    let out = run_tunnel(&config, &["-v"], b"a LOGOUT\r\n");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.first_line().contains("with GSSAPI"),
        "{}",
        out.first_line()
    );
    // Without a ticket, GSSAPI cannot start; SCRAM-SHA-256 is next and is reported.
    replace_in_file(
        &config,
        h.get("ALICE_CCACHE"),
        &format!("FILE:{}/none", dir.path().display()),
    );
    let out = run_tunnel(&config, &["-v"], b"a LOGOUT\r\n");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.first_line().contains("with SCRAM-SHA-256"),
        "{}",
        out.first_line()
    );
    assert!(out.stderr.contains("GSSAPI cannot start"), "{}", out.stderr);
}

#[test]
fn only_plain_offered_is_refused_when_the_account_wants_tls_and_strong() {
    let dir = tempfile::tempdir().unwrap();
    let config = account(
        dir.path(),
        "implicit",
        "[\"plain\", \"scram-sha-256\"]",
        "min_protection = \"tls+strong\"",
    );
    // Dovecot offers SCRAM too; restrict what it can pick to PLAIN by listing PLAIN first
    // and asking for a SCRAM variant the server lacks.
    replace_in_file(
        &config,
        "[\"plain\", \"scram-sha-256\"]",
        "[\"plain\", \"scram-sha-256-plus\"]",
    );
    let out = run_tunnel(&config, &["-vv"], b"a LOGOUT\r\n");
    assert_eq!(out.code, Some(EXIT_POLICY), "{}", out.stderr);
    assert!(
        out.first_line().starts_with("* BYE [PRIVACYREQUIRED]"),
        "{}",
        out.first_line()
    );
    assert!(out.stderr.contains("the server offers"), "{}", out.stderr);
    assert!(
        out.stderr.contains("PLAIN"),
        "names what was offered: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("AUTHENTICATE"),
        "nothing was sent: {}",
        out.stderr
    );
    assert_no_secret(&out.stderr);
}

/// A harness account on the SSL port whose SCRAM password is in the keyring `store`.
fn keyring_account(dir: &std::path::Path, store: &str) -> std::path::PathBuf {
    harness().config(
        dir,
        &format!("tls = [\"implicit\"]\nauth = [\"scram-sha-256\"]\npassword = {{ keyring = true }}\nkeyring_store = \"{store}\""),
        "",
    )
}

#[test]
fn a_password_from_the_kernel_keyring_set_with_mailtun_password_set() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = keyring_account(dir.path(), "keyutils");
    let bin = mailtun_bin();
    // A fresh session keyring, as the field notes require for keyutils.
    let script = format!(
        "printf '%s\\n' \"$PW\" | {bin} --config {c} password set test && unset PW && printf 'a LOGOUT\\r\\n' | {bin} --config {c} tunnel test && {bin} --config {c} password delete test",
        c = config.display()
    );
    let out = std::process::Command::new("keyctl")
        .args(["session", "-", "sh", "-c", &script])
        .env("PW", h.get("PASSWORD"))
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .output()
        .expect("keyctl (package keyutils)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("with SCRAM-SHA-256"), "{stdout}");
}

#[test]
fn a_password_from_the_secret_service_set_with_mailtun_password_set() {
    // A private session bus and a gnome-keyring-daemon whose login keyring is created and
    // unlocked from stdin, in a throw-away HOME: the real Secret Service store, headless.
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = keyring_account(dir.path(), "secret-service");
    let bin = mailtun_bin();
    let script = format!(
        "printf keyring-unlock | gnome-keyring-daemon --unlock --components=secrets >/dev/null && printf '%s\\n' \"$PW\" | {bin} --config {c} password set test && unset PW && printf 'a LOGOUT\\r\\n' | {bin} -vv --config {c} tunnel test && {bin} --config {c} password delete test && ! printf 'a LOGOUT\\r\\n' | {bin} --config {c} tunnel test >/dev/null 2>&1",
        c = config.display()
    );
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let out = std::process::Command::new("dbus-run-session")
        .args(["--", "sh", "-c", &script])
        .env("PW", h.get("PASSWORD"))
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_RUNTIME_DIR", &home)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .output()
        .expect("dbus-run-session (packages dbus, gnome-keyring)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("with SCRAM-SHA-256"), "{stdout}");
    assert_no_secret(&stderr);
}
