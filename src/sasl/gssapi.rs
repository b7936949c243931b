//! The GSSAPI SASL mechanism (RFC 4752): context establishment, mutual authentication
//! check, and the security-layer negotiation octets.
//!
//! The Kerberos work itself is behind [`GssContext`]; this file holds only the SASL
//! rules, so they can be tested with byte transcripts.

use super::{GssFailure, Layer, Mechanism, SaslError};
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
    /// `gss_unwrap`: the message, and its `conf_state` (whether the token was
    /// encrypted, not just integrity-protected).
    fn unwrap(&mut self, msg: &[u8]) -> Result<(Vec<u8>, bool), GssFailure>;
}

/// Which security layer the account wants from the negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerWanted {
    /// No layer: the session is protected by TLS.
    None,
    /// Every relayed byte integrity-protected (`gss_wrap` without encryption).
    Integrity,
    /// Every relayed byte encrypted and integrity-protected.
    Confidentiality,
}

impl LayerWanted {
    fn describe(self) -> &'static str {
        match self {
            LayerWanted::None => "no security layer, since TLS protects the session",
            LayerWanted::Integrity => "an integrity layer",
            LayerWanted::Confidentiality => "a confidentiality layer",
        }
    }

    fn bit(self) -> u8 {
        match self {
            LayerWanted::None => LAYER_NONE,
            LayerWanted::Integrity => LAYER_INTEGRITY,
            LayerWanted::Confidentiality => LAYER_CONFIDENTIALITY,
        }
    }
}

/// The largest wrapped token this client accepts from the server (announced in the
/// negotiation): it bounds the relay's memory.
pub const MAX_RECEIVE: u32 = 256 * 1024;

/// The smallest wrapped-token size a server may announce with a layer: below it a
/// Kerberos wrap token cannot carry a byte of data.
pub const MIN_SEND: u32 = 64;

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
    negotiated: Option<Layer>,
}

