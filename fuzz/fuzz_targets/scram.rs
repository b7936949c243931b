#![no_main]
//! SCRAM-SHA-256 client fed arbitrary server messages. The first byte chooses where
//! the input goes: as the server-first message, or as the server-final message after a
//! valid server-first one (with a cheap iteration count, allowed by the bounds here).
//! Whatever the input, the exchange is complete only if the server signature verified,
//! which arbitrary bytes never do.

use libfuzzer_sys::fuzz_target;
use mailtun::sasl::Mechanism;
use mailtun::sasl::scram::{Binding, ClientNonce, IterationBounds, Scram, ScramHash};
use mailtun::secret::Secret;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let hash = if mode & 2 == 0 {
        ScramHash::Sha256
    } else {
        ScramHash::Sha1
    };
    let mut m = Scram::new(
        hash,
        "user",
        Secret::new("pencil".to_string()),
        None,
        Binding::Unsupported,
        ClientNonce::new("fyko+d2lbbFgONRv9qkxdawL").unwrap(),
    )
    .unwrap()
    .with_iteration_bounds(IterationBounds { min: 1, max: 16 });
    m.initial_response().unwrap();
    if mode & 1 == 0 {
        if m.step(rest).is_ok() {
            // A server-first message was accepted; it must have carried our nonce.
            assert!(!m.is_complete());
            assert!(rest.starts_with(b"r=fyko+d2lbbFgONRv9qkxdawL"));
        }
    } else {
        m.step(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=2")
            .unwrap();
        let r = m.step(rest);
        assert_eq!(r.is_ok(), m.is_complete());
        assert!(!m.is_complete(), "a random server signature verified");
    }
    // Nothing more is accepted after the exchange ended either way.
    assert!(m.step(rest).is_err());
});
