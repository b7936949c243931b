//! Every failure class says what to do: Kerberos (no ticket, unknown service principal,
//! KDC unreachable, unknown realm, clock skew under libfaketime), TLS (unknown CA, name mismatch, expired, not yet
//! valid, pin mismatch), network (refused, DNS, timeout), and a server's refusal. Each
//! runs the real binary against the harness or an in-process server, and checks the
//! message, the hint and the exit code.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::fake_server::{Act, Cert, FakeServer, HOST, pki, send};
use crate::harness::{harness, mailtun_bin, replace_in_file};
use crate::{EXIT_AUTH, EXIT_NETWORK};

struct Out {
    stderr: String,
    code: Option<i32>,
}

/// Runs `mailtun --config CONFIG check test` with `krb5_config` (the harness's by
/// default) and no ambient ticket cache.
fn check(config: &Path, krb5_config: Option<&Path>) -> Out {
    check_at(config, krb5_config, None)
}

/// Like [`check`]; with `clock_offset` (`+1h`...), under libfaketime (`faketime -f`), so
/// that every clock mailtun reads (Kerberos, TLS, timers) is that far from the KDC's.
fn check_at(config: &Path, krb5_config: Option<&Path>, clock_offset: Option<&str>) -> Out {
    let h = harness();
    let krb5 = krb5_config.map_or_else(|| PathBuf::from(h.get("KRB5_CONFIG")), Path::to_path_buf);
    let mut command = match clock_offset {
        Some(offset) => {
            let mut c = Command::new("faketime");
            c.args(["-f", offset, mailtun_bin()]);
            c
        }
        None => Command::new(mailtun_bin()),
    };
    let out = command
        .args(["--config", config.to_str().unwrap(), "check", "test"])
        .env("KRB5_CONFIG", krb5)
        .env("KRB5CCNAME", "FILE:/nonexistent/ambient-ccache")
        .env_remove("MAILTUN_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run mailtun (under `faketime`: scripts/install-deps installs it)");
    Out {
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

fn hint(out: &Out) -> &str {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("mailtun: hint: "))
        .unwrap_or_else(|| panic!("no hint in: {}", out.stderr))
}

fn assert_has(out: &Out, needles: &[&str]) {
    for n in needles {
        assert!(out.stderr.contains(n), "{n:?} missing from: {}", out.stderr);
    }
}

/// A harness account with a password file, for `gssapi.kinit` and the password mechanisms.
fn account(dir: &Path, extra: &str, gssapi: &str) -> PathBuf {
    let h = harness();
    let password = h.password_command(dir);
    h.config(dir, &format!("{password}\n{extra}"), gssapi)
}

#[test]
fn kerberos_unknown_service_principal_is_named_with_a_hint_at_gssapi_service() {
    let dir = tempfile::tempdir().unwrap();
    let config = account(dir.path(), "", "service = \"nosuch\"");
    let out = check(&config, None);
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert_has(&out, &["nosuch/mail.example.test@EXAMPLE.TEST"]);
    assert!(hint(&out).contains("gssapi.service"), "{}", out.stderr);
    assert!(hint(&out).contains("`host`"), "{}", out.stderr);
}

#[test]
fn kerberos_without_a_ticket_suggests_kinit_and_gssapi_kinit() {
    let dir = tempfile::tempdir().unwrap();
    let config = account_with_ccache(
        dir.path(),
        &format!("FILE:{}/no-such-cache", dir.path().display()),
    );
    let out = check(&config, None);
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert!(hint(&out).contains("kinit PRINCIPAL"), "{}", out.stderr);
    assert!(hint(&out).contains("gssapi.kinit"), "{}", out.stderr);
}

/// alice's TGT from the harness's KDC, with the real clock, into `cache` (`kinit ARGS`).
fn kinit(cache: &str, args: &[&str]) {
    let h = harness();
    let mut kinit = Command::new("kinit")
        .args(args)
        .args(["-c", cache, "alice"])
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kinit (krb5-user)");
    use std::io::Write;
    writeln!(kinit.stdin.take().unwrap(), "{}", h.get("PASSWORD")).unwrap();
    assert!(kinit.wait().unwrap().success());
}

/// The harness account with its ticket cache replaced by `cache`.
fn account_with_ccache(dir: &Path, cache: &str) -> PathBuf {
    let h = harness();
    let config = h.config(dir, "", "");
    replace_in_file(&config, h.get("ALICE_CCACHE"), cache);
    config
}

#[test]
fn kerberos_expired_ticket_says_to_renew_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = format!("FILE:{}/short-lived", dir.path().display());
    // A real ticket from the KDC that lives two seconds.
    kinit(&cache, &["-l", "2s"]);
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let config = account_with_ccache(dir.path(), &cache);
    let out = check(&config, None);
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert_has(&out, &["expired"]);
    assert!(
        hint(&out).starts_with("renew the Kerberos ticket"),
        "{}",
        out.stderr
    );
}

