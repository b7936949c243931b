//! A driver that plays any dialect against arbitrary server bytes: it takes STARTTLS
//! whenever offered, tries a few mechanisms, answers or cancels challenges, and stops at
//! the first error or when the input runs out. It panics only on what would be a bug: a
//! dialect that makes no progress, or sends a command line with a CR or LF inside it.
//! After authentication it logs out, and the end of the input is the end of the
//! connection.

#![allow(dead_code)]

use mailtun::protocol::{Dialect, Event};
use mailtun::secret::Secret;

pub fn drive(dialect: &mut dyn Dialect, data: &[u8]) {
    // The first byte chooses the size of the chunks the input arrives in.
    let (chunk, mut rest) = match data.split_first() {
        Some((c, r)) => (usize::from(*c % 64) + 1, r),
        None => return,
    };
    let mut tls = false;
    let mut attempts = 0;
    let mut polls_without_input = 0usize;
    let mut logging_out = false;
    loop {
        polls_without_input += 1;
        assert!(
            polls_without_input < 100_000,
            "the dialect loops without asking for input"
        );
        let event = match dialect.poll() {
            Ok(e) => e,
            Err(_) => return,
        };
        match event {
            Event::NeedInput => {
                if rest.is_empty() && logging_out {
                    logging_out = false;
                    dialect.closed();
                    continue;
                }
                if rest.is_empty() {
                    return;
                }
                let n = chunk.min(rest.len());
                dialect.receive(&rest[..n]);
                rest = &rest[n..];
                polls_without_input = 0;
            }
            Event::Send(out) => {
                let bytes = out.bytes.expose();
                assert!(
                    bytes.ends_with(b"\r\n"),
                    "a command without CRLF: {:?}",
                    out.shown
                );
                let body = &bytes[..bytes.len() - 2];
                assert!(
                    !body.contains(&b'\r') && !body.contains(&b'\n'),
                    "a line break inside a command: {:?}",
                    out.shown
                );
            }
            Event::Received(_) | Event::AuthAccepted => {}
            Event::Ready(caps) => {
                if !tls {
                    if !caps.starttls {
                        return;
                    }
                    dialect.start_tls();
                } else {
                    attempts += 1;
                    if attempts > 3 {
                        return;
                    }
                    let ir = if attempts % 2 == 0 {
                        None
                    } else {
                        Some(Secret::new(vec![b'x'; attempts * 200]))
                    };
                    dialect.authenticate("SCRAM-SHA-256", ir);
                }
            }
            Event::StartTls => {
                tls = true;
                dialect.tls_established();
            }
            Event::Challenge(c) => {
                if c.expose().len() % 2 == 0 {
                    dialect.auth_response(Secret::new(c.expose().clone()));
                } else {
                    dialect.cancel_auth();
                }
            }
            Event::Rejected { .. } => {
                attempts += 1;
                if attempts > 3 {
                    return;
                }
                dialect.authenticate("GSSAPI", Some(Secret::new(b"token".to_vec())));
            }
            Event::Authenticated(_) => {
                let _ = dialect.take_leftover();
                dialect.logout();
                logging_out = true;
            }
            Event::LoggedOut { .. } => return,
        }
    }
}
