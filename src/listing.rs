//! `mailtun accounts [--json]`: every account with its effective settings (defaults
//! filled in). Never a secret: a password source is shown by its kind (a password
//! command's text is configuration and is shown; its output is never run for this).

use serde_json::{Value, json};

use crate::config::{Account, Config, KeyringStore, PasswordSource};
use crate::policy::LinkTrust;

/// The Kerberos service asked for: the principal `service/host` as configured (lower
/// case), or the host-based name that the library canonicalizes (`gssapi.canonicalize`).
fn gss_target(a: &Account) -> String {
    if a.gssapi.canonicalize {
        format!(
            "{}@{} (host-based, canonicalized by the Kerberos library)",
            a.gssapi.service, a.host
        )
    } else {
        format!("{}/{}", a.gssapi.service, a.host.to_ascii_lowercase())
    }
}

fn password(source: &PasswordSource) -> Value {
    match source {
        PasswordSource::Prompt => json!({ "kind": "prompt" }),
        PasswordSource::Command(c) => json!({ "kind": "command", "command": c }),
        PasswordSource::Keyring(store) => json!({
            "kind": "keyring",
            "store": match store {
                KeyringStore::Keyutils => "keyutils",
                KeyringStore::SecretService => "secret-service",
            },
        }),
    }
}

