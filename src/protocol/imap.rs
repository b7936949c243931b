//! The IMAP client dialect (RFC 3501 / 9051): greeting, CAPABILITY, STARTTLS,
//! AUTHENTICATE with SASL-IR (RFC 4959), and the capabilities after authentication.
//!
//! It stops at the tagged OK of AUTHENTICATE (and the CAPABILITY that may follow);
//! everything after belongs to the relay. The steps every dialect shares (STARTTLS, the
//! SASL exchange, the logout) are in [`super::core`]; this file has IMAP's framing,
//! tags, commands and responses.

use std::collections::VecDeque;

use super::core::{Awaiting, Client, Core, Language, Reply, Step, accepted};
use super::line::{MAX_LINE, MAX_LITERAL, take_imap_response};
use super::{
    Capabilities, Event, LoginError, Outgoing, ProtocolError, check_argument, sasl_command,
    shown_text, unexpected,
};
use crate::secret::{Piece, Secret, assemble};

/// The tag of the logout command, which probes send on links where no other command
/// went (the tests of `probe` and `check` look for it).
const LOGOUT_TAG: &str = "mtz";

/// IMAP's own steps; the shared ones are in [`Step`].
#[derive(Debug)]
pub enum State {
    /// The server's first line.
    ExpectGreeting,
    /// Untagged CAPABILITY and the tagged OK of our CAPABILITY command.
    ExpectCapability { after_auth: bool },
    /// The tagged reply to LOGIN, or a continuation request for the next synchronizing
    /// literal of its arguments (`pending`, in order).
    ExpectLoginReply { pending: VecDeque<Secret<Vec<u8>>> },
}

/// IMAP's framing and commands: the tags.
pub struct Imap {
    next_tag: u32,
    /// The tag of the command in flight.
    tag: String,
}

/// The IMAP client dialect. See the [module documentation](self).
pub type ImapClient = Client<Imap>;

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
        let imap = Imap {
            next_tag: 1,
            tag: String::new(),
        };
        Client::with(imap, on_tls, State::ExpectGreeting)
    }

    /// Sends `LOGIN user password` (RFC 9051 section 6.2.3). Each argument is a quoted
    /// string when it is printable ASCII, else a literal: non-synchronizing with
    /// `LITERAL+` (or `LITERAL-` up to 4096 octets), else synchronizing, its bytes waiting
    /// for the server's continuation request. Only the tag and the user name are traced.
    pub fn login(&mut self, user: &str, password: Secret<Vec<u8>>) -> Result<(), LoginError> {
        self.lang.login(&mut self.core, user, password)
    }
}

impl Imap {
    /// A new tag, which becomes the tag in flight.
    fn new_tag(&mut self) -> &str {
        self.tag = format!("m{}", self.next_tag);
        self.next_tag += 1;
        &self.tag
    }

    /// Queues `command` with a new tag.
    fn command(&mut self, core: &mut Core<State>, command: &str) {
        let tag = self.new_tag();
        core.out.command(&format!("{tag} {command}"));
    }

    /// Whether `tag` is the tag of the command in flight.
    fn ours(&self, tag: &[u8]) -> bool {
        tag == self.tag.as_bytes()
    }

