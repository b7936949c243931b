//! The one driver of a [`Dialect`] over a link: it owns the link, the read buffer, the
//! deadline, the `-vv` trace (`C:`/`S:` lines), the timeline, the STARTTLS upgrade, the
//! running mechanism's challenges and the security layer after `AuthAccepted`, and
//! yields only what needs a decision ([`Next`]). `session::attempt` and `probe` are
//! decision loops over it.
//!
//! Also here, once each: the dialect for a protocol ([`new_dialect`]), the TLS-method
//! fallback rule ([`Fallback::of`]), the mechanism-complete check and the logout.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::config::{MechName, Protocol};
use crate::error::{FailureKind, Step};
use crate::policy::PolicyError;
use crate::protocol::imap::ImapClient;
use crate::protocol::pop3::Pop3Client;
use crate::protocol::smtp::SmtpClient;
use crate::protocol::{Capabilities, Dialect, Event, LoginError, Outgoing, ProtocolError};
use crate::sasl::{Mechanism, SaslError, frame_layer_token, take_layer_token};
use crate::secret::Secret;
use crate::timeline::{Phase, Timeline};
use crate::transport::probe::{ProbeTls, ProbeTlsSettings, UnverifiedLink};
use crate::transport::{self, Link, TlsInfo, TlsSettings, TransportError};

/// A link the driver can run a dialect over.
pub trait DriverLink: AsyncRead + AsyncWrite + Unpin + Send + Sized {
    /// What a TLS handshake needs.
    type Settings: Sync;
    /// What a TLS handshake reports.
    type Handshake: Send;
    /// Whether authentication may run on it (never on the probe's unverified links).
    const AUTHENTICATES: bool;
    /// Whether a failed flush ends the exchange (else the next read reports it).
    const STRICT_FLUSH: bool;
    fn over_tcp(tcp: TcpStream) -> Self;
    fn is_tls(&self) -> bool;
    /// The TLS handshake over a plaintext link.
    fn upgrade(
        self,
        settings: &Self::Settings,
    ) -> impl Future<Output = Result<(Self, Self::Handshake), TransportError>> + Send;
    /// The TLS version, for the timeline.
    fn tls_version(tls: &Self::Handshake) -> Option<&str>;
    /// A read or write that failed.
    fn io_failure(e: io::Error) -> FailureKind;
}

impl DriverLink for Link {
    type Settings = TlsSettings;
    type Handshake = Option<TlsInfo>;
    const AUTHENTICATES: bool = true;
    const STRICT_FLUSH: bool = false;

    fn over_tcp(tcp: TcpStream) -> Self {
        Link::Plain(tcp)
    }

    fn is_tls(&self) -> bool {
        self.trust().is_tls()
    }

    async fn upgrade(
        self,
        settings: &TlsSettings,
    ) -> Result<(Self, Self::Handshake), TransportError> {
        let Link::Plain(tcp) = self else {
            return Err(TransportError::Handshake {
                detail: "TLS is already established".into(),
            });
        };
        let link = transport::handshake(tcp, settings).await?;
        let info = link.tls_info();
        Ok((link, info))
    }

    fn tls_version(tls: &Self::Handshake) -> Option<&str> {
        tls.as_ref().map(|i| i.version.as_str())
    }

    fn io_failure(e: io::Error) -> FailureKind {
        TransportError::Handshake {
            detail: e.to_string(),
        }
        .into()
    }
}

impl DriverLink for UnverifiedLink {
    type Settings = ProbeTlsSettings;
    type Handshake = ProbeTls;
    const AUTHENTICATES: bool = false;
    const STRICT_FLUSH: bool = true;

    fn over_tcp(tcp: TcpStream) -> Self {
        UnverifiedLink::plain(tcp)
    }

    fn is_tls(&self) -> bool {
        UnverifiedLink::is_tls(self)
    }

    fn upgrade(
        self,
        settings: &ProbeTlsSettings,
    ) -> impl Future<Output = Result<(Self, ProbeTls), TransportError>> + Send {
        self.dangerous_upgrade_for_probe(settings)
    }

    fn tls_version(tls: &ProbeTls) -> Option<&str> {
        Some(&tls.info.version)
    }

    fn io_failure(e: io::Error) -> FailureKind {
        e.into()
    }
}

