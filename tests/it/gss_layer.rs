//! The RFC 4752 security layer on a session without TLS (`tls = ["none"]`), against an
//! in-process IMAP acceptor built on the real Kerberos library with the harness's
//! service keytab (Dovecot 2.3 offers no layer). The 20 MB message crosses the layer;
//! `gigabyte.rs` sends 1 GiB each way through the same acceptor.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Once;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use libgssapi::context::{SecurityContext, ServerCtx};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::oid::{GSS_MECH_KRB5, OidSet};

use crate::harness::{harness, run_tunnel};
use crate::{EXIT_AUTH, EXIT_PROTOCOL};

const PAYLOAD_LEN: usize = 20 * 1024 * 1024;

fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\r\n"[i % 38])
        .collect()
}

fn acceptor_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let h = harness();
        // SAFETY: set once, before this process makes any GSS-API call; the other tests
        // of this binary run mailtun in child processes with their own environment.
        unsafe {
            std::env::set_var("KRB5_CONFIG", h.get("KRB5_CONFIG"));
            std::env::set_var("KRB5_KTNAME", format!("FILE:{}", h.get("KEYTAB")));
        }
    });
}

fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

pub fn send_token(w: &mut TcpStream, token: &[u8]) {
    w.write_all(&(token.len() as u32).to_be_bytes()).unwrap();
    w.write_all(token).unwrap();
}

fn read_token(r: &mut BufReader<TcpStream>, raw: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).ok()?;
    let mut token = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut token).ok()?;
    raw.extend_from_slice(&len);
    raw.extend_from_slice(&token);
    Some(token)
}

/// The server's security-layer message (RFC 4752 section 3.1).
#[derive(Debug, Clone, Copy)]
pub enum Offer {
    /// A well-formed offer of these layer bits.
    Layers(u8),
    /// Wrapped correctly, but 3 octets instead of 4.
    Short,
    /// Not a wrap token at all.
    Garbage,
}

/// The wrapped-token size the acceptor announces unless a test says otherwise: small,
/// so that the client must split its writes.
const ANNOUNCED_MAX: u32 = 0x4000;

/// The protocol the acceptor speaks. Before authentication it announces capabilities
/// named `X-PLAINTEXT-...` (in the greeting, CAPA or EHLO, and IMAP's tagged OK); inside
/// the layer `X-THROUGH-LAYER`, so a test can tell which ones reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Imap,
    Pop3,
    Smtp,
}

impl Proto {
    const ALL: [Proto; 3] = [Proto::Imap, Proto::Pop3, Proto::Smtp];

    /// `protocol` in the configuration.
    fn name(self) -> &'static str {
        match self {
            Proto::Imap => "imap",
            Proto::Pop3 => "pop3",
            Proto::Smtp => "smtp",
        }
    }

    fn challenge_prefix(self) -> &'static str {
        match self {
            Proto::Smtp => "334 ",
            _ => "+ ",
        }
    }

    /// The reply to the capability command `line` inside the layer, if it is one.
    fn capabilities_through_layer(self, line: &str) -> Option<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match (self, words.as_slice()) {
            (Proto::Imap, [tag, cmd]) if cmd.eq_ignore_ascii_case("CAPABILITY") => Some(format!(
                "* CAPABILITY IMAP4rev1 IDLE X-THROUGH-LAYER\r\n{tag} OK done\r\n"
            )),
            (Proto::Pop3, [cmd]) if cmd.eq_ignore_ascii_case("CAPA") => {
                Some("+OK\r\nTOP\r\nUIDL\r\nX-THROUGH-LAYER\r\n.\r\n".into())
            }
            (Proto::Smtp, [cmd, _]) if cmd.eq_ignore_ascii_case("EHLO") => {
                Some("250-mail.example.test\r\n250-8BITMIME\r\n250 X-THROUGH-LAYER\r\n".into())
            }
            _ => None,
        }
    }

    /// The test client's input: a capability query answered by mailtun's local side
    /// (POP3, SMTP), then the end of the session.
    fn client_input(self) -> &'static [u8] {
        match self {
            Proto::Imap => b"b LOGOUT\r\n",
            Proto::Pop3 => b"CAPA\r\nQUIT\r\n",
            Proto::Smtp => b"EHLO client.example\r\nQUIT\r\n",
        }
    }
}

