//! OAuth 2.0 bearer-token mechanisms: OAUTHBEARER (RFC 7628) and Google's XOAUTH2.
//!
//! Both send the token in the client-first response, and a server that refuses it
//! answers with a JSON error challenge. The client must then send a dummy response
//! (`\x01` for OAUTHBEARER, empty for XOAUTH2) and the server ends the exchange with a
//! failure; the mechanism keeps the JSON `status` for [`Mechanism::server_failure`].
//!
//! Obtaining or refreshing tokens is not done here: the token is an input.

use super::gs2::{self, CbFlag};
use super::{Mechanism, SaslError, printable, require_nonempty};
use crate::secret::{Piece, Secret, assemble};

/// Checks RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )
/// *"="`. Anything else could break the framing (`\x01`) or is not a bearer token.
fn check_token(mechanism: &'static str, token: &str) -> Result<(), SaslError> {
    let body = token.trim_end_matches('=');
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SaslError::UnusableCredential {
            mechanism,
            what: "OAuth token",
            reason: "it is empty or has characters outside RFC 6750's b64token",
        })
    }
}

fn check_no_control(
    mechanism: &'static str,
    what: &'static str,
    value: &str,
) -> Result<(), SaslError> {
    if value.chars().any(|c| c.is_control()) {
        return Err(SaslError::UnusableCredential {
            mechanism,
            what,
            reason: "it contains a control character",
        });
    }
    Ok(())
}

/// The `status` of a server's JSON error challenge (a string, or a number in some
/// XOAUTH2 servers), and its `scope` when it names one.
fn error_status(
    mechanism: &'static str,
    challenge: &[u8],
) -> Result<(String, Option<String>), SaslError> {
    let malformed = |reason| SaslError::MalformedServerMessage { mechanism, reason };
    let json: serde_json::Value =
        serde_json::from_slice(challenge).map_err(|_| malformed("error challenge is not JSON"))?;
    let scope = json
        .get("scope")
        .and_then(serde_json::Value::as_str)
        .map(printable);
    match json.get("status") {
        Some(serde_json::Value::String(s)) => Ok((printable(s), scope)),
        Some(serde_json::Value::Number(n)) => Ok((printable(&n.to_string()), scope)),
        _ => Err(malformed("error challenge has no status")),
    }
}

enum State {
    /// The client-first response has not been asked for yet.
    Start,
    /// The token was sent; the server's verdict is all that may follow.
    Sent,
    /// The server refused the token and the dummy response was given.
    Refused {
        status: String,
        scope: Option<String>,
    },
}

fn step_common(
    mechanism: &'static str,
    state: &mut State,
    challenge: &[u8],
    dummy: &[u8],
) -> Result<Secret<Vec<u8>>, SaslError> {
    match state {
        State::Start => Err(SaslError::UnexpectedChallenge { mechanism }),
        State::Sent => {
            let (status, scope) = error_status(mechanism, challenge)?;
            *state = State::Refused { status, scope };
            Ok(Secret::new(dummy.to_vec()))
        }
        State::Refused { .. } => Err(SaslError::UnexpectedChallenge { mechanism }),
    }
}

fn failure_of(mechanism: &'static str, state: &State) -> Option<SaslError> {
    match state {
        State::Refused { status, scope } => Some(SaslError::TokenRefused {
            mechanism,
            status: status.clone(),
            scope: scope.clone(),
        }),
        _ => None,
    }
}

const OAUTHBEARER: &str = "OAUTHBEARER";

/// OAUTHBEARER (RFC 7628).
pub struct OAuthBearer {
    authzid: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    token: Secret<String>,
    state: State,
}

impl OAuthBearer {
    /// `user` goes into the GS2 header as `a=` (servers use it to pick the mailbox; RFC
    /// 7628 makes it optional). `host` and `port` are the server's as configured (RFC 7628
    /// says SHOULD send them; some servers check them).
    pub fn new(
        user: Option<&str>,
        host: Option<&str>,
        port: Option<u16>,
        token: Secret<String>,
    ) -> Result<Self, SaslError> {
        check_token(OAUTHBEARER, token.expose())?;
        if let Some(u) = user {
            check_no_control(OAUTHBEARER, "username", u)?;
        }
        if let Some(h) = host {
            check_no_control(OAUTHBEARER, "host", h)?;
        }
        Ok(OAuthBearer {
            authzid: user.map(str::to_string),
            host: host.map(str::to_string),
            port,
            token,
            state: State::Start,
        })
    }
}

