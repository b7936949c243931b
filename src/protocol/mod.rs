//! Sans-I/O client dialects: each turns the server's bytes into [`Event`]s and the
//! driver's decisions into bytes to send, from the greeting to the end of authentication.
//!
//! Nothing here does I/O, reads a clock or knows about TLS libraries or Kerberos: the
//! driver (`session`) feeds bytes in with [`Dialect::receive`] and acts on what
//! [`Dialect::poll`] returns. Bytes received before a TLS upgrade stay in the dialect's
//! own buffer, so any byte after the STARTTLS reply is visible and refused.

pub mod core;
pub mod imap;
pub mod line;
pub mod local;
pub mod local_imap;
pub mod local_login;
pub mod pop3;
#[cfg(test)]
mod rules;
pub mod smtp;

use std::fmt;

use crate::secret::{Piece, Secret, assemble};

/// What the server offers on the current link (before TLS, or after it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The capabilities as the server wrote them, in its order.
    pub raw: Vec<String>,
    /// SASL mechanisms offered, upper-cased.
    pub mechanisms: Vec<String>,
    /// The server offers STARTTLS (IMAP, SMTP) or STLS (POP3).
    pub starttls: bool,
    /// The server accepts an initial response with the authentication command.
    pub sasl_ir: bool,
    /// The protocol's own password logins the server allows on this link: [`IMAP_LOGIN`]
    /// (no `LOGINDISABLED`), [`USER_PASS`] (`USER` in CAPA), [`APOP`] (a greeting
    /// timestamp). Not SASL: kept apart from `mechanisms`.
    pub logins: Vec<&'static str>,
}

/// The IMAP `LOGIN` command (RFC 9051 section 6.2.3), as the policy names it.
pub const IMAP_LOGIN: &str = "IMAP-LOGIN";
/// POP3 `USER` and `PASS` (RFC 1939 section 7), as the policy names them.
pub const USER_PASS: &str = "USER-PASS";
/// POP3 `APOP` (RFC 1939 section 7), as the policy names it.
pub const APOP: &str = "APOP";

impl Capabilities {
    /// Whether `mech` is offered (case-insensitive).
    pub fn offers(&self, mech: &str) -> bool {
        self.mechanisms.iter().any(|m| m.eq_ignore_ascii_case(mech))
            || self.logins.iter().any(|m| m.eq_ignore_ascii_case(mech))
    }
}

/// Bytes for the server, with the text a trace may show in their place.
pub struct Outgoing {
    pub bytes: Secret<Vec<u8>>,
    /// What a trace shows: the command with every SASL payload replaced by a marker.
    pub shown: String,
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Outgoing({:?})", self.shown)
    }
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Event {
    /// Read more bytes from the server and pass them to [`Dialect::receive`].
    NeedInput,
    /// Write these bytes to the server.
    Send(Outgoing),
    /// A line the server sent, as a trace may show it (SASL payloads replaced).
    Received(String),
    /// The capabilities on this link are known; call [`Dialect::start_tls`] or
    /// [`Dialect::authenticate`].
    Ready(Capabilities),
    /// The server accepted STARTTLS and nothing followed its reply: do the TLS handshake
    /// now, then call [`Dialect::tls_established`].
    StartTls,
    /// A server challenge for the running mechanism (decoded); answer with
    /// [`Dialect::auth_response`] or [`Dialect::cancel_auth`].
    Challenge(Secret<Vec<u8>>),
    /// The server reported success. The driver must check that the mechanism finished
    /// (and verified the server) before anything more goes out: the dialect queues its
    /// post-authentication query behind this event.
    AuthAccepted,
    /// The server refused the mechanism; the dialect is ready for another attempt.
    Rejected { text: String },
    /// The server accepted the authentication; these are its capabilities now.
    Authenticated(Capabilities),
    /// The server answered the logout ([`Dialect::logout`]), or closed the connection
    /// after it ([`Dialect::closed`]): `text` is its last line, escaped and shortened
    /// (`mtz OK Logout completed`, `+OK Logging out`, `221 2.0.0 Bye`; empty if none).
    LoggedOut { text: String },
}

