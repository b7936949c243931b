//! `mailtun serve`: a local listener per account that does, for each accepted
//! connection, exactly what `mailtun tunnel` does: the peer's uid is checked first (only
//! the listener's owner gets in), then the local login ([`LocalImapLogin`],
//! [`LocalPop3Login`], [`LocalSmtpLogin`], all driven as a [`LocalLogin`] by
//! [`local_login`]; none under `listen_preauth`), then one upstream [`session::establish`]
//! and the tunnel's hand-over and relay over the accepted socket.
//!
//! SIGTERM/SIGINT (the `shutdown` future of [`run`]): no more accepts; running sessions
//! go on for up to `drain_secs`, then are closed cleanly (TLS close_notify upstream).

pub mod activation;
pub mod peer;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

use crate::config::{Account, ListenAddr, Protocol};
use crate::error::{Class, Failure};
use crate::protocol::local_imap::LocalImapLogin;
use crate::protocol::local_login::{LocalLogin, LocalPop3Login, LocalSmtpLogin, LoginEvent};
use crate::secret::Secret;
use crate::session::{self, Established};
use crate::tunnel::{self, Opening};

/// Wrong local logins on one connection before it is closed.
const LOGIN_TRIES: u32 = 3;

/// A listener that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "account `{account}`: serve: cannot listen on {addr}: {source}; pick a free port or path in `listen`"
    )]
    Bind {
        account: String,
        addr: String,
        source: io::Error,
    },
    #[error(
        "account `{account}`: serve: the socket directory {dir} {problem}; use a directory only you can enter (mode 0700), e.g. under $XDG_RUNTIME_DIR"
    )]
    SocketDir {
        account: String,
        dir: String,
        problem: String,
    },
    #[error(
        "account `{account}`: serve: no `listen` address and no socket passed by systemd; add `listen = \"127.0.0.1:PORT\"` to the account"
    )]
    NoListen { account: String },
    #[error("serve: systemd passed socket {index}{}, which names no account to serve; set `FileDescriptorName=ACCOUNT` in the socket unit", .name.as_ref().map(|n| format!(" named `{n}`")).unwrap_or_default())]
    UnknownSocket { index: usize, name: Option<String> },
    #[error("serve: systemd passed socket {index}: {source}")]
    BadSocket { index: usize, source: io::Error },
}

/// A bound listener of one account.
pub enum Listener {
    Tcp(TcpListener),
    /// The socket file is removed when the listener is dropped, if we created it.
    Unix(UnixListener, Option<PathBuf>),
}

impl Listener {
    /// Where it listens, for the ready line.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "a TCP socket".into(), |a| a.to_string()),
            Listener::Unix(l, path) => match (path, l.local_addr().ok()) {
                (Some(p), _) => format!("unix:{}", p.display()),
                (None, Some(a)) => match a.as_pathname() {
                    Some(p) => format!("unix:{}", p.display()),
                    None => "a unix socket".into(),
                },
                (None, None) => "a unix socket".into(),
            },
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(path)) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds the account's `listen` address. A Unix socket is created 0600 in a directory
/// only its owner can enter (created 0700 when missing).
pub fn bind(account: &Account) -> Result<Listener, ServeError> {
    let bind_err = |addr: String, source| ServeError::Bind {
        account: account.name.clone(),
        addr,
        source,
    };
    match &account.serve.listen {
        None => Err(ServeError::NoListen {
            account: account.name.clone(),
        }),
        Some(ListenAddr::Tcp(a)) => {
            let std = std::net::TcpListener::bind(a).map_err(|e| bind_err(a.to_string(), e))?;
            std.set_nonblocking(true)
                .map_err(|e| bind_err(a.to_string(), e))?;
            TcpListener::from_std(std)
                .map(Listener::Tcp)
                .map_err(|e| bind_err(a.to_string(), e))
        }
        Some(ListenAddr::Unix(path)) => {
            use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
            let shown = format!("unix:{}", path.display());
            let dir = path.parent().unwrap_or(std::path::Path::new("/"));
            let dir_err = |problem: String| ServeError::SocketDir {
                account: account.name.clone(),
                dir: dir.display().to_string(),
                problem,
            };
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| dir_err(format!("cannot be created: {e}")))?;
            }
            let meta = std::fs::metadata(dir).map_err(|e| dir_err(e.to_string()))?;
            if meta.uid() != peer::own_uid() || meta.mode() & 0o077 != 0 {
                return Err(dir_err(format!(
                    "is mode {:o} owned by uid {}: other users could reach the socket",
                    meta.mode() & 0o7777,
                    meta.uid()
                )));
            }
            if let Ok(m) = std::fs::symlink_metadata(path) {
                if m.file_type().is_socket() {
                    let _ = std::fs::remove_file(path);
                }
            }
            let l = UnixListener::bind(path).map_err(|e| bind_err(shown.clone(), e))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| bind_err(shown, e))?;
            Ok(Listener::Unix(l, Some(path.clone())))
        }
    }
}

