//! `mailtun accounts [--json]`: every account with its effective settings (defaults
//! filled in). Never a secret: a password source (`password`, `local_password`,
//! `oauth.client_secret`) is shown by its kind (a command's text is configuration and is
//! shown; it is never run for this), and OAuth tokens are not read at all.

use serde_json::{Value, json};

use crate::config::{Account, Config, KeyringStore, KinitCache, PasswordSource, Protocol};
use crate::oauth::{ClientSecretSource, Endpoints, Given, OAuthSettings};
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

fn store(store: KeyringStore) -> &'static str {
    match store {
        KeyringStore::Keyutils => "keyutils",
        KeyringStore::SecretService => "secret-service",
    }
}

fn password(source: &PasswordSource) -> Value {
    match source {
        PasswordSource::Prompt => json!({ "kind": "prompt" }),
        PasswordSource::Command(c) => json!({ "kind": "command", "command": c }),
        PasswordSource::Keyring(s) => json!({ "kind": "keyring", "store": store(*s) }),
    }
}

fn password_text(source: &PasswordSource) -> String {
    match source {
        PasswordSource::Prompt => "prompt on the terminal (when a mechanism needs one)".into(),
        PasswordSource::Command(c) => format!("command `{c}`"),
        PasswordSource::Keyring(s) => format!("keyring ({})", store(*s)),
    }
}

fn kinit_cache(k: KinitCache) -> &'static str {
    match k {
        KinitCache::Memory => "memory",
        KinitCache::Account => "account",
    }
}

/// `mailtun serve`'s settings of the account (`listen_preauth` and `local_password` only
/// mean something for IMAP: config refuses `local_password` elsewhere).
fn serve_json(a: &Account) -> Value {
    json!({
        "listen": a.serve.listen.as_ref().map(|l| l.to_string()),
        "listen_preauth": a.serve.preauth,
        "max_connections": a.serve.max_connections,
        "drain_secs": a.serve.drain.as_secs(),
        "local_password": a.serve.local_password.as_ref().map(password),
    })
}

fn serve_text(a: &Account) -> String {
    let listen = match &a.serve.listen {
        Some(l) => l.to_string(),
        None => "(none: served only from a systemd socket named for the account)".into(),
    };
    let mut parts = vec![format!("listen {listen}")];
    if a.protocol == Protocol::Imap {
        parts.push(format!(
            "listen_preauth {}",
            if a.serve.preauth { "yes" } else { "no" }
        ));
    }
    parts.push(format!("max_connections {}", a.serve.max_connections));
    parts.push(format!("drain_secs {}", a.serve.drain.as_secs()));
    if a.protocol == Protocol::Imap && !a.serve.preauth {
        parts.push(format!(
            "local_password {}",
            match &a.serve.local_password {
                Some(p) => password_text(p),
                None => "(none: any password; only your uid gets in)".into(),
            }
        ));
    }
    parts.join(", ")
}

/// The endpoints named in the file (or filled by the provider preset), in the order of
/// the config keys.
fn given_pairs(g: &Given) -> [(&'static str, &Option<String>); 4] {
    [
        ("authorization_endpoint", &g.authorization),
        ("token_endpoint", &g.token),
        ("device_authorization_endpoint", &g.device_authorization),
        ("revocation_endpoint", &g.revocation),
    ]
}

fn client_secret_json(o: &OAuthSettings) -> Value {
    match &o.client_secret {
        None => Value::Null,
        Some(ClientSecretSource::Command(c)) => json!({ "kind": "command", "command": c }),
        Some(ClientSecretSource::Keyring) => json!({
            "kind": "keyring",
            "store": store(o.keyring),
            "service": crate::oauth::CLIENT_SECRET_SERVICE,
        }),
    }
}

/// `[oauth]` as JSON: where endpoints come from, the client, where its secret comes from;
/// never a secret or a token (the keyring is not opened).
fn oauth_json(o: &OAuthSettings) -> Value {
    let (issuer, given) = match &o.endpoints {
        Endpoints::Discover { issuer, given } => (Some(issuer), given),
        Endpoints::Given(g) => (None, g),
    };
    let endpoints: serde_json::Map<String, Value> = given_pairs(given)
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "provider": o.provider.map(|p| p.as_str()),
        "issuer": issuer,
        "endpoints": endpoints,
        "client_id": o.client_id,
        "client_secret": client_secret_json(o),
        "scope": o.scopes.join(" "),
        "flow": o.flow.map(|f| f.as_str()),
        "ca_file": o.ca_file.as_ref().map(|p| p.display().to_string()),
        "token_store": store(o.keyring),
    })
}

