//! The only module that does TCP and TLS: connecting with a deadline, the TLS handshake
//! (implicit or after STARTTLS) with certificate verification against the system roots,
//! an extra CA file and an optional SHA-256 pin.
//!
//! A pin always holds: `[dangerous] accept_invalid_certs` waives only the chain, name and
//! date checks. A link whose certificate was neither verified nor pinned carries
//! [`LinkTrust::UnverifiedTls`], which the policy does not count as verified TLS.
//!
//! It knows nothing of mail protocols; `session` decides when to call what. By concern:
//! [`connect`](self::connect()) (TCP, the handshake), `verify` (the rustls configuration
//! and the certificate checks), `binding` (channel-binding data), `classify` (errors,
//! their classification and the text of fingerprints and dates).
//!
//! [`probe`] holds the one handshake that goes on after a failed verification, for
//! `mailtun probe` only: its links are a distinct type that `session` and `tunnel`
//! cannot take.

mod binding;
mod classify;
mod connect;
pub mod probe;
mod verify;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub use crate::policy::LinkTrust;
pub use binding::{BindingData, server_end_point};
pub use classify::{TransportError, date, hex};
pub use connect::{connect, handshake};
pub use verify::{TlsSettings, tls_settings};

/// A connection to the server: plaintext until TLS starts; a TLS link carries how far
/// its certificate was checked.
pub enum Link {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>, LinkTrust),
}

/// What the TLS handshake negotiated, for messages and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    pub cipher_suite: String,
    /// The key exchange group (`X25519`, `secp256r1`...), when known.
    pub key_exchange: String,
    /// Whether the certificate was verified (or pinned).
    pub trust: LinkTrust,
}

impl fmt::Display for TlsInfo {
    /// `TLSv1.3`, or `unverified TLS (TLSv1.3)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.trust {
            LinkTrust::UnverifiedTls => write!(f, "unverified TLS ({})", self.version),
            _ => f.write_str(&self.version),
        }
    }
}

impl Link {
    /// The negotiated TLS parameters, or `None` on a plaintext link.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        let Link::Tls(s, trust) = self else {
            return None;
        };
        let (_, conn) = s.get_ref();
        Some(tls_info_of(conn, *trust))
    }

    /// What the link is worth to the policy.
    pub fn trust(&self) -> LinkTrust {
        match self {
            Link::Plain(_) => LinkTrust::Plain,
            Link::Tls(_, trust) => *trust,
        }
    }
}

pub(crate) fn tls_info_of(conn: &rustls::ClientConnection, trust: LinkTrust) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "TLS".to_string(),
    };
    let cipher_suite = conn
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()))
        .unwrap_or_default();
    let key_exchange = conn
        .negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()))
        .unwrap_or_default();
    TlsInfo {
        version,
        cipher_suite,
        key_exchange,
        trust,
    }
}

impl AsyncRead for Link {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Link::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Link::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Link::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Plain(s) => Pin::new(s).poll_flush(cx),
            Link::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Link::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
