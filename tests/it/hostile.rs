//! The malicious-server suite (issue 6): scripted servers with real TLS attack each step
//! of the session, and every case checks what the server received (before TLS and,
//! decrypted, after it), what the local client got on stdout (a `BYE`, never a
//! `PREAUTH`), the exit code of the README's table, the time taken, and that nothing
//! panicked.
//!
//! The cases are written once against a [`Lang`]: what a protocol's server says at each
//! step and how mailtun's refusal looks in it; every case runs for each entry of
//! [`LANGS`] (IMAP, POP3, SMTP). A case that has no meaning in a protocol (PREAUTH,
//! literals) is skipped there by an `Option` in its entry.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::fake_server::{
    Act, Cert, FakeServer, HOST, HOSTILE_TEXT, Record, Run, assert_terminal_safe, pki, respond,
    run_args_within, run_mailtun_within, send,
};
use crate::harness::harness;
use crate::{EXIT_AUTH, EXIT_CONFIG, EXIT_NETWORK, EXIT_POLICY, EXIT_PROTOCOL};

/// The reply class mailtun gives the client, named as in the README table.
#[derive(Debug, Clone, Copy)]
enum Bye {
    Unavailable,
    PrivacyRequired,
    AuthenticationFailed,
}

fn bye_for(code: i32) -> Bye {
    match code {
        EXIT_POLICY => Bye::PrivacyRequired,
        EXIT_AUTH => Bye::AuthenticationFailed,
        _ => Bye::Unavailable,
    }
}

/// A script made from a list of capabilities.
type Script = fn(&str) -> Vec<Act>;

/// What a protocol's server says, and how mailtun's refusal looks in that protocol.
struct Lang {
    /// `protocol` in the configuration.
    protocol: &'static str,
    /// Ways to tell the client the pre-TLS capabilities (`caps` is a space-separated
    /// list in this protocol's spelling), up to the client's decision.
    hellos: &'static [(&'static str, Script)],
    /// The capability words: STARTTLS, a strong and a weak mechanism, initial response.
    starttls_cap: &'static str,
    gssapi_cap: &'static str,
    plain_cap: &'static str,
    sasl_ir_cap: &'static str,
    /// The STARTTLS (POP3: STLS) command as the server reads it.
    starttls_command: &'static str,
    /// The command that asks for capabilities, and the authentication command.
    capability_command: &'static str,
    auth_command: &'static str,
    /// The server's reply to STARTTLS that starts TLS (`{tag}` is the client's tag).
    starttls_ok: &'static str,
    /// Refusals of STARTTLS: name, reply (None: the server closes), expected exit code.
    starttls_refusals: &'static [(&'static str, Option<&'static str>, i32)],
    /// Injected after the STARTTLS OK in the same segment: name, bytes.
    injections: &'static [(&'static str, &'static str)],
    /// Untagged data a server may send before the STARTTLS reply.
    pre_tls_noise: &'static str,
    /// The capabilities exchange once TLS is up.
    caps_after_tls: Script,
    /// A greeting that claims the session is already authenticated (IMAP only).
    preauth_greeting: Option<&'static str>,
    /// A continuation request with no data, and an authentication success.
    empty_challenge: &'static str,
    /// What starts a continuation request with data.
    challenge_prefix: &'static str,
    /// Whether a Kerberos token fits on the authentication command line as an initial
    /// response (IMAP's SASL-IR has no limit; POP3 and SMTP lines are 255 and 512 octets,
    /// so the token waits for the empty challenge).
    token_fits_on_command_line: bool,
    auth_ok: &'static str,
    auth_no: &'static str,
    /// A line starting with the greeting, to prefix garbage with.
    greeting_prefix: &'static str,
    /// A reply announcing a 4 GB literal (None when the protocol has no literals).
    huge_literal: Option<&'static str>,
    /// The start of the reply mailtun gives the client for a failure of each class.
    bye: fn(Bye) -> &'static str,
    /// The protocol's own password logins: the capability word that offers it (empty:
    /// offered unless refused) and its name in `auth`.
    password_logins: &'static [(&'static str, &'static str)],
}

fn imap_hello_in_greeting(caps: &str) -> Vec<Act> {
    vec![send(format!(
        "* OK [CAPABILITY IMAP4rev1 {caps}] fake IMAP ready\r\n"
    ))]
}

fn imap_hello_by_command(caps: &str) -> Vec<Act> {
    vec![
        send("* OK fake IMAP ready\r\n"),
        Act::ReadLine,
        send(format!(
            "* CAPABILITY IMAP4rev1 {caps}\r\n{{tag}} OK done\r\n"
        )),
    ]
}

fn imap_caps_after_tls(caps: &str) -> Vec<Act> {
    vec![
        Act::ReadLine,
        send(format!(
            "* CAPABILITY IMAP4rev1 {caps}\r\n{{tag}} OK done\r\n"
        )),
    ]
}

fn imap_bye(b: Bye) -> &'static str {
    match b {
        Bye::Unavailable => "* BYE [UNAVAILABLE] mailtun: ",
        Bye::PrivacyRequired => "* BYE [PRIVACYREQUIRED] mailtun: ",
        Bye::AuthenticationFailed => "* BYE [AUTHENTICATIONFAILED] mailtun: ",
    }
}

const IMAP: Lang = Lang {
    protocol: "imap",
    hellos: &[
        ("in the greeting", imap_hello_in_greeting),
        ("after CAPABILITY", imap_hello_by_command),
    ],
    starttls_cap: "STARTTLS",
    gssapi_cap: "AUTH=GSSAPI",
    plain_cap: "AUTH=PLAIN",
    sasl_ir_cap: "SASL-IR",
    starttls_command: "STARTTLS",
    capability_command: "CAPABILITY",
    auth_command: "AUTHENTICATE",
    starttls_ok: "{tag} OK Begin TLS negotiation now\r\n",
    starttls_refusals: &[
        ("NO", Some("{tag} NO TLS not available\r\n"), EXIT_POLICY),
        ("BAD", Some("{tag} BAD unknown command\r\n"), EXIT_POLICY),
        ("BYE", Some("* BYE going away\r\n"), EXIT_PROTOCOL),
        ("connection closed", None, EXIT_PROTOCOL),
    ],
    injections: &[
        (
            "a fake CAPABILITY",
            "* CAPABILITY IMAP4rev1 AUTH=PLAIN LOGIN\r\n",
        ),
        (
            "a fake tagged OK for the next command",
            "m3 OK CAPABILITY completed\r\nm4 OK AUTHENTICATE completed\r\n",
        ),
    ],
    pre_tls_noise: "* CAPABILITY IMAP4rev1 AUTH=GSSAPI\r\n* 3 EXISTS\r\n* OK [ALERT] PRE-TLS-NOISE\r\n",
    caps_after_tls: imap_caps_after_tls,
    preauth_greeting: Some("* PREAUTH [CAPABILITY IMAP4rev1] welcome, no password needed\r\n"),
    empty_challenge: "+ \r\n",
    challenge_prefix: "+ ",
    token_fits_on_command_line: true,
    auth_ok: "{tag} OK authenticated\r\n",
    auth_no: "{tag} NO denied\r\n",
    greeting_prefix: "* OK ",
    huge_literal: Some("* CAPABILITY IMAP4rev1 {4294967296}\r\n"),
    bye: imap_bye,
    password_logins: &[("", "imap-login")],
};

/// Capability words in the suite's spelling (IMAP's: `AUTH=X` for a mechanism) split
/// into the mechanisms and the other words; empty words (a protocol without SASL-IR)
/// are dropped.
fn split_caps(caps: &str) -> (Vec<&str>, Vec<&str>) {
    let words = caps.split_whitespace();
    let mechs = words
        .clone()
        .filter_map(|w| w.strip_prefix("AUTH="))
        .collect();
    let others = words.filter(|w| !w.starts_with("AUTH=")).collect();
    (mechs, others)
}

/// A POP3 `CAPA` reply: one line per capability, the mechanisms on a `SASL` line.
fn pop3_capa(caps: &str) -> String {
    let (mechs, others) = split_caps(caps);
    let mut out = String::from("+OK Capability list follows\r\nTOP\r\nUIDL\r\n");
    for w in others {
        out.push_str(&format!("{w}\r\n"));
    }
    if !mechs.is_empty() {
        out.push_str(&format!("SASL {}\r\n", mechs.join(" ")));
    }
    out.push_str(".\r\n");
    out
}

fn pop3_hello_by_capa(caps: &str) -> Vec<Act> {
    vec![
        send("+OK fake POP3 ready <1896.697170952@fake>\r\n"),
        Act::ReadLine,
        send(pop3_capa(caps)),
    ]
}

fn pop3_caps_after_tls(caps: &str) -> Vec<Act> {
    vec![Act::ReadLine, send(pop3_capa(caps))]
}

fn pop3_bye(b: Bye) -> &'static str {
    match b {
        Bye::Unavailable | Bye::PrivacyRequired => "-ERR [SYS/TEMP] mailtun: ",
        Bye::AuthenticationFailed => "-ERR [AUTH] mailtun: ",
    }
}

