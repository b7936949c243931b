//! mailtun: reach IMAP, POP3 and SMTP submission servers with verified TLS and strong
//! authentication, then hand the authenticated session to a mail client as a tunnel.
//!
//! # Layout
//! - [`config`]: the TOML schema, resolved into [`config::Account`]s.
//! - [`protocol`]: sans-I/O client dialects (IMAP, POP3, SMTP) that turn server bytes into
//!   events, and the client-facing POP3/SMTP handshakes (`protocol::local`).
//! - [`sasl`]: sans-I/O SASL mechanisms (GSSAPI steps and security-layer octets).
//! - [`gss`]: the only module that calls the Kerberos library; [`krb5_profile`] reads the
//!   krb5.conf facts its messages and enterprise names need; [`ccache`] reads a FILE
//!   ticket cache for `check`.
//! - [`transport`]: TCP connect, TLS (implicit or after STARTTLS), certificate checks.
//! - [`session`]: drives one dialect and one mechanism over a transport.
//! - [`tunnel`]: hands the authenticated session to the local client and relays bytes.
//! - [`policy`]: the four combinations of session protection and authentication.
//! - [`error`]: the failure type every layer reports into, with its exit-code class.
//! - [`secret`]: a redacting, zeroizing wrapper for credentials and SASL payloads.
//! - [`text`]: server text with terminal controls escaped, for messages and reports.
//! - [`probe`], [`check`]: the `probe` and `check` commands; [`report`] renders them;
//!   [`timeline`] times a session's steps.
//! - [`alpine`], [`snippet`], [`listing`]: alpine's ssh-path call form, client settings,
//!   and the account listing.

pub mod alpine;
pub mod auth;
pub mod ccache;
pub mod check;
pub mod config;
pub mod credentials;
pub mod error;
pub mod gss;
pub mod krb5_profile;
pub mod listing;
pub mod oauth;
pub mod policy;
pub mod probe;
pub mod protocol;
pub mod report;
pub mod sasl;
pub mod secret;
pub mod serve;
pub mod session;
pub mod snippet;
pub mod text;
pub mod timeline;
pub mod transport;
pub mod tunnel;

#[cfg(test)]
mod proptests;
