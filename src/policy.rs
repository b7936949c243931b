//! The four combinations of session protection (verified TLS or none) and
//! authentication (strong or cleartext-equivalent), and the choice of mechanism.
//!
//! Pure decisions: no I/O. `session` asks, and reports what was chosen and why.

use std::fmt;

use crate::config::{MechName, MinProtection};
use crate::protocol::Capabilities;

/// Which protections a session has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combination {
    /// Verified TLS and a mechanism that never sends the password.
    TlsStrong,
    /// Verified TLS only.
    Tls,
    /// A strong mechanism only.
    Strong,
    /// Neither: refused, always.
    None,
}

impl Combination {
    pub fn of(tls: bool, strong: bool) -> Self {
        match (tls, strong) {
            (true, true) => Combination::TlsStrong,
            (true, false) => Combination::Tls,
            (false, true) => Combination::Strong,
            (false, false) => Combination::None,
        }
    }
}

impl fmt::Display for Combination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Combination::TlsStrong => "tls+strong",
            Combination::Tls => "tls",
            Combination::Strong => "strong",
            Combination::None => "none",
        })
    }
}

/// A refusal on principle: the session would be weaker than the account allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// None of the account's mechanisms is offered by the server on the protected link.
    #[error("the server offers {} after TLS; the account allows {}", list_or_none(.offered), .allowed.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", "))]
    NoAcceptableMechanism {
        offered: Vec<String>,
        allowed: Vec<MechName>,
    },
    /// TLS is required but the server does not offer STARTTLS on the plain port.
    #[error("the server does not offer STARTTLS on port {port}, and the account requires TLS")]
    StartTlsNotOffered { port: u16 },
    /// Authentication succeeded on a link without TLS, but the mechanism negotiated no
    /// security layer: the session would run in cleartext.
    #[error(
        "{mechanism} succeeded without TLS but negotiated no security layer, so the session would run in cleartext; it was closed"
    )]
    NoTlsNoLayer { mechanism: MechName },
}

/// The last check before a session is handed over: it has TLS, or a security layer that
/// protects every byte. Whatever led to an authenticated session without either (a
/// configuration, a mechanism, a server), it is refused.
pub fn check_protected(tls: bool, layer: bool, mechanism: MechName) -> Result<(), PolicyError> {
    if tls || layer {
        Ok(())
    } else {
        Err(PolicyError::NoTlsNoLayer { mechanism })
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "no SASL mechanism".into()
    } else {
        v.join(", ")
    }
}

/// The next mechanism to try: the first one the account lists, the server offers, that
/// has not been tried yet, and that the link and `min` allow: without TLS only a
/// mechanism that negotiates a security layer (GSSAPI), nothing weak when `min` wants a
/// strong mechanism.
pub fn next_mechanism(
    allowed: &[MechName],
    min: MinProtection,
    on_tls: bool,
    caps: &Capabilities,
    tried: &[MechName],
) -> Option<MechName> {
    allowed.iter().copied().find(|m| {
        !tried.contains(m)
            && caps.offers(m.as_str())
            && (on_tls || (!m.needs_tls() && m.negotiates_layer()))
            && (m.is_strong() || !min.requires_strong())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_order_wins_and_unoffered_mechanisms_are_skipped() {
        let caps = Capabilities {
            mechanisms: vec!["PLAIN".into(), "GSSAPI".into()],
            ..Default::default()
        };
        let tls = MinProtection::Tls;
        assert_eq!(
            next_mechanism(&[MechName::Gssapi], tls, true, &caps, &[]),
            Some(MechName::Gssapi)
        );
        assert_eq!(
            next_mechanism(&[MechName::Gssapi], tls, true, &caps, &[MechName::Gssapi]),
            None
        );
        let none = Capabilities::default();
        assert_eq!(
            next_mechanism(&[MechName::Gssapi], tls, true, &none, &[]),
            None
        );
    }

    #[test]
    fn without_tls_only_a_mechanism_with_a_security_layer_is_chosen() {
        let caps = Capabilities {
            mechanisms: vec!["SCRAM-SHA-256".into(), "GSSAPI".into()],
            ..Default::default()
        };
        let auth = [MechName::ScramSha256, MechName::Gssapi];
        let strong = MinProtection::Strong;
        assert_eq!(
            next_mechanism(&auth, strong, false, &caps, &[]),
            Some(MechName::Gssapi)
        );
        // GSSAPI refused (or not offered): SCRAM is not the next one without TLS.
        assert_eq!(
            next_mechanism(&auth, strong, false, &caps, &[MechName::Gssapi]),
            None
        );
        assert_eq!(
            next_mechanism(&auth, strong, true, &caps, &[]),
            Some(MechName::ScramSha256)
        );
    }

    #[test]
    fn a_session_with_neither_tls_nor_a_layer_is_refused() {
        assert_eq!(check_protected(true, false, MechName::ScramSha256), Ok(()));
        assert_eq!(check_protected(false, true, MechName::Gssapi), Ok(()));
        assert_eq!(check_protected(true, true, MechName::Gssapi), Ok(()));
        let e = check_protected(false, false, MechName::ScramSha256).unwrap_err();
        assert_eq!(
            e,
            PolicyError::NoTlsNoLayer {
                mechanism: MechName::ScramSha256
            }
        );
        assert!(e.to_string().contains("SCRAM-SHA-256"), "{e}");
        assert!(e.to_string().contains("no security layer"), "{e}");
    }

    #[test]
    fn plain_is_never_chosen_without_tls_nor_below_tls_strong() {
        let caps = Capabilities {
            mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-256".into()],
            ..Default::default()
        };
        let auth = [MechName::Plain, MechName::ScramSha256];
        assert_eq!(
            next_mechanism(&auth, MinProtection::Tls, true, &caps, &[]),
            Some(MechName::Plain)
        );
        // Without TLS neither: PLAIN sends the password, SCRAM has no security layer.
        assert_eq!(
            next_mechanism(&auth, MinProtection::Tls, false, &caps, &[]),
            None
        );
        assert_eq!(
            next_mechanism(&auth, MinProtection::TlsStrong, true, &caps, &[]),
            Some(MechName::ScramSha256)
        );
        assert_eq!(
            next_mechanism(
                &[MechName::Plain],
                MinProtection::TlsStrong,
                true,
                &caps,
                &[]
            ),
            None
        );
    }

    #[test]
    fn protocol_logins_only_over_tls_and_never_when_strong_is_required() {
        let caps = Capabilities {
            mechanisms: vec!["SCRAM-SHA-256".into()],
            logins: vec![crate::protocol::IMAP_LOGIN],
            ..Default::default()
        };
        let auth = [MechName::ImapLogin, MechName::ScramSha256];
        assert_eq!(
            next_mechanism(&auth, MinProtection::Tls, true, &caps, &[]),
            Some(MechName::ImapLogin)
        );
        assert_eq!(
            next_mechanism(&auth, MinProtection::Strong, false, &caps, &[]),
            None
        );
        assert_eq!(
            next_mechanism(&auth, MinProtection::TlsStrong, true, &caps, &[]),
            Some(MechName::ScramSha256)
        );
        // Not offered (LOGINDISABLED, no USER, no APOP timestamp): skipped.
        let none = Capabilities::default();
        assert_eq!(
            next_mechanism(&[MechName::Apop], MinProtection::Tls, true, &none, &[]),
            None
        );
    }

    #[test]
    fn combinations_are_named_as_documented() {
        assert_eq!(Combination::of(true, true).to_string(), "tls+strong");
        assert_eq!(Combination::of(false, false).to_string(), "none");
    }
}
