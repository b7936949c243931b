//! EXTERNAL (RFC 4422 appendix A) with a TLS client certificate: an in-process IMAP server
//! over real TLS that requires a client certificate from its own CA and accepts EXTERNAL
//! only when one was presented.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::harness::run_tunnel;

struct Files {
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
    server: Arc<ServerConfig>,
}

fn pki() -> Files {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "EXTERNAL test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["mail.example.test".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca_cert, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.distinguished_name.push(DnType::CommonName, "alice");
    client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &ca_cert, &ca_key).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Files {
        ca: write("ca.pem", ca_cert.pem()),
        client_cert: write("client.pem", client_cert.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        server: Arc::new(server),
        _dir: dir,
    }
}

/// Serves one IMAP session; returns the client certificate's DER and the commands seen.
fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> (Option<CertificateDer<'static>>, Vec<String>) {
    let (tcp, _) = listener.accept().unwrap();
    let conn = ServerConnection::new(config).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    let mut seen = Vec::new();
    if tls
        .write_all(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=EXTERNAL] hi\r\n")
        .is_err()
    {
        return (None, seen);
    }
    let peer = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .map(|c| c.into_owned());
    let mut reader = BufReader::new(tls);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end().to_string();
        let reply = if line == "m1 AUTHENTICATE EXTERNAL =" {
            if peer.is_some() {
                "m1 OK [CAPABILITY IMAP4rev1] EXTERNAL accepted\r\n"
            } else {
                "m1 NO no certificate\r\n"
            }
        } else if line.ends_with("LOGOUT") {
            "* BYE bye\r\na OK done\r\n"
        } else {
            "* BAD what\r\n"
        };
        seen.push(line);
        let tls = reader.get_mut();
        let _ = tls.write_all(reply.as_bytes());
        if reply.starts_with("* BYE") {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            break;
        }
    }
    let peer = reader
        .get_ref()
        .conn
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .map(|c| c.into_owned());
    (peer, seen)
}

#[test]
fn external_authenticates_with_the_client_certificate_over_tls() {
    let f = pki();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = f.server.clone();
    let handle = std::thread::spawn(move || serve(listener, server));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.test]\nhost = \"mail.example.test\"\nconnect = \"127.0.0.1\"\ntls = [\"implicit\"]\ntls_port = {port}\nca_file = \"{}\"\nuser = \"alice\"\nauth = [\"external\"]\nclient_cert = \"{}\"\nclient_key = \"{}\"\ntimeout_secs = 10\n",
            f.ca.display(),
            f.client_cert.display(),
            f.client_key.display()
        ),
    )
    .unwrap();
    let out = run_tunnel(&config, &[], b"a LOGOUT\r\n");
    let (peer, seen) = handle.join().unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let first = out.first_line();
    assert!(
        first.contains("with EXTERNAL over TLSv1.3 (implicit"),
        "{first}"
    );
    assert!(first.ends_with("protection tls+strong"), "{first}");
    let expected = std::fs::read_to_string(&f.client_cert).unwrap();
    let peer = peer.expect("the server received a client certificate");
    let b64: String = expected
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    use base64::Engine;
    assert_eq!(
        peer.as_ref(),
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
            .as_slice()
    );
    assert_eq!(
        seen.first().map(String::as_str),
        Some("m1 AUTHENTICATE EXTERNAL ="),
        "{seen:?}"
    );
}
