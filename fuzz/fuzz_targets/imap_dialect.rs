#![no_main]
//! The IMAP client dialect fed arbitrary server bytes, on a plaintext link (the
//! STARTTLS path) or on TLS, chosen by the first byte.

use libfuzzer_sys::fuzz_target;
use mailtun::protocol::imap::ImapClient;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut d = ImapClient::new(mode & 1 == 1);
    common::drive(&mut d, rest);
});
