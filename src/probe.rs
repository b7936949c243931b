//! `mailtun probe`: what a server offers on its plain port (greeting, capabilities,
//! STARTTLS, capabilities after TLS) and on its TLS port, what mailtun would choose under
//! the default policy and why, and a configuration block to start from.
//!
//! The probe drives the same sans-I/O dialects through the same
//! [`Driver`] as `session`, up to the capabilities and through
//! STARTTLS, and never starts a mechanism: no authentication command and no secret is
//! ever sent (on its [`UnverifiedLink`]s the driver refuses every authentication reply).
//! Its TLS handshakes go on after a failed verification (to show the certificate and the
//! capabilities behind it) through `transport::probe`, whose links `session` and
//! `tunnel` cannot take. Whether a failed method lets the next be tried is
//! [`Fallback::of`], `session`'s own rule.
//!
//! Everything it learns lands in a [`ProbeReport`], whose field names are the `--json`
//! keys documented in the README; `report` renders it for people.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{MechName, MinProtection, Protocol, TlsMethod};
use crate::error::{FailureKind, Step};
use crate::policy::{Combination, LinkTrust, PolicyError, next_mechanism};
use crate::protocol::{Capabilities, ProtocolError};
use crate::session::{DriveError, Driver, Fallback, Next, Opening};
use crate::transport::probe::{CertInfo, ProbeTlsSettings, UnverifiedLink};
use crate::transport::{self, TransportError};
use serde::Serialize;

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Name checked in the certificate.
    pub host: String,
    pub protocol: Protocol,
    /// Address dialled; `host` when `None`.
    pub connect: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub plain_port: Option<u16>,
    pub tls_port: Option<u16>,
    /// Per method: connect, TLS and capabilities.
    pub timeout: Duration,
}

/// Everything the probe learned; the `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub host: String,
    pub connect: String,
    pub protocol: String,
    pub ca_file: Option<String>,
    /// `starttls` (plain port) first, then `implicit` (TLS port).
    pub methods: Vec<MethodReport>,
    /// The four combinations, strongest first.
    pub combinations: Vec<CombinationRow>,
    pub choice: Choice,
    /// A `[accounts.NAME]` block to paste into the configuration.
    pub suggested_config: String,
    /// The service principal GSSAPI would ask for (`service/host@REALM`; `@` alone when
    /// krb5.conf's `[domain_realm]` maps no realm and the KDC's referral decides).
    pub gssapi_service_principal: String,
}

/// One TLS method: the plain port with STARTTLS, or the TLS port.
#[derive(Debug, Clone, Serialize)]
pub struct MethodReport {
    /// `starttls` or `implicit`.
    pub method: String,
    pub port: u16,
    /// A TCP connection was made.
    pub reachable: bool,
    /// The first thing that failed, if anything did.
    pub error: Option<ProbeError>,
    /// The server's first line.
    pub greeting: Option<String>,
    /// Plain port only: what is offered before TLS.
    pub before_tls: Option<CapsReport>,
    /// Plain port only: STARTTLS (STLS) is advertised.
    pub starttls_offered: Option<bool>,
    /// Plain port only: STARTTLS was accepted and the TLS handshake completed.
    pub starttls_performed: Option<bool>,
    pub tls: Option<TlsReport>,
    /// What is offered once TLS is up.
    pub after_tls: Option<CapsReport>,
    /// Whether (and why) `session` would move on to the next method after this one.
    #[serde(skip)]
    pub fallback: Option<Fallback>,
}

