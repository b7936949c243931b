//! The only module that does TCP and TLS: connecting with a deadline, the TLS handshake
//! (implicit or after STARTTLS) with certificate verification against the system roots,
//! an extra CA file and an optional SHA-256 pin.
//!
//! A pin always holds: `[dangerous] accept_invalid_certs` waives only the chain, name and
//! date checks. A link whose certificate was neither verified nor pinned carries
//! [`LinkTrust::UnverifiedTls`], which the policy does not count as verified TLS.
//!
//! It knows nothing of mail protocols; `session` decides when to call what.
//!
//! [`probe`] holds the one handshake that goes on after a failed verification, for
//! `mailtun probe` only: its links are a distinct type that `session` and `tunnel`
//! cannot take.

pub mod probe;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub use crate::policy::LinkTrust;

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

/// Channel-binding data of a TLS session (RFC 9266 or RFC 5929).
pub enum BindingData {
    /// 32 bytes of `EXPORTER-Channel-Binding` (TLS 1.3).
    TlsExporter(Vec<u8>),
    /// The server's end-entity certificate hashed with its signature's hash, SHA-256 for
    /// MD5 and SHA-1 (TLS 1.2; RFC 5929 section 4.1, [`server_end_point`]).
    TlsServerEndPoint(Vec<u8>),
}

impl Link {
    /// Channel-binding data for SCRAM-*-PLUS, or `None` on a plaintext link.
    pub fn channel_binding(&self) -> Option<BindingData> {
        let Link::Tls(s, _) = self else { return None };
        let (_, conn) = s.get_ref();
        match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => conn
                .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                .ok()
                .map(|k| BindingData::TlsExporter(k.to_vec())),
            _ => conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| server_end_point(c.as_ref()))
                .map(BindingData::TlsServerEndPoint),
        }
    }

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

/// tls-server-end-point data (RFC 5929 section 4.1): the hash of the DER certificate,
/// with the hash of its signature algorithm, and SHA-256 when that is MD5 or SHA-1.
/// `None` when the signature uses no single hash (Ed25519, Ed448), or an algorithm this
/// function does not know: the binding is undefined, and -PLUS cannot run.
pub fn server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    use sha2::{Sha224, Sha384, Sha512};
    use x509_parser::signature_algorithm::SignatureAlgorithm;
    type Hash = fn(&[u8]) -> Vec<u8>;
    fn digest<D: Digest>(der: &[u8]) -> Vec<u8> {
        D::digest(der).to_vec()
    }
    let sha224: Hash = digest::<Sha224>;
    let sha256: Hash = digest::<Sha256>;
    let sha384: Hash = digest::<Sha384>;
    let sha512: Hash = digest::<Sha512>;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let alg = &cert.signature_algorithm;
    let hash = match alg.algorithm.to_id_string().as_str() {
        // RSASSA-PSS names its hash in its parameters (SHA-1 when absent).
        "1.2.840.113549.1.1.10" => match SignatureAlgorithm::try_from(alg).ok()? {
            SignatureAlgorithm::RSASSA_PSS(p) => {
                match p.hash_algorithm_oid().to_id_string().as_str() {
                    "1.3.14.3.2.26" | "2.16.840.1.101.3.4.2.1" => sha256,
                    "2.16.840.1.101.3.4.2.4" => sha224,
                    "2.16.840.1.101.3.4.2.2" => sha384,
                    "2.16.840.1.101.3.4.2.3" => sha512,
                    _ => return None,
                }
            }
            _ => return None,
        },
        // md5/sha1/sha256WithRSAEncryption, ecdsa-with-SHA1/SHA256, dsa-with-sha1/sha256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10040.4.3"
        | "2.16.840.1.101.3.4.3.2" => sha256,
        // sha224WithRSAEncryption, ecdsa-with-SHA224, dsa-with-sha224
        "1.2.840.113549.1.1.14" | "1.2.840.10045.4.3.1" | "2.16.840.1.101.3.4.3.1" => sha224,
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => sha384,
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => sha512,
        _ => return None,
    };
    Some(hash(der))
}