/// A client dialect (IMAP, POP3, SMTP) from greeting to authenticated.
pub trait Dialect: Send {
    /// Adds bytes received from the server.
    fn receive(&mut self, data: &[u8]);
    /// The next thing to do.
    fn poll(&mut self) -> Result<Event, ProtocolError>;
    /// Ask for TLS (after [`Event::Ready`] with `starttls`).
    fn start_tls(&mut self);
    /// The TLS handshake after [`Event::StartTls`] succeeded.
    fn tls_established(&mut self);
    /// Start authenticating with `mechanism`; `initial` is the client-first response.
    fn authenticate(&mut self, mechanism: &str, initial: Option<Secret<Vec<u8>>>);
    /// The mechanism's answer to the last [`Event::Challenge`].
    fn auth_response(&mut self, response: Secret<Vec<u8>>);
    /// Abandon the running exchange (the mechanism failed locally).
    fn cancel_auth(&mut self);
    /// Log in with the protocol's own password command instead of SASL (`login` is one
    /// of [`Capabilities::logins`]): the outcome arrives as [`Event::Rejected`] or
    /// [`Event::Authenticated`], as for [`Dialect::authenticate`]. The password (or the
    /// APOP digest) goes into no trace. The caller's policy allows this only over TLS.
    fn password_login(
        &mut self,
        login: &str,
        user: &str,
        password: Secret<Vec<u8>>,
    ) -> Result<(), LoginError> {
        let _ = (user, password);
        Err(LoginError::not_here(login))
    }
    /// Bytes the server sent after the authentication reply, for the relay.
    fn take_leftover(&mut self) -> Vec<u8>;
    /// A SASL security layer starts right after the authentication reply. The driver
    /// then wraps what the dialect sends and unwraps what it receives from
    /// [`Event::AuthAccepted`] on, so the post-authentication capability query and its
    /// reply travel through the layer; capabilities that came with the reply itself
    /// (IMAP's `[CAPABILITY]` code, outside the layer) are not trusted and asked again.
    fn layer_follows(&mut self);
    /// Ends the session politely, in any state: queues the protocol's logout (IMAP
    /// `mtz LOGOUT`, POP3 and SMTP `QUIT`) and reads its reply, which ends with
    /// [`Event::LoggedOut`]. Bytes received before this call are dropped: the server
    /// sent them before it saw the command. Not for a session inside a SASL security
    /// layer (the driver would have to wrap the command).
    fn logout(&mut self);
    /// The server closed the connection (a read returned no bytes). After a
    /// [`Dialect::logout`] this answers it ([`Event::LoggedOut`] with the last line
    /// received); otherwise [`Dialect::poll`] reports [`ProtocolError::ConnectionClosed`]
    /// once the buffered frames are handled.
    fn closed(&mut self);
}

/// A server that did not follow the protocol, or refused a step. One variant per
/// misbehaviour, so that tests and messages can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The server's greeting was a refusal (`* BYE`, `-ERR`, `554`).
    #[error("the server refused the connection in its greeting: {text}")]
    GreetingRefused { text: String },
    /// A `PREAUTH` greeting on a plaintext link: someone may be skipping TLS for us.
    #[error(
        "the server greeted with PREAUTH before TLS; a man in the middle can do that to avoid STARTTLS, so the session was closed"
    )]
    PreauthBeforeTls,
    /// A `PREAUTH` greeting over TLS: the server authenticated us by other means.
    #[error(
        "the server greeted with PREAUTH, so mailtun cannot authenticate as the account's user"
    )]
    UnexpectedPreauth,
    /// The greeting was not a greeting.
    #[error("the server's greeting is not valid: {line}")]
    UnexpectedGreeting { line: String },
    /// The server answered STARTTLS with an error.
    #[error("the server refused STARTTLS: {text}")]
    StartTlsRefused { text: String },
    /// Bytes arrived after the STARTTLS reply and before the TLS handshake: an injection.
    #[error(
        "{count} byte(s) arrived after the server's STARTTLS reply and before TLS began (a command injection attempt); the session was closed"
    )]
    BytesAfterStartTlsOk { count: usize },
    /// The server ended the session (`* BYE` outside the greeting).
    #[error("the server closed the session: {text}")]
    ServerBye { text: String },
    /// A command other than authentication failed.
    #[error("the server rejected {command}: {text}")]
    CommandFailed { command: &'static str, text: String },
    /// A continuation request whose payload is not base64.
    #[error("the server sent an authentication challenge that is not valid base64")]
    MalformedChallenge,
    /// A line that makes no sense where it arrived.
    #[error("unexpected reply from the server: {line}")]
    UnexpectedLine { line: String },
    /// A line longer than the dialect accepts during the handshake.
    #[error("the server sent a line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    /// A literal larger than the dialect accepts during the handshake.
    #[error(
        "the server announced a {size}-byte literal; at most {limit} are accepted before authentication"
    )]
    LiteralTooLarge { size: u64, limit: usize },
    /// The server sent a NUL byte, which no line of these protocols may hold.
    #[error("the server sent a NUL byte")]
    NulByte,
    /// The connection closed before the exchange was over.
    #[error("the server closed the connection")]
    ConnectionClosed,
    /// A multi-line reply (POP3 `CAPA`, SMTP `250-`) with more lines than accepted.
    #[error("the server sent a multi-line reply of more than {limit} lines")]
    TooManyReplyLines { limit: usize },
    /// A multi-line reply whose lines add up to more bytes than accepted.
    #[error("the server sent a multi-line reply larger than {limit} bytes")]
    ReplyTooLarge { limit: usize },
    /// An SMTP multi-line reply whose lines do not all carry the same code (RFC 5321
    /// section 4.2.1 requires it).
    #[error("the server changed the reply code from {first} inside a multi-line reply: {line}")]
    ReplyCodeChanged { first: u16, line: String },
}

