//! Not SASL: the protocols' own password logins (IMAP `LOGIN`, POP3 `USER`/`PASS` and
//! `APOP`) behind the [`Mechanism`] trait, so that the session chooses, starts and
//! reports them like the SASL mechanisms.
//!
//! The "mechanism" only carries the password to the dialect, which builds the command
//! ([`crate::protocol::Dialect::password_login`]): its initial response is the password,
//! it takes no challenge, and it is complete once the password was handed over (the
//! server's tagged OK or `+OK` is the whole outcome; the server proves nothing).

use super::{Mechanism, SaslError, require_nonempty};
use crate::secret::Secret;

/// A protocol-level password login. See the [module documentation](self).
pub struct ProtocolLogin {
    name: &'static str,
    password: Option<Secret<String>>,
}

impl ProtocolLogin {
    /// `name` is the policy's name (`IMAP-LOGIN`, `USER-PASS`, `APOP`).
    pub fn new(name: &'static str, password: Secret<String>) -> Result<Self, SaslError> {
        require_nonempty(name, "password", password.expose())?;
        if password
            .expose()
            .bytes()
            .any(|b| matches!(b, b'\r' | b'\n' | 0))
        {
            return Err(SaslError::UnusableCredential {
                mechanism: name,
                what: "password",
                reason: "it holds a CR, LF or NUL byte",
            });
        }
        Ok(ProtocolLogin {
            name,
            password: Some(password),
        })
    }
}

impl Mechanism for ProtocolLogin {
    fn name(&self) -> &'static str {
        self.name
    }

    /// The password, for the dialect's login command; given out once.
    fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        Ok(self
            .password
            .take()
            .map(|p| Secret::new(p.expose().as_bytes().to_vec())))
    }

    fn step(&mut self, _challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        Err(SaslError::UnexpectedChallenge {
            mechanism: self.name,
        })
    }

    fn is_complete(&self) -> bool {
        self.password.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_the_password_over_once_and_takes_no_challenge() {
        let mut m = ProtocolLogin::new("IMAP-LOGIN", Secret::new("pw".into())).unwrap();
        assert!(!m.is_complete());
        assert_eq!(m.initial_response().unwrap().unwrap().expose(), b"pw");
        assert!(m.is_complete());
        assert!(m.initial_response().unwrap().is_none());
        assert!(m.step(b"x").is_err());
        assert!(ProtocolLogin::new("APOP", Secret::new("a\r\nb".into())).is_err());
        assert!(ProtocolLogin::new("APOP", Secret::new(String::new())).is_err());
    }
}
