//! What the policy needs to know about each SASL mechanism name, before any exchange:
//! whether it is strong, which credential it needs, and whether it speaks first.
//!
//! Only facts about the mechanisms live here; the choice (which combination of TLS and
//! mechanism strength an account accepts) is `policy`'s.
//!
//! # What "strong" means
//! A mechanism is strong when an eavesdropper on an unprotected link learns nothing
//! that lets them log in, or cheaply recover the password: the password never crosses
//! the wire, in clear or in a cleartext-equivalent form.
//!
//! - GSSAPI: Kerberos tickets; no password on the wire. Strong.
//! - SCRAM-*: a salted, iterated proof bound to both nonces, and the server proves it
//!   knows the password too. Strong.
//! - EXTERNAL: the TLS client certificate authenticates; nothing password-like is sent.
//!   Strong (it only works over TLS anyway).
//! - PLAIN, LOGIN: the password itself. Not strong.
//! - OAUTHBEARER, XOAUTH2: the bearer token is a cleartext-equivalent credential; whoever
//!   reads it can log in until it expires. Not strong.
//! - CRAM-MD5: **not strong**, although RFC 2195 sends no password. Reasons: (1) one
//!   observed exchange (challenge and HMAC-MD5 response) allows an offline dictionary
//!   attack at MD5 speed (billions of guesses a second on a GPU), with no salt and no
//!   iteration count, so any human-chosen password falls; (2) the server does not
//!   authenticate itself, so without TLS an active attacker can relay or impersonate; (3)
//!   the server must store the password or its HMAC-MD5 precomputed key, which is a
//!   password equivalent; RFC 2195 is obsoleted in practice, and SCRAM replaces it. So
//!   CRAM-MD5 does not make an unprotected link acceptable: the policy treats it like
//!   PLAIN (allowed only over verified TLS), where it adds nothing but also costs
//!   nothing.
//!
//! # What "exposes a secret to the peer" means
//! Strength is about an eavesdropper; a TLS link whose certificate was neither verified
//! nor pinned (`[dangerous] accept_invalid_certs`) may have an attacker at the other end,
//! who then runs the exchange itself. A mechanism exposes a secret to the peer when that
//! peer learns the password, a password equivalent, a response open to an offline
//! dictionary attack, or a bearer token: PLAIN, LOGIN, CRAM-MD5, OAUTHBEARER, XOAUTH2, and
//! the protocol logins (IMAP LOGIN, POP3 USER/PASS, APOP). Those run only on verified TLS.
//! GSSAPI and SCRAM do not (the server proves its own identity; a -PLUS exchange also
//! detects a relay), nor does EXTERNAL (the client's private key never leaves).

/// The properties of one mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Properties {
    name: &'static str,
    strong: bool,
    needs_password: bool,
    needs_token: bool,
    client_first: bool,
    mutual: bool,
    channel_binding: bool,
    exposes_secret: bool,
    layer: bool,
}

impl Properties {
    /// The IANA name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
    /// Whether the mechanism keeps the password, and any cleartext-equivalent of it, off
    /// the wire (see the module documentation, CRAM-MD5 included).
    pub const fn is_strong(&self) -> bool {
        self.strong
    }
    /// Whether the account must supply a password.
    pub const fn needs_password(&self) -> bool {
        self.needs_password
    }
    /// Whether the account must supply an OAuth bearer token.
    pub const fn needs_token(&self) -> bool {
        self.needs_token
    }
    /// Whether the client sends the first message (usable as an initial response with
    /// SASL-IR, or answering the server's empty first challenge).
    pub const fn client_first(&self) -> bool {
        self.client_first
    }
    /// Whether the server proves its identity inside the mechanism (GSSAPI mutual
    /// authentication, SCRAM's server signature), independently of TLS.
    pub const fn mutual(&self) -> bool {
        self.mutual
    }
    /// Whether the mechanism binds itself to the TLS channel (the `-PLUS` variants), so
    /// that a TLS-terminating attacker cannot relay it.
    pub const fn channel_binding(&self) -> bool {
        self.channel_binding
    }
    /// Whether the peer that runs the exchange learns the password, a password
    /// equivalent, an offline-crackable response or a bearer token (see the module
    /// documentation): such a mechanism needs a peer whose certificate was verified.
    pub const fn exposes_secret_to_peer(&self) -> bool {
        self.exposes_secret
    }
    /// Whether the mechanism can negotiate a security layer (RFC 4422 section 3.7) that
    /// protects the session itself, so that it may run without TLS. Of the mechanisms
    /// here only GSSAPI does (RFC 4752); SCRAM defines none (RFC 5802 section 6 leaves
    /// the session to TLS), and DIGEST-MD5 is not implemented.
    pub const fn security_layer(&self) -> bool {
        self.layer
    }
}

