//! The client-facing IMAP login of `mailtun serve`, sans I/O: greets a local client that
//! connected to the listener, answers CAPABILITY, NOOP, ID, LOGOUT, and takes its LOGIN
//! or AUTHENTICATE PLAIN; the listener checks the credentials, authenticates upstream and
//! answers the login with the server's own capabilities.
//!
//! Nothing reaches the server before the login: the listener connects only once this
//! machine yields [`LoginEvent::Login`]. The client's password is held as a [`Secret`]
//! and never shown in a trace. The listener drives it as a [`LocalLogin`], like the
//! POP3 and SMTP logins of [`super::local_login`].

use std::collections::VecDeque;

use super::local::LocalError;
use super::local_login::{LocalLogin, LoginEvent, one_line, plain_response};
use crate::secret::Secret;

/// Longest command accepted before the login (literals included).
pub const MAX_COMMAND: usize = 16 * 1024;

/// The capabilities announced before the login.
pub const CAPABILITIES: &str = "IMAP4rev1 AUTH=PLAIN SASL-IR ID";

const TOO_LONG: LocalError = LocalError::LineTooLong { limit: MAX_COMMAND };

/// The local login state machine.
#[derive(Default)]
pub struct LocalImapLogin {
    buf: Vec<u8>,
    out: VecDeque<LoginEvent>,
    /// Synchronizing literals of the current command already answered with `+`.
    acked_literals: usize,
    /// AUTHENTICATE PLAIN without an initial response: the tag waiting for it.
    awaiting_plain: Option<String>,
    /// The tag of the login last yielded, for its tagged reply.
    login_tag: String,
    closed: bool,
}

/// One parsed command: its arguments as byte strings.
type Args = Vec<Vec<u8>>;

impl LocalImapLogin {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next thing to do.
    fn next(&mut self) -> Result<LoginEvent, LocalError> {
        loop {
            if let Some(e) = self.out.pop_front() {
                return Ok(e);
            }
            if self.closed {
                return Ok(LoginEvent::Close);
            }
            if let Some(tag) = self.awaiting_plain.take() {
                let Some(end) = find_crlf(&self.buf, 0) else {
                    self.awaiting_plain = Some(tag);
                    return self.need_input();
                };
                let line: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
                self.plain(&tag, &line);
                continue;
            }
            match self.take_command()? {
                None if self.out.is_empty() => return self.need_input(),
                None => {}
                Some(args) => self.command(args),
            }
        }
    }

    fn need_input(&self) -> Result<LoginEvent, LocalError> {
        if self.buf.len() > MAX_COMMAND {
            return Err(TOO_LONG);
        }
        Ok(LoginEvent::NeedInput)
    }

    fn reply(&mut self, text: String) {
        self.out.push_back(LoginEvent::Reply(text.into_bytes()));
    }

    fn command(&mut self, args: Args) {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let Some(tag) = args.first().map(|t| text(t)).filter(|t| valid_tag(t)) else {
            self.reply("* BAD mailtun: a command starts with a tag\r\n".into());
            return;
        };
        let name = args
            .get(1)
            .map(|n| text(n).to_ascii_uppercase())
            .unwrap_or_default();
        match (name.as_str(), args.len()) {
            ("CAPABILITY", 2) => self.reply(format!(
                "* CAPABILITY {CAPABILITIES}\r\n{tag} OK CAPABILITY completed\r\n"
            )),
            ("NOOP", 2) => self.reply(format!("{tag} OK NOOP completed\r\n")),
            ("ID", _) => self.reply(format!("* ID NIL\r\n{tag} OK ID completed\r\n")),
            ("LOGOUT", 2) => {
                self.reply(format!(
                    "* BYE mailtun: logging out\r\n{tag} OK LOGOUT completed\r\n"
                ));
                self.closed = true;
            }
            ("STARTTLS", 2) => self.reply(format!(
                "{tag} BAD mailtun: no STARTTLS on the local listener (the server's TLS is mailtun's)\r\n"
            )),
            ("LOGIN", 4) => match String::from_utf8(args[3].clone()) {
                Ok(password) => self.login(tag, text(&args[2]), Secret::new(password)),
                Err(_) => self.reply(format!("{tag} BAD mailtun: the password is not UTF-8\r\n")),
            },
            ("AUTHENTICATE", 3 | 4) if text(&args[2]).eq_ignore_ascii_case("PLAIN") => {
                match args.get(3) {
                    Some(ir) => {
                        let ir = ir.clone();
                        self.plain(&tag, &ir);
                    }
                    None => {
                        self.reply("+ \r\n".into());
                        self.awaiting_plain = Some(tag);
                    }
                }
            }
            ("AUTHENTICATE", _) => self.reply(format!(
                "{tag} NO mailtun: only AUTHENTICATE PLAIN is offered here\r\n"
            )),
            ("LOGIN", _) | ("CAPABILITY" | "NOOP" | "LOGOUT" | "STARTTLS", _) => {
                self.reply(format!("{tag} BAD mailtun: wrong arguments\r\n"))
            }
            _ => self.reply(format!("{tag} NO mailtun: log in first\r\n")),
        }
    }

