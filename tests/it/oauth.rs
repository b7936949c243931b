//! Built-in OAuth 2.0 against a real authorization server (Authlib, docker/provision/idp.py)
//! and a Dovecot whose `passdb oauth2` checks every token by introspection at it: the
//! token travels IdP -> mailtun -> Dovecot -> IdP. Each test signs in a user of its own
//! (the IdP's counters and revocations are per user) inside its own session keyring
//! (`keyctl session -`). Sign-ins are approved headlessly: the device code by posting it
//! with the user's password to the verification page, the browser flow by a `$BROWSER`
//! script that submits the login form and follows the redirect.
//!
//! `MAILTUN_OAUTH_ENV` names a running realm's env file (`docker/provision/oauth.sh up`);
//! without it the first test starts one in /tmp/mailtun-it-oauth on 127.0.0.4.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::harness::{assert_contains, assert_lacks, mailtun_bin};

struct Realm {
    vars: HashMap<String, String>,
}

impl Realm {
    fn get(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("oauth env has no {key}"))
    }
}

fn realm() -> &'static Realm {
    static R: OnceLock<Realm> = OnceLock::new();
    R.get_or_init(|| {
        let env_file = match std::env::var_os("MAILTUN_OAUTH_ENV") {
            Some(p) => PathBuf::from(p),
            None => {
                let state = "/tmp/mailtun-it-oauth";
                let status = Command::new(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/provision/oauth.sh"),
                )
                .arg("up")
                .env("STATE", state)
                .env("OAUTH_ADDR", "127.0.0.4")
                .stdout(Stdio::null())
                .status()
                .expect("run docker/provision/oauth.sh (packages of scripts/install-deps)");
                assert!(status.success(), "oauth.sh up failed");
                PathBuf::from(state).join("env")
            }
        };
        let text = std::fs::read_to_string(&env_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", env_file.display()));
        Realm {
            vars: text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    })
}

/// A config with one IMAP account `name` for `user` on the OAuth Dovecot; `oauth` is the
/// body of its `[oauth]` table (`issuer` alone is discovery).
fn config(dir: &Path, name: &str, user: &str, auth: &str, oauth: &str) -> PathBuf {
    let r = realm();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[accounts.{name}]\nhost = \"{host}\"\nconnect = \"{addr}\"\nca_file = \"{ca}\"\nuser = \"{user}\"\nauth = {auth}\ntimeout_secs = 20\n[accounts.{name}.oauth]\nca_file = \"{ca}\"\nscope = \"mail offline_access\"\n{oauth}\n",
            host = r.get("MAIL_HOST"),
            addr = r.get("MAIL_ADDR"),
            ca = r.get("CA_FILE"),
        ),
    )
    .unwrap();
    path
}

fn issuer(client: &str) -> String {
    format!(
        "issuer = \"{}\"\nclient_id = \"{client}\"",
        realm().get("IDP_URL")
    )
}

/// Shell functions for the scripts: `login_device ACCOUNT USER` approves a device sign-in
/// by posting the printed code to the verification page; `tunnel ACCOUNT` runs a tunnel
/// that logs out; `idp PATH [curl args]` talks to the IdP's test hooks.
fn prelude(dir: &Path, config: &Path) -> String {
    let r = realm();
    format!(
        r#"set -u
M={bin}; C={config}; D={dir}; CA={ca}; IDP={idp}
login_device() {{
  "$M" --config "$C" oauth login "$1" --device 2> "$D/login-$1.err" & p=$!
  code=""
  for _ in $(seq 300); do
    code=$(sed -n 's/.*enter the code \([A-Z0-9-]*\).*/\1/p' "$D/login-$1.err")
    [ -n "$code" ] && break; sleep 0.1
  done
  curl -fsS --cacert "$CA" -d "user_code=$code" -d "username=$2" -d "password=$2-Pass.123" "$IDP/device" >/dev/null
  wait $p; rc=$?; cat "$D/login-$1.err" >&2; return $rc
}}
tunnel() {{ printf 'a LOGOUT\r\n' | "$M" --config "$C" tunnel "$1"; }}
idp() {{ p=$1; shift; curl -fsS --cacert "$CA" "$@" "$IDP$p"; echo; }}
"#,
        bin = mailtun_bin(),
        config = config.display(),
        dir = dir.display(),
        ca = r.get("CA_FILE"),
        idp = r.get("IDP_URL"),
    )
}