impl Mechanism for OAuthBearer {
    fn name(&self) -> &'static str {
        OAUTHBEARER
    }

    fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        // The parts without the token first; then one buffer of the final size.
        let mut head = gs2::header(CbFlag::No, self.authzid.as_deref());
        head.push('\x01');
        if let Some(host) = &self.host {
            head.push_str(&format!("host={host}\x01"));
        }
        if let Some(port) = self.port {
            head.push_str(&format!("port={port}\x01"));
        }
        head.push_str("auth=Bearer ");
        let msg = assemble(&[
            Piece::Raw(head.as_bytes()),
            Piece::Raw(self.token.expose().as_bytes()),
            Piece::Raw(b"\x01\x01"),
        ]);
        self.state = State::Sent;
        Ok(Some(msg))
    }

    /// The only challenge after the token is the JSON error (RFC 7628 section 3.2.2):
    /// answered with `\x01`, after which the server reports failure.
    fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        step_common(OAUTHBEARER, &mut self.state, challenge, b"\x01")
    }

    fn is_complete(&self) -> bool {
        matches!(self.state, State::Sent)
    }

    fn server_failure(&self) -> Option<SaslError> {
        failure_of(OAUTHBEARER, &self.state)
    }
}

const XOAUTH2: &str = "XOAUTH2";

/// XOAUTH2 (Google's and Microsoft's pre-RFC 7628 format).
pub struct XOAuth2 {
    user: String,
    token: Secret<String>,
    state: State,
}

impl XOAuth2 {
    pub fn new(user: &str, token: Secret<String>) -> Result<Self, SaslError> {
        check_token(XOAUTH2, token.expose())?;
        check_no_control(XOAUTH2, "username", user)?;
        require_nonempty(XOAUTH2, "username", user)?;
        Ok(XOAuth2 {
            user: user.to_string(),
            token,
            state: State::Start,
        })
    }
}