    fn login(&mut self, tag: String, user: String, password: Secret<String>) {
        self.login_tag = tag;
        self.out.push_back(LoginEvent::Login { user, password });
    }

    /// The AUTHENTICATE PLAIN response `line` (base64 of authzid NUL user NUL password).
    fn plain(&mut self, tag: &str, line: &[u8]) {
        if line == b"*" {
            self.reply(format!("{tag} BAD mailtun: authentication cancelled\r\n"));
            return;
        }
        match plain_response(line) {
            Some((user, password)) => self.login(tag.to_string(), user, password),
            None => self.reply(format!(
                "{tag} BAD mailtun: not a PLAIN response (authzid NUL user NUL password, base64)\r\n"
            )),
        }
    }

    /// Takes one complete command (up to its final CRLF, literals included) from the
    /// buffer; queues `+` for a synchronizing literal the client waits on.
    fn take_command(&mut self) -> Result<Option<Args>, LocalError> {
        let b = &self.buf;
        let mut args = Vec::new();
        let mut i = 0;
        let mut literals = 0;
        loop {
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            match b.get(i) {
                None => return Ok(None),
                Some(b'\r') | Some(b'\n') => {
                    let end = if b.get(i) == Some(&b'\r') {
                        match b.get(i + 1) {
                            None => return Ok(None),
                            Some(b'\n') => i + 2,
                            Some(_) => i + 1,
                        }
                    } else {
                        i + 1
                    };
                    self.buf.drain(..end);
                    self.acked_literals = 0;
                    return Ok(Some(args));
                }
                Some(b'"') => {
                    let mut s = Vec::new();
                    let mut j = i + 1;
                    loop {
                        match b.get(j) {
                            None => return Ok(None),
                            Some(b'\\') => {
                                let Some(&c) = b.get(j + 1) else {
                                    return Ok(None);
                                };
                                s.push(c);
                                j += 2;
                            }
                            Some(b'"') => break,
                            Some(&c) => {
                                s.push(c);
                                j += 1;
                            }
                        }
                    }
                    args.push(s);
                    i = j + 1;
                }
                Some(b'{') => {
                    let Some(close) = b[i..].iter().position(|&c| c == b'}') else {
                        return Ok(None);
                    };
                    let spec = &b[i + 1..i + close];
                    let (digits, sync) = match spec.strip_suffix(b"+") {
                        Some(d) => (d, false),
                        None => (spec, true),
                    };
                    let n: usize = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| d.parse().ok())
                        .filter(|&n| n <= MAX_COMMAND)
                        .ok_or(TOO_LONG)?;
                    let start = i + close + 1;
                    let data = match (b.get(start), b.get(start + 1)) {
                        (Some(b'\r'), Some(b'\n')) => start + 2,
                        (None, _) | (Some(b'\r'), None) => return Ok(None),
                        _ => start,
                    };
                    literals += 1;
                    if b.len() < data + n {
                        if sync && literals > self.acked_literals {
                            self.acked_literals = literals;
                            self.reply("+ go ahead\r\n".into());
                        }
                        return Ok(None);
                    }
                    args.push(b[data..data + n].to_vec());
                    i = data + n;
                }
                Some(_) => {
                    let j = b[i..]
                        .iter()
                        .position(|&c| c == b' ' || c == b'\r' || c == b'\n')
                        .map_or(b.len(), |p| i + p);
                    if j == b.len() {
                        return Ok(None);
                    }
                    args.push(b[i..j].to_vec());
                    i = j;
                }
            }
        }
    }
}

impl LocalLogin for LocalImapLogin {
    fn greeting(&self) -> Vec<u8> {
        format!("* OK [CAPABILITY {CAPABILITIES}] mailtun ready\r\n").into_bytes()
    }