const POP3: Lang = Lang {
    protocol: "pop3",
    hellos: &[("after CAPA", pop3_hello_by_capa)],
    starttls_cap: "STLS",
    gssapi_cap: "AUTH=GSSAPI",
    plain_cap: "AUTH=PLAIN",
    // RFC 5034: every POP3 AUTH may carry an initial response.
    sasl_ir_cap: "",
    starttls_command: "STLS",
    capability_command: "CAPA",
    auth_command: "AUTH",
    starttls_ok: "+OK Begin TLS negotiation\r\n",
    starttls_refusals: &[
        ("-ERR", Some("-ERR TLS not available\r\n"), EXIT_POLICY),
        (
            "-ERR [SYS/PERM]",
            Some("-ERR [SYS/PERM] command not permitted\r\n"),
            EXIT_POLICY,
        ),
        ("garbage", Some("* OK what\r\n"), EXIT_PROTOCOL),
        ("connection closed", None, EXIT_PROTOCOL),
    ],
    injections: &[
        ("a fake CAPA", "+OK\r\nSASL PLAIN\r\n.\r\n"),
        ("a fake +OK for the next command", "+OK Logged in.\r\n"),
    ],
    // POP3 has no untagged data: any extra line would be read as the STLS reply.
    pre_tls_noise: "",
    caps_after_tls: pop3_caps_after_tls,
    preauth_greeting: None,
    empty_challenge: "+ \r\n",
    challenge_prefix: "+ ",
    token_fits_on_command_line: false,
    auth_ok: "+OK Logged in.\r\n",
    auth_no: "-ERR [AUTH] Authentication failed.\r\n",
    greeting_prefix: "+OK ",
    huge_literal: None,
    bye: pop3_bye,
    // The greeting of `pop3_hello_by_capa` carries an APOP timestamp.
    password_logins: &[("USER", "user-pass"), ("", "apop")],
};

/// An SMTP `EHLO` reply: the server's name, then one extension per line, the mechanisms
/// on an `AUTH` line.
fn smtp_ehlo(caps: &str) -> String {
    let (mechs, others) = split_caps(caps);
    let mut lines = vec!["mail.example.test".to_string(), "8BITMIME".into()];
    lines.extend(others.iter().map(|w| w.to_string()));
    if !mechs.is_empty() {
        lines.push(format!("AUTH {}", mechs.join(" ")));
    }
    lines.push("PIPELINING".into());
    let last = lines.len() - 1;
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
        .collect()
}

fn smtp_hello_by_ehlo(caps: &str) -> Vec<Act> {
    vec![
        send("220 mail.example.test ESMTP fake\r\n"),
        Act::ReadLine,
        send(smtp_ehlo(caps)),
    ]
}

fn smtp_hello_multiline_greeting(caps: &str) -> Vec<Act> {
    vec![
        send("220-mail.example.test ESMTP fake\r\n220-second line\r\n220 ready\r\n"),
        Act::ReadLine,
        send(smtp_ehlo(caps)),
    ]
}

fn smtp_caps_after_tls(caps: &str) -> Vec<Act> {
    vec![Act::ReadLine, send(smtp_ehlo(caps))]
}

fn smtp_bye(b: Bye) -> &'static str {
    match b {
        Bye::Unavailable | Bye::PrivacyRequired => "421 mailtun: ",
        Bye::AuthenticationFailed => "535 mailtun: ",
    }
}

const SMTP: Lang = Lang {
    protocol: "smtp",
    hellos: &[
        ("after EHLO", smtp_hello_by_ehlo),
        ("after a multi-line greeting", smtp_hello_multiline_greeting),
    ],
    starttls_cap: "STARTTLS",
    gssapi_cap: "AUTH=GSSAPI",
    plain_cap: "AUTH=PLAIN",
    // RFC 4954: every AUTH may carry an initial response.
    sasl_ir_cap: "",
    starttls_command: "STARTTLS",
    capability_command: "EHLO",
    auth_command: "AUTH",
    starttls_ok: "220 2.0.0 Ready to start TLS\r\n",
    starttls_refusals: &[
        ("454", Some("454 4.7.0 TLS not available\r\n"), EXIT_POLICY),
        ("502", Some("502 5.5.1 unknown command\r\n"), EXIT_POLICY),
        (
            "421",
            Some("421 4.3.2 mail.example.test shutting down\r\n"),
            EXIT_PROTOCOL,
        ),
        ("garbage", Some("* OK what\r\n"), EXIT_PROTOCOL),
        ("connection closed", None, EXIT_PROTOCOL),
    ],
    injections: &[
        (
            "a fake EHLO reply",
            "250-mail.example.test\r\n250 AUTH PLAIN LOGIN\r\n",
        ),
        (
            "a fake 235 for the next command",
            "235 2.7.0 Authentication successful\r\n",
        ),
    ],
    // The lines of a multi-line STARTTLS reply before its last one.
    pre_tls_noise: "220-PRE-TLS-NOISE AUTH GSSAPI\r\n",
    caps_after_tls: smtp_caps_after_tls,
    preauth_greeting: None,
    empty_challenge: "334 \r\n",
    challenge_prefix: "334 ",
    token_fits_on_command_line: false,
    auth_ok: "235 2.7.0 Authentication successful\r\n",
    auth_no: "535 5.7.8 Authentication credentials invalid\r\n",
    greeting_prefix: "220 ",
    huge_literal: None,
    bye: smtp_bye,
    password_logins: &[],
};

/// Every protocol the suite covers.
const LANGS: &[&Lang] = &[&IMAP, &POP3, &SMTP];

/// Ports and settings of one account under test.
struct Account<'a> {
    lang: &'a Lang,
    plain_port: u16,
    tls_port: u16,
    tls: &'a str,
    timeout_secs: u64,
    extra: String,
    /// Global flags before `--config` (`-vv`).
    flags: Vec<&'static str>,
}

impl<'a> Account<'a> {
    fn starttls(lang: &'a Lang, plain_port: u16) -> Self {
        Account {
            lang,
            plain_port,
            // Nothing listens on port 1: a retry there would fail loudly.
            tls_port: 1,
            tls: "[\"starttls\"]",
            timeout_secs: 5,
            extra: String::new(),
            flags: Vec::new(),
        }
    }

    fn implicit(lang: &'a Lang, tls_port: u16) -> Self {
        Account {
            tls_port,
            plain_port: 1,
            tls: "[\"implicit\"]",
            ..Account::starttls(lang, 1)
        }
    }

