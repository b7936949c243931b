//! Transport errors: one variant per thing the user can fix differently, the
//! classification of rustls's failures into them, and the text of fingerprints and dates.

use std::io;
use std::path::PathBuf;

use rustls::CertificateError;

use super::verify::{PinMismatch, UnknownIssuerOf};

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

pub(super) fn classify(e: io::Error) -> TransportError {
    let Some(rustls_err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return TransportError::Handshake {
            detail: e.to_string(),
        };
    };
    classify_rustls(rustls_err)
}

pub(super) fn classify_rustls(rustls_err: &rustls::Error) -> TransportError {
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
