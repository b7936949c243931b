//! The SMTP submission client dialect (RFC 6409 over RFC 5321): greeting, EHLO,
//! STARTTLS (RFC 3207), AUTH (RFC 4954), and the extensions after authentication.
//!
//! It stops after the `EHLO` that follows the `235` of authentication; everything after
//! belongs to the relay. Replies are assembled from their lines (`250-` ... `250 `)
//! before they are looked at, with a bound on their lines and bytes.
//!
//! Line lengths: RFC 4954 section 4 keeps the AUTH command within SMTP's command line
//! limit (512 octets, RFC 5321 section 4.5.3.1.4); a longer command goes without its
//! initial response, which then answers the empty `334` challenge. The 12288 octets that
//! RFC 4954 mentions are what servers accept for challenge responses, not for AUTH lines
//! (Postfix refuses AUTH lines over `line_length_limit`, 2048 by default).
//!
//! The steps every dialect shares (STARTTLS, the SASL exchange, the logout) are in
//! [`super::core`]; this file has SMTP's reply assembly, commands and codes.

use super::core::{Awaiting, Client, Core, Language, Reply as Meaning, Step};
use super::line::{MAX_LINE, MAX_REPLY_BYTES, MAX_REPLY_LINES, take_line};
use super::{Capabilities, Event, Outgoing, ProtocolError, sasl_command, shown_text, unexpected};
use crate::secret::Secret;

/// Longest command line, CRLF included (RFC 5321 section 4.5.3.1.4).
pub const MAX_COMMAND: usize = 512;

/// SMTP's own steps; the shared ones are in [`Step`].
#[derive(Debug)]
pub enum State {
    /// The server's greeting (`220`, possibly multi-line).
    ExpectGreeting,
    /// The reply to our EHLO.
    ExpectEhloReply { after_auth: bool },
}

/// A complete reply: its code, the text of each line (after `ddd-` / `ddd `), and
/// those texts joined by spaces.
pub struct Reply {
    code: u16,
    lines: Vec<Vec<u8>>,
    joined: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        shown_text(&self.joined)
    }
}

/// The lines of a reply whose last line has not arrived yet.
#[derive(Default)]
struct Partial {
    code: u16,
    lines: Vec<Vec<u8>>,
    size: usize,
}

/// SMTP's framing and commands: the EHLO name and the reply being assembled.
pub struct Smtp {
    ehlo_name: String,
    partial: Partial,
}

/// The SMTP client dialect. See the [module documentation](self).
pub type SmtpClient = Client<Smtp>;

/// Splits `ddd-text` / `ddd text` / `ddd`: (code, is the last line, text).
fn parse_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    let digits = line.get(..3)?;
    let ok = matches!(digits[0], b'2'..=b'5')
        && matches!(digits[1], b'0'..=b'5')
        && digits[2].is_ascii_digit();
    if !ok {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match &line[3..] {
        [] => Some((code, true, &[])),
        [b' ', text @ ..] => Some((code, true, text)),
        [b'-', text @ ..] => Some((code, false, text)),
        _ => None,
    }
}

/// Builds [`Capabilities`] from the extension lines of an EHLO reply (every line after
/// the first, which names the server).
pub fn capabilities(lines: Vec<String>) -> Capabilities {
    let mut mechanisms: Vec<String> = Vec::new();
    let mut starttls = false;
    for line in &lines {
        let mut words = line.split_ascii_whitespace();
        let keyword = words.next().unwrap_or("").to_ascii_uppercase();
        let listed: Vec<&str> = if keyword == "AUTH" {
            words.collect()
        } else if let Some(first) = keyword.strip_prefix("AUTH=") {
            // The pre-RFC 2554 form that old Outlook needed, still sent by some servers.
            std::iter::once(first).chain(words).collect()
        } else {
            starttls |= keyword == "STARTTLS";
            continue;
        };
        for m in listed.into_iter().filter(|m| !m.is_empty()) {
            let m = m.to_ascii_uppercase();
            if !mechanisms.contains(&m) {
                mechanisms.push(m);
            }
        }
    }
    Capabilities {
        // RFC 4954 section 4: AUTH always takes an initial response.
        sasl_ir: !mechanisms.is_empty(),
        mechanisms,
        starttls,
        raw: lines,
        logins: Vec::new(),
    }
}