/// The sockets systemd passed, each given to the account it is named after (an unnamed
/// socket to the only candidate account).
pub fn adopt_passed(
    passed: Vec<activation::Passed>,
    candidates: &[Account],
) -> Result<Vec<Served>, ServeError> {
    let mut served = Vec::new();
    for (index, p) in passed.into_iter().enumerate() {
        let account = match &p.name {
            Some(n) => candidates.iter().find(|a| &a.name == n),
            None if candidates.len() == 1 => candidates.first(),
            None => None,
        };
        let Some(account) = account else {
            return Err(ServeError::UnknownSocket {
                index,
                name: p.name,
            });
        };
        let listener = adopt(p.fd).map_err(|source| ServeError::BadSocket { index, source })?;
        served.push(Served {
            account: account.clone(),
            listener,
        });
    }
    Ok(served)
}

/// A listening socket passed by systemd, TCP or Unix by its address family.
fn adopt(fd: std::os::fd::OwnedFd) -> io::Result<Listener> {
    use std::os::fd::AsRawFd;
    // SAFETY: getsockname writes at most `len` bytes into the zeroed storage.
    let family = unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(fd.as_raw_fd(), (&raw mut addr).cast(), &mut len) != 0 {
            return Err(io::Error::last_os_error());
        }
        i32::from(addr.ss_family)
    };
    match family {
        libc::AF_UNIX => {
            let l = std::os::unix::net::UnixListener::from(fd);
            l.set_nonblocking(true)?;
            Ok(Listener::Unix(UnixListener::from_std(l)?, None))
        }
        libc::AF_INET | libc::AF_INET6 => {
            let l = std::net::TcpListener::from(fd);
            l.set_nonblocking(true)?;
            Ok(Listener::Tcp(TcpListener::from_std(l)?))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a TCP or Unix stream socket",
        )),
    }
}

/// One account and its listener.
pub struct Served {
    pub account: Account,
    pub listener: Listener,
}

/// An accepted connection, and who it came from.
enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Conn {
    /// The uid of the client's process, or why it is unknown.
    fn peer_uid(&self) -> io::Result<Option<u32>> {
        match self {
            Conn::Tcp(s) => peer::tcp_peer_uid(s.local_addr()?, s.peer_addr()?),
            Conn::Unix(s) => Ok(Some(s.peer_cred()?.uid())),
        }
    }

    fn peer(&self) -> String {
        match self {
            Conn::Tcp(s) => s.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string()),
            Conn::Unix(_) => "the unix socket".into(),
        }
    }
}

/// Serves every listener until `shutdown` resolves, then drains: running sessions go on
/// for up to the longest `drain_secs`, then are closed cleanly.
pub async fn run<F: Future<Output = ()>>(served: Vec<Served>, shutdown: F) {
    let local = tokio::task::LocalSet::new();
    local.run_until(run_local(served, shutdown)).await;
}