    /// Writes the configuration and runs mailtun with a deadline of the timeout plus a
    /// margin.
    fn run(&self) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let path = self.write_config(dir.path());
        run_mailtun_within(&path, &self.flags, self.deadline())
    }

    /// Runs `mailtun ARGS` on this account's configuration: `{config}` in `args` is the
    /// path of the configuration file.
    fn run_with(&self, args: &[&str]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let path = self.write_config(dir.path());
        let path = path.to_str().unwrap();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "{config}" { path } else { a })
            .collect();
        run_args_within(&args, self.deadline())
    }

    fn deadline(&self) -> Duration {
        Duration::from_secs(self.timeout_secs) + Duration::from_secs(5)
    }

    /// Writes the configuration file of account `test` into `dir`.
    fn write_config(&self, dir: &std::path::Path) -> PathBuf {
        let h = harness();
        let path: PathBuf = dir.join("config.toml");
        let text = format!(
            "[accounts.test]\nprotocol = \"{protocol}\"\nhost = \"{HOST}\"\nconnect = \"127.0.0.1\"\nplain_port = {plain}\ntls_port = {tlsp}\ntls = {tls}\nca_file = \"{ca}\"\nuser = \"alice\"\ntimeout_secs = {timeout}\n{extra}\n[accounts.test.gssapi]\nccache = \"{cc}\"\n",
            protocol = self.lang.protocol,
            plain = self.plain_port,
            tlsp = self.tls_port,
            tls = self.tls,
            ca = pki().ca_file.display(),
            timeout = self.timeout_secs,
            extra = self.extra,
            cc = h.get("ALICE_CCACHE"),
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The common verdict: the documented exit code, the matching reply as the only thing
/// on stdout, no PREAUTH, no panic, within the account's timeout.
fn assert_refused(lang: &Lang, run: &Run, code: i32, case: &str) {
    let stdout = run.stdout_text();
    assert!(!run.killed, "{case}: mailtun hung; stderr: {}", run.stderr);
    assert_eq!(
        run.code,
        Some(code),
        "{case}: exit code; stdout: {stdout:?}; stderr: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked"),
        "{case}: panic: {}",
        run.stderr
    );
    let expected = (lang.bye)(bye_for(code));
    assert!(
        stdout.starts_with(expected),
        "{case}: the client should get {expected:?}..., got {stdout:?}"
    );
    assert!(
        std::str::from_utf8(&run.stdout).is_ok(),
        "{case}: stdout is not UTF-8"
    );
    assert_eq!(
        stdout.matches('\n').count(),
        1,
        "{case}: the refusal is the only line the client gets: {stdout:?}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("* PREAUTH")),
        "{case}: {stdout:?}"
    );
}

/// Neither in plaintext nor over TLS did the client start authenticating.
fn assert_no_auth(lang: &Lang, rec: &Record, case: &str) {
    for (where_, text) in [
        ("plaintext", rec.plain_text()),
        ("TLS", rec.decrypted_text()),
    ] {
        assert!(
            !text.contains(lang.auth_command),
            "{case}: {} sent over {where_}: {text:?}",
            lang.auth_command
        );
    }
}

fn caps(lang: &Lang, words: &[&str]) -> String {
    let _ = lang;
    words
        .iter()
        .filter(|w| !w.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `line` is the protocol's capability request (`m1 CAPABILITY`, `CAPA`,
/// `EHLO name`).
fn is_capability_request(lang: &Lang, line: &str) -> bool {
    line.split_whitespace()
        .any(|w| w.eq_ignore_ascii_case(lang.capability_command))
}

/// Script: read the authentication command and get the first Kerberos token to the
/// server: on the command line (IMAP SASL-IR), or after an empty challenge (POP3, SMTP,
/// or IMAP without SASL-IR).
fn first_token(lang: &Lang, sasl_ir: bool) -> Vec<Act> {
    if sasl_ir && lang.token_fits_on_command_line {
        vec![Act::ReadLine]
    } else {
        vec![Act::ReadLine, send(lang.empty_challenge), Act::ReadLine]
    }
}

/// Script: hello offering STARTTLS (+ `pre`), STARTTLS accepted, TLS with `cert`.
fn up_to_tls(lang: &Lang, hello: Script, pre_caps: &str, cert: Cert) -> Vec<Act> {
    let mut s = hello(pre_caps);
    s.push(Act::ReadLine);
    s.push(send(lang.starttls_ok));
    s.push(Act::Tls(cert));
    s
}

/// Script: the first hello offering STARTTLS and GSSAPI, then read the STARTTLS command.
fn up_to_starttls(lang: &Lang) -> Vec<Act> {
    let mut s = (lang.hellos[0].1)(&caps(lang, &[lang.starttls_cap, lang.gssapi_cap]));
    s.push(Act::ReadLine);
    s
}

/// Script: [`up_to_tls`] with the first hello, offering STARTTLS and GSSAPI.
fn starttls_with_gssapi(lang: &Lang, cert: Cert) -> Vec<Act> {
    up_to_tls(
        lang,
        lang.hellos[0].1,
        &caps(lang, &[lang.starttls_cap, lang.gssapi_cap]),
        cert,
    )
}

/// Script: TLS up with the good certificate, then GSSAPI offered inside it (with SASL-IR
/// if `sasl_ir`), up to the client's decision.
fn gssapi_inside_tls(lang: &Lang, sasl_ir: bool) -> Vec<Act> {
    let mut after = vec![lang.gssapi_cap];
    if sasl_ir {
        after.push(lang.sasl_ir_cap);
    }
    let mut script = starttls_with_gssapi(lang, Cert::Good);
    script.extend((lang.caps_after_tls)(&caps(lang, &after)));
    script
}

/// Plays `script` to a STARTTLS account of `lang` (see [`Account::starttls`]); returns
/// the run and what the server saw.
fn run_starttls(lang: &Lang, script: Vec<Act>) -> (Run, Record) {
    let server = FakeServer::start(script);
    let run = Account::starttls(lang, server.port).run();
    (run, server.finish())
}

/// A SHA-256 fingerprint as `pin_sha256` takes it.
fn pin_hex(sha256: &[u8; 32]) -> String {
    sha256.iter().map(|b| format!("{b:02X}")).collect()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// 1. STARTTLS not advertised.

#[test]
fn starttls_not_advertised_is_refused_before_any_other_command() {
    for lang in LANGS {
        for (how, hello) in lang.hellos {
            let case = format!("{}: no STARTTLS {how}", lang.protocol);
            let (run, rec) =
                run_starttls(lang, hello(&caps(lang, &[lang.gssapi_cap, lang.plain_cap])));
            assert_refused(lang, &run, EXIT_POLICY, &case);
            assert!(run.stderr.contains("STARTTLS"), "{case}: {}", run.stderr);
            let lines = rec.plain_lines();
            assert!(
                lines.iter().all(|l| is_capability_request(lang, l)),
                "{case}: only capability requests may be sent: {lines:?}"
            );
            assert!(!rec.tls_started, "{case}");
            assert_eq!(rec.connections, 1, "{case}");
        }
    }
}

// 2. STARTTLS refused.

#[test]
fn starttls_refused_ends_the_session_without_authenticating() {
    for lang in LANGS {
        for &(how, reply, code) in lang.starttls_refusals {
            let case = format!("{}: STARTTLS answered with {how}", lang.protocol);
            let mut script = up_to_starttls(lang);
            match reply {
                Some(r) => script.push(send(r)),
                None => script.push(Act::Close),
            }
            let (run, rec) = run_starttls(lang, script);
            assert_refused(lang, &run, code, &case);
            assert!(
                rec.plain_text()
                    .ends_with(&format!("{}\r\n", lang.starttls_command)),
                "{case}: STARTTLS is the last thing sent: {:?}",
                rec.plain_text()
            );
            assert_no_auth(lang, &rec, &case);
            assert_eq!(rec.connections, 1, "{case}: no retry");
        }
    }
}

// 3. Bytes injected after the STARTTLS OK, in the same segment.

#[test]
fn rfc3501_6_2_1_bytes_injected_after_starttls_ok_are_refused_before_tls() {
    for lang in LANGS {
        for &(how, injected) in lang.injections {
            let case = format!("{}: {how} after the STARTTLS OK", lang.protocol);
            let mut script = up_to_starttls(lang);
            script.push(send(format!("{}{injected}", lang.starttls_ok)));
            script.push(Act::Tls(Cert::Good));
            let (run, rec) = run_starttls(lang, script);
            assert_refused(lang, &run, EXIT_PROTOCOL, &case);
            assert!(run.stderr.contains("injection"), "{case}: {}", run.stderr);
            assert!(
                rec.raw_tls.is_empty(),
                "{case}: no ClientHello (nor anything else) may follow: {:?}",
                String::from_utf8_lossy(&rec.raw_tls)
            );
            assert!(!rec.tls_established, "{case}");
            assert_no_auth(lang, &rec, &case);
        }
    }
}

// 4. Untagged data and capabilities before TLS.

#[test]
fn rfc3501_6_2_1_data_before_tls_is_discarded_and_capabilities_asked_again() {
    for lang in LANGS {
        let case = format!("{}: untagged data before TLS", lang.protocol);
        // Before TLS the server offers GSSAPI (also in untagged noise with the STARTTLS
        // reply); inside TLS only PLAIN. Trusting anything from before TLS would start
        // GSSAPI; discarding it leaves no acceptable mechanism.
        let mut script = (lang.hellos[0].1)(&caps(
            lang,
            &[lang.starttls_cap, lang.gssapi_cap, lang.sasl_ir_cap],
        ));
        script.push(Act::ReadLine);
        script.push(send(format!("{}{}", lang.pre_tls_noise, lang.starttls_ok)));
        script.push(Act::Tls(Cert::Good));
        script.extend((lang.caps_after_tls)(&caps(lang, &[lang.plain_cap])));
        let (run, rec) = run_starttls(lang, script);
        assert_refused(lang, &run, EXIT_POLICY, &case);
        assert!(rec.tls_established, "{case}");
        let lines = rec.decrypted_lines();
        assert!(
            lines
                .first()
                .is_some_and(|l| is_capability_request(lang, l)),
            "{case}: the first command inside TLS asks for capabilities again: {lines:?}"
        );
        assert_no_auth(lang, &rec, &case);
        let stdout = run.stdout_text();
        assert!(
            !stdout.contains("PRE-TLS-NOISE") && !stdout.contains("EXISTS"),
            "{case}: pre-TLS data reached the client: {stdout:?}"
        );
    }
}

// 5. Plaintext PREAUTH.

#[test]
fn rfc3501_6_2_1_plaintext_preauth_greeting_is_refused_and_not_passed_on() {
    for lang in LANGS {
        let Some(preauth) = lang.preauth_greeting else {
            continue;
        };
        let case = format!("{}: PREAUTH before TLS", lang.protocol);
        let (run, rec) = run_starttls(lang, vec![send(preauth)]);
        assert_refused(lang, &run, EXIT_PROTOCOL, &case);
        assert!(run.stderr.contains("PREAUTH"), "{case}: {}", run.stderr);
        assert_eq!(rec.plain, b"", "{case}: nothing may be sent");
    }
}

// 6. Mechanism downgrade.

#[test]
fn mechanism_downgrade_inside_tls_is_refused_without_authenticating() {
    for lang in LANGS {
        for (how, hello) in lang.hellos {
            let case = format!("{}: GSSAPI {how} before TLS, PLAIN after", lang.protocol);
            let mut script = up_to_tls(
                lang,
                *hello,
                &caps(lang, &[lang.starttls_cap, lang.gssapi_cap]),
                Cert::Good,
            );
            script.extend((lang.caps_after_tls)(&caps(lang, &[lang.plain_cap])));
            let (run, rec) = run_starttls(lang, script);
            assert_refused(lang, &run, EXIT_POLICY, &case);
            assert!(run.stderr.contains("PLAIN"), "{case}: {}", run.stderr);
            assert!(rec.tls_established, "{case}");
            assert_no_auth(lang, &rec, &case);
        }
    }
}

// 7. No pipelining after STARTTLS; also the positive control for the TLS set-up.

#[test]
fn nothing_is_pipelined_after_starttls_and_authentication_happens_only_inside_tls() {
    for lang in LANGS {
        let case = format!("{}: STARTTLS then a refused GSSAPI", lang.protocol);
        let mut script = gssapi_inside_tls(lang, true);
        script.push(Act::ReadLine);
        script.push(send(lang.auth_no));
        let (run, rec) = run_starttls(lang, script);
        assert_refused(lang, &run, EXIT_AUTH, &case);
        let plain = rec.plain_text();
        assert!(
            plain.ends_with("\r\n")
                && plain
                    .lines()
                    .last()
                    .is_some_and(|l| l.split_whitespace().last() == Some(lang.starttls_command)),
            "{case}: plaintext ends with STARTTLS: {plain:?}"
        );
        assert_eq!(
            rec.raw_tls.first(),
            Some(&0x16),
            "{case}: the first byte after STARTTLS is a TLS handshake record"
        );
        assert!(rec.tls_established, "{case}: {:?}", rec.tls_error);
        assert_no_auth(
            lang,
            &Record {
                decrypted: Vec::new(),
                ..rec.clone()
            },
            &case,
        );
        assert!(
            rec.decrypted_text()
                .contains(&format!("{} GSSAPI", lang.auth_command)),
            "{case}: GSSAPI was attempted inside TLS: {:?}",
            rec.decrypted_text()
        );
    }
}

// 8. Certificates, on STARTTLS and on the SSL port.

fn certificate_refused(cert: Cert, pin: Option<&str>, message: &str) {
    for lang in LANGS {
        for implicit in [false, true] {
            let method = if implicit { "SSL port" } else { "STARTTLS" };
            let case = format!("{}: {cert:?} (pin {pin:?}) on {method}", lang.protocol);
            let mut script = if implicit {
                vec![Act::Tls(cert)]
            } else {
                starttls_with_gssapi(lang, cert)
            };
            script.extend((lang.caps_after_tls)(&caps(lang, &[lang.gssapi_cap])));
            let server = FakeServer::start(script);
            let mut account = if implicit {
                Account::implicit(lang, server.port)
            } else {
                Account::starttls(lang, server.port)
            };
            if let Some(pin) = pin {
                account.extra = format!("pin_sha256 = \"{pin}\"");
            }
            let run = account.run();
            let rec = server.finish();
            assert_refused(lang, &run, EXIT_NETWORK, &case);
            assert!(
                run.stderr.contains(message),
                "{case}: expected {message:?} in: {}",
                run.stderr
            );
            assert!(rec.tls_started, "{case}");
            assert!(!rec.tls_established, "{case}: the client must abort");
            assert!(
                rec.decrypted.is_empty(),
                "{case}: application data was sent: {:?}",
                rec.decrypted_text()
            );
            assert_no_auth(lang, &rec, &case);
            assert_eq!(rec.connections, 1, "{case}: no retry");
        }
    }
}

#[test]
fn certificate_self_signed_is_refused_on_starttls_and_ssl_port() {
    certificate_refused(Cert::SelfSigned, None, "does not trust");
}

#[test]
fn certificate_from_unknown_ca_is_refused_on_starttls_and_ssl_port() {
    certificate_refused(Cert::UnknownCa, None, "does not trust");
}

#[test]
fn certificate_for_another_name_is_refused_on_starttls_and_ssl_port() {
    certificate_refused(Cert::WrongName, None, "not valid for mail.example.test");
}

#[test]
fn certificate_expired_is_refused_on_starttls_and_ssl_port() {
    certificate_refused(Cert::Expired, None, "has expired");
}

#[test]
fn certificate_not_yet_valid_is_refused_on_starttls_and_ssl_port() {
    certificate_refused(Cert::NotYetValid, None, "not valid yet");
}

#[test]
fn certificate_naming_the_host_only_in_its_cn_is_refused_on_starttls_and_ssl_port() {
    certificate_refused(Cert::NoSan, None, "not valid for");
}

#[test]
fn certificate_not_matching_the_pin_is_refused_on_starttls_and_ssl_port() {
    let mut wrong = pki().good_sha256;
    wrong[0] ^= 0xff;
    certificate_refused(
        Cert::Good,
        Some(&pin_hex(&wrong)),
        "does not match `pin_sha256`",
    );
}

#[test]
fn certificate_matching_the_pin_is_accepted_on_the_ssl_port() {
    // The control for the certificate cases: the same PKI and pin, correct, get as far
    // as authentication.
    for lang in LANGS {
        let case = format!("{}: good certificate and pin", lang.protocol);
        let mut script = vec![Act::Tls(Cert::Good)];
        script.extend((lang.hellos[0].1)(&caps(lang, &[lang.gssapi_cap])));
        script.push(Act::ReadLine);
        script.push(send(lang.auth_no));
        let server = FakeServer::start(script);
        let mut account = Account::implicit(lang, server.port);
        account.extra = format!("pin_sha256 = \"{}\"", pin_hex(&pki().good_sha256));
        let run = account.run();
        let rec = server.finish();
        assert_refused(lang, &run, EXIT_AUTH, &case);
        assert!(rec.tls_established, "{case}: {:?}", rec.tls_error);
        assert!(
            rec.decrypted_text().contains(lang.auth_command),
            "{case}: {:?}",
            rec.decrypted_text()
        );
    }
}

// 9. Handshake failure after the STARTTLS OK.

#[test]
fn a_failed_handshake_after_starttls_ok_is_never_followed_by_plaintext_or_a_retry() {
    for lang in LANGS {
        let case = format!("{}: garbage instead of ServerHello", lang.protocol);
        let mut script = up_to_starttls(lang);
        script.push(send(lang.starttls_ok));
        // Wait for the ClientHello, then answer in plaintext.
        script.push(Act::ReadSome);
        script.push(send(format!(
            "{}[CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=GSSAPI] not TLS\r\n",
            lang.greeting_prefix
        )));
        let server = FakeServer::start(script);
        let ssl_port = FakeServer::silent();
        let mut account = Account::starttls(lang, server.port);
        account.tls = "[\"starttls\", \"implicit\"]";
        account.tls_port = ssl_port.port;
        let run = account.run();
        let rec = server.finish();
        let ssl = ssl_port.finish();
        assert_refused(lang, &run, EXIT_NETWORK, &case);
        assert!(
            run.stderr.contains("TLS handshake"),
            "{case}: {}",
            run.stderr
        );
        let marker = format!("{}\r\n", lang.starttls_command);
        let plain = &rec.plain;
        let at = plain
            .windows(marker.len())
            .position(|w| w == marker.as_bytes())
            .expect("STARTTLS sent")
            + marker.len();
        let after = &plain[at..];
        assert_eq!(after.first(), Some(&0x16), "{case}: a ClientHello follows");
        let text = String::from_utf8_lossy(after);
        for word in [lang.capability_command, lang.auth_command] {
            assert!(
                !text.contains(word),
                "{case}: plaintext {word} after the failed handshake"
            );
        }
        assert_eq!(rec.connections, 1, "{case}: no second plaintext connection");
        assert_eq!(
            ssl.connections, 0,
            "{case}: a broken handshake is not a reason to try the next method"
        );
    }
}

// 11. GSSAPI: success before the exchange completed.

#[test]
fn rfc4752_tagged_ok_before_the_gssapi_exchange_completed_is_refused() {
    for lang in LANGS {
        for sasl_ir in [true, false] {
            let case = format!(
                "{}: OK right after the first token (SASL-IR {sasl_ir})",
                lang.protocol
            );
            let mut script = gssapi_inside_tls(lang, sasl_ir);
            script.extend(first_token(lang, sasl_ir));
            script.push(send(lang.auth_ok));
            let (run, rec) = run_starttls(lang, script);
            assert_refused(lang, &run, EXIT_AUTH, &case);
            assert!(
                run.stderr
                    .contains("success before the GSSAPI exchange was complete"),
                "{case}: {}",
                run.stderr
            );
            // The first token really went out: the refusal is about the server's OK.
            let text = rec.decrypted_text();
            let auth = format!("{} GSSAPI", lang.auth_command);
            assert!(text.contains(&auth), "{case}: {text:?}");
            assert!(text.len() > 200, "{case}: no Kerberos token sent: {text:?}");
            // Nothing followed the premature OK: the session stopped at once.
            let after_auth = &text[text.find(&auth).unwrap()..];
            assert!(
                after_auth.lines().count() <= 2
                    && !after_auth.lines().any(|l| is_capability_request(lang, l)),
                "{case}: a command followed the OK: {after_auth:?}"
            );
        }
    }
}

#[test]
fn a_challenge_that_is_not_base64_is_refused() {
    for lang in LANGS {
        let case = format!("{}: challenge not base64", lang.protocol);
        let mut script = gssapi_inside_tls(lang, true);
        script.extend(first_token(lang, true));
        script.push(send(format!("{}!!not*base64!!\r\n", lang.challenge_prefix)));
        let (run, _) = run_starttls(lang, script);
        assert_refused(lang, &run, EXIT_PROTOCOL, &case);
        assert!(run.stderr.contains("base64"), "{case}: {}", run.stderr);
    }
}

#[test]
fn a_gssapi_challenge_that_is_not_a_kerberos_token_is_an_authentication_failure() {
    for lang in LANGS {
        let case = format!("{}: garbage GSSAPI token", lang.protocol);
        let mut script = gssapi_inside_tls(lang, true);
        script.extend(first_token(lang, true));
        // "garbage token" in base64.
        script.push(send(format!(
            "{}Z2FyYmFnZSB0b2tlbg==\r\n",
            lang.challenge_prefix
        )));
        let (run, _) = run_starttls(lang, script);
        assert_refused(lang, &run, EXIT_AUTH, &case);
    }
}

// 10. SCRAM: a server (or someone in its place) that does not know the password.

/// The password the account's command prints.
const SCRAM_PASSWORD: &str = "pencil-Hostile.10";

/// What the fake SCRAM server answers to the client-first message.
#[derive(Debug, Clone, Copy)]
enum ServerFirst {
    /// A valid server-first message with this iteration count.
    Iterations(u64),
    /// A nonce that does not start with the client's.
    ForeignNonce,
    /// The client's nonce, not extended.
    SameNonce,
}

/// The server-first message for the client-first message on `line` (the AUTH command
/// with its initial response as the last word).
fn scram_server_first(prefix: &'static str, how: ServerFirst) -> Act {
    respond(move |line| {
        let text = String::from_utf8_lossy(line);
        let ir = text.split_whitespace().last().unwrap_or_default();
        let first = String::from_utf8(B64.decode(ir).unwrap_or_default()).unwrap_or_default();
        let nonce = first
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .unwrap_or("none")
            .to_string();
        let message = match how {
            ServerFirst::Iterations(i) => format!("r={nonce}srvEXT,s=c2FsdHNhbHQ=,i={i}"),
            ServerFirst::ForeignNonce => "r=AAAAbbbbCCCCddddsrvEXT,s=c2FsdHNhbHQ=,i=4096".into(),
            ServerFirst::SameNonce => format!("r={nonce},s=c2FsdHNhbHQ=,i=4096"),
        };
        format!("{prefix}{}\r\n", B64.encode(message)).into_bytes()
    })
}

/// Runs one SCRAM-SHA-256 exchange against a fake server playing `after` once the
/// client-first message arrived; returns the run, the record and the decrypted lines.
fn scram_case(lang: &Lang, case: &str, after: Vec<Act>) -> (Run, Record) {
    let mech = "AUTH=SCRAM-SHA-256";
    let mut script = up_to_tls(
        lang,
        lang.hellos[0].1,
        &caps(lang, &[lang.starttls_cap, mech]),
        Cert::Good,
    );
    script.extend((lang.caps_after_tls)(&caps(
        lang,
        &[mech, lang.sasl_ir_cap],
    )));
    script.push(Act::ReadLine);
    script.extend(after);
    let server = FakeServer::start(script);
    let mut account = Account::starttls(lang, server.port);
    account.extra =
        format!("auth = [\"scram-sha-256\"]\npassword = {{ command = \"echo {SCRAM_PASSWORD}\" }}");
    let run = account.run();
    let rec = server.finish();
    assert_refused(lang, &run, EXIT_AUTH, case);
    let text = rec.decrypted_text();
    assert!(
        text.contains(&format!("{} SCRAM-SHA-256 ", lang.auth_command)),
        "{case}: SCRAM with an initial response: {text:?}"
    );
    assert!(
        !text.contains(SCRAM_PASSWORD) && !rec.plain_text().contains(SCRAM_PASSWORD),
        "{case}: the password went on the wire"
    );
    (run, rec)
}

/// The last line the client sent is its client-final message: nothing followed it.
fn assert_ends_with_client_final(rec: &Record, case: &str) {
    let lines = rec.decrypted_lines();
    let last = lines.last().map(String::as_str).unwrap_or_default();
    let decoded = String::from_utf8(B64.decode(last).unwrap_or_default()).unwrap_or_default();
    assert!(
        decoded.starts_with("c=") && decoded.contains(",p="),
        "{case}: the client-final message is the last thing sent: {lines:?}"
    );
}

/// The last line the client sent is its authentication command (client-first).
fn assert_ends_with_client_first(lang: &Lang, rec: &Record, case: &str) {
    let lines = rec.decrypted_lines();
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains(&format!("{} SCRAM-SHA-256 ", lang.auth_command))),
        "{case}: nothing may follow the client-first message: {lines:?}"
    );
}

#[test]
fn rfc5802_scram_server_that_does_not_prove_the_password_is_refused() {
    for lang in LANGS {
        let p = lang.challenge_prefix;
        let finals: [(&str, Vec<Act>, &str); 4] = [
            (
                "wrong server signature",
                vec![send(format!(
                    "{p}{}\r\n",
                    B64.encode(format!("v={}", B64.encode([7u8; 32])))
                ))],
                "signature does not verify",
            ),
            (
                "server signature not base64",
                vec![send(format!("{p}{}\r\n", B64.encode("v=garbage!!*")))],
                "not base64",
            ),
            (
                "e=invalid-proof",
                vec![send(format!("{p}{}\r\n", B64.encode("e=invalid-proof")))],
                "invalid-proof",
            ),
            (
                "success without a server-final message",
                vec![send(lang.auth_ok)],
                "success before the SCRAM-SHA-256 exchange was complete",
            ),
        ];
        for (how, after, message) in finals {
            let case = format!("{}: SCRAM {how}", lang.protocol);
            let mut script = vec![scram_server_first(p, ServerFirst::Iterations(4096))];
            script.push(Act::ReadLine);
            script.extend(after);
            let (run, rec) = scram_case(lang, &case, script);
            assert!(run.stderr.contains(message), "{case}: {}", run.stderr);
            assert_ends_with_client_final(&rec, &case);
        }
    }
}

#[test]
fn rfc5802_scram_server_first_message_not_for_this_exchange_is_refused() {
    for lang in LANGS {
        let p = lang.challenge_prefix;
        let cases = [
            (ServerFirst::ForeignNonce, "nonce does not extend"),
            (ServerFirst::SameNonce, "nonce does not extend"),
            (
                ServerFirst::Iterations(1),
                "asks for 1 SCRAM-SHA-256 iterations",
            ),
            (
                ServerFirst::Iterations(1_000_000_000),
                "asks for 1000000000 SCRAM-SHA-256 iterations",
            ),
        ];
        for (how, message) in cases {
            let case = format!("{}: SCRAM {how:?}", lang.protocol);
            let (run, rec) = scram_case(lang, &case, vec![scram_server_first(p, how)]);
            assert!(run.stderr.contains(message), "{case}: {}", run.stderr);
            assert_ends_with_client_first(lang, &rec, &case);
            // Refused before any key derivation: no time spent on 10^9 iterations.
            assert!(
                run.elapsed < Duration::from_secs(3),
                "{case}: {:.1} s",
                secs(run.elapsed)
            );
        }
    }
}

// 12. Garbage.

#[test]
fn a_10mb_line_without_crlf_is_refused_with_bounded_reading() {
    for lang in LANGS {
        let case = format!("{}: 10 MB line", lang.protocol);
        let mut line = lang.greeting_prefix.as_bytes().to_vec();
        line.resize(10 * 1024 * 1024, b'a');
        let (run, rec) = run_starttls(lang, vec![Act::Send(line)]);
        assert_refused(lang, &run, EXIT_PROTOCOL, &case);
        assert!(run.stderr.contains("longer than"), "{case}: {}", run.stderr);
        assert_eq!(rec.plain, b"", "{case}");
    }
}

#[test]
fn a_10mb_line_inside_tls_is_refused() {
    for lang in LANGS {
        let case = format!("{}: 10 MB line after TLS", lang.protocol);
        let mut script = starttls_with_gssapi(lang, Cert::Good);
        script.push(Act::ReadLine);
        let mut line = b"* CAPABILITY ".to_vec();
        line.resize(10 * 1024 * 1024, b'A');
        script.push(Act::Send(line));
        let (run, rec) = run_starttls(lang, script);
        assert_refused(lang, &run, EXIT_PROTOCOL, &case);
        assert!(run.stderr.contains("longer than"), "{case}: {}", run.stderr);
        assert_no_auth(lang, &rec, &case);
    }
}

#[test]
fn a_4gb_literal_announced_is_refused_without_waiting_for_it() {
    for lang in LANGS {
        let Some(huge) = lang.huge_literal else {
            continue;
        };
        let case = format!("{}: 4 GB literal", lang.protocol);
        // Before TLS, in the reply to CAPABILITY, and inside TLS.
        let before = vec![
            send(format!("{}fake\r\n", lang.greeting_prefix)),
            Act::ReadLine,
            send(huge),
        ];
        let mut inside = starttls_with_gssapi(lang, Cert::Good);
        inside.push(Act::ReadLine);
        inside.push(send(huge));
        for script in [before, inside] {
            let (run, rec) = run_starttls(lang, script);
            assert_refused(lang, &run, EXIT_PROTOCOL, &case);
            assert!(run.stderr.contains("4294967296"), "{case}: {}", run.stderr);
            assert!(
                run.elapsed < Duration::from_secs(3),
                "{case}: {:?}",
                run.elapsed
            );
            assert_no_auth(lang, &rec, &case);
        }
    }
}

#[test]
fn an_endless_response_made_of_literals_is_refused_with_bounded_reading() {
    for lang in LANGS {
        if lang.huge_literal.is_none() {
            continue;
        }
        // Each literal is within the limit, but the response never ends: 100 MB of
        // literals in one greeting must not be buffered until the timeout.
        let case = format!("{}: endless chain of literals", lang.protocol);
        let mut greeting = lang.greeting_prefix.as_bytes().to_vec();
        for _ in 0..1700 {
            greeting.extend_from_slice(b"{60000}\r\n");
            greeting.resize(greeting.len() + 60000, b'a');
        }
        let (run, rec) = run_starttls(lang, vec![Act::Send(greeting)]);
        assert_refused(lang, &run, EXIT_PROTOCOL, &case);
        assert!(run.stderr.contains("longer than"), "{case}: {}", run.stderr);
        assert!(
            run.elapsed < Duration::from_secs(3),
            "{case}: {:?}",
            run.elapsed
        );
        assert_eq!(rec.plain, b"", "{case}");
    }
}

#[test]
fn nul_bytes_from_the_server_are_refused() {
    for lang in LANGS {
        let case = format!("{}: NUL in the greeting", lang.protocol);
        let (run, rec) = run_starttls(
            lang,
            vec![send(format!(
                "{}[CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI] hi\0there\r\n",
                lang.greeting_prefix
            ))],
        );
        assert_refused(lang, &run, EXIT_PROTOCOL, &case);
        assert!(run.stderr.contains("NUL"), "{case}: {}", run.stderr);
        assert_eq!(rec.plain, b"", "{case}");
    }
}

#[test]
fn invalid_utf8_from_the_server_gives_a_clean_refusal() {
    for lang in LANGS {
        // Not a greeting at all: refused as such, with the bytes escaped.
        let case = format!("{}: invalid UTF-8 greeting", lang.protocol);
        let (run, _) = run_starttls(lang, vec![send(b"\xff\xfe\xc3( \x80garbage\r\n")]);
        assert_refused(lang, &run, EXIT_PROTOCOL, &case);

        // A valid greeting whose text is not UTF-8: read like any other (here: no
        // STARTTLS), and nothing of it breaks the reply.
        let case = format!("{}: invalid UTF-8 in the greeting text", lang.protocol);
        let mut g = lang.greeting_prefix.as_bytes().to_vec();
        g.extend_from_slice(b"caf\xe9 \xff\xfe\r\n");
        let mut script = vec![Act::Send(g)];
        script.extend((lang.caps_after_tls)(&caps(lang, &[lang.gssapi_cap])));
        let (run, rec) = run_starttls(lang, script);
        assert_refused(lang, &run, EXIT_POLICY, &case);
        let lines = rec.plain_lines();
        assert!(
            lines.iter().all(|l| is_capability_request(lang, l)),
            "{case}: {lines:?}"
        );
    }
}

#[test]
fn a_connection_closed_mid_authentication_is_refused() {
    for lang in LANGS {
        let case = format!("{}: closed after the first token", lang.protocol);
        let mut script = gssapi_inside_tls(lang, true);
        script.push(Act::ReadLine);
        script.push(Act::Close);
        let (run, _) = run_starttls(lang, script);
        assert_refused(lang, &run, EXIT_PROTOCOL, &case);
        assert!(run.stderr.contains("closed"), "{case}: {}", run.stderr);
    }
}

#[test]
fn a_server_that_never_answers_is_dropped_at_the_timeout() {
    // The cases wait on timers, not on the CPU: run them side by side (one thread per
    // protocol), so that the suite takes the 2 s timeout three times, not nine.
    std::thread::scope(|scope| {
        for lang in LANGS {
            scope.spawn(move || never_answers(lang));
        }
    });
}

fn never_answers(lang: &'static Lang) {
    let stall_greeting = Vec::new();
    // Accepts STARTTLS, then never answers the ClientHello.
    let mut stall_handshake = (lang.hellos[0].1)(&caps(lang, &[lang.starttls_cap]));
    stall_handshake.push(Act::ReadLine);
    stall_handshake.push(send(lang.starttls_ok));
    // Never answers the first authentication step.
    let stall_auth = gssapi_inside_tls(lang, true);
    std::thread::scope(|scope| {
        for (how, script) in [
            ("no greeting", stall_greeting),
            ("silent during the TLS handshake", stall_handshake),
            ("silent during authentication", stall_auth),
        ] {
            scope.spawn(move || stall_case(lang, how, script));
        }
    });
}

fn stall_case(lang: &'static Lang, how: &str, script: Vec<Act>) {
    let case = format!("{}: {how}", lang.protocol);
    let server = FakeServer::start(script);
    let mut account = Account::starttls(lang, server.port);
    account.timeout_secs = 2;
    let run = account.run();
    server.finish();
    assert_refused(lang, &run, EXIT_NETWORK, &case);
    assert!(
        run.elapsed < Duration::from_secs(3),
        "{case}: took {:.1} s",
        secs(run.elapsed)
    );
    assert!(
        run.elapsed >= Duration::from_secs(2),
        "{case}: gave up early, {:.1} s",
        secs(run.elapsed)
    );
    assert!(run.stderr.contains("within 2 s"), "{case}: {}", run.stderr);
}

// 13. Issue 12: a pin holds under `dangerous`, unverified TLS carries no password or
// token, and no SCRAM channel-binding strip.

/// `[dangerous] accept_invalid_certs = true`, in the account's own table.
const DANGEROUS: &str = "dangerous = { accept_invalid_certs = true }";

/// [`DANGEROUS`] without a pin: unverified TLS, which only `min_protection = "strong"`
/// accepts (any other level is a configuration error).
const DANGEROUS_UNPINNED: &str =
    "min_protection = \"strong\"\ndangerous = { accept_invalid_certs = true }";

/// The bearer token the account's command prints.
const TOKEN: &str = "tok-Hostile.13";

/// Extra settings: `auth`, the password and token commands, and `more`.
fn with_auth(auth: &str, more: &str) -> String {
    format!(
        "auth = {auth}\npassword = {{ command = \"echo {SCRAM_PASSWORD}\" }}\noauth_token_command = \"echo {TOKEN}\"\n{more}"
    )
}

/// Script: TLS with `cert` (after STARTTLS, or at once on the SSL port), then the
/// capabilities `after` inside it, up to the client's decision.
fn tls_offering(lang: &Lang, implicit: bool, cert: Cert, after: &[&str]) -> Vec<Act> {
    if implicit {
        let mut s = vec![Act::Tls(cert)];
        s.extend((lang.hellos[0].1)(&caps(lang, after)));
        s
    } else {
        let mut s = up_to_tls(
            lang,
            lang.hellos[0].1,
            &caps(lang, &[lang.starttls_cap]),
            cert,
        );
        s.extend((lang.caps_after_tls)(&caps(lang, after)));
        s
    }
}

/// Plays `script` to the account `extra` (on STARTTLS or the SSL port).
fn run_account(lang: &Lang, implicit: bool, extra: String, script: Vec<Act>) -> (Run, Record) {
    let server = FakeServer::start(script);
    let mut account = if implicit {
        Account::implicit(lang, server.port)
    } else {
        Account::starttls(lang, server.port)
    };
    account.extra = extra;
    let run = account.run();
    (run, server.finish())
}

/// Neither the password nor the token, nor their base64 forms, reached the server.
fn assert_no_secret_sent(rec: &Record, case: &str) {
    let wire = format!("{}{}", rec.plain_text(), rec.decrypted_text());
    for secret in [SCRAM_PASSWORD, TOKEN] {
        assert!(!wire.contains(secret), "{case}: {secret} on the wire");
        assert!(
            !wire.contains(&B64.encode(secret)[..12]),
            "{case}: {secret} in base64 on the wire"
        );
    }
}

/// The SASL mechanisms the client started over TLS, each with its decoded initial
/// response.
fn started(lang: &Lang, rec: &Record) -> Vec<(String, String)> {
    rec.decrypted_lines()
        .iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let pos = words.position(|w| w == lang.auth_command)?;
            let mut rest = l.split_whitespace().skip(pos + 1);
            let mech = rest.next()?.to_string();
            let ir = rest.next().unwrap_or_default();
            let ir = String::from_utf8_lossy(&B64.decode(ir).unwrap_or_default()).into_owned();
            Some((mech, ir))
        })
        .collect()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Script: a SCRAM-SHA-256 server that knows [`SCRAM_PASSWORD`]: reads the
/// authentication command (its initial response is the client-first message), sends the
/// server-first message, reads the client-final message and answers with the server
/// signature, then reads the client's empty response and accepts. It does not check the
/// client's proof: the cases look at the client.
fn scram_server(lang: &Lang) -> Vec<Act> {
    use std::sync::{Arc, Mutex};
    const SALT: &[u8] = b"hostile salt";
    let p = lang.challenge_prefix;
    // client-first-bare and server-first, for the AuthMessage.
    let state = Arc::new(Mutex::new((String::new(), String::new())));
    let first_state = state.clone();
    let first = respond(move |line| {
        let text = String::from_utf8_lossy(line);
        let ir = text.split_whitespace().last().unwrap_or_default();
        let msg = String::from_utf8(B64.decode(ir).unwrap_or_default()).unwrap_or_default();
        // The GS2 header is the first two fields.
        let bare = msg.splitn(3, ',').nth(2).unwrap_or_default().to_string();
        let nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .unwrap_or("none");
        let server_first = format!("r={nonce}srvEXT,s={},i=4096", B64.encode(SALT));
        let reply = format!("{p}{}\r\n", B64.encode(&server_first));
        *first_state.lock().unwrap() = (bare, server_first);
        reply.into_bytes()
    });
    let last = respond(move |line| {
        let client_final =
            String::from_utf8(B64.decode(line).unwrap_or_default()).unwrap_or_default();
        let without_proof = client_final.split(",p=").next().unwrap_or_default();
        let (bare, server_first) = state.lock().unwrap().clone();
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2::<hmac::Hmac<sha2::Sha256>>(
            SCRAM_PASSWORD.as_bytes(),
            SALT,
            4096,
            &mut salted,
        )
        .unwrap();
        let server_key = hmac_sha256(&salted, b"Server Key");
        let signature = hmac_sha256(&server_key, auth_message.as_bytes());
        format!(
            "{p}{}\r\n",
            B64.encode(format!("v={}", B64.encode(signature)))
        )
        .into_bytes()
    });
    vec![
        Act::ReadLine,
        first,
        Act::ReadLine,
        last,
        Act::ReadLine,
        send(lang.auth_ok),
    ]
}

#[test]
fn a_pin_holds_under_accept_invalid_certs() {
    for lang in LANGS {
        for implicit in [false, true] {
            let method = if implicit { "SSL port" } else { "STARTTLS" };
            // A self-signed certificate other than the pinned one: refused, although
            // `accept_invalid_certs` waives the chain and name checks.
            let case = format!("{}: dangerous, another pin, on {method}", lang.protocol);
            let mut script = tls_offering(
                lang,
                implicit,
                Cert::SelfSigned,
                &[lang.plain_cap, lang.sasl_ir_cap],
            );
            script.push(Act::ReadLine);
            script.push(send(lang.auth_no));
            let pin = format!("pin_sha256 = \"{}\"", pin_hex(&pki().good_sha256));
            let extra = with_auth("[\"plain\"]", &format!("{pin}\n{DANGEROUS}"));
            let (run, rec) = run_account(lang, implicit, extra, script);
            assert_refused(lang, &run, EXIT_NETWORK, &case);
            assert!(
                run.stderr.contains("does not match `pin_sha256`"),
                "{case}: {}",
                run.stderr
            );
            assert!(!rec.tls_established, "{case}: the client must abort");
            assert_no_auth(lang, &rec, &case);
            assert_no_secret_sent(&rec, &case);

            // The control: the pin of the self-signed certificate makes the link
            // verified, so even PLAIN goes (and the server's refusal is an
            // authentication failure).
            let case = format!("{}: dangerous, the right pin, on {method}", lang.protocol);
            let mut script = tls_offering(
                lang,
                implicit,
                Cert::SelfSigned,
                &[lang.plain_cap, lang.sasl_ir_cap],
            );
            script.push(Act::ReadLine);
            script.push(send(lang.auth_no));
            let pin = format!("pin_sha256 = \"{}\"", pin_hex(&pki().self_signed_sha256));
            let extra = with_auth("[\"plain\"]", &format!("{pin}\n{DANGEROUS}"));
            let (run, rec) = run_account(lang, implicit, extra, script);
            assert_refused(lang, &run, EXIT_AUTH, &case);
            assert!(rec.tls_established, "{case}: {:?}", rec.tls_error);
            let mechs: Vec<String> = started(lang, &rec).into_iter().map(|(m, _)| m).collect();
            assert_eq!(mechs, ["PLAIN"], "{case}");
        }

        // And a whole session over the pinned self-signed certificate is verified TLS.
        let case = format!("{}: dangerous, the right pin, SCRAM", lang.protocol);
        let server = FakeServer::start(scram_over_self_signed(lang));
        let mut account = Account::starttls(lang, server.port);
        let pin = format!("pin_sha256 = \"{}\"", pin_hex(&pki().self_signed_sha256));
        account.extra = with_auth("[\"scram-sha-256\"]", &format!("{pin}\n{DANGEROUS}"));
        let run = account.run();
        server.finish();
        assert_eq!(run.code, Some(0), "{case}: {}", run.stderr);
        let greeting = run.stdout_text();
        let greeting = greeting.lines().next().unwrap_or_default();
        assert!(
            greeting.contains("with SCRAM-SHA-256 over TLSv1.3 (starttls")
                && greeting.ends_with("protection tls+strong"),
            "{case}: {greeting:?}"
        );
    }
}

#[test]
fn unverified_tls_carries_no_password_and_no_token() {
    for lang in LANGS {
        let mut offers: Vec<(&str, &str)> = vec![
            ("AUTH=PLAIN", "plain"),
            ("AUTH=LOGIN", "login"),
            ("AUTH=CRAM-MD5", "cram-md5"),
            ("AUTH=OAUTHBEARER", "oauthbearer"),
            ("AUTH=XOAUTH2", "xoauth2"),
        ];
        offers.extend(lang.password_logins.iter().copied());
        for (cap, auth) in offers {
            let case = format!("{}: dangerous without pin, only {auth}", lang.protocol);
            let mut script = tls_offering(lang, false, Cert::SelfSigned, &[cap, lang.sasl_ir_cap]);
            // Should the client send anything, it is refused (and recorded).
            script.push(Act::ReadLine);
            script.push(send(lang.auth_no));
            // SCRAM is listed too (`min_protection = "strong"` needs a strong mechanism)
            // but not offered: only the weak mechanism is left.
            let extra = with_auth(
                &format!("[\"{auth}\", \"scram-sha-256\"]"),
                DANGEROUS_UNPINNED,
            );
            let (run, rec) = run_account(lang, false, extra, script);
            assert_refused(lang, &run, EXIT_POLICY, &case);
            assert!(
                run.stderr.contains("unverified TLS"),
                "{case}: the refusal names the reason: {}",
                run.stderr
            );
            assert!(rec.tls_established, "{case}: {:?}", rec.tls_error);
            let lines = rec.decrypted_lines();
            assert!(
                lines.iter().all(|l| is_capability_request(lang, l)),
                "{case}: only capability requests may go over unverified TLS: {lines:?}"
            );
            assert_no_secret_sent(&rec, &case);
        }
    }
}

/// Script: SCRAM-SHA-256 accepted over TLS with the self-signed certificate, then the
/// capabilities after authentication, then (for `check`) the logout command read and
/// the connection closed.
fn scram_over_self_signed(lang: &Lang) -> Vec<Act> {
    let mut script = tls_offering(
        lang,
        false,
        Cert::SelfSigned,
        &["AUTH=SCRAM-SHA-256", lang.sasl_ir_cap],
    );
    script.extend(scram_server(lang));
    script.extend((lang.caps_after_tls)(&caps(lang, &[])));
    script.push(Act::ReadLine);
    script.push(Act::Close);
    script
}

#[test]
fn scram_over_unverified_tls_runs_and_says_unverified_tls() {
    for lang in LANGS {
        let case = format!("{}: dangerous without pin, SCRAM", lang.protocol);
        let server = FakeServer::start(scram_over_self_signed(lang));
        let mut account = Account::starttls(lang, server.port);
        account.extra = with_auth("[\"scram-sha-256\"]", DANGEROUS_UNPINNED);
        let run = account.run_with(&["-v", "--config", "{config}", "tunnel", "test"]);
        let rec = server.finish();
        assert_eq!(run.code, Some(0), "{case}: {}", run.stderr);
        let greeting = run.stdout_text();
        let greeting = greeting.lines().next().unwrap_or_default();
        assert!(
            greeting.contains("with SCRAM-SHA-256 over unverified TLS"),
            "{case}: the greeting says how the session is protected: {greeting:?}"
        );
        assert!(
            greeting.ends_with("protection strong"),
            "{case}: unverified TLS is not the \"tls\" of a combination: {greeting:?}"
        );
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains("authenticated with SCRAM-SHA-256 over unverified TLS")),
            "{case}: -v says it too: {}",
            run.stderr
        );
        // The client could bind (TLS 1.3) and the server offered no -PLUS.
        let first = started(lang, &rec);
        assert_eq!(first.len(), 1, "{case}: {first:?}");
        assert!(first[0].1.starts_with("y,,n=alice,r="), "{case}: {first:?}");
        assert_no_secret_sent(&rec, &case);

        let case = format!("{}: dangerous without pin, SCRAM, check", lang.protocol);
        let server = FakeServer::start(scram_over_self_signed(lang));
        let mut account = Account::starttls(lang, server.port);
        account.extra = with_auth("[\"scram-sha-256\"]", DANGEROUS_UNPINNED);
        let run = account.run_with(&["--config", "{config}", "check", "test"]);
        server.finish();
        assert_eq!(run.code, Some(0), "{case}: {}", run.stderr);
        let report = run.stdout_text();
        assert!(
            report.contains("with SCRAM-SHA-256 over unverified TLS"),
            "{case}: {report}"
        );
        assert!(report.contains("protection strong"), "{case}: {report}");

        let case = format!("{}: dangerous without pin, accounts", lang.protocol);
        let run = account.run_with(&["--config", "{config}", "accounts"]);
        assert_eq!(run.code, Some(0), "{case}: {}", run.stderr);
        assert!(
            run.stdout_text().contains("unverified TLS"),
            "{case}: {}",
            run.stdout_text()
        );
    }
}

