//! Drives one dialect and one mechanism over a transport: connect, TLS (implicit or
//! STARTTLS), capabilities, mechanism choice, authentication. The only module that sees
//! both the protocol and the I/O.
//!
//! Fail closed: no authentication byte is sent before TLS is established and verified,
//! and the methods an account lists are the only ones tried.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use crate::auth::{self, LinkFacts};
use crate::config::{Account, MechName, Protocol, TlsMethod};
use crate::error::{Attempt, Failure, FailureKind, Step};
use crate::policy::{
    Combination, PolicyError, check_protected, next_mechanism, refused_for_unverified_tls,
};
use crate::protocol::imap::ImapClient;
use crate::protocol::pop3::Pop3Client;
use crate::protocol::smtp::SmtpClient;
use crate::protocol::{Capabilities, Dialect, Event, ProtocolError};
use crate::sasl::scram::{ChannelBinding, ChannelBindingKind};
use crate::sasl::{Mechanism, SaslError, frame_layer_token, take_layer_token};
use crate::timeline::{Phase, Timeline};
use crate::transport::{self, BindingData, Link, TlsInfo, TlsSettings, TransportError};

/// An authenticated session, ready to be handed to the client.
pub struct Established {
    pub link: Link,
    /// Bytes the server sent after the last reply the session read; they belong to the
    /// client (with a security layer: already unwrapped).
    pub leftover: Vec<u8>,
    /// With a security layer: bytes received and not yet unwrapped (the start of the
    /// next layer token), for the relay.
    pub layer_pending: Vec<u8>,
    /// The server's capabilities after authentication (with a security layer: asked for
    /// and answered through it).
    pub capabilities: Capabilities,
    pub mechanism: MechName,
    pub method: TlsMethod,
    pub port: u16,
    pub tls: Option<TlsInfo>,
    pub combination: Combination,
    /// TLS methods tried and given up before this one.
    pub earlier: Vec<Attempt>,
    /// Time and round trips of each step of the attempt that succeeded.
    pub timeline: Timeline,
    /// The mechanism, when it negotiated a security layer that the relay must apply.
    pub layer: Option<Box<dyn Mechanism>>,
}

