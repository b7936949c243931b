#![no_main]
//! The POP3 client dialect fed arbitrary server bytes, on a plaintext link (the
//! STARTTLS path) or on TLS, chosen by the first byte.

use libfuzzer_sys::fuzz_target;
use mailtun::protocol::pop3::Pop3Client;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut d = Pop3Client::new(mode & 1 == 1);
    common::drive(&mut d, rest);
});
