//! The local login of `mailtun serve`, sans I/O: the [`LocalLogin`] trait the listener
//! drives for every protocol, and its POP3 and SMTP machines (IMAP's is
//! [`super::local_imap::LocalImapLogin`]).
//!
//! A machine greets the local client, answers what a server answers before a login
//! (POP3: CAPA, USER, QUIT; SMTP: EHLO, HELO, NOOP, RSET, QUIT), and yields
//! [`LoginEvent::Login`] for the client's USER/PASS, `AUTH PLAIN` or (SMTP) `AUTH LOGIN`.
//! The listener checks the credentials and only then connects upstream; the machine
//! makes the reply that ends the login ([`LocalLogin::accepted`] or
//! [`LocalLogin::refused`]). After the login, bytes the client already sent belong to
//! the session ([`LocalLogin::into_rest`]), and the tunnel's local side
//! ([`super::local`]) answers any repeated CAPA/EHLO with the server's own list.
//!
//! # What is promised before the login
//! The upstream server is not known yet, so only what mailtun itself does is announced.
//! POP3's CAPA lists `USER` and `SASL PLAIN`; SMTP's EHLO lists `AUTH PLAIN LOGIN` and
//! nothing else: no `PIPELINING`, `8BITMIME`, `SIZE`, `CHUNKING` or
//! `ENHANCEDSTATUSCODES`, which only the server can promise. A client that sends EHLO
//! again after AUTH gets the server's extensions.
//!
//! The client's password is held as a [`Secret`] and never shown in a trace.

use std::collections::VecDeque;

use base64::Engine as _;

use super::local::{LocalError, line_length, trim_terminator, verb};
use crate::secret::Secret;

/// What the listener must do next with a client that has not logged in.
#[derive(Debug)]
pub enum LoginEvent {
    /// Read more bytes from the client and pass them to [`LocalLogin::receive`].
    NeedInput,
    /// Write these bytes to the client.
    Reply(Vec<u8>),
    /// The client logged in with these credentials: answer with
    /// [`LocalLogin::accepted`] or [`LocalLogin::refused`] before polling again.
    Login {
        user: String,
        password: Secret<String>,
    },
    /// The client said goodbye (the reply was given): close the connection.
    Close,
}

/// One protocol's local login, as the listener drives it.
pub trait LocalLogin {
    /// The greeting the client gets on connecting.
    fn greeting(&self) -> Vec<u8>;
    /// Adds bytes received from the client.
    fn receive(&mut self, data: &[u8]);
    /// The next thing to do.
    fn poll(&mut self) -> Result<LoginEvent, LocalError>;
    /// The reply to the login just yielded, refused because of `text`.
    fn refused(&mut self, text: &str) -> Vec<u8>;
    /// The reply to the login just yielded, once the upstream session is up: `summary`
    /// says who was authenticated where; `capabilities` are the server's, as the client
    /// may see them (IMAP puts them in its tagged OK).
    fn accepted(&self, capabilities: &[String], summary: &str) -> Vec<u8>;
    /// Added after the protocol's failure reply when the upstream session failed (IMAP:
    /// the tagged NO of the login; nothing for POP3 and SMTP, whose failure reply is
    /// itself the answer to the login).
    fn upstream_failed(&self, _code: &str, _text: &str) -> Vec<u8> {
        Vec::new()
    }
    /// The last words before mailtun closes the connection on its own (login timeout,
    /// shutdown, too many wrong logins).
    fn goodbye(&self, text: &str) -> Vec<u8>;
    /// Bytes the client sent after its login command: they belong to the session.
    fn into_rest(self: Box<Self>) -> Vec<u8>;
}

