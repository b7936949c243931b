//! TCP connect with every resolved address in turn, and the TLS handshake over it.

use std::io;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::classify::classify;
use super::{Link, TlsSettings, TransportError};

/// Opens a TCP connection to `host:port`.
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, TransportError> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| TransportError::Resolve {
            host: host.to_string(),
            port,
            source,
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(TransportError::Connect {
        host: host.to_string(),
        port,
        source: last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")),
    })
}

/// Runs the TLS handshake over `tcp` and verifies the server.
pub async fn handshake(tcp: TcpStream, settings: &TlsSettings) -> Result<Link, TransportError> {
    let connector = TlsConnector::from(settings.config.clone());
    match connector.connect(settings.server_name.clone(), tcp).await {
        Ok(s) => Ok(Link::Tls(Box::new(s), settings.trust)),
        Err(e) => Err(classify(e)),
    }
}
