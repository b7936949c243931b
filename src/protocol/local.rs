//! The client-facing side of POP3 and SMTP tunnels, sans I/O: after mailtun has
//! authenticated to the server, these state machines greet the local mail client (mutt,
//! fetchmail) and answer its handshake commands as a server that has already
//! authenticated it would, until the client's first command for the mail itself; from
//! there on, every byte is relayed.
//!
//! IMAP needs none of this: its `PREAUTH` greeting says it all (see `tunnel::greeting`).
//! POP3 and SMTP have no pre-authenticated greeting, and clients insist on logging in.
//! Behind `mailtun serve`'s listener the client's login is checked first
//! ([`super::local_login`]); this side then starts without a greeting (`after_login`).
//!
//! # Rules
//! - Credentials the client sends (`USER`, `PASS`, `APOP`, `AUTH` and its payloads) are
//!   answered here, never forwarded, and never shown in a trace.
//! - The first command that is not answered here is forwarded with everything after it,
//!   and the machine is done. Replies must reach the client in the order of its commands,
//!   so no command is answered here once one went to the server.
//! - STARTTLS/STLS is refused: the tunnel (a pipe to a local process) is the secure
//!   channel, and the server's TLS was already negotiated by mailtun.
//! - After `AUTH`, which is answered with success at once, a line that can only be a SASL
//!   payload (a single base64 token or `*`, not a command name) is answered with an error
//!   and dropped rather than sent to the server as a command.

use std::collections::VecDeque;

use super::Capabilities;
use super::line::MAX_LINE;
use super::local_login::one_line;

/// What the driver must do next with the local client.
#[derive(Debug, PartialEq, Eq)]
pub enum LocalEvent {
    /// Read more bytes from the client and pass them to [`LocalSide::receive`].
    NeedInput,
    /// Write these bytes to the client.
    Reply(Vec<u8>),
    /// Write these bytes to the server: the first relayed command and whatever followed.
    Forward(Vec<u8>),
    /// A client command as a trace may show it (arguments of credentials removed).
    Received(String),
    /// The handshake is over: relay both ways from now on. Bytes passed to
    /// [`LocalSide::receive`] after this come back as [`LocalEvent::Forward`].
    Relay,
}

/// A local client that did not behave like a mail client before its first mail command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// A command line longer than accepted.
    #[error("the mail client sent a line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    /// A NUL byte in a command line.
    #[error("the mail client sent a NUL byte")]
    NulByte,
}

/// One client-facing handshake (POP3 or SMTP).
pub trait LocalSide: Send {
    /// Adds bytes received from the client.
    fn receive(&mut self, data: &[u8]);
    /// The next thing to do.
    fn poll(&mut self) -> Result<LocalEvent, LocalError>;
}

/// What a protocol does with one client line.
enum Answer {
    /// Reply to the client; the line goes nowhere else.
    Local { reply: Vec<u8>, shown: String },
    /// Forward this line and everything after it.
    Relay { shown: String },
}

/// Line splitting, event queue and the switch to relaying, shared by both protocols.
struct Engine {
    buf: Vec<u8>,
    out: VecDeque<LocalEvent>,
    relaying: bool,
}

impl Engine {
    /// Starts with `greeting` for the client, or with nothing when the client already
    /// logged in to `mailtun serve`'s listener and got its reply there.
    fn new(greeting: Option<Vec<u8>>) -> Self {
        Engine {
            buf: Vec::new(),
            out: greeting.map(LocalEvent::Reply).into_iter().collect(),
            relaying: false,
        }
    }

    fn poll(&mut self, mut answer: impl FnMut(&[u8]) -> Answer) -> Result<LocalEvent, LocalError> {
        loop {
            if let Some(event) = self.out.pop_front() {
                return Ok(event);
            }
            if self.relaying {
                return Ok(if self.buf.is_empty() {
                    LocalEvent::Relay
                } else {
                    LocalEvent::Forward(std::mem::take(&mut self.buf))
                });
            }
            let Some(len) = line_length(&self.buf)? else {
                return Ok(LocalEvent::NeedInput);
            };
            let line = trim_terminator(&self.buf[..len]);
            match answer(line) {
                Answer::Local { reply, shown } => {
                    self.buf.drain(..len);
                    self.out.push_back(LocalEvent::Received(shown));
                    self.out.push_back(LocalEvent::Reply(reply));
                }
                Answer::Relay { shown } => {
                    self.out.push_back(LocalEvent::Received(shown));
                    self.out
                        .push_back(LocalEvent::Forward(std::mem::take(&mut self.buf)));
                    self.relaying = true;
                }
            }
        }
    }
}

