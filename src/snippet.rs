//! `mailtun snippet CLIENT ACCOUNT`: the lines to paste into a mail client's
//! configuration so that it reaches ACCOUNT through mailtun.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{Account, PasswordSource, Protocol};

/// The mail clients mailtun prints settings for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Mutt,
    Neomutt,
    Alpine,
    Mbsync,
    Offlineimap,
    Fetchmail,
    /// The direct forms, for `mailtun serve`'s listener.
    Thunderbird,
    Msmtp,
    Curl,
    GitSendEmail,
}

impl Client {
    pub const NAMES: [&'static str; 10] = [
        "mutt",
        "neomutt",
        "alpine",
        "mbsync",
        "offlineimap",
        "fetchmail",
        "thunderbird",
        "msmtp",
        "curl",
        "git-send-email",
    ];

    pub fn parse(name: &str) -> Option<Client> {
        Some(match name.to_ascii_lowercase().as_str() {
            "mutt" => Client::Mutt,
            "neomutt" => Client::Neomutt,
            "alpine" | "pine" => Client::Alpine,
            "mbsync" | "isync" => Client::Mbsync,
            "offlineimap" => Client::Offlineimap,
            "fetchmail" => Client::Fetchmail,
            "thunderbird" => Client::Thunderbird,
            "msmtp" => Client::Msmtp,
            "curl" => Client::Curl,
            "git-send-email" | "git" => Client::GitSendEmail,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Client::Mutt => "mutt",
            Client::Neomutt => "neomutt",
            Client::Alpine => "alpine",
            Client::Mbsync => "mbsync",
            Client::Offlineimap => "offlineimap",
            Client::Fetchmail => "fetchmail",
            Client::Thunderbird => "thunderbird",
            Client::Msmtp => "msmtp",
            Client::Curl => "curl",
            Client::GitSendEmail => "git-send-email",
        }
    }
}

/// How the client starts mailtun: this executable, and the configuration file when it
/// is not the one mailtun finds by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub exe: PathBuf,
    pub config: Option<PathBuf>,
}

impl Invocation {
    /// `exe`, and `config` unless it is `default` (the file found without `--config` or
    /// `MAILTUN_CONFIG`). Relative paths are made absolute against `cwd`.
    pub fn new(exe: &Path, config: &Path, default: Option<&Path>, cwd: &Path) -> Invocation {
        let config = cwd.join(config);
        Invocation {
            exe: cwd.join(exe),
            config: (Some(config.as_path()) != default).then_some(config),
        }
    }

    /// `EXE [--config FILE]` as separate words.
    fn words(&self) -> Vec<String> {
        let mut w = vec![self.exe.display().to_string()];
        if let Some(c) = &self.config {
            w.push("--config".into());
            w.push(c.display().to_string());
        }
        w
    }

    /// The shell command that runs the tunnel of `account`.
    pub fn tunnel(&self, account: &str) -> String {
        let mut w = self.words();
        w.push("tunnel".into());
        w.push(account.into());
        w.iter().map(|s| sh_quote(s)).collect::<Vec<_>>().join(" ")
    }
}

