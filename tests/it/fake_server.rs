//! In-process scripted servers with real TLS, for the attacks no real server makes.
//!
//! A [`FakeServer`] listens on 127.0.0.1, accepts one session and plays a script of
//! [`Act`]s: send bytes, read one line, start TLS with one of the test certificates
//! ([`Cert`]), close, or wait. It records every byte it receives: the raw bytes on the
//! wire (so the bytes after STARTTLS can be checked to be a ClientHello and nothing
//! else), and, once TLS is up, the decrypted bytes. It never panics on a peer's
//! behaviour: every I/O error ends the script and is noted in the [`Record`].
//!
//! The certificates come from one test PKI made with rcgen on first use ([`pki`]): a CA
//! that the account trusts through `ca_file`, and leaves for `mail.example.test` that are
//! good, self-signed, issued by an unknown CA, for another name, expired, not yet valid,
//! naming the host only in their CN, or full of terminal escapes.
//!
//! [`run_mailtun_within`] runs the real binary with a deadline, so that a hang fails the
//! test instead of stalling the suite.

use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, date_time_ymd};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::harness::mailtun_command;

/// The name every test certificate is (or is not) valid for.
pub const HOST: &str = "mail.example.test";

/// How long a fake server waits for its peer before giving up on its own.
const SERVER_PATIENCE: Duration = Duration::from_secs(20);

/// Which certificate the server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cert {
    /// Issued by the trusted test CA for [`HOST`].
    Good,
    /// Self-signed for [`HOST`].
    SelfSigned,
    /// Issued for [`HOST`] by a CA the account does not trust.
    UnknownCa,
    /// Issued by the trusted CA for another name.
    WrongName,
    /// Issued by the trusted CA for [`HOST`], expired in 2001.
    Expired,
    /// Issued by the trusted CA for [`HOST`], valid from 2090.
    NotYetValid,
    /// Issued by the trusted CA with [`HOST`] as CN and no subjectAltName.
    NoSan,
    /// Issued for [`HOST`] by an untrusted CA, with [`HOSTILE_TEXT`] in the CA's name, the
    /// subject and a second DNS name: terminal escapes, CR, LF and bidi overrides.
    HostileNames,
}

/// Text a hostile server puts wherever it can: an OSC title change, a screen clear, a CR
/// and a fake mailtun line, a right-to-left override, an isolate, a C1 NEL and DEL.
pub const HOSTILE_TEXT: &str =
    "\u{1b}]0;owned\u{7}\u{1b}[2J\rmailtun: all good \u{202e}txt.exe\u{2066}\u{85}\u{7f}";

/// Panics if `text` holds a character that can drive a terminal: a C0 or C1 control
/// other than LF, DEL, or a bidi control.
pub fn assert_terminal_safe(case: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{case}: raw control characters {bad:?} in: {text:?}"
    );
}

/// One step of a server's script.
#[derive(Debug, Clone)]
pub enum Act {
    /// Write these bytes on the current layer (plaintext or TLS), in one write.
    /// `{tag}` is replaced by the tag of the last command read (its first word), in
    /// sends of up to 64 KiB.
    Send(Vec<u8>),
    /// Read one line from the client (up to and including LF).
    ReadLine,
    /// Wait for at least one byte from the client, record what came, and go on.
    ReadSome,
    /// Accept TLS with this certificate; from now on everything is over TLS.
    Tls(Cert),
    /// Close the connection (TLS close_notify first, when TLS is up).
    Close,
    /// Write what the function makes of the last line read (without its line end):
    /// the dynamic step of a server that must answer with what the client sent (a SCRAM
    /// server-first message extends the client's nonce).
    Respond(Responder),
}

/// What an [`Act::Respond`] calls: the last line read in, the bytes to send out.
pub type RespondFn = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync;

