//! -PLUS and OAuth mechanisms through the real `mailtun tunnel`, against an in-process
//! IMAP server whose verification is an independent implementation: rsasl's server side
//! (SCRAM-SHA-1/256 and their -PLUS forms, OAUTHBEARER, XOAUTH2), never our own code.
//!
//! The server speaks implicit TLS with the test PKI's good certificate for
//! `mail.example.test` (trusted through `ca_file`), and gives rsasl the channel-binding
//! data of its own TLS session: `export_keying_material` with the label
//! `EXPORTER-Channel-Binding`, 32 bytes, no context (tls-exporter, RFC 9266). A server
//! configured with another label stands for a TLS-terminating relay: its binding data
//! differs from the client's.
//!
//! On TLS 1.2 the server allows no other version, and its binding is tls-server-end-point
//! (RFC 5929), computed here from the certificate rcgen made: SHA-256 of its DER for a
//! SHA-256 signature, SHA-384 for a SHA-384 one (section 4.1). rsasl asks for the binding
//! by the name the client put in its gs2 header, so a client that said `tls-exporter`
//! would get no data and fail. An Ed25519 certificate has no such binding: -PLUS cannot
//! start and SCRAM runs without one.

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::digest::Digest;
use hmac::digest::core_api::BlockSizeUser;
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::oauthbearer::OAUTHBEARER;
use rsasl::mechanisms::oauthbearer::properties::{OAuthBearerError, OAuthBearerValidate};
use rsasl::mechanisms::scram::properties::ScramStoredPassword;
use rsasl::mechanisms::scram::tools::{derive_keys, hash_password};
use rsasl::mechanisms::scram::{SCRAM_SHA1, SCRAM_SHA1_PLUS, SCRAM_SHA256, SCRAM_SHA256_PLUS};
use rsasl::mechanisms::xoauth2::XOAUTH2;
use rsasl::mechanisms::xoauth2::properties::XOAuth2Validate;
use rsasl::prelude::{
    ChannelBindingCallback, Mechname, Registry, SASLConfig, SASLServer, SessionError,
};
use rsasl::property::{AuthId, OAuthBearerToken};
use rsasl::validate::NoValidation;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::EXIT_AUTH;
use crate::fake_server::{Cert, HOST, ca_with_key, leaf_params, pki, server_config};
use crate::harness::{Output, run_tunnel};

const PASSWORD: &str = "oracle-Pass.789";
const TOKEN: &str = "ya29.oracle-token-0123456789";

static ALL_SCRAM: &[rsasl::prelude::Mechanism] =
    &[SCRAM_SHA1, SCRAM_SHA1_PLUS, SCRAM_SHA256, SCRAM_SHA256_PLUS];
static SCRAM_WITHOUT_PLUS: &[rsasl::prelude::Mechanism] = &[SCRAM_SHA1, SCRAM_SHA256];
static OAUTH: &[rsasl::prelude::Mechanism] = &[OAUTHBEARER, XOAUTH2];
static MIXED: &[rsasl::prelude::Mechanism] = &[OAUTHBEARER, XOAUTH2, SCRAM_SHA256_PLUS];