fn tls_info_of(conn: &rustls::ClientConnection, trust: LinkTrust) -> TlsInfo {
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

/// A connection or TLS failure. One variant per thing the user can fix differently.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot use the client certificate {}: {detail}", .path.display())]
    ClientCertificate { path: PathBuf, detail: String },
    #[error("cannot resolve {host} (to reach port {port}): {source}")]
    Resolve {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("cannot connect to {host} port {port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("no answer from {host} port {port} within {secs} s")]
    Timeout { host: String, port: u16, secs: u64 },
    #[error("cannot read the CA file {}: {detail}", .path.display())]
    CaFile { path: PathBuf, detail: String },
    #[error(
        "the server's certificate was issued by {}a CA this machine does not trust; if the server uses a private CA, name its certificate with `ca_file`", .issuer.as_ref().map(|i| format!("`{i}`, ")).unwrap_or_default()
    )]
    UnknownIssuer {
        /// The issuer named in the server's certificate, when it could be read.
        issuer: Option<String>,
    },
    #[error("the server's certificate is not valid for {expected}{}; set `host` to one of the names in the certificate", .presented.as_ref().map(|p| format!(" (it names: {})", p.join(", "))).unwrap_or_default())]
    NameMismatch {
        expected: String,
        presented: Option<Vec<String>>,
    },
    #[error("the server's certificate has expired{}", .detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Expired { detail: Option<String> },
    #[error("the server's certificate is not valid yet{}", .detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    NotValidYet { detail: Option<String> },
    #[error(
        "the server's certificate does not match `pin_sha256` (expected {expected}, got {actual}); if the server's certificate changed legitimately, update the pin"
    )]
    PinMismatch { expected: String, actual: String },
    #[error("the server's certificate was refused: {detail}")]
    BadCertificate { detail: String },
    #[error("the TLS handshake failed: {detail}")]
    Handshake { detail: String },
}

/// How to verify servers of one account; built once per session.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    /// What a link that passes these checks is worth.
    trust: LinkTrust,
}

impl TlsSettings {
    /// What a link that passes these checks is worth: unverified TLS under
    /// `accept_invalid_certs` without a pin, verified TLS otherwise.
    pub fn trust(&self) -> LinkTrust {
        self.trust
    }
}

/// Builds the TLS client configuration for `host`. `pin` is always enforced;
/// `accept_invalid_certs` waives the chain, name and date checks only.
pub fn tls_settings(
    host: &str,
    ca_file: Option<&Path>,
    pin: Option<[u8; 32]>,
    accept_invalid_certs: bool,
    client_cert: Option<(&Path, &Path)>,
) -> Result<TlsSettings, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_name =
        ServerName::try_from(host.to_string()).map_err(|e| TransportError::Handshake {
            detail: format!("{host} is not a valid TLS server name: {e}"),
        })?;
    let chain: Box<dyn ChainCheck> = if accept_invalid_certs {
        Box::new(AcceptAnything)
    } else {
        Box::new(Roots::new(ca_file, provider.clone())?)
    };
    let checked = match pin {
        None => chain,
        Some(pin) => Box::new(Pinned { inner: chain, pin }),
    };
    let check = Box::new(Explained { inner: checked });
    let verifier = Arc::new(Verifier {
        provider: provider.clone(),
        check,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Handshake {
            detail: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let bad = |path: &Path, detail: String| TransportError::ClientCertificate {
                path: path.to_path_buf(),
                detail,
            };
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad(cert, e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(cert, e.to_string()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(cert, e.to_string()))?
        }
    };
    Ok(TlsSettings {
        config: Arc::new(config),
        server_name,
        trust: LinkTrust::of_tls(accept_invalid_certs, pin.is_some()),
    })
}

/// The system roots plus the account's `ca_file`.
fn trust_anchors(ca_file: Option<&Path>) -> Result<RootCertStore, TransportError> {
    let extra = match ca_file {
        Some(path) => load_ca_file(path)?,
        None => Vec::new(),
    };
    Ok(system_roots_and(&extra))
}

/// The system roots (unreadable stores leave them empty; an extra CA can still serve)
/// plus `extra`.
fn system_roots_and(extra: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(extra.iter().cloned());
    roots
}

/// The certificates of a `ca_file`, each usable as a trust anchor.
fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let ca_err = |detail: String| TransportError::CaFile {
        path: path.to_path_buf(),
        detail,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| ca_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| ca_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca_err("it holds no PEM certificate".into()));
    }
    let mut probe = RootCertStore::empty();
    let (added, _) = probe.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(ca_err(
            "none of its certificates could be used as a trust anchor".into(),
        ));
    }
    Ok(certs)
}