/// An argument the caller gave that cannot go into a command line: a CR, LF or NUL
/// would end the command early and let the rest be read as another command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {what} holds a CR, LF or NUL byte, which cannot be sent inside a command")]
pub struct UnsafeArgument {
    pub what: &'static str,
}

/// Why a protocol-level password login could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Unsafe(#[from] UnsafeArgument),
    #[error("{login} is not a login command of this protocol")]
    NotInThisProtocol { login: String },
    #[error("the server's greeting carried no APOP timestamp")]
    NoApopTimestamp,
}

impl LoginError {
    /// `login` is not one of this protocol's password logins.
    pub fn not_here(login: &str) -> Self {
        LoginError::NotInThisProtocol {
            login: login.to_string(),
        }
    }
}

/// Refuses bytes that would end a command line early.
pub(crate) fn check_argument(what: &'static str, arg: &[u8]) -> Result<(), UnsafeArgument> {
    if arg.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        Err(UnsafeArgument { what })
    } else {
        Ok(())
    }
}

/// The command that starts a SASL exchange (`<prefix> <MECH> [<initial response>]`), with
/// the initial response inline when the server accepts one (RFC 4959, 5034, 4954: an
/// empty one is a lone `=`) and the line stays within `max_len`; otherwise the initial
/// response is returned, to answer the server's first, empty challenge.
pub(crate) fn sasl_command(
    prefix: &str,
    mechanism: &str,
    initial: Option<Secret<Vec<u8>>>,
    inline_allowed: bool,
    max_len: usize,
) -> (Outgoing, Option<Secret<Vec<u8>>>) {
    let mechanism = mechanism.to_ascii_uppercase();
    let bare = || Outgoing {
        bytes: Secret::new(format!("{prefix} {mechanism}\r\n").into_bytes()),
        shown: format!("{prefix} {mechanism}"),
    };
    match initial {
        Some(ir) if inline_allowed => {
            let payload = if ir.expose().is_empty() {
                Piece::Raw(b"=")
            } else {
                Piece::Base64(ir.expose())
            };
            // One buffer of the final size: the payload's base64 leaves no copy behind.
            let bytes = assemble(&[
                Piece::Raw(prefix.as_bytes()),
                Piece::Raw(b" "),
                Piece::Raw(mechanism.as_bytes()),
                Piece::Raw(b" "),
                payload,
                Piece::Raw(b"\r\n"),
            ]);
            if bytes.expose().len() <= max_len {
                let shown = format!("{prefix} {mechanism} [SASL payload]");
                (Outgoing { bytes, shown }, None)
            } else {
                (bare(), Some(ir))
            }
        }
        other => (bare(), other),
    }
}

/// A line the dialect did not expect from the server, shown shortened and escaped.
pub fn unexpected(line: &[u8]) -> ProtocolError {
    ProtocolError::UnexpectedLine {
        line: shown_text(line),
    }
}

/// The events a dialect has produced and the driver has not taken yet, in order.
#[derive(Default)]
pub struct Outbox(std::collections::VecDeque<Event>);

