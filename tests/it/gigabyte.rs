//! A gigabyte each way through the mailtun binary: a client APPENDs a 1 GiB message to
//! the real Dovecot over verified TLS and FETCHes it back, and 1 GiB goes each way at once
//! through the GSSAPI confidentiality layer (the in-process acceptor of `gss_layer`).
//!
//! The messages come from a deterministic generator and are checked as they stream:
//! nothing here holds a gigabyte in memory, and neither may mailtun (its peak resident
//! set is read from /proc while the session is still open).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libgssapi::context::{SecurityContext, ServerCtx};

use crate::gss_layer::{Accepted, Offer, Proto, accept, layer_config, send_token};
use crate::harness::{harness, mailtun_command};

const GIB: u64 = 1 << 30;
/// Every line of a generated body: 62 printable octets and CRLF.
const LINE: usize = 64;
/// The generator repeats a block of lines, each copy stamped with its index.
const BLOCK: usize = 1 << 20;
/// mailtun's peak resident set during a transfer stays under this: the relay is bounded.
const MAX_HWM_KIB: u64 = 32 * 1024;
/// A session still running after this long is stuck: mailtun is killed.
const DEADLINE: Duration = Duration::from_secs(600);

/// A deterministic RFC 5322 message of `len` octets: a header, then 64-octet lines of
/// printable ASCII, all ending in CRLF, so that Dovecot stores and returns it unchanged.
/// The body repeats a 1 MiB block of pseudo-random lines whose first line is stamped
/// with the block's index, so that a lost, repeated or reordered block shows.
struct Message {
    header: Vec<u8>,
    block: Vec<u8>,
    len: u64,
}

impl Message {
    fn new(seed: u8, len: u64) -> Self {
        let mut header = format!(
            "From: Alice <alice@example.test>\r\nTo: Alice <alice@example.test>\r\n\
             Subject: mailtun relay test {seed}, {len} octets\r\n\
             Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\
             Message-ID: <relay-{seed}-{len}@mailtun.test>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=us-ascii\r\nX-Padding: "
        )
        .into_bytes();
        // The body starts on a line boundary, so it ends with a whole line.
        let pad = LINE + (LINE - (header.len() + 4) % LINE) % LINE;
        header.extend(std::iter::repeat_n(b'x', pad));
        header.extend_from_slice(b"\r\n\r\n");
        assert!(len >= header.len() as u64 && (len - header.len() as u64) % LINE as u64 == 0);
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(seed);
        let mut block = Vec::with_capacity(BLOCK);
        while block.len() < BLOCK {
            for _ in 0..LINE - 2 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                block.push(ALPHABET[(x >> 58) as usize]);
            }
            block.extend_from_slice(b"\r\n");
        }
        Message { header, block, len }
    }

    /// The octets at positions `pos..pos + out.len()`.
    fn fill(&self, mut pos: u64, out: &mut [u8]) {
        assert!(pos + out.len() as u64 <= self.len);
        let h = self.header.len() as u64;
        let mut done = 0;
        while done < out.len() {
            if pos < h {
                let n = ((h - pos) as usize).min(out.len() - done);
                out[done..done + n].copy_from_slice(&self.header[pos as usize..pos as usize + n]);
                done += n;
                pos += n as u64;
                continue;
            }
            let index = (pos - h) / BLOCK as u64;
            let off = ((pos - h) % BLOCK as u64) as usize;
            let n = (BLOCK - off).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.block[off..off + n]);
            let stamp = format!("{index:010}");
            for (i, b) in stamp.bytes().enumerate() {
                if off <= i && i < off + n {
                    out[done + i - off] = b;
                }
            }
            done += n;
            pos += n as u64;
        }
    }

    /// Writes the whole message, 1 MiB at a time.
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut buf = vec![0u8; BLOCK];
        let mut pos = 0;
        while pos < self.len {
            let n = (self.len - pos).min(BLOCK as u64) as usize;
            self.fill(pos, &mut buf[..n]);
            w.write_all(&buf[..n])?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Reads exactly the message's length from `r` and checks every octet; the error
    /// names the first range that differs, or where the stream ended.
    fn check_from(&self, r: &mut impl Read) -> Result<(), String> {
        let mut buf = vec![0u8; BLOCK];
        let mut expected = vec![0u8; BLOCK];
        let mut pos = 0u64;
        while pos < self.len {
            let want = (self.len - pos).min(BLOCK as u64) as usize;
            let n = r
                .read(&mut buf[..want])
                .map_err(|e| format!("read error after {pos} of {} octets: {e}", self.len))?;
            if n == 0 {
                return Err(format!(
                    "the stream ended after {pos} of {} octets",
                    self.len
                ));
            }
            self.fill(pos, &mut expected[..n]);
            if buf[..n] != expected[..n] {
                let at = pos + buf.iter().zip(&expected).position(|(a, b)| a != b).unwrap() as u64;
                return Err(format!(
                    "the message differs from what was sent at octet {at} of {}",
                    self.len
                ));
            }
            pos += n as u64;
        }
        Ok(())
    }
}