const fn mech(
    name: &'static str,
    strong: bool,
    needs_password: bool,
    needs_token: bool,
    client_first: bool,
    mutual: bool,
    channel_binding: bool,
) -> Properties {
    Properties {
        name,
        strong,
        needs_password,
        needs_token,
        client_first,
        mutual,
        channel_binding,
        exposes_secret: false,
        layer: false,
    }
}

impl Properties {
    /// The same mechanism, marked as exposing a secret to the peer.
    const fn exposing(self) -> Properties {
        Properties {
            exposes_secret: true,
            ..self
        }
    }
    /// The same mechanism, marked as negotiating a security layer.
    const fn layered(self) -> Properties {
        Properties {
            layer: true,
            ..self
        }
    }
}

// Each mechanism's facts, named so that `config::MechName::properties` picks them by
// variant (no lookup by name).
//                                      name                   strong passwd token  first  mutual cb
pub const GSSAPI: Properties = mech("GSSAPI", true, false, false, true, true, false).layered();
pub const SCRAM_SHA_256_PLUS: Properties =
    mech("SCRAM-SHA-256-PLUS", true, true, false, true, true, true);
pub const SCRAM_SHA_1_PLUS: Properties =
    mech("SCRAM-SHA-1-PLUS", true, true, false, true, true, true);
pub const SCRAM_SHA_256: Properties = mech("SCRAM-SHA-256", true, true, false, true, true, false);
pub const SCRAM_SHA_1: Properties = mech("SCRAM-SHA-1", true, true, false, true, true, false);
pub const EXTERNAL: Properties = mech("EXTERNAL", true, false, false, true, false, false);
pub const OAUTHBEARER: Properties =
    mech("OAUTHBEARER", false, false, true, true, false, false).exposing();
pub const XOAUTH2: Properties = mech("XOAUTH2", false, false, true, true, false, false).exposing();
pub const CRAM_MD5: Properties =
    mech("CRAM-MD5", false, true, false, false, false, false).exposing();
pub const PLAIN: Properties = mech("PLAIN", false, true, false, true, false, false).exposing();
pub const LOGIN: Properties = mech("LOGIN", false, true, false, false, false, false).exposing();
/// See [`PROTOCOL_LOGINS`].
pub const IMAP_LOGIN: Properties =
    mech("IMAP-LOGIN", false, true, false, true, false, false).exposing();
/// See [`PROTOCOL_LOGINS`].
pub const USER_PASS: Properties =
    mech("USER-PASS", false, true, false, true, false, false).exposing();
/// See [`PROTOCOL_LOGINS`].
pub const APOP: Properties = mech("APOP", false, true, false, true, false, false).exposing();

/// Every mechanism of this module, strongest first.
pub const ALL: &[Properties] = &[
    GSSAPI,
    SCRAM_SHA_256_PLUS,
    SCRAM_SHA_1_PLUS,
    SCRAM_SHA_256,
    SCRAM_SHA_1,
    EXTERNAL,
    OAUTHBEARER,
    XOAUTH2,
    CRAM_MD5,
    PLAIN,
    LOGIN,
];