/// Lines of the harness log `name` (in `LOG_DIR`) that contain `needle`.
fn log_lines(name: &str, needle: &str) -> usize {
    let log = harness().path("LOG_DIR").join(name);
    std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("read {}: {e}", log.display()))
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// The hint of a clock-skew failure: what differs, by how much, and what to do.
fn assert_clock_skew_hint(out: &Out) {
    let hint = hint(out);
    for want in [
        "clocks of this machine and the KDC",
        "5 minutes",
        "synchronise",
        "NTP",
    ] {
        assert!(hint.contains(want), "{want:?} missing from: {}", out.stderr);
    }
}

// Clock skew, for real: mailtun runs under libfaketime an hour ahead of the harness's KDC
// and Dovecot. An hour *ahead*, because the harness's certificates are valid from the
// moment it started: a clock behind would fail the TLS check (not valid yet) first. An hour
// ahead is well inside their validity, so TLS verifies and Kerberos is what fails. (MIT
// krb5 1.20, observed: `kdc_timesync`, on by default, makes the library adopt the KDC's
// time from an AS reply and store the offset in the ccache header; a ticket obtained while
// the clocks agreed carries an offset of 0, so a clock that moves afterwards reaches the
// KDC unchanged.)

#[test]
fn kerberos_clock_skew_at_the_kdc_and_at_the_server_says_to_synchronise_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    // A fresh cache with the TGT only: the first step must ask the KDC for the service
    // ticket (TGS-REQ), whose authenticator carries the skewed time.
    let cache = format!("FILE:{}/fresh", dir.path().display());
    kinit(&cache, &[]);
    let config = account_with_ccache(dir.path(), &cache);
    let target = "imap/mail.example.test@EXAMPLE.TEST";
    let kdc_said = format!("for {target}, Clock skew too great");
    let kdc_before = log_lines("krb5kdc.log", &kdc_said);

    let out = check_at(&config, None, Some("+1h"));
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert_has(
        &out,
        &[
            "account `test`: authentication: GSSAPI",
            &format!("the KDC refused a ticket for {target}"),
            "Clock skew too great",
        ],
    );
    assert!(!out.stderr.contains("TLS"), "TLS failed: {}", out.stderr);
    assert_clock_skew_hint(&out);
    // The KDC itself refused the TGS request (MIT's client sends it twice: with
    // referrals, then without; KRB5_TRACE shows both answered "Clock skew too great").
    assert!(log_lines("krb5kdc.log", &kdc_said) > kdc_before);

    // The same cache with the real clock: the skew was the only fault. The service ticket
    // is now in the cache.
    let out = check_at(&config, None, None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    // An hour ahead again: no KDC on the way, the AP-REQ reaches Dovecot, whose acceptor
    // refuses it and says only AUTHENTICATIONFAILED. The hint names the clock among the
    // causes.
    let server_said = "While processing incoming data: Clock skew too great";
    let server_before = log_lines("dovecot.log", server_said);
    let out = check_at(&config, None, Some("+1h"));
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert_has(
        &out,
        &["the server rejected GSSAPI", "AUTHENTICATIONFAILED"],
    );
    let hint = hint(&out);
    assert!(hint.contains("principal"), "{}", out.stderr);
    assert!(hint.contains("clock"), "{}", out.stderr);
    assert!(hint.contains("NTP"), "{}", out.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while log_lines("dovecot.log", server_said) == server_before {
        assert!(
            std::time::Instant::now() < deadline,
            "Dovecot logged no clock skew"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn kerberos_kinit_under_clock_skew_is_corrected_unless_kdc_timesync_is_off() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = kinit_account(dir.path(), "alice@EXAMPLE.TEST");

    // krb5.conf as shipped (`kdc_timesync` on): the library takes the KDC's time from the
    // AS reply and uses it for the TGS request and the AP-REQ to Dovecot.
    let out = check_at(&config, None, Some("+1h"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    // With `kdc_timesync = 0` the library refuses the KDC's reply itself.
    let krb5 = dir.path().join("krb5.conf");
    let text = std::fs::read_to_string(h.get("KRB5_CONFIG")).unwrap();
    assert!(
        text.contains("[libdefaults]\n"),
        "unexpected krb5.conf: {text}"
    );
    let text = text.replace("[libdefaults]\n", "[libdefaults]\n    kdc_timesync = 0\n");
    std::fs::write(&krb5, text).unwrap();
    let out = check_at(&config, Some(&krb5), Some("+1h"));
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert_has(
        &out,
        &[
            "account `test`: authentication: GSSAPI",
            "getting a ticket for alice@EXAMPLE.TEST with the password failed",
            "Clock skew too great in KDC reply",
        ],
    );
    assert_clock_skew_hint(&out);
    assert!(!out.stderr.contains(h.get("PASSWORD")));
}

/// An account with `gssapi.kinit` for `principal` and a credential cache that does not
/// exist yet, so the ticket must come from the password.
fn kinit_account(dir: &Path, principal: &str) -> PathBuf {
    let config = account(
        dir,
        "",
        &format!("kinit = true\nprincipal = \"{principal}\""),
    );
    replace_in_file(
        &config,
        harness().get("ALICE_CCACHE"),
        &format!("FILE:{}/no-such-cache", dir.display()),
    );
    config
}

/// The harness's krb5.conf with the realm's KDC moved to a closed port.
fn krb5_conf_with_closed_kdc(dir: &Path) -> PathBuf {
    let h = harness();
    let text = std::fs::read_to_string(h.get("KRB5_CONFIG")).unwrap();
    let kdc = format!("kdc = {}:{}", h.get("KDC_ADDR"), h.get("KDC_PORT"));
    assert!(text.contains(&kdc), "unexpected krb5.conf: {text}");
    let path = dir.join("krb5.conf");
    std::fs::write(
        &path,
        text.replace(&kdc, &format!("kdc = {}:1", h.get("KDC_ADDR"))),
    )
    .unwrap();
    path
}

#[test]
fn kerberos_kdc_unreachable_says_to_check_the_kdc() {
    let dir = tempfile::tempdir().unwrap();
    let config = kinit_account(dir.path(), "alice@EXAMPLE.TEST");
    let krb5 = krb5_conf_with_closed_kdc(dir.path());
    let out = check(&config, Some(&krb5));
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert!(hint(&out).contains("KDC"), "{}", out.stderr);
    assert!(!out.stderr.contains(harness().get("PASSWORD")));
}

#[test]
fn kerberos_wrong_realm_says_to_check_the_realm() {
    let dir = tempfile::tempdir().unwrap();
    let config = kinit_account(dir.path(), "alice@NO-SUCH.REALM");
    let out = check(&config, None);
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert_has(&out, &["NO-SUCH.REALM"]);
    assert!(hint(&out).contains("realm"), "{}", out.stderr);
}

/// An account for an in-process server on the SSL port.
fn fake_account(dir: &Path, tls_port: u16, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[accounts.test]\nhost = \"{HOST}\"\nconnect = \"127.0.0.1\"\nplain_port = 1\ntls_port = {tls_port}\ntls = [\"implicit\"]\nca_file = \"{ca}\"\nuser = \"alice\"\ntimeout_secs = 2\n{extra}\n",
            ca = pki().ca_file.display()
        ),
    )
    .unwrap();
    path
}

fn tls_failure(cert: Cert, extra: &str) -> Out {
    let server = FakeServer::start(vec![Act::Tls(cert)]);
    let dir = tempfile::tempdir().unwrap();
    let out = check(&fake_account(dir.path(), server.port, extra), None);
    server.finish();
    assert_eq!(out.code, Some(EXIT_NETWORK), "{cert:?}: {}", out.stderr);
    out
}

#[test]
fn tls_unknown_ca_names_the_issuer_and_suggests_ca_file() {
    let out = tls_failure(Cert::UnknownCa, "");
    assert_has(&out, &["CN=mailtun unknown CA", "does not trust"]);
    assert!(hint(&out).contains("ca_file"), "{}", out.stderr);
}

#[test]
fn tls_name_mismatch_lists_the_names_in_the_certificate() {
    let out = tls_failure(Cert::WrongName, "");
    assert_has(
        &out,
        &["not valid for mail.example.test", "other.example.test"],
    );
    assert!(hint(&out).contains("`host`"), "{}", out.stderr);
}

#[test]
fn tls_expired_and_not_yet_valid_show_the_dates() {
    let out = tls_failure(Cert::Expired, "");
    assert_has(&out, &["has expired", "valid until 2001-01-01"]);
    assert!(hint(&out).contains("date and time"), "{}", out.stderr);
    let out = tls_failure(Cert::NotYetValid, "");
    assert_has(&out, &["not valid yet", "valid from 2090-01-01"]);
}

#[test]
fn tls_pin_mismatch_shows_both_fingerprints() {
    let pin = "AB:".repeat(31) + "AB";
    let out = tls_failure(Cert::Good, &format!("pin_sha256 = \"{pin}\""));
    let actual = mailtun::transport::hex(&pki().good_sha256);
    assert_has(&out, &[&pin, &actual]);
    assert!(hint(&out).contains("pin_sha256"), "{}", out.stderr);
}

#[test]
fn network_refused_dns_and_timeout_name_host_and_port() {
    // Refused: nothing listens on port 1.
    let dir = tempfile::tempdir().unwrap();
    let out = check(&fake_account(dir.path(), 1, ""), None);
    assert_eq!(out.code, Some(EXIT_NETWORK), "{}", out.stderr);
    assert_has(&out, &["cannot connect to 127.0.0.1 port 1"]);
    assert!(hint(&out).contains("`connect`"), "{}", out.stderr);

    // DNS: a name that cannot exist (RFC 2606).
    let path = fake_account(dir.path(), 993, "");
    replace_in_file(
        &path,
        "connect = \"127.0.0.1\"",
        "connect = \"nosuch.invalid\"",
    );
    let out = check(&path, None);
    assert_eq!(out.code, Some(EXIT_NETWORK), "{}", out.stderr);
    assert_has(&out, &["cannot resolve nosuch.invalid", "port 993"]);

    // Timeout: a server that accepts and never speaks.
    let server = FakeServer::silent();
    let out = check(&fake_account(dir.path(), server.port, ""), None);
    server.finish();
    assert_eq!(out.code, Some(EXIT_NETWORK), "{}", out.stderr);
    let want = "no progress from 127.0.0.1 port";
    assert_has(&out, &[want, "within 2 s"]);
}

#[test]
fn a_password_the_server_refuses_shows_its_text_and_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = "Wrong-Secret.987";
    let pw = dir.path().join("wrong");
    std::fs::write(&pw, format!("{wrong}\n")).unwrap();
    let config = harness().config(
        dir.path(),
        &format!(
            "tls = [\"implicit\"]\nauth = [\"plain\"]\npassword = {{ command = \"cat {}\" }}",
            pw.display()
        ),
        "",
    );
    let out = check(&config, None);
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert_has(&out, &["the server rejected PLAIN", "uthentication failed"]);
    assert!(!out.stderr.contains(wrong), "{}", out.stderr);
}

#[test]
fn a_server_that_sends_a_greeting_then_refuses_is_a_protocol_error_with_its_text() {
    let server = FakeServer::start(vec![
        Act::Tls(Cert::Good),
        send("* BYE [UNAVAILABLE] maintenance until noon\r\n"),
        Act::Close,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = check(&fake_account(dir.path(), server.port, ""), None);
    server.finish();
    assert_has(&out, &["maintenance until noon"]);
}