/// The length of the first line of `buf`, terminator included, once it is complete.
pub(super) fn line_length(buf: &[u8]) -> Result<Option<usize>, LocalError> {
    let lf = buf.iter().position(|&b| b == b'\n');
    let content = lf.unwrap_or(buf.len());
    if content > MAX_LINE {
        return Err(LocalError::LineTooLong { limit: MAX_LINE });
    }
    if buf[..content].contains(&0) {
        return Err(LocalError::NulByte);
    }
    Ok(lf.map(|lf| lf + 1))
}

pub(super) fn trim_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The command word (upper-cased) and whether arguments follow it.
pub(super) fn verb(line: &[u8]) -> (String, bool) {
    let word = line.split(|&b| b == b' ').next().unwrap_or(b"");
    (
        String::from_utf8_lossy(word).to_ascii_uppercase(),
        line.len() > word.len(),
    )
}

/// How a trace shows a relayed command: its word only (addresses and message numbers
/// are the user's business, not the log's).
fn shown_relayed(line: &[u8]) -> String {
    let (verb, _) = verb(line);
    let verb: String = verb
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(16)
        .collect();
    format!("{verb} (relayed from here on)")
}

/// Whether `line`, right after an AUTH we answered, can only be a SASL payload.
fn is_sasl_payload(line: &[u8], commands: &[&str]) -> bool {
    if line == b"*" || line.is_empty() {
        return true;
    }
    let base64 = line
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    base64
        && !commands
            .iter()
            .any(|c| c.as_bytes().eq_ignore_ascii_case(line))
}