impl<C: GssContext> Gssapi<C> {
    /// `authzid` is usually empty: the server then uses the authenticated principal.
    pub fn new(ctx: C, layer: LayerWanted, authzid: String) -> Self {
        Gssapi {
            ctx,
            state: State::Start,
            layer,
            authzid,
            negotiated: None,
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
        // RFC 4752 section 3.1: the offer is wrapped without confidentiality.
        let (offer, _) = self.ctx.unwrap(challenge).map_err(SaslError::Gss)?;
        let offer = Secret::new(offer);
        let offer = offer.expose();
        if offer.len() != 4 {
            return Err(SaslError::MalformedLayerOffer { len: offer.len() });
        }
        let wanted = self.layer;
        if offer[0] & wanted.bit() == 0 {
            return Err(SaslError::NoAcceptableLayer {
                offered: offer[0],
                wanted: wanted.describe(),
            });
        }
        let server_max = u32::from_be_bytes([0, offer[1], offer[2], offer[3]]);
        // RFC 4752 section 3.1: with no layer the size must be 0.
        let (chosen, max_buf) = match wanted {
            LayerWanted::None => (LAYER_NONE, 0),
            _ => {
                if server_max < MIN_SEND {
                    return Err(SaslError::LayerBufferTooSmall { size: server_max });
                }
                self.negotiated = Some(Layer {
                    confidentiality: wanted == LayerWanted::Confidentiality,
                    max_send: server_max,
                    max_receive: MAX_RECEIVE,
                });
                (wanted.bit(), MAX_RECEIVE)
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

    fn layer(&self) -> Option<Layer> {
        self.negotiated.filter(|_| self.is_complete())
    }

    fn wrap(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslError> {
        let conf = self.negotiated.is_some_and(|l| l.confidentiality);
        self.ctx.wrap(conf, data).map_err(SaslError::Gss)
    }

    /// On a confidentiality layer every token must have been encrypted: an
    /// integrity-only one (valid, but readable by anyone on the path) is refused.
    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, SaslError> {
        let (data, sealed) = self.ctx.unwrap(token).map_err(SaslError::Gss)?;
        if self.negotiated.is_some_and(|l| l.confidentiality) && !sealed {
            return Err(SaslError::UnsealedLayerToken);
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    //! The RFC 4752 steps with a scripted context: what goes out for what comes in.
    use super::*;
    use crate::sasl::GssFailureKind;

    /// A context that returns scripted tokens and "wraps" by prefixing `S:` (sealed) or
    /// `W:` (integrity only).
    struct Scripted {
        tokens: Vec<Option<Vec<u8>>>,
        complete_after: usize,
        steps: usize,
        mutual: bool,
        seen: Vec<Option<Vec<u8>>>,
    }

    impl GssContext for Scripted {
        fn step(&mut self, token: Option<&[u8]>) -> Result<Option<Vec<u8>>, GssFailure> {
            self.seen.push(token.map(<[u8]>::to_vec));
            let out = self.tokens.get(self.steps).cloned().flatten();
            self.steps += 1;
            Ok(out)
        }
        fn is_complete(&self) -> bool {
            self.steps >= self.complete_after
        }
        fn mutual(&self) -> bool {
            self.mutual
        }
        fn wrap(&mut self, encrypt: bool, msg: &[u8]) -> Result<Vec<u8>, GssFailure> {
            let prefix: &[u8] = if encrypt { b"S:" } else { b"W:" };
            Ok([prefix, msg].concat())
        }
        fn unwrap(&mut self, msg: &[u8]) -> Result<(Vec<u8>, bool), GssFailure> {
            if let Some(m) = msg.strip_prefix(b"S:") {
                return Ok((m.to_vec(), true));
            }
            msg.strip_prefix(b"W:")
                .map(|m| (m.to_vec(), false))
                .ok_or(GssFailure {
                    kind: GssFailureKind::Other,
                    message: "bad token".into(),
                })
        }
    }

    fn mech(mutual: bool) -> Gssapi<Scripted> {
        let ctx = Scripted {
            tokens: vec![Some(b"AP-REQ".to_vec()), None],
            complete_after: 2,
            steps: 0,
            mutual,
            seen: Vec::new(),
        };
        Gssapi::new(ctx, LayerWanted::None, String::new())
    }

    #[test]
    fn rfc4752_exchange_with_no_security_layer() {
        let mut m = mech(true);
        assert_eq!(m.initial_response().unwrap().unwrap().expose(), b"AP-REQ");
        // The AP-REP completes the context; the client answers with an empty response.
        assert_eq!(m.step(b"AP-REP").unwrap().expose(), b"");
        assert_eq!(m.ctx.seen[1].as_deref(), Some(b"AP-REP".as_slice()));
        assert!(!m.is_complete());
        // Server offers layers 0x07 with max 0x00ffff; we choose 1 with max size 0.
        let reply = m.step(b"W:\x07\x00\xff\xff").unwrap();
        assert_eq!(reply.expose(), b"W:\x01\x00\x00\x00");
        assert!(m.is_complete());
        assert_eq!(
            m.step(b"more"),
            Err(SaslError::ChallengeAfterCompletion {
                mechanism: "GSSAPI"
            })
        );
    }

    #[test]
    fn authzid_follows_the_layer_octets() {
        let mut m = mech(true);
        m.authzid = "alice".into();
        m.initial_response().unwrap();
        m.step(b"AP-REP").unwrap();
        assert_eq!(
            m.step(b"W:\x01\x00\x00\x00").unwrap().expose(),
            b"W:\x01\x00\x00\x00alice"
        );
    }

    #[test]
    fn rfc4752_mutual_authentication_is_required() {
        let mut m = mech(false);
        m.initial_response().unwrap();
        assert_eq!(m.step(b"AP-REP"), Err(SaslError::MutualAuthMissing));
    }

    #[test]
    fn a_layer_offer_of_the_wrong_length_is_refused() {
        let mut m = mech(true);
        m.initial_response().unwrap();
        m.step(b"AP-REP").unwrap();
        assert_eq!(
            m.step(b"W:\x01\x00\x00"),
            Err(SaslError::MalformedLayerOffer { len: 3 })
        );
    }

    #[test]
    fn a_layer_offer_with_a_tiny_buffer_is_refused_as_such() {
        // The offer has its 4 octets: the message must not call it malformed by length.
        let mut m = mech(true);
        m.layer = LayerWanted::Confidentiality;
        m.initial_response().unwrap();
        m.step(b"AP-REP").unwrap();
        let e = m.step(b"W:\x07\x00\x00\x10").unwrap_err();
        assert_eq!(e, SaslError::LayerBufferTooSmall { size: 16 });
        assert!(e.to_string().contains("16-byte"), "{e}");
        assert!(!m.is_complete() && m.layer().is_none());
    }

    /// A mechanism that negotiated `wanted` with a server offering every layer.
    fn layered(wanted: LayerWanted) -> Gssapi<Scripted> {
        let mut m = mech(true);
        m.layer = wanted;
        m.initial_response().unwrap();
        m.step(b"AP-REP").unwrap();
        m.step(b"W:\x07\x00\x10\x00").unwrap();
        assert!(m.layer().is_some());
        m
    }

    #[test]
    fn on_a_confidentiality_layer_an_integrity_only_token_is_refused() {
        let mut m = layered(LayerWanted::Confidentiality);
        assert_eq!(m.wrap(b"a1 NOOP\r\n").unwrap(), b"S:a1 NOOP\r\n");
        assert_eq!(m.unwrap(b"S:* OK\r\n").unwrap(), b"* OK\r\n");
        assert_eq!(m.unwrap(b"W:* OK\r\n"), Err(SaslError::UnsealedLayerToken));
    }

    #[test]
    fn on_an_integrity_layer_both_kinds_of_token_are_read() {
        let mut m = layered(LayerWanted::Integrity);
        assert_eq!(m.wrap(b"x").unwrap(), b"W:x");
        assert_eq!(m.unwrap(b"W:y").unwrap(), b"y");
        assert_eq!(m.unwrap(b"S:z").unwrap(), b"z");
    }

    #[test]
    fn a_server_that_requires_a_layer_is_refused_over_tls() {
        let mut m = mech(true);
        m.initial_response().unwrap();
        m.step(b"AP-REP").unwrap();
        assert!(matches!(
            m.step(b"W:\x04\x00\x10\x00"),
            Err(SaslError::NoAcceptableLayer { offered: 4, .. })
        ));
        assert!(!m.is_complete());
    }
}
