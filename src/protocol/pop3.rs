//! The POP3 client dialect (RFC 1939): greeting, CAPA (RFC 2449), STLS (RFC 2595),
//! AUTH (RFC 5034), and the capabilities after authentication; USER/PASS as an inherent
//! method for the accounts that need it.
//!
//! It stops after the `CAPA` that follows the `+OK` of authentication; everything after
//! belongs to the relay. POP3 has no tags and no untagged data: every line answers the
//! command in flight, so any other line is refused. The steps every dialect shares
//! (STLS, the SASL exchange, the logout) are in [`super::core`].
//!
//! APOP (RFC 1939 section 7) is spoken when the session asks for it (the account lists
//! `apop`): `APOP user MD5(timestamp password)`, with the timestamp of the greeting.

use super::core::{Awaiting, Client, Core, Language, Reply as Meaning, Step, accepted};
use super::line::{MAX_LINE, MAX_REPLY_BYTES, MAX_REPLY_LINES, take_line};
use super::{
    Capabilities, Event, LoginError, Outgoing, ProtocolError, UnsafeArgument, check_argument,
    sasl_command, shown_text, unexpected,
};
use crate::secret::{Piece, Secret, assemble};

/// Longest command line, CRLF included (RFC 2449 section 4). An `AUTH` whose initial
/// response would make it longer is sent without one (RFC 5034 section 4).
pub const MAX_COMMAND: usize = 255;

/// POP3's own steps; the shared ones are in [`Step`].
#[derive(Debug)]
pub enum State {
    /// The server's first line.
    ExpectGreeting,
    /// The status line of our `CAPA`.
    ExpectCapaStatus { after_auth: bool },
    /// The capability lines of our `CAPA`, up to the lone dot.
    ExpectCapaLines {
        after_auth: bool,
        lines: Vec<String>,
        size: usize,
    },
    /// The reply to `USER`; the password waits for it.
    ExpectUserReply { pass: Secret<Vec<u8>> },
    /// The reply to `PASS` or `APOP`.
    ExpectPassReply,
}

/// POP3's framing and commands: the greeting's APOP timestamp.
pub struct Pop3 {
    /// Kept across TLS, unlike the capabilities: it is the server's challenge for this
    /// connection, not a capability. One altered before TLS can only make APOP fail,
    /// since the digest then travels inside TLS to the real server.
    apop_timestamp: Option<String>,
}

/// The POP3 client dialect. See the [module documentation](self).
pub type Pop3Client = Client<Pop3>;

/// A parsed server line.
enum Reply<'a> {
    Ok(&'a [u8]),
    Err(&'a [u8]),
    /// `+ base64` (or a bare `+`): a SASL challenge.
    Continuation(&'a [u8]),
}

fn parse(line: &[u8]) -> Option<Reply<'_>> {
    fn status<'a>(line: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
        let head = line.get(..word.len())?;
        if !head.eq_ignore_ascii_case(word) {
            return None;
        }
        match &line[word.len()..] {
            [] => Some(&[]),
            [b' ', rest @ ..] => Some(rest),
            _ => None,
        }
    }
    if let Some(rest) = status(line, b"+OK") {
        return Some(Reply::Ok(rest));
    }
    if let Some(rest) = status(line, b"-ERR") {
        return Some(Reply::Err(rest));
    }
    status(line, b"+").map(Reply::Continuation)
}
/// Builds [`Capabilities`] from the lines of a `CAPA` reply (RFC 2449 section 6).
pub fn capabilities(lines: Vec<String>) -> Capabilities {
    let keyword = |l: &str| {
        l.split_ascii_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase()
    };
    let mut mechanisms: Vec<String> = Vec::new();
    let mut sasl = false;
    for line in &lines {
        if keyword(line) == "SASL" {
            sasl = true;
            for m in line.split_ascii_whitespace().skip(1) {
                let m = m.to_ascii_uppercase();
                if !mechanisms.contains(&m) {
                    mechanisms.push(m);
                }
            }
        }
    }
    Capabilities {
        starttls: lines.iter().any(|l| keyword(l) == "STLS"),
        // RFC 2449 section 6.7: USER says that USER/PASS is allowed on this link.
        logins: if lines.iter().any(|l| keyword(l) == "USER") {
            vec![super::USER_PASS]
        } else {
            Vec::new()
        },
        // RFC 5034 makes the initial response part of every POP3 AUTH.
        sasl_ir: sasl,
        mechanisms,
        raw: lines,
    }
}

