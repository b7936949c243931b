//! The security rules of [`super::core`], each tested once per protocol through a table
//! of protocols ([`LANGS`]): byte transcripts of what the server sends, what the dialect
//! answers and which events it reports, in order.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::imap::ImapClient;
use super::pop3::Pop3Client;
use super::smtp::SmtpClient;
use super::{Dialect, Event, LoginError, ProtocolError};
use crate::secret::Secret;

/// One protocol's side of the transcripts.
struct Lang {
    name: &'static str,
    new: fn(on_tls: bool) -> Box<dyn Dialect>,
    /// Plaintext: greeting and capabilities offering STARTTLS and `X-OLD`, and what the
    /// client sends meanwhile.
    plain_hello: &'static [u8],
    plain_hello_sent: &'static str,
    starttls: &'static str,
    starttls_ok: &'static [u8],
    /// After TLS: the capability query, and its reply offering `X-NEW` only.
    tls_query: &'static str,
    tls_caps: &'static [u8],
    /// A reply to that query that lists nothing.
    tls_caps_none: &'static [u8],
    /// Implicit TLS: greeting and capabilities offering `X-NEW` (no IMAP SASL-IR).
    tls_hello: &'static [u8],
    tls_hello_sent: &'static str,
    /// `X-NEW` without an initial response, as the first command after the hello.
    auth: &'static str,
    /// A challenge line around a base64 payload.
    challenge: fn(&str) -> String,
    auth_ok: &'static [u8],
    /// A success reply carrying capabilities where the protocol has a place for them
    /// (IMAP's `[CAPABILITY]` code).
    auth_ok_with_caps: &'static [u8],
    auth_refused: &'static [u8],
    /// The capability query after authentication and its reply (offering `X-AFTER`).
    after_query: &'static str,
    after_caps: &'static [u8],
    /// The protocol's password login (name, and the server's replies up to success).
    login: Option<(&'static str, &'static [&'static [u8]])>,
    logout: &'static str,
    logout_reply: &'static [u8],
    logout_text: &'static str,
}

const LANGS: &[Lang] = &[
    Lang {
        name: "imap",
        new: |tls| Box::new(ImapClient::new(tls)),
        plain_hello: b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=X-OLD] hi\r\n",
        plain_hello_sent: "",
        starttls: "m1 STARTTLS\r\n",
        starttls_ok: b"m1 OK go\r\n",
        tls_query: "m2 CAPABILITY\r\n",
        tls_caps: b"* CAPABILITY IMAP4rev1 AUTH=X-NEW\r\nm2 OK\r\n",
        tls_caps_none: b"m2 OK\r\n",
        tls_hello: b"* OK [CAPABILITY IMAP4rev1 AUTH=X-NEW] hi\r\n",
        tls_hello_sent: "",
        auth: "m1 AUTHENTICATE X-NEW\r\n",
        challenge: |b64| format!("+ {b64}\r\n"),
        auth_ok: b"m1 OK done\r\n",
        auth_ok_with_caps: b"m1 OK [CAPABILITY IMAP4rev1 INJECTED] done\r\n",
        auth_refused: b"m1 NO bad\r\n",
        after_query: "m2 CAPABILITY\r\n",
        after_caps: b"* CAPABILITY IMAP4rev1 X-AFTER\r\nm2 OK\r\n",
        login: Some(("IMAP-LOGIN", &[b"m1 OK done\r\n"])),
        logout: "mtz LOGOUT\r\n",
        logout_reply: b"* BYE bye\r\nmtz OK Logout completed.\r\n",
        logout_text: "mtz OK Logout completed.",
    },
    Lang {
        name: "pop3",
        new: |tls| Box::new(Pop3Client::new(tls)),
        plain_hello: b"+OK hi\r\n+OK\r\nSTLS\r\nSASL X-OLD\r\n.\r\n",
        plain_hello_sent: "CAPA\r\n",
        starttls: "STLS\r\n",
        starttls_ok: b"+OK go\r\n",
        tls_query: "CAPA\r\n",
        tls_caps: b"+OK\r\nSASL X-NEW\r\n.\r\n",
        tls_caps_none: b"-ERR no CAPA\r\n",
        tls_hello: b"+OK hi\r\n+OK\r\nUSER\r\nSASL X-NEW\r\n.\r\n",
        tls_hello_sent: "CAPA\r\n",
        auth: "AUTH X-NEW\r\n",
        challenge: |b64| format!("+ {b64}\r\n"),
        auth_ok: b"+OK done\r\n",
        auth_ok_with_caps: b"+OK [CAPABILITY INJECTED] done\r\n",
        auth_refused: b"-ERR bad\r\n",
        after_query: "CAPA\r\n",
        after_caps: b"+OK\r\nX-AFTER\r\n.\r\n",
        login: Some(("USER-PASS", &[b"+OK\r\n", b"+OK done\r\n"])),
        logout: "QUIT\r\n",
        logout_reply: b"+OK Logging out.\r\n",
        logout_text: "+OK Logging out.",
    },
    Lang {
        name: "smtp",
        new: |tls| Box::new(SmtpClient::new(tls, "client.example".into())),
        plain_hello: b"220 hi\r\n250-mail.example\r\n250-STARTTLS\r\n250 AUTH X-OLD\r\n",
        plain_hello_sent: "EHLO client.example\r\n",
        starttls: "STARTTLS\r\n",
        starttls_ok: b"220 go\r\n",
        tls_query: "EHLO client.example\r\n",
        tls_caps: b"250-mail.example\r\n250 AUTH X-NEW\r\n",
        tls_caps_none: b"250 mail.example\r\n",
        tls_hello: b"220 hi\r\n250-mail.example\r\n250 AUTH X-NEW\r\n",
        tls_hello_sent: "EHLO client.example\r\n",
        auth: "AUTH X-NEW\r\n",
        challenge: |b64| format!("334 {b64}\r\n"),
        auth_ok: b"235 2.7.0 done\r\n",
        auth_ok_with_caps: b"235 2.7.0 CAPABILITY INJECTED\r\n",
        auth_refused: b"535 bad\r\n",
        after_query: "EHLO client.example\r\n",
        after_caps: b"250-mail.example\r\n250 X-AFTER\r\n",
        login: None,
        logout: "QUIT\r\n",
        logout_reply: b"221 2.0.0 Bye\r\n",
        logout_text: "221 2.0.0 Bye",
    },
];

/// Feeds `server` and polls until the dialect needs input: everything sent and every
/// event, in order (`> ` before bytes sent; traces left out).
fn run(d: &mut dyn Dialect, server: &[u8]) -> Result<Vec<String>, ProtocolError> {
    d.receive(server);
    let mut log = Vec::new();
    loop {
        log.push(match d.poll()? {
            Event::NeedInput => return Ok(log),
            Event::Received(_) => continue,
            Event::Send(o) => format!("> {}", String::from_utf8_lossy(o.bytes.expose())),
            Event::Ready(c) => format!("ready {:?} starttls={}", c.mechanisms, c.starttls),
            Event::StartTls => "starttls".into(),
            Event::Challenge(c) => format!("challenge {}", String::from_utf8_lossy(c.expose())),
            Event::AuthAccepted => "accepted".into(),
            Event::Rejected { text } => format!("rejected {text}"),
            Event::Authenticated(c) => format!("authenticated {:?}", c.raw),
            Event::LoggedOut { text } => format!("logged out {text}"),
        });
    }
}

/// What the client sent in `log`, concatenated.
fn sent(log: &[String]) -> String {
    log.iter().filter_map(|l| l.strip_prefix("> ")).collect()
}

/// A plaintext dialect ready with `X-OLD` and STARTTLS, after STARTTLS was asked.
fn asked_starttls(l: &Lang) -> Box<dyn Dialect> {
    let mut d = (l.new)(false);
    let log = run(&mut *d, l.plain_hello).unwrap();
    assert_eq!(sent(&log), l.plain_hello_sent, "{}", l.name);
    assert_eq!(
        log.last().unwrap(),
        r#"ready ["X-OLD"] starttls=true"#,
        "{}",
        l.name
    );
    d.start_tls();
    assert_eq!(run(&mut *d, b"").unwrap(), [format!("> {}", l.starttls)]);
    d
}

/// An implicit-TLS dialect ready with `X-NEW`.
fn ready(l: &Lang) -> Box<dyn Dialect> {
    let mut d = (l.new)(true);
    let log = run(&mut *d, l.tls_hello).unwrap();
    assert_eq!(sent(&log), l.tls_hello_sent, "{}", l.name);
    assert!(
        log.last().unwrap().starts_with(r#"ready ["X-NEW"]"#),
        "{}: {log:?}",
        l.name
    );
    d
}

#[test]
fn bytes_after_the_starttls_ok_are_an_injection() {
    for l in LANGS {
        let mut d = asked_starttls(l);
        let mut reply = l.starttls_ok.to_vec();
        reply.extend_from_slice(b"injected\r\n");
        assert_eq!(
            run(&mut *d, &reply),
            Err(ProtocolError::BytesAfterStartTlsOk { count: 10 }),
            "{}",
            l.name
        );
    }
}

#[test]
fn capabilities_are_forgotten_and_asked_again_after_tls() {
    for l in LANGS {
        let mut d = asked_starttls(l);
        assert_eq!(
            run(&mut *d, l.starttls_ok).unwrap(),
            ["starttls"],
            "{}",
            l.name
        );
        d.tls_established();
        assert_eq!(
            run(&mut *d, b"").unwrap(),
            [format!("> {}", l.tls_query)],
            "{}",
            l.name
        );
        // Only what the server offers over TLS counts: X-OLD and STARTTLS are gone.
        assert_eq!(
            run(&mut *d, l.tls_caps).unwrap(),
            [r#"ready ["X-NEW"] starttls=false"#],
            "{}",
            l.name
        );
    }
}

#[test]
fn capabilities_from_before_tls_are_not_kept_when_none_come_after() {
    for l in LANGS {
        let mut d = asked_starttls(l);
        run(&mut *d, l.starttls_ok).unwrap();
        d.tls_established();
        run(&mut *d, b"").unwrap();
        assert_eq!(
            run(&mut *d, l.tls_caps_none).unwrap(),
            ["ready [] starttls=false"],
            "{}",
            l.name
        );
    }
}

#[test]
fn sasl_challenges_are_decoded_answered_and_accepted_before_the_next_command() {
    for l in LANGS {
        let mut d = ready(l);
        d.authenticate("x-new", None);
        assert_eq!(run(&mut *d, b"").unwrap(), [format!("> {}", l.auth)]);
        let challenge = (l.challenge)(&B64.encode("server"));
        assert_eq!(
            run(&mut *d, challenge.as_bytes()).unwrap(),
            ["challenge server"],
            "{}",
            l.name
        );
        d.auth_response(Secret::new(b"client".to_vec()));
        assert_eq!(run(&mut *d, b"").unwrap(), ["> Y2xpZW50\r\n"], "{}", l.name);
        // AuthAccepted comes before the capability query, so that the driver can stop
        // a mechanism that did not finish before anything more goes out.
        assert_eq!(
            run(&mut *d, l.auth_ok).unwrap(),
            ["accepted".to_string(), format!("> {}", l.after_query)],
            "{}",
            l.name
        );
        let log = run(&mut *d, l.after_caps).unwrap();
        assert!(
            log.len() == 1 && log[0].starts_with("authenticated") && log[0].contains("X-AFTER"),
            "{}: {log:?}",
            l.name
        );
    }
}

#[test]
fn a_cancelled_exchange_sends_a_star_and_its_refusal_is_a_rejection() {
    for l in LANGS {
        let mut d = ready(l);
        d.authenticate("X-NEW", None);
        run(&mut *d, b"").unwrap();
        run(&mut *d, (l.challenge)("YQ==").as_bytes()).unwrap();
        d.cancel_auth();
        assert_eq!(run(&mut *d, b"").unwrap(), ["> *\r\n"], "{}", l.name);
        assert_eq!(
            run(&mut *d, l.auth_refused).unwrap(),
            ["rejected bad"],
            "{}",
            l.name
        );
        // Ready for another mechanism.
        d.authenticate("X-NEW", None);
        let again = sent(&run(&mut *d, b"").unwrap());
        assert!(again.ends_with(" X-NEW\r\n"), "{}: {again:?}", l.name);
    }
}

#[test]
fn a_challenge_that_is_not_base64_is_refused() {
    for l in LANGS {
        let mut d = ready(l);
        d.authenticate("X-NEW", None);
        run(&mut *d, b"").unwrap();
        assert_eq!(
            run(&mut *d, (l.challenge)("!!!").as_bytes()),
            Err(ProtocolError::MalformedChallenge),
            "{}",
            l.name
        );
    }
}

#[test]
fn an_initial_response_too_long_for_the_command_answers_the_empty_challenge() {
    // 600 bytes: over POP3's 255 and SMTP's 512; the IMAP server has no SASL-IR.
    let initial = vec![b'i'; 600];
    for l in LANGS {
        let mut d = ready(l);
        d.authenticate("X-NEW", Some(Secret::new(initial.clone())));
        assert_eq!(run(&mut *d, b"").unwrap(), [format!("> {}", l.auth)]);
        // The empty challenge is answered with it, and not reported.
        let log = run(&mut *d, (l.challenge)("").as_bytes()).unwrap();
        assert_eq!(
            log,
            [format!("> {}\r\n", B64.encode(&initial))],
            "{}",
            l.name
        );
        // The next challenge is the mechanism's.
        let log = run(&mut *d, (l.challenge)("YQ==").as_bytes()).unwrap();
        assert_eq!(log, ["challenge a"], "{}", l.name);
    }
}

#[test]
fn with_a_security_layer_capabilities_come_from_the_query_through_it() {
    for l in LANGS {
        let mut d = ready(l);
        d.layer_follows();
        d.authenticate("X-NEW", None);
        run(&mut *d, b"").unwrap();
        // Capabilities in the success reply are outside the layer: ignored, asked again.
        let mut reply = l.auth_ok_with_caps.to_vec();
        reply.extend_from_slice(b"\x00\x01");
        d.receive(&reply);
        let mut log = Vec::new();
        loop {
            match d.poll().unwrap() {
                Event::Received(_) => {}
                Event::AuthAccepted => break,
                other => log.push(format!("{other:?}")),
            }
        }
        assert!(log.is_empty(), "{}: {log:?}", l.name);
        // What follows the reply is the layer's, for the driver to unwrap.
        assert_eq!(d.take_leftover(), b"\x00\x01", "{}", l.name);
        assert_eq!(
            run(&mut *d, b"").unwrap(),
            [format!("> {}", l.after_query)],
            "{}",
            l.name
        );
        let log = run(&mut *d, l.after_caps).unwrap();
        assert!(
            log.len() == 1 && log[0].contains("X-AFTER") && !log[0].contains("INJECTED"),
            "{}: {log:?}",
            l.name
        );
    }
}

#[test]
fn a_password_login_is_accepted_before_the_next_command() {
    for l in LANGS {
        let mut d = ready(l);
        let password = Secret::new(b"secret".to_vec());
        let Some((login, replies)) = l.login else {
            assert!(matches!(
                d.password_login("IMAP-LOGIN", "alice", password),
                Err(LoginError::NotInThisProtocol { .. })
            ));
            continue;
        };
        d.password_login(login, "alice", password).unwrap();
        let mut log = run(&mut *d, b"").unwrap();
        for reply in replies {
            log.extend(run(&mut *d, reply).unwrap());
        }
        let accepted = log.iter().position(|l| l == "accepted");
        assert_eq!(
            &log[log.len() - 2..],
            ["accepted".to_string(), format!("> {}", l.after_query)],
            "{}: {log:?}",
            l.name
        );
        assert_eq!(accepted, Some(log.len() - 2));
    }
}

#[test]
fn logout_sends_the_protocols_command_and_reports_the_last_line() {
    for l in LANGS {
        let mut d = ready(l);
        // Bytes the server sent before the command cannot be its reply.
        d.receive(l.logout_reply);
        d.logout();
        assert_eq!(run(&mut *d, b"").unwrap(), [format!("> {}", l.logout)]);
        assert_eq!(
            run(&mut *d, l.logout_reply).unwrap(),
            [format!("logged out {}", l.logout_text)],
            "{}",
            l.name
        );
    }
}

#[test]
fn logout_after_authentication_and_the_connection_closed_as_its_answer() {
    for l in LANGS {
        let mut d = ready(l);
        d.authenticate("X-NEW", Some(Secret::new(b"t".to_vec())));
        run(&mut *d, b"").unwrap();
        run(&mut *d, l.auth_ok).unwrap();
        run(&mut *d, l.after_caps).unwrap();
        d.logout();
        assert_eq!(run(&mut *d, b"").unwrap(), [format!("> {}", l.logout)]);
        // A partial line, then the end: the server's last word, escaped.
        assert_eq!(run(&mut *d, b"bye \x1b[2J").unwrap(), Vec::<String>::new());
        d.closed();
        assert_eq!(
            run(&mut *d, b"").unwrap(),
            [r"logged out bye \u{1b}[2J"],
            "{}",
            l.name
        );
    }
}

#[test]
fn the_connection_closed_during_the_handshake_is_an_error() {
    for l in LANGS {
        let mut d = (l.new)(true);
        d.receive(&l.tls_hello[..4]);
        d.closed();
        assert_eq!(
            run(&mut *d, b""),
            Err(ProtocolError::ConnectionClosed),
            "{}",
            l.name
        );
    }
}
