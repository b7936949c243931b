//! PLAIN (RFC 4616): `authzid NUL authcid NUL passwd` in the client-first response.
//!
//! The password crosses the wire as is: the policy allows PLAIN only over verified TLS.
//! No SASLprep here: RFC 4616 leaves preparation to the server, which compares.

use super::{InitialOnly, Mechanism, SaslError, require_nonempty};
use crate::secret::Secret;

const NAME: &str = "PLAIN";

/// The PLAIN mechanism.
pub struct Plain {
    authzid: Option<String>,
    authcid: String,
    password: Secret<String>,
    state: InitialOnly,
}

impl Plain {
    /// `authzid` is usually `None`: the server then authorizes as `authcid`.
    pub fn new(
        authcid: &str,
        password: Secret<String>,
        authzid: Option<&str>,
    ) -> Result<Self, SaslError> {
        let unusable = |what, reason| SaslError::UnusableCredential {
            mechanism: NAME,
            what,
            reason,
        };
        require_nonempty(NAME, "username", authcid)?;
        require_nonempty(NAME, "password", password.expose())?;
        if authcid.contains('\0') {
            return Err(unusable("username", "it contains a NUL character"));
        }
        if password.expose().contains('\0') {
            return Err(unusable("password", "it contains a NUL character"));
        }
        if authzid.is_some_and(|a| a.contains('\0')) {
            return Err(unusable(
                "authorization identity",
                "it contains a NUL character",
            ));
        }
        Ok(Plain {
            authzid: authzid.map(str::to_string),
            authcid: authcid.to_string(),
            password,
            state: InitialOnly::default(),
        })
    }
}

impl Mechanism for Plain {
    fn name(&self) -> &'static str {
        NAME
    }

    fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        let authzid = self.authzid.as_deref().unwrap_or_default();
        let password = self.password.expose();
        let mut msg = Vec::with_capacity(authzid.len() + self.authcid.len() + password.len() + 2);
        msg.extend_from_slice(authzid.as_bytes());
        msg.push(0);
        msg.extend_from_slice(self.authcid.as_bytes());
        msg.push(0);
        msg.extend_from_slice(password.as_bytes());
        self.state = InitialOnly::ExpectVerdict;
        Ok(Some(Secret::new(msg)))
    }

    fn step(&mut self, _challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        Err(self.state.challenge_error(NAME))
    }

    fn is_complete(&self) -> bool {
        self.state == InitialOnly::ExpectVerdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(m: &mut Plain) -> Vec<u8> {
        m.initial_response().unwrap().unwrap().expose().clone()
    }

    #[test]
    fn rfc4616_exact_bytes_without_authzid() {
        let mut m = Plain::new("tim", Secret::new("tanstaaftanstaaf".into()), None).unwrap();
        assert!(!m.is_complete());
        assert_eq!(response(&mut m), b"\0tim\0tanstaaftanstaaf");
        assert!(m.is_complete());
    }

    #[test]
    fn rfc4616_exact_bytes_with_authzid() {
        let mut m = Plain::new("Kurt", Secret::new("xipj3plmq".into()), Some("Ursel")).unwrap();
        assert_eq!(response(&mut m), b"Ursel\0Kurt\0xipj3plmq");
    }

    #[test]
    fn nul_or_empty_credentials_refused_without_showing_them() {
        let err = Plain::new("tim", Secret::new("hunter2\0x".into()), None)
            .err()
            .unwrap();
        assert!(matches!(
            err,
            SaslError::UnusableCredential {
                what: "password",
                ..
            }
        ));
        assert!(!err.to_string().contains("hunter2"));
        assert!(Plain::new("t\0m", Secret::new("x".into()), None).is_err());
        assert!(Plain::new("tim", Secret::new("x".into()), Some("a\0")).is_err());
        assert!(Plain::new("", Secret::new("x".into()), None).is_err());
        assert!(Plain::new("tim", Secret::new(String::new()), None).is_err());
    }

    #[test]
    fn challenge_after_the_response_refused() {
        let mut m = Plain::new("tim", Secret::new("x".into()), None).unwrap();
        assert!(matches!(
            m.step(b""),
            Err(SaslError::UnexpectedChallenge { .. })
        ));
        m.initial_response().unwrap();
        assert!(matches!(
            m.step(b"more?"),
            Err(SaslError::ChallengeAfterCompletion { .. })
        ));
    }
}
