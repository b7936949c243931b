//! The IMAP tunnel against the real KDC and Dovecot: both TLS methods, the large message,
//! and the failures a user meets first.

use crate::harness::{
    Output, harness, literal_after, replace_in_file, run_mailtun_steps, run_tunnel,
};
use crate::{EXIT_AUTH, EXIT_CONFIG, EXIT_NETWORK};

/// Runs the tunnel of the harness account with `extra` settings, with `stdin`.
fn tunnel_with(extra: &str, stdin: &[u8]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = harness().config(dir.path(), extra, "");
    run_tunnel(&config, &[], stdin)
}

fn fetch_big_message_through(tls: &str) {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = h.config(dir.path(), &format!("tls = [\"{tls}\"]"), "");
    let uid = h.get("BIG_MESSAGE_UID");
    let fetch = format!("a SELECT INBOX\r\nb UID FETCH {uid} BODY.PEEK[]\r\n");
    let out = run_mailtun_steps(
        &["--config", config.to_str().unwrap(), "tunnel", "test"],
        &[
            (fetch.as_bytes(), b"\r\nb OK"),
            (b"c LOGOUT\r\n", b"\r\nc OK"),
        ],
    );
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let first = out.first_line();
    assert!(
        first.starts_with("* PREAUTH [CAPABILITY IMAP4rev1 "),
        "{first}"
    );
    assert!(first.contains("with GSSAPI over TLSv1.3"), "{first}");
    assert!(first.contains(&format!("({tls} on port")), "{first}");
    assert!(first.contains("protection tls+strong"), "{first}");
    let text = out.stdout_text();
    assert!(text.contains("a OK"), "SELECT failed: {text:.2000}");
    let expected = std::fs::read(h.path("BIG_MESSAGE")).unwrap();
    assert!(
        expected.len() > 20_000_000,
        "the harness's big message is {} bytes",
        expected.len()
    );
    let got = literal_after(&out.stdout, b"BODY[]").expect("a BODY[] literal in the FETCH reply");
    assert!(
        got == expected.as_slice(),
        "the fetched message differs from the stored one"
    );
    assert!(text.contains("c OK"), "LOGOUT not completed");
}

#[test]
fn starttls_then_gssapi_fetches_the_20mb_message_byte_identical() {
    fetch_big_message_through("starttls");
}

#[test]
fn implicit_tls_then_gssapi_fetches_the_20mb_message_byte_identical() {
    fetch_big_message_through("implicit");
}

#[test]
fn without_a_kerberos_ticket_the_client_gets_bye_and_nothing_is_sent_to_authenticate() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let empty = format!("FILE:{}/empty-ccache", dir.path().display());
    let config = h.config(dir.path(), "", "");
    replace_in_file(&config, h.get("ALICE_CCACHE"), &empty);
    let out = run_tunnel(&config, &["-vv"], b"");
    assert_eq!(out.code, Some(EXIT_AUTH), "stderr: {}", out.stderr);
    let first = out.first_line();
    assert!(
        first.starts_with(
            "* BYE [AUTHENTICATIONFAILED] mailtun: GSSAPI: Kerberos: no usable Kerberos ticket"
        ),
        "{first}"
    );
    assert!(
        out.stderr.contains("account `test`: authentication:"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("kinit"), "no remedy in: {}", out.stderr);
    // The -vv trace shows every command sent: TLS was set up, no AUTHENTICATE went out.
    assert!(out.stderr.contains("C: m2 CAPABILITY"), "{}", out.stderr);
    assert!(!out.stderr.contains("AUTHENTICATE"), "{}", out.stderr);
    assert_eq!(
        out.stdout_text().lines().count(),
        1,
        "stdout carries the BYE only"
    );
}