/// The APOP digest (RFC 1939 section 7): MD5 of `timestamp` then `password`, as 32
/// lower-case hex digits.
pub fn apop_digest(timestamp: &str, password: &[u8]) -> Secret<String> {
    use md5::{Digest, Md5};
    let mut md5 = Md5::new();
    md5.update(timestamp.as_bytes());
    md5.update(password);
    let hash = Secret::new(md5.finalize().to_vec());
    // Lower-case hex written into a string of its final size.
    let mut hex = String::with_capacity(2 * hash.expose().len());
    for b in hash.expose() {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    Secret::new(hex)
}

/// The `<...>` timestamp of an APOP-capable greeting (RFC 1939 section 7).
fn timestamp(text: &[u8]) -> Option<String> {
    let open = text.iter().position(|&b| b == b'<')?;
    let close = open + text[open..].iter().position(|&b| b == b'>')?;
    Some(String::from_utf8_lossy(&text[open..=close]).into_owned())
}

impl Pop3Client {
    /// A dialect for a fresh connection; `on_tls` says whether the link is already TLS
    /// (implicit TLS, port 995) or plaintext.
    pub fn new(on_tls: bool) -> Self {
        let pop3 = Pop3 {
            apop_timestamp: None,
        };
        Client::with(pop3, on_tls, State::ExpectGreeting)
    }

    /// The APOP timestamp of the greeting, if the server sent one.
    pub fn apop_timestamp(&self) -> Option<&str> {
        self.lang.apop_timestamp.as_deref()
    }

    /// Logs in with `USER` and `PASS` (RFC 1939 section 7) instead of SASL, after
    /// [`Event::Ready`]. The outcome arrives as [`Event::Rejected`] or
    /// [`Event::Authenticated`], as for [`super::Dialect::authenticate`]. The password
    /// travels as it is: the caller's policy must allow it only over TLS.
    pub fn login(&mut self, user: &str, pass: Secret<Vec<u8>>) -> Result<(), UnsafeArgument> {
        login(&mut self.core, user, pass)
    }

    /// Logs in with `APOP user digest` (RFC 1939 section 7), the digest being the MD5 of
    /// the greeting's timestamp followed by the password, in lower-case hex. The digest
    /// goes into no trace.
    pub fn apop(&mut self, user: &str, pass: Secret<Vec<u8>>) -> Result<(), LoginError> {
        self.lang.apop(&mut self.core, user, pass)
    }
}

fn login(core: &mut Core<State>, user: &str, pass: Secret<Vec<u8>>) -> Result<(), UnsafeArgument> {
    check_argument("user name", user.as_bytes())?;
    check_argument("password", pass.expose())?;
    core.out.command(&format!("USER {user}"));
    core.step = Step::Own(State::ExpectUserReply { pass });
    Ok(())
}

impl Pop3 {
    fn apop(
        &mut self,
        core: &mut Core<State>,
        user: &str,
        pass: Secret<Vec<u8>>,
    ) -> Result<(), LoginError> {
        check_argument("user name", user.as_bytes())?;
        let timestamp = self
            .apop_timestamp
            .as_deref()
            .ok_or(LoginError::NoApopTimestamp)?;
        let digest = apop_digest(timestamp, pass.expose());
        let bytes = assemble(&[
            Piece::Raw(b"APOP "),
            Piece::Raw(user.as_bytes()),
            Piece::Raw(b" "),
            Piece::Raw(digest.expose().as_bytes()),
            Piece::Raw(b"\r\n"),
        ]);
        core.out.send_secret(bytes, format!("APOP {user} [digest]"));
        core.step = Step::Own(State::ExpectPassReply);
        Ok(())
    }

    /// The capabilities are known (`CAPA` answered, or refused by an RFC 1939 server).
    fn capabilities_known(&self, core: &mut Core<State>, mut caps: Capabilities, after_auth: bool) {
        if after_auth {
            core.authenticated(caps);
        } else {
            if self.apop_timestamp.is_some() {
                caps.logins.push(super::APOP);
            }
            core.ready(caps);
        }
    }
}

/// Adds a line of a `CAPA` reply to `lines` (`size` bytes so far), within the bounds.
fn capa_line(
    mut lines: Vec<String>,
    size: usize,
    line: &[u8],
) -> Result<(Vec<String>, usize), ProtocolError> {
    // RFC 1939 section 3: a line starting with a dot has one more in front.
    let unstuffed = line.strip_prefix(b".").unwrap_or(line);
    let size = size + unstuffed.len();
    if lines.len() >= MAX_REPLY_LINES {
        return Err(ProtocolError::TooManyReplyLines {
            limit: MAX_REPLY_LINES,
        });
    }
    if size > MAX_REPLY_BYTES {
        return Err(ProtocolError::ReplyTooLarge {
            limit: MAX_REPLY_BYTES,
        });
    }
    lines.push(String::from_utf8_lossy(unstuffed).into_owned());
    Ok((lines, size))
}

impl Language for Pop3 {
    type Own = State;
    type Frame = Vec<u8>;

    fn take_frame(&mut self, core: &mut Core<State>) -> Result<Option<Vec<u8>>, ProtocolError> {
        let Some(line) = take_line(&mut core.buf, MAX_LINE)? else {
            return Ok(None);
        };
        let shown = match (parse(&line), &core.step) {
            (Some(Reply::Continuation(_)), Step::ExpectAuthReply { .. }) => {
                "+ [SASL payload]".to_string()
            }
            _ => shown_text(&line),
        };
        core.out.push(Event::Received(shown));
        Ok(Some(line))
    }

    fn handle_own(
        &mut self,
        core: &mut Core<State>,
        own: State,
        line: Vec<u8>,
    ) -> Result<(), ProtocolError> {
        match (own, parse(&line)) {
            (State::ExpectGreeting, Some(Reply::Ok(text))) => {
                self.apop_timestamp = timestamp(text);
                self.ask_capabilities(core, false);
            }
            (State::ExpectGreeting, Some(Reply::Err(text))) => {
                return Err(ProtocolError::GreetingRefused {
                    text: shown_text(text),
                });
            }
            (State::ExpectGreeting, _) => {
                return Err(ProtocolError::UnexpectedGreeting {
                    line: shown_text(&line),
                });
            }

            (State::ExpectCapaStatus { after_auth }, Some(Reply::Ok(_))) => {
                core.step = Step::Own(State::ExpectCapaLines {
                    after_auth,
                    lines: Vec::new(),
                    size: 0,
                });
            }
            // A server without CAPA (RFC 1939 only) offers nothing we can verify: no STLS,
            // no SASL. The driver decides what that means.
            (State::ExpectCapaStatus { after_auth }, Some(Reply::Err(_))) => {
                self.capabilities_known(core, Capabilities::default(), after_auth);
            }

            (
                State::ExpectCapaLines {
                    after_auth, lines, ..
                },
                _,
            ) if line == b"." => {
                self.capabilities_known(core, capabilities(lines), after_auth);
            }
            (
                State::ExpectCapaLines {
                    after_auth,
                    lines,
                    size,
                },
                _,
            ) => {
                let (lines, size) = capa_line(lines, size, &line)?;
                core.step = Step::Own(State::ExpectCapaLines {
                    after_auth,
                    lines,
                    size,
                });
            }

            (State::ExpectUserReply { pass }, Some(Reply::Ok(_))) => {
                let bytes = assemble(&[
                    Piece::Raw(b"PASS "),
                    Piece::Raw(pass.expose()),
                    Piece::Raw(b"\r\n"),
                ]);
                core.out.send_secret(bytes, "PASS [password]".into());
                core.step = Step::Own(State::ExpectPassReply);
            }
            (State::ExpectPassReply, Some(Reply::Ok(text))) => accepted(self, core, text),
            (State::ExpectUserReply { .. } | State::ExpectPassReply, Some(Reply::Err(text))) => {
                core.rejected(text);
            }

            (_, _) => return Err(unexpected(&line)),
        }
        Ok(())
    }

    fn reply<'f>(
        &self,
        _awaiting: Awaiting,
        line: &'f Vec<u8>,
    ) -> Result<Meaning<'f>, ProtocolError> {
        match parse(line) {
            Some(Reply::Ok(text)) => Ok(Meaning::Ok(text)),
            Some(Reply::Err(text)) => Ok(Meaning::Refused(text)),
            Some(Reply::Continuation(data)) => Ok(Meaning::Continuation(data)),
            None => Err(unexpected(line)),
        }
    }

    fn unexpected(line: &Vec<u8>) -> ProtocolError {
        unexpected(line)
    }

    fn start_tls(&mut self, core: &mut Core<State>) {
        core.out.command("STLS");
    }

    fn ask_capabilities(&mut self, core: &mut Core<State>, after_auth: bool) {
        core.out.command("CAPA");
        core.step = Step::Own(State::ExpectCapaStatus { after_auth });
    }

    fn auth_command(
        &mut self,
        core: &mut Core<State>,
        mechanism: &str,
        initial: Option<Secret<Vec<u8>>>,
    ) -> (Outgoing, Option<Secret<Vec<u8>>>) {
        // RFC 5034 section 4: the AUTH line stays within 255 octets.
        sasl_command("AUTH", mechanism, initial, core.caps.sasl_ir, MAX_COMMAND)
    }

    fn logout(&mut self, core: &mut Core<State>) {
        core.out.command("QUIT");
    }

    fn ends_logout(line: &[u8]) -> bool {
        line.starts_with(b"+OK") || line.starts_with(b"-ERR")
    }

    fn password_login(
        &mut self,
        core: &mut Core<State>,
        login: &str,
        user: &str,
        password: Secret<Vec<u8>>,
    ) -> Result<(), LoginError> {
        match login {
            super::USER_PASS => Ok(self::login(core, user, password)?),
            super::APOP => self.apop(core, user, password),
            _ => Err(LoginError::not_here(login)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Dialect;
    use crate::protocol::testing::{Outcome, Script, Transcript, dovecot_pop3_caps, drive};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use std::collections::VecDeque;

    const GREETING: &[u8] = b"+OK Dovecot (Debian) ready.\r\n";
    /// Dovecot 2.3.19 before TLS on port 110 with `disable_plaintext_auth` (captured):
    /// no USER, and a SASL line without mechanisms.
    const CAPA_PLAIN: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nSASL\r\n.\r\n";
    /// Dovecot 2.3.19 after TLS (captured), with GSSAPI configured.
    const CAPA_TLS: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN GSSAPI\r\n.\r\n";
    /// Dovecot 2.3.19 after login (captured).
    const CAPA_AUTHED: &[u8] =
        b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n.\r\n";
    const STLS_OK: &[u8] = b"+OK Begin TLS negotiation now.\r\n";
    /// The client side up to the first AUTH after a STLS upgrade.
    const TO_TLS: &str = "CAPA\r\nSTLS\r\n<TLS>CAPA\r\n";

    /// Runs a plaintext session with the default script and checks the client's bytes.
    fn check(server: &[&[u8]], expected_client: &str) -> Transcript {
        check_with(false, Script::default(), server, expected_client)
    }

    fn check_with(
        on_tls: bool,
        script: Script,
        server: &[&[u8]],
        expected_client: &str,
    ) -> Transcript {
        let mut d = Pop3Client::new(on_tls);
        let t = drive(&mut d, on_tls, script, server);
        assert_eq!(t.client, expected_client, "outcome: {:?}", t.outcome);
        t
    }

    #[test]
    fn rfc1939_err_greeting_refused() {
        let t = check(&[b"-ERR [SYS/TEMP] too many connections\r\n"], "");
        assert_eq!(
            t.outcome,
            Outcome::Failed(ProtocolError::GreetingRefused {
                text: "[SYS/TEMP] too many connections".into()
            })
        );
    }

    #[test]
    fn rfc1939_not_a_greeting_refused() {
        let t = check(&[b"* OK [CAPABILITY IMAP4rev1] imap here\r\n"], "");
        assert!(matches!(
            t.outcome,
            Outcome::Failed(ProtocolError::UnexpectedGreeting { .. })
        ));
        // "+OKAY" is not "+OK".
        let t = check(&[b"+OKAY\r\n"], "");
        assert!(matches!(
            t.outcome,
            Outcome::Failed(ProtocolError::UnexpectedGreeting { .. })
        ));
    }

    #[test]
    fn rfc1939_apop_timestamp_kept_from_greeting() {
        let mut d = Pop3Client::new(true);
        d.receive(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
        while !matches!(d.poll().unwrap(), Event::NeedInput) {}
        assert_eq!(
            d.apop_timestamp(),
            Some("<1896.697170952@dbc.mtview.ca.us>")
        );
    }

    #[test]
    fn rfc2595_stls_not_offered_reported_in_ready() {
        let capa = b"+OK\r\nTOP\r\nUSER\r\nSASL PLAIN\r\n.\r\n";
        let t = check(&[GREETING, capa], "CAPA\r\n");
        let Outcome::NoStartTls(caps) = t.outcome else {
            panic!("{:?}", t.outcome)
        };
        assert!(!caps.starttls);
        assert_eq!(caps.mechanisms, ["PLAIN"]);
    }

    #[test]
    fn dovecot_sasl_line_without_mechanisms_before_tls() {
        let t = check(&[GREETING, CAPA_PLAIN, b"-ERR no\r\n"], "CAPA\r\nSTLS\r\n");
        assert!(matches!(
            t.outcome,
            Outcome::Failed(ProtocolError::StartTlsRefused { .. })
        ));
        let caps = capabilities(vec!["SASL".into(), "STLS".into()]);
        assert!(caps.mechanisms.is_empty() && caps.starttls);
    }

    #[test]
    fn rfc2449_server_without_capa_offers_nothing() {
        let t = check(&[GREETING, b"-ERR unknown command\r\n"], "CAPA\r\n");
        assert_eq!(t.outcome, Outcome::NoStartTls(Capabilities::default()));
    }

    #[test]
    fn rfc2595_stls_refused() {
        let t = check(
            &[GREETING, CAPA_PLAIN, b"-ERR TLS not available\r\n"],
            "CAPA\r\nSTLS\r\n",
        );
        assert_eq!(
            t.outcome,
            Outcome::Failed(ProtocolError::StartTlsRefused {
                text: "TLS not available".into()
            })
        );
    }

    #[test]
    fn rfc2595_bytes_after_stls_ok_refused() {
        // The injected line arrives in the same read as the +OK.
        let t = check(
            &[GREETING, CAPA_PLAIN, b"+OK Begin TLS\r\n+OK Logged in.\r\n"],
            "CAPA\r\nSTLS\r\n",
        );
        assert_eq!(
            t.outcome,
            Outcome::Failed(ProtocolError::BytesAfterStartTlsOk { count: 16 })
        );
    }

    #[test]
    fn rfc2595_capabilities_discarded_after_tls_and_asked_again() {
        // Before TLS the (possibly forged) list has no GSSAPI; after TLS it has.
        let t = check(
            &[
                GREETING,
                CAPA_PLAIN,
                STLS_OK,
                CAPA_TLS,
                b"+OK Logged in.\r\n",
                CAPA_AUTHED,
            ],
            &format!("{TO_TLS}AUTH GSSAPI dG9rZW4tMQ==\r\nCAPA\r\n"),
        );
        assert_eq!(t.outcome, Outcome::Authenticated(dovecot_pop3_caps()));
    }

    #[test]
    fn rfc2595_stls_offered_only_before_tls_is_not_asked_twice() {
        // A server that still lists STLS after TLS: the driver authenticates.
        let t = check(
            &[GREETING, CAPA_PLAIN, STLS_OK, CAPA_PLAIN, b"-ERR no\r\n"],
            &format!("{TO_TLS}AUTH GSSAPI dG9rZW4tMQ==\r\n"),
        );
        assert_eq!(t.outcome, Outcome::NoMechanismLeft);
    }

    #[test]
    fn rfc5034_auth_with_initial_response_challenge_and_success() {
        let t = check(
            &[
                GREETING,
                CAPA_PLAIN,
                STLS_OK,
                CAPA_TLS,
                b"+ Y2hhbGxlbmdl\r\n",
                b"+OK Logged in.\r\n",
                CAPA_AUTHED,
            ],
            &format!("{TO_TLS}AUTH GSSAPI dG9rZW4tMQ==\r\ndG9rZW4tMg==\r\nCAPA\r\n"),
        );
        assert_eq!(t.challenges, [b"challenge".to_vec()]);
        assert_eq!(t.outcome, Outcome::Authenticated(dovecot_pop3_caps()));
        // No SASL payload in any trace.
        assert!(t.traces.contains(&"+ [SASL payload]".to_string()));
        assert!(!t.traces.iter().any(|l| l.contains("Y2hh")));
    }

    #[test]
    fn rfc5034_auth_without_initial_response_gets_empty_challenge() {
        let script = Script {
            mechanisms: vec![("GSSAPI", None)],
            responses: vec![b"token-1"],
        };
        let t = check_with(
            true,
            script,
            &[
                GREETING,
                CAPA_TLS,
                b"+ \r\n",
                b"+OK Logged in.\r\n",
                CAPA_AUTHED,
            ],
            "CAPA\r\nAUTH GSSAPI\r\ndG9rZW4tMQ==\r\nCAPA\r\n",
        );
        assert_eq!(t.challenges, [Vec::<u8>::new()]);
        assert_eq!(t.outcome, Outcome::Authenticated(dovecot_pop3_caps()));
    }

    #[test]
    fn rfc5034_empty_initial_response_is_an_equals_sign() {
        let script = Script {
            mechanisms: vec![("EXTERNAL", Some(b""))],
            responses: vec![],
        };
        check_with(
            true,
            script,
            &[GREETING, CAPA_TLS, b"+OK\r\n", CAPA_AUTHED],
            "CAPA\r\nAUTH EXTERNAL =\r\nCAPA\r\n",
        );
    }

    #[test]
    fn rfc5034_4_initial_response_over_255_octets_waits_for_empty_challenge() {
        // A Kerberos AP-REQ is typically 600 to 2000 bytes: it never fits.
        static BIG: [u8; 300] = [7u8; 300];
        let script = Script {
            mechanisms: vec![("GSSAPI", Some(&BIG))],
            responses: vec![],
        };
        let encoded = B64.encode(BIG);
        let t = check_with(
            true,
            script,
            &[
                GREETING,
                CAPA_TLS,
                b"+ \r\n",
                b"+OK Logged in.\r\n",
                CAPA_AUTHED,
            ],
            &format!("CAPA\r\nAUTH GSSAPI\r\n{encoded}\r\nCAPA\r\n"),
        );
        // The driver's mechanism never saw the empty challenge.
        assert!(t.challenges.is_empty());
        assert_eq!(t.outcome, Outcome::Authenticated(dovecot_pop3_caps()));
    }

    #[test]
    fn rfc5034_initial_response_at_exactly_255_octets_stays_on_the_line() {
        // "AUTH XYZ " (9) + 244 base64 characters (183 bytes) + CRLF = 255.
        static FITS: [u8; 183] = [1u8; 183];
        let script = Script {
            mechanisms: vec![("XYZ", Some(&FITS))],
            responses: vec![],
        };
        let encoded = B64.encode(FITS);
        let mut d = Pop3Client::new(true);
        let t = drive(&mut d, true, script, &[GREETING, CAPA_TLS]);
        let auth = format!("AUTH XYZ {encoded}\r\n");
        assert_eq!(auth.len(), MAX_COMMAND);
        assert_eq!(t.client, format!("CAPA\r\n{auth}"));
    }

    #[test]
    fn rfc5034_rejection_then_another_mechanism() {
        let script = Script {
            mechanisms: vec![("GSSAPI", Some(b"token-1")), ("PLAIN", Some(b"\0u\0p"))],
            responses: vec![],
        };
        let t = check_with(
            true,
            script,
            &[
                GREETING,
                CAPA_TLS,
                b"-ERR [AUTH] Authentication failed.\r\n",
                b"+OK Logged in.\r\n",
                CAPA_AUTHED,
            ],
            "CAPA\r\nAUTH GSSAPI dG9rZW4tMQ==\r\nAUTH PLAIN AHUAcA==\r\nCAPA\r\n",
        );
        assert_eq!(t.rejections, ["[AUTH] Authentication failed."]);
        assert_eq!(t.outcome, Outcome::Authenticated(dovecot_pop3_caps()));
    }

    #[test]
    fn rfc5034_cancel_with_star() {
        let script = Script {
            mechanisms: vec![("GSSAPI", Some(b"token-1"))],
            responses: vec![],
        };
        let t = check_with(
            true,
            script,
            &[
                GREETING,
                CAPA_TLS,
                b"+ YQ==\r\n",
                b"-ERR Authentication aborted by client.\r\n",
            ],
            "CAPA\r\nAUTH GSSAPI dG9rZW4tMQ==\r\n*\r\n",
        );
        assert_eq!(t.rejections, ["Authentication aborted by client."]);
        assert_eq!(t.outcome, Outcome::NoMechanismLeft);
    }

    #[test]
    fn rfc5034_challenge_not_base64_refused() {
        let t = check_with(
            true,
            Script::default(),
            &[GREETING, CAPA_TLS, b"+ not*base64\r\n"],
            "CAPA\r\nAUTH GSSAPI dG9rZW4tMQ==\r\n",
        );
        assert_eq!(
            t.outcome,
            Outcome::Failed(ProtocolError::MalformedChallenge)
        );
    }

    #[test]
    fn rfc2449_multiline_capa_parsed_across_reads() {
        let mut d = Pop3Client::new(true);
        let t = drive(
            &mut d,
            true,
            Script::default(),
            &[
                GREETING,
                b"+OK\r\nTOP\r\nSA",
                b"SL gssapi PLAIN\r\nST",
                b"LS\r\n.\r\n",
            ],
        );
        assert_eq!(t.client, "CAPA\r\nAUTH GSSAPI dG9rZW4tMQ==\r\n");
        assert_eq!(d.core.caps.mechanisms, ["GSSAPI", "PLAIN"]);
        assert_eq!(d.core.caps.raw, ["TOP", "SASL gssapi PLAIN", "STLS"]);
        assert!(d.core.caps.starttls && d.core.caps.sasl_ir);
    }

    #[test]
    fn rfc2449_dot_stuffed_capa() {
        let t = check(&[GREETING, b"+OK\r\n..HIDDEN\r\nUSER\r\n.\r\n"], "CAPA\r\n");
        let Outcome::NoStartTls(caps) = t.outcome else {
            panic!("{:?}", t.outcome)
        };
        assert_eq!(caps.raw, [".HIDDEN", "USER"]);
    }

    #[test]
    fn capa_with_too_many_lines_refused() {
        let mut capa = b"+OK\r\n".to_vec();
        for i in 0..=MAX_REPLY_LINES {
            capa.extend_from_slice(format!("X-{i}\r\n").as_bytes());
        }
        let t = check(&[GREETING, &capa], "CAPA\r\n");
        assert_eq!(
            t.outcome,
            Outcome::Failed(ProtocolError::TooManyReplyLines {
                limit: MAX_REPLY_LINES
            })
        );
    }

    #[test]
    fn capa_larger_than_the_limit_refused() {
        let mut capa = b"+OK\r\n".to_vec();
        let long = "X".repeat(MAX_LINE - 10);
        for _ in 0..2 {
            capa.extend_from_slice(long.as_bytes());
            capa.extend_from_slice(b"\r\n");
        }
        let t = check(&[GREETING, &capa], "CAPA\r\n");
        assert_eq!(
            t.outcome,
            Outcome::Failed(ProtocolError::ReplyTooLarge {
                limit: MAX_REPLY_BYTES
            })
        );
    }

    #[test]
    fn overlong_line_refused() {
        let long = vec![b'+'; MAX_LINE + 1];
        let t = check(&[&long], "");
        assert_eq!(
            t.outcome,
            Outcome::Failed(ProtocolError::LineTooLong { limit: MAX_LINE })
        );
    }

    #[test]
    fn nul_byte_refused() {
        let t = check(&[b"+OK Dovecot\0 ready.\r\n"], "");
        assert_eq!(t.outcome, Outcome::Failed(ProtocolError::NulByte));
    }

    #[test]
    fn garbage_during_authentication_refused() {
        let t = check_with(
            true,
            Script::default(),
            &[GREETING, CAPA_TLS, b"* OK what\r\n"],
            "CAPA\r\nAUTH GSSAPI dG9rZW4tMQ==\r\n",
        );
        assert!(matches!(
            t.outcome,
            Outcome::Failed(ProtocolError::UnexpectedLine { .. })
        ));
    }

    #[test]
    fn continuation_outside_authentication_refused() {
        let t = check(&[GREETING, b"+ abc\r\n"], "CAPA\r\n");
        assert!(matches!(
            t.outcome,
            Outcome::Failed(ProtocolError::UnexpectedLine { .. })
        ));
    }

    #[test]
    fn bytes_after_authentication_are_left_for_the_relay() {
        let mut d = Pop3Client::new(true);
        let mut capa = CAPA_AUTHED.to_vec();
        capa.extend_from_slice(b"+OK 2 320\r\n");
        let t = drive(
            &mut d,
            true,
            Script::default(),
            &[GREETING, CAPA_TLS, b"+OK Logged in.\r\n", &capa],
        );
        assert_eq!(t.outcome, Outcome::Authenticated(dovecot_pop3_caps()));
        assert_eq!(d.take_leftover(), b"+OK 2 320\r\n");
    }

    #[test]
    fn rfc1939_user_pass_login() {
        let mut d = Pop3Client::new(true);
        d.receive(GREETING);
        d.receive(CAPA_TLS);
        let mut sent = String::new();
        let mut shown = Vec::new();
        let mut script: VecDeque<&[u8]> =
            VecDeque::from([b"+OK\r\n".as_slice(), b"+OK Logged in.\r\n", CAPA_AUTHED]);
        let caps = loop {
            match d.poll().unwrap() {
                Event::Ready(_) => d.login("alice", Secret::new(b"s3cret".to_vec())).unwrap(),
                Event::Send(o) => {
                    sent.push_str(&String::from_utf8_lossy(o.bytes.expose()));
                    shown.push(o.shown);
                }
                Event::NeedInput => d.receive(script.pop_front().unwrap()),
                Event::AuthAccepted => {}
                Event::Authenticated(caps) => break caps,
                Event::Received(_) => {}
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(sent, "CAPA\r\nUSER alice\r\nPASS s3cret\r\nCAPA\r\n");
        assert!(!shown.iter().any(|s| s.contains("s3cret")));
        assert_eq!(caps, dovecot_pop3_caps());
    }

    #[test]
    fn rfc1939_apop_digest_matches_the_rfc_example() {
        assert_eq!(
            apop_digest("<1896.697170952@dbc.mtview.ca.us>", b"tanstaaf").expose(),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
    }

    /// Drives a POP3 session to Ready and logs in with `login`; returns the bytes sent,
    /// the traces shown and the outcome.
    fn password_session(
        on_tls: bool,
        server: &[&[u8]],
        login: &str,
    ) -> (String, Vec<String>, Result<Option<Capabilities>, String>) {
        let mut d = Pop3Client::new(on_tls);
        let mut script: VecDeque<&[u8]> = server.iter().copied().collect();
        let (mut sent, mut shown) = (String::new(), Vec::new());
        let mut tls = on_tls;
        let outcome = loop {
            match d.poll() {
                Err(e) => break Err(e.to_string()),
                Ok(Event::Ready(caps)) if !tls => {
                    assert!(caps.starttls);
                    d.start_tls();
                }
                Ok(Event::StartTls) => {
                    tls = true;
                    sent.push_str("<TLS>");
                    d.tls_established();
                }
                Ok(Event::Ready(caps)) => {
                    if !caps.offers(login) {
                        break Err(format!("{login} not offered: {:?}", caps.logins));
                    }
                    if let Err(e) =
                        d.password_login(login, "mrose", Secret::new(b"tanstaaf".to_vec()))
                    {
                        break Err(e.to_string());
                    }
                }
                Ok(Event::Send(o)) => {
                    sent.push_str(&String::from_utf8_lossy(o.bytes.expose()));
                    shown.push(o.shown);
                }
                Ok(Event::NeedInput) => match script.pop_front() {
                    Some(chunk) => d.receive(chunk),
                    None => break Ok(None),
                },
                Ok(Event::Authenticated(caps)) => break Ok(Some(caps)),
                Ok(Event::Rejected { text }) => break Err(format!("rejected {text}")),
                Ok(Event::Received(_) | Event::AuthAccepted) => {}
                Ok(other) => panic!("{other:?}"),
            }
        };
        (sent, shown, outcome)
    }

    const APOP_GREETING: &[u8] = b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n";

    #[test]
    fn rfc1939_apop_after_stls_uses_the_greeting_timestamp_and_hides_the_digest() {
        let (sent, shown, outcome) = password_session(
            false,
            &[
                APOP_GREETING,
                CAPA_PLAIN,
                STLS_OK,
                CAPA_TLS,
                b"+OK maildrop has 1 message\r\n",
                CAPA_AUTHED,
            ],
            crate::protocol::APOP,
        );
        assert_eq!(outcome, Ok(Some(dovecot_pop3_caps())));
        assert_eq!(
            sent,
            format!("{TO_TLS}APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\nCAPA\r\n")
        );
        assert!(shown.contains(&"APOP mrose [digest]".to_string()));
        assert!(!shown.iter().any(|s| s.contains("c4c9")));
    }

    #[test]
    fn pass_and_apop_lines_are_allocated_at_their_final_size() {
        use crate::protocol::testing::{assert_final_size, queued_sends};
        for login in [crate::protocol::USER_PASS, crate::protocol::APOP] {
            let mut d = Pop3Client::new(true);
            d.receive(APOP_GREETING);
            d.receive(CAPA_TLS);
            loop {
                match d.poll().unwrap() {
                    Event::Ready(_) => break,
                    Event::NeedInput => panic!("{login}: not ready"),
                    _ => {}
                }
            }
            d.password_login(login, "mrose", Secret::new(b"tanstaaf".to_vec()))
                .unwrap();
            let mut sends = queued_sends(&mut d);
            if login == crate::protocol::USER_PASS {
                // USER first; PASS after its +OK.
                d.receive(b"+OK\r\n");
                sends = queued_sends(&mut d);
                assert_eq!(sends[0].shown, "PASS [password]");
            }
            assert_final_size(login, &sends);
        }
    }

    #[test]
    fn apop_is_offered_only_with_a_timestamp_and_a_refusal_is_a_rejection() {
        let (_, _, outcome) = password_session(true, &[GREETING, CAPA_TLS], crate::protocol::APOP);
        assert_eq!(outcome, Err("APOP not offered: [\"USER-PASS\"]".into()));
        let (_, _, outcome) = password_session(
            true,
            &[
                APOP_GREETING,
                CAPA_TLS,
                b"-ERR [AUTH] permission denied\r\n",
            ],
            crate::protocol::APOP,
        );
        assert_eq!(outcome, Err("rejected [AUTH] permission denied".into()));
    }

    #[test]
    fn user_pass_through_the_dialect_trait() {
        let (sent, shown, outcome) = password_session(
            true,
            &[
                GREETING,
                CAPA_TLS,
                b"+OK\r\n",
                b"+OK Logged in.\r\n",
                CAPA_AUTHED,
            ],
            crate::protocol::USER_PASS,
        );
        assert_eq!(outcome, Ok(Some(dovecot_pop3_caps())));
        assert_eq!(sent, "CAPA\r\nUSER mrose\r\nPASS tanstaaf\r\nCAPA\r\n");
        assert!(!shown.iter().any(|s| s.contains("tanstaaf")));
        // Without USER in CAPA, USER/PASS is not offered.
        let (_, _, outcome) =
            password_session(true, &[GREETING, CAPA_AUTHED], crate::protocol::USER_PASS);
        assert!(outcome.unwrap_err().contains("not offered"));
    }

    #[test]
    fn login_arguments_with_line_breaks_refused() {
        let mut d = Pop3Client::new(true);
        assert_eq!(
            d.login("alice\r\nDELE 1", Secret::new(b"p".to_vec())),
            Err(UnsafeArgument { what: "user name" })
        );
        assert_eq!(
            d.login("alice", Secret::new(b"p\n".to_vec())),
            Err(UnsafeArgument { what: "password" })
        );
    }
}
