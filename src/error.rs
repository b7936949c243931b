//! The failure every layer reports into: which account, which step, what went wrong,
//! and the class that decides the exit code and the reply to the local client.

use std::fmt;
use std::io;

use crate::config::{ConfigError, Protocol, TlsMethod};
use crate::policy::PolicyError;
use crate::protocol::ProtocolError;
use crate::sasl::{GssFailureKind, SaslError};
use crate::transport::TransportError;

/// Where the session was when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Config,
    Connect,
    TlsHandshake,
    Greeting,
    StartTls,
    Capabilities,
    Authenticate,
    Relay,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Config => "reading the configuration",
            Step::Connect => "connecting",
            Step::TlsHandshake => "TLS handshake",
            Step::Greeting => "server greeting",
            Step::StartTls => "STARTTLS",
            Step::Capabilities => "capabilities",
            Step::Authenticate => "authentication",
            Step::Relay => "relaying",
        })
    }
}

/// The class of a failure: it decides the exit code and the client reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The configuration is missing or wrong.
    Config,
    /// The server could not be reached, or TLS could not be established and verified.
    Network,
    /// The server offers nothing the account's policy accepts.
    Policy,
    /// Authentication failed: locally (Kerberos) or at the server.
    Auth,
    /// The server broke the protocol (or someone in the middle did).
    Protocol,
}

impl Class {
    /// Every class, in the order of the exit-code table.
    pub const ALL: [Class; 5] = [
        Class::Config,
        Class::Network,
        Class::Policy,
        Class::Auth,
        Class::Protocol,
    ];

    /// The process exit code of a failure of this class.
    pub const fn exit_code(self) -> u8 {
        match self {
            Class::Config => 3,
            Class::Network => 4,
            Class::Policy => 5,
            Class::Auth => 6,
            Class::Protocol => 7,
        }
    }

    /// What the exit code means, as `--help` and the manual page say it.
    pub const fn meaning(self) -> &'static str {
        match self {
            Class::Config => "configuration error",
            Class::Network => "connection or TLS failure (unreachable, certificate not verified)",
            Class::Policy => {
                "policy refusal (no TLS or no acceptable mechanism where the account requires one)"
            }
            Class::Auth => "authentication failure (no Kerberos ticket, server refused)",
            Class::Protocol => "the server broke the protocol (e.g. bytes injected after STARTTLS)",
        }
    }

    /// The code of the refusal the local client gets: the IMAP `* BYE [CODE]`, the POP3
    /// `-ERR [CODE]`, the SMTP reply code.
    pub const fn reply_code(self, protocol: Protocol) -> &'static str {
        match (protocol, self) {
            (Protocol::Imap, Class::Config | Class::Network | Class::Protocol) => "UNAVAILABLE",
            (Protocol::Imap, Class::Policy) => "PRIVACYREQUIRED",
            (Protocol::Imap, Class::Auth) => "AUTHENTICATIONFAILED",
            (Protocol::Pop3, Class::Auth) => "AUTH",
            (Protocol::Pop3, _) => "SYS/TEMP",
            (Protocol::Smtp, Class::Auth) => "535",
            (Protocol::Smtp, _) => "421",
        }
    }
}

/// The exit code of a run that went as asked.
pub const EXIT_OK: u8 = 0;
/// The exit code of a command line clap refuses (and of an unknown `snippet` client).
pub const EXIT_USAGE: u8 = 2;

/// The exit-code table, code and meaning, in order: `--help`, the manual page and `main`
/// read it, and the integration tests take their expected codes from [`Class::exit_code`].
pub fn exit_codes() -> Vec<(u8, &'static str)> {
    let mut rows = vec![
        (
            EXIT_OK,
            "the session ended normally (probe: mailtun can work with the server; check: authenticated)",
        ),
        (EXIT_USAGE, "usage error"),
    ];
    rows.extend(Class::ALL.iter().map(|c| (c.exit_code(), c.meaning())));
    rows
}

