//! Hands an authenticated session to the local client (mutt `tunnel`, mbsync `Tunnel`,
//! offlineimap `preauthtunnel`, fetchmail `plugin`) and relays bytes both ways.
//!
//! The relay forwards every chunk as it arrives (no added latency), holds at most one
//! buffer per direction (bounded memory, backpressure from the slower side), and ends
//! when the server is done: the client gets the server's last bytes, then EOF.

//!
//! By concern: `hand_over` (the greeting, the POP3/SMTP local side, the failure replies),
//! `layer` (the SASL security-layer framing, [`Layered`]), `relay` (the relay itself,
//! stdin/stdout set-up and the termination signals).

mod hand_over;
mod layer;
mod relay;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use hand_over::{
    Opening, client_capabilities, failure_reply, hand_over, hand_over_until, imap_greeting, summary,
};
pub use layer::LayerFailure;
pub use relay::{ClientIn, ClientOut, client_stdio, relay, relay_until, termination_signal};

/// Size of each direction's buffer.
pub(crate) const CHUNK: usize = 64 * 1024;
/// How long the server may stay silent after the client closed its side before the
/// session ends.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The server side of a session: the link, or the link under a security layer.
pub(crate) trait ServerStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ServerStream for T {}
