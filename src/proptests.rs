//! Property tests (proptest) over the parsers that read what a server or a user wrote:
//! framing never panics, never returns a frame longer than its limits and never buffers
//! more than they allow; SASL payloads cross every dialect's base64 unchanged in both
//! directions; SASLprep is idempotent; the configuration loader never panics; server text
//! shown to a person holds no terminal control, and escaping it twice changes nothing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use proptest::prelude::*;

use crate::config::Config;
use crate::protocol::imap::ImapClient;
use crate::protocol::line::{take_imap_response, take_line};
use crate::protocol::pop3::Pop3Client;
use crate::protocol::smtp::SmtpClient;
use crate::protocol::{Dialect, Event};
use crate::sasl::scram::saslprep;
use crate::secret::Secret;

/// Bytes that are mostly line material: CR, LF, braces, digits, `+`, letters, NUL.
fn wire_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b"\r\n{}+0123456789 *".to_vec()),
            2 => b'a'..=b'z',
            1 => any::<u8>(),
        ],
        0..max,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn framing_is_bounded_whatever_arrives(
        data in wire_bytes(2048),
        chunks in prop::collection::vec(1usize..300, 1..20),
        line_limit in 1usize..200,
        literal_limit in 0usize..200,
    ) {
        let frame_max = 2 * line_limit + literal_limit;
        let mut imap = Vec::new();
        let mut lines = Vec::new();
        let mut rest = data.as_slice();
        let mut imap_failed = false;
        let mut line_failed = false;
        for &c in chunks.iter().cycle().take(64) {
            if rest.is_empty() {
                break;
            }
            let n = c.min(rest.len());
            imap.extend_from_slice(&rest[..n]);
            lines.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while !imap_failed {
                match take_imap_response(&mut imap, line_limit, literal_limit) {
                    Ok(Some(frame)) => prop_assert!(frame.len() <= frame_max),
                    Ok(None) => {
                        // What waits for more input is bounded too.
                        prop_assert!(imap.len() <= frame_max + 2);
                        break;
                    }
                    Err(_) => imap_failed = true,
                }
            }
            while !line_failed {
                match take_line(&mut lines, line_limit) {
                    Ok(Some(line)) => {
                        prop_assert!(line.len() <= line_limit);
                        prop_assert!(!line.contains(&b'\n') && !line.contains(&0));
                    }
                    Ok(None) => {
                        prop_assert!(lines.len() <= line_limit);
                        break;
                    }
                    Err(_) => line_failed = true,
                }
            }
        }
    }

    #[test]
    fn sasl_payloads_cross_every_dialect_unchanged(
        initial in prop::collection::vec(any::<u8>(), 0..120),
        challenge in prop::collection::vec(any::<u8>(), 0..2000),
        response in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        for which in 0..3 {
            let (mut dialect, greeting, prefix): (Box<dyn Dialect>, &[u8], &str) = match which {
                0 => (
                    Box::new(ImapClient::new(true)),
                    b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=X-TEST] hi\r\n",
                    "+ ",
                ),
                1 => (
                    Box::new(Pop3Client::new(true)),
                    b"+OK hi\r\n+OK\r\nSASL X-TEST\r\n.\r\n",
                    "+ ",
                ),
                _ => (
                    Box::new(SmtpClient::new(true, "client.example".into())),
                    b"220 hi\r\n250-mail.example\r\n250 AUTH X-TEST\r\n",
                    "334 ",
                ),
            };
            let server_challenge = format!("{prefix}{}\r\n", B64.encode(&challenge));
            let mut inputs = vec![greeting.to_vec(), server_challenge.into_bytes()].into_iter();
            let mut sent: Vec<Vec<u8>> = Vec::new();
            let mut got_challenge = None;
            for _ in 0..100 {
                match dialect.poll().unwrap() {
                    Event::NeedInput => match inputs.next() {
                        Some(i) => dialect.receive(&i),
                        None => break,
                    },
                    Event::Send(out) => sent.push(out.bytes.expose().clone()),
                    Event::Ready(_) => {
                        dialect.authenticate("X-TEST", Some(Secret::new(initial.clone())));
                    }
                    Event::Challenge(c) => {
                        got_challenge = Some(c.expose().clone());
                        dialect.auth_response(Secret::new(response.clone()));
                    }
                    Event::Received(_) => {}
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            prop_assert_eq!(got_challenge.as_ref(), Some(&challenge), "dialect {}", which);
            // The initial response is the last word of the authentication command, the
            // response the whole of the last line.
            let auth = sent
                .iter()
                .map(|l| String::from_utf8(l.clone()).unwrap())
                .find(|l| l.contains("X-TEST"))
                .unwrap();
            let ir = auth.trim_end().rsplit(' ').next().unwrap();
            let ir = if ir == "=" { Vec::new() } else { B64.decode(ir).unwrap() };
            prop_assert_eq!(&ir, &initial, "dialect {}: {}", which, auth);
            let last = String::from_utf8(sent.last().unwrap().clone()).unwrap();
            prop_assert!(last.ends_with("\r\n"));
            let decoded = B64.decode(last.trim_end()).unwrap();
            prop_assert_eq!(&decoded, &response, "dialect {}", which);
        }
    }

    #[test]
    fn saslprep_is_idempotent(s in any::<String>()) {
        if let Ok(once) = saslprep("test", &s) {
            let twice = saslprep("test", once.expose());
            prop_assert_eq!(twice.map(|t| t.expose().clone()).ok(), Some(once.expose().clone()));
        }
    }

    #[test]
    fn config_parse_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = Config::parse(std::path::Path::new("p.toml"), &text);
    }

    #[test]
    fn config_parse_never_panics_on_near_valid_accounts(
        lines in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "protocol", "host", "connect", "tls", "plain_port", "tls_port", "ca_file",
                    "pin_sha256", "user", "auth", "timeout_secs", "min_protection", "password",
                    "oauth_token_command", "client_cert", "client_key", "ehlo_name",
                    "keyring_store", "[accounts.a.gssapi]", "service", "principal", "ccache",
                    "layer", "kinit", "delegate", "canonicalize", "[accounts.a.dangerous]",
                    "accept_invalid_certs",
                ]),
                prop::sample::select(vec![
                    "\"imap\"", "\"pop3\"", "\"smtp\"", "\"h\"", "0", "65535", "70000", "-1",
                    "[\"starttls\"]", "[\"implicit\", \"none\"]", "[]", "\"auto\"",
                    "[\"gssapi\", \"scram-sha-256\", \"plain\"]", "true", "\"tls+strong\"",
                    "{ command = \"x\" }", "{ keyring = true }", "{}", "\"AB:CD\"", "1e400",
                    "\"\\u0000\"", "18446744073709551616", "\"confidentiality\"",
                ]),
            ),
            0..12,
        ),
    ) {
        let mut text = String::from("[accounts.a]\n");
        for (k, v) in lines {
            if k.starts_with('[') {
                text.push_str(k);
            } else {
                text.push_str(&format!("{k} = {v}"));
            }
            text.push('\n');
        }
        let _ = Config::parse(std::path::Path::new("p.toml"), &text);
    }

    #[test]
    fn server_text_is_shown_without_terminal_controls(
        text in prop::collection::vec(
            prop_oneof![
                3 => any::<char>(),
                2 => prop::sample::select(vec![
                    '\u{1b}', '\r', '\n', '\u{7}', '\u{7f}', '\u{85}', '\u{9b}', '\u{202e}',
                    '\u{2066}', '\u{2069}', '\u{200f}', '\u{2028}', 'a', '\\', '{', 'é',
                ]),
            ],
            0..300,
        ).prop_map(|v| v.into_iter().collect::<String>()),
    ) {
        let escaped = crate::text::escape(&text);
        prop_assert!(!escaped.chars().any(crate::text::is_unsafe), "{escaped:?}");
        prop_assert_eq!(crate::text::escape(&escaped), escaped.clone());
        if !text.chars().any(crate::text::is_unsafe) {
            prop_assert_eq!(&escaped, &text);
        }
        let lines = crate::text::escape_lines(&text);
        prop_assert!(!lines.chars().any(|c| c != '\n' && crate::text::is_unsafe(c)));
        let shown = crate::protocol::shown_text(text.as_bytes());
        prop_assert!(!shown.chars().any(crate::text::is_unsafe), "{shown:?}");
    }
}