fn hex_pin(pin: &[u8; 32]) -> String {
    pin.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What a TLS link of this account is worth (`verified TLS` or `unverified TLS`).
fn tls_trust(a: &Account) -> LinkTrust {
    LinkTrust::of_tls(a.dangerous.accept_invalid_certs, a.pin_sha256.is_some())
}

/// One account as JSON.
pub fn account_json(a: &Account) -> Value {
    json!({
        "name": a.name,
        "protocol": a.protocol.to_string(),
        "host": a.host,
        "connect": a.connect,
        "plain_port": a.plain_port,
        "tls_port": a.tls_port,
        "tls": a.tls.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "ca_file": a.ca_file.as_ref().map(|p| p.display().to_string()),
        "pin_sha256": a.pin_sha256.as_ref().map(hex_pin),
        "user": a.user,
        "auth": a.auth.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "min_protection": a.min_protection.to_string(),
        "password": password(&a.password),
        "oauth_token_command": a.oauth_token_command,
        "client_cert": a.client_cert.as_ref().map(|(c, _)| c.display().to_string()),
        "client_key": a.client_cert.as_ref().map(|(_, k)| k.display().to_string()),
        "timeout_secs": a.timeout.as_secs(),
        "ehlo_name": a.ehlo_name,
        "gssapi": {
            "service": a.gssapi.service,
            "target": gss_target(a),
            "principal": a.gssapi.principal,
            "ccache": a.gssapi.ccache,
            "delegate": a.gssapi.delegate,
            "kinit": a.gssapi.kinit,
            "canonicalize": a.gssapi.canonicalize,
        },
        "accept_invalid_certs": a.dangerous.accept_invalid_certs,
        "tls_trust": tls_trust(a).to_string(),
    })
}

/// The whole configuration as JSON: `{"file": ..., "accounts": [...]}`.
pub fn json(config: &Config) -> Value {
    json!({
        "file": config.file.display().to_string(),
        "accounts": config.accounts.values().map(account_json).collect::<Vec<_>>(),
    })
}

/// The human-readable listing.
pub fn text(config: &Config) -> String {
    let mut out = format!("# {}\n", config.file.display());
    if config.accounts.is_empty() {
        out.push_str("(no accounts)\n");
    }
    for a in config.accounts.values() {
        let join = |v: Vec<String>| v.join(", ");
        let mut lines = vec![
            ("protocol", a.protocol.to_string()),
            ("host", a.host.clone()),
            (
                "connect",
                format!(
                    "{} (plain port {}, TLS port {})",
                    a.connect, a.plain_port, a.tls_port
                ),
            ),
            ("tls", join(a.tls.iter().map(|m| m.to_string()).collect())),
            (
                "user",
                if a.user.is_empty() {
                    "(none)".into()
                } else {
                    a.user.clone()
                },
            ),
            (
                "auth",
                join(a.auth.iter().map(|m| m.as_str().to_string()).collect()),
            ),
            ("min_protection", a.min_protection.to_string()),
            (
                "password",
                match &a.password {
                    PasswordSource::Prompt => {
                        "prompt on the terminal (when a mechanism needs one)".into()
                    }
                    PasswordSource::Command(c) => format!("command `{c}`"),
                    PasswordSource::Keyring(KeyringStore::Keyutils) => "keyring (keyutils)".into(),
                    PasswordSource::Keyring(KeyringStore::SecretService) => {
                        "keyring (secret-service)".into()
                    }
                },
            ),
            (
                "gssapi",
                format!(
                    "target {}, principal {}, ccache {}, delegate {}, kinit {}, canonicalize {}",
                    gss_target(a),
                    a.gssapi.principal.as_deref().unwrap_or("(default)"),
                    a.gssapi.ccache.as_deref().unwrap_or("(default)"),
                    if a.gssapi.delegate { "yes" } else { "no" },
                    if a.gssapi.kinit { "yes" } else { "no" },
                    if a.gssapi.canonicalize { "yes" } else { "no" },
                ),
            ),
            ("timeout", format!("{} s", a.timeout.as_secs())),
        ];
        if let Some(ca) = &a.ca_file {
            lines.push(("ca_file", ca.display().to_string()));
        }
        if let Some(pin) = &a.pin_sha256 {
            lines.push(("pin_sha256", hex_pin(pin)));
        }
        if let Some(c) = &a.oauth_token_command {
            lines.push(("oauth_token_command", format!("`{c}`")));
        }
        if let Some((c, k)) = &a.client_cert {
            lines.push((
                "client_cert",
                format!("{} (key {})", c.display(), k.display()),
            ));
        }
        if a.protocol == crate::config::Protocol::Smtp {
            lines.push(("ehlo_name", a.ehlo_name.clone()));
        }
        if a.dangerous.accept_invalid_certs {
            lines.push((
                "DANGEROUS",
                if a.pin_sha256.is_some() {
                    "accept_invalid_certs: chain, name and dates not checked; the certificate must match pin_sha256".into()
                } else {
                    "accept_invalid_certs without pin_sha256: unverified TLS; no password or token is sent, only SCRAM, GSSAPI or EXTERNAL can authenticate".into()
                },
            ));
        }
        out.push_str(&format!("\n[{}]\n", a.name));
        for (k, v) in lines {
            out.push_str(&format!("  {k:<15} {v}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        Config::parse(
            Path::new("/c.toml"),
            "[accounts.work]\nhost = \"mail.example.org\"\nuser = \"alice\"\n[accounts.work.gssapi]\nccache = \"FILE:/tmp/cc\"\n\
             [accounts.mail]\nprotocol = \"pop3\"\nhost = \"pop.example.net\"\nuser = \"bob\"\nauth = \"auto\"\npassword = { command = \"pass show mail/example\" }\n\
             [accounts.k]\nprotocol = \"smtp\"\nhost = \"s\"\npassword = { keyring = true }\nauth = [\"scram-sha-256\"]\nmin_protection = \"tls+strong\"\n",
        )
        .unwrap()
    }

    #[test]
    fn json_has_the_effective_settings_and_password_kinds() {
        let v = json(&config());
        assert_eq!(v["file"], "/c.toml");
        let accounts = v["accounts"].as_array().unwrap();
        let by = |n: &str| accounts.iter().find(|a| a["name"] == n).unwrap().clone();
        let work = by("work");
        assert_eq!(work["protocol"], "imap");
        assert_eq!(work["plain_port"], 143);
        assert_eq!(work["tls_port"], 993);
        assert_eq!(work["connect"], "mail.example.org");
        assert_eq!(work["tls"], json!(["starttls", "implicit"]));
        assert_eq!(work["auth"], json!(["GSSAPI"]));
        assert_eq!(work["min_protection"], "tls");
        assert_eq!(work["password"], json!({ "kind": "prompt" }));
        assert_eq!(work["gssapi"]["ccache"], "FILE:/tmp/cc");
        assert_eq!(work["gssapi"]["target"], "imap/mail.example.org");
        let mail = by("mail");
        assert_eq!(mail["plain_port"], 110);
        assert_eq!(
            mail["password"],
            json!({ "kind": "command", "command": "pass show mail/example" })
        );
        assert_eq!(mail["gssapi"]["service"], "pop");
        let k = by("k");
        assert_eq!(
            k["password"],
            json!({ "kind": "keyring", "store": "keyutils" })
        );
        assert_eq!(k["min_protection"], "tls+strong");
        assert_eq!(
            (k["plain_port"].clone(), k["tls_port"].clone()),
            (json!(587), json!(465))
        );
    }

    #[test]
    fn an_unpinned_accept_invalid_certs_is_named_unverified_tls() {
        let pin = "AB".repeat(32);
        let c = Config::parse(
            Path::new("/c.toml"),
            &format!(
                "[accounts.open]\nhost = \"h\"\nmin_protection = \"strong\"\n[accounts.open.dangerous]\naccept_invalid_certs = true\n\
                 [accounts.pinned]\nhost = \"h\"\npin_sha256 = \"{pin}\"\n[accounts.pinned.dangerous]\naccept_invalid_certs = true\n\
                 [accounts.plain]\nhost = \"h\"\n"
            ),
        )
        .unwrap();
        let v = json(&c);
        let trust = |n: &str| {
            v["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == n)
                .unwrap()["tls_trust"]
                .clone()
        };
        assert_eq!(trust("open"), "unverified TLS");
        assert_eq!(trust("pinned"), "verified TLS");
        assert_eq!(trust("plain"), "verified TLS");
        let t = text(&c);
        assert!(
            t.contains("accept_invalid_certs without pin_sha256: unverified TLS"),
            "{t}"
        );
        assert!(t.contains("the certificate must match pin_sha256"), "{t}");
    }

    #[test]
    fn text_lists_every_account() {
        let t = text(&config());
        assert!(t.contains("[work]\n  protocol        imap\n"), "{t}");
        assert!(
            t.contains("  password        command `pass show mail/example`\n"),
            "{t}"
        );
        assert!(t.contains("  password        keyring (keyutils)\n"), "{t}");
        assert!(t.contains("target imap/mail.example.org,"), "{t}");
        assert!(
            t.contains("mail.example.org (plain port 143, TLS port 993)"),
            "{t}"
        );
    }
}
