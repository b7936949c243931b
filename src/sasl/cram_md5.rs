//! CRAM-MD5 (RFC 2195): the answer to the server's challenge is the username and the hex
//! HMAC-MD5 of the challenge keyed with the password.
//!
//! The password itself never crosses the wire, yet [`super::properties`] does not count
//! CRAM-MD5 as strong; the reasons are written there.

use hmac::{Hmac, Mac};
use md5::Md5;

use super::{Mechanism, SaslError, require_nonempty};
use crate::secret::Secret;

const NAME: &str = "CRAM-MD5";

enum State {
    /// Waiting for the server's challenge.
    ExpectChallenge,
    /// The digest was sent.
    Complete,
}

/// The CRAM-MD5 mechanism.
pub struct CramMd5 {
    username: String,
    password: Secret<String>,
    state: State,
}

impl CramMd5 {
    pub fn new(username: &str, password: Secret<String>) -> Result<Self, SaslError> {
        require_nonempty(NAME, "username", username)?;
        Ok(CramMd5 {
            username: username.to_string(),
            password,
            state: State::ExpectChallenge,
        })
    }
}

impl Mechanism for CramMd5 {
    fn name(&self) -> &'static str {
        NAME
    }

    /// CRAM-MD5 has no initial response: it answers the server's challenge.
    fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        Ok(None)
    }

    fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        if let State::Complete = self.state {
            return Err(SaslError::ChallengeAfterCompletion { mechanism: NAME });
        }
        if challenge.is_empty() {
            return Err(SaslError::MalformedServerMessage {
                mechanism: NAME,
                reason: "the challenge is empty",
            });
        }
        let mut mac = <Hmac<Md5> as Mac>::new_from_slice(self.password.expose().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(challenge);
        let digest = Secret::new(mac.finalize().into_bytes().to_vec());
        let mut response = Vec::with_capacity(self.username.len() + 33);
        response.extend_from_slice(self.username.as_bytes());
        response.push(b' ');
        for b in digest.expose() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            response.push(HEX[usize::from(b >> 4)]);
            response.push(HEX[usize::from(b & 0x0f)]);
        }
        self.state = State::Complete;
        Ok(Secret::new(response))
    }

    fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2195_cram_md5_test_vector() {
        let mut m = CramMd5::new("tim", Secret::new("tanstaaftanstaaf".into())).unwrap();
        assert!(m.initial_response().unwrap().is_none());
        assert!(!m.is_complete());
        let r = m
            .step(b"<1896.697170952@postoffice.reston.mci.net>")
            .unwrap();
        assert_eq!(r.expose(), b"tim b913a602c7eda7a495b4e6e7334d3890");
        assert!(m.is_complete());
    }

    #[test]
    fn empty_challenge_and_second_challenge_refused() {
        let mut m = CramMd5::new("tim", Secret::new("x".into())).unwrap();
        assert!(matches!(
            m.step(b""),
            Err(SaslError::MalformedServerMessage { .. })
        ));
        m.step(b"<1.2@host>").unwrap();
        assert!(matches!(
            m.step(b"<1.2@host>"),
            Err(SaslError::ChallengeAfterCompletion { .. })
        ));
    }
}
