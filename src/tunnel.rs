//! Hands an authenticated session to the local client (mutt `tunnel`, mbsync `Tunnel`,
//! offlineimap `preauthtunnel`, fetchmail `plugin`) and relays bytes both ways.
//!
//! The relay forwards every chunk as it arrives (no added latency), holds at most one
//! buffer per direction (bounded memory, backpressure from the slower side), and ends
//! when the server is done: the client gets the server's last bytes, then EOF.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::unix::pipe;
use tokio::sync::Notify;

use crate::config::{Account, Protocol};
use crate::error::Class;
use crate::protocol::Capabilities;
use crate::protocol::local::{LocalEvent, LocalPop3, LocalSide, LocalSmtp};
use crate::sasl::{Layer, Mechanism, SaslError, take_layer_token};
use crate::session::Established;

/// Size of each direction's buffer.
const CHUNK: usize = 64 * 1024;
/// How long the server may stay silent after the client closed its side before the
/// session ends.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The capabilities the client sees: the server's, without what only concerned the
/// authentication that mailtun already did.
pub fn client_capabilities(caps: &Capabilities) -> Vec<String> {
    let mut out: Vec<String> = caps
        .raw
        .iter()
        .filter(|c| {
            let u = c.to_ascii_uppercase();
            !(u == "STARTTLS" || u == "LOGINDISABLED" || u == "SASL-IR" || u.starts_with("AUTH="))
        })
        .cloned()
        .collect();
    if !out
        .iter()
        .any(|c| c.to_ascii_uppercase().starts_with("IMAP4REV"))
    {
        out.insert(0, "IMAP4rev1".into());
    }
    out
}

/// Who was authenticated where and how, for the greeting and the logs.
pub fn summary(account: &Account, est: &Established) -> String {
    let who = if !account.user.is_empty() {
        account.user.clone()
    } else if let Some(p) = &account.gssapi.principal {
        p.clone()
    } else {
        "the Kerberos principal".into()
    };
    let protection = match (&est.tls, est.layer.as_ref().and_then(|m| m.layer())) {
        (Some(t), _) if t.trust == crate::policy::LinkTrust::UnverifiedTls => format!(
            "unverified TLS ({}, {} on port {})",
            t.version, est.method, est.port
        ),
        (Some(t), _) => format!("{} ({} on port {})", t.version, est.method, est.port),
        (None, Some(l)) if l.confidentiality => {
            format!(
                "no TLS (port {}) with the {} confidentiality layer",
                est.port, est.mechanism
            )
        }
        (None, Some(_)) => format!(
            "no TLS (port {}) with the {} integrity layer",
            est.port, est.mechanism
        ),
        (None, None) => format!("no TLS (port {})", est.port),
    };
    format!(
        "{who} authenticated to {} with {} over {protection}, protection {}",
        account.host, est.mechanism, est.combination
    )
}

/// The IMAP greeting that tells the client it is already authenticated.
pub fn imap_greeting(account: &Account, est: &Established) -> Vec<u8> {
    format!(
        "* PREAUTH [CAPABILITY {}] mailtun: {}\r\n",
        client_capabilities(&est.capabilities).join(" "),
        summary(account, est)
    )
    .into_bytes()
}

/// Hands the authenticated session to the client: the protocol's pre-authenticated
/// greeting (IMAP `PREAUTH`; for POP3 and SMTP a local greeting, with the client's own
/// login commands answered here and never forwarded), then the relay.
pub async fn hand_over<R, W>(
    account: &Account,
    est: Established,
    mut client_in: R,
    mut client_out: W,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let text = summary(account, &est);
    let greeting = imap_greeting(account, &est);
    // From now on SIGTERM and SIGHUP close the session cleanly instead of killing the
    // process: the server gets a TLS close_notify (and an IMAP server no half-read
    // command), and the exit code is 0.
    let stop = termination_signal();
    tokio::pin!(stop);
    // With a security layer, every byte after the authentication reply is a layer token:
    // the session unwrapped those it read, the rest is still to unwrap.
    let leftover = est.leftover;
    let mut server: Box<dyn ServerStream> = match est.layer {
        Some(mech) => Box::new(Layered::new(est.link, mech, est.layer_pending)),
        None => Box::new(est.link),
    };
    let mut local: Box<dyn LocalSide> = match account.protocol {
        Protocol::Imap => {
            client_out.write_all(&greeting).await?;
            client_out.flush().await?;
            return relay_until(
                server,
                account.idle_timeout,
                leftover,
                client_in,
                client_out,
                stop,
            )
            .await;
        }
        Protocol::Pop3 => Box::new(LocalPop3::new(&text, &est.capabilities)),
        Protocol::Smtp => Box::new(LocalSmtp::new(&account.host, &text, &est.capabilities)),
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let event = local.poll().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("the mail client: {e}"))
        })?;
        match event {
            LocalEvent::NeedInput => {
                let n = tokio::select! {
                    r = client_in.read(&mut buf) => r?,
                    () = &mut stop => 0,
                };
                if n == 0 {
                    // The client left before its first mail command.
                    let _ = tokio::time::timeout(Duration::from_secs(1), server.shutdown()).await;
                    return Ok(());
                }
                local.receive(&buf[..n]);
            }
            LocalEvent::Reply(bytes) => {
                client_out.write_all(&bytes).await?;
                client_out.flush().await?;
            }
            LocalEvent::Forward(bytes) => {
                server.write_all(&bytes).await?;
                server.flush().await?;
            }
            LocalEvent::Received(line) => tracing::debug!("client: {line}"),
            LocalEvent::Relay => break,
        }
    }
    relay_until(
        server,
        account.idle_timeout,
        leftover,
        client_in,
        client_out,
        stop,
    )
    .await
}