/// An authenticated session under the security layer the client chose.
pub struct Accepted {
    pub ctx: ServerCtx,
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
    /// The layer bit the client chose.
    pub chosen: u8,
    /// The largest wrapped token the client accepts.
    pub client_max: usize,
}

impl Accepted {
    /// Reads the client's first command under the layer, which must be its capability
    /// query, and answers it through the layer.
    pub fn answer_capability(&mut self, proto: Proto) {
        let token = read_token(&mut self.r, &mut Vec::new()).expect("the capability query");
        let line = String::from_utf8(self.ctx.unwrap(&token).unwrap().to_vec()).unwrap();
        let reply = proto
            .capabilities_through_layer(&line)
            .unwrap_or_else(|| panic!("expected the capability query, got {line:?}"));
        let token = self.ctx.wrap(self.chosen == 4, reply.as_bytes()).unwrap();
        send_token(&mut self.w, &token);
    }
}

/// Accepts one IMAP connection: see [`accept_as`].
pub fn accept(listener: &TcpListener, offer: Offer, announced_max: u32) -> Option<Accepted> {
    accept_as(Proto::Imap, listener, offer, announced_max)
}

/// Accepts one connection and runs GSSAPI in `proto` with the layer message `offer`
/// (announcing `announced_max` octets as the largest token the acceptor takes), up to the
/// success reply. `None` when the client refused the offer and closed.
pub fn accept_as(
    proto: Proto,
    listener: &TcpListener,
    offer: Offer,
    announced_max: u32,
) -> Option<Accepted> {
    acceptor_env();
    let (stream, _) = listener.accept().unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    match proto {
        Proto::Imap => w.write_all(
            b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=GSSAPI X-PLAINTEXT-GREETING] test acceptor\r\n",
        ),
        Proto::Pop3 => {
            w.write_all(b"+OK test acceptor\r\n").unwrap();
            assert_eq!(read_line(&mut r), "CAPA");
            w.write_all(b"+OK\r\nSASL GSSAPI\r\nX-PLAINTEXT-CAPA\r\n.\r\n")
        }
        Proto::Smtp => {
            w.write_all(b"220 mail.example.test test acceptor\r\n").unwrap();
            assert!(read_line(&mut r).starts_with("EHLO "));
            w.write_all(b"250-mail.example.test\r\n250-X-PLAINTEXT-EHLO\r\n250 AUTH GSSAPI\r\n")
        }
    }
    .unwrap();
    let prefix = proto.challenge_prefix();
    let cmd = read_line(&mut r);
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let tag = match proto {
        Proto::Imap => words[0].to_string(),
        _ => String::new(),
    };
    let gssapi_at = words
        .iter()
        .position(|w| *w == "GSSAPI")
        .unwrap_or_else(|| panic!("an authentication command for GSSAPI: {cmd:?}"));
    let ir = match words.get(gssapi_at + 1) {
        Some(ir) => ir.to_string(),
        // The token did not fit on the command line: it answers an empty challenge.
        None => {
            w.write_all(format!("{prefix}\r\n").as_bytes()).unwrap();
            read_line(&mut r)
        }
    };
    let mechs = OidSet::singleton(GSS_MECH_KRB5).unwrap();
    let cred = Cred::acquire(None, None, CredUsage::Accept, Some(&mechs))
        .expect("acceptor credentials from the keytab");
    let mut ctx = ServerCtx::new(Some(cred));
    let out = ctx
        .step(&B64.decode(ir).unwrap(), None)
        .expect("accept the client's token");
    assert!(ctx.is_complete());
    let out = out.map(|b| b.to_vec()).unwrap_or_default();
    w.write_all(format!("{prefix}{}\r\n", B64.encode(out)).as_bytes())
        .unwrap();
    assert_eq!(
        read_line(&mut r),
        "",
        "the client answers the AP-REP with an empty response"
    );
    let max = announced_max.to_be_bytes();
    let offer_msg = match offer {
        Offer::Layers(bits) => ctx
            .wrap(false, &[bits, max[1], max[2], max[3]])
            .unwrap()
            .to_vec(),
        Offer::Short => ctx.wrap(false, &[0x07, max[1], max[2]]).unwrap().to_vec(),
        Offer::Garbage => b"\x05\x04\xffnot a wrap token at all, just bytes".to_vec(),
    };
    w.write_all(format!("{prefix}{}\r\n", B64.encode(&offer_msg)).as_bytes())
        .unwrap();
    let line = read_line(&mut r);
    if line.is_empty() {
        return None;
    }
    let reply = ctx.unwrap(&B64.decode(line).unwrap()).unwrap();
    let chosen = reply[0];
    let client_max = u32::from_be_bytes([0, reply[1], reply[2], reply[3]]) as usize;
    let ok = match proto {
        // RFC 3501 section 6.2.2: a server should not send capabilities here when a
        // layer was negotiated; one in the middle can.
        Proto::Imap => format!("{tag} OK [CAPABILITY IMAP4rev1 X-PLAINTEXT-OK] authenticated\r\n"),
        Proto::Pop3 => "+OK logged in\r\n".into(),
        Proto::Smtp => "235 2.7.0 authenticated\r\n".into(),
    };
    w.write_all(ok.as_bytes()).unwrap();
    Some(Accepted {
        ctx,
        r,
        w,
        chosen,
        client_max,
    })
}