/// What the exit-code table leaves out: how a signal ends the tunnel.
pub const EXIT_SIGNAL_NOTE: &str =
    "SIGTERM or SIGHUP while the tunnel runs closes the session cleanly (exit 0).";

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum FailureKind {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The mechanism failed, locally or because of what the server sent.
    #[error("{mechanism}: {error}")]
    Mechanism {
        mechanism: &'static str,
        error: SaslError,
    },
    /// The mechanism could not start on this side (no ticket, no password source...).
    #[error("{mechanism}: {error}")]
    Setup {
        mechanism: &'static str,
        error: crate::auth::SetupError,
    },
    /// The server answered the authentication with a refusal.
    #[error("the server rejected {mechanism}: {text}")]
    Rejected {
        mechanism: &'static str,
        text: String,
    },
    /// The step did not finish within the account's timeout.
    #[error("no progress from {host} port {port} within {secs} s")]
    Timeout { host: String, port: u16, secs: u64 },
    /// Local I/O (stdin/stdout, log file).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A TLS method that was tried and given up for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub method: TlsMethod,
    pub port: u16,
    pub reason: String,
}

/// A failed session: the account, the step, the cause, and what was tried before.
#[derive(Debug)]
pub struct Failure {
    pub account: String,
    pub step: Step,
    pub kind: FailureKind,
    pub earlier: Vec<Attempt>,
}

impl Failure {
    pub fn new(account: &str, step: Step, kind: impl Into<FailureKind>) -> Self {
        Failure {
            account: account.to_string(),
            step,
            kind: kind.into(),
            earlier: Vec::new(),
        }
    }

    pub fn class(&self) -> Class {
        match &self.kind {
            FailureKind::Config(_) => Class::Config,
            FailureKind::Transport(
                TransportError::CaFile { .. } | TransportError::ClientCertificate { .. },
            ) => Class::Config,
            FailureKind::Transport(_) | FailureKind::Timeout { .. } | FailureKind::Io(_) => {
                Class::Network
            }
            FailureKind::Policy(_) => Class::Policy,
            FailureKind::Protocol(ProtocolError::StartTlsRefused { .. }) => Class::Policy,
            FailureKind::Protocol(_) => Class::Protocol,
            // The server broke the security layer it agreed to.
            FailureKind::Mechanism {
                error: SaslError::UnsealedLayerToken | SaslError::LayerTokenTooLarge { .. },
                ..
            } => Class::Protocol,
            FailureKind::Mechanism { .. }
            | FailureKind::Rejected { .. }
            | FailureKind::Setup { .. } => Class::Auth,
        }
    }