async fn run_local<F: Future<Output = ()>>(served: Vec<Served>, shutdown: F) {
    let drain = served
        .iter()
        .map(|s| s.account.serve.drain)
        .max()
        .unwrap_or_default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<(usize, Conn)>(64);
    let mut accounts = Vec::new();
    let mut acceptors = Vec::new();
    for (i, s) in served.into_iter().enumerate() {
        let limit = Arc::new(Semaphore::new(s.account.serve.max_connections));
        accounts.push((Rc::new(s.account), limit));
        let tx = conn_tx.clone();
        acceptors.push(tokio::task::spawn_local(accept_loop(i, s.listener, tx)));
    }
    drop(conn_tx);
    let mut sessions = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            c = conn_rx.recv() => match c {
                Some((i, conn)) => {
                    let (account, limit) = accounts[i].clone();
                    let stop = stop_rx.clone();
                    sessions.spawn_local(async move {
                        connection(&account, conn, limit, stop).await;
                    });
                }
                None => break,
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    // Stop accepting: the listeners close (and Unix socket files go) now.
    for a in acceptors {
        a.abort();
        let _ = a.await;
    }
    drop(conn_rx);
    if !sessions.is_empty() {
        info!(
            "draining {} session(s) for up to {} s",
            sessions.len(),
            drain.as_secs()
        );
        let all = async { while sessions.join_next().await.is_some() {} };
        if tokio::time::timeout(drain, all).await.is_err() {
            info!(
                "{} session(s) still running after drain_secs: closing them",
                sessions.len()
            );
            let _ = stop_tx.send(true);
            let all = async { while sessions.join_next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(5), all)
                .await
                .is_err()
            {
                sessions.abort_all();
            }
        }
    }
}

async fn accept_loop(i: usize, listener: Listener, tx: tokio::sync::mpsc::Sender<(usize, Conn)>) {
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| accepted_tcp(s)),
            Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        };
        match accepted {
            Ok(conn) => {
                if tx.send((i, conn)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // EMFILE and the like: wait a little instead of spinning.
                warn!("serve: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// An accepted TCP connection, with Nagle's algorithm off (as on the upstream link). The
/// relay writes what it has at once (up to 64 KiB) and a stdout pipe takes it so; with
/// Nagle on, the tail of each write short of a full segment waits for the client's ACK
/// of the segment before it: a 20 MB FETCH through the listener took ~1.2x as long as
/// through the tunnel, with TCP_NODELAY the same (bench/results-serve-2026-12-03.md).
fn accepted_tcp(s: tokio::net::TcpStream) -> Conn {
    if let Err(e) = s.set_nodelay(true) {
        warn!("serve: cannot set TCP_NODELAY on an accepted connection: {e}");
    }
    Conn::Tcp(s)
}

/// One accepted connection: the peer's uid, the connection limit, then the session.
async fn connection(
    account: &Account,
    conn: Conn,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    let peer = conn.peer();
    let me = peer::own_uid();
    let refusal = match conn.peer_uid() {
        Ok(Some(uid)) if uid == me => None,
        Ok(Some(uid)) => {
            warn!(
                "account `{}`: refused a connection from uid {uid} ({peer}): only uid {me} is served",
                account.name
            );
            Some(format!(
                "connection refused: this listener serves only uid {me}"
            ))
        }
        Ok(None) => {
            warn!(
                "account `{}`: refused a connection from {peer}: its owner is not in the kernel's socket table",
                account.name
            );
            Some("connection refused: the client's owner is unknown".into())
        }
        Err(e) => {
            warn!(
                "account `{}`: refused a connection from {peer}: cannot tell its owner: {e}",
                account.name
            );
            Some("connection refused: the client's owner is unknown".into())
        }
    };
    match conn {
        Conn::Tcp(s) => admitted(account, s, refusal, &peer, limit, stop).await,
        Conn::Unix(s) => admitted(account, s, refusal, &peer, limit, stop).await,
    }
}

async fn admitted<S>(
    account: &Account,
    mut stream: S,
    refusal: Option<String>,
    peer: &str,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let protocol = account.protocol;
    if let Some(text) = refusal {
        refuse(&mut stream, protocol, Class::Auth, &text).await;
        return;
    }
    let Ok(_permit) = limit.try_acquire_owned() else {
        warn!(
            "account `{}`: too many connections (max_connections = {}): refused {peer}",
            account.name, account.serve.max_connections
        );
        let text = format!(
            "too many connections (max_connections = {})",
            account.serve.max_connections
        );
        refuse(&mut stream, protocol, Class::Network, &text).await;
        return;
    };
    info!("account `{}`: connection from {peer}", account.name);
    let stopped = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|&s| s).await;
        }
    };
    let result = if account.serve.preauth {
        preauth(account, stream, stopped).await
    } else {
        let machine: Box<dyn LocalLogin> = match protocol {
            Protocol::Imap => Box::new(LocalImapLogin::new()),
            Protocol::Pop3 => Box::new(LocalPop3Login::new()),
            Protocol::Smtp => Box::new(LocalSmtpLogin::new(&account.host)),
        };
        login_then_relay(account, stream, machine, stop, stopped).await
    };
    match result {
        Ok(()) => info!("account `{}`: connection from {peer} closed", account.name),
        Err(e) => warn!(
            "account `{}`: serve: connection from {peer}: {e}",
            account.name
        ),
    }
}

/// `listen_preauth`: no local login, the upstream session at once (IMAP greets
/// `PREAUTH`, POP3 and SMTP with the tunnel's local side).
async fn preauth<S, F>(account: &Account, mut stream: S, stopped: F) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    match session::establish(account).await {
        Ok(est) => {
            log_established(account, &est);
            let (r, w) = tokio::io::split(stream);
            tunnel::hand_over_until(account, est, Opening::Greet, r, w, stopped).await
        }
        Err(f) => {
            upstream_failed(&mut stream, account.protocol, &f, None).await;
            Ok(())
        }
    }
}