/// Which of the acceptor's tokens under a confidentiality layer go out unencrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsealed {
    /// None: every token as negotiated.
    None,
    /// The reply to the capability query.
    Capabilities,
    /// Every reply after it (the relayed session).
    Data,
}

/// Serves one session: GSSAPI with the layer message `offer`, then `proto` under the
/// layer. Returns (the layer the client chose, every raw byte received under the layer).
fn serve(proto: Proto, listener: TcpListener, offer: Offer, unsealed: Unsealed) -> (u8, Vec<u8>) {
    let Some(Accepted {
        mut ctx,
        mut r,
        mut w,
        chosen,
        client_max,
    }) = accept_as(proto, &listener, offer, ANNOUNCED_MAX)
    else {
        // The client refused the offer and closed.
        return (0, Vec::new());
    };
    let encrypt = chosen == 4;
    let mut raw = Vec::new();
    let mut commands = Vec::new();
    while let Some(token) = read_token(&mut r, &mut raw) {
        commands.extend_from_slice(&ctx.unwrap(&token).unwrap());
        while let Some(end) = commands.windows(2).position(|x| x == b"\r\n") {
            let line: Vec<u8> = commands.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&line).into_owned();
            let upper = text.to_ascii_uppercase();
            let quit = upper.starts_with("B LOGOUT") || upper.starts_with("QUIT");
            let (reply, seal): (Vec<u8>, bool) =
                if let Some(caps) = proto.capabilities_through_layer(&text) {
                    (caps.into_bytes(), unsealed != Unsealed::Capabilities)
                } else if line.starts_with(b"a FETCH") {
                    let body = payload();
                    let reply = [
                        format!("* 1 FETCH (BODY[] {{{}}}\r\n", body.len()).as_bytes(),
                        &body,
                        b")\r\na OK done\r\n",
                    ]
                    .concat();
                    (reply, unsealed != Unsealed::Data)
                } else if quit {
                    let bye: &[u8] = match proto {
                        Proto::Imap => b"* BYE bye\r\nb OK done\r\n",
                        Proto::Pop3 => b"+OK bye\r\n",
                        Proto::Smtp => b"221 2.0.0 bye\r\n",
                    };
                    (bye.to_vec(), unsealed != Unsealed::Data)
                } else {
                    (b"* BAD what\r\n".to_vec(), true)
                };
            for chunk in reply.chunks(client_max - 256) {
                send_token(&mut w, &ctx.wrap(encrypt && seal, chunk).unwrap());
            }
            if quit {
                return (chosen, raw);
            }
        }
    }
    (chosen, raw)
}

