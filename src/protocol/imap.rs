//! The IMAP client dialect (RFC 3501 / 9051): greeting, CAPABILITY, STARTTLS,
//! AUTHENTICATE with SASL-IR (RFC 4959), and the capabilities after authentication.
//!
//! It stops at the tagged OK of AUTHENTICATE (and the CAPABILITY that may follow);
//! everything after belongs to the relay.

use std::collections::VecDeque;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::line::{MAX_LINE, MAX_LITERAL, take_imap_response};
use super::{
    Capabilities, Dialect, Event, LoginError, Outbox, ProtocolError, check_argument, sasl_command,
    shown_text, unexpected,
};
use crate::secret::{Piece, Secret, assemble};

/// What the dialect is waiting for.
#[derive(Debug)]
enum State {
    /// The server's first line.
    ExpectGreeting,
    /// Untagged CAPABILITY and the tagged OK of our CAPABILITY command.
    ExpectCapability { tag: String, after_auth: bool },
    /// The driver's decision after [`Event::Ready`].
    AwaitDecision,
    /// The tagged reply to STARTTLS.
    ExpectStartTlsOk { tag: String },
    /// The driver's report that the TLS handshake is done.
    AwaitHandshake,
    /// A continuation request or the tagged reply to AUTHENTICATE.
    ExpectAuthReply {
        tag: String,
        pending_initial: Option<Secret<Vec<u8>>>,
    },
    /// The mechanism's answer to a challenge.
    AwaitAuthResponse { tag: String },
    /// The tagged reply to LOGIN, or a continuation request for the next synchronizing
    /// literal of its arguments (`pending`, in order).
    ExpectLoginReply {
        tag: String,
        pending: VecDeque<Secret<Vec<u8>>>,
    },
    /// Authentication is over.
    Done,
}

/// The IMAP client dialect. See the [module documentation](self).
pub struct ImapClient {
    state: State,
    buf: Vec<u8>,
    on_tls: bool,
    next_tag: u32,
    caps: Capabilities,
    out: Outbox,
    layer_follows: bool,
}

/// A parsed server response line.
enum Response<'a> {
    Continuation(&'a [u8]),
    Untagged {
        kind: String,
        rest: &'a [u8],
    },
    Tagged {
        tag: &'a [u8],
        status: String,
        rest: &'a [u8],
    },
}

fn parse(frame: &[u8]) -> Result<Response<'_>, ProtocolError> {
    if let Some(rest) = frame.strip_prefix(b"+") {
        return Ok(Response::Continuation(
            rest.strip_prefix(b" ").unwrap_or(rest),
        ));
    }
    let (first, rest) = split_word(frame);
    if first == b"*" {
        let (kind, rest) = split_word(rest);
        return Ok(Response::Untagged {
            kind: String::from_utf8_lossy(kind).to_ascii_uppercase(),
            rest,
        });
    }
    if first.is_empty() {
        return Err(ProtocolError::UnexpectedLine {
            line: shown_text(frame),
        });
    }
    let (status, rest) = split_word(rest);
    Ok(Response::Tagged {
        tag: first,
        status: String::from_utf8_lossy(status).to_ascii_uppercase(),
        rest,
    })
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

/// The atoms of a `[CAPABILITY ...]` response code at the start of `text`, if present.
fn capability_code(text: &[u8]) -> Option<Vec<String>> {
    let inner = text.strip_prefix(b"[")?;
    let end = inner.iter().position(|&b| b == b']')?;
    let code = &inner[..end];
    let (name, atoms) = split_word(code);
    name.eq_ignore_ascii_case(b"CAPABILITY")
        .then(|| atoms_of(atoms))
}

