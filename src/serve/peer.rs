//! Who is on the other end of an accepted connection: the peer's uid, from the kernel's
//! socket table for loopback TCP (/proc/net/tcp and tcp6: the row whose local and remote
//! addresses are the connection's remote and local ones, i.e. the client's own socket),
//! and from SO_PEERCRED for a Unix socket.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The uid of the process that owns the client end of a TCP connection accepted on
/// `local` from `peer`; `None` when the kernel lists no such socket (another host, or a
/// client that already closed).
pub fn tcp_peer_uid(local: SocketAddr, peer: SocketAddr) -> io::Result<Option<u32>> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(uid) = find_uid(&text, peer, local) {
            return Ok(Some(uid));
        }
    }
    Ok(None)
}

/// The uid on the row of a /proc/net/tcp{,6} table whose local address is `local` and
/// remote address `remote`.
pub fn find_uid(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let (local, remote) = (unmapped(local), unmapped(remote));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (l, r, uid) = (f.get(1)?, f.get(2)?, f.get(7)?);
        (parse_addr(l)? == local && parse_addr(r)? == remote)
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// `0100007F:0539` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word as the
/// kernel printed it, in host byte order.
fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(&ip[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(unmapped(SocketAddr::new(ip, port)))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn unmapped(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// This process's effective uid: the only one let in.
pub fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_endian = "little")]
    #[test]
    fn finds_the_client_socket_row_not_the_server_one() {
        // Listener 127.0.0.1:1143 (0x0477); client 127.0.0.1:40000 (0x9C40) of uid 1000;
        // the accepted socket (uid 0 here) has the same pair the other way round.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:0477 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0\n\
   1: 0100007F:0477 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0 20 4 30 10 -1\n\
   2: 0100007F:9C40 0100007F:0477 01 00000000:00000000 00:00000000 00000000  1000        0 102 1 0 20 4 30 10 -1\n";
        let server: SocketAddr = "127.0.0.1:1143".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(find_uid(table, client, server), Some(1000));
        assert_eq!(
            find_uid(table, "127.0.0.1:40001".parse().unwrap(), server),
            None
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn reads_ipv6_rows() {
        let table = "header\n\
   0: 00000000000000000000000001000000:9C40 00000000000000000000000001000000:0477 01 00000000:00000000 00:00000000 00000000  1001        0 7 1 0 20 4 30 10 -1\n";
        assert_eq!(
            find_uid(
                table,
                "[::1]:40000".parse().unwrap(),
                "[::1]:1143".parse().unwrap()
            ),
            Some(1001)
        );
    }

    #[test]
    fn own_socket_is_found_in_the_kernel_table() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, peer) = l.accept().unwrap();
        assert_eq!(
            tcp_peer_uid(s.local_addr().unwrap(), peer).unwrap(),
            Some(own_uid())
        );
        drop(c);
    }
}
