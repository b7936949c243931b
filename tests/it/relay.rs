//! The relay as a library function (`mailtun::tunnel::relay`) between in-memory pipes:
//! it loses nothing, keeps its memory bounded by backpressure, and ends the way the
//! documentation says when either side closes first.
//!
//! The pipes are `tokio::io::duplex` with small buffers, so "bounded" has a number: what
//! a peer can write while the other does not read is the two pipes' buffers plus the
//! relay's own chunk.

use std::io;
use std::time::{Duration, Instant};

use mailtun::tunnel::{CLOSE_GRACE, relay};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

/// Buffer of each in-memory pipe.
const PIPE: usize = 64 * 1024;
/// The relay holds at most one chunk per direction (`tunnel::CHUNK`, 64 KiB); this is
/// a generous allowance for it.
const RELAY_ALLOWANCE: usize = 128 * 1024;

/// The relay's four ends, as the tests drive them.
struct Ends {
    /// The server's side of the server connection.
    server: DuplexStream,
    /// What the client writes (mailtun's stdin).
    client_in: DuplexStream,
    /// What the client reads (mailtun's stdout).
    client_out: DuplexStream,
}

/// Starts the relay with `leftover`; returns the ends and the relay's future.
fn start(
    leftover: &[u8],
) -> (
    Ends,
    impl std::future::Future<Output = io::Result<()>> + use<>,
) {
    let (server_near, server_far) = duplex(PIPE);
    let (stdin_near, stdin_far) = duplex(PIPE);
    let (stdout_near, stdout_far) = duplex(PIPE);
    let fut = relay(server_near, leftover.to_vec(), stdin_near, stdout_near);
    (
        Ends {
            server: server_far,
            client_in: stdin_far,
            client_out: stdout_far,
        },
        fut,
    )
}

/// A deterministic byte stream: a 1 MiB pseudo-random block, each copy stamped with
/// its index and a direction seed, so that a lost, repeated or reordered chunk shows.
struct Pattern {
    block: Vec<u8>,
    seed: u8,
}

const BLOCK: usize = 1 << 20;

impl Pattern {
    fn new(seed: u8) -> Self {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(seed);
        let block = (0..BLOCK / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        Pattern { block, seed }
    }

    /// The bytes at stream positions `pos..pos + out.len()`.
    fn fill(&self, mut pos: u64, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let index = pos / BLOCK as u64;
            let off = (pos % BLOCK as u64) as usize;
            let n = (BLOCK - off).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.block[off..off + n]);
            // Stamp the first bytes of each block with its index.
            let stamp = [&index.to_le_bytes()[..], &[self.seed]].concat();
            for (i, b) in stamp.iter().enumerate() {
                if off <= i && i < off + n {
                    out[done + i - off] = *b;
                }
            }
            done += n;
            pos += n as u64;
        }
    }
}

async fn send_pattern<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    p: &Pattern,
    total: u64,
) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0;
    while pos < total {
        let n = (total - pos).min(buf.len() as u64) as usize;
        p.fill(pos, &mut buf[..n]);
        w.write_all(&buf[..n]).await?;
        pos += n as u64;
    }
    Ok(())
}

/// Reads until EOF and checks every byte against the pattern; returns the count.
async fn check_pattern(r: &mut DuplexStream, p: &Pattern) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut expected = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(pos);
        }
        p.fill(pos, &mut expected[..n]);
        assert!(
            buf[..n] == expected[..n],
            "the relayed stream differs from what was sent, within bytes {pos}..{}",
            pos + n as u64
        );
        pos += n as u64;
    }
}

#[tokio::test]
async fn the_relay_loses_nothing_with_1_gib_each_way_at_once() {
    const TOTAL: u64 = 1 << 30;
    let (ends, relay) = start(b"");
    let Ends {
        server,
        client_in,
        mut client_out,
    } = ends;
    let up = Pattern::new(1);
    let down = Pattern::new(2);
    let (mut server_r, mut server_w) = tokio::io::split(server);
    let mut client_in = client_in;
    let started = Instant::now();
    let client = async {
        send_pattern(&mut client_in, &up, TOTAL).await.unwrap();
        // The client is done sending; the server's data must still all arrive.
        client_in.shutdown().await.unwrap();
        check_pattern(&mut client_out, &down).await.unwrap()
    };
    let server = async {
        let sending = async {
            send_pattern(&mut server_w, &down, TOTAL).await.unwrap();
        };
        let receiving = async {
            let mut got = 0u64;
            let mut buf = vec![0u8; 256 * 1024];
            let mut expected = vec![0u8; 256 * 1024];
            while got < TOTAL {
                let n = server_r.read(&mut buf).await.unwrap();
                assert!(n > 0, "the server saw EOF after {got} bytes");
                up.fill(got, &mut expected[..n]);
                assert!(buf[..n] == expected[..n], "upstream differs at {got}");
                got += n as u64;
            }
            got
        };
        let ((), got) = tokio::join!(sending, receiving);
        // Everything was received; now the server closes, which ends the session.
        server_w.shutdown().await.unwrap();
        got
    };
    let (r, to_client, to_server) = tokio::join!(relay, client, server);
    r.unwrap();
    assert_eq!(to_client, TOTAL);
    assert_eq!(to_server, TOTAL);
    eprintln!(
        "relayed 2 x {} MiB in {:.2} s",
        TOTAL >> 20,
        started.elapsed().as_secs_f64()
    );
}

