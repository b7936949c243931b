//! EXTERNAL (RFC 4422 appendix A): authentication established outside SASL, for mail
//! servers a TLS client certificate. The initial response is the authorization identity,
//! or empty to let the server derive it from the certificate.
//!
//! This file does not check that a client certificate was presented: the transport owns
//! TLS, and the server refuses EXTERNAL without one.

use super::{InitialOnly, Mechanism, SaslError};
use crate::secret::Secret;

const NAME: &str = "EXTERNAL";

/// The EXTERNAL mechanism.
pub struct External {
    authzid: Option<String>,
    state: InitialOnly,
}

impl External {
    /// `authzid` is usually `None`: the identity then comes from the client certificate.
    pub fn new(authzid: Option<&str>) -> Self {
        External {
            authzid: authzid.map(str::to_string),
            state: InitialOnly::default(),
        }
    }
}

impl Mechanism for External {
    fn name(&self) -> &'static str {
        NAME
    }

    fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        self.state = InitialOnly::ExpectVerdict;
        let authzid = self.authzid.as_deref().unwrap_or_default();
        Ok(Some(Secret::new(authzid.as_bytes().to_vec())))
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

    #[test]
    fn rfc4422_external_empty_initial_response() {
        let mut m = External::new(None);
        assert_eq!(m.initial_response().unwrap().unwrap().expose(), b"");
        assert!(m.is_complete());
    }

    #[test]
    fn rfc4422_external_authzid_initial_response() {
        let mut m = External::new(Some("fred@example.com"));
        assert_eq!(
            m.initial_response().unwrap().unwrap().expose(),
            b"fred@example.com"
        );
        assert!(matches!(
            m.step(b""),
            Err(SaslError::ChallengeAfterCompletion { .. })
        ));
    }
}