#[test]
fn rfc5802_6_a_refused_plus_is_final_for_scram() {
    for lang in LANGS {
        let case = format!("{}: SCRAM-SHA-256-PLUS refused", lang.protocol);
        let mut script = tls_offering(
            lang,
            false,
            Cert::Good,
            &[
                "AUTH=SCRAM-SHA-256-PLUS",
                "AUTH=SCRAM-SHA-256",
                lang.sasl_ir_cap,
            ],
        );
        // Refuse -PLUS, and whatever comes next.
        script.extend([
            Act::ReadLine,
            send(lang.auth_no),
            Act::ReadLine,
            send(lang.auth_no),
        ]);
        let extra = with_auth("[\"scram-sha-256-plus\", \"scram-sha-256\"]", "");
        let (run, rec) = run_account(lang, false, extra, script);
        assert_refused(lang, &run, EXIT_AUTH, &case);
        let first = started(lang, &rec);
        assert_eq!(first.len(), 1, "{case}: nothing after -PLUS: {first:?}");
        assert_eq!(first[0].0, "SCRAM-SHA-256-PLUS", "{case}");
        assert!(
            !first.iter().any(|(_, ir)| ir.starts_with("n,")),
            "{case}: no client-first without binding: {first:?}"
        );
        assert_no_secret_sent(&rec, &case);
    }
}