/// The channel-binding data the oracle gives rsasl.
enum Binding {
    /// tls-exporter from its own side of the TLS session, with this exporter label (the
    /// right one is `EXPORTER-Channel-Binding`).
    Exporter(&'static [u8]),
    /// tls-server-end-point, as the test computed it.
    ServerEndPoint(Vec<u8>),
}

/// How the oracle server behaves.
struct Oracle {
    /// The `AUTH=` capabilities it advertises.
    advertise: &'static str,
    /// The mechanisms rsasl runs.
    registry: &'static [rsasl::prelude::Mechanism],
    /// Its TLS configuration: certificate and protocol versions.
    tls: Arc<ServerConfig>,
    /// Its channel-binding data.
    binding: Binding,
    /// The token it accepts.
    token: &'static str,
}

impl Default for Oracle {
    fn default() -> Self {
        Oracle {
            advertise: "AUTH=SCRAM-SHA-256-PLUS AUTH=SCRAM-SHA-1-PLUS AUTH=SCRAM-SHA-256 AUTH=SCRAM-SHA-1",
            registry: ALL_SCRAM,
            tls: server_config(Cert::Good),
            binding: Binding::Exporter(b"EXPORTER-Channel-Binding"),
            token: TOKEN,
        }
    }
}

/// What the server saw.
#[derive(Debug, Default)]
struct Seen {
    /// Mechanisms the client asked for with AUTHENTICATE.
    mechanisms: Vec<String>,
    /// The client's first SASL message (for SCRAM: starts with the gs2 header).
    first_messages: Vec<Vec<u8>>,
    /// "OK" or "NO: why" per AUTHENTICATE.
    outcomes: Vec<String>,
    /// Bearer tokens rsasl handed to the validation callback.
    tokens: Vec<String>,
    /// Everything the client sent, decrypted.
    received: Vec<u8>,
}

/// rsasl's callback: the stored SCRAM keys for the password, and the token check.
struct Callback {
    stored: Option<Stored>,
    token: &'static str,
    seen: Arc<Mutex<Seen>>,
    /// Set when the token was refused (rsasl's OAuth servers finish the exchange either
    /// way; the protocol reply says which).
    refused: Arc<Mutex<bool>>,
}

struct Stored {
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

fn stored<D>(password: &str) -> Stored
where
    D: Digest + BlockSizeUser + Clone + Sync + hmac::digest::FixedOutputReset,
{
    let salt = b"oracle salt".to_vec();
    let mut salted = Default::default();
    hash_password::<D>(password.as_bytes(), 4096, &salt, &mut salted);
    let (client_key, server_key) = derive_keys::<D>(salted.as_slice());
    Stored {
        salt,
        stored_key: D::digest(client_key).to_vec(),
        server_key: server_key.to_vec(),
    }
}

impl SessionCallback for Callback {
    fn callback(
        &self,
        _session_data: &SessionData,
        context: &Context,
        request: &mut Request,
    ) -> Result<(), SessionError> {
        if let Some(s) = &self.stored {
            request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                4096,
                &s.salt,
                &s.stored_key,
                &s.server_key,
            ))?;
        }
        let mut token = context.get_ref::<OAuthBearerToken>();
        if request.is::<OAuthBearerValidate>() {
            // rsasl's OAUTHBEARER hands over the whole `auth` value (RFC 7628 section 3.1:
            // `auth=` scheme SP token); the scheme must be Bearer.
            token = token.and_then(|t| {
                let (scheme, token) = t.split_once(' ')?;
                scheme.eq_ignore_ascii_case("Bearer").then_some(token)
            });
        }
        let good = token == Some(self.token);
        if let Some(t) = token {
            self.seen.lock().unwrap().tokens.push(t.to_string());
        }
        if request.is::<OAuthBearerValidate>() {
            *self.refused.lock().unwrap() = !good;
            let result = if good {
                Ok(())
            } else {
                Err(OAuthBearerError::new("invalid_token", Some("mail"), None))
            };
            request.satisfy::<OAuthBearerValidate>(&result)?;
        }
        if request.is::<XOAuth2Validate>() {
            let good = good && context.get_ref::<AuthId>() == Some("alice");
            *self.refused.lock().unwrap() = !good;
            let result = if good {
                Ok(())
            } else {
                Err(r#"{"status":"401","schemes":"bearer","scope":"mail"}"#)
            };
            request.satisfy::<XOAuth2Validate>(&result)?;
        }
        Ok(())
    }
}

/// Binding data for one channel-binding type only.
#[derive(Clone)]
struct Cb {
    name: &'static str,
    data: Vec<u8>,
}

impl ChannelBindingCallback for Cb {
    fn get_cb_data(&self, cbname: &str) -> Option<&[u8]> {
        (cbname == self.name).then_some(self.data.as_slice())
    }
}

/// A running oracle server on 127.0.0.1.
struct Server {
    port: u16,
    handle: std::thread::JoinHandle<()>,
    seen: Arc<Mutex<Seen>>,
}

impl Server {
    fn start(oracle: Oracle) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let seen2 = seen.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(20), serve(listener, oracle, seen2))
                        .await;
            });
        });
        Server { port, handle, seen }
    }

    fn finish(self) -> Seen {
        self.handle.join().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn serve(listener: std::net::TcpListener, oracle: Oracle, seen: Arc<Mutex<Seen>>) {
    let listener = TcpListener::from_std(listener).unwrap();
    let Ok((tcp, _)) = listener.accept().await else {
        return;
    };
    let Ok(tls) = TlsAcceptor::from(oracle.tls.clone()).accept(tcp).await else {
        return;
    };
    let cb = match &oracle.binding {
        // The server's own channel-binding data (RFC 9266), from its side of the session.
        Binding::Exporter(label) => Cb {
            name: "tls-exporter",
            data: tls
                .get_ref()
                .1
                .export_keying_material([0u8; 32], label, None)
                .unwrap()
                .to_vec(),
        },
        Binding::ServerEndPoint(data) => Cb {
            name: "tls-server-end-point",
            data: data.clone(),
        },
    };
    let mut io = BufReader::new(tls);
    let caps = format!("IMAP4rev1 SASL-IR {}", oracle.advertise);
    macro_rules! send {
        ($($arg:tt)*) => {
            if io.get_mut().write_all(format!($($arg)*).as_bytes()).await.is_err() {
                return;
            }
            let _ = io.get_mut().flush().await;
        };
    }
    macro_rules! read_line {
        () => {{
            let mut line = Vec::new();
            match io.read_until(b'\n', &mut line).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            seen.lock().unwrap().received.extend_from_slice(&line);
            String::from_utf8_lossy(&line).trim_end().to_string()
        }};
    }
    send!("* OK [CAPABILITY {caps}] oracle ready\r\n");
    loop {
        let line = read_line!();
        let mut words = line.split(' ');
        let tag = words.next().unwrap_or("").to_string();
        let command = words.next().unwrap_or("").to_ascii_uppercase();
        match command.as_str() {
            "CAPABILITY" => {
                send!("* CAPABILITY {caps}\r\n{tag} OK done\r\n");
            }
            "LOGOUT" => {
                send!("* BYE oracle logging out\r\n{tag} OK Logout completed\r\n");
                let _ = io.get_mut().shutdown().await;
                return;
            }
            "AUTHENTICATE" => {
                let mech = words.next().unwrap_or("").to_ascii_uppercase();
                seen.lock().unwrap().mechanisms.push(mech.clone());
                let mut input = match words.next() {
                    Some("=") => Vec::new(),
                    Some(ir) => B64.decode(ir).unwrap_or_default(),
                    None => {
                        send!("+ \r\n");
                        let l = read_line!();
                        B64.decode(l).unwrap_or_default()
                    }
                };
                seen.lock().unwrap().first_messages.push(input.clone());
                let refused = Arc::new(Mutex::new(false));
                let callback = Callback {
                    stored: match mech.as_str() {
                        "SCRAM-SHA-1" | "SCRAM-SHA-1-PLUS" => Some(stored::<sha1::Sha1>(PASSWORD)),
                        "SCRAM-SHA-256" | "SCRAM-SHA-256-PLUS" => {
                            Some(stored::<sha2::Sha256>(PASSWORD))
                        }
                        _ => None,
                    },
                    token: oracle.token,
                    seen: seen.clone(),
                    refused: refused.clone(),
                };
                let config = SASLConfig::builder()
                    .with_registry(Registry::with_mechanisms(oracle.registry))
                    .with_callback(callback)
                    .unwrap();
                let server = SASLServer::<NoValidation, Cb>::with_cb(config, cb.clone());
                let mut session = match Mechname::parse(mech.as_bytes())
                    .ok()
                    .and_then(|m| server.start_suggested(m).ok())
                {
                    Some(s) => s,
                    None => {
                        seen.lock()
                            .unwrap()
                            .outcomes
                            .push("NO: unknown mechanism".into());
                        send!("{tag} NO [AUTHENTICATIONFAILED] unsupported mechanism\r\n");
                        continue;
                    }
                };
                let outcome = loop {
                    let mut out = Cursor::new(Vec::new());
                    match session.step(Some(&input), &mut out) {
                        Err(e) => break format!("NO: {e}"),
                        Ok(state) => {
                            let out = out.into_inner();
                            let error = out.starts_with(b"e=");
                            if error {
                                // The client may hang up on reading it: record it first.
                                let why = format!("NO: {}", String::from_utf8_lossy(&out));
                                seen.lock().unwrap().outcomes.push(why);
                            }
                            if state.has_sent_message() {
                                send!("+ {}\r\n", B64.encode(&out));
                                let l = read_line!();
                                if l == "*" {
                                    break "NO: cancelled".to_string();
                                }
                                input = B64.decode(l).unwrap_or_default();
                            }
                            if state.is_finished() {
                                break if error {
                                    format!("NO: {}", String::from_utf8_lossy(&out))
                                } else if *refused.lock().unwrap() {
                                    "NO: token refused".to_string()
                                } else {
                                    "OK".to_string()
                                };
                            }
                        }
                    }
                };
                if !outcome.starts_with("NO: e=") {
                    seen.lock().unwrap().outcomes.push(outcome.clone());
                }
                if outcome == "OK" {
                    send!("{tag} OK [CAPABILITY IMAP4rev1 IDLE] oracle: {mech} verified\r\n");
                } else {
                    send!("{tag} NO [AUTHENTICATIONFAILED] oracle: {outcome}\r\n");
                }
            }
            _ => {
                send!("{tag} BAD unknown command\r\n");
            }
        }
    }
}

/// Starts `oracle`, runs `mailtun -vv tunnel test` against it with `auth`, and returns
/// the run and what the oracle saw.
fn tunnel(oracle: Oracle, auth: &str) -> (Output, Seen) {
    tunnel_trusting(oracle, auth, &pki().ca_file)
}

/// Like [`tunnel`], trusting the CA in `ca_file`.
fn tunnel_trusting(oracle: Oracle, auth: &str, ca_file: &std::path::Path) -> (Output, Seen) {
    let server = Server::start(oracle);
    let dir = tempfile::tempdir().unwrap();
    let out = tunnel_in(dir.path(), server.port, auth, ca_file);
    (out, server.finish())
}

/// Like [`tunnel`], in `dir`. The password and token commands are scripts that append
/// their own argv and environment, and those of their parent and grandparent (`sh -c`
/// and mailtun), to `dir/dump` before printing the secret.
fn tunnel_in(dir: &std::path::Path, port: u16, auth: &str, ca_file: &std::path::Path) -> Output {
    let dump = dir.join("dump");
    let script = |name: &str, secret: &str| {
        let file = dir.join(format!("{name}.secret"));
        std::fs::write(&file, format!("{secret}\n")).unwrap();
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\np=$$\nfor i in 1 2 3; do\n  tr '\\0' '\\n' < /proc/$p/cmdline >> {dump}\n  tr '\\0' '\\n' < /proc/$p/environ >> {dump}\n  p=$(cut -d' ' -f4 /proc/$p/stat)\ndone\ncat {file}\n",
                dump = dump.display(),
                file = file.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let pw = script("pw", PASSWORD);
    let token = script("token", TOKEN);
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.test]\nhost = \"mail.example.test\"\nconnect = \"127.0.0.1\"\ntls = [\"implicit\"]\ntls_port = {port}\nca_file = \"{ca}\"\nuser = \"alice\"\nauth = {auth}\ntimeout_secs = 10\npassword = {{ command = \"{pw}\" }}\noauth_token_command = \"{token}\"\n",
            ca = ca_file.display(),
            pw = pw.display(),
            token = token.display(),
        ),
    )
    .unwrap();
    run_tunnel(&config, &["-vv"], b"a LOGOUT\r\n")
}