/// The dialect of `protocol`; `ehlo_name` is SMTP's EHLO argument.
pub fn new_dialect(protocol: Protocol, ehlo_name: String, on_tls: bool) -> Box<dyn Dialect> {
    match protocol {
        Protocol::Imap => Box::new(ImapClient::new(on_tls)),
        Protocol::Pop3 => Box::new(Pop3Client::new(on_tls)),
        Protocol::Smtp => Box::new(SmtpClient::new(on_tls, ehlo_name)),
    }
}

/// Why a failed TLS method lets the next one be tried. Anything else (certificate
/// problems, injections, authentication failures) ends the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The port could not be resolved, connected to or connected to in time.
    PortUnreachable,
    /// The server does not advertise STARTTLS on the plain port.
    StartTlsNotOffered,
    /// The server refused the STARTTLS command.
    StartTlsRefused,
}

impl Fallback {
    /// The fallback rule, the one place it is written: `session::establish` moves on to
    /// the next method, and `probe` predicts that it would, exactly when this is `Some`.
    pub fn of(step: Step, kind: &FailureKind) -> Option<Fallback> {
        match kind {
            FailureKind::Transport(
                TransportError::Connect { .. }
                | TransportError::Timeout { .. }
                | TransportError::Resolve { .. },
            ) => Some(Fallback::PortUnreachable),
            FailureKind::Timeout { .. } if step == Step::Connect => Some(Fallback::PortUnreachable),
            FailureKind::Policy(PolicyError::StartTlsNotOffered { .. }) => {
                Some(Fallback::StartTlsNotOffered)
            }
            FailureKind::Protocol(ProtocolError::StartTlsRefused { .. }) => {
                Some(Fallback::StartTlsRefused)
            }
            _ => None,
        }
    }
}

/// A failure of the exchange, at the step it happened.
#[derive(Debug)]
pub struct DriveError {
    pub step: Step,
    pub kind: FailureKind,
}

impl DriveError {
    pub fn new(step: Step, kind: impl Into<FailureKind>) -> Self {
        DriveError {
            step,
            kind: kind.into(),
        }
    }
}

/// The time an attempt may take, from its connect to its end.
#[derive(Debug, Clone)]
struct Deadline {
    at: Instant,
    host: String,
    port: u16,
    secs: u64,
}

impl Deadline {
    /// `fut`, or the timeout of `step` if the deadline passes first. A connect that
    /// never completes is the network's doing: the error says where.
    async fn bound<T>(
        &self,
        step: Step,
        fut: impl Future<Output = Result<T, DriveError>>,
    ) -> Result<T, DriveError> {
        match tokio::time::timeout_at(self.at, fut).await {
            Ok(r) => r,
            Err(_) => {
                let (host, port, secs) = (self.host.clone(), self.port, self.secs);
                Err(if step == Step::Connect {
                    DriveError::new(step, TransportError::Timeout { host, port, secs })
                } else {
                    DriveError::new(step, FailureKind::Timeout { host, port, secs })
                })
            }
        }
    }
}

/// A connected link before its dialect starts (for implicit TLS).
pub struct Opening<'s, L: DriverLink> {
    link: L,
    settings: &'s L::Settings,
    deadline: Deadline,
    timeline: Timeline,
}

impl<'s, L: DriverLink> Opening<'s, L> {
    /// Connects to `host` port `port`; everything after must end within `limit`.
    pub async fn connect(
        host: &str,
        port: u16,
        limit: Duration,
        settings: &'s L::Settings,
    ) -> Result<Self, DriveError> {
        let deadline = Deadline {
            at: Instant::now() + limit,
            host: host.to_string(),
            port,
            secs: limit.as_secs(),
        };
        let mut timeline = Timeline::new();
        let connecting = async {
            transport::connect(host, port)
                .await
                .map_err(|e| DriveError::new(Step::Connect, e))
        };
        let tcp = deadline.bound(Step::Connect, connecting).await?;
        timeline.add_round_trips(1);
        Ok(Opening {
            link: L::over_tcp(tcp),
            settings,
            deadline,
            timeline,
        })
    }

