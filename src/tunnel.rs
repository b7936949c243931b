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
use tokio::sync::Notify;

use crate::config::{Account, Protocol};
use crate::error::Class;
use crate::protocol::Capabilities;
use crate::protocol::local::{LocalEvent, LocalPop3, LocalSide, LocalSmtp};
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
    let protection = match &est.tls {
        Some(t) => format!("{} ({} on port {})", t.version, est.method, est.port),
        None => "no TLS".to_string(),
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
    let mut local: Box<dyn LocalSide> = match account.protocol {
        Protocol::Imap => {
            client_out.write_all(&imap_greeting(account, &est)).await?;
            client_out.flush().await?;
            return relay(est.link, est.leftover, client_in, client_out).await;
        }
        Protocol::Pop3 => Box::new(LocalPop3::new(&text, &est.capabilities)),
        Protocol::Smtp => Box::new(LocalSmtp::new(&account.host, &text, &est.capabilities)),
    };
    let mut server = est.link;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let event = local.poll().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("the mail client: {e}"))
        })?;
        match event {
            LocalEvent::NeedInput => {
                let n = client_in.read(&mut buf).await?;
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
    relay(server, est.leftover, client_in, client_out).await
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