/// Neither the password, the token, nor their base64 forms are in the trace.
fn assert_no_secret(trace: &str) {
    for secret in [PASSWORD, TOKEN] {
        assert!(!trace.contains(secret), "a secret leaked into the trace");
        assert!(
            !trace.contains(&B64.encode(secret)),
            "a secret's base64 leaked into the trace"
        );
    }
    for form in [
        "n,a=alice,\x01host=mail.example.test\x01".to_string(),
        format!("user=alice\x01auth=Bearer {TOKEN}\x01\x01"),
    ] {
        assert!(!trace.contains(&B64.encode(form)[..16]));
    }
}

/// A -PLUS session that reached PREAUTH: `mechanism` over `tls`, bound with `binding`
/// on the wire, verified by rsasl, logged out, and no secret in the trace.
fn assert_bound_session(out: &Output, seen: &Seen, mechanism: &str, tls: &str, binding: &str) {
    assert_eq!(out.code, Some(0), "{mechanism}: {}", out.stderr);
    let first = out.first_line();
    assert!(first.starts_with("* PREAUTH"), "{first}");
    assert!(
        first.contains(&format!("with {mechanism} over {tls} (implicit")),
        "{first}"
    );
    assert!(first.ends_with("protection tls+strong"), "{first}");
    assert_eq!(seen.mechanisms, [mechanism]);
    assert_eq!(seen.outcomes, ["OK"], "{mechanism}");
    let gs2 = format!("p={binding},,n=alice,r=");
    assert!(
        seen.first_messages[0].starts_with(gs2.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&seen.first_messages[0])
    );
    assert!(out.stdout_text().contains("a OK Logout completed"));
    assert_no_secret(&out.stderr);
}

