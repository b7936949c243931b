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
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "no SASL mechanism".into()
    } else {
        // The server's words: escaped, since a server chooses them.
        crate::text::escape(&v.join(", "))
    }
}

/// The next mechanism to try: the first one the account lists, the server offers, that
/// has not been tried yet, and that the link and `min` allow: nothing that sends a secret
/// without TLS, nothing weak when `min` wants a strong mechanism.
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
            && (on_tls || !m.needs_tls())
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
        assert_eq!(
            next_mechanism(&auth, MinProtection::Tls, false, &caps, &[]),
            Some(MechName::ScramSha256)
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
            Some(MechName::ScramSha256)
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