/// The first word of a capability line, upper-cased.
fn keyword(line: &str) -> String {
    line.split_ascii_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// POP3 commands (RFC 1939, 2449, 2595, 5034, 6856) that take no argument or may.
const POP3_COMMANDS: &[&str] = &[
    "APOP", "AUTH", "CAPA", "DELE", "LANG", "LAST", "LIST", "NOOP", "PASS", "QUIT", "RETR", "RSET",
    "STAT", "STLS", "TOP", "UIDL", "USER", "UTF8",
];

/// The client-facing POP3 handshake. See the [module documentation](self).
pub struct LocalPop3 {
    engine: Engine,
    rules: Pop3Rules,
}

/// What the POP3 side answers, and whether the last command was AUTH.
struct Pop3Rules {
    capa: Vec<u8>,
    after_auth: bool,
}

impl LocalPop3 {
    /// `text` goes into the greeting (`+OK mailtun: <text>`); `server` holds the server's
    /// capabilities after authentication, from which the client's `CAPA` is answered.
    pub fn new(text: &str, server: &Capabilities) -> Self {
        LocalPop3 {
            engine: Engine::new(Some(
                format!("+OK mailtun: {}\r\n", one_line(text)).into_bytes(),
            )),
            rules: Pop3Rules {
                capa: Pop3Rules::capa_reply(server),
                after_auth: false,
            },
        }
    }

    /// For a client that already logged in to `mailtun serve` (which greeted it and
    /// answered the login): no greeting; a repeated CAPA gets the server's list.
    pub fn after_login(server: &Capabilities) -> Self {
        let mut side = Self::new("", server);
        side.engine = Engine::new(None);
        side
    }
}

impl Pop3Rules {
    /// The server's capabilities without STLS and SASL (the tunnel is secure and
    /// authenticated), and with USER: clients such as mutt insist on logging in, and
    /// USER/PASS is the login every POP3 client has.
    fn capa_reply(server: &Capabilities) -> Vec<u8> {
        let mut lines: Vec<String> = server
            .raw
            .iter()
            .filter(|l| !matches!(keyword(l).as_str(), "STLS" | "SASL"))
            .map(|l| one_line(l))
            .collect();
        if !lines.iter().any(|l| keyword(l) == "USER") {
            lines.push("USER".into());
        }
        let mut reply = b"+OK mailtun: capability list follows\r\n".to_vec();
        for line in lines {
            if line.starts_with('.') {
                reply.push(b'.');
            }
            reply.extend_from_slice(line.as_bytes());
            reply.extend_from_slice(b"\r\n");
        }
        reply.extend_from_slice(b".\r\n");
        reply
    }

    fn answer(&mut self, line: &[u8]) -> Answer {
        let ok = || b"+OK mailtun: already authenticated\r\n".to_vec();
        if self.after_auth && is_sasl_payload(line, POP3_COMMANDS) {
            return Answer::Local {
                reply: b"-ERR mailtun: authentication is already complete\r\n".to_vec(),
                shown: "[SASL payload]".into(),
            };
        }
        let (verb, has_args) = verb(line);
        self.after_auth = false;
        let hidden = |v: &str| format!("{v} [arguments not shown]");
        match verb.as_str() {
            "CAPA" => Answer::Local {
                reply: self.capa.clone(),
                shown: "CAPA".into(),
            },
            "USER" | "PASS" | "APOP" => Answer::Local {
                reply: ok(),
                shown: hidden(&verb),
            },
            // A bare AUTH asks for the mechanisms (the RFC 1734 listing): none.
            "AUTH" if !has_args => Answer::Local {
                reply: b"+OK mailtun: already authenticated\r\n.\r\n".to_vec(),
                shown: "AUTH".into(),
            },
            "AUTH" => {
                self.after_auth = true;
                Answer::Local {
                    reply: ok(),
                    shown: hidden("AUTH"),
                }
            }
            "STLS" => Answer::Local {
                reply: b"-ERR mailtun: the tunnel is already the secure channel\r\n".to_vec(),
                shown: "STLS".into(),
            },
            _ => Answer::Relay {
                shown: shown_relayed(line),
            },
        }
    }
}

impl LocalSide for LocalPop3 {
    fn receive(&mut self, data: &[u8]) {
        self.engine.buf.extend_from_slice(data);
    }

    fn poll(&mut self) -> Result<LocalEvent, LocalError> {
        let rules = &mut self.rules;
        self.engine.poll(|line| rules.answer(line))
    }
}

/// SMTP commands (RFC 5321, 3030, 3207, 4954, 1985).
const SMTP_COMMANDS: &[&str] = &[
    "AUTH", "BDAT", "DATA", "EHLO", "ETRN", "EXPN", "HELO", "HELP", "MAIL", "NOOP", "QUIT", "RCPT",
    "RSET", "STARTTLS", "VRFY",
];

/// The client-facing SMTP handshake. See the [module documentation](self).
pub struct LocalSmtp {
    engine: Engine,
    rules: SmtpRules,
}

/// What the SMTP side answers, and whether the last command was AUTH.
struct SmtpRules {
    host: String,
    extensions: Vec<String>,
    after_auth: bool,
}

impl LocalSmtp {
    /// `host` names the server in the greeting and EHLO replies, `text` goes into the
    /// greeting (`220 <host> ESMTP mailtun: <text>`), and `server` holds the server's
    /// extensions after authentication, from which the client's EHLO is answered.
    pub fn new(host: &str, text: &str, server: &Capabilities) -> Self {
        let host: String = host.chars().filter(|c| c.is_ascii_graphic()).collect();
        // "ESMTP" in the greeting tells older clients to send EHLO rather than HELO.
        let greeting = format!("220 {host} ESMTP mailtun: {}\r\n", one_line(text));
        LocalSmtp {
            engine: Engine::new(Some(greeting.into_bytes())),
            rules: SmtpRules {
                // STARTTLS and AUTH concerned the server link, which mailtun already secured
                // and authenticated.
                extensions: server
                    .raw
                    .iter()
                    .filter(|l| {
                        let k = keyword(l);
                        !(k == "STARTTLS" || k == "AUTH" || k.starts_with("AUTH="))
                    })
                    .map(|l| one_line(l))
                    .collect(),
                host,
                after_auth: false,
            },
        }
    }
}

impl LocalSmtp {
    /// For a client that already logged in to `mailtun serve` (which greeted it and
    /// answered AUTH): no greeting; a repeated EHLO gets the server's extensions.
    pub fn after_login(host: &str, server: &Capabilities) -> Self {
        let mut side = Self::new(host, "", server);
        side.engine = Engine::new(None);
        side
    }
}

impl SmtpRules {
    fn ehlo_reply(&self) -> Vec<u8> {
        let mut lines = vec![self.host.as_str()];
        lines.extend(self.extensions.iter().map(String::as_str));
        let mut reply = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            reply.extend_from_slice(format!("250{sep}{line}\r\n").as_bytes());
        }
        reply
    }

    fn answer(&mut self, line: &[u8]) -> Answer {
        if self.after_auth && is_sasl_payload(line, SMTP_COMMANDS) {
            return Answer::Local {
                reply: b"501 5.5.2 mailtun: authentication is already complete\r\n".to_vec(),
                shown: "[SASL payload]".into(),
            };
        }
        let (verb, _) = verb(line);
        self.after_auth = false;
        match verb.as_str() {
            "EHLO" => Answer::Local {
                reply: self.ehlo_reply(),
                shown: "EHLO".into(),
            },
            "HELO" => Answer::Local {
                reply: format!("250 {}\r\n", self.host).into_bytes(),
                shown: "HELO".into(),
            },
            "AUTH" => {
                self.after_auth = true;
                Answer::Local {
                    reply: b"235 2.7.0 already authenticated\r\n".to_vec(),
                    shown: "AUTH [arguments not shown]".into(),
                }
            }
            // 502, not 454: STARTTLS is not advertised, so it is a command this server
            // does not implement (RFC 5321 section 4.2.4), and the permanent code makes a
            // client that insists on TLS stop with an error instead of queueing the mail
            // and retrying forever.
            "STARTTLS" => Answer::Local {
                reply: b"502 5.5.1 mailtun: STARTTLS is not offered; the tunnel is the secure channel\r\n"
                    .to_vec(),
                shown: "STARTTLS".into(),
            },
            _ => Answer::Relay {
                shown: shown_relayed(line),
            },
        }
    }
}