/// A failure, with a stable code for scripts.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeError {
    /// Where: `connect`, `tls_handshake`, `greeting`, `starttls`, `capabilities`.
    pub step: String,
    /// What: `dns`, `refused`, `timeout`, `unknown_ca`, `name_mismatch`, `expired`,
    /// `not_yet_valid`, `bad_certificate`, `tls`, `starttls_refused`, `protocol`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapsReport {
    /// Every capability as the server wrote it.
    pub capabilities: Vec<String>,
    /// SASL mechanisms, upper-case.
    pub mechanisms: Vec<String>,
    /// The capabilities that matter for security or for clients (SASL-IR,
    /// LOGINDISABLED, STARTTLS...).
    pub notable: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsReport {
    pub version: String,
    pub cipher_suite: String,
    pub key_exchange: String,
    /// The chain verified against the system roots and `ca_file` for `host`.
    pub verified: bool,
    pub verification_error: Option<ProbeError>,
    /// End-entity certificate first.
    pub chain: Vec<CertInfo>,
}

/// One of the four combinations of TLS and strong authentication.
#[derive(Debug, Clone, Serialize)]
pub struct CombinationRow {
    /// `tls+strong`, `tls`, `strong` or `none`.
    pub combination: String,
    /// The server makes it possible.
    pub possible: bool,
    /// What mailtun does with it under the default policy: `chosen`, `fallback`,
    /// `refused` or `impossible`.
    pub verdict: String,
    /// The mechanisms of this kind the server offers where it applies.
    pub mechanisms: Vec<String>,
    pub reason: String,
}

/// What `mailtun tunnel` would do with a default account for this server.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// The policy assumed: `min_protection = "tls"`, `auth = "auto"`,
    /// `tls = ["starttls", "implicit"]`.
    pub policy: String,
    pub method: Option<String>,
    pub port: Option<u16>,
    pub combination: Option<String>,
    /// The mechanism tried first.
    pub mechanism: Option<String>,
    /// Tried next, in order, if the first cannot start or is rejected.
    pub fallbacks: Vec<String>,
    /// Why mailtun would refuse this server, if it would.
    pub refusal: Option<String>,
}

impl ProbeReport {
    /// The exit class of a probe: `None` when mailtun could work with the server,
    /// else whether the problem is the network/TLS or the policy.
    pub fn problem(&self) -> Option<crate::error::Class> {
        use crate::error::Class;
        if self.choice.mechanism.is_some() {
            return None;
        }
        let tls_ok = self
            .methods
            .iter()
            .any(|m| m.tls.as_ref().is_some_and(|t| t.verified) && m.after_tls.is_some());
        Some(if tls_ok {
            Class::Policy
        } else {
            Class::Network
        })
    }
}

/// Probes both methods and works out the rest.
pub async fn probe(opts: &ProbeOptions) -> Result<ProbeReport, TransportError> {
    let settings = ProbeTlsSettings::new(&opts.host, opts.ca_file.as_deref())?;
    let connect = opts.connect.clone().unwrap_or_else(|| opts.host.clone());
    let plain_port = opts
        .plain_port
        .unwrap_or(opts.protocol.default_plain_port());
    let tls_port = opts.tls_port.unwrap_or(opts.protocol.default_tls_port());
    let mut methods = Vec::new();
    for method in DEFAULT_TLS {
        let port = match method {
            TlsMethod::Implicit => tls_port,
            TlsMethod::Starttls | TlsMethod::None => plain_port,
        };
        let mut report = MethodReport {
            method: method.to_string(),
            port,
            reachable: false,
            error: None,
            greeting: None,
            before_tls: None,
            starttls_offered: None,
            starttls_performed: None,
            tls: None,
            after_tls: None,
            fallback: None,
        };
        if let Err(e) = probe_method(opts, &settings, &connect, method, &mut report).await {
            report.fallback = Fallback::of(e.step, &e.kind);
            report.error = Some(probe_error(e.step, &e.kind));
        }
        methods.push(report);
    }
    let (combinations, choice) = analyse(&methods);
    let mut report = ProbeReport {
        host: opts.host.clone(),
        connect,
        protocol: opts.protocol.to_string(),
        ca_file: opts.ca_file.as_ref().map(|p| p.display().to_string()),
        methods,
        combinations,
        choice,
        suggested_config: String::new(),
        gssapi_service_principal: crate::krb5_profile::service_principal(
            opts.protocol.default_gss_service(),
            &opts.host,
        ),
    };
    report.suggested_config = suggest_config(opts, &report);
    Ok(report)
}