    /// Implicit TLS: the handshake before anything is said.
    pub async fn tls(mut self) -> Result<(Self, L::Handshake), DriveError> {
        self.timeline.enter(Phase::Tls);
        let handshake = async {
            self.link
                .upgrade(self.settings)
                .await
                .map_err(|e| DriveError::new(Step::TlsHandshake, e))
        };
        let (link, tls) = self.deadline.bound(Step::TlsHandshake, handshake).await?;
        self.link = link;
        self.timeline.tls_handshake(L::tls_version(&tls));
        Ok((self, tls))
    }

    /// Starts the dialect of `protocol` on the link: it waits for the greeting.
    pub fn start(mut self, protocol: Protocol, ehlo_name: String) -> Driver<'s, L> {
        self.timeline.enter(Phase::Capabilities);
        let dialect = new_dialect(protocol, ehlo_name, self.link.is_tls());
        Driver {
            link: Some(self.link),
            settings: self.settings,
            deadline: self.deadline,
            timeline: self.timeline,
            dialect,
            buf: vec![0u8; 16 * 1024],
            step: Step::Greeting,
            greeting: None,
            capabilities_after_greeting: false,
            running: None,
            layered: None,
        }
    }
}

/// The mechanism in progress, with its name.
pub struct Running {
    pub name: MechName,
    pub mech: Box<dyn Mechanism>,
}

/// What needs a decision.
pub enum Next<T> {
    /// The greeting and capabilities are read: STARTTLS (on a plaintext link) or a
    /// mechanism, the caller's choice.
    Ready(Capabilities),
    /// TLS came up after STARTTLS; the capabilities follow.
    TlsUp(T),
    /// The server refused the running mechanism, which is handed back.
    Rejected { refused: Running, text: String },
    /// Authentication succeeded and the mechanism completed; see [`Driver::finish`].
    Authenticated(Capabilities),
}

/// What is left when authentication succeeded.
pub struct Finished<L> {
    pub link: L,
    pub leftover: Vec<u8>,
    pub layer_pending: Vec<u8>,
    pub timeline: Timeline,
    pub running: Running,
}

/// One dialect over one link, from the greeting on.
pub struct Driver<'s, L: DriverLink> {
    /// `None` only while the STARTTLS handshake holds it.
    link: Option<L>,
    settings: &'s L::Settings,
    deadline: Deadline,
    timeline: Timeline,
    dialect: Box<dyn Dialect>,
    buf: Vec<u8>,
    step: Step,
    greeting: Option<String>,
    capabilities_after_greeting: bool,
    running: Option<Running>,
    /// Once a security layer is negotiated (from the authentication reply on): the bytes
    /// received and not yet unwrapped. Every byte in both directions then goes through
    /// the layer, the post-authentication capability query and its reply included.
    layered: Option<Vec<u8>>,
}

fn live<L>(link: &mut Option<L>) -> &mut L {
    link.as_mut().expect("the link is back after the handshake")
}

impl<'s, L: DriverLink> Driver<'s, L> {
    /// Reports the step after the greeting line as `capabilities` (the probe's steps).
    pub fn capabilities_after_greeting(mut self) -> Self {
        self.capabilities_after_greeting = true;
        self
    }

    pub fn step(&self) -> Step {
        self.step
    }

    pub fn link(&self) -> &L {
        self.link
            .as_ref()
            .expect("the link is back after the handshake")
    }

    /// The server's first line, once read.
    pub fn greeting(&self) -> Option<&str> {
        self.greeting.as_deref()
    }

    /// `fut` within the attempt's deadline, at the current step.
    pub async fn within<T>(&self, fut: impl Future<Output = T>) -> Result<T, DriveError> {
        self.deadline
            .bound(self.step, async { Ok(fut.await) })
            .await
    }

    /// Asks for TLS (after [`Next::Ready`] on a plaintext link offering it).
    pub fn start_tls(&mut self) {
        self.step = Step::StartTls;
        self.timeline.enter(Phase::Tls);
        self.dialect.start_tls();
    }

    /// Authentication starts: mechanisms are set up from here on.
    pub fn authentication_begins(&mut self) {
        self.step = Step::Authenticate;
        self.timeline.enter(Phase::Authentication);
    }

    /// Starts SASL `mechanism` with its initial response.
    pub fn authenticate(&mut self, running: Running, initial: Option<Secret<Vec<u8>>>) {
        // GSSAPI without TLS: its security layer protects the rest of the session.
        if !self.link().is_tls() && running.name == MechName::Gssapi {
            self.dialect.layer_follows();
        }
        self.dialect.authenticate(running.name.as_str(), initial);
        self.running = Some(running);
    }

