#![no_main]
//! The SMTP client dialect fed arbitrary server bytes, on a plaintext link (the
//! STARTTLS path) or on TLS, chosen by the first byte.

use libfuzzer_sys::fuzz_target;
use mailtun::protocol::smtp::SmtpClient;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut d = SmtpClient::new(mode & 1 == 1, "client.example".into());
    common::drive(&mut d, rest);
});