/// SCRAM-SHA-256-PLUS refused by rsasl for a binding that differs: the authentication
/// exit code, BYE to the client, nothing else tried, and no secret in the trace.
fn assert_binding_refused(out: &Output, seen: &Seen) {
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert!(
        out.first_line().starts_with("* BYE [AUTHENTICATIONFAILED]"),
        "{}",
        out.first_line()
    );
    assert_eq!(seen.mechanisms, ["SCRAM-SHA-256-PLUS"]);
    assert!(
        seen.outcomes[0].contains("e=channel-bindings-dont-match"),
        "{:?}",
        seen.outcomes
    );
    assert!(
        out.stderr.contains("channel-bindings-dont-match"),
        "{}",
        out.stderr
    );
    assert_no_secret(&out.stderr);
}

#[test]
fn scram_plus_with_tls_exporter_verified_by_rsasl() {
    for (auth, expected) in [
        ("[\"scram-sha-256-plus\"]", "SCRAM-SHA-256-PLUS"),
        ("[\"scram-sha-1-plus\"]", "SCRAM-SHA-1-PLUS"),
        // "auto" ranks -PLUS above plain SCRAM (GSSAPI is not offered).
        ("\"auto\"", "SCRAM-SHA-256-PLUS"),
    ] {
        let (out, seen) = tunnel(Oracle::default(), auth);
        assert_bound_session(&out, &seen, expected, "TLSv1.3", "tls-exporter");
    }
}