    /// Logs in with the protocol's own password command.
    pub fn password_login(
        &mut self,
        running: Running,
        user: &str,
        password: Secret<Vec<u8>>,
    ) -> Result<(), LoginError> {
        self.dialect
            .password_login(running.name.as_str(), user, password)?;
        self.running = Some(running);
        Ok(())
    }

    /// Runs the exchange until something needs a decision.
    pub async fn next(&mut self) -> Result<Next<L::Handshake>, DriveError> {
        loop {
            let event = self
                .dialect
                .poll()
                .map_err(|e| DriveError::new(self.step, e))?;
            match event {
                Event::NeedInput => self.read().await?,
                Event::Send(out) => self.send(out).await?,
                Event::Received(line) => self.received(line),
                Event::Ready(caps) => return Ok(Next::Ready(caps)),
                Event::StartTls => return self.upgrade().await.map(Next::TlsUp),
                Event::Challenge(challenge) => self.answer(challenge).await?,
                Event::Rejected { text } => {
                    let refused = self.take_running(text.clone())?;
                    return Ok(Next::Rejected { refused, text });
                }
                Event::AuthAccepted => self.accepted()?,
                Event::LoggedOut { text } => {
                    return Err(DriveError::new(
                        self.step,
                        ProtocolError::UnexpectedLine { line: text },
                    ));
                }
                Event::Authenticated(caps) => {
                    let running = self.take_running("OK (no authentication running)".into())?;
                    complete(&running)?;
                    self.running = Some(running);
                    return Ok(Next::Authenticated(caps));
                }
            }
        }
    }

    /// The link and what remains after [`Next::Authenticated`].
    pub fn finish(mut self) -> Finished<L> {
        let running = self.running.take().expect("finish follows Authenticated");
        debug_assert_eq!(
            running.mech.layer().is_some(),
            self.layered.is_some(),
            "dialects report AuthAccepted before their capabilities"
        );
        Finished {
            leftover: self.dialect.take_leftover(),
            layer_pending: self.layered.unwrap_or_default(),
            link: self.link.expect("the link is back after the handshake"),
            timeline: self.timeline,
            running,
        }
    }

    /// Ends the session politely and returns the server's last line.
    pub async fn logout(&mut self) -> Result<io::Result<String>, DriveError> {
        let link = live(&mut self.link);
        let dialect = &mut *self.dialect;
        dialect.logout();
        self.deadline
            .bound(self.step, async {
                let text = drive_logout(dialect, link).await;
                let _ = link.shutdown().await;
                Ok(text)
            })
            .await
    }

    fn io_error(&self, e: io::Error) -> DriveError {
        DriveError {
            step: self.step,
            kind: L::io_failure(e),
        }
    }

    /// Reads more from the server into the dialect (through the layer once it is on).
    async fn read(&mut self) -> Result<(), DriveError> {
        if self.layered.is_some() {
            return self.read_layered().await;
        }
        let n = self.read_raw().await?;
        self.dialect.receive(&self.buf[..n]);
        Ok(())
    }

    async fn read_raw(&mut self) -> Result<usize, DriveError> {
        let link = live(&mut self.link);
        let reading = async { Ok(link.read(&mut self.buf).await) };
        let n = self
            .deadline
            .bound(self.step, reading)
            .await?
            .map_err(|e| self.io_error(e))?;
        if n == 0 {
            return Err(DriveError::new(self.step, ProtocolError::ConnectionClosed));
        }
        self.timeline.received();
        Ok(n)
    }

    async fn read_layered(&mut self) -> Result<(), DriveError> {
        loop {
            let (Some(raw), Some(Running { name, mech })) =
                (self.layered.as_mut(), self.running.as_mut())
            else {
                unreachable!("a layer is only switched on for a running mechanism")
            };
            let max = mech.layer().map_or(0, |l| l.max_receive);
            if let Some(token) = take_layer_token(raw, max).map_err(|e| layer_error(*name, e))? {
                let plain = mech.unwrap(&token).map_err(|e| layer_error(*name, e))?;
                self.dialect.receive(&plain);
                return Ok(());
            }
            let n = self.read_raw().await?;
            let raw = self.layered.as_mut().expect("checked above");
            raw.extend_from_slice(&self.buf[..n]);
        }
    }

