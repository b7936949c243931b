//! The hand-over: the IMAP `PREAUTH` greeting, or for POP3 and SMTP the local side that
//! answers the client's own greeting, capability and login commands, then the relay; and
//! the refusal a client gets when the session could not be set up.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::layer::Layered;
use super::relay::{relay_until, termination_signal};
use super::{CHUNK, ServerStream};
use crate::config::{Account, Protocol};
use crate::error::Class;
use crate::protocol::Capabilities;
use crate::protocol::local::{LocalEvent, LocalPop3, LocalSide, LocalSmtp};
use crate::session::Established;

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
    client_in: R,
    client_out: W,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // From now on SIGTERM and SIGHUP close the session cleanly instead of killing the
    // process: the server gets a TLS close_notify (and an IMAP server no half-read
    // command), and the exit code is 0.
    let stop = termination_signal();
    hand_over_until(account, est, Opening::Greet, client_in, client_out, stop).await
}

/// How the client's side of the session opens.
pub enum Opening {
    /// The tunnel's: IMAP `PREAUTH`, or the POP3/SMTP local side's greeting.
    Greet,
    /// The client already logged in to `mailtun serve`'s listener: these bytes end its
    /// login (IMAP's tagged OK, POP3's `+OK`, SMTP's `235`), and the POP3/SMTP local side
    /// starts without a greeting.
    LoggedIn(Vec<u8>),
}

/// [`hand_over`], opened as `opening` says, ended cleanly when `stop` resolves.
pub async fn hand_over_until<R, W, F>(
    account: &Account,
    est: Established,
    opening: Opening,
    mut client_in: R,
    mut client_out: W,
    stop: F,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let text = summary(account, &est);
    let (first, greet) = match opening {
        Opening::Greet if account.protocol == Protocol::Imap => {
            (imap_greeting(account, &est), false)
        }
        Opening::Greet => (Vec::new(), true),
        Opening::LoggedIn(reply) => (reply, false),
    };
    if !first.is_empty() {
        client_out.write_all(&first).await?;
        client_out.flush().await?;
    }
    tokio::pin!(stop);
    // With a security layer, every byte after the authentication reply is a layer token:
    // the session unwrapped those it read, the rest is still to unwrap.
    let leftover = est.leftover;
    let mut server: Box<dyn ServerStream> = match est.layer {
        Some(mech) => Box::new(Layered::new(est.link, mech, est.layer_pending)),
        None => Box::new(est.link),
    };
    let caps = &est.capabilities;
    let local: Option<Box<dyn LocalSide>> = match (account.protocol, greet) {
        (Protocol::Imap, _) => None,
        (Protocol::Pop3, true) => Some(Box::new(LocalPop3::new(&text, caps))),
        (Protocol::Pop3, false) => Some(Box::new(LocalPop3::after_login(caps))),
        (Protocol::Smtp, true) => Some(Box::new(LocalSmtp::new(&account.host, &text, caps))),
        (Protocol::Smtp, false) => Some(Box::new(LocalSmtp::after_login(&account.host, caps))),
    };
    if let Some(mut local) = local {
        let relay = local_side(
            local.as_mut(),
            &mut client_in,
            &mut client_out,
            &mut server,
            stop.as_mut(),
        )
        .await?;
        if !relay {
            return Ok(());
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

/// The POP3/SMTP local side until the client's first mail command: `true` when the
/// relay is to follow, `false` when the client left before (the server is then told).
async fn local_side<R, W, F>(
    local: &mut dyn LocalSide,
    client_in: &mut R,
    client_out: &mut W,
    server: &mut Box<dyn ServerStream>,
    mut stop: Pin<&mut F>,
) -> io::Result<bool>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let event = local.poll().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("the mail client: {e}"))
        })?;
        match event {
            LocalEvent::NeedInput => {
                let n = tokio::select! {
                    r = client_in.read(&mut buf) => r?,
                    () = stop.as_mut() => 0,
                };
                if n == 0 {
                    // The client left before its first mail command.
                    let _ = tokio::time::timeout(Duration::from_secs(1), server.shutdown()).await;
                    return Ok(false);
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
            LocalEvent::Relay => return Ok(true),
        }
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
