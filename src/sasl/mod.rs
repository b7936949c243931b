//! Sans-I/O SASL client mechanisms: challenge bytes in, response bytes out.
//!
//! No mechanism here performs I/O or links a crypto or Kerberos library directly;
//! GSSAPI reaches Kerberos through the [`gssapi::GssContext`] trait, which `gss`
//! implements.

pub mod gssapi;

use crate::secret::Secret;

/// A client-side SASL mechanism.
pub trait Mechanism: Send {
    /// The IANA name, as sent in the authentication command.
    fn name(&self) -> &'static str;
    /// The client-first response, if the mechanism has one.
    fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError>;
    /// The response to a server challenge.
    fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError>;
    /// Whether the mechanism finished and verified the server (mutual authentication).
    /// A server's success reply before this is true is refused.
    fn is_complete(&self) -> bool;
}

/// How a GSS-API operation failed, as far as a user can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GssFailureKind {
    /// No credentials cache, or no ticket-granting ticket in it.
    NoCredentials,
    /// The ticket-granting ticket has expired.
    Expired,
    /// The KDC does not know the service principal asked for.
    UnknownServer,
    /// The clocks of this machine and the KDC or server differ too much.
    ClockSkew,
    /// No KDC of the realm could be reached.
    KdcUnreachable,
    /// The client principal's realm is not known to this machine's Kerberos configuration.
    UnknownRealm,
    /// Anything else; the message says what.
    Other,
}

/// A failure of the Kerberos library, with its own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GssFailure {
    pub kind: GssFailureKind,
    pub message: String,
}

/// A mechanism that could not go on. One variant per way a server or the local
/// credentials can make it fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The Kerberos library failed (no ticket, unknown server principal...).
    #[error("Kerberos: {0}")]
    Gss(GssFailure),
    /// The server did not prove its identity although mutual authentication was required.
    #[error(
        "the server did not prove its identity (Kerberos mutual authentication was not performed)"
    )]
    MutualAuthMissing,
    /// The server's security-layer message (RFC 4752 section 3.1) is not 4 octets.
    #[error("the server's GSSAPI security-layer message is malformed ({len} octets instead of 4)")]
    MalformedLayerOffer { len: usize },
    /// The server offers no security layer this account accepts.
    #[error(
        "the server offers GSSAPI security layers {offered:#04x}, none of which this account accepts ({wanted})"
    )]
    NoAcceptableLayer { offered: u8, wanted: &'static str },
    /// A challenge arrived after the mechanism had finished.
    #[error("the server sent a challenge after the {mechanism} exchange was complete")]
    ChallengeAfterCompletion { mechanism: &'static str },
    /// The server reported success before the mechanism finished (and so before the
    /// server proved its identity).
    #[error("the server reported success before the {mechanism} exchange was complete")]
    SuccessBeforeCompletion { mechanism: &'static str },
    /// The server sent a challenge where the mechanism expects none.
    #[error("the server sent an unexpected {mechanism} challenge")]
    UnexpectedChallenge { mechanism: &'static str },
}