/// A config file for an account `test` on the acceptor at 127.0.0.1:`port`, without TLS,
/// asking for the GSSAPI `layer`.
pub fn layer_config(dir: &Path, port: u16, layer: &str) -> PathBuf {
    layer_config_for(Proto::Imap, dir, port, layer)
}

fn layer_config_for(proto: Proto, dir: &Path, port: u16, layer: &str) -> PathBuf {
    let h = harness();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.test]\nprotocol = \"{}\"\nhost = \"{}\"\nconnect = \"127.0.0.1\"\nplain_port = {port}\ntls = [\"none\"]\nmin_protection = \"strong\"\nuser = \"alice\"\ntimeout_secs = 10\n[accounts.test.gssapi]\nccache = \"{}\"\nlayer = \"{layer}\"\n",
            proto.name(),
            h.get("MAIL_HOST"),
            h.get("ALICE_CCACHE")
        ),
    )
    .unwrap();
    config
}

/// Runs mailtun with `stdin` against an acceptor of `proto`; returns (the run, the layer
/// the client chose, the raw bytes the acceptor received under the layer).
fn run_with(
    proto: Proto,
    layer: &str,
    offer: Offer,
    unsealed: Unsealed,
    stdin: &[u8],
) -> (crate::harness::Output, u8, Vec<u8>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || serve(proto, listener, offer, unsealed));
    let dir = tempfile::tempdir().unwrap();
    let config = layer_config_for(proto, dir.path(), port, layer);
    let out = run_tunnel(&config, &[], stdin);
    let (chosen, raw) = server.join().unwrap();
    (out, chosen, raw)
}

fn run(layer: &str, offer: Offer) -> (crate::harness::Output, u8, Vec<u8>) {
    run_with(
        Proto::Imap,
        layer,
        offer,
        Unsealed::None,
        b"a FETCH 1 BODY[]\r\nb LOGOUT\r\n",
    )
}

#[test]
fn rfc4752_confidentiality_layer_carries_the_20mb_message_without_tls() {
    let (out, chosen, raw) = run("confidentiality", Offer::Layers(0x07));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(chosen, 0x04, "the client chose the confidentiality layer");
    let first = out.first_line();
    assert!(
        first.starts_with("* PREAUTH [CAPABILITY IMAP4rev1"),
        "{first}"
    );
    assert!(
        first.contains("with the GSSAPI confidentiality layer"),
        "{first}"
    );
    assert!(first.ends_with("protection strong"), "{first}");
    let got = crate::harness::literal_after(&out.stdout, b"BODY[]").expect("the FETCH literal");
    assert!(
        got == payload().as_slice(),
        "the message differs after the layer"
    );
    assert!(out.stdout_text().contains("b OK done"), "LOGOUT completed");
    // Encrypted: the client's commands are not readable on the wire.
    assert!(
        !raw.windows(7).any(|w| w == b"a FETCH"),
        "a command crossed the wire in clear"
    );
}

#[test]
fn integrity_layer_is_negotiated_when_asked_for() {
    let (out, chosen, _) = run("integrity", Offer::Layers(0x07));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(chosen, 0x02);
    assert!(
        out.first_line().contains("integrity layer"),
        "{}",
        out.first_line()
    );
}

#[test]
fn a_server_without_the_wanted_layer_is_refused() {
    let (out, chosen, _) = run("confidentiality", Offer::Layers(0x01));
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    assert_eq!(chosen, 0, "no layer reply was sent");
    assert!(
        out.first_line().starts_with("* BYE [AUTHENTICATIONFAILED]"),
        "{}",
        out.first_line()
    );
    assert!(
        out.stderr.contains("confidentiality layer"),
        "{}",
        out.stderr
    );
}