impl Mechanism for XOAuth2 {
    fn name(&self) -> &'static str {
        XOAUTH2
    }

    fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        let head = format!("user={}\x01auth=Bearer ", self.user);
        let msg = assemble(&[
            Piece::Raw(head.as_bytes()),
            Piece::Raw(self.token.expose().as_bytes()),
            Piece::Raw(b"\x01\x01"),
        ]);
        self.state = State::Sent;
        Ok(Some(msg))
    }

    /// The only challenge after the token is the JSON error: answered with an empty
    /// response, after which the server reports failure.
    fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        step_common(XOAUTH2, &mut self.state, challenge, b"")
    }

    fn is_complete(&self) -> bool {
        matches!(self.state, State::Sent)
    }

    fn server_failure(&self) -> Option<SaslError> {
        failure_of(XOAUTH2, &self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC7628_TOKEN: &str = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";

    #[test]
    fn rfc7628_4_1_oauthbearer_exact_bytes() {
        let mut m = OAuthBearer::new(
            Some("user@example.com"),
            Some("server.example.com"),
            Some(143),
            Secret::new(RFC7628_TOKEN.into()),
        )
        .unwrap();
        assert_eq!(
            m.initial_response().unwrap().unwrap().expose(),
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        assert!(m.is_complete());
        assert_eq!(m.server_failure(), None);
    }

    #[test]
    fn token_buffers_are_allocated_at_their_final_size() {
        // A buffer that grew was reallocated, leaving the token in freed memory.
        let token = || Secret::new(RFC7628_TOKEN.to_string());
        let mut mechs: Vec<Box<dyn Mechanism>> = vec![
            Box::new(
                OAuthBearer::new(Some("u@example.com"), Some("h.example"), Some(993), token())
                    .unwrap(),
            ),
            Box::new(XOAuth2::new("u@example.com", token()).unwrap()),
        ];
        for m in &mut mechs {
            let ir = m.initial_response().unwrap().unwrap();
            assert_eq!(ir.expose().capacity(), ir.expose().len(), "{}", m.name());
        }
    }

    #[test]
    fn oauthbearer_without_optional_fields() {
        let mut m = OAuthBearer::new(None, None, None, Secret::new("abc".into())).unwrap();
        assert_eq!(
            m.initial_response().unwrap().unwrap().expose(),
            b"n,,\x01auth=Bearer abc\x01\x01"
        );
    }

    #[test]
    fn rfc7628_4_3_error_challenge_answered_with_0x01_then_fails_with_status() {
        let mut m = OAuthBearer::new(
            Some("user@example.com"),
            Some("server.example.com"),
            Some(143),
            Secret::new(RFC7628_TOKEN.into()),
        )
        .unwrap();
        m.initial_response().unwrap();
        let challenge = br#"{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://example.com/.well-known/openid-configuration"}"#;
        assert_eq!(m.step(challenge).unwrap().expose(), b"\x01");
        assert!(!m.is_complete());
        assert_eq!(
            m.server_failure(),
            Some(SaslError::TokenRefused {
                mechanism: "OAUTHBEARER",
                status: "invalid_token".into(),
                scope: Some("example_scope".into()),
            })
        );
        assert!(m.step(challenge).is_err());
    }

    #[test]
    fn oauth_malformed_error_challenges_refused() {
        for challenge in [&b"not json"[..], br#"{"scope":"x"}"#, b""] {
            let mut m = OAuthBearer::new(None, None, None, Secret::new("abc".into())).unwrap();
            m.initial_response().unwrap();
            assert!(matches!(
                m.step(challenge),
                Err(SaslError::MalformedServerMessage { .. })
            ));
        }
    }

    #[test]
    fn xoauth2_google_exact_bytes() {
        // The example of Google's XOAUTH2 documentation.
        let mut m = XOAuth2::new(
            "someuser@example.com",
            Secret::new("ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg".into()),
        )
        .unwrap();
        let r = m.initial_response().unwrap().unwrap();
        assert_eq!(
            r.expose(),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg\x01\x01"
        );
        use base64::Engine;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(r.expose()),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
        assert!(m.is_complete());
    }

    #[test]
    fn xoauth2_error_challenge_answered_empty_then_fails_with_status() {
        let mut m = XOAuth2::new("u@example.com", Secret::new("tok".into())).unwrap();
        m.initial_response().unwrap();
        let r = m
            .step(br#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#)
            .unwrap();
        assert_eq!(r.expose(), b"");
        assert!(!m.is_complete());
        assert_eq!(
            m.server_failure().unwrap().to_string(),
            "the server refused the XOAUTH2 token (status 400, scope `https://mail.google.com/`)"
        );
        let mut m = XOAuth2::new("u@example.com", Secret::new("tok".into())).unwrap();
        m.initial_response().unwrap();
        m.step(br#"{"status":401}"#).unwrap();
        assert!(
            matches!(m.server_failure(), Some(SaslError::TokenRefused { status, .. }) if status == "401")
        );
    }

    #[test]
    fn tokens_and_names_that_would_break_framing_refused() {
        for bad in ["", "a\x01b", "a b", "===", "tok=en"] {
            let err = XOAuth2::new("u", Secret::new(bad.into())).err().unwrap();
            assert!(
                matches!(
                    err,
                    SaslError::UnusableCredential {
                        what: "OAuth token",
                        ..
                    }
                ),
                "{bad:?}"
            );
            assert!(OAuthBearer::new(None, None, None, Secret::new(bad.into())).is_err());
        }
        assert!(XOAuth2::new("u\x01", Secret::new("t".into())).is_err());
        assert!(XOAuth2::new("", Secret::new("t".into())).is_err());
        assert!(OAuthBearer::new(Some("u\x01"), None, None, Secret::new("t".into())).is_err());
        assert!(OAuthBearer::new(None, Some("h\x01"), None, Secret::new("t".into())).is_err());
        assert!(OAuthBearer::new(None, None, None, Secret::new("t==".into())).is_ok());
    }
}