impl SmtpClient {
    /// A dialect for a fresh connection; `on_tls` says whether the link is already TLS
    /// (implicit TLS, port 465) or plaintext. `ehlo_name` is this host's name for EHLO:
    /// a domain or an address literal such as `[192.0.2.1]`; anything but visible ASCII
    /// is dropped from it, and an empty name becomes `localhost`.
    pub fn new(on_tls: bool, ehlo_name: String) -> Self {
        let mut ehlo_name: String = ehlo_name.chars().filter(|c| c.is_ascii_graphic()).collect();
        if ehlo_name.is_empty() {
            ehlo_name = "localhost".into();
        }
        let smtp = Smtp {
            ehlo_name,
            partial: Partial::default(),
        };
        Client::with(smtp, on_tls, State::ExpectGreeting)
    }
}

impl Language for Smtp {
    type Own = State;
    type Frame = Reply;

    /// Takes lines into the reply being assembled; returns the reply once complete.
    fn take_frame(&mut self, core: &mut Core<State>) -> Result<Option<Reply>, ProtocolError> {
        loop {
            let Some(line) = take_line(&mut core.buf, MAX_LINE)? else {
                return Ok(None);
            };
            let Some((code, last, text)) = parse_line(&line) else {
                core.out.push(Event::Received(shown_text(&line)));
                return Err(match core.step {
                    Step::Own(State::ExpectGreeting) => ProtocolError::UnexpectedGreeting {
                        line: shown_text(&line),
                    },
                    _ => unexpected(&line),
                });
            };
            let shown = match core.step {
                Step::ExpectAuthReply { .. } if code == 334 => "334 [SASL payload]".to_string(),
                _ => shown_text(&line),
            };
            core.out.push(Event::Received(shown));
            let p = &mut self.partial;
            if p.lines.is_empty() {
                p.code = code;
            } else if code != p.code {
                return Err(ProtocolError::ReplyCodeChanged {
                    first: p.code,
                    line: shown_text(&line),
                });
            }
            if p.lines.len() >= MAX_REPLY_LINES {
                return Err(ProtocolError::TooManyReplyLines {
                    limit: MAX_REPLY_LINES,
                });
            }
            p.size += text.len();
            if p.size > MAX_REPLY_BYTES {
                return Err(ProtocolError::ReplyTooLarge {
                    limit: MAX_REPLY_BYTES,
                });
            }
            p.lines.push(text.to_vec());
            if last {
                let p = std::mem::take(&mut self.partial);
                return Ok(Some(Reply {
                    code: p.code,
                    joined: p.lines.join(&b' '),
                    lines: p.lines,
                }));
            }
        }
    }

    fn handle_own(
        &mut self,
        core: &mut Core<State>,
        own: State,
        reply: Reply,
    ) -> Result<(), ProtocolError> {
        match (own, reply.code) {
            // RFC 5321 section 3.1: 554 (or 421) instead of 220 refuses the session.
            (State::ExpectGreeting, 220) => self.ask_capabilities(core, false),
            (State::ExpectGreeting, 554 | 421) => {
                return Err(ProtocolError::GreetingRefused { text: reply.text() });
            }
            (State::ExpectGreeting, _) => {
                return Err(ProtocolError::UnexpectedGreeting { line: reply.text() });
            }

            (_, 421) => return Err(ProtocolError::ServerBye { text: reply.text() }),

            (State::ExpectEhloReply { after_auth }, 250) => {
                let extensions = reply.lines[1..]
                    .iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect();
                let caps = capabilities(extensions);
                if after_auth {
                    core.authenticated(caps);
                } else {
                    core.ready(caps);
                }
            }
            (State::ExpectEhloReply { .. }, _) => {
                return Err(ProtocolError::CommandFailed {
                    command: "EHLO",
                    text: reply.text(),
                });
            }
        }
        Ok(())
    }