/// Resolves when the process receives SIGTERM or SIGHUP. The handlers are installed
/// when this is called (not when first polled), so a signal that arrives before the
/// future is awaited is not lost. Where a handler cannot be installed, that signal
/// keeps its default action.
pub fn termination_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    async move {
        tokio::select! {
            _ = wait_for(term.as_mut()) => tracing::info!("SIGTERM: closing the session"),
            _ = wait_for(hup.as_mut()) => tracing::info!("SIGHUP: closing the session"),
        }
    }
}

async fn wait_for(s: Option<&mut tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The server side of a session: the link, or the link under a security layer.
trait ServerStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ServerStream for T {}

/// A stream under a SASL security layer (RFC 4422 section 3.7): each direction is a
/// sequence of 4-octet big-endian lengths, each followed by that many octets of a
/// wrapped token. Memory is bounded by the sizes both sides announced.
struct Layered<S> {
    inner: S,
    mech: Box<dyn Mechanism>,
    layer: Layer,
    /// Received bytes not yet forming a whole token.
    raw: Vec<u8>,
    /// Unwrapped bytes not yet read by the relay.
    plain: Vec<u8>,
    plain_pos: usize,
    /// A framed token not yet written to `inner`.
    pending: Vec<u8>,
    pending_pos: usize,
}

impl<S> Layered<S> {
    fn new(inner: S, mech: Box<dyn Mechanism>, received: Vec<u8>) -> Self {
        let layer = mech.layer().expect("only built for a negotiated layer");
        Layered {
            inner,
            mech,
            layer,
            raw: received,
            plain: Vec::new(),
            plain_pos: 0,
            pending: Vec::new(),
            pending_pos: 0,
        }
    }

    /// Unwraps the first whole token of `raw`, if there is one.
    fn unwrap_one(&mut self) -> io::Result<bool> {
        let Some(token) =
            take_layer_token(&mut self.raw, self.layer.max_receive).map_err(layer_error)?
        else {
            return Ok(false);
        };
        self.plain = self.mech.unwrap(&token).map_err(layer_error)?;
        self.plain_pos = 0;
        Ok(true)
    }

    /// Wraps as much of `data` as fits in one token the server accepts.
    fn wrap_some(&mut self, data: &[u8]) -> io::Result<usize> {
        let max_send = self.layer.max_send as usize;
        // Kerberos wrap tokens add well under 128 octets; check the result anyway.
        let mut take = data
            .len()
            .min(max_send.saturating_sub(128).max(1))
            .min(CHUNK);
        loop {
            let token = self.mech.wrap(&data[..take]).map_err(layer_error)?;
            if token.len() <= max_send {
                self.pending.clear();
                self.pending
                    .extend_from_slice(&(token.len() as u32).to_be_bytes());
                self.pending.extend_from_slice(&token);
                self.pending_pos = 0;
                return Ok(take);
            }
            if take == 1 {
                return Err(io::Error::other(
                    "the server's security-layer buffer is too small",
                ));
            }
            take /= 2;
        }
    }
}

fn layer_error(e: SaslError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, LayerFailure(e))
}

/// A security-layer failure during the relay, kept typed inside the `io::Error` the relay
/// returns, so that a server's violation (an unencrypted token on a confidentiality
/// layer) can be told from a broken link.
#[derive(Debug, thiserror::Error)]
#[error("security layer: {0}")]
pub struct LayerFailure(pub SaslError);