    fn receive(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn poll(&mut self) -> Result<LoginEvent, LocalError> {
        self.next()
    }

    fn refused(&mut self, text: &str) -> Vec<u8> {
        let tag = &self.login_tag;
        format!(
            "{tag} NO [AUTHENTICATIONFAILED] mailtun: {}\r\n",
            one_line(text)
        )
        .into_bytes()
    }

    /// The tagged OK that ends the login, with the server's capabilities.
    fn accepted(&self, capabilities: &[String], summary: &str) -> Vec<u8> {
        format!(
            "{} OK [CAPABILITY {}] mailtun: {}\r\n",
            self.login_tag,
            one_line(&capabilities.join(" ")),
            one_line(summary)
        )
        .into_bytes()
    }

    fn upstream_failed(&self, code: &str, text: &str) -> Vec<u8> {
        let tag = &self.login_tag;
        format!("{tag} NO [{code}] mailtun: {}\r\n", one_line(text)).into_bytes()
    }

    fn goodbye(&self, text: &str) -> Vec<u8> {
        format!("* BYE mailtun: {}\r\n", one_line(text)).into_bytes()
    }

    /// Bytes received after the login command (a pipelining client's next commands):
    /// they belong to the server.
    fn into_rest(self: Box<Self>) -> Vec<u8> {
        self.buf
    }
}

fn find_crlf(b: &[u8], from: usize) -> Option<usize> {
    b[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|c| c.is_ascii_graphic() && !b"(){%*\"\\+".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// The replies to `input`, and the login it ended with: (tag, user, password), the
    /// tag read from the refusal the machine would send.
    fn run(m: &mut LocalImapLogin, input: &[u8]) -> (String, Option<(String, String, String)>) {
        m.receive(input);
        let mut out = String::new();
        loop {
            match m.poll().unwrap() {
                LoginEvent::NeedInput => return (out, None),
                LoginEvent::Reply(r) => out.push_str(&String::from_utf8(r).unwrap()),
                LoginEvent::Login { user, password } => {
                    let refusal = String::from_utf8(m.refused("x")).unwrap();
                    let tag = refusal.split(' ').next().unwrap().to_string();
                    return (out, Some((tag, user, password.expose().clone())));
                }
                LoginEvent::Close => {
                    out.push_str("<close>");
                    return (out, None);
                }
            }
        }
    }

    #[test]
    fn greeting_offers_plain() {
        assert_eq!(
            LocalImapLogin::new().greeting(),
            b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ID] mailtun ready\r\n"
        );
    }

    #[test]
    fn capability_then_login_with_quoted_strings() {
        let mut m = LocalImapLogin::new();
        let (out, login) = run(
            &mut m,
            b"a1 CAPABILITY\r\na2 LOGIN \"alice\" \"p \\\"w\"\r\na3 SELECT INBOX\r\n",
        );
        assert_eq!(
            out,
            "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ID\r\na1 OK CAPABILITY completed\r\n"
        );
        assert_eq!(login, Some(("a2".into(), "alice".into(), "p \"w".into())));
        assert_eq!(Box::new(m).into_rest(), b"a3 SELECT INBOX\r\n");
    }

    #[test]
    fn login_with_synchronizing_literals() {
        let mut m = LocalImapLogin::new();
        let (out, login) = run(&mut m, b"x LOGIN {5}\r\n");
        assert_eq!(out, "+ go ahead\r\n");
        assert!(login.is_none());
        let (out, login) = run(&mut m, b"alice {3}\r\n");
        assert_eq!(out, "+ go ahead\r\n");
        assert!(login.is_none());
        let (out, login) = run(&mut m, b"pw!\r\n");
        assert_eq!(out, "");
        assert_eq!(login, Some(("x".into(), "alice".into(), "pw!".into())));
    }

    #[test]
    fn authenticate_plain_with_and_without_initial_response() {
        let ir = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0secret");
        let mut m = LocalImapLogin::new();
        let (_, login) = run(&mut m, format!("t AUTHENTICATE PLAIN {ir}\r\n").as_bytes());
        assert_eq!(login, Some(("t".into(), "alice".into(), "secret".into())));
        let mut m = LocalImapLogin::new();
        let (out, login) = run(&mut m, b"t AUTHENTICATE PLAIN\r\n");
        assert_eq!(out, "+ \r\n");
        assert!(login.is_none());
        let (_, login) = run(&mut m, format!("{ir}\r\n").as_bytes());
        assert_eq!(login, Some(("t".into(), "alice".into(), "secret".into())));
        let mut m = LocalImapLogin::new();
        let (out, login) = run(&mut m, b"t AUTHENTICATE PLAIN\r\n*\r\n");
        assert_eq!(out, "+ \r\nt BAD mailtun: authentication cancelled\r\n");
        assert!(login.is_none());
    }

    #[test]
    fn other_commands_wait_for_the_login_and_logout_closes() {
        let mut m = LocalImapLogin::new();
        let (out, _) = run(&mut m, b"a SELECT INBOX\r\nb STARTTLS\r\nc LOGOUT\r\n");
        assert!(
            out.starts_with("a NO mailtun: log in first\r\nb BAD"),
            "{out}"
        );
        assert!(out.ends_with("c OK LOGOUT completed\r\n<close>"), "{out}");
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut m = LocalImapLogin::new();
        m.receive(&vec![b'a'; MAX_COMMAND + 10]);
        assert_eq!(m.poll().unwrap_err(), TOO_LONG);
    }

    #[test]
    fn the_replies_that_end_a_login_carry_its_tag() {
        let mut m = LocalImapLogin::new();
        let (_, login) = run(&mut m, b"a7 LOGIN alice pw\r\n");
        assert!(login.is_some());
        assert_eq!(
            m.accepted(&["IMAP4rev1".into(), "IDLE".into()], "alice authenticated"),
            b"a7 OK [CAPABILITY IMAP4rev1 IDLE] mailtun: alice authenticated\r\n"
        );
        assert_eq!(
            m.upstream_failed("UNAVAILABLE", "down\r\n"),
            b"a7 NO [UNAVAILABLE] mailtun: down  \r\n"
        );
        assert_eq!(
            m.goodbye("no login within 2 s"),
            b"* BYE mailtun: no login within 2 s\r\n"
        );
    }
}