/// One decision about the server's certificate chain. [`Verifier`] adds the handshake
/// signature checks, which are the same whatever the chain policy.
trait ChainCheck: fmt::Debug + Send + Sync {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error>;
}

/// The verifier every session uses: a chain check, then the handshake signatures with
/// the crypto provider's algorithms.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    check: Box<dyn ChainCheck>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check
            .check(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

type Built = Result<Arc<WebPkiServerVerifier>, String>;

/// Verifies chains against the account's `ca_file` first, and against the system roots
/// (plus the `ca_file`) when that finds no known issuer, so the trust anchors are the
/// union of both. The system store (hundreds of files on Debian) stays off the critical
/// path: without a `ca_file` a thread starts reading it at once, while the connection and
/// the handshake go on; with one, it is read only if a chain needs it.
#[derive(Debug)]
struct Roots {
    extra: Option<Arc<WebPkiServerVerifier>>,
    extra_certs: Vec<CertificateDer<'static>>,
    system: OnceLock<Built>,
    provider: Arc<CryptoProvider>,
}

impl Roots {
    fn new(
        ca_file: Option<&Path>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, TransportError> {
        let extra_certs = match ca_file {
            Some(path) => load_ca_file(path)?,
            None => Vec::new(),
        };
        let extra = if extra_certs.is_empty() {
            None
        } else {
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(extra_certs.iter().cloned());
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| TransportError::Handshake {
                        detail: format!("no trust anchors: {e}"),
                    })?,
            )
        };
        let roots = Arc::new(Roots {
            extra,
            extra_certs,
            system: OnceLock::new(),
            provider,
        });
        if roots.extra.is_none() {
            let prefetch = roots.clone();
            std::thread::spawn(move || {
                prefetch.system();
            });
        }
        Ok(roots)
    }

    /// The verifier over the system roots and the `ca_file`, built once (a caller that
    /// comes while the prefetch thread builds it waits for that).
    fn system(&self) -> &Built {
        self.system.get_or_init(|| {
            let roots = system_roots_and(&self.extra_certs);
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| format!("no trust anchors: {e}"))
        })
    }
}

impl ChainCheck for Arc<Roots> {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(extra) = &self.extra {
            match extra.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {}
                other => return other,
            }
        }
        match self.system() {
            Ok(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            Err(e) => Err(rustls::Error::General(e.clone())),
        }
    }
}

/// Opens a TCP connection to `host:port`.
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, TransportError> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| TransportError::Resolve {
            host: host.to_string(),
            port,
            source,
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(TransportError::Connect {
        host: host.to_string(),
        port,
        source: last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")),
    })
}

/// Runs the TLS handshake over `tcp` and verifies the server.
pub async fn handshake(tcp: TcpStream, settings: &TlsSettings) -> Result<Link, TransportError> {
    let connector = TlsConnector::from(settings.config.clone());
    match connector.connect(settings.server_name.clone(), tcp).await {
        Ok(s) => Ok(Link::Tls(Box::new(s), settings.trust)),
        Err(e) => Err(classify(e)),
    }
}

fn classify(e: io::Error) -> TransportError {
    let Some(rustls_err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return TransportError::Handshake {
            detail: e.to_string(),
        };
    };
    classify_rustls(rustls_err)
}

