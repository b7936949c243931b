//! Integration tests: the real `mailtun` binary against a real MIT KDC and a real Dovecot
//! (started by `scripts/harness`), real mail clients, and scripted servers for what no
//! real server does.

mod clients;
mod errors;
mod external;
mod fake_server;
mod gigabyte;
mod gss_layer;
mod harness;
mod hostile;
mod imap_tunnel;
mod krb_name;
mod logins;
mod oauth;
mod pop3_smtp;
mod probe;
mod relay;
mod sasl;
mod sasl_oracle;
mod scripted;
mod signals;