/// The function of an [`Act::Respond`].
#[derive(Clone)]
pub struct Responder(pub Arc<RespondFn>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// Shorthand for [`Act::Respond`].
pub fn respond(f: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> Act {
    Act::Respond(Responder(Arc::new(f)))
}

/// Shorthand for [`Act::Send`].
pub fn send(bytes: impl AsRef<[u8]>) -> Act {
    Act::Send(bytes.as_ref().to_vec())
}

/// What the server saw.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// Bytes received before TLS started (the whole session if it never did).
    pub plain: Vec<u8>,
    /// Raw bytes received once TLS started: the ClientHello and what follows.
    pub raw_tls: Vec<u8>,
    /// Decrypted bytes received over TLS.
    pub decrypted: Vec<u8>,
    /// Whether a TLS handshake was started, and whether it completed.
    pub tls_started: bool,
    pub tls_established: bool,
    /// Why the server's TLS handshake failed, if it did.
    pub tls_error: Option<String>,
    /// Connections accepted (a second one would be a retry).
    pub connections: usize,
    /// The client ended the session with a TLS close_notify (over TLS) or a FIN (in
    /// plaintext), rather than by a reset or a TCP close without close_notify.
    pub closed_cleanly: bool,
}

impl Record {
    pub fn plain_text(&self) -> String {
        String::from_utf8_lossy(&self.plain).into_owned()
    }

    pub fn decrypted_text(&self) -> String {
        String::from_utf8_lossy(&self.decrypted).into_owned()
    }

    /// The lines the client sent in plaintext.
    pub fn plain_lines(&self) -> Vec<String> {
        self.plain_text().lines().map(str::to_owned).collect()
    }

    /// The lines the client sent over TLS.
    pub fn decrypted_lines(&self) -> Vec<String> {
        self.decrypted_text().lines().map(str::to_owned).collect()
    }
}

/// A scripted server running on its own thread. See the [module documentation](self).
pub struct FakeServer {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Record>>,
}

impl FakeServer {
    /// Starts a server that plays `script` on the first connection, then reads until
    /// the client closes.
    pub fn start(script: Vec<Act>) -> FakeServer {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let (stop_tx, stop_rx) = oneshot::channel();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(std_listener, script, stop_rx))
        });
        FakeServer {
            port,
            stop: Some(stop_tx),
            handle: Some(handle),
        }
    }

    /// A port where something listens and records connections, but never speaks.
    pub fn silent() -> FakeServer {
        FakeServer::start(Vec::new())
    }

    /// Stops waiting for connections and returns what the server saw. Call it after
    /// the client is gone.
    pub fn finish(mut self) -> Record {
        let _ = self.stop.take().unwrap().send(());
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("fake server thread")
    }
}

async fn serve(
    listener: std::net::TcpListener,
    script: Vec<Act>,
    mut stop: oneshot::Receiver<()>,
) -> Record {
    let listener = TcpListener::from_std(listener).unwrap();
    let mut record = Record::default();
    let tcp = tokio::select! {
        r = listener.accept() => match r {
            Ok((s, _)) => s,
            Err(_) => return record,
        },
        _ = &mut stop => return record,
        _ = tokio::time::sleep(SERVER_PATIENCE) => return record,
    };
    record.connections = 1;
    let raw = Arc::new(Mutex::new(Vec::new()));
    let _ = tokio::time::timeout(
        SERVER_PATIENCE,
        play(Recording::new(tcp, raw.clone()), script, &mut record),
    )
    .await;
    // A retry would come as a second connection; the client has exited by now, so one
    // that was made is already queued.
    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await {
        record.connections += 1;
    }
    // Split the raw log at the point where TLS started.
    let raw = raw.lock().unwrap().clone();
    let split = record.plain.len().min(raw.len());
    record.raw_tls = raw[split..].to_vec();
    record
}

enum Layer {
    Plain(Recording),
    Tls(Box<tokio_rustls::server::TlsStream<Recording>>),
    Closed,
}