async fn probe_method(
    opts: &ProbeOptions,
    settings: &ProbeTlsSettings,
    connect: &str,
    method: TlsMethod,
    report: &mut MethodReport,
) -> Result<(), DriveError> {
    let mut opening =
        Opening::<UnverifiedLink>::connect(connect, report.port, opts.timeout, settings).await?;
    report.reachable = true;
    if method == TlsMethod::Implicit {
        let (o, tls) = opening.tls().await?;
        opening = o;
        report.tls = Some(tls_report(tls));
    }
    let mut driver = opening
        .start(opts.protocol, "localhost".into())
        .capabilities_after_greeting();
    let ready = driver.next().await;
    report.greeting = driver.greeting().map(str::to_string);
    let caps = match ready? {
        Next::Ready(caps) => caps,
        _ => unreachable!("the probe never authenticates and asks for STARTTLS only after Ready"),
    };
    if driver.link().is_tls() {
        report.after_tls = Some(caps_report(&caps));
    } else {
        report.before_tls = Some(caps_report(&caps));
        report.starttls_offered = Some(caps.starttls);
        report.starttls_performed = Some(false);
        if !caps.starttls {
            driver.logout().await?.ok();
            return Err(DriveError::new(
                driver.step(),
                PolicyError::StartTlsNotOffered { port: report.port },
            ));
        }
        driver.start_tls();
        let Next::TlsUp(tls) = driver.next().await? else {
            return Err(unexpected(
                &driver,
                "capabilities instead of the STARTTLS reply",
            ));
        };
        report.starttls_performed = Some(true);
        report.tls = Some(tls_report(tls));
        let Next::Ready(caps) = driver.next().await? else {
            return Err(unexpected(&driver, "a second STARTTLS"));
        };
        report.after_tls = Some(caps_report(&caps));
    }
    // A polite goodbye; its outcome changes nothing in the report (unless the probe's
    // time runs out meanwhile).
    if let Ok(done) = tokio::time::timeout(Duration::from_secs(3), driver.logout()).await {
        done?.ok();
    }
    Ok(())
}

fn unexpected(driver: &Driver<'_, UnverifiedLink>, line: &str) -> DriveError {
    DriveError::new(
        driver.step(),
        ProtocolError::UnexpectedLine { line: line.into() },
    )
}

fn tls_report(t: transport::probe::ProbeTls) -> TlsReport {
    TlsReport {
        version: t.info.version,
        cipher_suite: t.info.cipher_suite,
        key_exchange: t.info.key_exchange,
        verified: t.verification_error.is_none(),
        verification_error: t
            .verification_error
            .map(|e| probe_error(Step::TlsHandshake, &e.into())),
        chain: t.chain,
    }
}

const NOTABLE: &[&str] = &[
    "STARTTLS",
    "STLS",
    "SASL-IR",
    "LOGINDISABLED",
    "IMAP4REV2",
    "ID",
    "IDLE",
    "ENABLE",
    "COMPRESS=DEFLATE",
    "LITERAL+",
    "LITERAL-",
    "UTF8=ACCEPT",
    "MOVE",
    "CONDSTORE",
    "QRESYNC",
    "USER",
    "TOP",
    "UIDL",
    "PIPELINING",
    "RESP-CODES",
    "AUTH-RESP-CODE",
    "SIZE",
    "8BITMIME",
    "SMTPUTF8",
    "CHUNKING",
    "ENHANCEDSTATUSCODES",
    "REQUIRETLS",
    "DSN",
    "BURL",
];

