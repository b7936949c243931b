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
mod install;
mod krb_name;
mod local_files;
mod logins;
mod oauth;
mod pop3_smtp;
mod probe;
mod realms;
mod relay;
mod sasl;
mod sasl_oracle;
mod scripted;
mod serve;
mod signals;

use mailtun::error::Class;

/// The exit codes the tests expect, from the library's table (`Class::exit_code`).
pub const EXIT_CONFIG: i32 = Class::Config.exit_code() as i32;
pub const EXIT_NETWORK: i32 = Class::Network.exit_code() as i32;
pub const EXIT_POLICY: i32 = Class::Policy.exit_code() as i32;
pub const EXIT_AUTH: i32 = Class::Auth.exit_code() as i32;
pub const EXIT_PROTOCOL: i32 = Class::Protocol.exit_code() as i32;