/// Quotes a word for `sh -c` when it needs it.
fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A double-quoted mutt string: mutt expands `\`, `$` and backquotes inside one.
fn mutt_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A double-quoted fetchmail or mbsync string.
fn c_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', r"\\").replace('"', "\\\""))
}

/// A regular expression that matches `s` literally.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if ".^$*+?()[]{}|\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `user@` for a URL, or nothing.
fn url_user(account: &Account) -> String {
    if account.user.is_empty() {
        String::new()
    } else {
        format!("{}@", account.user.replace('%', "%25").replace('@', "%40"))
    }
}

fn only_imap(client: Client, account: &Account) -> Result<(), String> {
    if account.protocol == Protocol::Imap {
        Ok(())
    } else {
        Err(format!(
            "{} reaches IMAP servers through a tunnel only, and account `{}` speaks {}",
            client.name(),
            account.name,
            account.protocol
        ))
    }
}

/// The lines to paste into `client`'s configuration for `account`. `local_user` is the
/// local login that fetchmail delivers to.
pub fn render(
    client: Client,
    account: &Account,
    inv: &Invocation,
    local_user: Option<&str>,
) -> Result<String, String> {
    let tunnel = || inv.tunnel(&account.name);
    match client {
        Client::Mutt | Client::Neomutt => Ok(mutt(client, account, &tunnel())),
        Client::Alpine => alpine(client, account, inv),
        Client::Mbsync => mbsync(client, account, &tunnel()),
        Client::Offlineimap => offlineimap(client, account, &tunnel()),
        Client::Fetchmail => fetchmail(account, &tunnel(), local_user),
        Client::Thunderbird | Client::Msmtp | Client::Curl | Client::GitSendEmail => {
            direct(client, account)
        }
    }
}

/// mutt and neomutt: hooks that set `$tunnel` for this server only, and the mailbox or
/// SMTP URL.
fn mutt(client: Client, account: &Account, tunnel: &str) -> String {
    let name = &account.name;
    let host = &account.host;
    let mut s = String::new();
    let c = client.name();
    // mutt's SMTP URL carries no user (see below), and the hook sees that URL.
    let user = if account.protocol == Protocol::Smtp {
        String::new()
    } else {
        url_user(account)
    };
    let scheme = match account.protocol {
        Protocol::Imap => "imap",
        Protocol::Pop3 => "pop",
        Protocol::Smtp => "smtp",
    };
    writeln!(
        s,
        "# {c}: account `{name}` ({}) through mailtun.",
        account.protocol
    )
    .unwrap();
    let set_tunnel = format!("set tunnel={}", mutt_quote(tunnel));
    if set_tunnel.contains('\'') {
        writeln!(s, "# {c} uses its one $tunnel for every connection (IMAP, POP3 and SMTP):\n# keep these lines in a profile of their own ({c} -F FILE).").unwrap();
        writeln!(s, "{set_tunnel}").unwrap();
    } else {
        writeln!(s, "# {c} uses its one $tunnel for every connection (IMAP, POP3 and SMTP): these\n# hooks set it before each connection to this server and clear it for others.").unwrap();
        // The URL a hook sees may end right after the host (neomutt's SMTP), and
        // neomutt 20220429 picks tunnel or socket before its account-hook runs
        // for a mailbox: a folder-hook sets $tunnel before the mailbox opens.
        let url = format!(
            "{scheme}://{}{}([:/]|$)",
            regex_escape(&user),
            regex_escape(host)
        );
        writeln!(s, "account-hook . 'unset tunnel'").unwrap();
        writeln!(s, "account-hook '^{url}' '{set_tunnel}'").unwrap();
        if account.protocol != Protocol::Smtp {
            // `^` at the start of a folder-hook pattern means the current mailbox.
            writeln!(s, "folder-hook . 'unset tunnel'").unwrap();
            writeln!(s, "folder-hook '{url}' '{set_tunnel}'").unwrap();
        }
    }
    match account.protocol {
        Protocol::Imap => {
            writeln!(s, "set folder=\"imap://{user}{host}/\"").unwrap();
            writeln!(s, "set spoolfile=\"+INBOX\"").unwrap();
        }
        Protocol::Pop3 => {
            writeln!(s, "set spoolfile=\"pop://{user}{host}/\"").unwrap();
            writeln!(
                s,
                "# {c} logs in with USER/PASS even on a tunnel: mailtun answers both itself\n# and forwards nothing, so this placeholder is never sent anywhere."
            )
            .unwrap();
            writeln!(s, "set pop_pass=\"unused\"").unwrap();
        }
        Protocol::Smtp => {
            writeln!(
                s,
                "# No user in the URL: mailtun has authenticated already and offers no AUTH."
            )
            .unwrap();
            writeln!(s, "set smtp_url=\"smtp://{host}/\"").unwrap();
        }
    }
    s
}

/// alpine: the ssh-path form (`mailtun HOST -l USER exec /etc/rimapd`).
fn alpine(client: Client, account: &Account, inv: &Invocation) -> Result<String, String> {
    let name = &account.name;
    let host = &account.host;
    let mut s = String::new();
    only_imap(client, account)?;
    let words = inv.words();
    if let Some(w) = words
        .iter()
        .find(|w| w.contains(char::is_whitespace) || w.contains('"'))
    {
        return Err(format!(
            "alpine splits its ssh-command on spaces, so `{w}` cannot be part of it; use a path without spaces"
        ));
    }
    if account.user.is_empty() {
        return Err(format!(
            "alpine names the user in the mailbox, so account `{name}` needs a `user`"
        ));
    }
    writeln!(
        s,
        "# alpine (~/.pinerc): account `{name}` through mailtun, which alpine runs as"
    )
    .unwrap();
    writeln!(
        s,
        "# `mailtun HOST -l USER exec /etc/rimapd`; mailtun picks the account by host and user."
    )
    .unwrap();
    writeln!(
        s,
        "# The mailbox must have no /ssl, /tls or /norsh flag, or alpine skips ssh-path."
    )
    .unwrap();
    writeln!(s, "inbox-path={{{host}/user={}}}INBOX", account.user).unwrap();
    writeln!(s, "folder-collections={{{host}/user={}}}[]", account.user).unwrap();
    writeln!(s, "ssh-path={}", words[0]).unwrap();
    if words.len() > 1 {
        writeln!(
            s,
            "ssh-command=\"%s {} %s -l %s exec /etc/r%sd\"",
            words[1..].join(" ")
        )
        .unwrap();
    }
    Ok(s)
}

/// mbsync: an IMAPAccount with `Tunnel`.
fn mbsync(client: Client, account: &Account, tunnel: &str) -> Result<String, String> {
    let name = &account.name;
    let mut s = String::new();
    only_imap(client, account)?;
    writeln!(
        s,
        "# mbsync (~/.mbsyncrc): account `{name}` through mailtun"
    )
    .unwrap();
    writeln!(s, "IMAPAccount {name}").unwrap();
    writeln!(s, "Tunnel {}", c_quote(tunnel)).unwrap();
    writeln!(s).unwrap();
    writeln!(s, "IMAPStore {name}-remote").unwrap();
    writeln!(s, "Account {name}").unwrap();
    Ok(s)
}

/// offlineimap: a remote repository with `preauthtunnel`.
fn offlineimap(client: Client, account: &Account, tunnel: &str) -> Result<String, String> {
    let name = &account.name;
    let mut s = String::new();
    only_imap(client, account)?;
    writeln!(
        s,
        "# offlineimap (~/.offlineimaprc): account `{name}` through mailtun"
    )
    .unwrap();
    writeln!(s, "[Repository {name}-remote]").unwrap();
    writeln!(s, "type = IMAP").unwrap();
    // offlineimap's configuration parser expands `%`.
    writeln!(s, "preauthtunnel = {}", tunnel.replace('%', "%%")).unwrap();
    Ok(s)
}

/// fetchmail: a `plugin` poll entry (IMAP or POP3).
fn fetchmail(account: &Account, tunnel: &str, local_user: Option<&str>) -> Result<String, String> {
    let name = &account.name;
    let host = &account.host;
    let mut s = String::new();
    let proto = match account.protocol {
        Protocol::Imap => "IMAP",
        Protocol::Pop3 => "POP3",
        Protocol::Smtp => {
            return Err(format!(
                "fetchmail retrieves mail (IMAP or POP3), and account `{name}` speaks smtp"
            ));
        }
    };
    if account.user.is_empty() {
        return Err(format!(
            "fetchmail needs a user name, and account `{name}` has no `user`"
        ));
    }
    writeln!(
        s,
        "# fetchmail (~/.fetchmailrc, mode 0600): account `{name}` through mailtun."
    )
    .unwrap();
    writeln!(
        s,
        "# `sslproto \"\"`: fetchmail 6.4.22+ otherwise wants STARTTLS on the plugin itself."
    )
    .unwrap();
    writeln!(
        s,
        "poll {host} via localhost no dns with proto {proto} plugin {} auth ssh",
        c_quote(tunnel)
    )
    .unwrap();
    let here = local_user
        .map(|u| format!(" is {} here", c_quote(u)))
        .unwrap_or_default();
    writeln!(
        s,
        "  user {} there{here} sslproto \"\"",
        c_quote(&account.user)
    )
    .unwrap();
    Ok(s)
}