/// The capabilities as the report shows them: the server's words, escaped
/// ([`crate::text::escape`]).
fn caps_report(caps: &Capabilities) -> CapsReport {
    let escaped = |v: &[String]| v.iter().map(|c| crate::text::escape(c)).collect::<Vec<_>>();
    let notable = escaped(&caps.raw)
        .into_iter()
        .filter(|c| {
            let first = c
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            NOTABLE.contains(&first.as_str())
        })
        .collect();
    CapsReport {
        capabilities: escaped(&caps.raw),
        mechanisms: escaped(&caps.mechanisms),
        notable,
    }
}

/// A stable code for each kind of failure.
fn code(kind: &FailureKind) -> &'static str {
    match kind {
        FailureKind::Transport(t) => match t {
            TransportError::Resolve { .. } => "dns",
            TransportError::Connect { .. } => "refused",
            TransportError::Timeout { .. } => "timeout",
            TransportError::UnknownIssuer { .. } => "unknown_ca",
            TransportError::NameMismatch { .. } => "name_mismatch",
            TransportError::Expired { .. } => "expired",
            TransportError::NotValidYet { .. } => "not_yet_valid",
            TransportError::PinMismatch { .. } => "pin_mismatch",
            TransportError::BadCertificate { .. } => "bad_certificate",
            TransportError::CaFile { .. } | TransportError::ClientCertificate { .. } => "config",
            TransportError::Handshake { .. } => "tls",
        },
        FailureKind::Timeout { .. } => "timeout",
        FailureKind::Policy(PolicyError::StartTlsNotOffered { .. }) => "starttls_not_offered",
        FailureKind::Protocol(ProtocolError::StartTlsRefused { .. }) => "starttls_refused",
        FailureKind::Protocol(ProtocolError::ConnectionClosed) => "closed",
        FailureKind::Protocol(_) => "protocol",
        FailureKind::Io(_) => "io",
        _ => "other",
    }
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::Connect => "connect",
        Step::TlsHandshake => "tls_handshake",
        Step::Greeting => "greeting",
        Step::StartTls => "starttls",
        Step::Capabilities => "capabilities",
        Step::Authenticate => "authentication",
        Step::Config => "config",
        Step::Relay => "relay",
    }
}

fn probe_error(step: Step, kind: &FailureKind) -> ProbeError {
    ProbeError {
        step: step_name(step).into(),
        code: code(kind).into(),
        message: kind.to_string(),
    }
}

fn mech_names(offered: &[String]) -> Vec<MechName> {
    MechName::ALL
        .into_iter()
        .filter(|m| offered.iter().any(|o| o.eq_ignore_ascii_case(m.as_str())))
        .collect()
}

fn names(m: &[MechName]) -> Vec<String> {
    m.iter().map(|m| m.as_str().to_string()).collect()
}

/// The four combinations and the default choice, from what both methods showed.
fn analyse(methods: &[MethodReport]) -> (Vec<CombinationRow>, Choice) {
    let choice = choose(methods);
    let chosen = choice.combination.as_deref();
    let mut rows = Vec::from(tls_rows(methods, chosen));
    rows.extend(plain_rows(methods, chosen));
    (rows, choice)
}

/// One row; its verdict follows from the default choice.
fn row(
    c: Combination,
    possible: bool,
    chosen: Option<&str>,
    mechanisms: &[MechName],
    reason: String,
) -> CombinationRow {
    let verdict = if chosen == Some(&c.to_string()) {
        "chosen"
    } else if c == Combination::Tls && possible && chosen.is_some() {
        "fallback"
    } else if possible {
        "refused"
    } else {
        "impossible"
    };
    CombinationRow {
        combination: c.to_string(),
        possible,
        verdict: verdict.into(),
        mechanisms: names(mechanisms),
        reason,
    }
}

