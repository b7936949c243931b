//! Hands an authenticated session to the local client (mutt `tunnel`, mbsync `Tunnel`,
//! offlineimap `preauthtunnel`, fetchmail `plugin`) and relays bytes both ways.
//!
//! The relay forwards every chunk as it arrives (no added latency), holds at most one
//! buffer per direction (bounded memory, backpressure from the slower side), and ends
//! when the server is done: the client gets the server's last bytes, then EOF.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::Notify;

use crate::config::{Account, Protocol};
use crate::error::Class;
use crate::protocol::Capabilities;
use crate::session::Established;

/// Size of each direction's buffer.
const CHUNK: usize = 64 * 1024;
/// How long the server may stay silent after the client closed its side before the
/// session ends.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

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

/// The greeting that tells the client it is already authenticated.
pub fn greeting(account: &Account, est: &Established) -> Vec<u8> {
    let who = if !account.user.is_empty() {
        account.user.clone()
    } else if let Some(p) = &account.gssapi.principal {
        p.clone()
    } else {
        "the Kerberos principal".into()
    };
    let protection = match &est.tls {
        Some(t) => format!("{} ({} on port {})", t.version, est.method, est.port),
        None => "no TLS".to_string(),
    };
    match account.protocol {
        Protocol::Imap => format!(
            "* PREAUTH [CAPABILITY {}] mailtun: {} authenticated to {} with {} over {}, protection {}\r\n",
            client_capabilities(&est.capabilities).join(" "),
            who,
            account.host,
            est.mechanism,
            protection,
            est.combination,
        )
        .into_bytes(),
        Protocol::Pop3 | Protocol::Smtp => unreachable!("rejected by configuration"),
    }
}

/// The reply that tells the client the session could not be set up.
pub fn failure_reply(protocol: Protocol, class: Class, text: &str) -> Vec<u8> {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match protocol {
        Protocol::Imap => {
            let code = match class {
                Class::Config | Class::Network | Class::Protocol => "UNAVAILABLE",
                Class::Policy => "PRIVACYREQUIRED",
                Class::Auth => "AUTHENTICATIONFAILED",
            };
            format!("* BYE [{code}] mailtun: {text}\r\n").into_bytes()
        }
        Protocol::Pop3 => {
            let code = if class == Class::Auth {
                "AUTH"
            } else {
                "SYS/TEMP"
            };
            format!("-ERR [{code}] mailtun: {text}\r\n").into_bytes()
        }
        Protocol::Smtp => {
            let code = if class == Class::Auth { "535" } else { "421" };
            format!("{code} mailtun: {text}\r\n").into_bytes()
        }
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
/// replies on it.
pub async fn relay<S, R, W>(
    server: S,
    leftover: Vec<u8>,
    mut client_in: R,
    mut client_out: W,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut server_in, mut server_out) = tokio::io::split(server);
    let client_gone = Cell::new(false);
    let closed = Notify::new();
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
                        Err(_) => break,
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
            }
        };
        tokio::pin!(to_client, to_server);
        tokio::select! {
            r = &mut to_client => quiet_broken_pipe(r),
            r = &mut to_server => match r {
                Ok(()) => quiet_broken_pipe(to_client.await),
                Err(e) => Err(e),
            },
        }
    };
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