/// Server text for a local reply: one line, no control characters.
pub(super) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn decode(b64: &[u8]) -> Option<Secret<Vec<u8>>> {
    if b64 == b"=" {
        return Some(Secret::new(Vec::new()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .map(Secret::new)
}

fn utf8(bytes: &[u8]) -> Option<Secret<String>> {
    std::str::from_utf8(bytes)
        .ok()
        .map(|s| Secret::new(s.to_string()))
}

/// A SASL PLAIN response (base64 of authzid NUL user NUL password; the authzid empty or
/// the user): the user and the password.
pub(super) fn plain_response(b64: &[u8]) -> Option<(String, Secret<String>)> {
    let decoded = decode(b64)?;
    let parts: Vec<&[u8]> = decoded.expose().split(|&b| b == 0).collect();
    match parts.as_slice() {
        [authz, user, pass] if authz.is_empty() || authz == user => {
            Some((String::from_utf8(user.to_vec()).ok()?, utf8(pass)?))
        }
        _ => None,
    }
}

/// The arguments of a command line: everything after the command word and one space.
fn argument(line: &[u8]) -> &[u8] {
    match line.iter().position(|&b| b == b' ') {
        Some(p) => &line[p + 1..],
        None => b"",
    }
}

/// A SASL exchange under way: what the next client line answers.
enum Awaiting {
    /// The PLAIN response.
    Plain,
    /// LOGIN's user name.
    LoginUser,
    /// LOGIN's password, for this user.
    LoginPassword(String),
}

/// Line splitting and the event queue, shared by the POP3 and SMTP machines.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    out: VecDeque<LoginEvent>,
    closed: bool,
}

impl Lines {
    /// The next queued event, or the next complete line (terminator removed) to `answer`.
    fn poll(
        &mut self,
        mut answer: impl FnMut(&[u8], &mut VecDeque<LoginEvent>),
    ) -> Result<LoginEvent, LocalError> {
        loop {
            if let Some(e) = self.out.pop_front() {
                if matches!(e, LoginEvent::Close) {
                    self.closed = true;
                }
                return Ok(e);
            }
            if self.closed {
                return Ok(LoginEvent::Close);
            }
            let Some(len) = line_length(&self.buf)? else {
                return Ok(LoginEvent::NeedInput);
            };
            let line: Vec<u8> = self.buf.drain(..len).collect();
            let line = Secret::new(line);
            answer(trim_terminator(line.expose()), &mut self.out);
        }
    }
}

fn reply(out: &mut VecDeque<LoginEvent>, text: String) {
    out.push_back(LoginEvent::Reply(text.into_bytes()));
}

fn login(out: &mut VecDeque<LoginEvent>, user: String, password: Secret<String>) {
    out.push_back(LoginEvent::Login { user, password });
}

/// The POP3 login (RFC 1939 AUTHORIZATION state, RFC 5034 AUTH PLAIN, RFC 2449 CAPA).
/// See the [module documentation](self).
#[derive(Default)]
pub struct LocalPop3Login {
    lines: Lines,
    user: Option<String>,
    awaiting: Option<Awaiting>,
}

impl LocalPop3Login {
    pub fn new() -> Self {
        Self::default()
    }

    fn answer(
        user: &mut Option<String>,
        awaiting: &mut Option<Awaiting>,
        line: &[u8],
        out: &mut VecDeque<LoginEvent>,
    ) {
        if awaiting.take().is_some() {
            // Only PLAIN is offered to POP3 clients.
            return match (line, plain_response(line)) {
                (b"*", _) => reply(out, "-ERR mailtun: authentication cancelled\r\n".into()),
                (_, Some((u, p))) => login(out, u, p),
                (_, None) => reply(out, "-ERR mailtun: not a PLAIN response (authzid NUL user NUL password, base64)\r\n".into()),
            };
        }
        let (verb, has_args) = verb(line);
        let arg = argument(line);
        match verb.as_str() {
            "CAPA" => reply(
                out,
                "+OK mailtun: capability list follows\r\nCAPA\r\nUSER\r\nSASL PLAIN\r\n.\r\n"
                    .into(),
            ),
            "USER" if has_args => {
                *user = Some(String::from_utf8_lossy(arg).into_owned());
                reply(out, "+OK mailtun: send PASS\r\n".into());
            }
            "PASS" => match (user.take(), utf8(arg)) {
                (Some(u), Some(p)) => login(out, u, p),
                (None, _) => reply(out, "-ERR mailtun: USER first\r\n".into()),
                (Some(_), None) => reply(out, "-ERR mailtun: the password is not UTF-8\r\n".into()),
            },
            // A bare AUTH lists the mechanisms (RFC 1734).
            "AUTH" if !has_args => reply(
                out,
                "+OK mailtun: mechanisms follow\r\nPLAIN\r\n.\r\n".into(),
            ),
            "AUTH" => {
                let mut words = arg.splitn(2, |&b| b == b' ');
                let mech = words.next().unwrap_or_default();
                match words.next() {
                    _ if !mech.eq_ignore_ascii_case(b"PLAIN") => reply(
                        out,
                        "-ERR mailtun: only AUTH PLAIN and USER/PASS are offered here\r\n".into(),
                    ),
                    Some(ir) => Self::answer(user, &mut Some(Awaiting::Plain), ir, out),
                    None => {
                        *awaiting = Some(Awaiting::Plain);
                        reply(out, "+ \r\n".into());
                    }
                }
            }
            "APOP" => reply(
                out,
                "-ERR mailtun: APOP is not offered here; use USER/PASS or AUTH PLAIN\r\n".into(),
            ),
            "STLS" => reply(
                out,
                "-ERR mailtun: no STLS on the local listener (the server's TLS is mailtun's)\r\n"
                    .into(),
            ),
            "QUIT" => {
                reply(out, "+OK mailtun: bye\r\n".into());
                out.push_back(LoginEvent::Close);
            }
            _ => reply(out, "-ERR mailtun: log in first\r\n".into()),
        }
    }
}

impl LocalLogin for LocalPop3Login {
    fn greeting(&self) -> Vec<u8> {
        b"+OK mailtun ready\r\n".to_vec()
    }

    fn receive(&mut self, data: &[u8]) {
        self.lines.buf.extend_from_slice(data);
    }

    fn poll(&mut self) -> Result<LoginEvent, LocalError> {
        let (user, awaiting) = (&mut self.user, &mut self.awaiting);
        self.lines
            .poll(|line, out| Self::answer(user, awaiting, line, out))
    }

    fn refused(&mut self, text: &str) -> Vec<u8> {
        format!("-ERR [AUTH] mailtun: {}\r\n", one_line(text)).into_bytes()
    }

    fn accepted(&self, _capabilities: &[String], summary: &str) -> Vec<u8> {
        format!("+OK mailtun: {}\r\n", one_line(summary)).into_bytes()
    }

    fn goodbye(&self, text: &str) -> Vec<u8> {
        format!("-ERR mailtun: {}\r\n", one_line(text)).into_bytes()
    }

    fn into_rest(self: Box<Self>) -> Vec<u8> {
        self.lines.buf
    }
}

/// The SMTP login (RFC 5321 greeting, EHLO and HELO; RFC 4954 AUTH PLAIN and LOGIN).
/// See the [module documentation](self).
pub struct LocalSmtpLogin {
    lines: Lines,
    host: String,
    awaiting: Option<Awaiting>,
}

const USERNAME_PROMPT: &str = "334 VXNlcm5hbWU6\r\n";
const PASSWORD_PROMPT: &str = "334 UGFzc3dvcmQ6\r\n";

impl LocalSmtpLogin {
    /// `host` names the server in the greeting and the EHLO reply.
    pub fn new(host: &str) -> Self {
        LocalSmtpLogin {
            lines: Lines::default(),
            host: host.chars().filter(|c| c.is_ascii_graphic()).collect(),
            awaiting: None,
        }
    }

    fn sasl(awaiting: Awaiting, line: &[u8], out: &mut VecDeque<LoginEvent>) -> Option<Awaiting> {
        if line == b"*" {
            reply(
                out,
                "501 5.0.0 mailtun: authentication cancelled\r\n".into(),
            );
            return None;
        }
        let bad = "501 5.5.2 mailtun: not a valid response (base64)\r\n";
        match awaiting {
            Awaiting::Plain => match plain_response(line) {
                Some((u, p)) => login(out, u, p),
                None => reply(out, "501 5.5.2 mailtun: not a PLAIN response (authzid NUL user NUL password, base64)\r\n".into()),
            },
            Awaiting::LoginUser => match decode(line).and_then(|u| String::from_utf8(u.expose().clone()).ok()) {
                Some(u) => {
                    reply(out, PASSWORD_PROMPT.into());
                    return Some(Awaiting::LoginPassword(u));
                }
                None => reply(out, bad.into()),
            },
            Awaiting::LoginPassword(u) => match decode(line).and_then(|p| utf8(p.expose())) {
                Some(p) => login(out, u, p),
                None => reply(out, bad.into()),
            },
        }
        None
    }

    fn answer(
        host: &str,
        awaiting: &mut Option<Awaiting>,
        line: &[u8],
        out: &mut VecDeque<LoginEvent>,
    ) {
        if let Some(a) = awaiting.take() {
            *awaiting = Self::sasl(a, line, out);
            return;
        }
        let (verb, _) = verb(line);
        match verb.as_str() {
            "EHLO" => reply(out, format!("250-{host}\r\n250 AUTH PLAIN LOGIN\r\n")),
            "HELO" => reply(out, format!("250 {host}\r\n")),
            "AUTH" => {
                let mut words = argument(line).splitn(2, |&b| b == b' ');
                let mech = words.next().unwrap_or_default().to_ascii_uppercase();
                let next = match (mech.as_slice(), words.next()) {
                    (b"PLAIN", Some(ir)) => Self::sasl(Awaiting::Plain, ir, out),
                    (b"PLAIN", None) => {
                        reply(out, "334 \r\n".into());
                        Some(Awaiting::Plain)
                    }
                    (b"LOGIN", Some(ir)) => Self::sasl(Awaiting::LoginUser, ir, out),
                    (b"LOGIN", None) => {
                        reply(out, USERNAME_PROMPT.into());
                        Some(Awaiting::LoginUser)
                    }
                    _ => {
                        reply(out, "504 5.5.4 mailtun: only AUTH PLAIN and LOGIN are offered here\r\n".into());
                        None
                    }
                };
                *awaiting = next;
            }
            "NOOP" | "RSET" => reply(out, "250 2.0.0 OK\r\n".into()),
            "STARTTLS" => reply(out, "502 5.5.1 mailtun: no STARTTLS on the local listener (the server's TLS is mailtun's)\r\n".into()),
            "QUIT" => {
                reply(out, "221 2.0.0 mailtun: bye\r\n".into());
                out.push_back(LoginEvent::Close);
            }
            _ => reply(out, "530 5.7.0 mailtun: authentication required\r\n".into()),
        }
    }
}

impl LocalLogin for LocalSmtpLogin {
    fn greeting(&self) -> Vec<u8> {
        // "ESMTP" tells older clients to send EHLO rather than HELO.
        format!("220 {} ESMTP mailtun ready\r\n", self.host).into_bytes()
    }

    fn receive(&mut self, data: &[u8]) {
        self.lines.buf.extend_from_slice(data);
    }

    fn poll(&mut self) -> Result<LoginEvent, LocalError> {
        let (host, awaiting) = (&self.host, &mut self.awaiting);
        self.lines
            .poll(|line, out| Self::answer(host, awaiting, line, out))
    }

    fn refused(&mut self, text: &str) -> Vec<u8> {
        format!("535 5.7.8 mailtun: {}\r\n", one_line(text)).into_bytes()
    }

    fn accepted(&self, _capabilities: &[String], summary: &str) -> Vec<u8> {
        format!("235 2.7.0 mailtun: {}\r\n", one_line(summary)).into_bytes()
    }

    fn goodbye(&self, text: &str) -> Vec<u8> {
        format!("421 4.4.2 mailtun: {}\r\n", one_line(text)).into_bytes()
    }

    fn into_rest(self: Box<Self>) -> Vec<u8> {
        self.lines.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client saw, the logins yielded (user, password), whether it was closed,
    /// and the bytes left for the session. Every login is accepted when `accept`, else
    /// refused with "no".
    #[derive(Debug, Default)]
    struct Transcript {
        to_client: String,
        logins: Vec<(String, String)>,
        closed: bool,
        rest: Vec<u8>,
    }

    fn drive(mut m: Box<dyn LocalLogin>, client: &[&[u8]], accept: bool) -> Transcript {
        let mut t = Transcript {
            to_client: String::from_utf8(m.greeting()).unwrap(),
            ..Transcript::default()
        };
        let mut chunks = client.iter();
        loop {
            match m.poll().unwrap() {
                LoginEvent::NeedInput => match chunks.next() {
                    Some(c) => m.receive(c),
                    None => break,
                },
                LoginEvent::Reply(b) => t.to_client.push_str(&String::from_utf8(b).unwrap()),
                LoginEvent::Login { user, password } => {
                    t.logins.push((user, password.expose().clone()));
                    if accept {
                        let ok = m.accepted(&[], "alice authenticated");
                        t.to_client.push_str(&String::from_utf8(ok).unwrap());
                        for c in chunks {
                            m.receive(c);
                        }
                        t.rest = m.into_rest();
                        return t;
                    }
                    t.to_client
                        .push_str(&String::from_utf8(m.refused("no")).unwrap());
                }
                LoginEvent::Close => {
                    t.closed = true;
                    break;
                }
            }
        }
        t
    }

    fn pop3(client: &[&[u8]], accept: bool) -> Transcript {
        drive(Box::new(LocalPop3Login::new()), client, accept)
    }

    fn smtp(client: &[&[u8]], accept: bool) -> Transcript {
        drive(
            Box::new(LocalSmtpLogin::new("mail.example")),
            client,
            accept,
        )
    }

    fn pair(u: &str, p: &str) -> Vec<(String, String)> {
        vec![(u.into(), p.into())]
    }

    const POP3_CAPA: &str =
        "+OK mailtun: capability list follows\r\nCAPA\r\nUSER\r\nSASL PLAIN\r\n.\r\n";

    #[test]
    fn rfc1939_pop3_capa_then_user_pass_then_the_rest_is_the_sessions() {
        let t = pop3(
            &[
                b"CAPA\r\n",
                b"USER alice\r\n",
                b"PASS pass word\r\nSTAT\r\n",
                b"LIST\r\n",
            ],
            true,
        );
        assert_eq!(
            t.to_client,
            format!(
                "+OK mailtun ready\r\n{POP3_CAPA}+OK mailtun: send PASS\r\n+OK mailtun: alice authenticated\r\n"
            )
        );
        assert_eq!(t.logins, pair("alice", "pass word"));
        assert_eq!(t.rest, b"STAT\r\nLIST\r\n");
    }

    #[test]
    fn rfc1939_pop3_refused_login_starts_over_at_user() {
        let t = pop3(&[b"USER bob\r\nPASS x\r\nPASS y\r\n"], false);
        assert_eq!(
            t.to_client,
            "+OK mailtun ready\r\n+OK mailtun: send PASS\r\n-ERR [AUTH] mailtun: no\r\n-ERR mailtun: USER first\r\n"
        );
        assert_eq!(t.logins, pair("bob", "x"));
    }

    #[test]
    fn rfc5034_pop3_auth_plain_with_and_without_initial_response() {
        // curl: AUTH PLAIN with the initial response.
        let t = pop3(&[b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"], true);
        assert_eq!(t.logins, pair("alice", "secret"));
        let t = pop3(&[b"AUTH PLAIN\r\n", b"YWxpY2UAYWxpY2UAc2VjcmV0\r\n"], true);
        assert_eq!(
            t.to_client,
            "+OK mailtun ready\r\n+ \r\n+OK mailtun: alice authenticated\r\n"
        );
        assert_eq!(t.logins, pair("alice", "secret"));
        let t = pop3(&[b"AUTH PLAIN\r\n*\r\nAUTH\r\nAUTH GSSAPI\r\n"], true);
        assert_eq!(
            t.to_client,
            "+OK mailtun ready\r\n+ \r\n-ERR mailtun: authentication cancelled\r\n+OK mailtun: mechanisms follow\r\nPLAIN\r\n.\r\n-ERR mailtun: only AUTH PLAIN and USER/PASS are offered here\r\n"
        );
        assert!(t.logins.is_empty());
    }

    #[test]
    fn rfc4616_plain_with_another_authzid_is_not_a_login() {
        // authzid "bob", user "alice": asking to act as someone else.
        let t = pop3(&[b"AUTH PLAIN Ym9iAGFsaWNlAHg=\r\n"], true);
        assert!(t.logins.is_empty());
        assert!(
            t.to_client.ends_with(
                "-ERR mailtun: not a PLAIN response (authzid NUL user NUL password, base64)\r\n"
            ),
            "{}",
            t.to_client
        );
    }

    #[test]
    fn pop3_nothing_but_the_login_before_it_and_quit_closes() {
        let t = pop3(
            &[b"STAT\r\nRETR 1\r\nAPOP a b\r\nSTLS\r\nQUIT\r\nUSER x\r\n"],
            true,
        );
        assert_eq!(
            t.to_client,
            "+OK mailtun ready\r\n-ERR mailtun: log in first\r\n-ERR mailtun: log in first\r\n-ERR mailtun: APOP is not offered here; use USER/PASS or AUTH PLAIN\r\n-ERR mailtun: no STLS on the local listener (the server's TLS is mailtun's)\r\n+OK mailtun: bye\r\n"
        );
        assert!(t.closed);
        assert!(t.logins.is_empty());
    }

    #[test]
    fn pop3_goodbye_and_refusal_text_stay_one_line() {
        let mut m = LocalPop3Login::new();
        assert_eq!(
            m.goodbye("no login within 2 s"),
            b"-ERR mailtun: no login within 2 s\r\n"
        );
        assert_eq!(
            m.refused("a\r\n+OK x"),
            b"-ERR [AUTH] mailtun: a  +OK x\r\n"
        );
    }

    #[test]
    fn client_overlong_line_refused() {
        let mut m = LocalPop3Login::new();
        m.receive(&vec![b'A'; super::super::line::MAX_LINE + 1]);
        assert!(matches!(m.poll(), Err(LocalError::LineTooLong { .. })));
    }

    const SMTP_EHLO: &str = "250-mail.example\r\n250 AUTH PLAIN LOGIN\r\n";
    const SMTP_GREETING: &str = "220 mail.example ESMTP mailtun ready\r\n";

    #[test]
    fn rfc4954_smtp_ehlo_offers_only_auth_then_auth_plain_then_the_transaction_is_the_sessions() {
        let t = smtp(
            &[
                b"EHLO laptop\r\n",
                b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                b"MAIL FROM:<alice@example.org>\r\n",
            ],
            true,
        );
        assert_eq!(
            t.to_client,
            format!("{SMTP_GREETING}{SMTP_EHLO}235 2.7.0 mailtun: alice authenticated\r\n")
        );
        assert_eq!(t.logins, pair("alice", "secret"));
        assert_eq!(t.rest, b"MAIL FROM:<alice@example.org>\r\n");
    }

    #[test]
    fn rfc4954_smtp_auth_login_with_prompts_and_with_initial_response() {
        let t = smtp(
            &[
                b"EHLO a\r\nAUTH LOGIN\r\n",
                b"YWxpY2U=\r\n",
                b"c2VjcmV0\r\n",
            ],
            true,
        );
        assert_eq!(
            t.to_client,
            format!(
                "{SMTP_GREETING}{SMTP_EHLO}334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 mailtun: alice authenticated\r\n"
            )
        );
        assert_eq!(t.logins, pair("alice", "secret"));
        let t = smtp(&[b"AUTH LOGIN YWxpY2U=\r\n", b"c2VjcmV0\r\n"], true);
        assert_eq!(t.logins, pair("alice", "secret"));
    }

    #[test]
    fn rfc4954_smtp_refused_cancelled_and_unknown_mechanisms() {
        let t = smtp(
            &[
                b"AUTH PLAIN\r\n",
                b"*\r\nAUTH CRAM-MD5\r\nAUTH PLAIN AGJvYgB4\r\n",
            ],
            false,
        );
        assert_eq!(
            t.to_client,
            format!(
                "{SMTP_GREETING}334 \r\n501 5.0.0 mailtun: authentication cancelled\r\n504 5.5.4 mailtun: only AUTH PLAIN and LOGIN are offered here\r\n535 5.7.8 mailtun: no\r\n"
            )
        );
        assert_eq!(t.logins, pair("bob", "x"));
    }

    #[test]
    fn rfc5321_smtp_transaction_before_auth_needs_authentication() {
        let t = smtp(
            &[b"HELO a\r\nMAIL FROM:<a@b>\r\nNOOP\r\nRSET\r\nSTARTTLS\r\nQUIT\r\nEHLO again\r\n"],
            true,
        );
        assert_eq!(
            t.to_client,
            format!(
                "{SMTP_GREETING}250 mail.example\r\n530 5.7.0 mailtun: authentication required\r\n250 2.0.0 OK\r\n250 2.0.0 OK\r\n502 5.5.1 mailtun: no STARTTLS on the local listener (the server's TLS is mailtun's)\r\n221 2.0.0 mailtun: bye\r\n"
            )
        );
        assert!(t.closed);
    }

    #[test]
    fn smtp_goodbye_is_421_and_host_cannot_break_the_line() {
        let m = LocalSmtpLogin::new("mail\r\n.example");
        assert_eq!(m.greeting(), SMTP_GREETING.as_bytes());
        assert_eq!(
            m.goodbye("shutting down"),
            b"421 4.4.2 mailtun: shutting down\r\n"
        );
    }
}