/// The direct form: the client talks to `mailtun serve`'s listener on localhost, with no
/// encryption (the connection never leaves the machine) and a normal password.
fn direct(client: Client, account: &Account) -> Result<String, String> {
    use crate::config::ListenAddr;
    let name = &account.name;
    let c = client.name();
    let Some(listen) = &account.serve.listen else {
        return Err(format!(
            "{c} connects to `mailtun serve`, and account `{name}` has no `listen`; add e.g. `listen = \"127.0.0.1:{}\"` and run `mailtun serve`",
            match account.protocol {
                Protocol::Imap => 1143,
                Protocol::Pop3 => 1110,
                Protocol::Smtp => 1587,
            }
        ));
    };
    let (host, port, socket) = match listen {
        ListenAddr::Tcp(a) => (
            match a.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            },
            a.port(),
            None,
        ),
        ListenAddr::Unix(p) if client == Client::Curl => ("localhost".into(), 0, Some(p)),
        ListenAddr::Unix(p) => {
            return Err(format!(
                "{c} cannot connect to a Unix socket, and account `{name}` listens on unix:{}; use `listen = \"127.0.0.1:PORT\"`",
                p.display()
            ));
        }
    };
    let user = if account.user.is_empty() {
        "mailtun".to_string()
    } else {
        account.user.clone()
    };
    let password_note = match &account.serve.local_password {
        None => "any password: mailtun lets in only the local user running it",
        Some(_) => "the account's `local_password`",
    };
    let from = if account.user.contains('@') {
        account.user.clone()
    } else {
        "YOU@EXAMPLE.ORG".into()
    };
    let d = Direct {
        client,
        account,
        host,
        port,
        socket,
        user,
        password_note,
        from,
    };
    let mut s = String::new();
    writeln!(
        s,
        "# {c}: account `{name}` ({}) through `mailtun serve` on {listen}.",
        account.protocol
    )
    .unwrap();
    match client {
        Client::Thunderbird => thunderbird(&d, &mut s),
        Client::Msmtp => msmtp(&d, &mut s)?,
        Client::Curl => curl(&d, &mut s),
        Client::GitSendEmail => git_send_email(&d, &mut s)?,
        _ => unreachable!("only the direct forms come here"),
    }
    Ok(s)
}