/// Connects and authenticates `account`, trying its TLS methods in order.
pub async fn establish(account: &Account) -> Result<Established, Failure> {
    let fail = |step, kind: FailureKind| Failure::new(&account.name, step, kind);
    if account.dangerous.accept_invalid_certs {
        if account.pin_sha256.is_some() {
            warn!(
                "account `{}`: [dangerous] accept_invalid_certs is set: the chain, name and dates of the server's certificate are NOT checked; it must match `pin_sha256`",
                account.name
            );
        } else {
            warn!(
                "account `{}`: [dangerous] accept_invalid_certs is set without `pin_sha256`: the server's certificate is NOT verified, so anyone on the path may hold the other end of this unverified TLS; no password or token is sent on it",
                account.name
            );
        }
    }
    let tls = transport::tls_settings(
        &account.host,
        account.ca_file.as_deref(),
        account.pin_sha256,
        account.dangerous.accept_invalid_certs,
        account
            .client_cert
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .map_err(|e| fail(Step::Config, e.into()))?;

    let mut earlier = Vec::new();
    for (i, &method) in account.tls.iter().enumerate() {
        let port = match method {
            TlsMethod::Implicit => account.tls_port,
            TlsMethod::Starttls | TlsMethod::None => account.plain_port,
        };
        let mut step = Step::Connect;
        let result = tokio::time::timeout(
            account.timeout,
            attempt(account, method, port, &tls, &mut step),
        )
        .await;
        let mut failure = match result {
            Ok(Ok(mut est)) => {
                est.earlier = earlier;
                return Ok(est);
            }
            Ok(Err(f)) => f,
            // A connect that never completes is the network's doing: say where.
            Err(_) if step == Step::Connect => fail(
                step,
                TransportError::Timeout {
                    host: account.connect.clone(),
                    port,
                    secs: account.timeout.as_secs(),
                }
                .into(),
            ),
            Err(_) => fail(
                step,
                FailureKind::Timeout {
                    host: account.connect.clone(),
                    port,
                    secs: account.timeout.as_secs(),
                },
            ),
        };
        if i + 1 < account.tls.len() && allows_next_method(&failure) {
            info!(
                "account `{}`: {method} on port {port} failed ({}); trying {}",
                account.name,
                failure.kind,
                account.tls[i + 1]
            );
            earlier.push(Attempt {
                method,
                port,
                reason: failure.kind.to_string(),
            });
            continue;
        }
        failure.earlier = earlier;
        return Err(failure);
    }
    unreachable!("config validation guarantees at least one TLS method")
}

/// Whether a failure of the STARTTLS method lets the next method be tried: only an
/// unreachable plain port or a server without (working) STARTTLS. Certificate problems,
/// injections and authentication failures end the session.
fn allows_next_method(f: &Failure) -> bool {
    matches!(
        &f.kind,
        FailureKind::Transport(
            TransportError::Connect { .. }
                | TransportError::Timeout { .. }
                | TransportError::Resolve { .. }
        ) | FailureKind::Policy(PolicyError::StartTlsNotOffered { .. })
            | FailureKind::Protocol(ProtocolError::StartTlsRefused { .. })
    ) || (matches!(f.kind, FailureKind::Timeout { .. }) && f.step == Step::Connect)
}

fn new_dialect(account: &Account, on_tls: bool) -> Box<dyn Dialect> {
    match account.protocol {
        Protocol::Imap => Box::new(ImapClient::new(on_tls)),
        Protocol::Pop3 => Box::new(Pop3Client::new(on_tls)),
        Protocol::Smtp => Box::new(SmtpClient::new(on_tls, account.ehlo_name.clone())),
    }
}

/// The mechanism in progress, with its name.
struct Running {
    name: MechName,
    mech: Box<dyn Mechanism>,
}

async fn attempt(
    account: &Account,
    method: TlsMethod,
    port: u16,
    tls: &TlsSettings,
    step: &mut Step,
) -> Result<Established, Failure> {
    let fail = |step: Step, kind: FailureKind| Failure::new(&account.name, step, kind);
    *step = Step::Connect;
    let mut timeline = Timeline::new();
    debug!("connecting to {} port {port} ({method})", account.connect);
    let tcp = transport::connect(&account.connect, port)
        .await
        .map_err(|e| fail(Step::Connect, e.into()))?;
    timeline.add_round_trips(1);
    let mut link = match method {
        TlsMethod::Implicit => {
            *step = Step::TlsHandshake;
            timeline.enter(Phase::Tls);
            let link = transport::handshake(tcp, tls)
                .await
                .map_err(|e| fail(Step::TlsHandshake, e.into()))?;
            timeline.tls_handshake(link.tls_info().as_ref().map(|i| i.version.as_str()));
            link
        }
        TlsMethod::Starttls | TlsMethod::None => Link::Plain(tcp),
    };
    timeline.enter(Phase::Capabilities);
    *step = Step::Greeting;
    let mut dialect = new_dialect(account, link.trust().is_tls());
    let mut tried: Vec<MechName> = Vec::new();
    let mut running: Option<Running> = None;
    let mut last_refusal: Option<Failure> = None;
    // What the server offers on the protected link, for the next mechanism after a refusal.
    let mut offered = Capabilities::default();
    let mut buf = vec![0u8; 16 * 1024];
    // Once a security layer is negotiated (from the authentication reply on): the bytes
    // received and not yet unwrapped. Every byte in both directions then goes through
    // the layer, the post-authentication capability query and its reply included.
    let mut layered: Option<Vec<u8>> = None;

    loop {
        let event = dialect.poll().map_err(|e| fail(*step, e.into()))?;
        match event {
            Event::NeedInput if layered.is_some() => {
                let (Some(raw), Some(Running { name, mech })) =
                    (layered.as_mut(), running.as_mut())
                else {
                    unreachable!("a layer is only switched on for a running mechanism")
                };
                let layer_fail = |error| {
                    fail(
                        Step::Capabilities,
                        FailureKind::Mechanism {
                            mechanism: name.as_str(),
                            error,
                        },
                    )
                };
                let max = mech.layer().map_or(0, |l| l.max_receive);
                loop {
                    if let Some(token) = take_layer_token(raw, max).map_err(layer_fail)? {
                        let plain = mech.unwrap(&token).map_err(layer_fail)?;
                        dialect.receive(&plain);
                        break;
                    }
                    let n = link.read(&mut buf).await.map_err(|e| {
                        fail(
                            *step,
                            TransportError::Handshake {
                                detail: e.to_string(),
                            }
                            .into(),
                        )
                    })?;
                    if n == 0 {
                        return Err(fail(*step, ProtocolError::ConnectionClosed.into()));
                    }
                    timeline.received();
                    raw.extend_from_slice(&buf[..n]);
                }
            }
            Event::Send(out) if layered.is_some() => {
                let Some(Running { name, mech }) = running.as_mut() else {
                    unreachable!("a layer is only switched on for a running mechanism")
                };
                debug!("C: {} (through the security layer)", out.shown);
                let layer_fail = |error| {
                    fail(
                        Step::Capabilities,
                        FailureKind::Mechanism {
                            mechanism: name.as_str(),
                            error,
                        },
                    )
                };
                let max_send = mech.layer().map_or(0, |l| l.max_send);
                let token = mech.wrap(out.bytes.expose()).map_err(layer_fail)?;
                if token.len() > max_send as usize {
                    return Err(layer_fail(SaslError::LayerBufferTooSmall {
                        size: max_send,
                    }));
                }
                link.write_all(&frame_layer_token(&token))
                    .await
                    .map_err(|e| {
                        fail(
                            *step,
                            TransportError::Handshake {
                                detail: e.to_string(),
                            }
                            .into(),
                        )
                    })?;
                link.flush().await.ok();
                timeline.sent();
            }
            Event::NeedInput => {
                let n = link.read(&mut buf).await.map_err(|e| {
                    fail(
                        *step,
                        TransportError::Handshake {
                            detail: e.to_string(),
                        }
                        .into(),
                    )
                })?;
                if n == 0 {
                    return Err(fail(*step, ProtocolError::ConnectionClosed.into()));
                }
                timeline.received();
                dialect.receive(&buf[..n]);
            }
            Event::Send(out) => {
                debug!("C: {}", out.shown);
                link.write_all(out.bytes.expose()).await.map_err(|e| {
                    fail(
                        *step,
                        TransportError::Handshake {
                            detail: e.to_string(),
                        }
                        .into(),
                    )
                })?;
                link.flush().await.ok();
                timeline.sent();
            }
            Event::Received(line) => debug!("S: {line}"),
            Event::Ready(caps) => {
                if matches!(link, Link::Plain(_)) && method != TlsMethod::None {
                    // Only STARTTLS can lead anywhere from a plaintext link.
                    if !caps.starttls {
                        return Err(fail(
                            Step::Capabilities,
                            PolicyError::StartTlsNotOffered { port }.into(),
                        ));
                    }
                    *step = Step::StartTls;
                    timeline.enter(Phase::Tls);
                    dialect.start_tls();
                } else {
                    *step = Step::Authenticate;
                    timeline.enter(Phase::Authentication);
                    offered = caps;
                    running = Some(
                        start_mechanism(
                            account,
                            &link,
                            port,
                            &offered,
                            &mut tried,
                            &mut *dialect,
                            last_refusal.take(),
                        )
                        .await?,
                    );
                }
            }
            Event::StartTls => {
                *step = Step::TlsHandshake;
                let Link::Plain(tcp) = link else {
                    unreachable!("STARTTLS is only asked for on a plaintext link")
                };
                link = transport::handshake(tcp, tls)
                    .await
                    .map_err(|e| fail(Step::TlsHandshake, e.into()))?;
                timeline.tls_handshake(link.tls_info().as_ref().map(|i| i.version.as_str()));
                timeline.enter(Phase::Capabilities);
                *step = Step::Capabilities;
                dialect.tls_established();
            }
            Event::Challenge(challenge) => {
                let Some(Running { name, mech }) = running.take() else {
                    return Err(fail(
                        *step,
                        ProtocolError::UnexpectedLine {
                            line: "+ (no authentication running)".into(),
                        }
                        .into(),
                    ));
                };
                let (mech, result) = tokio::task::spawn_blocking(move || {
                    let mut mech = mech;
                    let r = mech.step(challenge.expose());
                    (mech, r)
                })
                .await
                .expect("mechanism step panicked");
                match result {
                    Ok(response) => dialect.auth_response(response),
                    Err(error) => {
                        return Err(fail(
                            Step::Authenticate,
                            FailureKind::Mechanism {
                                mechanism: name.as_str(),
                                error,
                            },
                        ));
                    }
                }
                running = Some(Running { name, mech });
            }
            Event::Rejected { text } => {
                let Some(Running { name, mech }) = running.take() else {
                    return Err(fail(
                        *step,
                        ProtocolError::UnexpectedLine { line: text }.into(),
                    ));
                };
                info!(
                    "account `{}`: the server rejected {name}: {text}",
                    account.name
                );
                // A mechanism that learned why (an OAuth error message) says it better.
                let kind = match mech.server_failure() {
                    Some(error) => FailureKind::Mechanism {
                        mechanism: name.as_str(),
                        error,
                    },
                    None => FailureKind::Rejected {
                        mechanism: name.as_str(),
                        text,
                    },
                };
                last_refusal = Some(fail(Step::Authenticate, kind));
                running = Some(
                    start_mechanism(
                        account,
                        &link,
                        port,
                        &offered,
                        &mut tried,
                        &mut *dialect,
                        last_refusal.take(),
                    )
                    .await?,
                );
            }
            // Never: this loop does not call `Dialect::logout`.
            Event::LoggedOut { text } => {
                return Err(fail(
                    *step,
                    ProtocolError::UnexpectedLine { line: text }.into(),
                ));
            }
            Event::AuthAccepted => {
                // Nothing more goes out unless the mechanism finished and verified the
                // server (mutual authentication, SCRAM server signature).
                if let Some(Running { name, mech }) = &running {
                    if !mech.is_complete() {
                        return Err(fail(
                            Step::Authenticate,
                            FailureKind::Mechanism {
                                mechanism: name.as_str(),
                                error: SaslError::SuccessBeforeCompletion {
                                    mechanism: name.as_str(),
                                },
                            },
                        ));
                    }
                    // The layer starts right after the success reply: what the dialect
                    // holds beyond it is layer tokens, and what the server said before
                    // (capabilities, in the reply or earlier) was unprotected. The
                    // dialect's post-authentication query goes through the layer.
                    if mech.layer().is_some() {
                        debug!("security layer on: capabilities are asked again through it");
                        *step = Step::Capabilities;
                        layered = Some(dialect.take_leftover());
                    }
                }
            }
            Event::Authenticated(capabilities) => {
                let Some(Running { name, mech }) = running.take() else {
                    return Err(fail(
                        *step,
                        ProtocolError::UnexpectedLine {
                            line: "OK (no authentication running)".into(),
                        }
                        .into(),
                    ));
                };
                if !mech.is_complete() {
                    return Err(fail(
                        Step::Authenticate,
                        FailureKind::Mechanism {
                            mechanism: name.as_str(),
                            error: SaslError::SuccessBeforeCompletion {
                                mechanism: name.as_str(),
                            },
                        },
                    ));
                }
                let tls_info = link.tls_info();
                // Whatever led here: no TLS and no layer is a cleartext session.
                check_protected(tls_info.is_some(), mech.layer().is_some(), name)
                    .map_err(|e| fail(Step::Authenticate, e.into()))?;
                debug_assert_eq!(
                    mech.layer().is_some(),
                    layered.is_some(),
                    "dialects report AuthAccepted before their capabilities"
                );
                // Unverified TLS is not the "tls" of a combination (see `policy`).
                let combination = Combination::of(link.trust().is_verified(), name.is_strong());
                return Ok(Established {
                    leftover: dialect.take_leftover(),
                    layer_pending: layered.unwrap_or_default(),
                    link,
                    capabilities,
                    mechanism: name,
                    method,
                    port,
                    tls: tls_info,
                    combination,
                    earlier: Vec::new(),
                    timeline,
                    layer: mech.layer().map(|_| mech),
                });
            }
        }
    }
}

/// Starts the next acceptable mechanism; when none is left, the last refusal (or the
/// policy error) ends the attempt. A mechanism that cannot start here (no ticket, no
/// password source) is reported and the next one is tried.
async fn start_mechanism(
    account: &Account,
    link: &Link,
    port: u16,
    caps: &Capabilities,
    tried: &mut Vec<MechName>,
    dialect: &mut dyn Dialect,
    last_refusal: Option<Failure>,
) -> Result<Running, Failure> {
    let fail = |kind: FailureKind| Failure::new(&account.name, Step::Authenticate, kind);
    let trust = link.trust();
    let on_tls = trust.is_tls();
    let binding = link.channel_binding().map(|b| match b {
        BindingData::TlsExporter(d) => ChannelBinding::new(ChannelBindingKind::TlsExporter, d),
        BindingData::TlsServerEndPoint(d) => {
            ChannelBinding::new(ChannelBindingKind::TlsServerEndPoint, d)
        }
    });
    let mut last = last_refusal;
    while let Some(name) = next_mechanism(
        &account.auth,
        account.min_protection,
        trust,
        binding.is_some(),
        caps,
        tried,
    ) {
        tried.push(name);
        let facts = LinkFacts {
            host: account.host.clone(),
            port,
            binding: binding.clone(),
            on_tls,
        };
        let acct = account.clone();
        let started = tokio::task::spawn_blocking(move || {
            let mut mech = auth::build(name, &acct, facts)?;
            let initial = mech.initial_response()?;
            Ok::<_, auth::SetupError>((mech, initial))
        })
        .await
        .expect("mechanism setup panicked");
        // A protocol-level login gets the password as its "initial response" and hands
        // it to the dialect's own command (IMAP LOGIN, POP3 USER/PASS, APOP).
        let started = started.and_then(|(mech, initial)| {
            if name.is_protocol_login() {
                dialect.password_login(
                    name.as_str(),
                    &account.user,
                    initial.unwrap_or_default(),
                )?;
                return Ok((mech, None));
            }
            Ok((mech, initial))
        });
        match started {
            Ok((mech, _)) if name.is_protocol_login() => {
                info!("account `{}`: logging in with {name}", account.name);
                return Ok(Running { name, mech });
            }
            Ok((mech, initial)) => {
                info!("account `{}`: authenticating with {name}", account.name);
                if !on_tls && name == MechName::Gssapi {
                    dialect.layer_follows();
                }
                dialect.authenticate(name.as_str(), initial);
                return Ok(Running { name, mech });
            }
            Err(error) => {
                info!("account `{}`: {name} cannot start: {error}", account.name);
                last = Some(fail(FailureKind::Setup {
                    mechanism: name.as_str(),
                    error,
                }));
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        let refused =
            refused_for_unverified_tls(&account.auth, account.min_protection, trust, caps);
        fail(
            if refused.is_empty() {
                PolicyError::NoAcceptableMechanism {
                    offered: caps.mechanisms.clone(),
                    allowed: account.auth.clone(),
                }
            } else {
                PolicyError::UnverifiedTls { refused }
            }
            .into(),
        )
    }))
}