impl Outbox {
    pub fn push(&mut self, event: Event) {
        self.0.push_back(event);
    }

    pub fn pop(&mut self) -> Option<Event> {
        self.0.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes for the server, and what a trace shows of them.
    pub fn send(&mut self, bytes: Vec<u8>, shown: String) {
        self.push(Event::Send(Outgoing {
            bytes: Secret::new(bytes),
            shown,
        }));
    }

    /// A command line without secrets: CRLF is added, the trace shows it as it is.
    pub fn command(&mut self, line: &str) {
        self.send(format!("{line}\r\n").into_bytes(), line.to_string());
    }

    /// Bytes for the server that carry a secret, already in their buffer.
    pub fn send_secret(&mut self, bytes: Secret<Vec<u8>>, shown: String) {
        self.push(Event::Send(Outgoing { bytes, shown }));
    }

    /// A SASL continuation payload as the client sends it (base64, then CRLF: IMAP, POP3
    /// and SMTP alike); the trace shows a marker. The base64 is written straight into a
    /// buffer of the line's final size, wiped when sent ([`crate::secret::assemble`]).
    pub fn payload(&mut self, payload: &Secret<Vec<u8>>) {
        let line = assemble(&[Piece::Base64(payload.expose()), Piece::Raw(b"\r\n")]);
        self.send_secret(line, "[SASL payload]".into());
    }
}

/// Shortens and escapes server text for messages: at most 200 bytes (then `…`), every
/// terminal control and bidi override escaped ([`crate::text::escape`]).
pub fn shown_text(bytes: &[u8]) -> String {
    let mut s = String::new();
    for c in String::from_utf8_lossy(bytes).chars() {
        if s.len() >= 200 {
            s.push('…');
            break;
        }
        if crate::text::is_unsafe(c) {
            s.push_str(&crate::text::escape(c.encode_utf8(&mut [0; 4])));
        } else {
            s.push(c);
        }
    }
    s
}

/// A scripted driver for the dialects' transcript tests: it feeds the server's bytes one
/// chunk per [`Event::NeedInput`], takes STARTTLS whenever offered on a plaintext link,
/// tries the scripted mechanisms in order and answers challenges from a queue.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::VecDeque;

    use super::{Capabilities, Dialect, Event, ProtocolError};
    use crate::secret::Secret;

    /// Dovecot 2.3's POP3 capabilities after login.
    pub fn dovecot_pop3_caps() -> Capabilities {
        super::pop3::capabilities(
            [
                "CAPA",
                "TOP",
                "UIDL",
                "RESP-CODES",
                "PIPELINING",
                "AUTH-RESP-CODE",
            ]
            .map(String::from)
            .to_vec(),
        )
    }

    /// What the dialect queued for the server, up to its next [`Event::NeedInput`]
    /// (other events are dropped).
    pub fn queued_sends(d: &mut dyn Dialect) -> Vec<super::Outgoing> {
        let mut out = Vec::new();
        loop {
            match d.poll().unwrap() {
                Event::NeedInput => return out,
                Event::Send(o) => out.push(o),
                _ => {}
            }
        }
    }

    /// Panics unless every buffer in `sends` was allocated at its final size: one that
    /// grew was reallocated, and the old allocation (with the secret) was freed unwiped.
    pub fn assert_final_size(case: &str, sends: &[super::Outgoing]) {
        assert!(!sends.is_empty(), "{case}: nothing sent");
        for o in sends {
            let b = o.bytes.expose();
            assert_eq!(b.capacity(), b.len(), "{case}: {:?} grew", o.shown);
        }
    }

