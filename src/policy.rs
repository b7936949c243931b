//! The four combinations of session protection (verified TLS or none) and
//! authentication (strong or cleartext-equivalent), and the choice of mechanism.
//!
//! Pure decisions: no I/O. `session` asks, and reports what was chosen and why.
//!
//! The link's trust is one of three ([`LinkTrust`]): no TLS, unverified TLS (a
//! certificate neither verified nor pinned, under `[dangerous] accept_invalid_certs`),
//! verified TLS. Only verified TLS is the "tls" of a combination: on unverified TLS a
//! session is named as if it had no TLS ("strong" with a strong mechanism; a weak one
//! never runs there, so "none" never happens), and the link is described as
//! "unverified TLS" wherever the session is shown.

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

/// What the link to the server is worth to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkTrust {
    /// No TLS.
    Plain,
    /// TLS whose certificate was neither verified nor pinned (`[dangerous]
    /// accept_invalid_certs` without `pin_sha256`): encrypted, but whoever is on the path
    /// may hold the other end. No password, password equivalent or token is sent on it.
    UnverifiedTls,
    /// TLS with a certificate that chains to a trusted root and names the host (and
    /// matches `pin_sha256` when set), or, under `accept_invalid_certs`, that matches
    /// `pin_sha256`.
    VerifiedTls,
}

impl LinkTrust {
    /// The trust of a TLS link whose certificate is checked this way: verified, unless
    /// `accept_invalid_certs` waives the checks and no pin stands in for them.
    pub fn of_tls(accept_invalid_certs: bool, pinned: bool) -> Self {
        if accept_invalid_certs && !pinned {
            LinkTrust::UnverifiedTls
        } else {
            LinkTrust::VerifiedTls
        }
    }

    /// Whether the link is TLS at all (verified or not).
    pub fn is_tls(self) -> bool {
        self != LinkTrust::Plain
    }

    /// Whether the link is TLS with a verified (or pinned) certificate.
    pub fn is_verified(self) -> bool {
        self == LinkTrust::VerifiedTls
    }
}

impl fmt::Display for LinkTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkTrust::Plain => "no TLS",
            LinkTrust::UnverifiedTls => "unverified TLS",
            LinkTrust::VerifiedTls => "verified TLS",
        })
    }
}

impl Combination {
    /// The combination of a session: `tls` means verified TLS (see the module
    /// documentation for unverified TLS).
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
    /// The only mechanisms left would expose the password, a password equivalent or a
    /// token on a TLS link whose certificate is neither verified nor pinned.
    #[error("the server's certificate is not verified (`[dangerous] accept_invalid_certs` without `pin_sha256`), and on unverified TLS no password or token is sent: {} cannot run", .refused.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", "))]
    UnverifiedTls { refused: Vec<MechName> },
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
        // The server's words: escaped, since a server chooses them.
        crate::text::escape(&v.join(", "))
    }
}

/// The next mechanism to try: the first one the account lists, the server offers, that
/// has not been tried yet, and that the link and `min` allow: without TLS only a
/// mechanism that negotiates a security layer (GSSAPI), nothing that exposes a password,
/// password equivalent or token on TLS that is not verified, nothing weak when `min`
/// wants a strong mechanism.
///
/// SCRAM and channel binding (RFC 5802 section 6), when `can_bind` (the link has
/// channel-binding data): a plain SCRAM the account lists stands for its -PLUS form when
/// the server offers that; and once a -PLUS mechanism was tried, no SCRAM without
/// binding follows (an attacker who made -PLUS fail must not get the unbound exchange).
pub fn next_mechanism(
    allowed: &[MechName],
    min: MinProtection,
    trust: LinkTrust,
    can_bind: bool,
    caps: &Capabilities,
    tried: &[MechName],
) -> Option<MechName> {
    let plus_tried = tried.iter().any(|m| m.is_plus());
    allowed
        .iter()
        .map(|&m| match m.plus_form() {
            Some(plus) if can_bind && caps.offers(plus.as_str()) => plus,
            _ => m,
        })
        .find(|&m| {
            !tried.contains(&m)
                && caps.offers(m.as_str())
                && link_allows(trust, m)
                && (m.is_strong() || !min.requires_strong())
                && !(can_bind && plus_tried && m.plus_form().is_some())
        })
}