    fn reply<'f>(
        &self,
        awaiting: Awaiting,
        reply: &'f Reply,
    ) -> Result<Meaning<'f>, ProtocolError> {
        Ok(match (awaiting, reply.code) {
            (_, 421) => return Err(ProtocolError::ServerBye { text: reply.text() }),
            (Awaiting::StartTls, 220) => Meaning::Ok(&reply.joined),
            (Awaiting::StartTls, _) => Meaning::Refused(&reply.joined),
            (Awaiting::Auth, 334) if reply.lines.len() == 1 => {
                Meaning::Continuation(&reply.lines[0])
            }
            (Awaiting::Auth, 334) => {
                return Err(ProtocolError::UnexpectedLine { line: reply.text() });
            }
            // RFC 4954 section 4: what was learned before AUTH may have changed, so EHLO
            // follows ([`Language::after_auth`]).
            (Awaiting::Auth, 235) => Meaning::Ok(&reply.joined),
            // RFC 4954 section 6 and RFC 5321: refusals of this mechanism, after which
            // another may be tried. 501 answers a cancelled exchange; 500 a response
            // longer than the server's buffer.
            (Awaiting::Auth, 432 | 454 | 500 | 501 | 504 | 530 | 534 | 535 | 538) => {
                Meaning::Refused(&reply.joined)
            }
            (Awaiting::Auth, 400..=599) => {
                return Err(ProtocolError::CommandFailed {
                    command: "AUTH",
                    text: reply.text(),
                });
            }
            (Awaiting::Auth, _) => return Err(Self::unexpected(reply)),
        })
    }

    fn unexpected(reply: &Reply) -> ProtocolError {
        ProtocolError::UnexpectedLine { line: reply.text() }
    }

    fn start_tls(&mut self, core: &mut Core<State>) {
        core.out.command("STARTTLS");
    }

    fn ask_capabilities(&mut self, core: &mut Core<State>, after_auth: bool) {
        core.out.command(&format!("EHLO {}", self.ehlo_name));
        core.step = Step::Own(State::ExpectEhloReply { after_auth });
    }

    fn auth_command(
        &mut self,
        _core: &mut Core<State>,
        mechanism: &str,
        initial: Option<Secret<Vec<u8>>>,
    ) -> (Outgoing, Option<Secret<Vec<u8>>>) {
        // RFC 4954 section 4: the AUTH line stays within 512 octets.
        sasl_command("AUTH", mechanism, initial, true, MAX_COMMAND)
    }

    fn logout(&mut self, core: &mut Core<State>) {
        self.partial = Partial::default();
        core.out.command("QUIT");
    }

    /// The last line of a reply (`ddd ` or `ddd`... as the probe read it: a space fourth).
    fn ends_logout(line: &[u8]) -> bool {
        line.get(3) == Some(&b' ')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Dialect;
    use crate::protocol::testing::{Outcome, Script, Transcript, drive};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    const GREETING: &[u8] = b"220 mail.example Dovecot (Debian) ready.\r\n";
    /// Dovecot 2.3.19 submission before TLS on port 587 (captured): an AUTH line with a
    /// trailing space and no mechanism.
    const EHLO_PLAIN: &[u8] = b"250-mail.example\r\n250-8BITMIME\r\n250-AUTH \r\n250-BURL imap\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE\r\n250-STARTTLS\r\n250 PIPELINING\r\n";
    /// Dovecot 2.3.19 submission after TLS (captured), with GSSAPI configured.
    const EHLO_TLS: &[u8] = b"250-mail.example\r\n250-8BITMIME\r\n250-AUTH GSSAPI PLAIN LOGIN\r\n250-BURL imap\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE\r\n250 PIPELINING\r\n";
    /// Dovecot 2.3.19 submission after AUTH (captured; it keeps the authentication across
    /// this EHLO and lists a bare AUTH).
    const EHLO_AUTHED: &[u8] = b"250-mail.example\r\n250-AUTH\r\n250-BURL imap imap://mail.example\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250 SIZE 41943040\r\n";
    const STARTTLS_OK: &[u8] = b"220 2.0.0 Begin TLS negotiation now.\r\n";
    const EHLO: &str = "EHLO client.example\r\n";

    fn check(server: &[&[u8]], expected_client: &str) -> Transcript {
        check_with(false, Script::default(), server, expected_client)
    }

    fn check_with(
        on_tls: bool,
        script: Script,
        server: &[&[u8]],
        expected_client: &str,
    ) -> Transcript {
        let mut d = SmtpClient::new(on_tls, "client.example".into());
        let t = drive(&mut d, on_tls, script, server);
        assert_eq!(t.client, expected_client, "outcome: {:?}", t.outcome);
        t
    }

    fn authed_caps() -> Capabilities {
        capabilities(
            [
                "AUTH",
                "BURL imap imap://mail.example",
                "CHUNKING",
                "ENHANCEDSTATUSCODES",
                "PIPELINING",
                "SIZE 41943040",
            ]
            .map(String::from)
            .to_vec(),
        )
    }

    fn failed(t: &Transcript) -> &ProtocolError {
        match &t.outcome {
            Outcome::Failed(e) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn rfc5321_554_greeting_refused() {
        let t = check(&[b"554 5.7.1 mail.example no service for you\r\n"], "");
        assert_eq!(
            failed(&t),
            &ProtocolError::GreetingRefused {
                text: "5.7.1 mail.example no service for you".into()
            }
        );
    }

    #[test]
    fn rfc5321_421_greeting_refused() {
        let t = check(&[b"421 4.3.2 mail.example shutting down\r\n"], "");
        assert!(matches!(failed(&t), ProtocolError::GreetingRefused { .. }));
    }

    #[test]
    fn rfc5321_multiline_greeting_accepted() {
        check(
            &[
                b"220-mail.example ESMTP\r\n220-no UCE\r\n220 ready\r\n",
                b"554 no\r\n",
            ],
            EHLO,
        );
    }

    #[test]
    fn rfc5321_not_a_greeting_refused() {
        let t = check(&[b"+OK Dovecot (Debian) ready.\r\n"], "");
        assert!(matches!(
            failed(&t),
            ProtocolError::UnexpectedGreeting { .. }
        ));
    }

    #[test]
    fn rfc5321_multiline_ehlo_parsed() {
        let t = check(
            &[GREETING, EHLO_PLAIN, b"454 4.7.0 not now\r\n"],
            &format!("{EHLO}STARTTLS\r\n"),
        );
        assert!(matches!(failed(&t), ProtocolError::StartTlsRefused { .. }));
        let mut d = SmtpClient::new(false, "client.example".into());
        drive(&mut d, false, Script::default(), &[GREETING, EHLO_PLAIN]);
        assert!(d.core.caps.mechanisms.is_empty() && !d.core.caps.sasl_ir);
        assert!(d.core.caps.starttls);
        assert_eq!(d.core.caps.raw.len(), 8);
        assert_eq!(d.core.caps.raw[2], "BURL imap");
    }

    #[test]
    fn rfc4954_old_auth_equals_form_merged() {
        let caps = capabilities(
            ["AUTH GSSAPI PLAIN", "AUTH=LOGIN PLAIN", "STARTTLS"]
                .map(String::from)
                .to_vec(),
        );
        assert_eq!(caps.mechanisms, ["GSSAPI", "PLAIN", "LOGIN"]);
        assert!(caps.starttls);
    }

    #[test]
    fn rfc5321_multiline_reply_across_reads() {
        let mut d = SmtpClient::new(true, "client.example".into());
        drive(
            &mut d,
            true,
            Script::default(),
            &[
                GREETING,
                b"250-mail.example\r\n250-AU",
                b"TH GSSAPI\r\n",
                b"250 SIZE\r\n",
            ],
        );
        assert_eq!(d.core.caps.mechanisms, ["GSSAPI"]);
    }

    #[test]
    fn rfc3207_starttls_not_offered_reported_in_ready() {
        let ehlo = b"250-mail.example\r\n250-AUTH PLAIN\r\n250 SIZE\r\n";
        let t = check(&[GREETING, ehlo], EHLO);
        let Outcome::NoStartTls(caps) = t.outcome else {
            panic!("{:?}", t.outcome)
        };
        assert!(!caps.starttls);
    }

    #[test]
    fn rfc3207_starttls_refused() {
        let t = check(
            &[
                GREETING,
                EHLO_PLAIN,
                b"454 4.7.0 TLS not available due to temporary reason\r\n",
            ],
            &format!("{EHLO}STARTTLS\r\n"),
        );
        assert_eq!(
            failed(&t),
            &ProtocolError::StartTlsRefused {
                text: "4.7.0 TLS not available due to temporary reason".into()
            }
        );
    }

    #[test]
    fn rfc3207_bytes_after_starttls_ok_refused() {
        let t = check(
            &[GREETING, EHLO_PLAIN, b"220 2.0.0 Ready\r\n250-evil\r\n"],
            &format!("{EHLO}STARTTLS\r\n"),
        );
        assert_eq!(
            failed(&t),
            &ProtocolError::BytesAfterStartTlsOk { count: 10 }
        );
    }

    #[test]
    fn rfc3207_capabilities_discarded_after_tls_and_ehlo_again() {
        // Before TLS no GSSAPI is listed; it is only learned from the EHLO after TLS.
        let t = check(
            &[
                GREETING,
                EHLO_PLAIN,
                STARTTLS_OK,
                EHLO_TLS,
                b"235 2.7.0 Logged in.\r\n",
                EHLO_AUTHED,
            ],
            &format!("{EHLO}STARTTLS\r\n<TLS>{EHLO}AUTH GSSAPI dG9rZW4tMQ==\r\n{EHLO}"),
        );
        assert_eq!(t.outcome, Outcome::Authenticated(authed_caps()));
    }

    #[test]
    fn rfc4954_auth_with_initial_response_challenge_and_success() {
        let t = check_with(
            true,
            Script::default(),
            &[
                GREETING,
                EHLO_TLS,
                b"334 Y2hhbGxlbmdl\r\n",
                b"235 2.7.0 Logged in.\r\n",
                EHLO_AUTHED,
            ],
            &format!("{EHLO}AUTH GSSAPI dG9rZW4tMQ==\r\ndG9rZW4tMg==\r\n{EHLO}"),
        );
        assert_eq!(t.challenges, [b"challenge".to_vec()]);
        assert_eq!(t.outcome, Outcome::Authenticated(authed_caps()));
        assert!(t.traces.contains(&"334 [SASL payload]".to_string()));
        assert!(!t.traces.iter().any(|l| l.contains("Y2hh")));
    }

    #[test]
    fn rfc4954_auth_without_initial_response_gets_empty_challenge() {
        let script = Script {
            mechanisms: vec![("GSSAPI", None)],
            responses: vec![b"token-1"],
        };
        let t = check_with(
            true,
            script,
            &[
                GREETING,
                EHLO_TLS,
                b"334 \r\n",
                b"235 2.7.0 Logged in.\r\n",
                EHLO_AUTHED,
            ],
            &format!("{EHLO}AUTH GSSAPI\r\ndG9rZW4tMQ==\r\n{EHLO}"),
        );
        assert_eq!(t.challenges, [Vec::<u8>::new()]);
        assert_eq!(t.outcome, Outcome::Authenticated(authed_caps()));
    }

    #[test]
    fn rfc4954_4_auth_line_over_512_octets_sends_response_after_empty_challenge() {
        static TICKET: [u8; 1500] = [9u8; 1500];
        let script = Script {
            mechanisms: vec![("GSSAPI", Some(&TICKET))],
            responses: vec![],
        };
        let encoded = B64.encode(TICKET);
        let t = check_with(
            true,
            script,
            &[
                GREETING,
                EHLO_TLS,
                b"334 \r\n",
                b"235 2.7.0 Logged in.\r\n",
                EHLO_AUTHED,
            ],
            &format!("{EHLO}AUTH GSSAPI\r\n{encoded}\r\n{EHLO}"),
        );
        assert!(t.challenges.is_empty());
        assert_eq!(t.outcome, Outcome::Authenticated(authed_caps()));
    }

    #[test]
    fn rfc4954_empty_initial_response_is_an_equals_sign() {
        let script = Script {
            mechanisms: vec![("EXTERNAL", Some(b""))],
            responses: vec![],
        };
        check_with(
            true,
            script,
            &[GREETING, EHLO_TLS, b"235 2.7.0 ok\r\n", EHLO_AUTHED],
            &format!("{EHLO}AUTH EXTERNAL =\r\n{EHLO}"),
        );
    }

    #[test]
    fn rfc4954_rejection_then_another_mechanism() {
        let script = Script {
            mechanisms: vec![("GSSAPI", Some(b"token-1")), ("PLAIN", Some(b"\0u\0p"))],
            responses: vec![],
        };
        let t = check_with(
            true,
            script,
            &[
                GREETING,
                EHLO_TLS,
                b"535 5.7.8 Authentication failed.\r\n",
                b"235 2.7.0 Logged in.\r\n",
                EHLO_AUTHED,
            ],
            &format!("{EHLO}AUTH GSSAPI dG9rZW4tMQ==\r\nAUTH PLAIN AHUAcA==\r\n{EHLO}"),
        );
        assert_eq!(t.rejections, ["5.7.8 Authentication failed."]);
        assert_eq!(t.outcome, Outcome::Authenticated(authed_caps()));
    }

    #[test]
    fn rfc4954_every_refusal_code_is_a_rejection() {
        for code in [
            "454 4.7.0",
            "504 5.5.4",
            "534 5.7.9",
            "535 5.7.8",
            "538 5.7.11",
        ] {
            let reply = format!("{code} no\r\n");
            let t = check_with(
                true,
                Script::default(),
                &[GREETING, EHLO_TLS, reply.as_bytes()],
                &format!("{EHLO}AUTH GSSAPI dG9rZW4tMQ==\r\n"),
            );
            assert_eq!(t.outcome, Outcome::NoMechanismLeft, "{code}");
        }
    }

    #[test]
    fn rfc4954_cancel_with_star() {
        let script = Script {
            mechanisms: vec![("GSSAPI", Some(b"token-1"))],
            responses: vec![],
        };
        let t = check_with(
            true,
            script,
            &[
                GREETING,
                EHLO_TLS,
                b"334 YQ==\r\n",
                b"501 5.5.2 Authentication aborted by client.\r\n",
            ],
            &format!("{EHLO}AUTH GSSAPI dG9rZW4tMQ==\r\n*\r\n"),
        );
        assert_eq!(t.rejections, ["5.5.2 Authentication aborted by client."]);
    }

    #[test]
    fn rfc4954_bad_sequence_is_not_a_rejection() {
        let t = check_with(
            true,
            Script::default(),
            &[GREETING, EHLO_TLS, b"503 5.5.1 Already authenticated\r\n"],
            &format!("{EHLO}AUTH GSSAPI dG9rZW4tMQ==\r\n"),
        );
        assert!(matches!(
            failed(&t),
            ProtocolError::CommandFailed {
                command: "AUTH",
                ..
            }
        ));
    }

    #[test]
    fn rfc4954_challenge_not_base64_refused() {
        let t = check_with(
            true,
            Script::default(),
            &[GREETING, EHLO_TLS, b"334 ###\r\n"],
            &format!("{EHLO}AUTH GSSAPI dG9rZW4tMQ==\r\n"),
        );
        assert_eq!(failed(&t), &ProtocolError::MalformedChallenge);
    }

    #[test]
    fn rfc5321_421_at_any_time_is_server_bye() {
        let t = check_with(
            true,
            Script::default(),
            &[GREETING, EHLO_TLS, b"421 4.4.2 mail.example timeout\r\n"],
            &format!("{EHLO}AUTH GSSAPI dG9rZW4tMQ==\r\n"),
        );
        assert_eq!(
            failed(&t),
            &ProtocolError::ServerBye {
                text: "4.4.2 mail.example timeout".into()
            }
        );
        let t = check(&[GREETING, b"421 closing\r\n"], EHLO);
        assert!(matches!(failed(&t), ProtocolError::ServerBye { .. }));
    }

    #[test]
    fn rfc5321_ehlo_refused() {
        let t = check(&[GREETING, b"502 5.5.2 no EHLO\r\n"], EHLO);
        assert!(matches!(
            failed(&t),
            ProtocolError::CommandFailed {
                command: "EHLO",
                ..
            }
        ));
    }

    #[test]
    fn rfc5321_malformed_reply_codes_refused() {
        for bad in [
            &b"25 short\r\n"[..],
            b"2500 long\r\n",
            b"250_x\r\n",
            b"650 no such class\r\n",
            b"270 no such category\r\n",
            b"abc\r\n",
        ] {
            let t = check(&[GREETING, bad], EHLO);
            assert!(
                matches!(failed(&t), ProtocolError::UnexpectedLine { .. }),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn rfc5321_4_2_1_code_change_inside_multiline_refused() {
        let t = check(&[GREETING, b"250-mail.example\r\n550 oops\r\n"], EHLO);
        assert_eq!(
            failed(&t),
            &ProtocolError::ReplyCodeChanged {
                first: 250,
                line: "550 oops".into()
            }
        );
    }

    #[test]
    fn multiline_reply_with_too_many_lines_refused() {
        let mut ehlo = Vec::new();
        for i in 0..=MAX_REPLY_LINES {
            ehlo.extend_from_slice(format!("250-X{i}\r\n").as_bytes());
        }
        let t = check(&[GREETING, &ehlo], EHLO);
        assert_eq!(
            failed(&t),
            &ProtocolError::TooManyReplyLines {
                limit: MAX_REPLY_LINES
            }
        );
    }

    #[test]
    fn multiline_reply_larger_than_the_limit_refused() {
        let mut ehlo = Vec::new();
        let long = "X".repeat(MAX_LINE - 10);
        for _ in 0..2 {
            ehlo.extend_from_slice(format!("250-{long}\r\n").as_bytes());
        }
        let t = check(&[GREETING, &ehlo], EHLO);
        assert_eq!(
            failed(&t),
            &ProtocolError::ReplyTooLarge {
                limit: MAX_REPLY_BYTES
            }
        );
    }

    #[test]
    fn overlong_line_refused() {
        let long = vec![b'2'; MAX_LINE + 1];
        let t = check(&[&long], "");
        assert_eq!(failed(&t), &ProtocolError::LineTooLong { limit: MAX_LINE });
    }

    #[test]
    fn nul_byte_refused() {
        let t = check(&[b"220 mail.example\0 ready\r\n"], "");
        assert_eq!(failed(&t), &ProtocolError::NulByte);
    }

    #[test]
    fn ehlo_name_cannot_inject_a_command() {
        let mut d = SmtpClient::new(false, "client\r\nRSET".into());
        let t = drive(&mut d, false, Script::default(), &[GREETING]);
        assert_eq!(t.client, "EHLO clientRSET\r\n");
        let mut d = SmtpClient::new(false, " \t".into());
        let t = drive(&mut d, false, Script::default(), &[GREETING]);
        assert_eq!(t.client, "EHLO localhost\r\n");
    }

    #[test]
    fn bytes_after_authentication_are_left_for_the_relay() {
        let mut d = SmtpClient::new(true, "client.example".into());
        let mut ehlo = EHLO_AUTHED.to_vec();
        ehlo.extend_from_slice(b"421 bye\r\n");
        let t = drive(
            &mut d,
            true,
            Script::default(),
            &[GREETING, EHLO_TLS, b"235 ok\r\n", &ehlo],
        );
        assert_eq!(t.outcome, Outcome::Authenticated(authed_caps()));
        assert_eq!(d.take_leftover(), b"421 bye\r\n");
    }
}
