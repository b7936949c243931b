//! Drives one dialect and one mechanism over a transport: connect, TLS (implicit or
//! STARTTLS), capabilities, mechanism choice, authentication. The only module that sees
//! both the protocol and the I/O: [`driver::Driver`] runs the exchange, and this file
//! makes its decisions (TLS methods in order, STARTTLS or not, which mechanism next).
//!
//! Fail closed: no authentication byte is sent before TLS is established and verified,
//! and the methods an account lists are the only ones tried.

pub mod driver;

use tracing::{debug, info, warn};

use crate::auth::{self, LinkFacts};
use crate::config::{Account, MechName, TlsMethod};
use crate::error::{Attempt, Failure, FailureKind, Step};
use crate::policy::{
    Combination, LinkTrust, PolicyError, check_protected, next_mechanism,
    refused_for_unverified_tls,
};
use crate::protocol::Capabilities;
use crate::sasl::Mechanism;
use crate::sasl::scram::{ChannelBinding, ChannelBindingKind};
use crate::timeline::Timeline;
use crate::transport::{self, BindingData, Link, TlsInfo, TlsSettings};

pub use driver::{DriveError, Driver, Fallback, Next, Opening, Running, logout, new_dialect};

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
        let e = match attempt(account, method, port, &tls).await {
            Ok(mut est) => {
                est.earlier = earlier;
                return Ok(est);
            }
            Err(e) => e,
        };
        let fallback = Fallback::of(e.step, &e.kind);
        let mut failure = fail(e.step, e.kind);
        if let (Some(next), Some(_)) = (account.tls.get(i + 1), fallback) {
            info!(
                "account `{}`: {method} on port {port} failed ({}); trying {next}",
                account.name, failure.kind,
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

/// One TLS method: connect, TLS, capabilities, then mechanisms until one succeeds or
/// none is left. The decisions; the exchange itself is the [`Driver`]'s.
async fn attempt(
    account: &Account,
    method: TlsMethod,
    port: u16,
    tls: &TlsSettings,
) -> Result<Established, DriveError> {
    debug!("connecting to {} port {port} ({method})", account.connect);
    let mut opening =
        Opening::<Link>::connect(&account.connect, port, account.timeout, tls).await?;
    if method == TlsMethod::Implicit {
        opening = opening.tls().await?.0;
    }
    let mut driver = opening.start(account.protocol, account.ehlo_name.clone());
    let mut mechs = Mechanisms {
        account,
        port,
        tried: Vec::new(),
        offered: Capabilities::default(),
    };
    loop {
        match driver.next().await? {
            Next::Ready(caps)
                if matches!(driver.link(), Link::Plain(_)) && method != TlsMethod::None =>
            {
                // Only STARTTLS can lead anywhere from a plaintext link.
                if !caps.starttls {
                    return Err(DriveError::new(
                        Step::Capabilities,
                        PolicyError::StartTlsNotOffered { port },
                    ));
                }
                driver.start_tls();
            }
            Next::Ready(caps) => {
                driver.authentication_begins();
                mechs.offered = caps;
                mechs.start_next(&mut driver, None).await?;
            }
            Next::TlsUp(_) => {}
            Next::Rejected { refused, text } => {
                let refusal = mechs.refusal(refused, text);
                mechs.start_next(&mut driver, Some(refusal)).await?;
            }
            Next::Authenticated(capabilities) => {
                return established(driver, capabilities, method, port);
            }
        }
    }
}

/// The session, once the server accepted the mechanism and the mechanism completed.
fn established(
    driver: Driver<'_, Link>,
    capabilities: Capabilities,
    method: TlsMethod,
    port: u16,
) -> Result<Established, DriveError> {
    let done = driver.finish();
    let Running { name, mech } = done.running;
    let tls_info = done.link.tls_info();
    // Whatever led here: no TLS and no layer is a cleartext session.
    check_protected(tls_info.is_some(), mech.layer().is_some(), name)
        .map_err(|e| DriveError::new(Step::Authenticate, e))?;
    // Unverified TLS is not the "tls" of a combination (see `policy`).
    let combination = Combination::of(done.link.trust().is_verified(), name.is_strong());
    Ok(Established {
        leftover: done.leftover,
        layer_pending: done.layer_pending,
        link: done.link,
        capabilities,
        mechanism: name,
        method,
        port,
        tls: tls_info,
        combination,
        earlier: Vec::new(),
        timeline: done.timeline,
        layer: mech.layer().map(|_| mech),
    })
}

/// The account's mechanisms on this link: what was tried, what the server offers.
struct Mechanisms<'a> {
    account: &'a Account,
    port: u16,
    tried: Vec<MechName>,
    /// What the server offers on the protected link, for the next mechanism after a
    /// refusal.
    offered: Capabilities,
}

impl Mechanisms<'_> {
    /// Why the server refused `refused`. A mechanism that learned why (an OAuth error
    /// message) says it better.
    fn refusal(&self, refused: Running, text: String) -> DriveError {
        let Running { name, mech } = refused;
        info!(
            "account `{}`: the server rejected {name}: {text}",
            self.account.name
        );
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
        DriveError::new(Step::Authenticate, kind)
    }

    /// Starts the next acceptable mechanism; when none is left, the last refusal (or
    /// the policy error) ends the attempt. A mechanism that cannot start here (no
    /// ticket, no password source) is reported and the next one is tried.
    async fn start_next(
        &mut self,
        driver: &mut Driver<'_, Link>,
        last_refusal: Option<DriveError>,
    ) -> Result<(), DriveError> {
        let account = self.account;
        let fail = |kind: FailureKind| DriveError::new(Step::Authenticate, kind);
        let link = driver.link();
        let trust = link.trust();
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
            &self.offered,
            &self.tried,
        ) {
            self.tried.push(name);
            let facts = LinkFacts {
                host: account.host.clone(),
                port: self.port,
                binding: binding.clone(),
                on_tls: trust.is_tls(),
            };
            let acct = account.clone();
            let setup = tokio::task::spawn_blocking(move || {
                let mut mech = auth::build(name, &acct, facts)?;
                let initial = mech.initial_response()?;
                Ok::<_, auth::SetupError>((mech, initial))
            });
            let started = driver
                .within(setup)
                .await?
                .expect("mechanism setup panicked");
            let started = started.and_then(|(mech, initial)| {
                let running = Running { name, mech };
                // A protocol-level login gets the password as its "initial response"
                // and hands it to the dialect's own command (IMAP LOGIN, POP3
                // USER/PASS, APOP).
                if name.is_protocol_login() {
                    let password = initial.unwrap_or_default();
                    driver.password_login(running, &account.user, password)?;
                    info!("account `{}`: logging in with {name}", account.name);
                } else {
                    info!("account `{}`: authenticating with {name}", account.name);
                    driver.authenticate(running, initial);
                }
                Ok(())
            });
            match started {
                Ok(()) => return Ok(()),
                Err(error) => {
                    info!("account `{}`: {name} cannot start: {error}", account.name);
                    last = Some(fail(FailureKind::Setup {
                        mechanism: name.as_str(),
                        error,
                    }));
                }
            }
        }
        Err(last.unwrap_or_else(|| fail(self.no_mechanism(trust))))
    }

    /// Why no mechanism could run.
    fn no_mechanism(&self, trust: LinkTrust) -> FailureKind {
        let account = self.account;
        let caps = &self.offered;
        let refused =
            refused_for_unverified_tls(&account.auth, account.min_protection, trust, caps);
        if refused.is_empty() {
            PolicyError::NoAcceptableMechanism {
                offered: caps.mechanisms.clone(),
                allowed: account.auth.clone(),
            }
        } else {
            PolicyError::UnverifiedTls { refused }
        }
        .into()
    }
}