/// `tls+strong` and `tls`: what some verified TLS link offers.
fn tls_rows(methods: &[MethodReport], chosen: Option<&str>) -> [CombinationRow; 2] {
    let verified = |m: &&MethodReport| m.tls.as_ref().is_some_and(|t| t.verified);
    // Mechanisms offered on some verified TLS link.
    let mut after: Vec<String> = Vec::new();
    for m in methods.iter().filter(verified) {
        if let Some(c) = &m.after_tls {
            after.extend(c.mechanisms.iter().cloned());
        }
    }
    let after = mech_names(&after);
    let any_verified = methods
        .iter()
        .any(|m| verified(&m) && m.after_tls.is_some());
    let no_tls_reason = || {
        let why: Vec<String> = methods
            .iter()
            .filter_map(|m| {
                let e = m
                    .tls
                    .as_ref()
                    .and_then(|t| t.verification_error.as_ref())
                    .or(m.error.as_ref())?;
                Some(format!("{} port {}: {}", m.method, m.port, e.message))
            })
            .collect();
        format!("no verified TLS: {}", why.join("; "))
    };
    let strong_after: Vec<MechName> = after.iter().copied().filter(|m| m.is_strong()).collect();
    let weak_after: Vec<MechName> = after.iter().copied().filter(|m| !m.is_strong()).collect();

    let possible = any_verified && !strong_after.is_empty();
    let reason = if possible {
        "verified TLS and a mechanism that never sends the password: the best there is".into()
    } else if !any_verified {
        no_tls_reason()
    } else {
        "the server offers no strong mechanism (GSSAPI, SCRAM, EXTERNAL) after TLS".into()
    };
    let tls_strong = row(
        Combination::TlsStrong,
        possible,
        chosen,
        &strong_after,
        reason,
    );
    let possible = any_verified && !weak_after.is_empty();
    let reason = if !possible {
        if any_verified {
            "the server offers no password mechanism after TLS".into()
        } else {
            no_tls_reason()
        }
    } else if chosen == Some("tls") {
        "verified TLS protects the password, which the server still sees".into()
    } else {
        "used only if no strong mechanism can start or succeed (`auth = \"auto\"` ranks them last); `min_protection = \"tls+strong\"` forbids it".into()
    };
    [
        tls_strong,
        row(Combination::Tls, possible, chosen, &weak_after, reason),
    ]
}

/// `strong` and `none`: what the plain port offers before TLS.
fn plain_rows(methods: &[MethodReport], chosen: Option<&str>) -> [CombinationRow; 2] {
    let plain = methods
        .iter()
        .find(|m| m.method == "starttls")
        .and_then(|m| m.before_tls.as_ref());
    let before = plain.map(|c| mech_names(&c.mechanisms)).unwrap_or_default();
    let strong_before: Vec<MechName> = before
        .iter()
        .copied()
        .filter(|m| m.is_strong() && !m.needs_tls() && m.negotiates_layer())
        .collect();
    let weak_before: Vec<MechName> = before.iter().copied().filter(|m| !m.is_strong()).collect();
    let login_in_clear = plain.is_some_and(|c| {
        let has = |w: &str| c.capabilities.iter().any(|x| x.eq_ignore_ascii_case(w));
        !weak_before.is_empty() || has("USER") || (has("IMAP4rev1") && !has("LOGINDISABLED"))
    });

    let possible = !strong_before.is_empty();
    let reason = if possible {
        "the default `min_protection = \"tls\"` refuses it; `tls = [\"none\"]` with `min_protection = \"strong\"` accepts it with GSSAPI, whose security layer then protects the whole session (SCRAM has none, so it is never used without TLS)".into()
    } else {
        "the server offers no mechanism with a security layer (GSSAPI) before TLS".into()
    };
    let strong = row(
        Combination::Strong,
        possible,
        chosen,
        &strong_before,
        reason,
    );
    let reason = if login_in_clear {
        "never: the password, or what stands for it, would cross the network unprotected".into()
    } else {
        "the server accepts no password before TLS".into()
    };
    [
        strong,
        row(
            Combination::None,
            login_in_clear,
            chosen,
            &weak_before,
            reason,
        ),
    ]
}

/// The methods of a default account, in their order.
const DEFAULT_TLS: [TlsMethod; 2] = [TlsMethod::Starttls, TlsMethod::Implicit];