#[test]
fn a_server_certificate_from_an_unknown_ca_is_refused_before_anything_is_sent() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    for tls in ["starttls", "implicit"] {
        let config = h.config(dir.path(), &format!("tls = [\"{tls}\"]"), "");
        // Trust only a CA that did not issue Dovecot's certificate.
        replace_in_file(&config, h.get("CA_FILE"), h.get("UNKNOWN_CA_FILE"));
        let out = run_tunnel(&config, &["-vv"], b"");
        assert_eq!(out.code, Some(EXIT_NETWORK), "{tls}: {}", out.stderr);
        assert!(
            out.first_line().starts_with("* BYE [UNAVAILABLE] mailtun:"),
            "{}",
            out.first_line()
        );
        assert!(out.stderr.contains("TLS handshake"), "{}", out.stderr);
        assert!(out.stderr.contains("does not trust"), "{}", out.stderr);
        assert!(out.stderr.contains("ca_file"), "no remedy: {}", out.stderr);
        assert!(!out.stderr.contains("AUTHENTICATE"), "{}", out.stderr);
    }
}

#[test]
fn an_unreachable_server_gives_bye_with_host_and_port() {
    // Nothing listens on port 1 of the harness address.
    let out = tunnel_with(
        "tls = [\"starttls\", \"implicit\"]\nplain_port = 1\ntls_port = 2",
        b"",
    );
    assert_eq!(out.code, Some(EXIT_NETWORK), "{}", out.stderr);
    assert!(
        out.first_line()
            .starts_with("* BYE [UNAVAILABLE] mailtun: cannot connect to"),
        "{}",
        out.first_line()
    );
    assert!(out.stderr.contains("port 2"), "{}", out.stderr);
    assert!(
        out.stderr.contains("tried starttls on port 1 first"),
        "both methods are reported: {}",
        out.stderr
    );
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
}

#[test]
fn an_unreachable_plain_port_falls_back_to_the_tls_port() {
    let out = tunnel_with(
        "tls = [\"starttls\", \"implicit\"]\nplain_port = 1",
        b"a LOGOUT\r\n",
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.first_line().contains("(implicit on port 993)"),
        "{}",
        out.first_line()
    );
}

#[test]
fn a_configuration_error_names_file_line_and_account() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[accounts.test]\nhost = \"h\"\ntsl = [\"starttls\"]\n",
    )
    .unwrap();
    let out = run_tunnel(&config, &[], b"");
    assert_eq!(out.code, Some(EXIT_CONFIG));
    assert!(
        out.first_line().starts_with("* BYE [UNAVAILABLE] mailtun:"),
        "{}",
        out.first_line()
    );
    assert!(
        out.stderr.contains("bad.toml:3:1: account `test`"),
        "{}",
        out.stderr
    );
}

/// SHA-256 of the DER inside a PEM certificate file, as `pin_sha256` takes it.
fn pem_sha256_hex(path: &std::path::Path) -> String {
    use base64::Engine;
    use sha2::Digest;
    let pem = std::fs::read_to_string(path).unwrap();
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_matching_pin_is_accepted_and_a_wrong_one_refused_with_both_fingerprints() {
    let with_pin = |pin: &str| {
        tunnel_with(
            &format!("tls = [\"implicit\"]\npin_sha256 = \"{pin}\""),
            b"a LOGOUT\r\n",
        )
    };
    let pin = pem_sha256_hex(&harness().path("SERVER_CERT_FILE"));
    let out = with_pin(&pin);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = with_pin(&"00".repeat(32));
    assert_eq!(out.code, Some(EXIT_NETWORK), "{}", out.stderr);
    assert!(
        out.stderr.contains("does not match `pin_sha256`"),
        "{}",
        out.stderr
    );
    let shown = out.stderr.to_ascii_lowercase().replace(':', "");
    assert!(
        shown.contains(&pin),
        "the actual fingerprint is shown: {}",
        out.stderr
    );
}

#[test]
fn dangerous_accept_invalid_certs_works_but_warns_on_every_use() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = h.config(
        dir.path(),
        "tls = [\"implicit\"]\nmin_protection = \"strong\"\n[accounts.test.dangerous]\naccept_invalid_certs = true",
        "",
    );
    // Trust nothing that issued the server's certificate; only the dangerous key lets it through.
    replace_in_file(&config, h.get("CA_FILE"), h.get("UNKNOWN_CA_FILE"));
    for _ in 0..2 {
        let out = run_tunnel(&config, &[], b"a LOGOUT\r\n");
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(
            out.stderr.contains("accept_invalid_certs is set"),
            "no warning: {}",
            out.stderr
        );
    }
}