/// The local login, then the upstream session for the client that passed it: the
/// login's reply comes from the session (IMAP: the server's capabilities), then the relay.
async fn login_then_relay<S, F>(
    account: &Account,
    mut stream: S,
    machine: Box<dyn LocalLogin>,
    stop: watch::Receiver<bool>,
    stopped: F,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let Some(machine) = local_login(account, &mut stream, machine, stop).await? else {
        return Ok(());
    };
    let est = match session::establish(account).await {
        Ok(est) => est,
        Err(f) => {
            upstream_failed(&mut stream, account.protocol, &f, Some(machine.as_ref())).await;
            return Ok(());
        }
    };
    log_established(account, &est);
    let reply = machine.accepted(
        &tunnel::client_capabilities(&est.capabilities),
        &tunnel::summary(account, &est),
    );
    let rest = std::io::Cursor::new(machine.into_rest());
    let (r, w) = tokio::io::split(stream);
    let opening = Opening::LoggedIn(reply);
    tunnel::hand_over_until(account, est, opening, rest.chain(r), w, stopped).await
}

/// Drives `machine` until the client has logged in (`Some`, the machine holding what
/// the client sent after its login), or is gone (`None`: it left, said goodbye, took
/// longer than `listen_login_timeout_secs`, logged in wrong too often, or the drain
/// ended). Nothing goes upstream here.
async fn local_login<S>(
    account: &Account,
    stream: &mut S,
    mut machine: Box<dyn LocalLogin>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<Option<Box<dyn LocalLogin>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(&machine.greeting()).await?;
    stream.flush().await?;
    let mut buf = vec![0u8; 4096];
    let mut failures = 0;
    let deadline = tokio::time::Instant::now() + account.serve.login_timeout;
    loop {
        let event = machine.poll().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("the mail client: {e}"))
        })?;
        let reply = match event {
            LoginEvent::NeedInput => {
                match client_input(account, stream, &mut buf, deadline, &mut stop).await? {
                    Input::Data(n) => machine.receive(&buf[..n]),
                    Input::Gone => return Ok(None),
                    Input::Goodbye(text) => return goodbye(stream, machine.as_ref(), &text).await,
                }
                continue;
            }
            LoginEvent::Reply(r) => r,
            LoginEvent::Close => {
                let _ = stream.shutdown().await;
                return Ok(None);
            }
            LoginEvent::Login { user, password } => {
                match check_login(account, &user, password).await {
                    Ok(()) => return Ok(Some(machine)),
                    Err(text) => {
                        failures += 1;
                        warn!("account `{}`: local login refused: {text}", account.name);
                        stream.write_all(&machine.refused(&text)).await?;
                        if failures >= LOGIN_TRIES {
                            return goodbye(stream, machine.as_ref(), "too many wrong logins")
                                .await;
                        }
                        continue;
                    }
                }
            }
        };
        stream.write_all(&reply).await?;
        stream.flush().await?;
    }
}