async fn play(tcp: Recording, script: Vec<Act>, record: &mut Record) {
    let raw = tcp.log.clone();
    let mut layer = Layer::Plain(tcp);
    let mut last_tag = String::new();
    let mut last_line: Vec<u8> = Vec::new();
    for act in script {
        let ok = match act {
            Act::Send(bytes) => {
                let bytes = replace_tag(&bytes, &last_tag);
                match &mut layer {
                    Layer::Plain(s) => s.write_all(&bytes).await.is_ok() && s.flush().await.is_ok(),
                    Layer::Tls(s) => s.write_all(&bytes).await.is_ok() && s.flush().await.is_ok(),
                    Layer::Closed => false,
                }
            }
            Act::ReadLine => match read_line(&mut layer, record).await {
                Some(line) => {
                    // A command has a tag and a name; a one-word line (a SASL response)
                    // keeps the tag of the command it belongs to.
                    let text = String::from_utf8_lossy(&line);
                    let mut words = text.split_whitespace();
                    if let (Some(tag), Some(_)) = (words.next(), words.next()) {
                        last_tag = tag.to_string();
                    }
                    last_line = line
                        .strip_suffix(b"\n")
                        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                        .unwrap_or(&line)
                        .to_vec();
                    true
                }
                None => false,
            },
            Act::ReadSome => {
                let mut buf = [0u8; 4096];
                match &mut layer {
                    // The raw log already holds what was read.
                    Layer::Plain(s) => matches!(s.read(&mut buf).await, Ok(n) if n > 0),
                    Layer::Tls(s) => match s.read(&mut buf).await {
                        Ok(n) if n > 0 => {
                            record.decrypted.extend_from_slice(&buf[..n]);
                            true
                        }
                        _ => false,
                    },
                    Layer::Closed => false,
                }
            }
            Act::Tls(cert) => {
                let Layer::Plain(tcp) = std::mem::replace(&mut layer, Layer::Closed) else {
                    panic!("script error: TLS started twice");
                };
                // Everything logged so far was plaintext (lines are read byte by byte,
                // so nothing after them has been consumed).
                record.plain = raw.lock().unwrap().clone();
                record.tls_started = true;
                let acceptor = TlsAcceptor::from(server_config(cert));
                match acceptor.accept(tcp).await {
                    Ok(s) => {
                        record.tls_established = true;
                        layer = Layer::Tls(Box::new(s));
                        true
                    }
                    Err(e) => {
                        record.tls_error = Some(e.to_string());
                        false
                    }
                }
            }
            Act::Respond(Responder(f)) => {
                let bytes = f(&last_line);
                match &mut layer {
                    Layer::Plain(s) => s.write_all(&bytes).await.is_ok() && s.flush().await.is_ok(),
                    Layer::Tls(s) => s.write_all(&bytes).await.is_ok() && s.flush().await.is_ok(),
                    Layer::Closed => false,
                }
            }
            Act::Close => {
                match std::mem::replace(&mut layer, Layer::Closed) {
                    Layer::Plain(mut s) => {
                        let _ = s.shutdown().await;
                    }
                    Layer::Tls(mut s) => {
                        let _ = s.shutdown().await;
                    }
                    Layer::Closed => {}
                }
                false
            }
        };
        if !ok {
            break;
        }
    }
    if !record.tls_started {
        record.plain = raw.lock().unwrap().clone();
    }
    // Read (and record) until the client closes.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match &mut layer {
            Layer::Plain(s) => s.read(&mut buf).await,
            Layer::Tls(s) => s.read(&mut buf).await,
            Layer::Closed => break,
        };
        match n {
            Ok(0) => {
                record.closed_cleanly = true;
                break;
            }
            Err(_) => break,
            Ok(n) => {
                if let Layer::Tls(_) = layer {
                    record.decrypted.extend_from_slice(&buf[..n]);
                }
                if !record.tls_started {
                    record.plain = raw.lock().unwrap().clone();
                }
            }
        }
    }
}

/// Reads one line byte by byte, so that nothing after it is consumed before a TLS
/// handshake.
async fn read_line(layer: &mut Layer, record: &mut Record) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = match layer {
            Layer::Plain(s) => s.read(&mut byte).await.ok()?,
            Layer::Tls(s) => s.read(&mut byte).await.ok()?,
            Layer::Closed => return None,
        };
        if n == 0 {
            return None;
        }
        if let Layer::Tls(_) = layer {
            record.decrypted.push(byte[0]);
        }
        line.push(byte[0]);
        if byte[0] == b'\n' {
            return Some(line);
        }
    }
}