impl LayerFailure {
    /// The layer failure inside a relay error, if that is what it is.
    pub fn of(e: &io::Error) -> Option<&SaslError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<LayerFailure>())
            .map(|l| &l.0)
    }
}

impl<S: AsyncWrite + Unpin> Layered<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_pos < self.pending.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_pos..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_pos += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Layered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plain_pos < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_pos);
                buf.put_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.unwrap_one()? {
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                if this.raw.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed in the middle of a security-layer token",
                )));
            }
            this.raw.extend_from_slice(rb.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Layered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        Poll::Ready(this.wrap_some(data))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The reply that tells the client the session could not be set up.
pub fn failure_reply(protocol: Protocol, class: Class, text: &str) -> Vec<u8> {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let code = class.reply_code(protocol);
    match protocol {
        Protocol::Imap => format!("* BYE [{code}] mailtun: {text}\r\n").into_bytes(),
        Protocol::Pop3 => format!("-ERR [{code}] mailtun: {text}\r\n").into_bytes(),
        Protocol::Smtp => format!("{code} mailtun: {text}\r\n").into_bytes(),
    }
}

/// The client's side of the tunnel: stdin and stdout.
pub type ClientIn = Box<dyn AsyncRead + Unpin>;
/// See [`ClientIn`].
pub type ClientOut = Box<dyn AsyncWrite + Unpin>;

/// Opens stdin and stdout for the relay.
///
/// When they are pipes or sockets (what mail clients give a tunnel), they are driven
/// directly by the runtime in non-blocking mode, on duplicates of fds 0 and 1. Otherwise
/// (a terminal, a file) tokio's stdin/stdout are used: they hand every read and write to
/// a blocking thread with an extra copy, which costs a thread switch per chunk.
pub fn client_stdio() -> (ClientIn, ClientOut) {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;

    let dup = |fd: std::os::fd::BorrowedFd<'_>| -> Option<(std::fs::File, std::fs::FileType)> {
        let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
        let kind = file.metadata().ok()?.file_type();
        Some((file, kind))
    };
    let input: ClientIn = match dup(io::stdin().as_fd()) {
        Some((f, k)) if k.is_fifo() => match pipe::Receiver::from_file(f) {
            Ok(r) => Box::new(r),
            Err(_) => Box::new(tokio::io::stdin()),
        },
        Some((f, k)) if k.is_socket() => match unix_stream(f) {
            Some(s) => Box::new(s),
            None => Box::new(tokio::io::stdin()),
        },
        _ => Box::new(tokio::io::stdin()),
    };
    // If stderr is the same pipe or socket as stdout, leave stdout blocking: non-blocking
    // mode would also apply to stderr, whose writers do not expect EAGAIN.
    let same_as_stderr = |f: &std::fs::File| {
        use std::os::unix::fs::MetadataExt;
        let Ok(out) = f.metadata() else {
            return true;
        };
        match dup(io::stderr().as_fd()).and_then(|(e, _)| e.metadata().ok()) {
            Some(err) => err.dev() == out.dev() && err.ino() == out.ino(),
            None => false,
        }
    };
    let output: ClientOut = match dup(io::stdout().as_fd()) {
        Some((f, _)) if same_as_stderr(&f) => Box::new(tokio::io::stdout()),
        Some((f, k)) if k.is_fifo() => match pipe::Sender::from_file(f) {
            Ok(w) => Box::new(w),
            Err(_) => Box::new(tokio::io::stdout()),
        },
        Some((f, k)) if k.is_socket() => match unix_stream(f) {
            Some(s) => Box::new(s),
            None => Box::new(tokio::io::stdout()),
        },
        _ => Box::new(tokio::io::stdout()),
    };
    (input, output)
}

/// A socket on stdin/stdout (mbsync, for one, passes a socketpair) as a non-blocking
/// stream. Only UNIX stream sockets qualify; anything else stays on the blocking path.
fn unix_stream(f: std::fs::File) -> Option<tokio::net::UnixStream> {
    let s = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(f));
    s.local_addr().ok()?;
    s.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(s).ok()
}

