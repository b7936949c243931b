//! POP3 and SMTP submission tunnels against the real Dovecot: the client's own login
//! commands are answered locally, mail flows both ways.

use std::time::Instant;

use crate::harness::{harness, run_mailtun_steps, run_tunnel, wait_for_sink_message};

fn config(dir: &std::path::Path, protocol: &str, tls: &str) -> String {
    let h = harness();
    let path = h.config(
        dir,
        &format!("protocol = \"{protocol}\"\ntls = [\"{tls}\"]"),
        "",
    );
    path.to_str().unwrap().to_string()
}

/// Undoes POP3 dot-stuffing of a multi-line response body (without its final ".").
fn unstuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

#[test]
fn pop3_tunnel_answers_login_locally_and_retrieves_the_20mb_message_byte_identical() {
    let h = harness();
    for tls in ["starttls", "implicit"] {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), "pop3", tls);
        let retr: &[u8] = b"CAPA\r\nUSER alice\r\nPASS placeholder\r\nRETR 4\r\n";
        let out = run_mailtun_steps(
            &["--config", &c, "tunnel", "test"],
            &[
                (retr, b"-boundary--\r\n.\r\n"),
                (b"QUIT\r\n", b"+OK Logging out"),
            ],
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let first = out.first_line();
        assert!(
            first.starts_with(
                "+OK mailtun: alice authenticated to mail.example.test with GSSAPI over TLSv1.3"
            ),
            "{first}"
        );
        let data = &out.stdout;
        let text = String::from_utf8_lossy(&data[..data.len().min(4000)]).into_owned();
        assert!(
            !text.contains("STLS"),
            "STLS must not be offered to the client: {text}"
        );
        assert!(
            !text.contains("\r\nSASL"),
            "SASL must not be offered to the client: {text}"
        );
        // The RETR reply: "+OK <size> octets\r\n" then the body up to "\r\n.\r\n".
        let marker = b" octets\r\n";
        let start = data
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("RETR reply")
            + marker.len();
        let end = start
            + data[start..]
                .windows(5)
                .position(|w| w == b"\r\n.\r\n")
                .expect("end of RETR")
            + 2;
        let expected = std::fs::read(h.path("BIG_MESSAGE")).unwrap();
        assert!(
            unstuff(&data[start..end]) == expected,
            "{tls}: the retrieved message differs"
        );
        assert!(
            String::from_utf8_lossy(&data[end..]).contains("+OK Logging out"),
            "{tls}"
        );
    }
}

#[test]
fn smtp_tunnel_answers_ehlo_locally_and_the_message_reaches_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), "smtp", "starttls");
    let marker = format!("mailtun-test-{}-{:?}", std::process::id(), Instant::now());
    let script = format!(
        "EHLO client.example\r\nAUTH PLAIN AGFsaWNlAHg=\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: {marker}\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n"
    );
    let out = run_tunnel(&c, &[], script.as_bytes());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = out.stdout_text();
    assert!(
        text.starts_with("220 mail.example.test ESMTP mailtun: alice authenticated"),
        "{text}"
    );
    assert!(
        !text.contains("STARTTLS") && !text.contains("250-AUTH") && !text.contains("250 AUTH"),
        "{text}"
    );
    assert!(
        text.contains("235 "),
        "the client's AUTH is answered locally: {text}"
    );
    assert!(text.contains("250 2.0.0 OK"), "{text}");
    wait_for_sink_message("the message", |m| {
        m.contains(&marker) && m.contains("\r\n.leading dot\r\nbody\r\n")
    });
}