    /// Where a scripted session ended.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Outcome {
        Authenticated(Capabilities),
        /// Ready on a plaintext link without STARTTLS: the session refuses there.
        NoStartTls(Capabilities),
        /// Every scripted mechanism was rejected.
        NoMechanismLeft,
        Failed(ProtocolError),
        /// The dialect wants more input than the script has.
        Stalled,
        /// The logout was answered with this line.
        LoggedOut(String),
    }

    /// What the client side did.
    #[derive(Debug)]
    pub struct Transcript {
        /// Every byte sent, with `<TLS>` where the handshake happened.
        pub client: String,
        /// The `Event::Received` traces.
        pub traces: Vec<String>,
        /// Decoded challenges, in order.
        pub challenges: Vec<Vec<u8>>,
        /// `Event::Rejected` texts, in order.
        pub rejections: Vec<String>,
        pub outcome: Outcome,
    }

    /// The mechanisms to try (name, initial response) and the answers to challenges; a
    /// challenge with no answer left is cancelled.
    pub struct Script {
        pub mechanisms: Vec<(&'static str, Option<&'static [u8]>)>,
        pub responses: Vec<&'static [u8]>,
    }

    impl Default for Script {
        fn default() -> Self {
            Script {
                mechanisms: vec![("GSSAPI", Some(b"token-1"))],
                responses: vec![b"token-2"],
            }
        }
    }

    pub fn drive(
        dialect: &mut dyn Dialect,
        on_tls: bool,
        script: Script,
        server: &[&[u8]],
    ) -> Transcript {
        let mut server: VecDeque<&[u8]> = server.iter().copied().collect();
        let mut mechanisms: VecDeque<_> = script.mechanisms.into_iter().collect();
        let mut responses: VecDeque<_> = script.responses.into_iter().collect();
        let mut t = Transcript {
            client: String::new(),
            traces: Vec::new(),
            challenges: Vec::new(),
            rejections: Vec::new(),
            outcome: Outcome::Stalled,
        };
        let mut tls = on_tls;
        let mut next_mechanism = |d: &mut dyn Dialect| match mechanisms.pop_front() {
            Some((name, ir)) => {
                d.authenticate(name, ir.map(|b| Secret::new(b.to_vec())));
                true
            }
            None => false,
        };
        for _ in 0..10_000 {
            let event = match dialect.poll() {
                Ok(e) => e,
                Err(e) => {
                    t.outcome = Outcome::Failed(e);
                    return t;
                }
            };
            match event {
                Event::NeedInput => match server.pop_front() {
                    Some(chunk) => dialect.receive(chunk),
                    None => return t,
                },
                Event::Send(out) => t
                    .client
                    .push_str(&String::from_utf8_lossy(out.bytes.expose())),
                Event::Received(line) => t.traces.push(line),
                Event::Ready(caps) => {
                    if !tls {
                        if !caps.starttls {
                            t.outcome = Outcome::NoStartTls(caps);
                            return t;
                        }
                        dialect.start_tls();
                    } else if !next_mechanism(dialect) {
                        t.outcome = Outcome::NoMechanismLeft;
                        return t;
                    }
                }
                Event::StartTls => {
                    t.client.push_str("<TLS>");
                    tls = true;
                    dialect.tls_established();
                }
                Event::Challenge(c) => {
                    t.challenges.push(c.expose().clone());
                    match responses.pop_front() {
                        Some(r) => dialect.auth_response(Secret::new(r.to_vec())),
                        None => dialect.cancel_auth(),
                    }
                }
                Event::Rejected { text } => {
                    t.rejections.push(text);
                    if !next_mechanism(dialect) {
                        t.outcome = Outcome::NoMechanismLeft;
                        return t;
                    }
                }
                Event::AuthAccepted => {}
                Event::Authenticated(caps) => {
                    t.outcome = Outcome::Authenticated(caps);
                    return t;
                }
                Event::LoggedOut { text } => {
                    t.outcome = Outcome::LoggedOut(text);
                    return t;
                }
            }
        }
        panic!("the dialect loops without progress");
    }
}

#[cfg(test)]
mod tests {
    use super::testing::assert_final_size;
    use super::*;

    #[test]
    fn sasl_payload_lines_are_allocated_at_their_final_size() {
        // The writers every dialect (IMAP, POP3, SMTP) uses for SASL payloads.
        let secret = || Secret::new(b"\0alice\0hunter2 and more".to_vec());
        let mut out = Outbox::default();
        out.payload(&secret());
        let Some(Event::Send(line)) = out.pop() else {
            panic!("no line")
        };
        assert_eq!(line.bytes.expose(), b"AGFsaWNlAGh1bnRlcjIgYW5kIG1vcmU=\r\n");
        assert_eq!(line.shown, "[SASL payload]");
        let (inline, rest) = sasl_command("AUTH", "plain", Some(secret()), true, 512);
        assert!(rest.is_none());
        assert_eq!(
            inline.bytes.expose(),
            b"AUTH PLAIN AGFsaWNlAGh1bnRlcjIgYW5kIG1vcmU=\r\n"
        );
        assert_final_size("payload and initial response", &[line, inline]);
    }
}