fn replace_tag(bytes: &[u8], tag: &str) -> Vec<u8> {
    // Large blobs are garbage for framing tests, sent as they are (and fast).
    if bytes.len() > 64 * 1024 {
        return bytes.to_vec();
    }
    let pattern = b"{tag}";
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(pattern) {
            out.extend_from_slice(tag.as_bytes());
            i += pattern.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// A TCP stream that appends every byte it reads to a shared log.
struct Recording {
    inner: TcpStream,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Recording {
    fn new(inner: TcpStream, log: Arc<Mutex<Vec<u8>>>) -> Self {
        Recording { inner, log }
    }
}

impl AsyncRead for Recording {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.log
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The test PKI: a trusted CA, its PEM file, and one server configuration per [`Cert`].
pub struct Pki {
    pub ca_file: PathBuf,
    configs: Vec<(Cert, Arc<ServerConfig>)>,
    /// SHA-256 of the good certificate, for pins.
    pub good_sha256: [u8; 32],
    /// SHA-256 of the self-signed certificate, for pins.
    pub self_signed_sha256: [u8; 32],
    _dir: tempfile::TempDir,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    ca_with_key(name, KeyPair::generate().unwrap())
}

/// A self-signed CA named `name` with `key` (whose algorithm signs what it issues).
pub fn ca_with_key(name: &str, key: KeyPair) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert, key)
}

/// A server certificate's parameters for `names` (CN [`HOST`]).
pub fn leaf_params(names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, HOST);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params
}

/// The test PKI, made on first use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let (ca_cert, ca_key) = ca("mailtun hostile-suite CA");
        let (other_ca, other_key) = ca("mailtun unknown CA");
        let mut configs = Vec::new();
        let mut good_sha256 = [0u8; 32];
        let mut self_signed_sha256 = [0u8; 32];
        for kind in [
            Cert::Good,
            Cert::SelfSigned,
            Cert::UnknownCa,
            Cert::WrongName,
            Cert::Expired,
            Cert::NotYetValid,
            Cert::NoSan,
            Cert::HostileNames,
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = match kind {
                Cert::Good => leaf_params(&[HOST]).signed_by(&key, &ca_cert, &ca_key),
                Cert::SelfSigned => leaf_params(&[HOST]).self_signed(&key),
                Cert::UnknownCa => leaf_params(&[HOST]).signed_by(&key, &other_ca, &other_key),
                Cert::WrongName => {
                    leaf_params(&["other.example.test"]).signed_by(&key, &ca_cert, &ca_key)
                }
                Cert::Expired => {
                    let mut p = leaf_params(&[HOST]);
                    p.not_before = date_time_ymd(2000, 1, 1);
                    p.not_after = date_time_ymd(2001, 1, 1);
                    p.signed_by(&key, &ca_cert, &ca_key)
                }
                Cert::NotYetValid => {
                    let mut p = leaf_params(&[HOST]);
                    p.not_before = date_time_ymd(2090, 1, 1);
                    p.not_after = date_time_ymd(2091, 1, 1);
                    p.signed_by(&key, &ca_cert, &ca_key)
                }
                Cert::NoSan => leaf_params(&[]).signed_by(&key, &ca_cert, &ca_key),
                Cert::HostileNames => {
                    let (evil_ca, evil_key) = ca(&format!("Evil CA {HOSTILE_TEXT}"));
                    let mut p = leaf_params(&[HOST]);
                    p.distinguished_name = rcgen::DistinguishedName::new();
                    p.distinguished_name
                        .push(DnType::CommonName, format!("{HOST} {HOSTILE_TEXT}"));
                    p.subject_alt_names.push(rcgen::SanType::DnsName(
                        "evil\u{1b}[31m.example.test".try_into().unwrap(),
                    ));
                    p.signed_by(&key, &evil_ca, &evil_key)
                }
            }
            .unwrap();
            {
                use sha2::Digest;
                match kind {
                    Cert::Good => good_sha256 = sha2::Sha256::digest(cert.der()).into(),
                    Cert::SelfSigned => {
                        self_signed_sha256 = sha2::Sha256::digest(cert.der()).into()
                    }
                    _ => {}
                }
            }
            let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            let config = ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
            configs.push((kind, Arc::new(config)));
        }
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        Pki {
            ca_file,
            configs,
            good_sha256,
            self_signed_sha256,
            _dir: dir,
        }
    })
}

pub fn server_config(cert: Cert) -> Arc<ServerConfig> {
    pki()
        .configs
        .iter()
        .find(|(k, _)| *k == cert)
        .map(|(_, c)| c.clone())
        .unwrap()
}

/// What a deadline-bounded run of the binary produced.
pub struct Run {
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub code: Option<i32>,
    pub elapsed: Duration,
    /// The run was killed at the deadline.
    pub killed: bool,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `mailtun --config CONFIG tunnel test` with an empty stdin, the harness's
/// Kerberos configuration, and kills it after `deadline`.
/// Global `flags` (`-vv`) go before `--config`.
pub fn run_mailtun_within(config: &std::path::Path, flags: &[&str], deadline: Duration) -> Run {
    let mut args = flags.to_vec();
    args.extend(["--config", config.to_str().unwrap(), "tunnel", "test"]);
    run_args_within(&args, deadline)
}

/// Runs `mailtun ARGS` as [`run_mailtun_within`] does.
pub fn run_args_within(args: &[&str], deadline: Duration) -> Run {
    let start = Instant::now();
    let mut child = mailtun_command(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn mailtun");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            killed = true;
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    Run {
        stdout: out_reader.join().unwrap(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        code: status.code(),
        elapsed,
        killed,
    }
}