/// What waiting for the client before its login gave.
enum Input {
    /// This many bytes.
    Data(usize),
    /// The client closed the connection.
    Gone,
    /// mailtun closes the connection, telling the client why.
    Goodbye(String),
}

/// Reads from a client that has not logged in yet, up to the login deadline and the
/// end of the drain.
async fn client_input<S>(
    account: &Account,
    stream: &mut S,
    buf: &mut [u8],
    deadline: tokio::time::Instant,
    stop: &mut watch::Receiver<bool>,
) -> io::Result<Input>
where
    S: AsyncRead + Unpin,
{
    let read = tokio::time::timeout_at(deadline, stream.read(buf));
    tokio::select! {
        r = read => match r {
            Ok(Ok(0)) => Ok(Input::Gone),
            Ok(Ok(n)) => Ok(Input::Data(n)),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let secs = account.serve.login_timeout.as_secs();
                warn!("account `{}`: no local login within {secs} s: closed", account.name);
                Ok(Input::Goodbye(format!("no login within {secs} s")))
            }
        },
        // The drain is over: a client still logging in is sent away.
        _ = stop.wait_for(|&s| s) => Ok(Input::Goodbye("shutting down".into())),
    }
}

/// The protocol's last words, then close.
async fn goodbye<S>(
    stream: &mut S,
    machine: &dyn LocalLogin,
    text: &str,
) -> io::Result<Option<Box<dyn LocalLogin>>>
where
    S: AsyncWrite + Unpin,
{
    let _ = stream.write_all(&machine.goodbye(text)).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    Ok(None)
}

/// The local login: the account's user (any, when it has none), and `local_password` when set (read now, so a
/// changed password applies to the next connection).
async fn check_login(
    account: &Account,
    user: &str,
    password: Secret<String>,
) -> Result<(), String> {
    // An account without `user` (the ticket's principal) takes any local user name.
    if !account.user.is_empty() && user != account.user {
        return Err(format!(
            "the user must be `{}`, the account's `user`",
            account.user
        ));
    }
    if account.serve.local_password.is_none() {
        return Ok(());
    }
    let reading = account.clone();
    let expected =
        tokio::task::spawn_blocking(move || crate::credentials::local_password(&reading))
            .await
            .map_err(|e| format!("cannot read `local_password`: {e}"))?
            .map_err(|e| format!("cannot read `local_password`: {e}"))?;
    let Some(expected) = expected else {
        return Ok(());
    };
    if constant_time_eq(expected.expose().as_bytes(), password.expose().as_bytes()) {
        Ok(())
    } else {
        Err("wrong password (`local_password`)".into())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn log_established(account: &Account, est: &Established) {
    info!(
        "account `{}`: {}",
        account.name,
        tunnel::summary(account, est)
    );
}

/// The upstream session failed: the protocol's failure reply (and what ends the local
/// login, for IMAP its tagged NO), then the connection closes.
async fn upstream_failed<S>(
    stream: &mut S,
    protocol: Protocol,
    f: &Failure,
    login: Option<&dyn LocalLogin>,
) where
    S: AsyncWrite + Unpin,
{
    warn!("{f}");
    let class = f.class();
    let text = f.to_string();
    let mut reply = tunnel::failure_reply(protocol, class, &text);
    if let Some(login) = login {
        reply.extend_from_slice(&login.upstream_failed(class.reply_code(protocol), &text));
    }
    let _ = stream.write_all(&reply).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// The protocol's refusal, then close.
async fn refuse<S>(stream: &mut S, protocol: Protocol, class: Class, text: &str)
where
    S: AsyncWrite + Unpin,
{
    let _ = stream
        .write_all(&tunnel::failure_reply(protocol, class, text))
        .await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}