    /// Sends what the dialect wrote (wrapped once a layer is on).
    async fn send(&mut self, out: Outgoing) -> Result<(), DriveError> {
        let framed;
        let bytes: &[u8] = match (&self.layered, self.running.as_mut()) {
            (Some(_), Some(Running { name, mech })) => {
                debug!("C: {} (through the security layer)", out.shown);
                let max_send = mech.layer().map_or(0, |l| l.max_send);
                let token = mech
                    .wrap(out.bytes.expose())
                    .map_err(|e| layer_error(*name, e))?;
                if token.len() > max_send as usize {
                    return Err(layer_error(
                        *name,
                        SaslError::LayerBufferTooSmall { size: max_send },
                    ));
                }
                framed = frame_layer_token(&token);
                &framed
            }
            _ => {
                debug!("C: {}", out.shown);
                out.bytes.expose()
            }
        };
        let link = live(&mut self.link);
        let writing = async {
            link.write_all(bytes).await?;
            let flushed = link.flush().await;
            if L::STRICT_FLUSH { flushed } else { Ok(()) }
        };
        self.deadline
            .bound(self.step, async { Ok(writing.await) })
            .await?
            .map_err(|e| self.io_error(e))?;
        self.timeline.sent();
        Ok(())
    }

    fn received(&mut self, line: String) {
        debug!("S: {line}");
        if self.greeting.is_none() {
            self.greeting = Some(line);
            if self.capabilities_after_greeting && self.step == Step::Greeting {
                self.step = Step::Capabilities;
            }
        }
    }

    /// The STARTTLS handshake, after the server accepted the command.
    async fn upgrade(&mut self) -> Result<L::Handshake, DriveError> {
        if self.link().is_tls() {
            return Err(DriveError::new(
                self.step,
                ProtocolError::UnexpectedLine {
                    line: "a second STARTTLS".into(),
                },
            ));
        }
        self.step = Step::TlsHandshake;
        let plain = self.link.take().expect("the link is here");
        let handshake = async {
            plain
                .upgrade(self.settings)
                .await
                .map_err(|e| DriveError::new(Step::TlsHandshake, e))
        };
        let (link, tls) = self.deadline.bound(Step::TlsHandshake, handshake).await?;
        self.link = Some(link);
        self.timeline.tls_handshake(L::tls_version(&tls));
        self.timeline.enter(Phase::Capabilities);
        self.step = Step::Capabilities;
        self.dialect.tls_established();
        Ok(tls)
    }

    fn take_running(&mut self, line: String) -> Result<Running, DriveError> {
        if !L::AUTHENTICATES {
            return Err(never_authenticates(self.step));
        }
        self.running
            .take()
            .ok_or_else(|| DriveError::new(self.step, ProtocolError::UnexpectedLine { line }))
    }

    /// The running mechanism's answer to a challenge.
    async fn answer(&mut self, challenge: Secret<Vec<u8>>) -> Result<(), DriveError> {
        let Running { name, mech } = self.take_running("+ (no authentication running)".into())?;
        let stepping = tokio::task::spawn_blocking(move || {
            let mut mech = mech;
            let r = mech.step(challenge.expose());
            (mech, r)
        });
        let (mech, result) = self
            .within(stepping)
            .await?
            .expect("mechanism step panicked");
        let response = result.map_err(|error| mechanism_error(Step::Authenticate, name, error))?;
        self.dialect.auth_response(response);
        self.running = Some(Running { name, mech });
        Ok(())
    }

    /// The server accepted the authentication: nothing more goes out unless the
    /// mechanism finished and verified the server (mutual authentication, SCRAM server
    /// signature). The layer starts right after the success reply: what the dialect
    /// holds beyond it is layer tokens, and what the server said before (capabilities,
    /// in the reply or earlier) was unprotected. The post-authentication query goes
    /// through the layer.
    fn accepted(&mut self) -> Result<(), DriveError> {
        if !L::AUTHENTICATES {
            return Err(never_authenticates(self.step));
        }
        let Some(running) = &self.running else {
            return Ok(());
        };
        complete(running)?;
        if running.mech.layer().is_some() {
            debug!("security layer on: capabilities are asked again through it");
            self.step = Step::Capabilities;
            self.layered = Some(self.dialect.take_leftover());
        }
        Ok(())
    }
}

