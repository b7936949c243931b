//! Sans-I/O SASL client mechanisms: challenge bytes in, response bytes out.
//!
//! No mechanism here performs I/O, reads a clock or links a Kerberos library directly;
//! GSSAPI reaches Kerberos through the [`gssapi::GssContext`] trait, which `gss`
//! implements. Randomness (the SCRAM client nonce) and channel-binding data are inputs.
//!
//! # Layout
//! - [`gssapi`]: GSSAPI (RFC 4752) over a context trait.
//! - [`scram`]: SCRAM-SHA-1, SCRAM-SHA-256 and their `-PLUS` variants (RFC 5802, 7677).
//! - [`cram_md5`], [`plain`], [`login`], [`external`]: the simple ones.
//! - [`oauth`]: OAUTHBEARER (RFC 7628) and Google's XOAUTH2.
//! - [`properties`]: what the policy needs to know about each mechanism name.
//! - [`protocol_login`]: not SASL: IMAP `LOGIN`, POP3 `USER`/`PASS` and `APOP`, carried
//!   to the dialect behind the same trait.
//! - `gs2`: the GS2 header and `saslname` escaping shared by SCRAM and OAUTHBEARER.

pub mod cram_md5;
pub mod external;
mod gs2;
pub mod gssapi;
pub mod login;
pub mod oauth;
pub mod plain;
pub mod properties;
pub mod protocol_login;
pub mod scram;

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
    /// A failure the server reported inside the exchange, if any.
    ///
    /// Some mechanisms must answer a server's error challenge with a dummy response
    /// (OAUTHBEARER's `\x01`, XOAUTH2's empty response) and let the server end the
    /// exchange with its failure reply. `step` then succeeds, `is_complete` stays false,
    /// and this returns the error the server explained, which is what the user should see
    /// instead of the bare failure reply.
    fn server_failure(&self) -> Option<SaslError> {
        None
    }

    /// The security layer negotiated (RFC 4422 section 3.7), if any: from then on every
    /// byte in both directions goes through [`Mechanism::wrap`] and [`Mechanism::unwrap`].
    fn layer(&self) -> Option<Layer> {
        None
    }

    /// Protects outgoing bytes with the negotiated layer.
    fn wrap(&mut self, _data: &[u8]) -> Result<Vec<u8>, SaslError> {
        Err(SaslError::NoLayer {
            mechanism: self.name(),
        })
    }

    /// Checks (and decrypts) an incoming token of the negotiated layer.
    fn unwrap(&mut self, _token: &[u8]) -> Result<Vec<u8>, SaslError> {
        Err(SaslError::NoLayer {
            mechanism: self.name(),
        })
    }
}

/// A negotiated SASL security layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    /// Encryption as well as integrity.
    pub confidentiality: bool,
    /// The largest wrapped token the server accepts.
    pub max_send: u32,
    /// The largest wrapped token this client accepts.
    pub max_receive: u32,
}

/// Takes the first whole security-layer token off `raw` (RFC 4422 section 3.7: a 4-octet
/// big-endian length, then that many octets), if it holds one; a length above `max`
/// (the size this client announced) is refused before any of the token is awaited.
pub fn take_layer_token(raw: &mut Vec<u8>, max: u32) -> Result<Option<Vec<u8>>, SaslError> {
    let Some(len) = raw.first_chunk::<4>() else {
        return Ok(None);
    };
    let size = u32::from_be_bytes(*len);
    if size > max {
        return Err(SaslError::LayerTokenTooLarge { size, max });
    }
    let end = 4 + size as usize;
    if raw.len() < end {
        return Ok(None);
    }
    let token = raw[4..end].to_vec();
    raw.drain(..end);
    Ok(Some(token))
}