fn oauth_text(o: &OAuthSettings) -> String {
    let mut parts = Vec::new();
    let given = match &o.endpoints {
        Endpoints::Discover { issuer, given } => {
            parts.push(format!("issuer {issuer} (endpoints discovered)"));
            given
        }
        Endpoints::Given(g) => g,
    };
    let preset = o.provider.map(|p| {
        parts.push(format!(
            "provider {} (endpoints and scope preset)",
            p.as_str()
        ));
        p.endpoints()
    });
    // An endpoint the user wrote: one the preset does not fill, or fills otherwise.
    let preset_pairs = preset.as_ref().map(given_pairs);
    for (i, (name, value)) in given_pairs(given).into_iter().enumerate() {
        let from_preset = preset_pairs.as_ref().is_some_and(|p| p[i].1 == value);
        if let (Some(url), false) = (value, from_preset) {
            parts.push(format!("{name} {url}"));
        }
    }
    parts.push(format!("client_id {}", o.client_id));
    parts.push(format!(
        "client_secret {}",
        match &o.client_secret {
            None => "(none: public client)".to_string(),
            Some(ClientSecretSource::Command(c)) => format!("command `{c}`"),
            Some(ClientSecretSource::Keyring) => format!(
                "keyring ({}, service {})",
                store(o.keyring),
                crate::oauth::CLIENT_SECRET_SERVICE
            ),
        }
    ));
    parts.push(format!(
        "scope {}",
        if o.scopes.is_empty() {
            "(none asked)".to_string()
        } else {
            format!("`{}`", o.scopes.join(" "))
        }
    ));
    parts.push(format!(
        "flow {}",
        match o.flow {
            Some(f) => f.as_str(),
            None => "(device when the provider has the endpoint, else browser)",
        }
    ));
    if let Some(ca) = &o.ca_file {
        parts.push(format!("ca_file {}", ca.display()));
    }
    parts.push(format!("tokens in keyring ({})", store(o.keyring)));
    parts.join(", ")
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
            "kinit_cache": kinit_cache(a.gssapi.kinit_cache),
            "canonicalize": a.gssapi.canonicalize,
        },
        "oauth": a.oauth.as_ref().map(oauth_json),
        "serve": serve_json(a),
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
            ("password", password_text(&a.password)),
            (
                "gssapi",
                format!(
                    "target {}, principal {}, ccache {}, delegate {}, kinit {}, kinit_cache {}, canonicalize {}",
                    gss_target(a),
                    a.gssapi.principal.as_deref().unwrap_or("(default)"),
                    a.gssapi.ccache.as_deref().unwrap_or("(default)"),
                    if a.gssapi.delegate { "yes" } else { "no" },
                    if a.gssapi.kinit { "yes" } else { "no" },
                    kinit_cache(a.gssapi.kinit_cache),
                    if a.gssapi.canonicalize { "yes" } else { "no" },
                ),
            ),
            ("timeout", format!("{} s", a.timeout.as_secs())),
            ("serve", serve_text(a)),
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
        if let Some(o) = &a.oauth {
            lines.push(("oauth", oauth_text(o)));
        }
        if let Some((c, k)) = &a.client_cert {
            lines.push((
                "client_cert",
                format!("{} (key {})", c.display(), k.display()),
            ));
        }
        if a.protocol == Protocol::Smtp {
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

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("/c.toml"), text).unwrap()
    }

    fn account(v: &Value, name: &str) -> Value {
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()
            .clone()
    }

    #[test]
    fn serve_keys_are_listed_with_their_defaults_and_the_local_password_source() {
        let c = parse(
            "[accounts.plain]\nhost = \"h\"\n\
             [accounts.served]\nhost = \"h\"\nlisten = \"127.0.0.1:1143\"\nmax_connections = 3\ndrain_secs = 2\nlocal_password = { command = \"pass show local\" }\n\
             [accounts.pre]\nhost = \"h\"\nlisten = \"unix:/run/user/1/m.sock\"\nlisten_preauth = true\n\
             [accounts.k]\nhost = \"h\"\nlisten = \"[::1]:1143\"\nlocal_password = { keyring = true }\n\
             [accounts.pop]\nprotocol = \"pop3\"\nhost = \"h\"\nlisten = \"127.0.0.1:1110\"\n",
        );
        let v = json(&c);
        assert_eq!(
            account(&v, "plain")["serve"],
            json!({ "listen": null, "listen_preauth": false, "max_connections": 16,
                    "drain_secs": 10, "local_password": null })
        );
        assert_eq!(
            account(&v, "served")["serve"],
            json!({ "listen": "127.0.0.1:1143", "listen_preauth": false, "max_connections": 3,
                    "drain_secs": 2, "local_password": { "kind": "command", "command": "pass show local" } })
        );
        assert_eq!(
            account(&v, "pre")["serve"]["listen"],
            "unix:/run/user/1/m.sock"
        );
        assert_eq!(account(&v, "pre")["serve"]["listen_preauth"], true);
        assert_eq!(
            account(&v, "k")["serve"]["local_password"],
            json!({ "kind": "keyring", "store": "keyutils" })
        );
        let t = text(&c);
        assert!(
            t.contains("[served]\n") && t.contains("  serve           listen 127.0.0.1:1143, listen_preauth no, max_connections 3, drain_secs 2, local_password command `pass show local`\n"),
            "{t}"
        );
        assert!(
            t.contains("  serve           listen (none: served only from a systemd socket named for the account), listen_preauth no, max_connections 16, drain_secs 10, local_password (none: any password; only your uid gets in)\n"),
            "{t}"
        );
        // PREAUTH asks for no login, so no local password is shown.
        assert!(
            t.contains("  serve           listen unix:/run/user/1/m.sock, listen_preauth yes, max_connections 16, drain_secs 10\n"),
            "{t}"
        );
        assert!(t.contains("local_password keyring (keyutils)\n"), "{t}");
        // POP3 and SMTP have no local login of mailtun's.
        assert!(
            t.contains(
                "  serve           listen 127.0.0.1:1110, max_connections 16, drain_secs 10\n"
            ),
            "{t}"
        );
    }

    #[test]
    fn kinit_cache_is_listed_next_to_the_other_gssapi_keys() {
        let c = parse(
            "[accounts.m]\nhost = \"h\"\n\
             [accounts.a]\nhost = \"h\"\n[accounts.a.gssapi]\nkinit = true\nkinit_cache = \"account\"\nccache = \"FILE:/x\"\n",
        );
        let v = json(&c);
        assert_eq!(account(&v, "m")["gssapi"]["kinit_cache"], "memory");
        assert_eq!(account(&v, "a")["gssapi"]["kinit_cache"], "account");
        let t = text(&c);
        assert!(
            t.contains("kinit no, kinit_cache memory, canonicalize no"),
            "{t}"
        );
        assert!(
            t.contains("kinit yes, kinit_cache account, canonicalize no"),
            "{t}"
        );
    }

    #[test]
    fn the_oauth_block_shows_where_things_come_from_never_a_secret() {
        let c = parse(
            "[accounts.d]\nhost = \"h\"\nauth = [\"oauthbearer\"]\n[accounts.d.oauth]\nissuer = \"https://idp.example\"\nclient_id = \"mailtun\"\nscope = \"mail offline_access\"\nca_file = \"/etc/idp-ca.pem\"\n\
             [accounts.e]\nhost = \"h\"\nkeyring_store = \"secret-service\"\n[accounts.e.oauth]\ntoken_endpoint = \"https://idp/token\"\nauthorization_endpoint = \"https://idp/auth\"\nclient_id = \"c2\"\nclient_secret = { command = \"pass show client\" }\nflow = \"browser\"\n\
             [accounts.m]\nhost = \"h\"\n[accounts.m.oauth]\nprovider = \"microsoft\"\nclient_id = \"0000-1111\"\nclient_secret = { keyring = true }\n\
             [accounts.g]\nhost = \"h\"\n[accounts.g.oauth]\nprovider = \"google\"\nclient_id = \"x.apps\"\nrevocation_endpoint = \"https://mine.example/revoke\"\n\
             [accounts.none]\nhost = \"h\"\n",
        );
        let v = json(&c);
        assert_eq!(account(&v, "none")["oauth"], Value::Null);
        assert_eq!(
            account(&v, "d")["oauth"],
            json!({
                "provider": null,
                "issuer": "https://idp.example",
                "endpoints": { "authorization_endpoint": null, "token_endpoint": null,
                               "device_authorization_endpoint": null, "revocation_endpoint": null },
                "client_id": "mailtun",
                "client_secret": null,
                "scope": "mail offline_access",
                "flow": null,
                "ca_file": "/etc/idp-ca.pem",
                "token_store": "keyutils",
            })
        );
        let e = account(&v, "e")["oauth"].clone();
        assert_eq!(e["endpoints"]["token_endpoint"], "https://idp/token");
        assert_eq!(e["endpoints"]["authorization_endpoint"], "https://idp/auth");
        assert_eq!(
            e["client_secret"],
            json!({ "kind": "command", "command": "pass show client" })
        );
        assert_eq!(e["flow"], "browser");
        assert_eq!(e["token_store"], "secret-service");
        let m = account(&v, "m")["oauth"].clone();
        assert_eq!(m["provider"], "microsoft");
        assert_eq!(
            m["client_secret"],
            json!({ "kind": "keyring", "store": "keyutils", "service": "mailtun-oauth-client" })
        );
        assert!(
            m["scope"]
                .as_str()
                .unwrap()
                .contains("IMAP.AccessAsUser.All")
        );

        let t = text(&c);
        assert!(
            t.contains("  oauth           issuer https://idp.example (endpoints discovered), client_id mailtun, client_secret (none: public client), scope `mail offline_access`, flow (device when the provider has the endpoint, else browser), ca_file /etc/idp-ca.pem, tokens in keyring (keyutils)\n"),
            "{t}"
        );
        assert!(
            t.contains("  oauth           authorization_endpoint https://idp/auth, token_endpoint https://idp/token, client_id c2, client_secret command `pass show client`, scope (none asked), flow browser, tokens in keyring (secret-service)\n"),
            "{t}"
        );
        // A preset's endpoints are not repeated; only the one the user wrote is shown.
        assert!(
            t.contains("  oauth           provider microsoft (endpoints and scope preset), client_id 0000-1111, client_secret keyring (keyutils, service mailtun-oauth-client), scope `https://outlook.office.com/IMAP.AccessAsUser.All"),
            "{t}"
        );
        assert!(
            t.contains("  oauth           provider google (endpoints and scope preset), revocation_endpoint https://mine.example/revoke, client_id x.apps,"),
            "{t}"
        );
        assert!(!t.contains("oauth2.googleapis.com"), "{t}");
    }
}
