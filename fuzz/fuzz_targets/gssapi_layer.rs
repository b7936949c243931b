#![no_main]
//! The GSSAPI security-layer offer (RFC 4752 section 3.1) as the server sends it, over a
//! context whose wrap and unwrap are the identity: the decoder sees the raw octets. An
//! accepted offer always had 4 octets and the wanted layer bit, and the reply is 4 octets.

use libfuzzer_sys::fuzz_target;
use mailtun::sasl::gssapi::{GssContext, Gssapi, LayerWanted};
use mailtun::sasl::{GssFailure, Mechanism};

struct Identity;

impl GssContext for Identity {
    fn step(&mut self, _token: Option<&[u8]>) -> Result<Option<Vec<u8>>, GssFailure> {
        Ok(Some(b"ap-req".to_vec()))
    }
    fn is_complete(&self) -> bool {
        true
    }
    fn mutual(&self) -> bool {
        true
    }
    fn wrap(&mut self, _encrypt: bool, msg: &[u8]) -> Result<Vec<u8>, GssFailure> {
        Ok(msg.to_vec())
    }
    fn unwrap(&mut self, msg: &[u8]) -> Result<(Vec<u8>, bool), GssFailure> {
        Ok((msg.to_vec(), true))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, offer)) = data.split_first() else {
        return;
    };
    let wanted = match mode % 3 {
        0 => LayerWanted::None,
        1 => LayerWanted::Integrity,
        _ => LayerWanted::Confidentiality,
    };
    let mut m = Gssapi::new(Identity, wanted, String::new());
    m.initial_response().unwrap();
    match m.step(offer) {
        Ok(reply) => {
            assert_eq!(offer.len(), 4);
            assert!(m.is_complete());
            assert_eq!(reply.expose().len(), 4);
            let bit = match wanted {
                LayerWanted::None => 1,
                LayerWanted::Integrity => 2,
                LayerWanted::Confidentiality => 4,
            };
            assert_ne!(offer[0] & bit, 0);
            assert_eq!(reply.expose()[0], bit);
            match m.layer() {
                None => assert!(matches!(wanted, LayerWanted::None)),
                Some(l) => assert!(l.max_send >= 64),
            }
        }
        Err(_) => assert!(!m.is_complete() && m.layer().is_none()),
    }
});
