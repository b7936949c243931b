//! Integration tests: the real `mailtun` binary against a real MIT KDC and a real Dovecot
//! (started by `scripts/harness`), real mail clients, and scripted servers for what no
//! real server does.

mod clients;
mod fake_server;
mod gss_layer;
mod harness;
mod hostile;
mod imap_tunnel;
mod pop3_smtp;
mod relay;
mod sasl;
mod scripted;
mod signals;