/// What a direct form says: where the listener is and how to log in to it.
struct Direct<'a> {
    client: Client,
    account: &'a Account,
    host: String,
    port: u16,
    /// The listener's Unix socket (curl only).
    socket: Option<&'a std::path::PathBuf>,
    user: String,
    password_note: &'static str,
    from: String,
}

impl Direct<'_> {
    /// A client that only sends mail refuses an IMAP or POP3 account.
    fn smtp_only(&self, what: &str) -> Result<(), String> {
        if self.account.protocol == Protocol::Smtp {
            Ok(())
        } else {
            Err(format!(
                "{} {what}, and account `{}` speaks {}",
                self.client.name(),
                self.account.name,
                self.account.protocol
            ))
        }
    }
}

fn thunderbird(d: &Direct, s: &mut String) {
    let Direct {
        account,
        host,
        port,
        user,
        password_note,
        ..
    } = d;
    let (kind, dialog) = match account.protocol {
        Protocol::Imap => ("IMAP Mail Server", "Account Settings > Server Settings"),
        Protocol::Pop3 => ("POP Mail Server", "Account Settings > Server Settings"),
        Protocol::Smtp => ("SMTP", "Account Settings > Outgoing Server (SMTP) > Edit"),
    };
    writeln!(s, "# In {dialog}:").unwrap();
    writeln!(s, "Server type:           {kind}").unwrap();
    writeln!(s, "Server name:           {host}").unwrap();
    writeln!(s, "Port:                  {port}").unwrap();
    writeln!(s, "User name:             {user}").unwrap();
    writeln!(
        s,
        "Connection security:   None (the connection stays on this machine; mailtun does TLS)"
    )
    .unwrap();
    if account.serve.preauth {
        writeln!(
            s,
            "Authentication method: No authentication (listen_preauth: mailtun lets in only you)"
        )
        .unwrap();
    } else {
        writeln!(s, "Authentication method: Normal password").unwrap();
        writeln!(s, "Password:              {password_note}").unwrap();
    }
}

