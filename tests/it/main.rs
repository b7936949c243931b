//! Integration tests: the real `mailtun` binary against a real MIT KDC and a real Dovecot
//! (started by `scripts/harness`), real mail clients, and scripted servers for what no
//! real server does.

mod clients;
mod harness;
mod imap_tunnel;
mod pop3_smtp;
mod sasl;
mod scripted;