fn classify_rustls(rustls_err: &rustls::Error) -> TransportError {
    match rustls_err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => TransportError::UnknownIssuer { issuer: None },
            CertificateError::NotValidForName => TransportError::NameMismatch {
                expected: String::new(),
                presented: None,
            },
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => TransportError::NameMismatch {
                expected: crate::text::escape(&expected.to_str()),
                // The certificate's names: escaped, since the server chose them.
                presented: Some(presented.iter().map(|p| crate::text::escape(p)).collect()),
            },
            CertificateError::Expired => TransportError::Expired { detail: None },
            CertificateError::ExpiredContext { time, not_after } => TransportError::Expired {
                detail: Some(format!(
                    "valid until {}, {} days ago",
                    date(not_after.as_secs()),
                    time.as_secs().saturating_sub(not_after.as_secs()) / 86400
                )),
            },
            CertificateError::NotValidYet => TransportError::NotValidYet { detail: None },
            CertificateError::NotValidYetContext { time, not_before } => {
                TransportError::NotValidYet {
                    detail: Some(format!(
                        "valid from {}, in {} days",
                        date(not_before.as_secs()),
                        not_before
                            .as_secs()
                            .saturating_sub(time.as_secs())
                            .div_ceil(86400)
                    )),
                }
            }
            CertificateError::Other(other) => {
                if let Some(p) = other.0.downcast_ref::<PinMismatch>() {
                    TransportError::PinMismatch {
                        expected: hex(&p.expected),
                        actual: hex(&p.actual),
                    }
                } else if let Some(u) = other.0.downcast_ref::<UnknownIssuerOf>() {
                    TransportError::UnknownIssuer {
                        issuer: Some(u.issuer.clone()),
                    }
                } else {
                    TransportError::BadCertificate {
                        detail: other.to_string(),
                    }
                }
            }
            other => TransportError::BadCertificate {
                detail: format!("{other:?}"),
            },
        },
        other => TransportError::Handshake {
            detail: other.to_string(),
        },
    }
}

/// Lower-case hex with colons, as `openssl x509 -fingerprint` prints it.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A UTC date as `YYYY-MM-DD`, from seconds since the Unix epoch.
pub fn date(secs: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (secs / 86400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The issuer of an end-entity certificate that chains to no trusted root.
#[derive(Debug)]
struct UnknownIssuerOf {
    issuer: String,
}

impl fmt::Display for UnknownIssuerOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "certificate issued by an unknown CA ({})", self.issuer)
    }
}

impl std::error::Error for UnknownIssuerOf {}

/// Adds what the user needs to a verification failure: the issuer of a certificate
/// from an unknown CA (names and dates already come with rustls's own errors).
#[derive(Debug)]
struct Explained {
    inner: Box<dyn ChainCheck>,
}

impl ChainCheck for Explained {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self
            .inner
            .check(end_entity, intermediates, server_name, ocsp, now);
        match result {
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                let issuer = x509_parser::parse_x509_certificate(end_entity.as_ref())
                    .map(|(_, c)| crate::text::escape(&c.issuer().to_string()))
                    .unwrap_or_default();
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(UnknownIssuerOf { issuer })),
                )))
            }
            other => other,
        }
    }
}

#[derive(Debug)]
struct PinMismatch {
    expected: [u8; 32],
    actual: [u8; 32],
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "certificate does not match the pinned SHA-256")
    }
}

impl std::error::Error for PinMismatch {}

/// Verifies the chain as usual, then requires the end-entity certificate to match a pin.
#[derive(Debug)]
struct Pinned {
    inner: Box<dyn ChainCheck>,
    pin: [u8; 32],
}

impl ChainCheck for Pinned {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if actual != self.pin {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch {
                    expected: self.pin,
                    actual,
                })),
            )));
        }
        self.inner
            .check(end_entity, intermediates, server_name, ocsp, now)
    }
}

/// `[dangerous] accept_invalid_certs`: any chain, name and dates (a pin around it still
/// holds), but handshake signatures checked.
#[derive(Debug)]
struct AcceptAnything;

impl ChainCheck for AcceptAnything {
    fn check(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

#[cfg(test)]
mod tests {
    use super::server_end_point;
    use sha2::Digest;

    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        rcgen::CertificateParams::new(vec!["mail.example.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn server_end_point_hashes_with_the_certificate_signature_hash() {
        let p256 = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            server_end_point(&p256).unwrap(),
            sha2::Sha256::digest(&p256).to_vec()
        );
        let p384 = self_signed(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            server_end_point(&p384).unwrap(),
            sha2::Sha384::digest(&p384).to_vec()
        );
        // Ed25519 has no single hash: RFC 5929 leaves the binding undefined.
        assert_eq!(server_end_point(&self_signed(&rcgen::PKCS_ED25519)), None);
        assert_eq!(server_end_point(b"not a certificate"), None);
    }
}
