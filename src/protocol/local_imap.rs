//! The client-facing IMAP login of `mailtun serve`, sans I/O: greets a local client that
//! connected to the listener, answers CAPABILITY, NOOP, ID, LOGOUT, and takes its LOGIN
//! or AUTHENTICATE PLAIN; the listener checks the credentials, authenticates upstream and
//! answers the login with the server's own capabilities.
//!
//! Nothing reaches the server before the login: the listener connects only once this
//! machine yields [`LoginEvent::Login`]. The client's password is held as a [`Secret`]
//! and never shown in a trace.

use std::collections::VecDeque;

use base64::Engine as _;

use crate::secret::Secret;

/// Longest command accepted before the login (literals included).
pub const MAX_COMMAND: usize = 16 * 1024;

/// The capabilities announced before the login.
pub const CAPABILITIES: &str = "IMAP4rev1 AUTH=PLAIN SASL-IR ID";

/// What the listener must do next with the local client.
#[derive(Debug)]
pub enum LoginEvent {
    /// Read more bytes from the client and pass them to [`LocalImapLogin::receive`].
    NeedInput,
    /// Write these bytes to the client.
    Reply(Vec<u8>),
    /// The client logged in with these credentials; answer with [`ok_reply`] or
    /// [`LocalImapLogin::refuse`].
    Login {
        tag: String,
        user: String,
        password: Secret<String>,
    },
    /// The client logged out (the reply was given): close the connection.
    Close,
}

/// A client that did not behave like an IMAP client before its login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("the mail client sent a command longer than {MAX_COMMAND} bytes before logging in")]
    TooLong,
}

/// The greeting before the login.
pub fn greeting() -> Vec<u8> {
    format!("* OK [CAPABILITY {CAPABILITIES}] mailtun ready\r\n").into_bytes()
}

/// The tagged OK that ends the login, with the server's capabilities.
pub fn ok_reply(tag: &str, capabilities: &[String], text: &str) -> Vec<u8> {
    format!(
        "{tag} OK [CAPABILITY {}] mailtun: {text}\r\n",
        capabilities.join(" ")
    )
    .into_bytes()
}

/// The local login state machine.
#[derive(Default)]
pub struct LocalImapLogin {
    buf: Vec<u8>,
    out: VecDeque<LoginEvent>,
    /// Synchronizing literals of the current command already answered with `+`.
    acked_literals: usize,
    /// AUTHENTICATE PLAIN without an initial response: the tag waiting for it.
    awaiting_plain: Option<String>,
    closed: bool,
}

/// One parsed command: its arguments as byte strings.
type Args = Vec<Vec<u8>>;

impl LocalImapLogin {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes received from the client.
    pub fn receive(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received after the login command (a pipelining client's next commands):
    /// they belong to the server.
    pub fn into_rest(self) -> Vec<u8> {
        self.buf
    }

    /// Tells the client its login was refused.
    pub fn refuse(tag: &str, text: &str) -> Vec<u8> {
        format!("{tag} NO [AUTHENTICATIONFAILED] mailtun: {text}\r\n").into_bytes()
    }

    /// The next thing to do.
    pub fn poll(&mut self) -> Result<LoginEvent, LoginError> {
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

    fn need_input(&self) -> Result<LoginEvent, LoginError> {
        if self.buf.len() > MAX_COMMAND {
            return Err(LoginError::TooLong);
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
                Ok(password) => self.out.push_back(LoginEvent::Login {
                    tag,
                    user: text(&args[2]),
                    password: Secret::new(password),
                }),
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

    /// The AUTHENTICATE PLAIN response `line` (base64 of authzid NUL user NUL password).
    fn plain(&mut self, tag: &str, line: &[u8]) {
        if line == b"*" {
            self.reply(format!("{tag} BAD mailtun: authentication cancelled\r\n"));
            return;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(line)
            .ok()
            .map(Secret::new);
        let parts = decoded.as_ref().and_then(|d| {
            let v: Vec<&[u8]> = d.expose().split(|&b| b == 0).collect();
            match v.as_slice() {
                [authz, user, pass] if authz.is_empty() || authz == user => Some((
                    String::from_utf8(user.to_vec()).ok()?,
                    String::from_utf8(pass.to_vec()).ok()?,
                )),
                _ => None,
            }
        });
        match parts {
            Some((user, password)) => self.out.push_back(LoginEvent::Login {
                tag: tag.to_string(),
                user,
                password: Secret::new(password),
            }),
            None => self.reply(format!(
                "{tag} BAD mailtun: not a PLAIN response (authzid NUL user NUL password, base64)\r\n"
            )),
        }
    }

    /// Takes one complete command (up to its final CRLF, literals included) from the
    /// buffer; queues `+` for a synchronizing literal the client waits on.
    fn take_command(&mut self) -> Result<Option<Args>, LoginError> {
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
                        .ok_or(LoginError::TooLong)?;
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

    fn run(m: &mut LocalImapLogin, input: &[u8]) -> (String, Option<(String, String, String)>) {
        m.receive(input);
        let mut out = String::new();
        loop {
            match m.poll().unwrap() {
                LoginEvent::NeedInput => return (out, None),
                LoginEvent::Reply(r) => out.push_str(&String::from_utf8(r).unwrap()),
                LoginEvent::Login {
                    tag,
                    user,
                    password,
                } => return (out, Some((tag, user, password.expose().clone()))),
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
            greeting(),
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
        assert_eq!(m.into_rest(), b"a3 SELECT INBOX\r\n");
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
        assert_eq!(m.poll().unwrap_err(), LoginError::TooLong);
    }
}
