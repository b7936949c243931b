//! The relay between the client and the server (bounded, flushed per chunk), the
//! client's stdin/stdout set up for it, and the signals that end it cleanly.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::Notify;

use super::{CHUNK, CLOSE_GRACE};

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
    let state = RelayState::default();
    let result = {
        let to_client = to_client(&mut server_in, &mut client_out, leftover, &state);
        let to_server = to_server(&mut client_in, &mut server_out, &state);
        let idle_watch = idle_watch(idle, &state);
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
                    state.client_gone();
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
        state.to_client_bytes.get(),
        state.to_server_bytes.get(),
        if state.ended_by_grace.get() {
            ", the server stayed silent after the client closed"
        } else {
            ""
        }
    );
    // Best effort: tell the server we are done (TLS close_notify, then FIN).
    let _ = tokio::time::timeout(Duration::from_secs(1), server_out.shutdown()).await;
    result
}

/// What the two directions of one relay tell each other, and count.
#[derive(Default)]
struct RelayState {
    /// The client closed its side (or the server stopped taking its bytes).
    client_gone: Cell<bool>,
    /// Wakes the server-to-client direction when `client_gone` turns true.
    closed: Notify,
    to_client_bytes: Cell<u64>,
    to_server_bytes: Cell<u64>,
    /// The server stayed silent for [`CLOSE_GRACE`] after the client closed.
    ended_by_grace: Cell<bool>,
}

impl RelayState {
    fn client_gone(&self) {
        self.client_gone.set(true);
        self.closed.notify_one();
    }
}

/// Server to client: the bytes the server already sent, then every chunk as it comes;
/// once the client is gone, until the server closes or stays silent for [`CLOSE_GRACE`].
async fn to_client<SR, W>(
    server_in: &mut SR,
    client_out: &mut W,
    leftover: Vec<u8>,
    state: &RelayState,
) -> io::Result<()>
where
    SR: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if !leftover.is_empty() {
        client_out.write_all(&leftover).await?;
        client_out.flush().await?;
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = if state.client_gone.get() {
            match tokio::time::timeout(CLOSE_GRACE, server_in.read(&mut buf)).await {
                Ok(r) => r?,
                Err(_) => {
                    state.ended_by_grace.set(true);
                    break;
                }
            }
        } else {
            tokio::select! {
                r = server_in.read(&mut buf) => r?,
                _ = state.closed.notified() => continue,
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
        state
            .to_client_bytes
            .set(state.to_client_bytes.get() + n as u64);
    }
    client_out.shutdown().await
}

/// Client to server, chunk by chunk, until the client closes its side.
async fn to_server<R, SW>(
    client_in: &mut R,
    server_out: &mut SW,
    state: &RelayState,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    SW: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = client_in.read(&mut buf).await?;
        if n == 0 {
            state.client_gone();
            return Ok(());
        }
        server_out.write_all(&buf[..n]).await?;
        server_out.flush().await?;
        state
            .to_server_bytes
            .set(state.to_server_bytes.get() + n as u64);
    }
}

/// Resolves once `idle` passes without a byte in either direction; never without `idle`.
async fn idle_watch(idle: Option<Duration>, state: &RelayState) {
    let Some(idle) = idle else {
        return std::future::pending::<()>().await;
    };
    loop {
        let before = (state.to_client_bytes.get(), state.to_server_bytes.get());
        tokio::time::sleep(idle).await;
        if (state.to_client_bytes.get(), state.to_server_bytes.get()) == before {
            tracing::warn!(
                "no traffic for {} s (idle_timeout_secs): the session ends",
                idle.as_secs()
            );
            return;
        }
    }
}

/// A client that went away is the end of the session, not an error.
fn quiet_broken_pipe(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
