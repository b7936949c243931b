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

/// Accepts one connection and runs GSSAPI with the layer message `offer` (announcing
/// `announced_max` octets as the largest token the acceptor takes). `None` when the
/// client refused the offer and closed.
pub fn accept(listener: &TcpListener, offer: Offer, announced_max: u32) -> Option<Accepted> {
    acceptor_env();
    let (stream, _) = listener.accept().unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    w.write_all(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=GSSAPI] test acceptor\r\n")
        .unwrap();
    let cmd = read_line(&mut r);
    let ir = cmd
        .strip_prefix("m1 AUTHENTICATE GSSAPI ")
        .expect("AUTHENTICATE with SASL-IR");
    let mechs = OidSet::singleton(GSS_MECH_KRB5).unwrap();
    let cred = Cred::acquire(None, None, CredUsage::Accept, Some(&mechs))
        .expect("acceptor credentials from the keytab");
    let mut ctx = ServerCtx::new(Some(cred));
    let out = ctx
        .step(&B64.decode(ir).unwrap(), None)
        .expect("accept the client's token");
    assert!(ctx.is_complete());
    let out = out.map(|b| b.to_vec()).unwrap_or_default();
    w.write_all(format!("+ {}\r\n", B64.encode(out)).as_bytes())
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
    w.write_all(format!("+ {}\r\n", B64.encode(&offer_msg)).as_bytes())
        .unwrap();
    let line = read_line(&mut r);
    if line.is_empty() {
        return None;
    }
    let reply = ctx.unwrap(&B64.decode(line).unwrap()).unwrap();
    let chosen = reply[0];
    let client_max = u32::from_be_bytes([0, reply[1], reply[2], reply[3]]) as usize;
    w.write_all(b"m1 OK authenticated\r\n").unwrap();
    Some(Accepted {
        ctx,
        r,
        w,
        chosen,
        client_max,
    })
}

/// Serves one session: GSSAPI with the layer message `offer`, then IMAP under the layer.
/// Returns (the layer the client chose, every raw byte received under the layer).
fn serve(listener: TcpListener, offer: Offer) -> (u8, Vec<u8>) {
    let Some(Accepted {
        mut ctx,
        mut r,
        mut w,
        chosen,
        client_max,
    }) = accept(&listener, offer, ANNOUNCED_MAX)
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
            let reply: Vec<u8> = if line.starts_with(b"a FETCH") {
                let body = payload();
                [
                    format!("* 1 FETCH (BODY[] {{{}}}\r\n", body.len()).as_bytes(),
                    &body,
                    b")\r\na OK done\r\n",
                ]
                .concat()
            } else if line.starts_with(b"b LOGOUT") {
                b"* BYE bye\r\nb OK done\r\n".to_vec()
            } else {
                b"* BAD what\r\n".to_vec()
            };
            for chunk in reply.chunks(client_max - 256) {
                send_token(&mut w, &ctx.wrap(encrypt, chunk).unwrap());
            }
            if line.starts_with(b"b LOGOUT") {
                return (chosen, raw);
            }
        }
    }
    (chosen, raw)
}

/// A config file for an account `test` on the acceptor at 127.0.0.1:`port`, without TLS,
/// asking for the GSSAPI `layer`.
pub fn layer_config(dir: &Path, port: u16, layer: &str) -> PathBuf {
    let h = harness();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts.test]\nhost = \"{}\"\nconnect = \"127.0.0.1\"\nplain_port = {port}\ntls = [\"none\"]\nmin_protection = \"strong\"\nuser = \"alice\"\ntimeout_secs = 10\n[accounts.test.gssapi]\nccache = \"{}\"\nlayer = \"{layer}\"\n",
            h.get("MAIL_HOST"),
            h.get("ALICE_CCACHE")
        ),
    )
    .unwrap();
    config
}

fn run(layer: &str, offer: Offer) -> (crate::harness::Output, u8, Vec<u8>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || serve(listener, offer));
    let dir = tempfile::tempdir().unwrap();
    let config = layer_config(dir.path(), port, layer);
    let out = run_tunnel(&config, &[], b"a FETCH 1 BODY[]\r\nb LOGOUT\r\n");
    let (chosen, raw) = server.join().unwrap();
    (out, chosen, raw)
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
    assert_eq!(out.code, Some(6), "{}", out.stderr);
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
        assert_eq!(out.code, Some(6), "{offer:?}: {}", out.stderr);
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
