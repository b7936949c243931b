//! LOGIN (draft-murchison-sasl-login, de facto): the server prompts for the username,
//! then for the password, and the client answers each prompt.
//!
//! The prompt texts are not interpreted: servers send `Username:`, `User Name`,
//! `Password:`... The answers follow the order of the challenges. Like PLAIN, LOGIN sends
//! the password as is, so the policy allows it only over verified TLS.

use super::{Mechanism, SaslError, require_nonempty};
use crate::secret::Secret;

const NAME: &str = "LOGIN";

enum State {
    /// Waiting for the first prompt (the username).
    ExpectUsernamePrompt,
    /// Username sent; waiting for the second prompt (the password).
    ExpectPasswordPrompt,
    /// Password sent.
    Complete,
}

/// The LOGIN mechanism.
pub struct Login {
    username: String,
    password: Secret<String>,
    state: State,
}

impl Login {
    pub fn new(username: &str, password: Secret<String>) -> Result<Self, SaslError> {
        require_nonempty(NAME, "username", username)?;
        Ok(Login {
            username: username.to_string(),
            password,
            state: State::ExpectUsernamePrompt,
        })
    }
}

impl Mechanism for Login {
    fn name(&self) -> &'static str {
        NAME
    }

    /// LOGIN has no initial response: the username waits for the server's first prompt.
    fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        Ok(None)
    }

    fn step(&mut self, _prompt: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        match self.state {
            State::ExpectUsernamePrompt => {
                self.state = State::ExpectPasswordPrompt;
                Ok(Secret::new(self.username.as_bytes().to_vec()))
            }
            State::ExpectPasswordPrompt => {
                self.state = State::Complete;
                Ok(Secret::new(self.password.expose().as_bytes().to_vec()))
            }
            State::Complete => Err(SaslError::ChallengeAfterCompletion { mechanism: NAME }),
        }
    }

    fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_answers_username_then_password_exact_bytes() {
        let mut m = Login::new("tim", Secret::new("tanstaaftanstaaf".into())).unwrap();
        assert!(m.initial_response().unwrap().is_none());
        assert_eq!(m.step(b"Username:").unwrap().expose(), b"tim");
        assert!(!m.is_complete());
        assert_eq!(m.step(b"Password:").unwrap().expose(), b"tanstaaftanstaaf");
        assert!(m.is_complete());
    }

    #[test]
    fn third_prompt_refused() {
        let mut m = Login::new("tim", Secret::new("x".into())).unwrap();
        m.step(b"User Name\0").unwrap();
        m.step(b"Password\0").unwrap();
        assert_eq!(
            m.step(b"Password:").unwrap_err(),
            SaslError::ChallengeAfterCompletion { mechanism: "LOGIN" }
        );
    }

    #[test]
    fn empty_username_refused() {
        assert!(Login::new("", Secret::new("x".into())).is_err());
    }
}