#[test]
fn rfc5802_6_plain_scram_in_auth_uses_plus_when_the_server_offers_it() {
    for lang in LANGS {
        let case = format!(
            "{}: auth scram-sha-256, server offers -PLUS too",
            lang.protocol
        );
        let mut script = tls_offering(
            lang,
            false,
            Cert::Good,
            &[
                "AUTH=SCRAM-SHA-256",
                "AUTH=SCRAM-SHA-256-PLUS",
                lang.sasl_ir_cap,
            ],
        );
        script.extend([
            Act::ReadLine,
            send(lang.auth_no),
            Act::ReadLine,
            send(lang.auth_no),
        ]);
        let extra = with_auth("[\"scram-sha-256\"]", "");
        let (run, rec) = run_account(lang, false, extra, script);
        assert_refused(lang, &run, EXIT_AUTH, &case);
        let first = started(lang, &rec);
        assert_eq!(first.len(), 1, "{case}: {first:?}");
        assert_eq!(first[0].0, "SCRAM-SHA-256-PLUS", "{case}: {first:?}");
        assert!(
            first[0].1.starts_with("p=tls-exporter,,n=alice,r="),
            "{case}: {first:?}"
        );
    }
}

#[test]
fn rfc5802_6_plain_scram_says_y_when_the_client_could_bind() {
    for lang in LANGS {
        let case = format!("{}: only SCRAM-SHA-256 on TLS 1.3", lang.protocol);
        let mut script = tls_offering(
            lang,
            false,
            Cert::Good,
            &["AUTH=SCRAM-SHA-256", lang.sasl_ir_cap],
        );
        script.extend([Act::ReadLine, send(lang.auth_no)]);
        let extra = with_auth("[\"scram-sha-256-plus\", \"scram-sha-256\"]", "");
        let (run, rec) = run_account(lang, false, extra, script);
        assert_refused(lang, &run, EXIT_AUTH, &case);
        let first = started(lang, &rec);
        assert_eq!(first.len(), 1, "{case}: {first:?}");
        assert_eq!(first[0].0, "SCRAM-SHA-256", "{case}");
        assert!(first[0].1.starts_with("y,,n=alice,r="), "{case}: {first:?}");
    }
}