/// What a default account (`tls = ["starttls", "implicit"]`, `auth = "auto"`,
/// `min_protection = "tls"`) would do, following `session`'s rules: only an unreachable
/// plain port or a server without (working) STARTTLS moves on to the TLS port; a
/// certificate that does not verify ends the session.
fn choose(methods: &[MethodReport]) -> Choice {
    let mut choice = Choice {
        policy: "tls = [\"starttls\", \"implicit\"], auth = \"auto\", min_protection = \"tls\""
            .into(),
        method: None,
        port: None,
        combination: None,
        mechanism: None,
        fallbacks: Vec::new(),
        refusal: None,
    };
    let mut reasons = Vec::new();
    for m in methods {
        if m.fallback.is_some() {
            reasons.push(format!(
                "{} port {}: {}",
                m.method,
                m.port,
                m.error.as_ref().map_or("", |e| &e.message)
            ));
            continue;
        }
        let problem = m
            .tls
            .as_ref()
            .and_then(|t| t.verification_error.as_ref())
            .or(m.error.as_ref());
        if let Some(p) = problem {
            reasons.push(format!("{} port {}: {}", m.method, m.port, p.message));
            break;
        }
        let Some(caps) = &m.after_tls else { break };
        let c = Capabilities {
            mechanisms: caps.mechanisms.clone(),
            ..Default::default()
        };
        let allowed = MechName::auto(&DEFAULT_TLS);
        let mut tried = Vec::new();
        // TLS 1.3 always has channel-binding data (tls-exporter); TLS 1.2 has it for most
        // certificates (tls-server-end-point), which the order shown assumes.
        let can_bind = m.tls.is_some();
        while let Some(n) = next_mechanism(
            &allowed,
            MinProtection::Tls,
            LinkTrust::VerifiedTls,
            can_bind,
            &c,
            &tried,
        ) {
            tried.push(n);
        }
        choice.method = Some(m.method.clone());
        choice.port = Some(m.port);
        match tried.split_first() {
            Some((first, rest)) => {
                choice.mechanism = Some(first.as_str().into());
                choice.fallbacks = names(rest);
                choice.combination = Some(Combination::of(true, first.is_strong()).to_string());
            }
            None => {
                choice.refusal = Some(
                    PolicyError::NoAcceptableMechanism {
                        offered: caps.mechanisms.clone(),
                        allowed,
                    }
                    .to_string(),
                );
            }
        }
        return choice;
    }
    choice.refusal = Some(if reasons.is_empty() {
        "no method could be probed".into()
    } else {
        reasons.join("; ")
    });
    choice
}

/// A `[accounts.NAME]` block for this server.
fn suggest_config(opts: &ProbeOptions, r: &ProbeReport) -> String {
    use std::fmt::Write;
    let name: String = opts
        .host
        .split('.')
        .next()
        .unwrap_or("mail")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let name = if name.is_empty() { "mail".into() } else { name };
    let q = quoted;
    let mut out = String::new();
    let _ = writeln!(out, "[accounts.{name}]");
    let _ = writeln!(out, "protocol = \"{}\"", opts.protocol);
    let _ = writeln!(out, "host = {}", q(&opts.host));
    if let Some(c) = &opts.connect {
        let _ = writeln!(out, "connect = {}", q(c));
    }
    let good: Vec<&MethodReport> = r
        .methods
        .iter()
        .filter(|m| m.tls.as_ref().is_some_and(|t| t.verified) && m.after_tls.is_some())
        .collect();
    if good.is_empty() {
        let _ = writeln!(
            out,
            "# no method gave verified TLS: fix that first (see above); `ca_file` names a private CA"
        );
    } else {
        let list: Vec<String> = good.iter().map(|m| q(&m.method)).collect();
        let _ = writeln!(out, "tls = [{}]", list.join(", "));
    }
    if let Some(p) = opts.plain_port {
        let _ = writeln!(out, "plain_port = {p}");
    }
    if let Some(p) = opts.tls_port {
        let _ = writeln!(out, "tls_port = {p}");
    }
    if let Some(ca) = &opts.ca_file {
        let _ = writeln!(out, "ca_file = {}", q(&ca.display().to_string()));
    }
    let _ = writeln!(out, "user = \"YOUR-USER-NAME\"");
    write_auth(&mut out, opts, r, &name);
    out
}

