//! The SASL security layer on the relay (RFC 4422 section 3.7): length-prefixed wrapped
//! tokens each way, with the typed failure a server's violation of it gives.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::CHUNK;
use crate::sasl::{Layer, Mechanism, SaslError, take_layer_token};

/// A stream under a SASL security layer (RFC 4422 section 3.7): each direction is a
/// sequence of 4-octet big-endian lengths, each followed by that many octets of a
/// wrapped token. Memory is bounded by the sizes both sides announced.
pub(super) struct Layered<S> {
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
    pub(super) fn new(inner: S, mech: Box<dyn Mechanism>, received: Vec<u8>) -> Self {
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