#[test]
fn rfc4752_a_malformed_security_layer_message_is_an_authentication_failure() {
    for (offer, message) in [
        (Offer::Short, "malformed (3 octets instead of 4)"),
        (Offer::Garbage, "Kerberos"),
    ] {
        let (out, chosen, _) = run("confidentiality", offer);
        assert_eq!(out.code, Some(EXIT_AUTH), "{offer:?}: {}", out.stderr);
        assert_eq!(chosen, 0, "{offer:?}: no layer reply was sent");
        assert!(
            out.first_line().starts_with("* BYE [AUTHENTICATIONFAILED]"),
            "{offer:?}: {}",
            out.first_line()
        );
        assert!(
            !out.stdout_text().contains("PREAUTH"),
            "{offer:?}: {}",
            out.stdout_text()
        );
        assert!(out.stderr.contains(message), "{offer:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("panicked"),
            "{offer:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn rfc4752_on_a_layered_session_the_client_gets_the_capabilities_asked_through_the_layer() {
    for proto in Proto::ALL {
        let (out, chosen, raw) = run_with(
            proto,
            "confidentiality",
            Offer::Layers(0x07),
            Unsealed::None,
            proto.client_input(),
        );
        let case = proto.name();
        assert_eq!(out.code, Some(0), "{case}: {}", out.stderr);
        assert_eq!(chosen, 0x04, "{case}");
        let stdout = out.stdout_text();
        assert!(
            stdout.contains("X-THROUGH-LAYER"),
            "{case}: the client must see the capabilities from inside the layer: {stdout:?}"
        );
        assert!(
            !stdout.contains("X-PLAINTEXT"),
            "{case}: capabilities from outside the layer reached the client: {stdout:?}"
        );
        if proto == Proto::Imap {
            let first = out.first_line();
            assert!(
                first.starts_with("* PREAUTH [CAPABILITY IMAP4rev1 IDLE X-THROUGH-LAYER]"),
                "{case}: {first}"
            );
        }
        // The query itself went encrypted.
        for word in [&b"CAPABILITY"[..], b"CAPA", b"EHLO"] {
            assert!(
                !raw.windows(word.len()).any(|w| w == word),
                "{case}: a capability query crossed the wire in clear"
            );
        }
    }
}

#[test]
fn an_unencrypted_token_on_a_confidentiality_layer_is_a_protocol_violation() {
    for proto in Proto::ALL {
        for unsealed in [Unsealed::Capabilities, Unsealed::Data] {
            let case = format!("{}: {unsealed:?} sent integrity-only", proto.name());
            let (out, chosen, _) = run_with(
                proto,
                "confidentiality",
                Offer::Layers(0x07),
                unsealed,
                proto.client_input(),
            );
            assert_eq!(chosen, 0x04, "{case}");
            assert_eq!(out.code, Some(EXIT_PROTOCOL), "{case}: {}", out.stderr);
            assert!(
                out.stderr.contains("not encrypted"),
                "{case}: {}",
                out.stderr
            );
            assert!(!out.stderr.contains("panicked"), "{case}: {}", out.stderr);
            let stdout = out.stdout_text();
            match unsealed {
                // Before the hand-over: the protocol's refusal, and nothing else.
                Unsealed::Capabilities => {
                    let refusal = match proto {
                        Proto::Imap => "* BYE [UNAVAILABLE] mailtun: ",
                        Proto::Pop3 => "-ERR [SYS/TEMP] mailtun: ",
                        Proto::Smtp => "421 mailtun: ",
                    };
                    assert!(stdout.starts_with(refusal), "{case}: {stdout:?}");
                    assert_eq!(stdout.matches('\n').count(), 1, "{case}: {stdout:?}");
                }
                // During the relay: the unencrypted reply never reaches the client.
                Unsealed::Data => {
                    assert!(
                        !stdout.contains("bye") && !stdout.contains("BYE bye"),
                        "{case}: {stdout:?}"
                    );
                }
                Unsealed::None => unreachable!(),
            }
        }
    }
}