// 14. No TLS: only a mechanism with a security layer (GSSAPI) may run (issue 12, item 1).

/// A `tls = ["none"]` account of `lang` whose `auth` is `auth` (TOML), with a password
/// command, so that a password mechanism could start if the policy let it.
fn no_tls_account<'a>(lang: &'a Lang, plain_port: u16, auth: &str) -> Account<'a> {
    Account {
        tls: "[\"none\"]",
        extra: format!(
            "min_protection = \"strong\"\nauth = {auth}\npassword = {{ command = \"echo {SCRAM_PASSWORD}\" }}"
        ),
        ..Account::starttls(lang, plain_port)
    }
}

#[test]
fn without_tls_a_mechanism_without_a_security_layer_is_a_configuration_error() {
    for lang in LANGS {
        let case = format!("{}: tls = none with SCRAM listed", lang.protocol);
        let server = FakeServer::silent();
        let run = no_tls_account(lang, server.port, "[\"gssapi\", \"scram-sha-256\"]").run();
        let rec = server.finish();
        assert_eq!(run.code, Some(EXIT_CONFIG), "{case}: {}", run.stderr);
        assert!(
            run.stderr.contains("\"scram-sha-256\"") && run.stderr.contains("security layer"),
            "{case}: the message names the mechanism: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{case}: {}", run.stderr);
        assert_eq!(rec.connections, 0, "{case}: nothing may be dialled");
    }
}