/// A wrapped token with its 4-octet length in front, as it goes on the wire.
pub fn frame_layer_token(token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + token.len());
    out.extend_from_slice(&(token.len() as u32).to_be_bytes());
    out.extend_from_slice(token);
    out
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
    /// The client's realm has no trust path to the service's realm: its KDC has no
    /// cross-realm `krbtgt/SERVICE-REALM@CLIENT-REALM`.
    NoTrustPath,
    /// The KDC refused a ticket because the principal's password has expired.
    PasswordExpired,
    /// The KDC refused a ticket because the account is locked out or disabled.
    AccountLocked,
    /// The KDC has no key of the principal in an encryption type it may use (typically a
    /// service account with only an RC4 key, in a realm that turned RC4 off).
    EnctypeUnsupported,
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
    /// The relay asked a mechanism without a negotiated layer to wrap or unwrap.
    #[error("{mechanism} negotiated no security layer")]
    NoLayer { mechanism: &'static str },
    /// The server sent a security-layer token larger than the size this client announced.
    #[error("the server sent a {size}-byte security-layer token; at most {max} were allowed")]
    LayerTokenTooLarge { size: u32, max: u32 },
    /// A security-layer token that was not encrypted on a session whose confidentiality
    /// layer was negotiated: its `conf_state` was false. Someone in the middle (or a
    /// broken server) is sending readable, merely signed data where encryption was agreed.
    #[error(
        "the server sent a security-layer token that is not encrypted, although the confidentiality layer was negotiated"
    )]
    UnsealedLayerToken,
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
    /// The server offers a security layer with a buffer too small for any wrapped data.
    #[error(
        "the server offers a GSSAPI security layer with a {size}-byte buffer, too small to carry data"
    )]
    LayerBufferTooSmall { size: u32 },
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
    /// A server message does not follow the mechanism's grammar.
    #[error("the server's {mechanism} message is malformed ({reason})")]
    MalformedServerMessage {
        mechanism: &'static str,
        reason: &'static str,
    },
    /// The SCRAM server nonce does not start with (and extend) the client nonce: the
    /// server-first message does not belong to this exchange.
    #[error("the server's {mechanism} nonce does not extend the client nonce")]
    NonceNotExtended { mechanism: &'static str },
    /// The SCRAM iteration count is outside the accepted bounds: too low makes the
    /// exchange cheap to brute-force, too high is a denial of service on the client.
    #[error("the server asks for {count} {mechanism} iterations; accepted are {min} to {max}")]
    IterationCountOutOfBounds {
        mechanism: &'static str,
        count: u64,
        min: u32,
        max: u32,
    },
    /// The SCRAM server-first message carries a mandatory extension (`m=`) we do not know.
    #[error("the server requires a {mechanism} extension this client does not implement")]
    UnsupportedMandatoryExtension { mechanism: &'static str },
    /// The SCRAM server sent its final message before the client sent its proof.
    #[error("the server sent its final {mechanism} message before the client's proof")]
    ServerFinalTooEarly { mechanism: &'static str },
    /// The SCRAM server signature `v=` does not verify: the server does not know the
    /// password (or a stored key for it), or the exchange was tampered with.
    #[error(
        "the server's {mechanism} signature does not verify: the server did not prove it knows the password"
    )]
    ServerSignatureMismatch { mechanism: &'static str },
    /// The server ended the exchange with an error value (SCRAM `e=`).
    #[error("the server refused the {mechanism} exchange: {value}")]
    ServerError {
        mechanism: &'static str,
        /// The server's error value, reduced to printable ASCII.
        value: String,
    },
    /// The server refused the OAuth bearer token (RFC 7628 error challenge, or XOAUTH2's).
    #[error("the server refused the {mechanism} token (status {status}{})", .scope.as_deref().map(|s| format!(", scope `{s}`")).unwrap_or_default())]
    TokenRefused {
        mechanism: &'static str,
        /// The server's `status`, reduced to printable ASCII.
        status: String,
        /// The scope the server says the token needs (RFC 7628 `scope`), when it says one.
        scope: Option<String>,
    },
    /// A local credential cannot be prepared with SASLprep (RFC 4013): it contains a
    /// prohibited or unassigned character, or mixes text directions.
    #[error(
        "the {what} cannot be prepared with SASLprep (RFC 4013): it contains a prohibited character"
    )]
    SaslPrepFailed { what: &'static str },
    /// A local credential cannot be encoded in the mechanism (a NUL in a PLAIN field, an
    /// empty password, a bearer token with characters outside RFC 6750's `b64token`...).
    #[error("the {what} cannot be used with {mechanism}: {reason}")]
    UnusableCredential {
        mechanism: &'static str,
        what: &'static str,
        reason: &'static str,
    },
}

/// Where a mechanism whose whole exchange is its initial response (PLAIN, EXTERNAL)
/// stands: any challenge from the server is a protocol error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum InitialOnly {
    /// The response has not been asked for yet.
    #[default]
    ExpectResponseRequest,
    /// The response was sent; only the server's verdict may follow.
    ExpectVerdict,
}

impl InitialOnly {
    /// The error for a challenge in this state.
    pub(crate) fn challenge_error(self, mechanism: &'static str) -> SaslError {
        match self {
            InitialOnly::ExpectResponseRequest => SaslError::UnexpectedChallenge { mechanism },
            InitialOnly::ExpectVerdict => SaslError::ChallengeAfterCompletion { mechanism },
        }
    }
}

/// Refuses an empty credential (`what`: "username", "password") for `mechanism`.
pub(crate) fn require_nonempty(
    mechanism: &'static str,
    what: &'static str,
    value: &str,
) -> Result<(), SaslError> {
    if value.is_empty() {
        return Err(SaslError::UnusableCredential {
            mechanism,
            what,
            reason: "it is empty",
        });
    }
    Ok(())
}

/// A server-supplied string made safe for an error message: printable ASCII only, at
/// most 200 characters.
pub(crate) fn printable(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect();
    if raw.chars().count() > 200 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4422_layer_tokens_are_length_prefixed_and_bounded() {
        let mut raw = frame_layer_token(b"abc");
        raw.extend_from_slice(&frame_layer_token(b"de")[..3]);
        assert_eq!(take_layer_token(&mut raw, 16), Ok(Some(b"abc".to_vec())));
        assert_eq!(take_layer_token(&mut raw, 16), Ok(None));
        raw.extend_from_slice(b"\x02de");
        assert_eq!(take_layer_token(&mut raw, 16), Ok(Some(b"de".to_vec())));
        assert!(raw.is_empty());
        let mut big = vec![0, 0, 1, 0];
        assert_eq!(
            take_layer_token(&mut big, 255),
            Err(SaslError::LayerTokenTooLarge {
                size: 256,
                max: 255
            })
        );
    }
}