fn msmtp(d: &Direct, s: &mut String) -> Result<(), String> {
    d.smtp_only("sends mail (SMTP)")?;
    let Direct {
        account,
        host,
        port,
        user,
        from,
        ..
    } = d;
    let name = &account.name;
    writeln!(s, "# ~/.msmtprc (mode 0600)").unwrap();
    writeln!(s, "account {name}").unwrap();
    writeln!(s, "host {host}").unwrap();
    writeln!(s, "port {port}").unwrap();
    writeln!(s, "tls off").unwrap();
    if account.serve.preauth {
        writeln!(
            s,
            "# No login (listen_preauth): mailtun already authenticated upstream and lets in only you."
        )
        .unwrap();
        writeln!(s, "auth off").unwrap();
    } else {
        writeln!(
            s,
            "# The local login (the connection stays on this machine; mailtun does TLS upstream)."
        )
        .unwrap();
        writeln!(s, "auth plain").unwrap();
        writeln!(s, "user {user}").unwrap();
        match &account.serve.local_password {
            None => {
                writeln!(
                    s,
                    "# Any password: mailtun lets in only the local user running it."
                )
                .unwrap();
                writeln!(s, "password mailtun").unwrap();
            }
            Some(PasswordSource::Command(cmd)) => {
                writeln!(
                    s,
                    "# The account's `local_password`, read as mailtun reads it."
                )
                .unwrap();
                writeln!(s, "passwordeval {}", msmtp_quote(cmd)).unwrap();
            }
            Some(_) => {
                writeln!(
                    s,
                    "# password: the account's `local_password` (msmtp asks, or set password/passwordeval)"
                )
                .unwrap();
            }
        }
    }
    writeln!(s, "from {from}").unwrap();
    Ok(())
}

/// A double-quoted msmtprc argument.
fn msmtp_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn curl(d: &Direct, s: &mut String) {
    let Direct {
        account,
        host,
        port,
        socket,
        user,
        password_note,
        from,
        ..
    } = d;
    let pass = if account.serve.local_password.is_some() {
        "LOCAL-PASSWORD"
    } else {
        "mailtun"
    };
    let target = match socket {
        Some(p) => format!("--unix-socket {} ", sh_quote(&p.display().to_string())),
        None => String::new(),
    };
    let hostport = if socket.is_some() {
        "localhost".to_string()
    } else {
        format!("{host}:{port}")
    };
    let auth = format!("--user {} ", sh_quote(&format!("{user}:{pass}")));
    writeln!(s, "# Password: {password_note}.").unwrap();
    match account.protocol {
        Protocol::Imap => {
            writeln!(s, "# List the mailboxes; INBOX;UID=N fetches a message.").unwrap();
            writeln!(s, "curl {target}{auth}'imap://{hostport}/'").unwrap();
            writeln!(s, "curl {target}{auth}'imap://{hostport}/INBOX;UID=1'").unwrap();
        }
        Protocol::Pop3 => {
            writeln!(s, "# List the messages; /N retrieves message N.").unwrap();
            writeln!(s, "curl {target}{auth}'pop3://{hostport}/'").unwrap();
            writeln!(s, "curl {target}{auth}'pop3://{hostport}/1'").unwrap();
        }
        Protocol::Smtp => {
            writeln!(s, "# Send message.txt (headers, blank line, body).").unwrap();
            let auth = if account.serve.preauth {
                String::new()
            } else {
                auth
            };
            writeln!(
                s,
                "curl {target}{auth}'smtp://{hostport}' --mail-from {from} --mail-rcpt TO@EXAMPLE.ORG -T message.txt"
            )
            .unwrap();
        }
    }
}