/// The `writer` peer writes 4 KiB chunks into `w` (up to 64 MiB) while the `reader` peer
/// reads nothing, until a write makes no progress for a while; checks that this happened
/// after at most the two pipes' buffers and the relay's chunk, and returns the count.
async fn write_until_blocked<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    writer: &str,
    reader: &str,
) -> usize {
    let chunk = vec![b'x'; 4096];
    let mut written = 0;
    while written < 64 << 20 {
        match tokio::time::timeout(Duration::from_millis(300), w.write(&chunk)).await {
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => break,
        }
    }
    let bound = 2 * PIPE + RELAY_ALLOWANCE;
    assert!(written > 0);
    assert!(
        written <= bound,
        "the {writer} could write {written} bytes to a {reader} that reads nothing (bound {bound})"
    );
    written
}

/// Runs `test` alongside the relay; the relay must end without an error.
async fn with_relay<T>(
    relay: impl std::future::Future<Output = io::Result<()>>,
    test: impl std::future::Future<Output = T>,
) -> T {
    let (r, t) = tokio::join!(relay, test);
    r.unwrap();
    t
}

async fn drain(r: &mut DuplexStream) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match r.read(&mut buf).await.unwrap() {
            0 => return total,
            n => total += n,
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_stops_the_relay_reading_from_the_server() {
    let (ends, relay) = start(b"");
    let Ends {
        mut server,
        client_in,
        mut client_out,
    } = ends;
    let test = async {
        // The client reads nothing: the server's writes must block after a bounded amount.
        let written = write_until_blocked(&mut server, "server", "client").await;
        // Once the client reads again, everything arrives, and the session ends cleanly.
        let reader = async { drain(&mut client_out).await };
        let closer = async {
            server.shutdown().await.unwrap();
        };
        let (got, ()) = tokio::join!(reader, closer);
        assert_eq!(got, written, "bytes were lost under backpressure");
        drop(client_in);
    };
    with_relay(relay, test).await;
}

#[tokio::test]
async fn a_server_that_stops_reading_stops_the_relay_reading_from_the_client() {
    let (ends, relay) = start(b"");
    let Ends {
        mut server,
        mut client_in,
        client_out,
    } = ends;
    let test = async {
        let written = write_until_blocked(&mut client_in, "client", "server").await;
        client_in.shutdown().await.unwrap();
        let (mut server_r, mut server_w) = tokio::io::split(&mut server);
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while got < written {
            let n = server_r.read(&mut buf).await.unwrap();
            assert!(n > 0, "EOF after {got} of {written} bytes");
            got += n;
        }
        server_w.shutdown().await.unwrap();
        drop(client_out);
    };
    with_relay(relay, test).await;
}

#[tokio::test]
async fn the_server_closing_first_gives_the_client_its_last_bytes_then_eof() {
    let (ends, relay) = start(b"* 1 EXISTS\r\n");
    let Ends {
        mut server,
        client_in,
        mut client_out,
    } = ends;
    let test = async {
        server
            .write_all(b"* BYE logging out\r\na OK LOGOUT completed\r\n")
            .await
            .unwrap();
        // The server closes its connection completely.
        drop(server);
        let mut got = Vec::new();
        client_out.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got, b"* 1 EXISTS\r\n* BYE logging out\r\na OK LOGOUT completed\r\n",
            "the leftover, then the server's last bytes, then EOF"
        );
        client_in
    };
    let _client_in = with_relay(relay, test).await;
}