/// The mechanism-complete check: a success reply before the mechanism finished (and
/// verified the server) ends the session.
fn complete(running: &Running) -> Result<(), DriveError> {
    if running.mech.is_complete() {
        return Ok(());
    }
    let mechanism = running.name.as_str();
    Err(mechanism_error(
        Step::Authenticate,
        running.name,
        SaslError::SuccessBeforeCompletion { mechanism },
    ))
}

fn mechanism_error(step: Step, name: MechName, error: SaslError) -> DriveError {
    DriveError::new(
        step,
        FailureKind::Mechanism {
            mechanism: name.as_str(),
            error,
        },
    )
}

fn layer_error(name: MechName, error: SaslError) -> DriveError {
    mechanism_error(Step::Capabilities, name, error)
}

fn never_authenticates(step: Step) -> DriveError {
    DriveError::new(
        step,
        ProtocolError::UnexpectedLine {
            line: "an authentication reply, although the probe never authenticates".into(),
        },
    )
}

/// Ends an authenticated session politely (IMAP `LOGOUT`, POP3 and SMTP `QUIT`) through a
/// dialect of `protocol` that knows only the logout exchange, and returns the server's
/// last line.
pub async fn logout<S: AsyncRead + AsyncWrite + Unpin>(
    link: &mut S,
    protocol: Protocol,
) -> io::Result<String> {
    let mut dialect = new_dialect(protocol, String::new(), true);
    dialect.logout();
    let text = drive_logout(&mut *dialect, link).await;
    let _ = link.shutdown().await;
    text
}

/// Runs a dialect's logout exchange (after [`Dialect::logout`]) to its last line. A server
/// that closes the connection has said its last word.
async fn drive_logout<S: AsyncRead + AsyncWrite + Unpin>(
    dialect: &mut dyn Dialect,
    link: &mut S,
) -> io::Result<String> {
    let mut buf = [0u8; 4096];
    loop {
        match dialect.poll() {
            Ok(Event::Send(out)) => {
                debug!("C: {}", out.shown);
                link.write_all(out.bytes.expose()).await?;
                link.flush().await?;
            }
            Ok(Event::Received(line)) => debug!("S: {line}"),
            Ok(Event::NeedInput) => match link.read(&mut buf).await? {
                0 => dialect.closed(),
                n => dialect.receive(&buf[..n]),
            },
            Ok(Event::LoggedOut { text }) => return Ok(text),
            Ok(_) => return Err(io::Error::other("unexpected event during logout")),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_port_or_a_missing_or_refused_starttls_moves_on() {
        let (host, port, secs) = ("h".to_string(), 143, 5);
        let unreachable = TransportError::Connect {
            host: host.clone(),
            port,
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        let slow = || FailureKind::Timeout {
            host: host.clone(),
            port,
            secs,
        };
        let cases: Vec<(Step, FailureKind, Option<Fallback>)> = vec![
            (
                Step::Connect,
                unreachable.into(),
                Some(Fallback::PortUnreachable),
            ),
            (
                Step::Connect,
                TransportError::Timeout {
                    host: host.clone(),
                    port,
                    secs,
                }
                .into(),
                Some(Fallback::PortUnreachable),
            ),
            (Step::Connect, slow(), Some(Fallback::PortUnreachable)),
            (Step::Greeting, slow(), None),
            (
                Step::Capabilities,
                PolicyError::StartTlsNotOffered { port }.into(),
                Some(Fallback::StartTlsNotOffered),
            ),
            (
                Step::StartTls,
                ProtocolError::StartTlsRefused { text: "no".into() }.into(),
                Some(Fallback::StartTlsRefused),
            ),
            (
                Step::StartTls,
                ProtocolError::BytesAfterStartTlsOk { count: 3 }.into(),
                None,
            ),
            (
                Step::TlsHandshake,
                TransportError::Handshake { detail: "x".into() }.into(),
                None,
            ),
        ];
        for (step, kind, want) in cases {
            assert_eq!(Fallback::of(step, &kind), want, "{step}: {kind}");
        }
    }
}