/// Whether `m` may run on a link of this trust.
pub fn link_allows(trust: LinkTrust, m: MechName) -> bool {
    match trust {
        // Without TLS only a mechanism whose security layer protects the session.
        LinkTrust::Plain => !m.needs_tls() && m.negotiates_layer(),
        LinkTrust::UnverifiedTls => !m.needs_verified_tls(),
        LinkTrust::VerifiedTls => true,
    }
}

/// The mechanisms the account allows and the server offers that only unverified TLS
/// keeps from running (for the refusal's message).
pub fn refused_for_unverified_tls(
    allowed: &[MechName],
    min: MinProtection,
    trust: LinkTrust,
    caps: &Capabilities,
) -> Vec<MechName> {
    if trust != LinkTrust::UnverifiedTls {
        return Vec::new();
    }
    allowed
        .iter()
        .copied()
        .filter(|m| {
            caps.offers(m.as_str())
                && !link_allows(trust, *m)
                && (m.is_strong() || !min.requires_strong())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: LinkTrust = LinkTrust::Plain;
    const U: LinkTrust = LinkTrust::UnverifiedTls;
    const V: LinkTrust = LinkTrust::VerifiedTls;

    #[test]
    fn the_account_order_wins_and_unoffered_mechanisms_are_skipped() {
        let caps = Capabilities {
            mechanisms: vec!["PLAIN".into(), "GSSAPI".into()],
            ..Default::default()
        };
        let tls = MinProtection::Tls;
        assert_eq!(
            next_mechanism(&[MechName::Gssapi], tls, V, false, &caps, &[]),
            Some(MechName::Gssapi)
        );
        assert_eq!(
            next_mechanism(
                &[MechName::Gssapi],
                tls,
                V,
                false,
                &caps,
                &[MechName::Gssapi]
            ),
            None
        );
        let none = Capabilities::default();
        assert_eq!(
            next_mechanism(&[MechName::Gssapi], tls, V, false, &none, &[]),
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
            next_mechanism(&auth, strong, P, false, &caps, &[]),
            Some(MechName::Gssapi)
        );
        // GSSAPI refused (or not offered): SCRAM is not the next one without TLS.
        assert_eq!(
            next_mechanism(&auth, strong, P, false, &caps, &[MechName::Gssapi]),
            None
        );
        assert_eq!(
            next_mechanism(&auth, strong, V, false, &caps, &[]),
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
            next_mechanism(&auth, MinProtection::Tls, V, false, &caps, &[]),
            Some(MechName::Plain)
        );
        // Without TLS neither: PLAIN sends the password, SCRAM has no security layer.
        assert_eq!(
            next_mechanism(&auth, MinProtection::Tls, P, false, &caps, &[]),
            None
        );
        assert_eq!(
            next_mechanism(&auth, MinProtection::TlsStrong, V, false, &caps, &[]),
            Some(MechName::ScramSha256)
        );
        assert_eq!(
            next_mechanism(
                &[MechName::Plain],
                MinProtection::TlsStrong,
                V,
                false,
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
            next_mechanism(&auth, MinProtection::Tls, V, false, &caps, &[]),
            Some(MechName::ImapLogin)
        );
        assert_eq!(
            next_mechanism(&auth, MinProtection::Strong, P, false, &caps, &[]),
            None
        );
        assert_eq!(
            next_mechanism(&auth, MinProtection::TlsStrong, V, false, &caps, &[]),
            Some(MechName::ScramSha256)
        );
        // Not offered (LOGINDISABLED, no USER, no APOP timestamp): skipped.
        let none = Capabilities::default();
        assert_eq!(
            next_mechanism(&[MechName::Apop], MinProtection::Tls, V, false, &none, &[]),
            None
        );
    }

    #[test]
    fn unverified_tls_runs_only_mechanisms_that_expose_no_secret() {
        let caps = Capabilities {
            mechanisms: [
                "PLAIN",
                "LOGIN",
                "CRAM-MD5",
                "OAUTHBEARER",
                "XOAUTH2",
                "SCRAM-SHA-256",
                "EXTERNAL",
            ]
            .map(String::from)
            .to_vec(),
            logins: vec![crate::protocol::IMAP_LOGIN],
            ..Default::default()
        };
        let weak = [
            MechName::Plain,
            MechName::Login,
            MechName::CramMd5,
            MechName::OAuthBearer,
            MechName::XOAuth2,
            MechName::ImapLogin,
        ];
        let tls = MinProtection::Tls;
        assert_eq!(next_mechanism(&weak, tls, U, true, &caps, &[]), None);
        assert_eq!(refused_for_unverified_tls(&weak, tls, U, &caps), weak);
        assert_eq!(refused_for_unverified_tls(&weak, tls, V, &caps), []);
        assert_eq!(
            next_mechanism(&weak, tls, V, true, &caps, &[]),
            Some(MechName::Plain)
        );
        let mut auth = weak.to_vec();
        auth.push(MechName::ScramSha256);
        assert_eq!(
            next_mechanism(&auth, tls, U, true, &caps, &[]),
            Some(MechName::ScramSha256)
        );
        assert_eq!(
            next_mechanism(&[MechName::External], tls, U, false, &caps, &[]),
            Some(MechName::External)
        );
        assert_eq!(LinkTrust::of_tls(true, false), U);
        assert_eq!(LinkTrust::of_tls(true, true), V);
        assert_eq!(LinkTrust::of_tls(false, false), V);
    }

    #[test]
    fn rfc5802_6_scram_binds_when_it_can_and_a_failed_plus_is_final() {
        let both = Capabilities {
            mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
            ..Default::default()
        };
        let tls = MinProtection::Tls;
        let scram = [MechName::ScramSha256];
        // Plain SCRAM in `auth` stands for -PLUS when the server offers it and the link
        // can bind.
        assert_eq!(
            next_mechanism(&scram, tls, V, true, &both, &[]),
            Some(MechName::ScramSha256Plus)
        );
        assert_eq!(
            next_mechanism(&scram, tls, V, false, &both, &[]),
            Some(MechName::ScramSha256)
        );
        // After -PLUS, no SCRAM without binding.
        let listed = [
            MechName::ScramSha256Plus,
            MechName::ScramSha256,
            MechName::ScramSha1,
        ];
        let tried = [MechName::ScramSha256Plus];
        assert_eq!(next_mechanism(&listed, tls, V, true, &both, &tried), None);
        assert_eq!(next_mechanism(&scram, tls, V, true, &both, &tried), None);
        // Without binding data, -PLUS could not start, and SCRAM says "n" honestly.
        assert_eq!(
            next_mechanism(&listed, tls, V, false, &both, &tried),
            Some(MechName::ScramSha256)
        );
        // Other mechanisms may still follow a failed -PLUS.
        let with_plain = Capabilities {
            mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "PLAIN".into()],
            ..Default::default()
        };
        assert_eq!(
            next_mechanism(
                &[MechName::ScramSha256, MechName::Plain],
                tls,
                V,
                true,
                &with_plain,
                &tried
            ),
            Some(MechName::Plain)
        );
    }

    #[test]
    fn combinations_are_named_as_documented() {
        assert_eq!(Combination::of(true, true).to_string(), "tls+strong");
        assert_eq!(Combination::of(false, false).to_string(), "none");
    }
}
