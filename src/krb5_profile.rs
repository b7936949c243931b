//! A reader of the few krb5.conf facts mailtun's messages and names need: a realm's KDCs
//! and the realm `[domain_realm]` maps a DNS name to. Pure text; no Kerberos library.
//!
//! The files are those the library reads: `KRB5_CONFIG` (colon-separated) or
//! `/etc/krb5.conf`. `include`/`includedir` are not followed: a fact that is not found
//! makes a message less specific, never a choice weaker.

use std::path::PathBuf;

/// The relations of a profile that matter here, in file order.
#[derive(Debug, Default)]
pub struct Profile {
    /// `(realm, kdc)` from `[realms] REALM = { kdc = ... }`.
    kdcs: Vec<(String, String)>,
    /// `(name, realm)` from `[domain_realm]`.
    domains: Vec<(String, String)>,
}

impl Profile {
    /// The profile of the files the Kerberos library reads (missing files are skipped).
    pub fn load() -> Self {
        let paths: Vec<PathBuf> = match std::env::var_os("KRB5_CONFIG") {
            Some(v) => std::env::split_paths(&v).collect(),
            None => vec![PathBuf::from("/etc/krb5.conf")],
        };
        let mut p = Profile::default();
        for path in paths {
            if let Ok(text) = std::fs::read_to_string(path) {
                p.add(&text);
            }
        }
        p
    }

    /// Adds the relations of one file's `text`.
    pub fn add(&mut self, text: &str) {
        let mut section = String::new();
        // The enclosing `tag = {` names, innermost last.
        let mut nest: Vec<String> = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
                nest.clear();
                continue;
            }
            if line.starts_with('}') {
                nest.pop();
                continue;
            }
            let Some((tag, value)) = line.split_once('=') else {
                continue;
            };
            let (tag, value) = (tag.trim(), value.trim());
            if value == "{" {
                nest.push(tag.to_string());
                continue;
            }
            let value = value.trim_end_matches('*').trim();
            match (section.as_str(), nest.as_slice()) {
                ("realms", [realm]) if tag == "kdc" => {
                    self.kdcs.push((realm.clone(), value.to_string()))
                }
                ("domain_realm", []) => self
                    .domains
                    .push((tag.to_ascii_lowercase(), value.to_string())),
                _ => {}
            }
        }
    }

    /// The `kdc` entries of `realm`, in order.
    pub fn kdcs(&self, realm: &str) -> Vec<&str> {
        self.kdcs
            .iter()
            .filter(|(r, _)| r == realm)
            .map(|(_, k)| k.as_str())
            .collect()
    }

    /// The realm `[domain_realm]` maps `name` to, looked up as the library does: the
    /// name itself, then `.parent` and `parent` for each parent domain.
    pub fn realm_of(&self, name: &str) -> Option<&str> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let lookup = |key: &str| {
            self.domains
                .iter()
                .find(|(n, _)| n == key)
                .map(|(_, r)| r.as_str())
        };
        if let Some(r) = lookup(&name) {
            return Some(r);
        }
        let mut rest = name.as_str();
        loop {
            if let Some(r) = lookup(&format!(".{rest}")) {
                return Some(r);
            }
            rest = rest.split_once('.')?.1;
            if let Some(r) = lookup(rest) {
                return Some(r);
            }
        }
    }
}

/// The service principal GSSAPI asks for `service` on `host`: `service/host@REALM`, the
/// realm `[domain_realm]` maps `host` to, or `service/host@` when it maps none (the
/// library then asks the client's KDC, whose referral names the realm).
pub fn service_principal(service: &str, host: &str) -> String {
    let realm = Profile::load()
        .realm_of(host)
        .map(str::to_string)
        .unwrap_or_default();
    format!("{service}/{host}@{realm}")
}