fn atoms_of(s: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(s)
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Builds [`Capabilities`] from IMAP capability atoms.
pub fn capabilities(raw: Vec<String>) -> Capabilities {
    let mechanisms = raw
        .iter()
        .filter_map(|c| {
            let (k, v) = c.split_once('=')?;
            k.eq_ignore_ascii_case("AUTH")
                .then(|| v.to_ascii_uppercase())
        })
        .collect();
    let has = |name: &str| raw.iter().any(|c| c.eq_ignore_ascii_case(name));
    Capabilities {
        starttls: has("STARTTLS"),
        sasl_ir: has("SASL-IR"),
        mechanisms,
        // RFC 9051 section 6.2.3: LOGINDISABLED forbids the LOGIN command.
        logins: if has("LOGINDISABLED") {
            Vec::new()
        } else {
            vec![super::IMAP_LOGIN]
        },
        raw,
    }
}

impl ImapClient {
    /// A dialect for a fresh connection; `on_tls` says whether the link is already TLS
    /// (implicit TLS) or plaintext.
    pub fn new(on_tls: bool) -> Self {
        ImapClient {
            state: State::ExpectGreeting,
            buf: Vec::new(),
            on_tls,
            next_tag: 1,
            caps: Capabilities::default(),
            out: Outbox::default(),
            layer_follows: false,
        }
    }

    fn tag(&mut self) -> String {
        let t = format!("m{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    fn send_command(&mut self, tag: &str, command: &str) {
        self.out.command(&format!("{tag} {command}"));
    }

    fn ask_capability(&mut self, after_auth: bool) {
        let tag = self.tag();
        self.send_command(&tag, "CAPABILITY");
        self.state = State::ExpectCapability { tag, after_auth };
    }

    /// Handles one complete response frame.
    fn handle(&mut self, frame: &[u8]) -> Result<(), ProtocolError> {
        let response = parse(frame)?;
        let shown = match (&response, &self.state) {
            (Response::Continuation(_), State::ExpectLoginReply { .. }) => shown_text(frame),
            (Response::Continuation(_), _) => "+ [SASL payload]".to_string(),
            _ => shown_text(frame),
        };
        self.out.push(Event::Received(shown));

        if let Response::Untagged { kind, rest } = &response {
            if kind == "BYE" {
                let text = shown_text(rest);
                return Err(match self.state {
                    State::ExpectGreeting => ProtocolError::GreetingRefused { text },
                    _ => ProtocolError::ServerBye { text },
                });
            }
        }

        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match (state, response) {
            (State::ExpectGreeting, Response::Untagged { kind, rest }) => match kind.as_str() {
                "OK" => match capability_code(rest) {
                    Some(atoms) => self.ready(capabilities(atoms)),
                    None => {
                        self.ask_capability(false);
                        return Ok(());
                    }
                },
                "PREAUTH" if self.on_tls => return Err(ProtocolError::UnexpectedPreauth),
                "PREAUTH" => return Err(ProtocolError::PreauthBeforeTls),
                _ => {
                    return Err(ProtocolError::UnexpectedGreeting {
                        line: shown_text(frame),
                    });
                }
            },
            (State::ExpectGreeting, _) => {
                return Err(ProtocolError::UnexpectedGreeting {
                    line: shown_text(frame),
                });
            }

            (State::ExpectCapability { tag, after_auth }, response) => match response {
                Response::Untagged { kind, rest } => {
                    if kind == "CAPABILITY" {
                        self.caps = capabilities(atoms_of(rest));
                    }
                    State::ExpectCapability { tag, after_auth }
                }
                Response::Tagged {
                    tag: t,
                    status,
                    rest,
                } if t == tag.as_bytes() => {
                    if status != "OK" {
                        return Err(ProtocolError::CommandFailed {
                            command: "CAPABILITY",
                            text: shown_text(rest),
                        });
                    }
                    let caps = std::mem::take(&mut self.caps);
                    if after_auth {
                        self.out.push(Event::Authenticated(caps));
                        State::Done
                    } else {
                        self.ready(caps)
                    }
                }
                _ => return Err(unexpected(frame)),
            },

            (State::ExpectStartTlsOk { tag }, response) => match response {
                // Untagged data before TLS is discarded: nothing learned now is trusted.
                Response::Untagged { .. } => State::ExpectStartTlsOk { tag },
                Response::Tagged {
                    tag: t,
                    status,
                    rest,
                } if t == tag.as_bytes() => {
                    if status != "OK" {
                        return Err(ProtocolError::StartTlsRefused {
                            text: shown_text(rest),
                        });
                    }
                    if !self.buf.is_empty() {
                        return Err(ProtocolError::BytesAfterStartTlsOk {
                            count: self.buf.len(),
                        });
                    }
                    self.out.push(Event::StartTls);
                    State::AwaitHandshake
                }
                _ => return Err(unexpected(frame)),
            },

            (
                State::ExpectAuthReply {
                    tag,
                    pending_initial,
                },
                response,
            ) => match response {
                Response::Continuation(data) => match pending_initial {
                    // Without SASL-IR the client-first response answers the empty challenge.
                    Some(initial) => {
                        self.out.payload(&initial);
                        State::ExpectAuthReply {
                            tag,
                            pending_initial: None,
                        }
                    }
                    None => {
                        let decoded = B64
                            .decode(data.trim_ascii())
                            .map_err(|_| ProtocolError::MalformedChallenge)?;
                        self.out.push(Event::Challenge(Secret::new(decoded)));
                        State::AwaitAuthResponse { tag }
                    }
                },
                Response::Untagged { .. } => State::ExpectAuthReply {
                    tag,
                    pending_initial,
                },
                Response::Tagged {
                    tag: t,
                    status,
                    rest,
                } if t == tag.as_bytes() => match self.auth_reply(&status, rest) {
                    Some(state) => state,
                    None => return Ok(()),
                },
                _ => return Err(unexpected(frame)),
            },

            (State::ExpectLoginReply { tag, mut pending }, response) => match response {
                // The server is ready for the next synchronizing literal.
                Response::Continuation(_) => match pending.pop_front() {
                    Some(segment) => {
                        self.out.send_secret(segment, "[login continued]".into());
                        State::ExpectLoginReply { tag, pending }
                    }
                    None => return Err(unexpected(frame)),
                },
                Response::Untagged { .. } => State::ExpectLoginReply { tag, pending },
                Response::Tagged {
                    tag: t,
                    status,
                    rest,
                } if t == tag.as_bytes() => match self.auth_reply(&status, rest) {
                    Some(state) => state,
                    None => return Ok(()),
                },
                _ => return Err(unexpected(frame)),
            },

            (
                state @ (State::AwaitDecision | State::AwaitAuthResponse { .. }),
                Response::Untagged { .. },
            ) => state,
            (
                State::AwaitHandshake
                | State::Done
                | State::AwaitDecision
                | State::AwaitAuthResponse { .. },
                _,
            ) => {
                return Err(unexpected(frame));
            }
        };
        Ok(())
    }

    /// The tagged reply that ends AUTHENTICATE or LOGIN. `None` when the capabilities
    /// are being asked for (the state is already set).
    fn auth_reply(&mut self, status: &str, rest: &[u8]) -> Option<State> {
        if status == "OK" {
            self.out.push(Event::AuthAccepted);
            // RFC 3501 section 6.2.2: capabilities in the tagged OK are not protected by
            // the security layer that starts after it, so with one they are asked again
            // (the driver sends the command through the layer).
            match capability_code(rest).filter(|_| !self.layer_follows) {
                Some(atoms) => {
                    self.out.push(Event::Authenticated(capabilities(atoms)));
                    Some(State::Done)
                }
                None => {
                    self.ask_capability(true);
                    None
                }
            }
        } else {
            self.out.push(Event::Rejected {
                text: shown_text(rest),
            });
            Some(State::AwaitDecision)
        }
    }

    /// Sends `LOGIN user password` (RFC 9051 section 6.2.3). Each argument is a quoted
    /// string when it is printable ASCII, else a literal: non-synchronizing with
    /// `LITERAL+` (or `LITERAL-` up to 4096 octets), else synchronizing, its bytes waiting
    /// for the server's continuation request. Only the tag and the user name are traced.
    pub fn login(&mut self, user: &str, password: Secret<Vec<u8>>) -> Result<(), LoginError> {
        check_argument("user name", user.as_bytes())?;
        check_argument("password", password.expose())?;
        let tag = self.tag();
        let has = |c: &str| self.caps.raw.iter().any(|r| r.eq_ignore_ascii_case(c));
        let (plus, minus) = (has("LITERAL+"), has("LITERAL-"));
        // Every buffer that holds the password is made at its final size (no reallocation
        // leaves a copy behind) and is a Secret, wiped when dropped.
        let head = format!("{tag} LOGIN ");
        let mut segments: Vec<Secret<Vec<u8>>> = Vec::new();
        // The pieces of the segment being built.
        let mut parts: Vec<Secret<Vec<u8>>> = vec![Secret::new(head.into_bytes())];
        for (i, arg) in [user.as_bytes(), password.expose()].into_iter().enumerate() {
            if i == 1 {
                parts.push(Secret::new(b" ".to_vec()));
            }
            if arg.iter().all(|b| (0x20..0x7f).contains(b)) {
                parts.push(quoted(arg));
            } else if plus || (minus && arg.len() <= 4096) {
                parts.push(Secret::new(format!("{{{}+}}\r\n", arg.len()).into_bytes()));
                parts.push(Secret::new(arg.to_vec()));
            } else {
                parts.push(Secret::new(format!("{{{}}}\r\n", arg.len()).into_bytes()));
                segments.push(joined(&parts));
                parts = vec![Secret::new(arg.to_vec())];
            }
        }
        parts.push(Secret::new(b"\r\n".to_vec()));
        segments.push(joined(&parts));
        drop(parts);
        let mut pending: VecDeque<_> = segments.into();
        let first = pending.pop_front().expect("at least one segment");
        self.out.send_secret(
            first,
            format!("{tag} LOGIN {} [password]", shown_text(user.as_bytes())),
        );
        self.state = State::ExpectLoginReply { tag, pending };
        Ok(())
    }

    fn ready(&mut self, caps: Capabilities) -> State {
        self.caps = caps.clone();
        self.out.push(Event::Ready(caps));
        State::AwaitDecision
    }
}

/// `arg` as an IMAP quoted string (RFC 9051 section 4.3: `"` and `\\` escaped), in a
/// buffer of its final size.
fn quoted(arg: &[u8]) -> Secret<Vec<u8>> {
    let escapes = arg.iter().filter(|&&b| b == b'"' || b == b'\\').count();
    let mut out = Vec::with_capacity(arg.len() + escapes + 2);
    out.push(b'"');
    for &b in arg {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    Secret::new(out)
}

/// The pieces of a command segment in one buffer of its final size.
fn joined(parts: &[Secret<Vec<u8>>]) -> Secret<Vec<u8>> {
    let pieces: Vec<Piece<'_>> = parts.iter().map(|p| Piece::Raw(p.expose())).collect();
    assemble(&pieces)
}

impl Dialect for ImapClient {
    fn receive(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn poll(&mut self) -> Result<Event, ProtocolError> {
        loop {
            if let Some(event) = self.out.pop() {
                return Ok(event);
            }
            match self.state {
                State::Done
                | State::AwaitDecision
                | State::AwaitHandshake
                | State::AwaitAuthResponse { .. } => {
                    // The driver acts next; bytes that arrived meanwhile wait in `buf`.
                    return Ok(Event::NeedInput);
                }
                _ => {}
            }
            match take_imap_response(&mut self.buf, MAX_LINE, MAX_LITERAL)? {
                None => return Ok(Event::NeedInput),
                Some(frame) => self.handle(&frame)?,
            }
        }
    }

    fn start_tls(&mut self) {
        let tag = self.tag();
        self.send_command(&tag, "STARTTLS");
        self.state = State::ExpectStartTlsOk { tag };
    }

    fn tls_established(&mut self) {
        // Everything learned before TLS is forgotten and asked again (RFC 3501 6.2.1).
        self.on_tls = true;
        self.caps = Capabilities::default();
        self.ask_capability(false);
    }

    fn authenticate(&mut self, mechanism: &str, initial: Option<Secret<Vec<u8>>>) {
        let tag = self.tag();
        let (command, pending_initial) = sasl_command(
            &format!("{tag} AUTHENTICATE"),
            mechanism,
            initial,
            self.caps.sasl_ir,
            usize::MAX,
        );
        self.out.push(Event::Send(command));
        self.state = State::ExpectAuthReply {
            tag,
            pending_initial,
        };
    }

    fn auth_response(&mut self, response: Secret<Vec<u8>>) {
        if let State::AwaitAuthResponse { tag } = std::mem::replace(&mut self.state, State::Done) {
            self.out.payload(&response);
            self.state = State::ExpectAuthReply {
                tag,
                pending_initial: None,
            };
        }
    }

    fn cancel_auth(&mut self) {
        if let State::AwaitAuthResponse { tag } = std::mem::replace(&mut self.state, State::Done) {
            self.out.send(b"*\r\n".to_vec(), "* (cancel)".into());
            self.state = State::ExpectAuthReply {
                tag,
                pending_initial: None,
            };
        }
    }

    fn password_login(
        &mut self,
        login: &str,
        user: &str,
        password: Secret<Vec<u8>>,
    ) -> Result<(), LoginError> {
        if login != super::IMAP_LOGIN {
            return Err(LoginError::NotInThisProtocol {
                login: login.to_string(),
            });
        }
        self.login(user, password)
    }

    fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    fn layer_follows(&mut self) {
        self.layer_follows = true;
    }
}

#[cfg(test)]
mod tests {
    //! Byte transcripts: what the server sends, what the dialect answers and reports.
    use super::*;

    /// Feeds `server` to the dialect and returns (bytes sent, events other than sends).
    fn run(client: &mut ImapClient, server: &[u8]) -> Result<(String, Vec<String>), ProtocolError> {
        client.receive(server);
        let mut sent = String::new();
        let mut events = Vec::new();
        loop {
            match client.poll()? {
                Event::NeedInput => break,
                Event::Send(o) => {
                    sent.push_str(&String::from_utf8(o.bytes.expose().clone()).unwrap())
                }
                Event::Received(_) => {}
                Event::Ready(c) => events.push(format!(
                    "ready starttls={} mechs={:?}",
                    c.starttls, c.mechanisms
                )),
                Event::StartTls => events.push("starttls".into()),
                Event::Challenge(c) => events.push(format!("challenge {:?}", c.expose())),
                Event::Rejected { text } => events.push(format!("rejected {text}")),
                Event::AuthAccepted => {}
                Event::Authenticated(c) => events.push(format!("authenticated {:?}", c.raw)),
            }
        }
        Ok((sent, events))
    }

    const DOVECOT_GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=GSSAPI LOGINDISABLED] Dovecot (Debian) ready.\r\n";

    /// Drives a plaintext client to the point where TLS is established and capabilities
    /// were asked again.
    fn after_starttls() -> ImapClient {
        let mut c = ImapClient::new(false);
        run(&mut c, DOVECOT_GREETING).unwrap();
        c.start_tls();
        let (sent, ev) = run(&mut c, b"m1 OK Begin TLS negotiation now.\r\n").unwrap();
        assert_eq!(sent, "m1 STARTTLS\r\n");
        assert_eq!(ev, ["starttls"]);
        c.tls_established();
        c
    }

    #[test]
    fn greeting_capabilities_are_used_without_asking_again() {
        let mut c = ImapClient::new(false);
        let (sent, ev) = run(&mut c, DOVECOT_GREETING).unwrap();
        assert_eq!(sent, "");
        assert_eq!(ev, [r#"ready starttls=true mechs=["GSSAPI"]"#]);
    }

    #[test]
    fn greeting_without_capabilities_asks_for_them() {
        let mut c = ImapClient::new(true);
        let (sent, _) = run(&mut c, b"* OK ready\r\n").unwrap();
        assert_eq!(sent, "m1 CAPABILITY\r\n");
        let (_, ev) = run(
            &mut c,
            b"* CAPABILITY IMAP4rev1 AUTH=GSSAPI AUTH=PLAIN\r\nm1 OK done\r\n",
        )
        .unwrap();
        assert_eq!(ev, [r#"ready starttls=false mechs=["GSSAPI", "PLAIN"]"#]);
    }

    #[test]
    fn rfc3501_6_2_1_capabilities_are_asked_again_after_tls() {
        let mut c = after_starttls();
        let (sent, ev) = run(&mut c, b"").unwrap();
        assert_eq!(sent, "m2 CAPABILITY\r\n");
        assert!(ev.is_empty());
        // After TLS the server may offer other mechanisms: only these count.
        let (_, ev) = run(
            &mut c,
            b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\nm2 OK\r\n",
        )
        .unwrap();
        assert_eq!(ev, [r#"ready starttls=false mechs=["PLAIN"]"#]);
    }

    #[test]
    fn rfc3501_6_2_1_bytes_after_starttls_ok_refused() {
        let mut c = ImapClient::new(false);
        run(&mut c, DOVECOT_GREETING).unwrap();
        c.start_tls();
        let injected = b"m1 OK go\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n";
        assert_eq!(
            run(&mut c, injected),
            Err(ProtocolError::BytesAfterStartTlsOk { count: 35 })
        );
    }

    #[test]
    fn a_fake_tagged_ok_for_the_next_command_is_an_injection_too() {
        let mut c = ImapClient::new(false);
        run(&mut c, DOVECOT_GREETING).unwrap();
        c.start_tls();
        assert!(matches!(
            run(&mut c, b"m1 OK go\r\nm2 OK [CAPABILITY IMAP4rev1] x\r\n"),
            Err(ProtocolError::BytesAfterStartTlsOk { .. })
        ));
    }

    #[test]
    fn untagged_data_before_the_starttls_reply_is_discarded() {
        let mut c = ImapClient::new(false);
        run(&mut c, DOVECOT_GREETING).unwrap();
        c.start_tls();
        let (_, ev) = run(&mut c, b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nm1 OK go\r\n").unwrap();
        assert_eq!(ev, ["starttls"]);
        c.tls_established();
        let (sent, _) = run(&mut c, b"").unwrap();
        assert_eq!(sent, "m2 CAPABILITY\r\n");
    }

    #[test]
    fn starttls_refusal_is_reported() {
        let mut c = ImapClient::new(false);
        run(&mut c, DOVECOT_GREETING).unwrap();
        c.start_tls();
        assert_eq!(
            run(&mut c, b"m1 NO not now\r\n"),
            Err(ProtocolError::StartTlsRefused {
                text: "not now".into()
            })
        );
    }

    #[test]
    fn preauth_greeting_on_plaintext_is_an_attack() {
        let mut c = ImapClient::new(false);
        assert_eq!(
            run(&mut c, b"* PREAUTH welcome\r\n"),
            Err(ProtocolError::PreauthBeforeTls)
        );
        let mut c = ImapClient::new(true);
        assert_eq!(
            run(&mut c, b"* PREAUTH welcome\r\n"),
            Err(ProtocolError::UnexpectedPreauth)
        );
    }

    #[test]
    fn bye_greeting_is_a_refusal() {
        let mut c = ImapClient::new(true);
        assert_eq!(
            run(&mut c, b"* BYE too many connections\r\n"),
            Err(ProtocolError::GreetingRefused {
                text: "too many connections".into()
            })
        );
    }

    #[test]
    fn rfc4959_initial_response_goes_with_the_command() {
        let mut c = after_starttls();
        run(
            &mut c,
            b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=GSSAPI\r\nm2 OK\r\n",
        )
        .unwrap();
        c.authenticate("GSSAPI", Some(Secret::new(b"tok".to_vec())));
        let (sent, _) = run(&mut c, b"").unwrap();
        assert_eq!(sent, "m3 AUTHENTICATE GSSAPI dG9r\r\n");
        let (sent, ev) = run(&mut c, b"+ c2VydmVy\r\n").unwrap();
        assert_eq!(sent, "");
        assert_eq!(ev, ["challenge [115, 101, 114, 118, 101, 114]"]);
        c.auth_response(Secret::new(Vec::new()));
        let (sent, _) = run(&mut c, b"").unwrap();
        assert_eq!(sent, "\r\n");
        let (sent, ev) = run(
            &mut c,
            b"m3 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n",
        )
        .unwrap();
        assert_eq!(sent, "");
        assert_eq!(ev, [r#"authenticated ["IMAP4rev1", "IDLE", "MOVE"]"#]);
    }

    #[test]
    fn rfc3501_6_2_2_with_a_security_layer_the_capabilities_in_the_ok_are_asked_again() {
        // No TLS: GSSAPI with a layer. The [CAPABILITY] code of the tagged OK is outside
        // the layer, so it is ignored and CAPABILITY follows (the driver wraps it); the
        // bytes after the OK are left for the driver to unwrap.
        let mut c = ImapClient::new(false);
        run(
            &mut c,
            b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=GSSAPI] hi\r\n",
        )
        .unwrap();
        c.layer_follows();
        c.authenticate("GSSAPI", Some(Secret::new(b"tok".to_vec())));
        let (sent, _) = run(&mut c, b"").unwrap();
        assert_eq!(sent, "m1 AUTHENTICATE GSSAPI dG9r\r\n");
        c.receive(b"m1 OK [CAPABILITY IMAP4rev1 INJECTED] Logged in\r\n\x00\x00");
        let mut events = Vec::new();
        loop {
            match c.poll().unwrap() {
                Event::AuthAccepted => break,
                Event::Received(_) => {}
                other => events.push(format!("{other:?}")),
            }
        }
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(c.take_leftover(), b"\x00\x00");
        let (sent, ev) = run(&mut c, b"").unwrap();
        assert_eq!(sent, "m2 CAPABILITY\r\n");
        assert!(ev.is_empty(), "{ev:?}");
        let (_, ev) = run(&mut c, b"* CAPABILITY IMAP4rev1 IDLE\r\nm2 OK\r\n").unwrap();
        assert_eq!(ev, [r#"authenticated ["IMAP4rev1", "IDLE"]"#]);
    }

    #[test]
    fn without_sasl_ir_the_initial_response_answers_the_first_continuation() {
        let mut c = after_starttls();
        run(&mut c, b"* CAPABILITY IMAP4rev1 AUTH=GSSAPI\r\nm2 OK\r\n").unwrap();
        c.authenticate("GSSAPI", Some(Secret::new(b"tok".to_vec())));
        let (sent, _) = run(&mut c, b"").unwrap();
        assert_eq!(sent, "m3 AUTHENTICATE GSSAPI\r\n");
        let (sent, ev) = run(&mut c, b"+ \r\n").unwrap();
        assert_eq!(sent, "dG9r\r\n");
        assert!(ev.is_empty());
    }

    #[test]
    fn an_empty_initial_response_is_sent_as_equals() {
        let mut c = after_starttls();
        run(
            &mut c,
            b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=EXTERNAL\r\nm2 OK\r\n",
        )
        .unwrap();
        c.authenticate("EXTERNAL", Some(Secret::new(Vec::new())));
        assert_eq!(
            run(&mut c, b"").unwrap().0,
            "m3 AUTHENTICATE EXTERNAL =\r\n"
        );
    }

    #[test]
    fn capabilities_are_asked_after_an_ok_without_them() {
        let mut c = after_starttls();
        run(
            &mut c,
            b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=GSSAPI\r\nm2 OK\r\n",
        )
        .unwrap();
        c.authenticate("GSSAPI", Some(Secret::new(b"t".to_vec())));
        run(&mut c, b"").unwrap();
        let (sent, ev) = run(&mut c, b"m3 OK done\r\n").unwrap();
        assert_eq!(sent, "m4 CAPABILITY\r\n");
        assert!(ev.is_empty());
        let (_, ev) = run(&mut c, b"* CAPABILITY IMAP4rev1 QUOTA\r\nm4 OK\r\n").unwrap();
        assert_eq!(ev, [r#"authenticated ["IMAP4rev1", "QUOTA"]"#]);
    }

    #[test]
    fn a_rejection_leaves_the_dialect_ready_for_another_mechanism() {
        let mut c = after_starttls();
        run(
            &mut c,
            b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=GSSAPI AUTH=PLAIN\r\nm2 OK\r\n",
        )
        .unwrap();
        c.authenticate("GSSAPI", Some(Secret::new(b"t".to_vec())));
        run(&mut c, b"").unwrap();
        let (_, ev) = run(
            &mut c,
            b"m3 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        )
        .unwrap();
        assert_eq!(
            ev,
            ["rejected [AUTHENTICATIONFAILED] Authentication failed."]
        );
        c.authenticate("PLAIN", Some(Secret::new(b"x".to_vec())));
        assert_eq!(
            run(&mut c, b"").unwrap().0,
            "m4 AUTHENTICATE PLAIN eA==\r\n"
        );
    }

    #[test]
    fn cancel_sends_a_star_and_the_bad_reply_is_a_rejection() {
        let mut c = after_starttls();
        run(&mut c, b"* CAPABILITY IMAP4rev1 AUTH=GSSAPI\r\nm2 OK\r\n").unwrap();
        c.authenticate("GSSAPI", None);
        run(&mut c, b"").unwrap();
        run(&mut c, b"+ YQ==\r\n").unwrap();
        c.cancel_auth();
        assert_eq!(run(&mut c, b"").unwrap().0, "*\r\n");
        let (_, ev) = run(&mut c, b"m3 BAD cancelled\r\n").unwrap();
        assert_eq!(ev, ["rejected cancelled"]);
    }

    #[test]
    fn a_challenge_that_is_not_base64_is_refused() {
        let mut c = after_starttls();
        run(&mut c, b"* CAPABILITY IMAP4rev1 AUTH=GSSAPI\r\nm2 OK\r\n").unwrap();
        c.authenticate("GSSAPI", None);
        run(&mut c, b"").unwrap();
        assert_eq!(
            run(&mut c, b"+ !!!\r\n"),
            Err(ProtocolError::MalformedChallenge)
        );
    }

    #[test]
    fn bytes_after_the_authentication_reply_are_left_for_the_relay() {
        let mut c = after_starttls();
        run(
            &mut c,
            b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=GSSAPI\r\nm2 OK\r\n",
        )
        .unwrap();
        c.authenticate("GSSAPI", Some(Secret::new(b"t".to_vec())));
        run(&mut c, b"").unwrap();
        run(&mut c, b"m3 OK [CAPABILITY IMAP4rev1] ok\r\n* 3 EXISTS\r\n").unwrap();
        assert_eq!(c.take_leftover(), b"* 3 EXISTS\r\n");
    }

    #[test]
    fn bye_during_authentication_ends_the_session() {
        let mut c = after_starttls();
        run(&mut c, b"* CAPABILITY IMAP4rev1 AUTH=GSSAPI\r\nm2 OK\r\n").unwrap();
        c.authenticate("GSSAPI", None);
        run(&mut c, b"").unwrap();
        assert_eq!(
            run(&mut c, b"* BYE shutting down\r\n"),
            Err(ProtocolError::ServerBye {
                text: "shutting down".into()
            })
        );
    }

    /// The client after TLS, ready with these capabilities.
    fn ready_with(caps: &[u8]) -> ImapClient {
        let mut c = after_starttls();
        run(&mut c, caps).unwrap();
        c
    }

    /// Sends everything queued; returns (bytes, shown traces).
    fn sent(c: &mut ImapClient, server: &[u8]) -> (String, Vec<String>, Vec<String>) {
        c.receive(server);
        let (mut bytes, mut shown, mut events) = (String::new(), Vec::new(), Vec::new());
        loop {
            match c.poll().unwrap() {
                Event::NeedInput => break,
                Event::Send(o) => {
                    bytes.push_str(&String::from_utf8_lossy(o.bytes.expose()));
                    shown.push(o.shown);
                }
                Event::Received(line) => shown.push(line),
                Event::Rejected { text } => events.push(format!("rejected {text}")),
                Event::Authenticated(caps) => events.push(format!("authenticated {:?}", caps.raw)),
                Event::AuthAccepted => {}
                other => events.push(format!("{other:?}")),
            }
        }
        (bytes, shown, events)
    }

    #[test]
    fn rfc9051_6_2_3_login_with_quoted_strings_never_traced() {
        let mut c = ready_with(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nm2 OK\r\n");
        assert_eq!(c.caps.logins, [crate::protocol::IMAP_LOGIN]);
        c.password_login(
            crate::protocol::IMAP_LOGIN,
            "alice",
            Secret::new(br#"p"a\ss w"#.to_vec()),
        )
        .unwrap();
        let (bytes, shown, _) = sent(&mut c, b"");
        assert_eq!(bytes, "m3 LOGIN \"alice\" \"p\\\"a\\\\ss w\"\r\n");
        assert_eq!(shown, ["m3 LOGIN alice [password]"]);
        let (bytes, _, ev) = sent(&mut c, b"m3 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
        assert_eq!(bytes, "");
        assert_eq!(ev, [r#"authenticated ["IMAP4rev1", "IDLE"]"#]);
    }

    #[test]
    fn rfc9051_login_with_8bit_password_uses_a_synchronizing_literal() {
        let mut c = ready_with(b"* CAPABILITY IMAP4rev1\r\nm2 OK\r\n");
        c.login("alice", Secret::new("pässword".as_bytes().to_vec()))
            .unwrap();
        let (bytes, shown, _) = sent(&mut c, b"");
        assert_eq!(bytes, "m3 LOGIN \"alice\" {9}\r\n");
        assert_eq!(shown, ["m3 LOGIN alice [password]"]);
        let (bytes, shown, _) = sent(&mut c, b"+ go ahead\r\n");
        assert_eq!(bytes, "pässword\r\n");
        assert_eq!(shown, ["+ go ahead", "[login continued]"]);
        let (_, _, ev) = sent(
            &mut c,
            b"m3 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        );
        assert_eq!(
            ev,
            ["rejected [AUTHENTICATIONFAILED] Authentication failed."]
        );
    }

    #[test]
    fn rfc7888_login_literal_is_non_synchronizing_with_literal_plus() {
        let mut c = ready_with(b"* CAPABILITY IMAP4rev1 LITERAL+\r\nm2 OK\r\n");
        c.login("alice", Secret::new("pässword".as_bytes().to_vec()))
            .unwrap();
        let (bytes, _, _) = sent(&mut c, b"");
        assert_eq!(bytes, "m3 LOGIN \"alice\" {9+}\r\npässword\r\n");
        // Capabilities asked after an OK without them.
        let (bytes, _, _) = sent(&mut c, b"m3 OK Logged in\r\n");
        assert_eq!(bytes, "m4 CAPABILITY\r\n");
    }

    #[test]
    fn logindisabled_offers_no_login_and_line_breaks_are_refused() {
        let c = ready_with(b"* CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=GSSAPI\r\nm2 OK\r\n");
        assert!(c.caps.logins.is_empty());
        let mut c = ready_with(b"* CAPABILITY IMAP4rev1\r\nm2 OK\r\n");
        assert!(matches!(
            c.login("alice", Secret::new(b"a\r\nm9 DELETE INBOX".to_vec())),
            Err(LoginError::Unsafe(_))
        ));
        assert!(matches!(
            c.password_login("USER-PASS", "alice", Secret::new(b"p".to_vec())),
            Err(LoginError::NotInThisProtocol { .. })
        ));
    }

    #[test]
    fn a_tagged_reply_with_a_foreign_tag_is_refused() {
        let mut c = after_starttls();
        assert!(matches!(
            run(&mut c, b"m9 OK\r\n"),
            Err(ProtocolError::UnexpectedLine { .. })
        ));
    }
}