    /// What the user can do about it, when there is something more to say than the cause.
    pub fn remedy(&self) -> Option<String> {
        let gss_kind = match &self.kind {
            FailureKind::Mechanism {
                error: SaslError::Gss(g),
                ..
            }
            | FailureKind::Setup {
                error: crate::auth::SetupError::Sasl(SaslError::Gss(g)),
                ..
            } => Some(g.kind),
            _ => None,
        };
        Some(match (&self.kind, gss_kind) {
            (_, Some(GssFailureKind::NoCredentials)) => {
                "get a Kerberos ticket with `kinit PRINCIPAL`, point `gssapi.ccache` at a cache that holds one, or set `gssapi.kinit = true` to get one with the password (for `gssapi.principal`, else `user` in the default realm)".into()
            }
            (_, Some(GssFailureKind::Expired)) => {
                "renew the Kerberos ticket with `kinit PRINCIPAL`, or set `gssapi.kinit = true` to get one with the password (for `gssapi.principal`, else `user` in the default realm)".into()
            }
            (_, Some(GssFailureKind::UnknownServer)) => {
                "the service principal is `gssapi.service`/`host`, with `host` exactly as configured (DNS does not rewrite it): set `host` to the server's name in its keytab, set `gssapi.service` (imap, pop, smtp...), or set `gssapi.canonicalize = true` to let the Kerberos library canonicalize the name through DNS as krb5.conf says".into()
            }
            (_, Some(GssFailureKind::NoTrustPath)) => {
                "the service's realm comes from `[domain_realm]` in krb5.conf (or the KDC's referral) for `host`: if that realm is wrong, fix `[domain_realm]` or use a ticket of the service's realm (`gssapi.ccache`, `gssapi.principal`); if it is right, the realms need a trust (a shared `krbtgt/SERVICE-REALM@CLIENT-REALM`) and, unless one realm's name is a parent of the other's, a `[capaths]` entry in krb5.conf".into()
            }
            (_, Some(GssFailureKind::PasswordExpired)) => {
                "change the password with `kinit PRINCIPAL` (it asks for the old one and a new one), then connect again".into()
            }
            (_, Some(GssFailureKind::AccountLocked)) => {
                "wait until the lockout ends (too many wrong passwords lock an Active Directory account for a while), or ask the realm's administrator to unlock or enable the account".into()
            }
            (_, Some(GssFailureKind::EnctypeUnsupported)) => {
                "the service's administrator must give it AES keys: in Active Directory set `msDS-SupportedEncryptionTypes` to 24 (AES) on the service account, change its password and export the keytab again; on an MIT KDC `kadmin cpw -randkey -e aes256-cts-hmac-sha1-96:normal SERVICE/HOST`".into()
            }
            (_, Some(GssFailureKind::ClockSkew)) => {
                "the clocks of this machine and the KDC differ by more than Kerberos allows (`clockskew`, 5 minutes by default): synchronise this machine's clock (NTP, e.g. `timedatectl set-ntp true`); a new ticket from `kinit` also makes MIT Kerberos correct for the difference, unless krb5.conf sets `kdc_timesync = 0`".into()
            }
            (_, Some(GssFailureKind::KdcUnreachable)) => {
                "check the realm's KDC entries in krb5.conf (or KRB5_CONFIG) and that the KDC is up".into()
            }
            (_, Some(GssFailureKind::UnknownRealm)) => {
                "add the realm to krb5.conf (or KRB5_CONFIG), or check `gssapi.principal`".into()
            }
            (FailureKind::Rejected { mechanism: "GSSAPI", .. }, _) => {
                "check that your principal is allowed to log in as this user on the server; the server's log says why it refused the ticket (a clock that differs from this machine's by more than 5 minutes is one cause: synchronise the clocks with NTP)".into()
            }
            (FailureKind::Rejected { mechanism: "EXTERNAL", .. }, _) => {
                "check that the server maps the client certificate (`client_cert`) to this user".into()
            }
            (FailureKind::Rejected { .. }, _) => {
                "check `user` and the password (or token) of this account".into()
            }
            (FailureKind::Policy(PolicyError::StartTlsNotOffered { .. }), _)
            | (FailureKind::Protocol(ProtocolError::StartTlsRefused { .. }), _) => {
                "add \"implicit\" to `tls` to use the server's TLS port, or ask its administrator to enable STARTTLS".into()
            }
            (FailureKind::Policy(PolicyError::UnverifiedTls { .. }), _) => {
                "set `pin_sha256` to the server's certificate (`mailtun probe HOST` prints it) so that the link counts as verified, or authenticate with SCRAM or GSSAPI".into()
            }
            (FailureKind::Policy(PolicyError::NoAcceptableMechanism { .. }), _) => {
                "add a mechanism the server offers to `auth`, or ask its administrator to enable GSSAPI".into()
            }
            (FailureKind::Transport(TransportError::Connect { .. } | TransportError::Timeout { .. } | TransportError::Resolve { .. }), _)
            | (FailureKind::Timeout { .. }, _) => {
                "check `host`, `connect` and the ports of the account, and that the server is up".into()
            }
            (FailureKind::Transport(TransportError::UnknownIssuer { .. }), _) => {
                "if you trust that CA, save its certificate and name the file with `ca_file`; `mailtun probe HOST` shows the chain".into()
            }
            (FailureKind::Transport(TransportError::NameMismatch { .. }), _) => {
                "set `host` to a name the certificate holds (and `connect` to the address to dial), or ask the administrator for a certificate with this name".into()
            }
            (FailureKind::Transport(TransportError::Expired { .. } | TransportError::NotValidYet { .. }), _) => {
                "check this machine's date and time; if they are right, the server's administrator must renew the certificate".into()
            }
            (FailureKind::Transport(TransportError::PinMismatch { .. }), _) => {
                "if the server's certificate changed legitimately, check the new one (`mailtun probe HOST`) and update `pin_sha256`".into()
            }
            (FailureKind::Config(_), _) => "fix the configuration file".into(),
            _ => return None,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let FailureKind::Config(c) = &self.kind {
            return write!(f, "{c}");
        }
        write!(
            f,
            "account `{}`: {}: {}",
            self.account, self.step, self.kind
        )?;
        for a in &self.earlier {
            write!(
                f,
                "\n  (tried {} on port {} first: {})",
                a.method, a.port, a.reason
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}