fn git_send_email(d: &Direct, s: &mut String) -> Result<(), String> {
    d.smtp_only("sends mail (SMTP)")?;
    let Direct {
        account,
        host,
        port,
        user,
        ..
    } = d;
    writeln!(
        s,
        "# ~/.gitconfig (or: git config --global sendemail.KEY VALUE)"
    )
    .unwrap();
    writeln!(s, "[sendemail]").unwrap();
    writeln!(s, "\tsmtpServer = {host}").unwrap();
    writeln!(s, "\tsmtpServerPort = {port}").unwrap();
    if account.serve.preauth {
        writeln!(
            s,
            "\t# No smtpUser (listen_preauth): mailtun already authenticated upstream and lets in only you."
        )
        .unwrap();
        return Ok(());
    }
    writeln!(s, "\tsmtpUser = {user}").unwrap();
    writeln!(s, "\tsmtpAuth = PLAIN").unwrap();
    if account.serve.local_password.is_some() {
        writeln!(
            s,
            "\t# git asks for the password: the account's `local_password` (or set smtpPass)."
        )
        .unwrap();
    } else {
        writeln!(
            s,
            "\t# Any password: mailtun lets in only the local user running it."
        )
        .unwrap();
        writeln!(s, "\tsmtpPass = mailtun").unwrap();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn accounts() -> Config {
        Config::parse(
            Path::new("c.toml"),
            "[accounts.work]\nhost = \"mail.example.org\"\nuser = \"alice\"\n\
             [accounts.pop]\nprotocol = \"pop3\"\nhost = \"pop.example.org\"\nuser = \"alice\"\n\
             [accounts.out]\nprotocol = \"smtp\"\nhost = \"smtp.example.org\"\nuser = \"alice\"\n",
        )
        .unwrap()
    }

    fn inv(config: Option<&str>) -> Invocation {
        Invocation {
            exe: "/usr/bin/mailtun".into(),
            config: config.map(PathBuf::from),
        }
    }

    fn render_for(client: &str, account: &str, config: Option<&str>) -> Result<String, String> {
        let c = accounts();
        render(
            Client::parse(client).unwrap(),
            c.account(account).unwrap(),
            &inv(config),
            Some("me"),
        )
    }

    #[test]
    fn invocation_leaves_out_the_default_config_and_makes_paths_absolute() {
        let d = Path::new("/home/a/.config/mailtun/config.toml");
        let i = Invocation::new(Path::new("bin/mailtun"), d, Some(d), Path::new("/w"));
        assert_eq!(i.tunnel("work"), "/w/bin/mailtun tunnel work");
        let i = Invocation::new(
            Path::new("/b/mailtun"),
            Path::new("my conf.toml"),
            Some(d),
            Path::new("/w"),
        );
        assert_eq!(
            i.tunnel("work"),
            "/b/mailtun --config '/w/my conf.toml' tunnel work"
        );
    }

    #[test]
    fn mutt_imap() {
        let s = render_for("mutt", "work", Some("/etc/m.toml")).unwrap();
        assert!(
            s.contains("account-hook . 'unset tunnel'\naccount-hook '^imap://alice@mail\\.example\\.org([:/]|$)' 'set tunnel=\"/usr/bin/mailtun --config /etc/m.toml tunnel work\"'\n\
                folder-hook . 'unset tunnel'\nfolder-hook 'imap://alice@mail\\.example\\.org([:/]|$)' 'set tunnel=\"/usr/bin/mailtun --config /etc/m.toml tunnel work\"'\n"),
            "{s}"
        );
        assert!(
            s.contains("set folder=\"imap://alice@mail.example.org/\"\n"),
            "{s}"
        );
        assert!(s.contains("set spoolfile=\"+INBOX\"\n"), "{s}");
        assert!(s.contains("every connection"), "{s}");
    }

    #[test]
    fn mutt_pop3_and_smtp() {
        let s = render_for("neomutt", "pop", None).unwrap();
        assert!(
            s.contains("account-hook '^pop://alice@pop\\.example\\.org([:/]|$)' 'set tunnel=\"/usr/bin/mailtun tunnel pop\"'\n\
                folder-hook . 'unset tunnel'\nfolder-hook 'pop://alice@pop\\.example\\.org([:/]|$)' 'set tunnel=\"/usr/bin/mailtun tunnel pop\"'\n"),
            "{s}"
        );
        assert!(
            s.contains("set spoolfile=\"pop://alice@pop.example.org/\"\n"),
            "{s}"
        );
        assert!(s.contains("set pop_pass=\"unused\"\n"), "{s}");
        assert!(s.contains("never sent"), "{s}");
        let s = render_for("mutt", "out", None).unwrap();
        assert!(
            s.contains("set smtp_url=\"smtp://smtp.example.org/\"\n"),
            "{s}"
        );
        assert!(
            s.contains("account-hook '^smtp://smtp\\.example\\.org([:/]|$)' 'set tunnel=\"/usr/bin/mailtun tunnel out\"'\n"),
            "{s}"
        );
        assert!(!s.contains("folder-hook"), "{s}");
    }

    #[test]
    fn mutt_quoting() {
        let c = accounts();
        let i = Invocation {
            exe: "/o\"d$d/mailtun".into(),
            config: None,
        };
        let s = render(Client::Mutt, c.account("work").unwrap(), &i, None).unwrap();
        assert!(
            s.contains(r#"set tunnel="'/o\"d\$d/mailtun' tunnel work""#),
            "{s}"
        );
        assert!(!s.contains("account-hook"), "{s}");
    }

    #[test]
    fn alpine() {
        let s = render_for("alpine", "work", None).unwrap();
        assert!(
            s.contains("inbox-path={mail.example.org/user=alice}INBOX\n"),
            "{s}"
        );
        assert!(s.contains("ssh-path=/usr/bin/mailtun\n"), "{s}");
        assert!(!s.contains("ssh-command"), "{s}");
        let s = render_for("alpine", "work", Some("/etc/m.toml")).unwrap();
        assert!(
            s.contains("ssh-command=\"%s --config /etc/m.toml %s -l %s exec /etc/r%sd\"\n"),
            "{s}"
        );
        let e = render_for("alpine", "work", Some("/my dir/m.toml")).unwrap_err();
        assert!(e.contains("spaces"), "{e}");
        let e = render_for("alpine", "pop", None).unwrap_err();
        assert!(e.contains("IMAP"), "{e}");
    }

    #[test]
    fn mbsync_and_offlineimap() {
        let s = render_for("mbsync", "work", None).unwrap();
        assert!(
            s.contains("IMAPAccount work\nTunnel \"/usr/bin/mailtun tunnel work\"\n"),
            "{s}"
        );
        assert!(s.contains("IMAPStore work-remote\nAccount work\n"), "{s}");
        let s = render_for("offlineimap", "work", Some("/a%b/c.toml")).unwrap();
        assert!(s.contains("type = IMAP\n"), "{s}");
        assert!(
            s.contains("preauthtunnel = /usr/bin/mailtun --config /a%%b/c.toml tunnel work\n"),
            "{s}"
        );
        assert!(render_for("mbsync", "out", None).is_err());
    }

    #[test]
    fn fetchmail_imap_and_pop3() {
        let s = render_for("fetchmail", "work", None).unwrap();
        assert!(s.contains("poll mail.example.org via localhost no dns with proto IMAP plugin \"/usr/bin/mailtun tunnel work\" auth ssh\n"), "{s}");
        assert!(
            s.contains("  user \"alice\" there is \"me\" here sslproto \"\"\n"),
            "{s}"
        );
        let s = render_for("fetchmail", "pop", None).unwrap();
        assert!(s.contains("with proto POP3 plugin"), "{s}");
        assert!(render_for("fetchmail", "out", None).is_err());
    }
}

#[cfg(test)]
mod direct_tests {
    use super::*;
    use crate::config::Config;

    fn render_direct(client: &str, toml: &str) -> Result<String, String> {
        let c = Config::parse(Path::new("c.toml"), toml).unwrap();
        let inv = Invocation {
            exe: "/usr/bin/mailtun".into(),
            config: None,
        };
        render(
            Client::parse(client).unwrap(),
            c.account("a").unwrap(),
            &inv,
            None,
        )
    }

    const IMAP: &str = "[accounts.a]\nhost = \"mail.example.org\"\nuser = \"alice\"\nlisten = \"127.0.0.1:1143\"\n";
    const SMTP: &str = "[accounts.a]\nprotocol = \"smtp\"\nhost = \"mail.example.org\"\nuser = \"alice@example.org\"\nlisten = \"[::1]:1587\"\n";

    #[test]
    fn thunderbird_gets_host_port_user_and_no_encryption() {
        let s = render_direct("thunderbird", IMAP).unwrap();
        assert!(s.contains("Server name:           127.0.0.1\n"), "{s}");
        assert!(s.contains("Port:                  1143\n"), "{s}");
        assert!(s.contains("User name:             alice\n"), "{s}");
        assert!(s.contains("Connection security:   None"), "{s}");
        assert!(s.contains("Authentication method: Normal password"), "{s}");
    }

    #[test]
    fn msmtp_and_git_send_email_for_an_smtp_listener() {
        let s = render_direct("msmtp", SMTP).unwrap();
        assert!(s.contains("host [::1]\nport 1587\ntls off\n"), "{s}");
        assert!(s.contains("\nauth plain\nuser alice@example.org\n"), "{s}");
        assert!(s.contains("\npassword mailtun\n"), "{s}");
        assert!(s.contains("from alice@example.org"), "{s}");
        let with_pw = format!("{SMTP}local_password = {{ command = \"pass show \\\"x\\\"\" }}\n");
        let s = render_direct("msmtp", &with_pw).unwrap();
        assert!(
            s.contains("\npasswordeval \"pass show \\\"x\\\"\"\n"),
            "{s}"
        );
        let s = render_direct("msmtp", &format!("{SMTP}listen_preauth = true\n")).unwrap();
        assert!(s.contains("\nauth off\n"), "{s}");
        let s = render_direct("git-send-email", SMTP).unwrap();
        assert!(
            s.contains("\tsmtpServer = [::1]\n\tsmtpServerPort = 1587\n\tsmtpUser = alice@example.org\n\tsmtpAuth = PLAIN\n"),
            "{s}"
        );
        assert!(s.contains("\tsmtpPass = mailtun\n"), "{s}");
        let s = render_direct("git-send-email", &with_pw).unwrap();
        assert!(!s.contains("smtpPass ="), "{s}");
        let s = render_direct("thunderbird", SMTP).unwrap();
        assert!(s.contains("Authentication method: Normal password"), "{s}");
        let e = render_direct("msmtp", IMAP).unwrap_err();
        assert!(e.contains("speaks imap"), "{e}");
    }

    #[test]
    fn curl_urls_and_unix_sockets() {
        let s = render_direct("curl", IMAP).unwrap();
        assert!(
            s.contains("curl --user alice:mailtun 'imap://127.0.0.1:1143/INBOX;UID=1'"),
            "{s}"
        );
        let unix = IMAP.replace("127.0.0.1:1143", "unix:/run/user/1/m.sock");
        let s = render_direct("curl", &unix).unwrap();
        assert!(
            s.contains(
                "curl --unix-socket /run/user/1/m.sock --user alice:mailtun 'imap://localhost/'"
            ),
            "{s}"
        );
        assert!(render_direct("thunderbird", &unix).is_err());
    }

    #[test]
    fn without_listen_the_direct_form_says_what_to_add() {
        let e = render_direct("thunderbird", "[accounts.a]\nhost = \"h\"\n").unwrap_err();
        assert!(
            e.contains("has no `listen`") && e.contains("mailtun serve"),
            "{e}"
        );
    }
}