#[test]
fn without_tls_hiding_or_refusing_gssapi_does_not_lead_to_scram() {
    for lang in LANGS {
        let scram = "AUTH=SCRAM-SHA-256";
        // GSSAPI removed from the capabilities: nothing else may run.
        let mut stripped = (lang.hellos[0].1)(&caps(lang, &[scram, lang.sasl_ir_cap]));
        stripped.extend([Act::ReadLine, send(lang.auth_no)]);
        // GSSAPI offered, then refused: nothing else may run after it.
        let mut refused =
            (lang.hellos[0].1)(&caps(lang, &[lang.gssapi_cap, scram, lang.sasl_ir_cap]));
        refused.extend(first_token(lang, true));
        refused.push(send(lang.auth_no));
        refused.extend([Act::ReadLine, send(lang.auth_no)]);
        for (how, script, code) in [
            ("GSSAPI stripped", stripped, EXIT_POLICY),
            ("GSSAPI refused", refused, EXIT_AUTH),
        ] {
            let case = format!("{}: tls = none, auth = auto, {how}", lang.protocol);
            let server = FakeServer::start(script);
            let run = no_tls_account(lang, server.port, "\"auto\"").run();
            let rec = server.finish();
            assert_refused(lang, &run, code, &case);
            let wire = rec.plain_text();
            assert!(
                !wire.contains("SCRAM") && !wire.contains(SCRAM_PASSWORD),
                "{case}: SCRAM ran without TLS: {wire:?}"
            );
            assert!(!rec.tls_started, "{case}");
            assert_eq!(rec.connections, 1, "{case}: no retry");
        }
    }
}

