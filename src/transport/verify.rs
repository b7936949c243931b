//! The rustls client configuration of an account and the checks of the server's
//! certificate: trust anchors (system roots and `ca_file`), the pin, the dangerous
//! `accept_invalid_certs`, and the issuer named in an unknown-CA failure.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use super::{LinkTrust, TransportError};

/// How to verify servers of one account; built once per session.
#[derive(Clone)]
pub struct TlsSettings {
    pub(super) config: Arc<ClientConfig>,
    pub(super) server_name: ServerName<'static>,
    /// What a link that passes these checks is worth.
    pub(super) trust: LinkTrust,
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
    let verifier = Verifier::new(
        provider.clone(),
        chain_check(ca_file, pin, accept_invalid_certs, provider.clone())?,
    );
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

/// The chain check of an account's server certificates: the chain against the system
/// roots and `ca_file` (or any chain, under `accept_invalid_certs`), the pin around it,
/// and the issuer named when it is unknown. `mailtun probe` records the verdict of the
/// same check (no pin, nothing accepted blindly).
pub(super) fn chain_check(
    ca_file: Option<&Path>,
    pin: Option<[u8; 32]>,
    accept_invalid_certs: bool,
    provider: Arc<CryptoProvider>,
) -> Result<Box<dyn ChainCheck>, TransportError> {
    let chain: Box<dyn ChainCheck> = if accept_invalid_certs {
        Box::new(AcceptAnything)
    } else {
        Box::new(Roots::new(ca_file, provider)?)
    };
    let checked = match pin {
        None => chain,
        Some(pin) => Box::new(Pinned { inner: chain, pin }),
    };
    Ok(Box::new(Explained { inner: checked }))
}

/// What a chain check looks at: the server's chain, the name it was asked for, the
/// stapled OCSP response and the time.
pub(super) struct Chain<'a> {
    pub(super) end_entity: &'a CertificateDer<'a>,
    pub(super) intermediates: &'a [CertificateDer<'a>],
    server_name: &'a ServerName<'a>,
    ocsp: &'a [u8],
    now: UnixTime,
}

impl Chain<'_> {
    /// The verdict of a webpki verifier on this chain.
    fn verify_with(&self, v: &WebPkiServerVerifier) -> Result<ServerCertVerified, rustls::Error> {
        v.verify_server_cert(
            self.end_entity,
            self.intermediates,
            self.server_name,
            self.ocsp,
            self.now,
        )
    }
}

/// One decision about the server's certificate chain. [`Verifier`] adds the handshake
/// signature checks, which are the same whatever the chain policy.
pub(super) trait ChainCheck: fmt::Debug + Send + Sync {
    fn check(&self, chain: &Chain<'_>) -> Result<ServerCertVerified, rustls::Error>;
}

/// The verifier every session (and the probe) uses: a chain check, then the handshake
/// signatures with the crypto provider's algorithms.
#[derive(Debug)]
pub(super) struct Verifier {
    provider: Arc<CryptoProvider>,
    check: Box<dyn ChainCheck>,
}

impl Verifier {
    pub(super) fn new(provider: Arc<CryptoProvider>, check: Box<dyn ChainCheck>) -> Arc<Self> {
        Arc::new(Verifier { provider, check })
    }
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
        self.check.check(&Chain {
            end_entity,
            intermediates,
            server_name,
            ocsp,
            now,
        })
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
    fn check(&self, chain: &Chain<'_>) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(extra) = &self.extra {
            match chain.verify_with(extra) {
                Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {}
                other => return other,
            }
        }
        match self.system() {
            Ok(v) => chain.verify_with(v),
            Err(e) => Err(rustls::Error::General(e.clone())),
        }
    }
}

/// The issuer of an end-entity certificate that chains to no trusted root.
#[derive(Debug)]
pub(super) struct UnknownIssuerOf {
    pub(super) issuer: String,
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
    fn check(&self, chain: &Chain<'_>) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.check(chain);
        match result {
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                let issuer = x509_parser::parse_x509_certificate(chain.end_entity.as_ref())
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
pub(super) struct PinMismatch {
    pub(super) expected: [u8; 32],
    pub(super) actual: [u8; 32],
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
    fn check(&self, chain: &Chain<'_>) -> Result<ServerCertVerified, rustls::Error> {
        let actual: [u8; 32] = Sha256::digest(chain.end_entity.as_ref()).into();
        if actual != self.pin {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch {
                    expected: self.pin,
                    actual,
                })),
            )));
        }
        self.inner.check(chain)
    }
}

/// `[dangerous] accept_invalid_certs`: any chain, name and dates (a pin around it still
/// holds), but handshake signatures checked.
#[derive(Debug)]
struct AcceptAnything;

impl ChainCheck for AcceptAnything {
    fn check(&self, _: &Chain<'_>) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
}