#[test]
fn the_generated_message_is_crlf_text_and_each_block_is_distinct() {
    let m = Message::new(1, 4 * BLOCK as u64);
    let mut all = vec![0u8; 4 * BLOCK];
    m.fill(0, &mut all);
    // Filling in odd pieces gives the same octets.
    let mut pieces = vec![0u8; 4 * BLOCK];
    let mut pos = 0;
    for size in [1, 7, 300, BLOCK - 5, BLOCK + 3, 2 * BLOCK] {
        let n = size.min(all.len() - pos);
        m.fill(pos as u64, &mut pieces[pos..pos + n]);
        pos += n;
    }
    assert_eq!(pos, all.len());
    assert!(pieces == all);
    assert!(all.starts_with(b"From: "));
    assert!(all.ends_with(b"\r\n"));
    assert!(all.windows(4).any(|w| w == b"\r\n\r\n"));
    for line in all.split(|&b| b == b'\n') {
        if let Some((cr, text)) = line.split_last() {
            assert_eq!(*cr, b'\r', "a bare LF");
            assert!(text.iter().all(|b| (0x20..0x7f).contains(b)), "not text");
            assert!(text.len() < 998);
        }
    }
    let h = m.header.len();
    assert!(all[h..h + BLOCK] != all[h + BLOCK..h + 2 * BLOCK]);
    assert!(m.check_from(&mut &all[..]).is_ok());
    all[3 * BLOCK] ^= 1;
    let err = m.check_from(&mut &all[..]).unwrap_err();
    assert!(err.contains(&format!("at octet {}", 3 * BLOCK)), "{err}");
}

/// The mailtun binary as a mail client drives it: commands on stdin, replies read from
/// stdout as they come. Killed if still running after [`DEADLINE`] or when dropped.
struct Session {
    child: Child,
    input: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    /// Dropping it stops the watchdog.
    _watchdog: mpsc::Sender<()>,
}

impl Session {
    fn spawn(args: &[&str]) -> Session {
        let mut child = mailtun_command(args).spawn().expect("spawn mailtun");
        let input = child.stdin.take();
        let out = BufReader::with_capacity(BLOCK, child.stdout.take().unwrap());
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let (tx, rx) = mpsc::channel::<()>();
        let pid = child.id() as libc::pid_t;
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(DEADLINE) {
                // SAFETY: plain kill(2); the child is not reaped while the Session lives.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        Session {
            child,
            input,
            out,
            stderr: Some(stderr),
            _watchdog: tx,
        }
    }