/// `principal` as a Kerberos enterprise name (RFC 6806) with the realm to send it to, when
/// it is a user principal name: `user@dns.domain` (a lowercase domain, where a realm would
/// be upper case) or `user@dns.domain@REALM`. The realm of a bare UPN is the one
/// `[domain_realm]` maps its domain to, else the domain in upper case (Active Directory's
/// convention). `None` for an ordinary principal (`user` or `user@REALM`).
pub fn enterprise_name(principal: &str, profile: &Profile) -> Option<String> {
    let (user, domain) = principal.split_once('@')?;
    if user.is_empty() || domain.is_empty() {
        return None;
    }
    if domain.contains('@') {
        return Some(principal.to_string());
    }
    if !domain.contains('.') || !domain.chars().any(|c| c.is_ascii_lowercase()) {
        return None;
    }
    let realm = profile
        .realm_of(domain)
        .map_or_else(|| domain.to_ascii_uppercase(), str::to_string);
    Some(format!("{user}@{domain}@{realm}"))
}

/// The principal a KDC most likely canonicalises the enterprise name `user@domain@REALM`
/// to: `user@REALM` (Active Directory's when the UPN's user part is the account name).
pub fn canonical_guess(enterprise: &str) -> Option<String> {
    let (user, rest) = enterprise.split_once('@')?;
    let (_, realm) = rest.rsplit_once('@')?;
    Some(format!("{user}@{realm}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "[libdefaults]\n  default_realm = EXAMPLE.TEST\n# c\n[realms]\n    EXAMPLE.TEST = {\n        kdc = 127.0.0.2:88\n        auth_to_local = RULE:[1:$1@$0](^.*$)s/@.*$//\n    }\n    AD.EXAMPLE = {\n        kdc = dc1.ad.example\n        kdc = 127.0.0.17:88\n    }\n\n[domain_realm]\n    .ad.example = AD.EXAMPLE\n    corp.example.org = CORP.EXAMPLE.ORG\n    mail.other.test = OTHER.TEST\n";

    fn profile() -> Profile {
        let mut p = Profile::default();
        p.add(CONF);
        p
    }

    #[test]
    fn kdcs_of_a_realm_in_order() {
        let p = profile();
        assert_eq!(p.kdcs("AD.EXAMPLE"), ["dc1.ad.example", "127.0.0.17:88"]);
        assert_eq!(p.kdcs("EXAMPLE.TEST"), ["127.0.0.2:88"]);
        assert!(p.kdcs("NOPE").is_empty());
    }

    #[test]
    fn domain_realm_lookup_follows_the_parent_domains() {
        let p = profile();
        assert_eq!(p.realm_of("mail.ad.example"), Some("AD.EXAMPLE"));
        assert_eq!(p.realm_of("ad.example"), Some("AD.EXAMPLE"));
        assert_eq!(p.realm_of("MAIL.OTHER.TEST"), Some("OTHER.TEST"));
        assert_eq!(p.realm_of("x.other.test"), None);
        assert_eq!(p.realm_of("a.corp.example.org"), Some("CORP.EXAMPLE.ORG"));
        assert_eq!(p.realm_of("example"), None);
    }

    #[test]
    fn user_principal_names_become_enterprise_names_with_their_realm() {
        let p = profile();
        let e = |s| enterprise_name(s, &p);
        assert_eq!(
            e("alice@ad.example").as_deref(),
            Some("alice@ad.example@AD.EXAMPLE")
        );
        assert_eq!(
            e("alice@corp.example.org").as_deref(),
            Some("alice@corp.example.org@CORP.EXAMPLE.ORG")
        );
        assert_eq!(
            e("alice@example.net").as_deref(),
            Some("alice@example.net@EXAMPLE.NET")
        );
        assert_eq!(
            e("alice@example.org@CORP.EXAMPLE.ORG").as_deref(),
            Some("alice@example.org@CORP.EXAMPLE.ORG")
        );
        assert_eq!(e("alice@AD.EXAMPLE"), None);
        assert_eq!(e("alice"), None);
        assert_eq!(e("alice@"), None);
        assert_eq!(e("host/mail@EXAMPLE.TEST"), None);
        assert_eq!(
            canonical_guess("alice@ad.example@AD.EXAMPLE").as_deref(),
            Some("alice@AD.EXAMPLE")
        );
        assert_eq!(canonical_guess("alice@AD.EXAMPLE"), None);
    }
}
