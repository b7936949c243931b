//! The Kerberos target is the configured host name: a hosts file (nss_wrapper) makes the
//! configured name an alias of the harness's mail host, which has keys in the realm,
//! under a krb5.conf that lets the library canonicalize through DNS
//! (`dns_canonicalize_hostname = true`, `rdns = true`). mailtun still asks for
//! `service/CONFIGURED@REALM` (which has no key: it fails closed), unless the account
//! sets `gssapi.canonicalize = true`.

use std::path::{Path, PathBuf};

use crate::EXIT_AUTH;
use crate::harness::{Output, harness, mailtun_command, replace_in_file, run_command};

/// A name with no principal in the realm; the hosts file makes it an alias of MAIL_HOST.
const ALIAS: &str = "alias.example.test";

/// The harness's krb5.conf with DNS canonicalization and reverse DNS turned on.
fn krb5_conf_with_dns_canonicalization(dir: &Path) -> PathBuf {
    let path = dir.join("krb5.conf");
    std::fs::copy(harness().get("KRB5_CONFIG"), &path).unwrap();
    replace_in_file(
        &path,
        "dns_canonicalize_hostname = false",
        "dns_canonicalize_hostname = true",
    );
    replace_in_file(&path, "rdns = false", "rdns = true");
    path
}

/// An account for `protocol` whose `host` is [`ALIAS`] (dialled at the harness's address;
/// the certificate names MAIL_HOST only, so it is not verified: this is about Kerberos).
fn alias_account(dir: &Path, protocol: &str, gssapi: &str) -> PathBuf {
    let h = harness();
    let config = h.config(
        dir,
        &format!(
            "protocol = \"{protocol}\"\nmin_protection = \"strong\"\n[accounts.test.dangerous]\naccept_invalid_certs = true"
        ),
        gssapi,
    );
    replace_in_file(
        &config,
        &format!("host = \"{}\"", h.get("MAIL_HOST")),
        &format!("host = \"{ALIAS}\""),
    );
    config
}

/// `mailtun -v check test` with the DNS-canonicalizing krb5.conf and a hosts file in which
/// [`ALIAS`] is an alias of MAIL_HOST at the harness's address.
fn check_through_alias(dir: &Path, config: &Path) -> Output {
    let h = harness();
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        format!("{} {} {ALIAS}\n", h.get("MAIL_ADDR"), h.get("MAIL_HOST")),
    )
    .unwrap();
    let krb5 = krb5_conf_with_dns_canonicalization(dir);
    let mut command =
        mailtun_command(&["-v", "--config", config.to_str().unwrap(), "check", "test"]);
    command
        .env("KRB5_CONFIG", krb5)
        .env("LD_PRELOAD", "libnss_wrapper.so")
        .env("NSS_WRAPPER_HOSTS", hosts);
    run_command(command, b"")
}

#[test]
fn the_kerberos_target_is_the_configured_name_even_when_dns_makes_it_an_alias() {
    for (protocol, service) in [("imap", "imap"), ("pop3", "pop"), ("smtp", "smtp")] {
        let dir = tempfile::tempdir().unwrap();
        let config = alias_account(dir.path(), protocol, "");
        let out = check_through_alias(dir.path(), &config);
        let asked = format!("{service}/{ALIAS}@EXAMPLE.TEST");
        assert_eq!(out.code, Some(EXIT_AUTH), "{protocol}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "the KDC does not know the service principal {asked}"
            )),
            "{protocol}: {}",
            out.stderr
        );
        assert!(
            out.stderr.lines().any(|l| l.contains("INFO")
                && l.contains(&format!("Kerberos service principal {asked}"))),
            "{protocol}: -v does not show the principal asked for: {}",
            out.stderr
        );
        assert!(
            !out.stderr
                .contains(&format!("{service}/{}", harness().get("MAIL_HOST"))),
            "{protocol}: {}",
            out.stderr
        );
    }
}

#[test]
fn gssapi_canonicalize_lets_the_library_follow_dns_to_the_host_with_the_key() {
    for protocol in ["imap", "pop3", "smtp"] {
        let dir = tempfile::tempdir().unwrap();
        let config = alias_account(dir.path(), protocol, "canonicalize = true");
        let out = check_through_alias(dir.path(), &config);
        assert_eq!(out.code, Some(0), "{protocol}: {}", out.stderr);
        assert!(
            out.stderr.contains("gssapi.canonicalize"),
            "{protocol}: -v does not say the library canonicalizes: {}",
            out.stderr
        );
    }
}

/// Without a `[domain_realm]` entry for the host, the name has MIT's referral realm: the
/// client's KDC answers for its own service (a fresh ticket, from `gssapi.kinit`, so the
/// request really goes to the KDC).
#[test]
fn without_a_domain_realm_entry_the_realm_comes_from_the_kdc() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let password = h.password_command(dir.path());
    let config = h.config(
        dir.path(),
        &password,
        "kinit = true\nprincipal = \"alice@EXAMPLE.TEST\"",
    );
    replace_in_file(
        &config,
        h.get("ALICE_CCACHE"),
        &format!("FILE:{}/no-such-cache", dir.path().display()),
    );
    let text = std::fs::read_to_string(h.get("KRB5_CONFIG")).unwrap();
    let (head, _) = text
        .split_once("[domain_realm]")
        .expect("the harness's krb5.conf has a [domain_realm] section");
    let krb5 = dir.path().join("krb5.conf");
    std::fs::write(&krb5, head).unwrap();
    let mut command =
        mailtun_command(&["-v", "--config", config.to_str().unwrap(), "check", "test"]);
    command.env("KRB5_CONFIG", &krb5);
    let out = run_command(command, b"");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let asked = format!("Kerberos service principal imap/{}@ (", h.get("MAIL_HOST"));
    assert!(
        out.stderr.contains(&asked) && out.stderr.contains("the KDC's referral"),
        "-v does not show the referral-realm principal: {}",
        out.stderr
    );
}
