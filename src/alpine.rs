//! alpine/pine's way of starting a tunnel: with `ssh-path` (or `rsh-path`) set to
//! mailtun, alpine's c-client runs its `ssh-command`, by default `"%s %s -l %s exec
//! /etc/r%sd"`, that is `mailtun HOST -l USER exec /etc/rimapd`, and expects an IMAP
//! `* PREAUTH` greeting. c-client splits the command on spaces, so global options put in
//! `ssh-path` or `ssh-command` (`--config FILE`, `-v`, `--log FILE`) come first.
//!
//! Only IMAP is started this way: c-client's POP3 and SMTP drivers never use ssh/rsh.

use std::ffi::OsString;

use crate::config::{Account, Config, ConfigError, Protocol};

/// What alpine asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlpineCall {
    /// The global options before HOST, as given.
    pub options: Vec<OsString>,
    pub host: String,
    pub user: String,
}

/// The service names c-client puts in `/etc/r%sd`; only IMAP uses a tunnel.
const RIMAPD: &str = "/etc/rimapd";

/// Recognises `PROGRAM [OPTIONS] HOST -l USER exec /etc/rimapd`; `None` for anything
/// else (which then goes to the ordinary command line parser). `is_subcommand` tells
/// the names that start an ordinary command, which HOST may not be.
pub fn recognise(args: &[OsString], is_subcommand: impl Fn(&str) -> bool) -> Option<AlpineCall> {
    let args: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    let rest = args.get(1..)?;
    if rest.len() < 5 {
        return None;
    }
    let (options, tail) = rest.split_at(rest.len() - 5);
    let [host, dash_l, user, exec, daemon] = tail else {
        return None;
    };
    if *dash_l != "-l" || *exec != "exec" || *daemon != RIMAPD {
        return None;
    }
    if host.is_empty() || host.starts_with('-') || user.is_empty() || is_subcommand(host) {
        return None;
    }
    // Only the global options may come before HOST.
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            "--config" | "--log" if i + 1 < options.len() => i += 2,
            o if o.starts_with("--config=") || o.starts_with("--log=") => i += 1,
            "--verbose" => i += 1,
            o if o.len() > 1 && o.starts_with('-') && o[1..].bytes().all(|b| b == b'v') => i += 1,
            _ => return None,
        }
    }
    Some(AlpineCall {
        options: options.iter().map(OsString::from).collect(),
        host: host.to_string(),
        user: user.to_string(),
    })
}

fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Whether `account` is the one alpine means by `host` and `user`: an IMAP account whose
/// `host` (or `connect`, since c-client may pass the canonical name) is `host`, ignoring
/// case, and whose `user` is `user` (or, with no `user`, whose Kerberos principal's
/// first part is).
fn matches(account: &Account, host: &str, user: &str) -> bool {
    let user_matches = if account.user.is_empty() {
        account
            .gssapi
            .principal
            .as_deref()
            .and_then(|p| p.split('@').next())
            == Some(user)
    } else {
        account.user == user
    };
    account.protocol == Protocol::Imap
        && (same_host(&account.host, host) || same_host(&account.connect, host))
        && user_matches
}

