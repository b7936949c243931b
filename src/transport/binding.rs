//! Channel-binding data of a TLS link: tls-exporter (RFC 9266) on TLS 1.3,
//! tls-server-end-point (RFC 5929) by the certificate's signature hash on TLS 1.2.

use sha2::{Digest, Sha256};

use super::Link;

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