// 15. Server text cannot drive the terminal (issue 12, item 5).

/// `reply` (one line ending in CRLF) with [`HOSTILE_TEXT`] before its line end.
fn with_hostile_text(reply: &str) -> String {
    format!("{} {HOSTILE_TEXT}\r\n", reply.trim_end_matches("\r\n"))
}

/// The verdict on a run that saw hostile server text: the refusal as usual, stderr
/// (message, hint and the `-vv` trace) and the client's reply without a raw control
/// character, and the text shown escaped, so it was not just dropped.
fn assert_shown_escaped(lang: &Lang, run: &Run, code: i32, case: &str) {
    assert_refused(lang, run, code, case);
    assert_terminal_safe(&format!("{case}: stderr"), &run.stderr);
    let reply = run.stdout_text();
    let reply = reply.strip_suffix("\r\n").unwrap_or(&reply);
    assert_terminal_safe(&format!("{case}: the client's reply"), reply);
    assert!(
        run.stderr.contains("\\u{1b}") && run.stderr.contains("\\u{202e}"),
        "{case}: the server's text should be shown escaped: {}",
        run.stderr
    );
}

#[test]
fn server_text_in_greetings_refusals_and_traces_is_shown_escaped() {
    for lang in LANGS {
        // (what, script, exit code, implicit TLS, the hostile line is traced by `-vv`)
        let mut cases: Vec<(&str, Vec<Act>, i32, bool, bool)> = Vec::new();
        // The greeting is not one: its text goes into the message (not into a trace).
        cases.push((
            "a garbage greeting",
            vec![send(format!("{HOSTILE_TEXT}\r\n"))],
            EXIT_PROTOCOL,
            false,
            false,
        ));
        // STARTTLS refused with hostile text.
        let (_, refusal, code) = lang.starttls_refusals[0];
        let mut script = up_to_starttls(lang);
        script.push(send(with_hostile_text(refusal.unwrap())));
        cases.push(("STARTTLS refused", script, code, false, true));
        // The authentication refused with hostile text, inside TLS.
        let mut script = vec![Act::Tls(Cert::Good)];
        script.extend((lang.hellos[0].1)(&caps(lang, &[lang.gssapi_cap])));
        script.push(Act::ReadLine);
        script.push(send(with_hostile_text(lang.auth_no)));
        cases.push(("authentication refused", script, EXIT_AUTH, true, true));
        for (what, script, code, implicit, traced) in cases {
            let case = format!("{}: {what} with hostile text", lang.protocol);
            let server = FakeServer::start(script);
            let mut account = if implicit {
                Account::implicit(lang, server.port)
            } else {
                Account::starttls(lang, server.port)
            };
            account.flags = vec!["-vv"];
            let run = account.run();
            server.finish();
            assert_shown_escaped(lang, &run, code, &case);
            if traced {
                let trace = run
                    .stderr
                    .lines()
                    .find(|l| l.contains("S: ") && l.contains("txt.exe"));
                assert!(
                    trace.is_some(),
                    "{case}: no trace of the line: {}",
                    run.stderr
                );
            }
        }
    }
}

#[test]
fn certificate_names_are_shown_escaped() {
    for lang in LANGS {
        for implicit in [false, true] {
            let case = format!(
                "{}: hostile certificate names (implicit {implicit})",
                lang.protocol
            );
            let script = if implicit {
                vec![Act::Tls(Cert::HostileNames)]
            } else {
                starttls_with_gssapi(lang, Cert::HostileNames)
            };
            let server = FakeServer::start(script);
            let run = if implicit {
                Account::implicit(lang, server.port).run()
            } else {
                Account::starttls(lang, server.port).run()
            };
            server.finish();
            assert_shown_escaped(lang, &run, EXIT_NETWORK, &case);
            assert!(run.stderr.contains("Evil CA"), "{case}: {}", run.stderr);
        }
    }
}
