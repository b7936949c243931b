//! The GSSAPI SASL mechanism (RFC 4752): context establishment, mutual authentication
//! check, and the security-layer negotiation octets.
//!
//! The Kerberos work itself is behind [`GssContext`]; this file holds only the SASL
//! rules, so they can be tested with byte transcripts.

use super::{GssFailure, Mechanism, SaslError};
use crate::secret::Secret;

/// RFC 4752 section 3.3 security-layer bits.
pub const LAYER_NONE: u8 = 0x01;
pub const LAYER_INTEGRITY: u8 = 0x02;
pub const LAYER_CONFIDENTIALITY: u8 = 0x04;

/// What the Kerberos library must provide to the mechanism.
pub trait GssContext: Send {
    /// One `gss_init_sec_context` step: the server's token in, ours out (if any).
    fn step(&mut self, token: Option<&[u8]>) -> Result<Option<Vec<u8>>, GssFailure>;
    /// Whether the context is established.
    fn is_complete(&self) -> bool;
    /// Whether the established context performed mutual authentication.
    fn mutual(&self) -> bool;
    /// `gss_wrap`, with confidentiality when `encrypt`.
    fn wrap(&mut self, encrypt: bool, msg: &[u8]) -> Result<Vec<u8>, GssFailure>;
    /// `gss_unwrap`.
    fn unwrap(&mut self, msg: &[u8]) -> Result<Vec<u8>, GssFailure>;
}

/// Which security layer the account wants from the negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerWanted {
    /// No layer: the session is protected by TLS.
    None,
}

impl LayerWanted {
    fn describe(self) -> &'static str {
        match self {
            LayerWanted::None => "no security layer, since TLS protects the session",
        }
    }
}

enum State {
    Start,
    Establishing,
    ExpectLayerOffer,
    Complete,
}

/// The GSSAPI mechanism over any [`GssContext`].
pub struct Gssapi<C: GssContext> {
    ctx: C,
    state: State,
    layer: LayerWanted,
    authzid: String,
}

impl<C: GssContext> Gssapi<C> {
    /// `authzid` is usually empty: the server then uses the authenticated principal.
    pub fn new(ctx: C, layer: LayerWanted, authzid: String) -> Self {
        Gssapi {
            ctx,
            state: State::Start,
            layer,
            authzid,
        }
    }

    fn after_context_step(&mut self, token: Option<Vec<u8>>) -> Result<Secret<Vec<u8>>, SaslError> {
        if self.ctx.is_complete() {
            if !self.ctx.mutual() {
                return Err(SaslError::MutualAuthMissing);
            }
            self.state = State::ExpectLayerOffer;
        }
        Ok(Secret::new(token.unwrap_or_default()))
    }

    fn answer_layer_offer(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        let offer = Secret::new(self.ctx.unwrap(challenge).map_err(SaslError::Gss)?);
        let offer = offer.expose();
        if offer.len() != 4 {
            return Err(SaslError::MalformedLayerOffer { len: offer.len() });
        }
        let (chosen, max_buf): (u8, u32) = match self.layer {
            LayerWanted::None if offer[0] & LAYER_NONE != 0 => (LAYER_NONE, 0),
            wanted => {
                return Err(SaslError::NoAcceptableLayer {
                    offered: offer[0],
                    wanted: wanted.describe(),
                });
            }
        };
        let mut reply = Vec::with_capacity(4 + self.authzid.len());
        reply.push(chosen);
        reply.extend_from_slice(&max_buf.to_be_bytes()[1..]);
        reply.extend_from_slice(self.authzid.as_bytes());
        let wrapped = self.ctx.wrap(false, &reply).map_err(SaslError::Gss)?;
        self.state = State::Complete;
        Ok(Secret::new(wrapped))
    }
}

impl<C: GssContext> Mechanism for Gssapi<C> {
    fn name(&self) -> &'static str {
        "GSSAPI"
    }

    fn initial_response(&mut self) -> Result<Option<Secret<Vec<u8>>>, SaslError> {
        let token = self.ctx.step(None).map_err(SaslError::Gss)?;
        self.state = State::Establishing;
        self.after_context_step(token).map(Some)
    }

    fn step(&mut self, challenge: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
        match self.state {
            State::Start => Err(SaslError::UnexpectedChallenge {
                mechanism: "GSSAPI",
            }),
            State::Establishing => {
                let token = self.ctx.step(Some(challenge)).map_err(SaslError::Gss)?;
                self.after_context_step(token)
            }
            State::ExpectLayerOffer => self.answer_layer_offer(challenge),
            State::Complete => Err(SaslError::ChallengeAfterCompletion {
                mechanism: "GSSAPI",
            }),
        }
    }

    fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }
}
