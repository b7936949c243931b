//! The part every client dialect shares: the receive buffer, the TLS state, the
//! capabilities, the outbox, the layer flag, the SASL exchange and the logout. Each
//! security rule of the handshake is written here once; a dialect ([`Language`]) adds
//! only its framing, its commands and the meaning of its replies.
//!
//! Rules written here:
//! - a byte already received when the STARTTLS reply ends was injected
//!   ([`ProtocolError::BytesAfterStartTlsOk`]);
//! - after TLS, the capabilities are forgotten and asked again;
//! - [`Event::AuthAccepted`] goes out before the dialect queues any command after the
//!   authentication reply;
//! - the SASL exchange: the initial response that did not go with the command answers
//!   the first, empty challenge; challenges are decoded or refused; `*` cancels;
//! - the logout: the protocol's command, its reply recognised, the connection's end
//!   accepted as its answer.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::line::{MAX_LINE, take_line};
use super::{
    Capabilities, Dialect, Event, LoginError, Outbox, Outgoing, ProtocolError, shown_text,
};
use crate::secret::Secret;

/// Most bytes of the logout reply read before the last line is taken as its answer.
const MAX_LOGOUT_REPLY: usize = 64 * 1024;

/// What a dialect is waiting for: its own steps (greeting, capabilities, password
/// logins), or one of the steps every dialect shares.
#[derive(Debug)]
pub enum Step<S> {
    /// A step of the dialect's own ([`Language::handle_own`]).
    Own(S),
    /// The driver's decision after [`Event::Ready`].
    AwaitDecision,
    /// The reply to STARTTLS (STLS).
    ExpectStartTlsReply,
    /// The driver's report that the TLS handshake is done.
    AwaitHandshake,
    /// A challenge or the final reply to the authentication command.
    ExpectAuthReply {
        pending_initial: Option<Secret<Vec<u8>>>,
    },
    /// The mechanism's answer to a challenge.
    AwaitAuthResponse,
    /// The reply to the logout command.
    ExpectLogoutReply,
    /// Authentication (or the logout) is over.
    Done,
}

/// The shared steps during which the server's reply is looked at ([`Language::reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting {
    StartTls,
    Auth,
}