/// The protocols' own password logins, which the policy treats like mechanisms (see
/// [`super::protocol_login`]). None is strong:
/// - IMAP `LOGIN` and POP3 `USER`/`PASS` send the password as it is, like PLAIN.
/// - POP3 `APOP` (RFC 1939 section 7) sends MD5(timestamp password): like CRAM-MD5, one
///   observed exchange allows an offline dictionary attack at MD5 speed, the server does
///   not authenticate itself, and it must store the password in clear. So it too is
///   allowed only over verified TLS.
///
/// None of them is in `auth = "auto"`: an account gets them only by listing them.
pub const PROTOCOL_LOGINS: &[Properties] = &[IMAP_LOGIN, USER_PASS, APOP];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::Mechanism;
    use crate::sasl::cram_md5::CramMd5;
    use crate::sasl::external::External;
    use crate::sasl::login::Login;
    use crate::sasl::oauth::{OAuthBearer, XOAuth2};
    use crate::sasl::plain::Plain;
    use crate::sasl::scram::{
        Binding, ChannelBinding, ChannelBindingKind, ClientNonce, Scram, ScramHash,
    };
    use crate::secret::Secret;

    /// The properties of a mechanism name (case-insensitive), protocol logins included.
    fn properties(name: &str) -> Option<&'static Properties> {
        ALL.iter()
            .chain(PROTOCOL_LOGINS)
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The names of the mechanisms, protocol logins included, that have a property.
    fn names_where(property: impl Fn(&Properties) -> bool) -> Vec<&'static str> {
        ALL.iter()
            .chain(PROTOCOL_LOGINS)
            .filter(|p| property(p))
            .map(|p| p.name())
            .collect()
    }

    /// Whether `name` is one of the [`PROTOCOL_LOGINS`].
    fn is_protocol_login(name: &str) -> bool {
        PROTOCOL_LOGINS
            .iter()
            .any(|p| p.name.eq_ignore_ascii_case(name))
    }

    #[test]
    fn strength_follows_the_documented_reasoning() {
        let strong: Vec<_> = ALL
            .iter()
            .filter(|p| p.is_strong())
            .map(|p| p.name())
            .collect();
        assert_eq!(
            strong,
            [
                "GSSAPI",
                "SCRAM-SHA-256-PLUS",
                "SCRAM-SHA-1-PLUS",
                "SCRAM-SHA-256",
                "SCRAM-SHA-1",
                "EXTERNAL"
            ]
        );
        assert!(!properties("cram-md5").unwrap().is_strong());
        for login in ["IMAP-LOGIN", "USER-PASS", "APOP"] {
            let p = properties(login).unwrap();
            assert!(!p.is_strong() && p.needs_password() && is_protocol_login(login));
        }
        assert!(!is_protocol_login("LOGIN"));
        assert!(properties("ANONYMOUS").is_none());
    }

    #[test]
    fn only_gssapi_scram_and_external_may_meet_an_unverified_peer() {
        let exposing = names_where(Properties::exposes_secret_to_peer);
        assert_eq!(
            exposing,
            [
                "OAUTHBEARER",
                "XOAUTH2",
                "CRAM-MD5",
                "PLAIN",
                "LOGIN",
                "IMAP-LOGIN",
                "USER-PASS",
                "APOP"
            ]
        );
    }

    #[test]
    fn only_gssapi_negotiates_a_security_layer() {
        let layered = names_where(Properties::security_layer);
        assert_eq!(layered, ["GSSAPI"]);
    }

    /// The table agrees with the mechanisms themselves: names, and who speaks first.
    #[test]
    fn table_matches_the_implementations() {
        let pw = || Secret::new("pencil".to_string());
        let nonce = || ClientNonce::new("abc").unwrap();
        let cb = ChannelBinding::new(ChannelBindingKind::TlsExporter, vec![0; 32]);
        let mut mechs: Vec<Box<dyn Mechanism>> = vec![
            Box::new(
                Scram::new(
                    ScramHash::Sha256,
                    "u",
                    pw(),
                    None,
                    Binding::Plus(cb.clone()),
                    nonce(),
                )
                .unwrap(),
            ),
            Box::new(
                Scram::new(ScramHash::Sha1, "u", pw(), None, Binding::Plus(cb), nonce()).unwrap(),
            ),
            Box::new(
                Scram::new(
                    ScramHash::Sha256,
                    "u",
                    pw(),
                    None,
                    Binding::Unsupported,
                    nonce(),
                )
                .unwrap(),
            ),
            Box::new(
                Scram::new(
                    ScramHash::Sha1,
                    "u",
                    pw(),
                    None,
                    Binding::Unsupported,
                    nonce(),
                )
                .unwrap(),
            ),
            Box::new(External::new(None)),
            Box::new(OAuthBearer::new(None, None, None, Secret::new("t".into())).unwrap()),
            Box::new(XOAuth2::new("u", Secret::new("t".into())).unwrap()),
            Box::new(CramMd5::new("u", pw()).unwrap()),
            Box::new(Plain::new("u", pw(), None).unwrap()),
            Box::new(Login::new("u", pw()).unwrap()),
        ];
        for m in &mut mechs {
            let p = properties(m.name()).unwrap_or_else(|| panic!("{} not listed", m.name()));
            assert_eq!(p.name(), m.name());
            assert_eq!(
                m.initial_response().unwrap().is_some(),
                p.client_first(),
                "{}",
                p.name()
            );
        }
        assert_eq!(mechs.len() + 1, ALL.len()); // and GSSAPI, tested in gssapi.rs
    }
}