struct Out {
    code: Option<i32>,
    stdout_text: String,
    stderr: String,
}

/// Runs `script` (after the prelude) under a fresh session keyring.
fn in_keyring(dir: &Path, config: &Path, script: &str, extra_env: &[(&str, String)]) -> Out {
    let full = format!("{}{script}", prelude(dir, config));
    let mut cmd = Command::new("keyctl");
    cmd.args(["session", "-", "sh", "-c", &full])
        .env_remove("MAILTUN_CONFIG")
        .env_remove("BROWSER")
        .stdin(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("keyctl (package keyutils)");
    Out {
        code: out.status.code(),
        stdout_text: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn stats(out: &str, key: &str) -> Vec<u64> {
    // Each `idp /test/stats` line is a JSON object; collect KEY from each, in order.
    out.lines()
        .filter(|l| l.starts_with('{') && l.contains("\"grants\""))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v[key].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn oauth_device_login_fetches_20mb_through_dovecot_then_logout_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "dev",
        "alice",
        "[\"oauthbearer\"]",
        &issuer("mailtun"),
    );
    let out = in_keyring(
        dir.path(),
        &cfg,
        "idp /test/reset-user -d username=alice -d client_id=mailtun >/dev/null
login_device dev alice || exit 90
\"$M\" --config \"$C\" oauth status dev || exit 91
printf 'a SELECT INBOX\\r\\nb UID FETCH 4 (BODY.PEEK[])\\r\\nc LOGOUT\\r\\n' | \"$M\" --config \"$C\" tunnel dev > \"$D/fetch\" || exit 92
\"$M\" --config \"$C\" oauth logout dev || exit 93
idp '/test/stats?username=alice&client_id=mailtun'
\"$M\" --config \"$C\" oauth status dev
tunnel dev; echo \"after logout: $?\"
",
        &[],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    // The device flow printed the URI and the code, never a token.
    assert_contains(&out.stderr, "/device", "the device sign-in");
    assert_contains(&out.stderr, "enter the code", "the device sign-in");
    assert_contains(
        &out.stdout_text,
        "signed in; access token valid for",
        "stdout",
    );
    assert_contains(&out.stdout_text, "keyring: kernel keyutils", "stdout");
    let fetched = std::fs::read(dir.path().join("fetch")).unwrap();
    let big = std::fs::read(realm().get("BIG_MESSAGE")).unwrap();
    assert!(
        big.len() > 20_000_000,
        "the big message is {} bytes",
        big.len()
    );
    assert!(
        fetched.windows(big.len()).any(|w| w == big.as_slice()),
        "the 20 MB message did not come through the tunnel whole ({} bytes out)",
        fetched.len()
    );
    assert_contains(
        &out.stdout_text,
        "tokens revoked at the provider and deleted",
        "stdout",
    );
    assert_eq!(
        stats(&out.stdout_text, "grants"),
        [0],
        "logout must revoke the grant: {}",
        out.stdout_text
    );
    assert_contains(
        &out.stdout_text,
        "not signed in; run `mailtun oauth login dev`",
        "stdout",
    );
    assert_contains(&out.stdout_text, "after logout: 6", "stdout");
    assert_contains(&out.stdout_text, "* BYE", "stdout");
}

#[test]
fn oauth_browser_login_with_pkce_and_explicit_endpoints_then_xoauth2() {
    let r = realm();
    let dir = tempfile::tempdir().unwrap();
    let idp = r.get("IDP_URL");
    // No issuer: the endpoints as written.
    let cfg = config(
        dir.path(),
        "web",
        "carol",
        "[\"xoauth2\"]",
        &format!(
            "authorization_endpoint = \"{idp}/authorize\"\ntoken_endpoint = \"{idp}/token\"\nrevocation_endpoint = \"{idp}/revoke\"\nclient_id = \"mailtun\"\nflow = \"browser\""
        ),
    );
    // The "browser": GET the authorization page, POST the login form, follow the redirect
    // to mailtun's loopback listener.
    let browser = dir.path().join("browser");
    std::fs::write(
        &browser,
        format!(
            "#!/bin/sh\nexec curl -sS -L --cacert {ca} -d username=carol -d password=carol-Pass.123 \"$1\" > {d}/browser.out 2>&1\n",
            ca = r.get("CA_FILE"),
            d = dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = in_keyring(
        dir.path(),
        &cfg,
        "\"$M\" --config \"$C\" oauth login web || exit 90
tunnel web || exit 91
\"$M\" --config \"$C\" check web || exit 92
",
        &[("BROWSER", browser.display().to_string())],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    assert_contains(&out.stderr, "code_challenge_method=S256", "the sign-in URL");
    assert_contains(&out.stderr, "state=", "the sign-in URL");
    let said = std::fs::read_to_string(dir.path().join("browser.out")).unwrap();
    assert_contains(&said, "signed in; you may close this window", "the browser");
    assert_contains(&out.stdout_text, "authenticated with XOAUTH2", "stdout");
}

#[test]
fn a_short_token_is_refreshed_silently_and_the_rotated_refresh_token_kept() {
    // `mailtun-short` tokens live 30 s: below the 60 s margin, so every session refreshes.
    // The IdP rotates: each refresh revokes the refresh token it used. A mailtun that did
    // not store the rotated token would be refused (invalid_grant) at the second tunnel.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "short",
        "dave",
        "[\"oauthbearer\"]",
        &issuer("mailtun-short"),
    );
    let out = in_keyring(
        dir.path(),
        &cfg,
        "idp /test/reset-user -d username=dave >/dev/null
login_device short dave || exit 90
idp '/test/stats?username=dave'
tunnel short || exit 91
idp '/test/stats?username=dave'
tunnel short || exit 92
tunnel short || exit 93
idp '/test/stats?username=dave'
",
        &[],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    // tokens: 1 after login, +1 per tunnel; always exactly one live refresh token.
    assert_eq!(
        stats(&out.stdout_text, "tokens"),
        [1, 2, 4],
        "{}",
        out.stdout_text
    );
    assert_eq!(
        stats(&out.stdout_text, "grants"),
        [1, 1, 1],
        "{}",
        out.stdout_text
    );
}

#[test]
fn three_tunnels_refreshing_at_once_do_not_lose_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "many",
        "erin",
        "[\"oauthbearer\"]",
        &issuer("mailtun-short"),
    );
    let out = in_keyring(
        dir.path(),
        &cfg,
        "idp /test/reset-user -d username=erin >/dev/null
login_device many erin || exit 90
tunnel many > \"$D/t1\" 2>&1 & a=$!
tunnel many > \"$D/t2\" 2>&1 & b=$!
tunnel many > \"$D/t3\" 2>&1 & c=$!
wait $a; ra=$?; wait $b; rb=$?; wait $c; rc=$?
echo \"codes $ra $rb $rc\"
cat \"$D/t1\" \"$D/t2\" \"$D/t3\" >&2
tunnel many; echo \"then $?\"
idp '/test/stats?username=erin'
",
        &[],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    assert_contains(&out.stdout_text, "codes 0 0 0", "stdout");
    assert_contains(&out.stdout_text, "then 0", "stdout");
    assert_eq!(
        stats(&out.stdout_text, "grants"),
        [1],
        "{}",
        out.stdout_text
    );
}

#[test]
fn a_revoked_grant_ends_the_tunnel_with_exit_6_and_the_login_hint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "gone",
        "frank",
        "[\"oauthbearer\"]",
        &issuer("mailtun-short"),
    );
    let out = in_keyring(
        dir.path(),
        &cfg,
        "login_device gone frank || exit 90
idp /test/revoke-user -d username=frank >/dev/null
tunnel gone; echo \"tunnel $?\"
",
        &[],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    assert_contains(&out.stdout_text, "tunnel 6", "stdout");
    assert_contains(&out.stdout_text, "* BYE", "stdout");
    assert_contains(&out.stderr, "invalid_grant", "mailtun's stderr");
    assert_contains(
        &out.stderr,
        "sign in again with `mailtun oauth login gone`",
        "mailtun's stderr",
    );
}

#[test]
fn a_token_the_server_rejects_is_reported_with_the_servers_status() {
    // A long-lived token is revoked at the IdP: mailtun still holds it as valid, sends it,
    // and Dovecot (asking the IdP) refuses it with its OAUTHBEARER JSON error.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "stale",
        "grace",
        "[\"oauthbearer\"]",
        &issuer("mailtun"),
    );
    let out = in_keyring(
        dir.path(),
        &cfg,
        "login_device stale grace || exit 90
idp /test/revoke-user -d username=grace >/dev/null
tunnel stale; echo \"tunnel $?\"
",
        &[],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    assert_contains(&out.stdout_text, "tunnel 6", "stdout");
    // Dovecot 2.3 sends `{"status":"invalid_token"}` (no `scope`, though its passdb
    // requires `mail`); a server's `scope` is shown too (unit test in sasl/oauth.rs).
    assert_contains(
        &out.stderr,
        "refused the OAUTHBEARER token (status invalid_token)",
        "mailtun's stderr",
    );
}

#[test]
fn a_device_code_nobody_approves_gives_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "deny",
        "heidi",
        "[\"oauthbearer\"]",
        &issuer("mailtun"),
    );
    // Denied at the verification page (the code's expiry is the same path in the crate).
    let out = in_keyring(
        dir.path(),
        &cfg,
        "\"$M\" --config \"$C\" oauth login deny --device 2> \"$D/err\" & p=$!
for _ in $(seq 300); do code=$(sed -n 's/.*enter the code \\([A-Z0-9-]*\\).*/\\1/p' \"$D/err\"); [ -n \"$code\" ] && break; sleep 0.1; done
curl -fsS --cacert \"$CA\" -d \"user_code=$code\" -d username=heidi -d password=heidi-Pass.123 -d deny=1 \"$IDP/device\" >/dev/null
wait $p; echo \"login $?\"; cat \"$D/err\" >&2
\"$M\" --config \"$C\" oauth status deny
",
        &[],
    );
    assert_contains(&out.stdout_text, "login 6", "stdout");
    assert_contains(&out.stderr, "the sign-in was denied", "mailtun's stderr");
    assert_contains(&out.stdout_text, "not signed in", "stdout");
}

#[test]
fn a_device_code_that_expires_unapproved_gives_up_with_a_clear_message() {
    // `mailtun-brief` device codes expire after 2 s: mailtun stops polling then.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "late",
        "heidi",
        "[\"oauthbearer\"]",
        &issuer("mailtun-brief"),
    );
    let out = in_keyring(
        dir.path(),
        &cfg,
        "\"$M\" --config \"$C\" oauth login late --device; echo \"login $?\"\n",
        &[],
    );
    assert_contains(&out.stdout_text, "login 6", "stdout");
    assert_contains(
        &out.stderr,
        "the code expired after 2 s without approval; run `mailtun oauth login late` again",
        "mailtun's stderr",
    );
}

#[test]
fn a_device_login_told_to_slow_down_polls_5_s_less_often_and_still_signs_in() {
    // `mailtun-slow` plays a provider under load (RFC 8628 3.5): its codes advertise a 1 s
    // interval, but a poll within 3 s of the previous one, or within the interval plus 5 s
    // per `slow_down` already sent, is answered `slow_down`, approved or not. A client that
    // ignored it (or slowed down by less) would be told again and again and never get a
    // token; the `oauth2` crate adds 5 s per `slow_down`.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "slow",
        "heidi",
        "[\"oauthbearer\"]",
        &issuer("mailtun-slow"),
    );
    let out = in_keyring(
        dir.path(),
        &cfg,
        "\"$M\" --config \"$C\" oauth login slow --device 2> \"$D/err\" & p=$!
for _ in $(seq 300); do code=$(sed -n 's/.*enter the code \\([A-Z0-9-]*\\).*/\\1/p' \"$D/err\"); [ -n \"$code\" ] && break; sleep 0.1; done
# Approve only once the IdP has told mailtun to slow down.
for _ in $(seq 100); do idp \"/test/polls?user_code=$code\" | grep -q slow_down && break; sleep 0.1; done
curl -fsS --cacert \"$CA\" -d \"user_code=$code\" -d username=heidi -d password=heidi-Pass.123 \"$IDP/device\" >/dev/null
wait $p; echo \"login $?\"; cat \"$D/err\" >&2
idp \"/test/polls?user_code=$code\"
\"$M\" --config \"$C\" oauth status slow
",
        &[],
    );
    assert!(
        out.stdout_text.contains("login 0"),
        "{}\n{}",
        out.stdout_text,
        out.stderr
    );
    let polls: serde_json::Value = out
        .stdout_text
        .lines()
        .find(|l| l.starts_with("{\"polls\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("no poll log: {}", out.stdout_text));
    let polls = polls["polls"].as_array().unwrap();
    let outcomes: Vec<&str> = polls
        .iter()
        .map(|p| p["outcome"].as_str().unwrap())
        .collect();
    // Told once, then polled at the slower pace until the approval came through.
    assert_eq!(
        outcomes.iter().filter(|o| **o == "slow_down").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(outcomes.last(), Some(&"ok"), "{outcomes:?}");
    let after = outcomes.iter().position(|o| *o == "slow_down").unwrap() + 1;
    let gap = polls[after]["gap"].as_f64().unwrap();
    // The advertised 1 s plus 5 s (the IdP allows 0.25 s for the request's travel).
    assert!(gap >= 5.75, "polled again after {gap} s: {polls:?}");
    assert!(
        out.stdout_text.contains("account `slow`: signed in;"),
        "{}",
        out.stdout_text
    );
}

#[test]
fn a_browser_redirect_with_a_forged_state_is_refused() {
    let r = realm();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "csrf",
        "heidi",
        "[\"oauthbearer\"]",
        &issuer("mailtun"),
    );
    // Signs in for real, then delivers the code with another `state`.
    let browser = dir.path().join("browser");
    std::fs::write(
        &browser,
        format!(
            "#!/bin/sh\nloc=$(curl -sS --cacert {ca} -d username=heidi -d password=heidi-Pass.123 -o /dev/null -w '%{{redirect_url}}' \"$1\")\ncurl -sS \"$(printf '%s' \"$loc\" | sed 's/state=[^&]*/state=forged/')\" > {d}/browser.out 2>&1\n",
            ca = r.get("CA_FILE"),
            d = dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = in_keyring(
        dir.path(),
        &cfg,
        "\"$M\" --config \"$C\" oauth login csrf --browser; echo \"login $?\"
\"$M\" --config \"$C\" oauth status csrf
",
        &[("BROWSER", browser.display().to_string())],
    );
    assert_contains(&out.stdout_text, "login 6", "stdout");
    assert_contains(&out.stderr, "`state` does not match", "mailtun's stderr");
    assert_contains(&out.stdout_text, "not signed in", "stdout");
}

#[test]
fn a_confidential_client_sends_its_secret_from_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "conf",
        "heidi",
        "[\"oauthbearer\"]",
        &format!(
            "{}\nclient_secret = {{ command = \"echo client-Secret.789\" }}",
            issuer("mailtun-secret")
        ),
    );
    let out = in_keyring(
        dir.path(),
        &cfg,
        "login_device conf heidi || exit 90\n\"$M\" --config \"$C\" check conf || exit 91\n",
        &[],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    assert_contains(&out.stdout_text, "authenticated with OAUTHBEARER", "stdout");
    assert_lacks(&out.stderr, "client-Secret.789", "mailtun's stderr");
}

#[test]
fn a_client_secret_kept_in_the_keyring_is_stored_with_oauth_secret() {
    // `client_secret = { keyring = true }`: `mailtun oauth secret` stores it (from stdin,
    // never argv), `status` says whether it is there, `--delete` removes it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "ks",
        "heidi",
        "[\"oauthbearer\"]",
        &format!(
            "{}\nclient_secret = {{ keyring = true }}",
            issuer("mailtun-secret")
        ),
    );
    // A second account whose secret comes from a command: `oauth secret` refuses it.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[accounts.cmd]\nhost = \"h\"\n[accounts.cmd.oauth]\n{}\nclient_secret = {{ command = \"false\" }}\n",
        issuer("mailtun-secret")
    ));
    std::fs::write(&cfg, text).unwrap();
    let out = in_keyring(
        dir.path(),
        &cfg,
        "\"$M\" --config \"$C\" oauth status ks; echo \"status $?\"
\"$M\" --config \"$C\" oauth login ks --device; echo \"login without secret $?\"
printf 'wrong-Secret\\n' | \"$M\" --config \"$C\" oauth secret ks || exit 90
\"$M\" --config \"$C\" oauth login ks --device; echo \"login with a wrong secret $?\"
printf 'client-Secret.789\\n' | \"$M\" --config \"$C\" oauth secret ks || exit 91
\"$M\" --config \"$C\" oauth status ks || exit 92
login_device ks heidi || exit 93
\"$M\" --config \"$C\" check ks || exit 94
\"$M\" --config \"$C\" oauth secret ks --delete || exit 95
\"$M\" --config \"$C\" oauth status ks
\"$M\" --config \"$C\" oauth secret ks --delete; echo \"delete again $?\"
printf 'x\\n' | \"$M\" --config \"$C\" oauth secret cmd; echo \"command account $?\"
printf '' | \"$M\" --config \"$C\" oauth secret ks; echo \"empty $?\"
",
        &[],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    let o = &out.stdout_text;
    let e = &out.stderr;
    assert!(o.contains("status 0"), "{o}");
    assert!(
        o.contains("account `ks`: client secret not stored in the kernel keyutils keyring; run `mailtun oauth secret ks`"),
        "{o}"
    );
    assert!(o.contains("login without secret 6"), "{o}\n{e}");
    assert!(
        e.contains("holds no client secret (`client_secret = { keyring = true }`); store it with `mailtun oauth secret ks`"),
        "{e}"
    );
    // The provider refuses a wrong secret: the stored one is what is sent.
    assert!(o.contains("login with a wrong secret 6"), "{o}\n{e}");
    assert!(e.contains("invalid_client"), "{e}");
    assert!(
        o.contains("account `ks`: client secret stored in the kernel keyutils keyring"),
        "{o}"
    );
    assert!(o.contains("authenticated with OAUTHBEARER"), "{o}");
    assert!(
        o.contains("account `ks`: client secret deleted from the keyring"),
        "{o}"
    );
    assert!(o.contains("delete again 6"), "{o}");
    assert!(e.contains("holds no client secret to delete"), "{e}");
    assert!(o.contains("command account 3"), "{o}");
    assert!(
        e.contains("account `cmd` does not keep its OAuth client secret in a keyring; set `client_secret = { keyring = true }`"),
        "{e}"
    );
    assert!(o.contains("empty 6"), "{o}");
    assert!(
        e.contains("the OAuth client secret read from stdin is empty"),
        "{e}"
    );
    for shown in [o, e] {
        assert!(!shown.contains("client-Secret.789"), "{shown}");
        assert!(!shown.contains("wrong-Secret"), "{shown}");
    }
}

#[test]
fn a_client_secret_in_the_secret_service_is_stored_with_oauth_secret_and_used() {
    // The same with `keyring_store = "secret-service"`: a private session bus and a
    // gnome-keyring-daemon unlocked from stdin in a throw-away HOME (as in sasl.rs).
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "ss",
        "heidi",
        "[\"oauthbearer\"]",
        &format!(
            "{}\nclient_secret = {{ keyring = true }}",
            issuer("mailtun-secret")
        ),
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "timeout_secs = 20\n",
        "timeout_secs = 20\nkeyring_store = \"secret-service\"\n",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let script = format!(
        "{}printf keyring-unlock | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 89
printf 'client-Secret.789\\n' | \"$M\" --config \"$C\" oauth secret ss || exit 90
\"$M\" --config \"$C\" oauth status ss || exit 91
login_device ss heidi || exit 92
\"$M\" --config \"$C\" check ss || exit 93
\"$M\" --config \"$C\" oauth secret ss --delete || exit 94
\"$M\" --config \"$C\" oauth status ss || exit 95
",
        prelude(dir.path(), &cfg)
    );
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let out = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", &script])
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_RUNTIME_DIR", &home)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("MAILTUN_CONFIG")
        .env_remove("BROWSER")
        .stdin(Stdio::null())
        .output()
        .expect("dbus-run-session (packages dbus, gnome-keyring)");
    let o = String::from_utf8_lossy(&out.stdout);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{o}\n{e}");
    assert!(
        o.contains("account `ss`: client secret stored in the Secret Service keyring"),
        "{o}"
    );
    assert!(o.contains("keyring: Secret Service"), "{o}");
    assert!(o.contains("authenticated with OAUTHBEARER"), "{o}");
    assert!(
        o.contains("account `ss`: client secret not stored in the Secret Service keyring; run `mailtun oauth secret ss`"),
        "{o}"
    );
    assert!(!o.contains("client-Secret.789") && !e.contains("client-Secret.789"));
}

#[test]
fn no_token_reaches_output_logs_or_files_even_with_vv() {
    // Sign in, refresh (30 s tokens), check and log out with -vv and a log file; then ask
    // the IdP for every token it issued to this user and look for each one.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "leak",
        "ivan",
        "[\"oauthbearer\"]",
        &issuer("mailtun-short"),
    );
    let out = in_keyring(
        dir.path(),
        &cfg,
        "idp /test/reset-user -d username=ivan >/dev/null
login_device leak ivan || exit 90
printf 'a LOGOUT\\r\\n' | \"$M\" -vv --log \"$D/log\" --config \"$C\" tunnel leak >&2 || exit 91
\"$M\" -vv --config \"$C\" check leak >&2 || exit 92
\"$M\" -vv --config \"$C\" oauth status leak >&2 || exit 93
\"$M\" -vv --config \"$C\" oauth logout leak >&2 || exit 94
idp '/test/tokens?username=ivan'
",
        &[],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    let line = out
        .stdout_text
        .lines()
        .find(|l| l.starts_with("{\"values\""))
        .expect("the IdP's token list");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let tokens: Vec<&str> = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tokens.len() >= 3,
        "login and at least one refresh: {tokens:?}"
    );
    assert!(
        out.stderr.contains("[OAuth token]") || out.stderr.contains("[SASL payload]"),
        "{}",
        out.stderr
    );
    let mut files = String::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        if let Ok(text) = std::fs::read(e.unwrap().path()) {
            files.push_str(&String::from_utf8_lossy(&text));
        }
    }
    let visible = out.stderr.clone() + &files;
    for t in tokens {
        assert_lacks(&visible, t, "a token leaked into output, the log or a file");
    }
}

#[test]
fn pop3_and_smtp_tunnels_use_the_built_in_tokens() {
    // alice's POP3 and submission accounts, each signed in once (30 s tokens: each
    // session refreshes first), on the same OAuth-only Dovecot.
    let r = realm();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let mut text = String::new();
    for (name, protocol, auth) in [("pop", "pop3", "oauthbearer"), ("sub", "smtp", "xoauth2")] {
        text += &format!(
            "[accounts.{name}]\nprotocol = \"{protocol}\"\nhost = \"{host}\"\nconnect = \"{addr}\"\nca_file = \"{ca}\"\nuser = \"alice\"\nauth = [\"{auth}\"]\ntimeout_secs = 20\n[accounts.{name}.oauth]\nca_file = \"{ca}\"\nscope = \"mail offline_access\"\n{issuer}\n",
            host = r.get("MAIL_HOST"),
            addr = r.get("MAIL_ADDR"),
            ca = r.get("CA_FILE"),
            issuer = issuer("mailtun-short"),
        );
    }
    std::fs::write(&cfg, text).unwrap();
    let out = in_keyring(
        dir.path(),
        &cfg,
        "login_device pop alice || exit 90
login_device sub alice || exit 91
printf 'STAT\\r\\nQUIT\\r\\n' | \"$M\" --config \"$C\" tunnel pop || exit 92
printf 'EHLO client.example\\r\\nQUIT\\r\\n' | \"$M\" --config \"$C\" tunnel sub || exit 93
",
        &[],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    assert_contains(
        &out.stdout_text,
        "+OK mailtun: alice authenticated to mail.example.test with OAUTHBEARER",
        "stdout",
    );
    assert_contains(&out.stdout_text, "+OK 4 ", "STAT of alice's 4 messages");
    assert_contains(
        &out.stdout_text,
        "220 mail.example.test ESMTP mailtun: alice authenticated",
        "the submission tunnel",
    );
    assert_contains(&out.stdout_text, "with XOAUTH2", "the submission tunnel");
    assert_contains(&out.stdout_text, "\n221 ", "stdout");
}

#[test]
fn serve_lets_an_imap_client_in_with_the_built_in_tokens() {
    // `mailtun serve` started in the keyring session that holds alice's tokens (30 s
    // tokens: the session of the accepted connection refreshes first); Python's imaplib
    // logs in to the listener, and the upstream session uses the stored token.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "srv",
        "alice",
        "[\"oauthbearer\"]",
        &issuer("mailtun-short"),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    crate::harness::replace_in_file(
        &cfg,
        "timeout_secs = 20\n",
        &format!("timeout_secs = 20\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let imaplib = format!(
        "import imaplib\nm = imaplib.IMAP4('127.0.0.1', {port})\nt, d = m.login('alice', 'x')\nprint('login', t, d[0].decode())\nt, d = m.select('INBOX')\nprint('select', t, d[0].decode())\nm.logout()\n"
    );
    let out = in_keyring(
        dir.path(),
        &cfg,
        "login_device srv alice || exit 90
\"$M\" --config \"$C\" serve -v 2> \"$D/serve.err\" & s=$!
for _ in $(seq 100); do grep -q 'mailtun: serving' \"$D/serve.err\" && break; sleep 0.1; done
python3 -c \"$PY\"; py=$?
kill -TERM $s; wait $s; echo \"serve exit: $?\"
cat \"$D/serve.err\" >&2
exit $py
",
        &[("PY", imaplib)],
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout_text, out.stderr);
    assert_contains(
        &out.stdout_text,
        "login OK [CAPABILITY IMAP4rev1 ",
        "imaplib's login",
    );
    assert_contains(
        &out.stdout_text,
        "alice authenticated to mail.example.test with OAUTHBEARER",
        "imaplib's login",
    );
    assert_contains(&out.stdout_text, "select OK 4", "alice's 4 messages");
    assert_contains(&out.stdout_text, "serve exit: 0", "serve");
    assert_contains(
        &out.stderr,
        "mailtun: serving srv (imap) on 127.0.0.1:",
        "serve's log",
    );
}