/// What a reply means for a shared step, as the dialect reads it.
pub enum Reply<'a> {
    /// Success, with the reply's text.
    Ok(&'a [u8]),
    /// Refusal, with the reply's text.
    Refused(&'a [u8]),
    /// A continuation request with its (base64) payload.
    Continuation(&'a [u8]),
    /// Data that does not answer the command (IMAP untagged responses): skipped.
    Ignored,
}

/// The state every dialect shares.
pub struct Core<S> {
    pub step: Step<S>,
    /// Bytes received and not yet taken as a frame.
    pub buf: Vec<u8>,
    /// Whether the link is TLS (from the start, or after STARTTLS).
    pub on_tls: bool,
    /// The capabilities of the current link, once known.
    pub caps: Capabilities,
    pub out: Outbox,
    /// A SASL security layer starts after the authentication reply.
    pub layer_follows: bool,
    /// The server closed the connection ([`Dialect::closed`]).
    closed: bool,
    /// The last line of the logout reply so far, and the bytes read of it.
    logout_last: Vec<u8>,
    logout_size: usize,
}

impl<S> Core<S> {
    fn new(on_tls: bool, first: S) -> Self {
        Core {
            step: Step::Own(first),
            buf: Vec::new(),
            on_tls,
            caps: Capabilities::default(),
            out: Outbox::default(),
            layer_follows: false,
            closed: false,
            logout_last: Vec::new(),
            logout_size: 0,
        }
    }

    /// The capabilities of the link before authentication are known: the driver decides.
    pub fn ready(&mut self, caps: Capabilities) {
        self.caps = caps.clone();
        self.out.push(Event::Ready(caps));
        self.step = Step::AwaitDecision;
    }

    /// The capabilities after authentication are known: the handshake is over.
    pub fn authenticated(&mut self, caps: Capabilities) {
        self.out.push(Event::Authenticated(caps));
        self.step = Step::Done;
    }

    /// The password login or the mechanism failed; the driver may try another.
    pub fn rejected(&mut self, text: &[u8]) {
        self.out.push(Event::Rejected {
            text: shown_text(text),
        });
        self.step = Step::AwaitDecision;
    }

    /// The logout reply is over: its last line is the server's answer.
    fn logged_out(&mut self) {
        let text = shown_text(self.logout_last.trim_ascii_end());
        self.out.push(Event::LoggedOut { text });
        self.step = Step::Done;
    }

    /// Whether the dialect waits for the driver rather than for the server.
    fn waits_for_driver(&self) -> bool {
        matches!(
            self.step,
            Step::Done | Step::AwaitDecision | Step::AwaitHandshake | Step::AwaitAuthResponse
        )
    }
}

/// One protocol's framing, commands and replies; [`Client`] does the rest.
pub trait Language: Send + Sized {
    /// The dialect's own steps.
    type Own: Send + std::fmt::Debug;
    /// A complete unit of the server's bytes (a line, an IMAP response, an SMTP reply).
    type Frame;

    /// Takes the next complete frame from `core.buf`, tracing its lines
    /// ([`Event::Received`]). `Ok(None)` means more bytes are needed.
    fn take_frame(
        &mut self,
        core: &mut Core<Self::Own>,
    ) -> Result<Option<Self::Frame>, ProtocolError>;
    /// Handles a frame in one of the dialect's own steps; sets `core.step`.
    fn handle_own(
        &mut self,
        core: &mut Core<Self::Own>,
        own: Self::Own,
        frame: Self::Frame,
    ) -> Result<(), ProtocolError>;
    /// What `frame` means while a shared step waits for a reply; an error for a reply
    /// that is neither (or that this protocol treats specially).
    fn reply<'f>(
        &self,
        awaiting: Awaiting,
        frame: &'f Self::Frame,
    ) -> Result<Reply<'f>, ProtocolError>;
    /// The error for a frame that makes no sense where it arrived.
    fn unexpected(frame: &Self::Frame) -> ProtocolError;
    /// Queues the protocol's STARTTLS command.
    fn start_tls(&mut self, core: &mut Core<Self::Own>);
    /// Queues the capability query and sets the step that reads its reply.
    fn ask_capabilities(&mut self, core: &mut Core<Self::Own>, after_auth: bool);
    /// The command that starts a SASL exchange, and the initial response left for the
    /// first challenge (see [`super::sasl_command`]).
    fn auth_command(
        &mut self,
        core: &mut Core<Self::Own>,
        mechanism: &str,
        initial: Option<Secret<Vec<u8>>>,
    ) -> (Outgoing, Option<Secret<Vec<u8>>>);
    /// After the success reply `text` to the authentication (or password login): the
    /// capabilities, from the reply or by asking. [`Event::AuthAccepted`] is already out.
    fn after_auth(&mut self, core: &mut Core<Self::Own>, text: &[u8]) {
        let _ = text;
        self.ask_capabilities(core, true);
    }
    /// Queues the protocol's logout command.
    fn logout(&mut self, core: &mut Core<Self::Own>);
    /// Whether `line` ends the reply to the logout command.
    fn ends_logout(line: &[u8]) -> bool;
    /// The protocol's password logins ([`Dialect::password_login`]).
    fn password_login(
        &mut self,
        core: &mut Core<Self::Own>,
        login: &str,
        user: &str,
        password: Secret<Vec<u8>>,
    ) -> Result<(), LoginError> {
        let _ = (core, user, password);
        Err(LoginError::not_here(login))
    }
}

/// A client dialect: the shared [`Core`] and one protocol's [`Language`].
pub struct Client<L: Language> {
    pub(crate) core: Core<L::Own>,
    pub(crate) lang: L,
}

impl<L: Language> Client<L> {
    pub(crate) fn with(lang: L, on_tls: bool, first: L::Own) -> Self {
        Client {
            core: Core::new(on_tls, first),
            lang,
        }
    }

    /// Whether the link is TLS (from the start, or after STARTTLS).
    pub fn on_tls(&self) -> bool {
        self.core.on_tls
    }

    /// Handles one complete frame in the current step.
    fn handle(&mut self, frame: L::Frame) -> Result<(), ProtocolError> {
        let core = &mut self.core;
        match std::mem::replace(&mut core.step, Step::Done) {
            Step::Own(own) => self.lang.handle_own(core, own, frame),
            Step::ExpectStartTlsReply => {
                match self.lang.reply(Awaiting::StartTls, &frame)? {
                    Reply::Ignored => core.step = Step::ExpectStartTlsReply,
                    Reply::Ok(_) => {
                        // TLS starts right after this reply: any byte already here was
                        // injected (RFC 3501 6.2.1, RFC 2595 section 4, RFC 3207 section 4.2).
                        if !core.buf.is_empty() {
                            return Err(ProtocolError::BytesAfterStartTlsOk {
                                count: core.buf.len(),
                            });
                        }
                        core.out.push(Event::StartTls);
                        core.step = Step::AwaitHandshake;
                    }
                    Reply::Refused(text) => {
                        return Err(ProtocolError::StartTlsRefused {
                            text: shown_text(text),
                        });
                    }
                    Reply::Continuation(_) => return Err(L::unexpected(&frame)),
                }
                Ok(())
            }
            Step::ExpectAuthReply { pending_initial } => {
                match self.lang.reply(Awaiting::Auth, &frame)? {
                    Reply::Ignored => core.step = Step::ExpectAuthReply { pending_initial },
                    Reply::Continuation(data) => {
                        match pending_initial {
                            // The initial response that did not go with the command
                            // answers the empty challenge (RFC 4422 section 5).
                            Some(initial) => core.out.payload(&initial),
                            None => {
                                let decoded = B64
                                    .decode(data.trim_ascii())
                                    .map_err(|_| ProtocolError::MalformedChallenge)?;
                                core.out.push(Event::Challenge(Secret::new(decoded)));
                                core.step = Step::AwaitAuthResponse;
                                return Ok(());
                            }
                        }
                        core.step = Step::ExpectAuthReply {
                            pending_initial: None,
                        };
                    }
                    Reply::Ok(text) => accepted(&mut self.lang, core, text),
                    Reply::Refused(text) => core.rejected(text),
                }
                Ok(())
            }
            Step::AwaitDecision
            | Step::AwaitHandshake
            | Step::AwaitAuthResponse
            | Step::ExpectLogoutReply
            | Step::Done => Err(L::unexpected(&frame)),
        }
    }

    /// Reads the logout reply line by line; the end of the connection answers it too.
    fn poll_logout(&mut self) -> Result<Event, ProtocolError> {
        let core = &mut self.core;
        while core.out.is_empty() {
            match take_line(&mut core.buf, MAX_LINE)? {
                Some(line) => {
                    core.out.push(Event::Received(shown_text(&line)));
                    core.logout_size += line.len() + 2;
                    let ends = L::ends_logout(&line);
                    core.logout_last = line;
                    if ends || core.logout_size > MAX_LOGOUT_REPLY {
                        core.logged_out();
                    }
                }
                None if core.closed => {
                    // What arrived without a line end is the server's last word.
                    if !core.buf.trim_ascii().is_empty() {
                        core.logout_last = std::mem::take(&mut core.buf);
                    }
                    core.logged_out();
                }
                None => return Ok(Event::NeedInput),
            }
        }
        Ok(core.out.pop().expect("an event was queued"))
    }
}

/// The success reply to the authentication or a password login:
/// [`Event::AuthAccepted`] first, then what the dialect does after it (its capability
/// query, which may go through a layer).
pub fn accepted<L: Language>(lang: &mut L, core: &mut Core<L::Own>, text: &[u8]) {
    core.out.push(Event::AuthAccepted);
    lang.after_auth(core, text);
}

impl<L: Language> Dialect for Client<L> {
    fn receive(&mut self, data: &[u8]) {
        self.core.buf.extend_from_slice(data);
    }

    fn poll(&mut self) -> Result<Event, ProtocolError> {
        if let Step::ExpectLogoutReply = self.core.step {
            return self.poll_logout();
        }
        loop {
            if let Some(event) = self.core.out.pop() {
                return Ok(event);
            }
            if self.core.waits_for_driver() {
                // The driver acts next; bytes that arrived meanwhile wait in `buf`.
                return Ok(Event::NeedInput);
            }
            match self.lang.take_frame(&mut self.core)? {
                Some(frame) => self.handle(frame)?,
                // Traces of the lines of an unfinished frame go out first.
                None if !self.core.out.is_empty() => {}
                None if self.core.closed => return Err(ProtocolError::ConnectionClosed),
                None => return Ok(Event::NeedInput),
            }
        }
    }

    fn start_tls(&mut self) {
        self.lang.start_tls(&mut self.core);
        self.core.step = Step::ExpectStartTlsReply;
    }

    fn tls_established(&mut self) {
        // Everything learned before TLS is forgotten and asked again (RFC 3501 6.2.1,
        // RFC 2595 section 4, RFC 3207 section 4.2).
        self.core.on_tls = true;
        self.core.caps = Capabilities::default();
        self.lang.ask_capabilities(&mut self.core, false);
    }

    fn authenticate(&mut self, mechanism: &str, initial: Option<Secret<Vec<u8>>>) {
        let (command, pending_initial) = self.lang.auth_command(&mut self.core, mechanism, initial);
        self.core.out.push(Event::Send(command));
        self.core.step = Step::ExpectAuthReply { pending_initial };
    }

    fn auth_response(&mut self, response: Secret<Vec<u8>>) {
        if let Step::AwaitAuthResponse = self.core.step {
            self.core.out.payload(&response);
            self.core.step = Step::ExpectAuthReply {
                pending_initial: None,
            };
        }
    }

    fn cancel_auth(&mut self) {
        if let Step::AwaitAuthResponse = self.core.step {
            // RFC 4422 section 3.5 as IMAP, POP3 and SMTP spell it.
            self.core.out.send(b"*\r\n".to_vec(), "* (cancel)".into());
            self.core.step = Step::ExpectAuthReply {
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
        self.lang
            .password_login(&mut self.core, login, user, password)
    }

    fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.core.buf)
    }

    fn layer_follows(&mut self) {
        self.core.layer_follows = true;
    }

    fn logout(&mut self) {
        // Bytes the server sent before it saw the command cannot be its reply.
        self.core.buf.clear();
        self.core.logout_last.clear();
        self.core.logout_size = 0;
        self.lang.logout(&mut self.core);
        self.core.step = Step::ExpectLogoutReply;
    }

    fn closed(&mut self) {
        self.core.closed = true;
    }
}
