//! Scripted plaintext servers for what no real server does: no STARTTLS, injections.
//! Each records every byte it receives.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::harness::run_tunnel;
use crate::{EXIT_POLICY, EXIT_PROTOCOL};

/// A server on 127.0.0.1 that sends `script` in order (each item after reading one line
/// from the client, except the first, sent on connect) and returns all it received.
fn scripted_server(script: Vec<&'static [u8]>) -> (u16, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        for (i, chunk) in script.iter().enumerate() {
            if i > 0 {
                // Wait for one more line from the client.
                let before = received.iter().filter(|&&b| b == b'\n').count();
                while received.iter().filter(|&&b| b == b'\n').count() == before {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return received,
                        Ok(n) => received.extend_from_slice(&buf[..n]),
                    }
                }
            }
            if s.write_all(chunk).is_err() {
                return received;
            }
        }
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    });
    (port, handle)
}

fn config_for(port: u16, tls: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[accounts.test]\nhost = \"mail.example.test\"\nconnect = \"127.0.0.1\"\nplain_port = {port}\ntls_port = 1\ntls = {tls}\ntimeout_secs = 5\n"
        ),
    )
    .unwrap();
    let p = path.to_str().unwrap().to_string();
    (dir, p)
}

#[test]
fn a_plain_port_without_starttls_is_refused_with_privacyrequired() {
    let (port, server) = scripted_server(vec![
        b"* OK [CAPABILITY IMAP4rev1 AUTH=GSSAPI AUTH=PLAIN] no tls here\r\n",
    ]);
    let (_dir, config) = config_for(port, "[\"starttls\"]");
    let out = run_tunnel(&config, &[], b"");
    assert_eq!(out.code, Some(EXIT_POLICY), "{}", out.stderr);
    assert!(
        out.first_line()
            .starts_with("* BYE [PRIVACYREQUIRED] mailtun: the server does not offer STARTTLS"),
        "{}",
        out.first_line()
    );
    assert!(
        out.stderr.contains("\"implicit\""),
        "remedy names the other method: {}",
        out.stderr
    );
    assert_eq!(
        server.join().unwrap(),
        b"",
        "nothing may be sent to such a server"
    );
}

#[test]
fn a_plaintext_preauth_greeting_is_not_passed_on() {
    let (port, server) = scripted_server(vec![b"* PREAUTH [CAPABILITY IMAP4rev1] come in\r\n"]);
    let (_dir, config) = config_for(port, "[\"starttls\"]");
    let out = run_tunnel(&config, &[], b"a SELECT INBOX\r\n");
    assert_eq!(out.code, Some(EXIT_PROTOCOL), "{}", out.stderr);
    assert!(
        out.first_line().starts_with("* BYE [UNAVAILABLE]"),
        "{}",
        out.first_line()
    );
    assert!(
        !out.stdout_text()
            .lines()
            .any(|l| l.starts_with("* PREAUTH")),
        "{}",
        out.stdout_text()
    );
    assert_eq!(server.join().unwrap(), b"");
}

#[test]
fn bytes_injected_after_the_starttls_ok_end_the_session() {
    let (port, server) = scripted_server(vec![
        b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI] hi\r\n",
        b"m1 OK Begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n",
    ]);
    let (_dir, config) = config_for(port, "[\"starttls\"]");
    let out = run_tunnel(&config, &[], b"");
    assert_eq!(out.code, Some(EXIT_PROTOCOL), "{}", out.stderr);
    assert!(out.stderr.contains("command injection"), "{}", out.stderr);
    // Only STARTTLS was sent; no TLS ClientHello followed it.
    assert_eq!(server.join().unwrap(), b"m1 STARTTLS\r\n");
}