impl LocalSide for LocalSmtp {
    fn receive(&mut self, data: &[u8]) {
        self.engine.buf.extend_from_slice(data);
    }

    fn poll(&mut self) -> Result<LocalEvent, LocalError> {
        let rules = &mut self.rules;
        self.engine.poll(|line| rules.answer(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::testing::dovecot_pop3_caps;
    use crate::protocol::{pop3, smtp};

    /// What crossed the local machine: bytes to the client, bytes to the server, traces,
    /// and whether it reached relaying.
    #[derive(Debug, Default)]
    struct Transcript {
        to_client: String,
        to_server: String,
        traces: Vec<String>,
        relaying: bool,
    }

    /// Feeds the client's chunks one per `NeedInput` (and, once relaying, all the rest).
    fn drive(side: &mut dyn LocalSide, client: &[&[u8]]) -> Result<Transcript, LocalError> {
        let mut chunks = client.iter();
        let mut t = Transcript::default();
        loop {
            match side.poll()? {
                LocalEvent::NeedInput => match chunks.next() {
                    Some(c) => side.receive(c),
                    None => return Ok(t),
                },
                LocalEvent::Reply(b) => t.to_client.push_str(&String::from_utf8_lossy(&b)),
                LocalEvent::Forward(b) => t.to_server.push_str(&String::from_utf8_lossy(&b)),
                LocalEvent::Received(s) => t.traces.push(s),
                LocalEvent::Relay => {
                    t.relaying = true;
                    match chunks.next() {
                        Some(c) => side.receive(c),
                        None => return Ok(t),
                    }
                }
            }
        }
    }

    const POP3_GREETING: &str = "+OK mailtun: alice@EXAMPLE.ORG authenticated\r\n";
    const POP3_CAPA: &str = "+OK mailtun: capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\n.\r\n";
    const POP3_OK: &str = "+OK mailtun: already authenticated\r\n";

    fn check_pop3(client: &[&[u8]], to_client: &str, to_server: &str) -> Transcript {
        let mut side = LocalPop3::new("alice@EXAMPLE.ORG authenticated", &dovecot_pop3_caps());
        let t = drive(&mut side, client).unwrap();
        assert_eq!(t.to_client, to_client);
        assert_eq!(t.to_server, to_server);
        t
    }

    #[test]
    fn pop3_greeting_then_mutt_login_answered_locally() {
        // mutt: CAPA, then USER/PASS, then STAT starts the mailbox work.
        let t = check_pop3(
            &[
                b"CAPA\r\n",
                b"USER alice\r\n",
                b"PASS hunter2\r\n",
                b"STAT\r\n",
            ],
            &format!("{POP3_GREETING}{POP3_CAPA}{POP3_OK}{POP3_OK}"),
            "STAT\r\n",
        );
        assert!(t.relaying);
        assert!(
            !t.traces
                .iter()
                .any(|l| l.contains("alice") || l.contains("hunter2"))
        );
        assert_eq!(t.traces[1], "USER [arguments not shown]");
    }

    #[test]
    fn pop3_capa_drops_stls_and_sasl_and_adds_user() {
        let caps = pop3::capabilities(
            ["TOP", "STLS", "SASL GSSAPI PLAIN", "..DOTTED"]
                .map(String::from)
                .to_vec(),
        );
        let mut side = LocalPop3::new("hi", &caps);
        let t = drive(&mut side, &[b"capa\r\n"]).unwrap();
        assert_eq!(
            t.to_client,
            "+OK mailtun: hi\r\n+OK mailtun: capability list follows\r\nTOP\r\n...DOTTED\r\nUSER\r\n.\r\n"
        );
    }

    #[test]
    fn pop3_apop_answered_locally() {
        check_pop3(
            &[
                b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
                b"LIST\r\n",
            ],
            &format!("{POP3_GREETING}{POP3_OK}"),
            "LIST\r\n",
        );
    }

    #[test]
    fn rfc5034_pop3_auth_answered_at_once_and_payloads_dropped() {
        // A client that sends its GSSAPI token anyway, then cancels: neither reaches the
        // server, and the first real command does.
        let t = check_pop3(
            &[
                b"AUTH GSSAPI\r\n",
                b"YIIBkQYJKoZIhvcSAQICAQBuggGA\r\n",
                b"*\r\n",
                b"STAT\r\n",
            ],
            &format!(
                "{POP3_GREETING}{POP3_OK}-ERR mailtun: authentication is already complete\r\n-ERR mailtun: authentication is already complete\r\n"
            ),
            "STAT\r\n",
        );
        assert!(!t.traces.iter().any(|l| l.contains("YII")));
    }

    #[test]
    fn rfc5034_pop3_command_right_after_auth_is_a_command() {
        check_pop3(
            &[b"AUTH PLAIN AGFsaWNlAGh1bnRlcjI=\r\n", b"UIDL\r\n"],
            &format!("{POP3_GREETING}{POP3_OK}"),
            "UIDL\r\n",
        );
    }

    #[test]
    fn pop3_bare_auth_lists_no_mechanisms() {
        check_pop3(
            &[b"AUTH\r\n"],
            &format!("{POP3_GREETING}+OK mailtun: already authenticated\r\n.\r\n"),
            "",
        );
    }

    #[test]
    fn rfc2595_pop3_stls_refused_locally() {
        check_pop3(
            &[b"STLS\r\n"],
            &format!("{POP3_GREETING}-ERR mailtun: the tunnel is already the secure channel\r\n"),
            "",
        );
    }

    #[test]
    fn pop3_pipelined_commands_keep_their_order() {
        // Local replies for CAPA and USER/PASS, then LIST and RETR go to the server as
        // they came, in the same chunk.
        let t = check_pop3(
            &[
                b"CAPA\r\nUSER a\r\nPASS b\r\nLIST\r\nRETR 1\r\n",
                b"QUIT\r\n",
            ],
            &format!("{POP3_GREETING}{POP3_CAPA}{POP3_OK}{POP3_OK}"),
            "LIST\r\nRETR 1\r\nQUIT\r\n",
        );
        assert!(
            t.traces
                .contains(&"LIST (relayed from here on)".to_string())
        );
    }

    #[test]
    fn pop3_user_after_relay_is_forwarded() {
        check_pop3(
            &[b"NOOP\r\n", b"USER again\r\n"],
            POP3_GREETING,
            "NOOP\r\nUSER again\r\n",
        );
    }

    #[test]
    fn pop3_partial_line_waits() {
        check_pop3(
            &[b"US", b"ER alice\r", b"\nST", b"AT\r\n"],
            &format!("{POP3_GREETING}{POP3_OK}"),
            "STAT\r\n",
        );
    }

    #[test]
    fn pop3_bare_lf_accepted() {
        check_pop3(
            &[b"PASS x\nQUIT\n"],
            &format!("{POP3_GREETING}{POP3_OK}"),
            "QUIT\n",
        );
    }

    #[test]
    fn client_overlong_line_refused() {
        let mut side = LocalPop3::new("hi", &dovecot_pop3_caps());
        let long = vec![b'A'; MAX_LINE + 1];
        assert_eq!(
            drive(&mut side, &[&long]).unwrap_err(),
            LocalError::LineTooLong { limit: MAX_LINE }
        );
    }

    #[test]
    fn client_nul_byte_refused() {
        let mut side = LocalSmtp::new("mail.example", "hi", &Capabilities::default());
        assert_eq!(
            drive(&mut side, &[b"EHLO a\0b\r\n"]).unwrap_err(),
            LocalError::NulByte
        );
    }

    #[test]
    fn after_a_serve_login_no_greeting_and_capa_is_the_servers() {
        let mut side = LocalPop3::after_login(&dovecot_pop3_caps());
        let t = drive(&mut side, &[b"CAPA\r\nSTAT\r\n"]).unwrap();
        assert_eq!(t.to_client, POP3_CAPA);
        assert_eq!(t.to_server, "STAT\r\n");
        let mut side = LocalSmtp::after_login("mail.example", &smtp_caps());
        let t = drive(&mut side, &[b"EHLO a\r\nMAIL FROM:<a@b>\r\n"]).unwrap();
        assert_eq!(t.to_client, SMTP_EHLO);
        assert_eq!(t.to_server, "MAIL FROM:<a@b>\r\n");
    }

    #[test]
    fn greeting_text_cannot_break_the_line() {
        let mut side = LocalPop3::new("a\r\n+OK fake", &dovecot_pop3_caps());
        let t = drive(&mut side, &[]).unwrap();
        assert_eq!(t.to_client, "+OK mailtun: a  +OK fake\r\n");
    }

    /// Dovecot 2.3 submission extensions after AUTH, plus what must be hidden.
    fn smtp_caps() -> Capabilities {
        smtp::capabilities(
            [
                "8BITMIME",
                "AUTH",
                "AUTH GSSAPI PLAIN",
                "AUTH=PLAIN",
                "BURL imap",
                "CHUNKING",
                "ENHANCEDSTATUSCODES",
                "SIZE 40960000",
                "STARTTLS",
                "PIPELINING",
            ]
            .map(String::from)
            .to_vec(),
        )
    }

    const SMTP_GREETING: &str =
        "220 mail.example ESMTP mailtun: alice@EXAMPLE.ORG authenticated\r\n";
    const SMTP_EHLO: &str = "250-mail.example\r\n250-8BITMIME\r\n250-BURL imap\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE 40960000\r\n250 PIPELINING\r\n";
    const SMTP_235: &str = "235 2.7.0 already authenticated\r\n";

    fn check_smtp(client: &[&[u8]], to_client: &str, to_server: &str) -> Transcript {
        let mut side = LocalSmtp::new(
            "mail.example",
            "alice@EXAMPLE.ORG authenticated",
            &smtp_caps(),
        );
        let t = drive(&mut side, client).unwrap();
        assert_eq!(t.to_client, to_client);
        assert_eq!(t.to_server, to_server);
        t
    }

    #[test]
    fn rfc5321_smtp_ehlo_answered_without_starttls_and_auth() {
        let t = check_smtp(
            &[
                b"EHLO laptop.example\r\n",
                b"MAIL FROM:<alice@example.org>\r\n",
            ],
            &format!("{SMTP_GREETING}{SMTP_EHLO}"),
            "MAIL FROM:<alice@example.org>\r\n",
        );
        assert!(t.relaying);
        assert!(!t.traces.iter().any(|l| l.contains("alice")));
    }

    #[test]
    fn rfc5321_smtp_ehlo_without_extensions_is_one_line() {
        let mut side = LocalSmtp::new("mail.example", "hi", &Capabilities::default());
        let t = drive(&mut side, &[b"EHLO x\r\n"]).unwrap();
        assert_eq!(
            t.to_client,
            "220 mail.example ESMTP mailtun: hi\r\n250 mail.example\r\n"
        );
    }

    #[test]
    fn rfc5321_smtp_helo_answered() {
        check_smtp(
            &[b"HELO laptop\r\n"],
            &format!("{SMTP_GREETING}250 mail.example\r\n"),
            "",
        );
    }

    #[test]
    fn rfc4954_smtp_auth_answered_and_payloads_dropped() {
        // mutt with smtp_authenticators: AUTH with an initial response.
        let t = check_smtp(
            &[
                b"EHLO laptop\r\n",
                b"AUTH PLAIN AGFsaWNlAGh1bnRlcjI=\r\n",
                b"MAIL FROM:<a@example.org>\r\n",
            ],
            &format!("{SMTP_GREETING}{SMTP_EHLO}{SMTP_235}"),
            "MAIL FROM:<a@example.org>\r\n",
        );
        assert!(!t.traces.iter().any(|l| l.contains("AGFs")));
        // AUTH LOGIN without initial response, then the user name that would answer 334.
        check_smtp(
            &[b"AUTH LOGIN\r\n", b"YWxpY2U=\r\n", b"RSET\r\n"],
            &format!(
                "{SMTP_GREETING}{SMTP_235}501 5.5.2 mailtun: authentication is already complete\r\n"
            ),
            "RSET\r\n",
        );
    }

    #[test]
    fn rfc3207_smtp_starttls_refused_locally_with_502() {
        check_smtp(
            &[b"STARTTLS\r\n"],
            &format!(
                "{SMTP_GREETING}502 5.5.1 mailtun: STARTTLS is not offered; the tunnel is the secure channel\r\n"
            ),
            "",
        );
    }

    #[test]
    fn rfc5321_smtp_rset_and_noop_start_the_relay() {
        check_smtp(
            &[b"EHLO a\r\n", b"RSET\r\n", b"EHLO a\r\n"],
            &format!("{SMTP_GREETING}{SMTP_EHLO}"),
            "RSET\r\nEHLO a\r\n",
        );
        check_smtp(&[b"NOOP\r\n"], SMTP_GREETING, "NOOP\r\n");
    }

    #[test]
    fn rfc2920_smtp_pipelined_transaction_forwarded_whole() {
        check_smtp(
            &[
                b"EHLO a\r\n",
                b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
                b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
            ],
            &format!("{SMTP_GREETING}{SMTP_EHLO}"),
            "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
        );
    }

    #[test]
    fn smtp_command_name_after_auth_is_a_command() {
        check_smtp(
            &[b"AUTH GSSAPI\r\n", b"QUIT\r\n"],
            &format!("{SMTP_GREETING}{SMTP_235}"),
            "QUIT\r\n",
        );
    }

    #[test]
    fn smtp_host_cannot_break_the_line() {
        let mut side = LocalSmtp::new("mail\r\n.example", "hi", &Capabilities::default());
        let t = drive(&mut side, &[b"HELO x\r\n"]).unwrap();
        assert_eq!(
            t.to_client,
            "220 mail.example ESMTP mailtun: hi\r\n250 mail.example\r\n"
        );
    }
}