/// The one account alpine means, or an error naming what was looked for and the
/// accounts that exist.
pub fn find_account<'c>(
    config: &'c Config,
    host: &str,
    user: &str,
) -> Result<&'c Account, ConfigError> {
    let found: Vec<&Account> = config
        .accounts
        .values()
        .filter(|a| matches(a, host, user))
        .collect();
    let describe = |a: &Account| {
        let who = if a.user.is_empty() {
            String::new()
        } else {
            format!("{}@", a.user)
        };
        format!("{} ({} {who}{})", a.name, a.protocol, a.host)
    };
    let message = match found.as_slice() {
        [one] => return Ok(one),
        [] if config.accounts.is_empty() => format!(
            "alpine asked for IMAP user `{user}` on host `{host}`, and the file defines no account"
        ),
        [] => format!(
            "alpine asked for IMAP user `{user}` on host `{host}`, and no IMAP account has that `host` (or `connect`) and `user`; the file defines: {}",
            config
                .accounts
                .values()
                .map(describe)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        many => format!(
            "alpine asked for IMAP user `{user}` on host `{host}`, and several accounts match: {}; give them different hosts or users",
            many.iter()
                .map(|a| describe(a))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(ConfigError {
        file: config.file.clone(),
        location: None,
        account: None,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn args(s: &str) -> Vec<OsString> {
        s.split(' ').map(OsString::from).collect()
    }

    fn sub(s: &str) -> bool {
        matches!(s, "tunnel" | "password" | "accounts" | "snippet")
    }

    #[test]
    fn recognises_alpines_default_ssh_command() {
        let call = recognise(
            &args("/usr/bin/mailtun mail.example.org -l alice exec /etc/rimapd"),
            sub,
        )
        .unwrap();
        assert_eq!(call.host, "mail.example.org");
        assert_eq!(call.user, "alice");
        assert!(call.options.is_empty());
    }

    #[test]
    fn global_options_may_come_first() {
        let call = recognise(
            &args("mailtun --config /x/c.toml -vv --log=/tmp/l h -l u exec /etc/rimapd"),
            sub,
        )
        .unwrap();
        assert_eq!(call.options, args("--config /x/c.toml -vv --log=/tmp/l"));
    }

    #[test]
    fn other_shapes_are_left_to_the_parser() {
        for a in [
            "mailtun tunnel work",
            "mailtun h -l u exec /etc/rpop3d",
            "mailtun h -l u exec /bin/sh",
            "mailtun h -x u exec /etc/rimapd",
            "mailtun --bogus h -l u exec /etc/rimapd",
            "mailtun --config h -l u exec /etc/rimapd",
            "mailtun tunnel -l u exec /etc/rimapd",
            "mailtun -l -l u exec /etc/rimapd",
            "mailtun h -l u exec",
        ] {
            assert_eq!(recognise(&args(a), sub), None, "{a}");
        }
    }

    fn config() -> Config {
        Config::parse(
            Path::new("c.toml"),
            "[accounts.work]\nhost = \"Mail.Example.org\"\nuser = \"alice\"\n\
             [accounts.pop]\nprotocol = \"pop3\"\nhost = \"mail.example.org\"\nuser = \"alice\"\n\
             [accounts.krb]\nhost = \"imap.example.net\"\nconnect = \"10.0.0.1\"\n[accounts.krb.gssapi]\nprincipal = \"bob@EXAMPLE.NET\"\n",
        )
        .unwrap()
    }

    #[test]
    fn finds_the_imap_account_by_host_ignoring_case_and_user() {
        let c = config();
        assert_eq!(
            find_account(&c, "mail.example.ORG", "alice").unwrap().name,
            "work"
        );
        assert_eq!(find_account(&c, "10.0.0.1", "bob").unwrap().name, "krb");
        assert_eq!(
            find_account(&c, "imap.example.net.", "bob").unwrap().name,
            "krb"
        );
    }

    #[test]
    fn no_match_names_what_was_looked_for_and_the_accounts() {
        let c = config();
        let e = find_account(&c, "mail.example.org", "carol")
            .unwrap_err()
            .to_string();
        assert!(e.contains("user `carol` on host `mail.example.org`"), "{e}");
        assert!(e.contains("work (imap alice@Mail.Example.org)"), "{e}");
        assert!(e.contains("pop (pop3 alice@mail.example.org)"), "{e}");
    }

    #[test]
    fn ambiguity_is_an_error() {
        let c = Config::parse(
            Path::new("c.toml"),
            "[accounts.a]\nhost = \"h\"\nuser = \"u\"\n[accounts.b]\nhost = \"H\"\nuser = \"u\"\n",
        )
        .unwrap();
        let e = find_account(&c, "h", "u").unwrap_err().to_string();
        assert!(
            e.contains("several accounts match: a (imap u@h), b (imap u@H)"),
            "{e}"
        );
    }
}
