//! Hands an authenticated session to the local client (mutt `tunnel`, mbsync `Tunnel`,
//! offlineimap `preauthtunnel`, fetchmail `plugin`) and relays bytes both ways.
//!
//! The relay forwards every chunk as it arrives (no added latency), holds at most one
//! buffer per direction (bounded memory, backpressure from the slower side), and ends
//! when the server is done: the client gets the server's last bytes, then EOF.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::{Account, Protocol};
use crate::error::Class;
use crate::protocol::Capabilities;
use crate::session::Established;

/// Size of each direction's buffer.
const CHUNK: usize = 64 * 1024;
/// How long the server may take to close after the client closed its side.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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

/// Relays between the client and the server until the server is done, starting with
/// the bytes the server already sent. Returns when the server closed, or shortly after
/// the client closed and the server followed.
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
    let to_client = async {
        if !leftover.is_empty() {
            client_out.write_all(&leftover).await?;
            client_out.flush().await?;
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = server_in.read(&mut buf).await?;
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
                break;
            }
            server_out.write_all(&buf[..n]).await?;
            server_out.flush().await?;
        }
        server_out.shutdown().await
    };
    tokio::pin!(to_client, to_server);
    tokio::select! {
        r = &mut to_client => quiet_broken_pipe(r),
        r = &mut to_server => {
            r?;
            // The client is done; let the server finish what it is sending.
            match tokio::time::timeout(CLOSE_GRACE, to_client).await {
                Ok(r) => quiet_broken_pipe(r),
                Err(_) => Ok(()),
            }
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