/// Relays between the client and the server until the server is done, starting with
/// the bytes the server already sent.
///
/// When the client closes its side first, nothing more goes to the server, and the
/// server's remaining replies still reach the client until the server closes or stays
/// silent for [`CLOSE_GRACE`]. The server is not told of the client's close by a TLS
/// close_notify before that, since servers (Dovecot among them) drop their pending
/// replies on it. When the server stops taking the client's bytes (it closed while
/// the client was still writing), what it sent before still reaches the client.
pub async fn relay<S, R, W>(
    server: S,
    leftover: Vec<u8>,
    client_in: R,
    client_out: W,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    relay_until(
        server,
        None,
        leftover,
        client_in,
        client_out,
        std::future::pending(),
    )
    .await
}

/// [`relay`], ended early (and cleanly: the server is told, as when the client closes)
/// when `stop` resolves.
/// `idle`: end the session after that long without a byte in either direction.
pub async fn relay_until<S, R, W, F>(
    server: S,
    idle: Option<Duration>,
    leftover: Vec<u8>,
    mut client_in: R,
    mut client_out: W,
    stop: F,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: std::future::Future<Output = ()>,
{
    let (mut server_in, mut server_out) = tokio::io::split(server);
    let client_gone = Cell::new(false);
    let closed = Notify::new();
    let to_client_bytes = Cell::new(0u64);
    let to_server_bytes = Cell::new(0u64);
    let ended_by_grace = Cell::new(false);
    let result = {
        let to_client = async {
            if !leftover.is_empty() {
                client_out.write_all(&leftover).await?;
                client_out.flush().await?;
            }
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = if client_gone.get() {
                    match tokio::time::timeout(CLOSE_GRACE, server_in.read(&mut buf)).await {
                        Ok(r) => r?,
                        Err(_) => {
                            ended_by_grace.set(true);
                            break;
                        }
                    }
                } else {
                    tokio::select! {
                        r = server_in.read(&mut buf) => r?,
                        _ = closed.notified() => continue,
                    }
                };
                if n == 0 {
                    break;
                }
                // Take what the server link already has (decrypted records), without
                // waiting, so that one write to the client carries up to CHUNK bytes.
                let mut n = n;
                while n < buf.len() {
                    tokio::select! {
                        biased;
                        r = server_in.read(&mut buf[n..]) => match r? {
                            0 => break,
                            m => n += m,
                        },
                        _ = std::future::ready(()) => break,
                    }
                }
                client_out.write_all(&buf[..n]).await?;
                client_out.flush().await?;
                to_client_bytes.set(to_client_bytes.get() + n as u64);
            }
            client_out.shutdown().await
        };
        let to_server = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = client_in.read(&mut buf).await?;
                if n == 0 {
                    client_gone.set(true);
                    closed.notify_one();
                    return Ok::<(), io::Error>(());
                }
                server_out.write_all(&buf[..n]).await?;
                server_out.flush().await?;
                to_server_bytes.set(to_server_bytes.get() + n as u64);
            }
        };
        let idle_watch = async {
            let Some(idle) = idle else {
                return std::future::pending::<()>().await;
            };
            loop {
                let before = (to_client_bytes.get(), to_server_bytes.get());
                tokio::time::sleep(idle).await;
                if (to_client_bytes.get(), to_server_bytes.get()) == before {
                    tracing::warn!(
                        "no traffic for {} s (idle_timeout_secs): the session ends",
                        idle.as_secs()
                    );
                    return;
                }
            }
        };
        tokio::pin!(to_client, to_server, stop, idle_watch);
        tokio::select! {
            () = &mut stop => Ok(()),
            () = &mut idle_watch => Ok(()),
            r = &mut to_client => quiet_broken_pipe(r),
            r = &mut to_server => match r {
                Ok(()) => quiet_broken_pipe(to_client.await),
                // The server no longer takes bytes (it closed, or the link broke). What
                // it sent before still belongs to the client; its read side tells
                // whether the end was clean.
                Err(_) => {
                    client_gone.set(true);
                    closed.notify_one();
                    quiet_broken_pipe(to_client.await)
                }
            },
        }
    };
    tracing::debug!(
        "relay ended ({}): {} bytes to the client, {} to the server{}",
        match &result {
            Ok(()) => "cleanly".to_string(),
            Err(e) => format!("error: {e}"),
        },
        to_client_bytes.get(),
        to_server_bytes.get(),
        if ended_by_grace.get() {
            ", the server stayed silent after the client closed"
        } else {
            ""
        }
    );
    // Best effort: tell the server we are done (TLS close_notify, then FIN).
    let _ = tokio::time::timeout(Duration::from_secs(1), server_out.shutdown()).await;
    result
}

/// A client that went away is the end of the session, not an error.
fn quiet_broken_pipe(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