    /// Ends the test with `what`, mailtun's exit status and its stderr.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        let stderr = self.stderr.take().map(|t| t.join().unwrap());
        panic!("{what}; mailtun: {status:?}, stderr: {stderr:?}");
    }

    fn send(&mut self, bytes: &[u8]) {
        let input = self.input.as_mut().expect("stdin still open");
        if let Err(e) = input.write_all(bytes).and_then(|()| input.flush()) {
            self.fail(&format!("writing to mailtun's stdin: {e}"));
        }
    }

    /// The next line of stdout, without its CRLF.
    fn line(&mut self) -> String {
        let mut line = Vec::new();
        match self.out.read_until(b'\n', &mut line) {
            Ok(_) if line.ends_with(b"\r\n") => {
                line.truncate(line.len() - 2);
                String::from_utf8_lossy(&line).into_owned()
            }
            r => self.fail(&format!(
                "stdout ended or failed ({r:?}) within a line: {:?}",
                String::from_utf8_lossy(&line)
            )),
        }
    }

    /// Reads up to the reply tagged `tag` and returns every line read; the reply must be OK.
    fn until_ok(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if line.ends_with('}') {
                self.fail(&format!("an unexpected literal: {line}"));
            }
            let tagged = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if tagged {
                if !lines.last().unwrap().starts_with(&format!("{tag} OK")) {
                    self.fail(&format!("command {tag} failed: {lines:?}"));
                }
                return lines;
            }
        }
    }

    /// Sends `TAG COMMAND` and waits for its tagged OK.
    fn command(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.until_ok(tag)
    }

    /// mailtun's peak resident set so far (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Closes stdin, reads stdout to its end and waits: (exit code, what stdout still
    /// held, stderr).
    /// Closes stdin and waits for mailtun: it must exit 0 with nothing more on stdout.
    fn finish(mut self) {
        drop(self.input.take());
        let mut rest = Vec::new();
        let _ = self.out.read_to_end(&mut rest);
        let status = self.child.wait().expect("wait for mailtun");
        let stderr = self.stderr.take().unwrap().join().unwrap();
        assert_eq!(status.code(), Some(0), "{stderr}");
        assert!(
            rest.is_empty(),
            "stdout after LOGOUT: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scratch mailbox (never INBOX, whose messages other tests count).
const SCRATCH: &str = "mailtun-1gib-scratch";

#[test]
fn a_1_gib_message_appended_and_fetched_back_through_the_tunnel_is_byte_identical() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = h.config(dir.path(), "", "");
    let msg = Message::new(1, GIB);
    let started = Instant::now();
    let mut s = Session::spawn(&["--config", config.to_str().unwrap(), "tunnel", "test"]);
    let greeting = s.line();
    assert!(greeting.starts_with("* PREAUTH "), "{greeting}");
    assert!(greeting.contains("with GSSAPI over TLS"), "{greeting}");
    // A scratch mailbox left by an interrupted run goes first (NO when there is none).
    s.send(format!("a DELETE {SCRATCH}\r\n").as_bytes());
    while !s.line().starts_with("a ") {}
    s.command("b", &format!("CREATE {SCRATCH}"));

    let append_started = Instant::now();
    s.send(format!("c APPEND {SCRATCH} {{{GIB}}}\r\n").as_bytes());
    let go_ahead = s.line();
    assert!(go_ahead.starts_with("+"), "{go_ahead}");
    let input = s.input.as_mut().unwrap();
    if let Err(e) = msg.write_to(input) {
        s.fail(&format!("writing the message to mailtun's stdin: {e}"));
    }
    s.send(b"\r\n");
    let appended = s.until_ok("c");
    let append_took = append_started.elapsed();
    let uid = appended
        .last()
        .unwrap()
        .split_once("[APPENDUID ")
        .and_then(|(_, r)| r.split(' ').nth(1))
        .map(|u| u.trim_end_matches(']').to_string())
        .unwrap_or_else(|| panic!("no APPENDUID: {appended:?}"));

    let selected = s.command("d", &format!("SELECT {SCRATCH}"));
    assert!(selected.iter().any(|l| l == "* 1 EXISTS"), "{selected:?}");
    let fetch_started = Instant::now();
    s.send(format!("e UID FETCH {uid} BODY.PEEK[]\r\n").as_bytes());
    let fetch = s.line();
    assert!(
        fetch.starts_with("* 1 FETCH (") && fetch.ends_with(&format!("BODY[] {{{GIB}}}")),
        "{fetch}"
    );
    if let Err(e) = msg.check_from(&mut s.out) {
        s.fail(&e);
    }
    assert_eq!(s.line(), ")");
    s.until_ok("e");
    let fetch_took = fetch_started.elapsed();
    let peak = s.peak_rss_kib();

    s.command("f", "CLOSE");
    s.command("g", &format!("DELETE {SCRATCH}"));
    let bye = s.command("h", "LOGOUT");
    assert!(bye[0].starts_with("* BYE"), "{bye:?}");
    s.finish();
    assert!(
        peak < MAX_HWM_KIB,
        "mailtun's peak resident set was {peak} KiB"
    );
    eprintln!(
        "1 GiB APPEND in {:.1} s, FETCH in {:.1} s, session {:.1} s; mailtun peak RSS {peak} KiB",
        append_took.as_secs_f64(),
        fetch_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// The token size the acceptor announces for the big layer test.
const ANNOUNCED: u32 = 0x4000;

/// The acceptor's side of the layer: reads 4-octet lengths and wrap tokens, checks each
/// size against what the acceptor announced, and reads as the unwrapped bytes.
struct LayerReader {
    r: BufReader<TcpStream>,
    ctx: Arc<Mutex<ServerCtx>>,
    plain: Vec<u8>,
    pos: usize,
    tokens: u64,
    largest: usize,
}

impl Read for LayerReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.plain.len() {
            let mut len = [0u8; 4];
            match self.r.read_exact(&mut len) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(0),
                r => r?,
            }
            let len = u32::from_be_bytes(len) as usize;
            assert!(
                len <= ANNOUNCED as usize,
                "mailtun sent a wrap token of {len} octets; the acceptor announced {ANNOUNCED}"
            );
            let mut token = vec![0u8; len];
            self.r.read_exact(&mut token)?;
            self.plain = self.ctx.lock().unwrap().unwrap(&token).unwrap().to_vec();
            self.pos = 0;
            self.tokens += 1;
            self.largest = self.largest.max(len);
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The acceptor's writes: each call wraps (encrypted) as many tokens as it takes, each
/// within the size mailtun announced.
struct LayerWriter {
    w: TcpStream,
    ctx: Arc<Mutex<ServerCtx>>,
    client_max: usize,
}

impl Write for LayerWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        for chunk in data.chunks(self.client_max - 256) {
            let token = self.ctx.lock().unwrap().wrap(true, chunk).unwrap();
            assert!(token.len() <= self.client_max);
            send_token(&mut self.w, &token);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the acceptor saw.
struct LayerReport {
    chosen: u8,
    tokens: u64,
    largest: usize,
    eof_after_logout: bool,
}

/// What the acceptor's reading side tells its writing side.
enum Event {
    Fetch,
    Appended,
    Logout,
}

/// The acceptor for the 1 GiB layer test: a `UID FETCH` starts sending message 2 while
/// the client's `APPEND` (LITERAL+) of message 1 is read and checked at the same time.
fn serve_gib(listener: TcpListener) -> LayerReport {
    let mut accepted =
        accept(&listener, Offer::Layers(0x04), ANNOUNCED).expect("the client took the layer");
    accepted.answer_capability(Proto::Imap);
    let Accepted {
        ctx,
        r,
        w,
        chosen,
        client_max,
    } = accepted;
    let ctx = Arc::new(Mutex::new(ctx));
    let (tx, rx) = mpsc::channel();
    let mut out = LayerWriter {
        w: w.try_clone().unwrap(),
        ctx: ctx.clone(),
        client_max,
    };
    let writer = std::thread::spawn(move || {
        for event in rx {
            match event {
                Event::Fetch => {
                    out.write_all(format!("* 1 FETCH (UID 1 BODY[] {{{GIB}}}\r\n").as_bytes())
                        .unwrap();
                    Message::new(2, GIB).write_to(&mut out).unwrap();
                    out.write_all(b")\r\na OK FETCH completed\r\n").unwrap();
                }
                Event::Appended => out.write_all(b"b OK APPEND completed\r\n").unwrap(),
                Event::Logout => {
                    out.write_all(b"* BYE logging out\r\nc OK LOGOUT completed\r\n")
                        .unwrap();
                    out.w.shutdown(std::net::Shutdown::Write).unwrap();
                    return;
                }
            }
        }
    });
    let mut input = BufReader::with_capacity(
        BLOCK,
        LayerReader {
            r,
            ctx,
            plain: Vec::new(),
            pos: 0,
            tokens: 0,
            largest: 0,
        },
    );
    let mut line = || {
        let mut l = String::new();
        input.read_line(&mut l).unwrap();
        l
    };
    assert_eq!(line(), "a UID FETCH 1 BODY.PEEK[]\r\n");
    tx.send(Event::Fetch).unwrap();
    assert_eq!(line(), format!("b APPEND scratch {{{GIB}+}}\r\n"));
    Message::new(1, GIB).check_from(&mut input).unwrap();
    let mut line = || {
        let mut l = String::new();
        input.read_line(&mut l).unwrap();
        l
    };
    assert_eq!(line(), "\r\n", "the APPEND ends after its literal");
    tx.send(Event::Appended).unwrap();
    assert_eq!(line(), "c LOGOUT\r\n");
    tx.send(Event::Logout).unwrap();
    writer.join().unwrap();
    let eof_after_logout = line().is_empty();
    let reader = input.into_inner();
    LayerReport {
        chosen,
        tokens: reader.tokens,
        largest: reader.largest,
        eof_after_logout,
    }
}

#[test]
fn rfc4752_1_gib_each_way_at_once_crosses_the_confidentiality_layer_intact() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || serve_gib(listener));
    let dir = tempfile::tempdir().unwrap();
    let config = layer_config(dir.path(), port, "confidentiality");
    let started = Instant::now();
    let mut s = Session::spawn(&["--config", config.to_str().unwrap(), "tunnel", "test"]);
    let greeting = s.line();
    assert!(
        greeting.starts_with("* PREAUTH ")
            && greeting.contains("with the GSSAPI confidentiality layer"),
        "{greeting}"
    );
    // The client pipelines a FETCH and an APPEND (LITERAL+) and writes its 1 GiB while
    // the server's 1 GiB comes back.
    let mut input = s.input.take().unwrap();
    let writer = std::thread::spawn(move || -> std::io::Result<ChildStdin> {
        input.write_all(b"a UID FETCH 1 BODY.PEEK[]\r\n")?;
        input.write_all(format!("b APPEND scratch {{{GIB}+}}\r\n").as_bytes())?;
        Message::new(1, GIB).write_to(&mut input)?;
        input.write_all(b"\r\n")?;
        Ok(input)
    });
    let fetch = s.line();
    assert_eq!(fetch, format!("* 1 FETCH (UID 1 BODY[] {{{GIB}}}"));
    if let Err(e) = Message::new(2, GIB).check_from(&mut s.out) {
        s.fail(&e);
    }
    assert_eq!(s.line(), ")");
    assert_eq!(s.line(), "a OK FETCH completed");
    assert_eq!(s.line(), "b OK APPEND completed");
    let peak = s.peak_rss_kib();
    match writer.join().unwrap() {
        Ok(input) => s.input = Some(input),
        Err(e) => s.fail(&format!("writing to mailtun's stdin: {e}")),
    }
    s.send(b"c LOGOUT\r\n");
    assert_eq!(s.line(), "* BYE logging out");
    assert_eq!(s.line(), "c OK LOGOUT completed");
    s.finish();
    let report = server.join().unwrap();
    assert_eq!(report.chosen, 0x04, "the confidentiality layer");
    assert!(report.eof_after_logout, "mailtun closed after LOGOUT");
    assert!(
        peak < MAX_HWM_KIB,
        "mailtun's peak resident set was {peak} KiB"
    );
    eprintln!(
        "2 x 1 GiB at once through the GSSAPI confidentiality layer in {:.1} s; {} tokens from mailtun, largest {} (announced {ANNOUNCED}); mailtun peak RSS {peak} KiB",
        started.elapsed().as_secs_f64(),
        report.tokens,
        report.largest,
    );
}