#[test]
fn scram_plus_fails_when_the_server_binding_data_differs() {
    // The server binds to another exporter label: as a TLS-terminating relay would, it
    // sees a different channel. rsasl refuses the proof; nothing else is tried.
    let (out, seen) = tunnel(
        Oracle {
            binding: Binding::Exporter(b"EXPORTER-not-the-channel-binding"),
            ..Oracle::default()
        },
        "[\"scram-sha-256-plus\"]",
    );
    assert_binding_refused(&out, &seen);
}

/// A server that speaks TLS 1.2 only, with a certificate for [`HOST`] issued by a CA of
/// its own whose key is `alg` (so the certificate's signature is `alg` too).
struct Tls12 {
    tls: Arc<ServerConfig>,
    /// The end-entity certificate, DER.
    leaf: Vec<u8>,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn tls12_server(alg: &'static rcgen::SignatureAlgorithm) -> Tls12 {
    let (ca_cert, ca_key) = ca_with_key(
        "mailtun TLS 1.2 CA",
        rcgen::KeyPair::generate_for(alg).unwrap(),
    );
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let leaf = leaf_params(&[HOST])
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let tls =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    Tls12 {
        tls: Arc::new(tls),
        leaf: leaf.der().to_vec(),
        ca_file,
        _dir: dir,
    }
}

/// The OID of the certificate's signature algorithm, as x509-parser reads it.
fn signature_oid(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.signature_algorithm.algorithm.to_id_string()
}

#[test]
fn scram_plus_on_tls12_binds_to_the_server_end_point_verified_by_rsasl() {
    // RFC 5929 section 4.1: the certificate's signature hash, SHA-256 for MD5 and SHA-1.
    type Hash = fn(&[u8]) -> Vec<u8>;
    let sha256: Hash = |d| sha2::Sha256::digest(d).to_vec();
    let sha384: Hash = |d| sha2::Sha384::digest(d).to_vec();
    let p256_runs = [
        ("[\"scram-sha-256-plus\"]", "SCRAM-SHA-256-PLUS"),
        ("[\"scram-sha-1-plus\"]", "SCRAM-SHA-1-PLUS"),
        ("\"auto\"", "SCRAM-SHA-256-PLUS"),
    ];
    let p384_runs = [("[\"scram-sha-256-plus\"]", "SCRAM-SHA-256-PLUS")];
    let cases = [
        // ecdsa-with-SHA256
        (
            &rcgen::PKCS_ECDSA_P256_SHA256,
            "1.2.840.10045.4.3.2",
            sha256,
            &p256_runs[..],
        ),
        // ecdsa-with-SHA384
        (
            &rcgen::PKCS_ECDSA_P384_SHA384,
            "1.2.840.10045.4.3.3",
            sha384,
            &p384_runs[..],
        ),
    ];
    for (alg, oid, hash, runs) in cases {
        let pki12 = tls12_server(alg);
        assert_eq!(signature_oid(&pki12.leaf), oid);
        for (auth, expected) in runs {
            let (out, seen) = tunnel_trusting(
                Oracle {
                    tls: pki12.tls.clone(),
                    binding: Binding::ServerEndPoint(hash(&pki12.leaf)),
                    ..Oracle::default()
                },
                auth,
                &pki12.ca_file,
            );
            assert_eq!(out.code, Some(0), "{oid} {auth}: {}\n{seen:?}", out.stderr);
            assert_bound_session(&out, &seen, expected, "TLSv1.2", "tls-server-end-point");
        }
    }
}

#[test]
fn tls12_with_an_ed25519_certificate_has_no_binding_and_falls_back_to_scram() {
    // Ed25519 names no single hash: RFC 5929 defines no tls-server-end-point for it, so
    // -PLUS cannot start and "auto" goes on to SCRAM-SHA-256 without binding ("n").
    let pki12 = tls12_server(&rcgen::PKCS_ED25519);
    assert_eq!(signature_oid(&pki12.leaf), "1.3.101.112");
    let (out, seen) = tunnel_trusting(
        Oracle {
            tls: pki12.tls.clone(),
            binding: Binding::ServerEndPoint(Vec::new()),
            ..Oracle::default()
        },
        "\"auto\"",
        &pki12.ca_file,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.first_line().contains("with SCRAM-SHA-256 over TLSv1.2"),
        "{}",
        out.first_line()
    );
    assert_eq!(seen.mechanisms, ["SCRAM-SHA-256"]);
    assert!(
        seen.first_messages[0].starts_with(b"n,,n=alice,r="),
        "{:?}",
        String::from_utf8_lossy(&seen.first_messages[0])
    );
    assert!(
        out.stderr.contains("no channel-binding data"),
        "{}",
        out.stderr
    );
}

#[test]
fn scram_plus_on_tls12_fails_when_the_server_end_point_differs() {
    // The server binds to another certificate's hash, as a TLS-terminating relay with its
    // own certificate would: rsasl refuses the proof; nothing else is tried.
    let pki12 = tls12_server(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (out, seen) = tunnel_trusting(
        Oracle {
            tls: pki12.tls.clone(),
            binding: Binding::ServerEndPoint(pki().good_sha256.to_vec()),
            ..Oracle::default()
        },
        "[\"scram-sha-256-plus\"]",
        &pki12.ca_file,
    );
    assert_binding_refused(&out, &seen);
    assert!(
        seen.first_messages[0].starts_with(b"p=tls-server-end-point,"),
        "{:?}",
        String::from_utf8_lossy(&seen.first_messages[0])
    );
    // Nor on the wire.
    let wire = String::from_utf8_lossy(&seen.received);
    assert!(!wire.contains(PASSWORD) && !wire.contains(&B64.encode(PASSWORD)));
}

#[test]
fn y_flag_when_the_server_does_not_offer_plus() {
    let (out, seen) = tunnel(
        Oracle {
            advertise: "AUTH=SCRAM-SHA-256",
            registry: SCRAM_WITHOUT_PLUS,
            ..Oracle::default()
        },
        "[\"scram-sha-256\"]",
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.first_line().contains("with SCRAM-SHA-256 over TLSv1.3"));
    assert_eq!(seen.outcomes, ["OK"]);
    assert!(
        seen.first_messages[0].starts_with(b"y,,n=alice,r="),
        "{:?}",
        String::from_utf8_lossy(&seen.first_messages[0])
    );
}

#[test]
fn only_plus_offered_and_plain_scram_allowed_binds_with_plus() {
    // Issue 12: plain SCRAM in `auth` stands for its -PLUS form when the server offers
    // it and the link can bind (RFC 5802 section 6), so this is a bound session, not a
    // refusal.
    let (out, seen) = tunnel(
        Oracle {
            advertise: "AUTH=SCRAM-SHA-256-PLUS AUTH=SCRAM-SHA-1-PLUS",
            ..Oracle::default()
        },
        "[\"scram-sha-256\", \"scram-sha-1\"]",
    );
    assert_bound_session(&out, &seen, "SCRAM-SHA-256-PLUS", "TLSv1.3", "tls-exporter");
}

#[test]
fn oauthbearer_and_xoauth2_tokens_verified_by_rsasl() {
    for (auth, expected) in [
        ("[\"oauthbearer\"]", "OAUTHBEARER"),
        ("[\"xoauth2\"]", "XOAUTH2"),
    ] {
        let (out, seen) = tunnel(
            Oracle {
                advertise: "AUTH=OAUTHBEARER AUTH=XOAUTH2",
                registry: OAUTH,
                ..Oracle::default()
            },
            auth,
        );
        assert_eq!(out.code, Some(0), "{auth}: {}\n{seen:?}", out.stderr);
        let first = out.first_line();
        assert!(
            first.contains(&format!("with {expected} over TLSv1.3")),
            "{first}"
        );
        assert!(first.ends_with("protection tls"), "{first}");
        assert_eq!(seen.outcomes, ["OK"]);
        assert_eq!(seen.tokens, [TOKEN]);
        if expected == "OAUTHBEARER" {
            // RFC 7628 section 3.1: gs2 header, then host and port key/values.
            let msg = String::from_utf8_lossy(&seen.first_messages[0]).into_owned();
            assert!(
                msg.starts_with("n,a=alice,\x01host=mail.example.test\x01port="),
                "{msg:?}"
            );
        }
        assert_no_secret(&out.stderr);
    }
}

#[test]
fn a_refused_token_reports_the_servers_status() {
    for (auth, status) in [
        ("[\"oauthbearer\"]", "status invalid_token, scope `mail`"),
        ("[\"xoauth2\"]", "status 401"),
    ] {
        let (out, seen) = tunnel(
            Oracle {
                advertise: "AUTH=OAUTHBEARER AUTH=XOAUTH2",
                registry: OAUTH,
                token: "another-token",
                ..Oracle::default()
            },
            auth,
        );
        assert_eq!(out.code, Some(EXIT_AUTH), "{auth}: {}", out.stderr);
        assert_eq!(seen.outcomes, ["NO: token refused"]);
        assert!(
            out.first_line().starts_with("* BYE [AUTHENTICATIONFAILED]"),
            "{}",
            out.first_line()
        );
        assert!(out.first_line().contains(status), "{}", out.first_line());
        assert!(out.stderr.contains(status), "{}", out.stderr);
        assert_no_secret(&out.stderr);
    }
}

#[test]
fn secrets_never_reach_a_childs_argv_or_environment() {
    // OAUTHBEARER is refused, so XOAUTH2 runs the token command again while mailtun
    // holds the token; then SCRAM-SHA-256-PLUS runs the password command while mailtun
    // holds both. Each command recorded its own argv and environment and mailtun's.
    let server = Server::start(Oracle {
        advertise: "AUTH=OAUTHBEARER AUTH=XOAUTH2 AUTH=SCRAM-SHA-256-PLUS",
        registry: MIXED,
        token: "another-token",
        ..Oracle::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let out = tunnel_in(
        dir.path(),
        server.port,
        "[\"oauthbearer\", \"xoauth2\", \"scram-sha-256-plus\"]",
        &pki().ca_file,
    );
    let seen = server.finish();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        seen.mechanisms,
        ["OAUTHBEARER", "XOAUTH2", "SCRAM-SHA-256-PLUS"]
    );
    let dump = std::fs::read_to_string(dir.path().join("dump")).unwrap();
    // Three runs, each with three processes' argv and environment; mailtun among them.
    assert!(dump.matches("tunnel").count() >= 3, "{dump}");
    for secret in [PASSWORD, TOKEN] {
        assert!(!dump.contains(secret), "a secret reached a child: {dump}");
        assert!(!dump.contains(&B64.encode(secret)));
    }
    assert_no_secret(&out.stderr);
}