    fn login(
        &mut self,
        core: &mut Core<State>,
        user: &str,
        password: Secret<Vec<u8>>,
    ) -> Result<(), LoginError> {
        check_argument("user name", user.as_bytes())?;
        check_argument("password", password.expose())?;
        let tag = self.new_tag();
        let has = |c: &str| core.caps.raw.iter().any(|r| r.eq_ignore_ascii_case(c));
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
        core.out.send_secret(
            first,
            format!("{tag} LOGIN {} [password]", shown_text(user.as_bytes())),
        );
        core.step = Step::Own(State::ExpectLoginReply { pending });
        Ok(())
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

impl Language for Imap {
    type Own = State;
    type Frame = Vec<u8>;

    fn take_frame(&mut self, core: &mut Core<State>) -> Result<Option<Vec<u8>>, ProtocolError> {
        let Some(frame) = take_imap_response(&mut core.buf, MAX_LINE, MAX_LITERAL)? else {
            return Ok(None);
        };
        let response = parse(&frame)?;
        let shown = match (&response, &core.step) {
            (Response::Continuation(_), Step::Own(State::ExpectLoginReply { .. })) => {
                shown_text(&frame)
            }
            (Response::Continuation(_), _) => "+ [SASL payload]".to_string(),
            _ => shown_text(&frame),
        };
        core.out.push(Event::Received(shown));
        if let Response::Untagged { kind, rest } = &response {
            if kind == "BYE" {
                let text = shown_text(rest);
                return Err(match core.step {
                    Step::Own(State::ExpectGreeting) => ProtocolError::GreetingRefused { text },
                    _ => ProtocolError::ServerBye { text },
                });
            }
        }
        Ok(Some(frame))
    }

    fn handle_own(
        &mut self,
        core: &mut Core<State>,
        own: State,
        frame: Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let bad_greeting = || ProtocolError::UnexpectedGreeting {
            line: shown_text(&frame),
        };
        match (own, parse(&frame)?) {
            (State::ExpectGreeting, Response::Untagged { kind, rest }) => match kind.as_str() {
                "OK" => match capability_code(rest) {
                    Some(atoms) => core.ready(capabilities(atoms)),
                    None => self.ask_capabilities(core, false),
                },
                "PREAUTH" if core.on_tls => return Err(ProtocolError::UnexpectedPreauth),
                "PREAUTH" => return Err(ProtocolError::PreauthBeforeTls),
                _ => return Err(bad_greeting()),
            },
            (State::ExpectGreeting, _) => return Err(bad_greeting()),

            (State::ExpectCapability { after_auth }, Response::Untagged { kind, rest }) => {
                if kind == "CAPABILITY" {
                    core.caps = capabilities(atoms_of(rest));
                }
                core.step = Step::Own(State::ExpectCapability { after_auth });
            }
            (State::ExpectCapability { after_auth }, Response::Tagged { tag, status, rest })
                if self.ours(tag) =>
            {
                if status != "OK" {
                    return Err(ProtocolError::CommandFailed {
                        command: "CAPABILITY",
                        text: shown_text(rest),
                    });
                }
                let caps = std::mem::take(&mut core.caps);
                if after_auth {
                    core.authenticated(caps);
                } else {
                    core.ready(caps);
                }
            }

            // The server is ready for the next synchronizing literal.
            (State::ExpectLoginReply { mut pending }, Response::Continuation(_)) => {
                let segment = pending.pop_front().ok_or_else(|| unexpected(&frame))?;
                core.out.send_secret(segment, "[login continued]".into());
                core.step = Step::Own(State::ExpectLoginReply { pending });
            }
            (State::ExpectLoginReply { pending }, Response::Untagged { .. }) => {
                core.step = Step::Own(State::ExpectLoginReply { pending });
            }
            (State::ExpectLoginReply { .. }, Response::Tagged { tag, status, rest })
                if self.ours(tag) =>
            {
                if status == "OK" {
                    accepted(self, core, rest);
                } else {
                    core.rejected(rest);
                }
            }

            (State::ExpectCapability { .. } | State::ExpectLoginReply { .. }, _) => {
                return Err(unexpected(&frame));
            }
        }
        Ok(())
    }

    fn reply<'f>(
        &self,
        _awaiting: Awaiting,
        frame: &'f Vec<u8>,
    ) -> Result<Reply<'f>, ProtocolError> {
        Ok(match parse(frame)? {
            Response::Continuation(data) => Reply::Continuation(data),
            // Untagged data is skipped; before TLS, nothing learned now is trusted.
            Response::Untagged { .. } => Reply::Ignored,
            Response::Tagged { tag, status, rest } if self.ours(tag) => {
                if status == "OK" {
                    Reply::Ok(rest)
                } else {
                    Reply::Refused(rest)
                }
            }
            Response::Tagged { .. } => return Err(unexpected(frame)),
        })
    }

    fn unexpected(frame: &Vec<u8>) -> ProtocolError {
        unexpected(frame)
    }

    fn start_tls(&mut self, core: &mut Core<State>) {
        self.command(core, "STARTTLS");
    }

    fn ask_capabilities(&mut self, core: &mut Core<State>, after_auth: bool) {
        self.command(core, "CAPABILITY");
        core.step = Step::Own(State::ExpectCapability { after_auth });
    }

    fn auth_command(
        &mut self,
        core: &mut Core<State>,
        mechanism: &str,
        initial: Option<Secret<Vec<u8>>>,
    ) -> (Outgoing, Option<Secret<Vec<u8>>>) {
        let prefix = format!("{} AUTHENTICATE", self.new_tag());
        sasl_command(&prefix, mechanism, initial, core.caps.sasl_ir, usize::MAX)
    }

    fn after_auth(&mut self, core: &mut Core<State>, text: &[u8]) {
        // RFC 3501 section 6.2.2: capabilities in the tagged OK are not protected by the
        // security layer that starts after it, so with one they are asked again (the
        // driver sends the command through the layer).
        match capability_code(text).filter(|_| !core.layer_follows) {
            Some(atoms) => core.authenticated(capabilities(atoms)),
            None => self.ask_capabilities(core, true),
        }
    }

    fn logout(&mut self, core: &mut Core<State>) {
        self.tag = LOGOUT_TAG.into();
        core.out.command(&format!("{LOGOUT_TAG} LOGOUT"));
    }

    fn ends_logout(line: &[u8]) -> bool {
        line.starts_with(LOGOUT_TAG.as_bytes()) && line.get(LOGOUT_TAG.len()) == Some(&b' ')
    }

    fn password_login(
        &mut self,
        core: &mut Core<State>,
        login: &str,
        user: &str,
        password: Secret<Vec<u8>>,
    ) -> Result<(), LoginError> {
        if login != super::IMAP_LOGIN {
            return Err(LoginError::not_here(login));
        }
        self.login(core, user, password)
    }
}

#[cfg(test)]
mod tests {
    //! Byte transcripts: what the server sends, what the dialect answers and reports.
    use super::*;
    use crate::protocol::Dialect;

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
                Event::LoggedOut { text } => events.push(format!("logged out {text}")),
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
        assert_eq!(c.core.caps.logins, [crate::protocol::IMAP_LOGIN]);
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
        assert!(c.core.caps.logins.is_empty());
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