#[tokio::test]
async fn the_server_closing_while_the_client_still_writes_gives_the_client_the_last_bytes() {
    let (ends, relay) = start(b"");
    let Ends {
        mut server,
        mut client_in,
        mut client_out,
    } = ends;
    let last = b"* BYE idle too long\r\n";
    let server_side = async {
        // Read a little of what the client sends, let the pipes fill up (so that the
        // relay is in the middle of a write to the server), then say goodbye and close.
        let mut buf = [0u8; 16];
        server.read_exact(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.write_all(last).await.unwrap();
        drop(server);
    };
    let client_writes = async {
        // The client keeps sending commands; writes may fail once the session is over.
        let mut sent = 0;
        while sent < 16 << 20 {
            if client_in.write_all(b"a NOOP\r\n").await.is_err() {
                break;
            }
            sent += 8;
        }
        client_in
    };
    let client_reads = async {
        let mut got = Vec::new();
        client_out.read_to_end(&mut got).await.unwrap();
        got
    };
    let (r, (), _client_in, got) = tokio::join!(relay, server_side, client_writes, client_reads);
    assert_eq!(
        got, last,
        "the client must get the server's last bytes, then EOF"
    );
    r.unwrap();
}

#[tokio::test]
async fn the_client_closing_first_still_gets_the_servers_last_reply() {
    let (ends, relay) = start(b"");
    let Ends {
        mut server,
        mut client_in,
        mut client_out,
    } = ends;
    let test = async {
        client_in.write_all(b"z LOGOUT\r\n").await.unwrap();
        client_in.shutdown().await.unwrap();
        let mut line = [0u8; 10];
        server.read_exact(&mut line).await.unwrap();
        assert_eq!(&line, b"z LOGOUT\r\n");
        // A slow server: the reply comes well after the client closed.
        tokio::time::sleep(Duration::from_millis(500)).await;
        server
            .write_all(b"* BYE bye\r\nz OK LOGOUT completed\r\n")
            .await
            .unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client_out.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"* BYE bye\r\nz OK LOGOUT completed\r\n");
        // The relay tells the server it is done: EOF on the server's side.
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing after the client's close");
    };
    with_relay(relay, test).await;
}

#[tokio::test]
async fn after_the_client_closed_a_silent_server_ends_the_session_after_the_grace_period() {
    let (ends, relay) = start(b"");
    let Ends {
        mut server,
        mut client_in,
        mut client_out,
    } = ends;
    let started = Instant::now();
    let test = async {
        client_in.write_all(b"z LOGOUT\r\n").await.unwrap();
        client_in.shutdown().await.unwrap();
        server.write_all(b"z OK bye\r\n").await.unwrap();
        // The server neither closes nor says more; the relay must still end, and the
        // server then sees EOF.
        let mut got = Vec::new();
        client_out.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"z OK bye\r\n");
        let mut from_client = Vec::new();
        server.read_to_end(&mut from_client).await.unwrap();
        assert_eq!(from_client, b"z LOGOUT\r\n");
    };
    with_relay(relay, test).await;
    let took = started.elapsed();
    assert!(
        took >= CLOSE_GRACE && took < CLOSE_GRACE + Duration::from_secs(2),
        "took {took:?}, grace {CLOSE_GRACE:?}"
    );
}

#[tokio::test]
async fn an_idle_timeout_ends_a_silent_session_and_not_a_busy_one() {
    // The relay is not Send (it is one task by design): run it on a LocalSet.
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let idle = Duration::from_millis(400);
            let (server_near, mut server) = duplex(PIPE);
            let (stdin_near, mut client_in) = duplex(PIPE);
            let (stdout_near, mut client_out) = duplex(PIPE);
            let started = Instant::now();
            let relay = tokio::task::spawn_local(mailtun::tunnel::relay_until(
                server_near,
                Some(idle),
                Vec::new(),
                stdin_near,
                stdout_near,
                std::future::pending(),
            ));
            // Traffic every 100 ms for a second keeps the session alive past the idle time.
            let mut buf = [0u8; 16];
            for _ in 0..10 {
                client_in.write_all(b"a NOOP\r\n").await.unwrap();
                server.read_exact(&mut buf[..8]).await.unwrap();
                server.write_all(b"a OK\r\n").await.unwrap();
                client_out.read_exact(&mut buf[..6]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(!relay.is_finished(), "a busy session was ended");
            let quiet_from = Instant::now();
            // Then silence: the relay ends by itself, and both peers see the end.
            tokio::time::timeout(Duration::from_secs(5), relay)
                .await
                .expect("the idle session did not end")
                .unwrap()
                .unwrap();
            let waited = quiet_from.elapsed();
            assert!(
                waited >= idle - Duration::from_millis(100) && waited < idle * 3,
                "ended after {waited:?}"
            );
            assert_eq!(
                client_out.read(&mut buf).await.unwrap(),
                0,
                "the client sees EOF"
            );
            assert_eq!(
                server.read(&mut buf).await.unwrap(),
                0,
                "the server sees EOF"
            );
            assert!(started.elapsed() > Duration::from_secs(1));
        })
        .await;
}
