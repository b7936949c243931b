//! Probe-only TLS: a handshake that records the server's certificate chain and the
//! verdict of the real verifier, and then goes on even when that verdict is a refusal,
//! so that `mailtun probe` can show the certificate and the capabilities offered after
//! TLS.
//!
//! This is the one place where a failed verification does not end a connection, so it
//! is fenced off:
//! - its links are an [`UnverifiedLink`], a type that `session` and `tunnel` never take
//!   (they work on [`Link`], which this module never hands out);
//! - the only way in is [`UnverifiedLink::dangerous_upgrade_for_probe`], named for what
//!   it does;
//! - the probe never authenticates and never sends a secret, on any link.
//!
//! Handshake signatures are still checked (with the server's key from its certificate),
//! so what the probe reports did come from the holder of that certificate's key.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::ClientConfig;
use rustls::client::danger::ServerCertVerified;
use rustls_pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::classify::{classify, classify_rustls};
use super::verify::{Chain, ChainCheck, Verifier, chain_check};
use super::{Link, LinkTrust, TlsInfo, TransportError, date, hex};

/// One certificate of the chain the server presented, as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub sans: Vec<String>,
    /// `YYYY-MM-DD` (UTC).
    pub not_before: String,
    pub not_after: String,
    /// Whole days until `not_after`; negative once expired.
    pub days_left: i64,
    /// SHA-256 of the DER certificate, upper-case hex with colons (as `pin_sha256` takes it).
    pub sha256: String,
}

/// What a probe handshake learned.
#[derive(Debug)]
pub struct ProbeTls {
    pub info: TlsInfo,
    /// The chain as sent, end-entity certificate first.
    pub chain: Vec<CertInfo>,
    /// `None` when the real verifier accepted the chain, else why it refused it.
    pub verification_error: Option<TransportError>,
}

/// How to run probe handshakes towards one host: the chain check an account with this
/// `ca_file` (and no pin) would have.
pub struct ProbeTlsSettings {
    check: Arc<dyn ChainCheck>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    server_name: ServerName<'static>,
}

impl ProbeTlsSettings {
    pub fn new(host: &str, ca_file: Option<&Path>) -> Result<Self, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_name =
            ServerName::try_from(host.to_string()).map_err(|e| TransportError::Handshake {
                detail: format!("{host} is not a valid TLS server name: {e}"),
            })?;
        let check = Arc::from(chain_check(ca_file, None, false, provider.clone())?);
        Ok(ProbeTlsSettings {
            check,
            provider,
            server_name,
        })
    }
}

/// A connection opened by the probe: plaintext, or TLS whose certificate may not have
/// been verified. Deliberately not a [`Link`].
pub struct UnverifiedLink(Link);

impl UnverifiedLink {
    pub fn plain(tcp: TcpStream) -> Self {
        UnverifiedLink(Link::Plain(tcp))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.0, Link::Tls(..))
    }

    /// Runs the TLS handshake over a plaintext link, recording the chain and the real
    /// verifier's verdict, and continuing whatever that verdict. For `mailtun probe`
    /// only: nothing secret may ever be sent on the result.
    pub async fn dangerous_upgrade_for_probe(
        self,
        settings: &ProbeTlsSettings,
    ) -> Result<(UnverifiedLink, ProbeTls), TransportError> {
        let Link::Plain(tcp) = self.0 else {
            return Err(TransportError::Handshake {
                detail: "TLS is already established".into(),
            });
        };
        let seen = Arc::new(Mutex::new(None));
        let recorder = Verifier::new(
            settings.provider.clone(),
            Box::new(Recording {
                inner: settings.check.clone(),
                seen: seen.clone(),
            }),
        );
        let config = ClientConfig::builder_with_provider(settings.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Handshake {
                detail: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(recorder)
            .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        let stream = connector
            .connect(settings.server_name.clone(), tcp)
            .await
            .map_err(classify)?;
        let seen = seen.lock().expect("verifier lock").take();
        let (chain, verification_error) = match seen {
            Some(s) => (s.chain, s.verdict.err()),
            None => (Vec::new(), None),
        };
        let trust = match verification_error {
            None => LinkTrust::VerifiedTls,
            Some(_) => LinkTrust::UnverifiedTls,
        };
        let (_, conn) = stream.get_ref();
        let info = super::tls_info_of(conn, trust);
        Ok((
            UnverifiedLink(Link::Tls(Box::new(stream), LinkTrust::UnverifiedTls)),
            ProbeTls {
                info,
                chain,
                verification_error,
            },
        ))
    }
}

#[derive(Debug)]
struct Seen {
    chain: Vec<CertInfo>,
    verdict: Result<(), TransportError>,
}

/// Wraps the real chain check: asks it, records its answer, and lets the handshake go
/// on. The handshake signatures are still checked ([`Verifier`] around it).
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ChainCheck>,
    seen: Arc<Mutex<Option<Seen>>>,
}

impl ChainCheck for Recording {
    fn check(&self, chain: &Chain<'_>) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .check(chain)
            .map(|_| ())
            .map_err(|e| classify_rustls(&e));
        let certs = std::iter::once(chain.end_entity)
            .chain(chain.intermediates)
            .filter_map(|c| cert_info(c.as_ref()))
            .collect();
        *self.seen.lock().expect("verifier lock") = Some(Seen {
            chain: certs,
            verdict,
        });
        Ok(ServerCertVerified::assertion())
    }
}

/// The facts of one DER certificate; `None` if it cannot be parsed. The names are the
/// certificate's text with terminal controls escaped ([`crate::text::escape`]).
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    use crate::text::escape;
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(escape(d)),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string()),
                    16 => {
                        Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string())
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let validity = cert.validity();
    let ts = |t: i64| date(t.max(0) as u64);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let not_after = validity.not_after.timestamp();
    Some(CertInfo {
        subject: escape(&cert.subject().to_string()),
        issuer: escape(&cert.issuer().to_string()),
        sans,
        not_before: ts(validity.not_before.timestamp()),
        not_after: ts(not_after),
        days_left: (not_after - now).div_euclid(86400),
        sha256: hex(&Sha256::digest(der)),
    })
}

impl AsyncRead for UnverifiedLink {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for UnverifiedLink {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(978_307_200), "2001-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(3_786_912_000), "2090-01-01");
    }
}