/// A TOML string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The suggested block's `auth`, `min_protection`, password and GSSAPI lines.
fn write_auth(out: &mut String, opts: &ProbeOptions, r: &ProbeReport, name: &str) {
    use std::fmt::Write;
    let q = quoted;
    let strong = r
        .combinations
        .iter()
        .find(|c| c.combination == "tls+strong")
        .filter(|c| c.possible)
        .map(|c| c.mechanisms.clone());
    let offered: Vec<String> = match &strong {
        Some(s) => s.clone(),
        None => r
            .combinations
            .iter()
            .find(|c| c.combination == "tls")
            .map(|c| c.mechanisms.clone())
            .unwrap_or_default(),
    };
    // -PLUS needs channel binding and EXTERNAL a client certificate: keep them out of a
    // block meant to work as pasted.
    let auth: Vec<MechName> = mech_names(&offered)
        .into_iter()
        .filter(|m| *m != MechName::External && *m != MechName::CramMd5)
        .collect();
    if auth.is_empty() {
        let _ = writeln!(out, "auth = \"auto\"");
    } else {
        let list: Vec<String> = auth
            .iter()
            .map(|m| q(&m.as_str().to_ascii_lowercase()))
            .collect();
        let _ = writeln!(out, "auth = [{}]", list.join(", "));
    }
    if strong.is_some() {
        let _ = writeln!(out, "min_protection = \"tls+strong\"");
    } else {
        let _ = writeln!(out, "min_protection = \"tls\"");
    }
    if auth.iter().any(|m| m.needs_password()) {
        let _ = writeln!(
            out,
            "password = {{ command = \"pass show mail/{name}\" }}   # or {{ keyring = true }}"
        );
    }
    if auth.contains(&MechName::Gssapi) {
        let _ = writeln!(out, "\n[accounts.{name}.gssapi]");
        let _ = writeln!(
            out,
            "service = \"{}\"   # the server's principal is {}/{}",
            opts.protocol.default_gss_service(),
            opts.protocol.default_gss_service(),
            opts.host
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified_tls_offering(mechanisms: &[&str]) -> MethodReport {
        MethodReport {
            method: "implicit".into(),
            port: 993,
            reachable: true,
            error: None,
            greeting: Some("* OK".into()),
            before_tls: None,
            starttls_offered: None,
            starttls_performed: None,
            tls: Some(TlsReport {
                version: "TLSv1.3".into(),
                cipher_suite: String::new(),
                key_exchange: String::new(),
                verified: true,
                verification_error: None,
                chain: Vec::new(),
            }),
            after_tls: Some(CapsReport {
                capabilities: Vec::new(),
                mechanisms: mechanisms.iter().map(|m| m.to_string()).collect(),
                notable: Vec::new(),
            }),
            fallback: None,
        }
    }

    #[test]
    fn the_choice_follows_the_auto_list_of_the_configuration() {
        // Protocol logins and CRAM-MD5 are only used when an account lists them.
        let choice = choose(&[verified_tls_offering(&[
            "PLAIN",
            "CRAM-MD5",
            "USER-PASS",
            "APOP",
        ])]);
        assert_eq!(choice.mechanism.as_deref(), Some("PLAIN"));
        assert_eq!(choice.fallbacks, Vec::<String>::new());
        let auto = MechName::auto(&DEFAULT_TLS);
        assert!(
            !auto
                .iter()
                .any(|m| m.is_protocol_login() || *m == MechName::CramMd5)
        );
    }
}
