//! Built-in OAuth 2.0: sign in (`mailtun oauth login`: RFC 8628 device grant, or the
//! authorization code with PKCE S256 and a loopback redirect), keep the tokens in the
//! account's keyring, refresh the access token before a session uses it, revoke on logout.
//!
//! Grant logic is the `oauth2` crate's; HTTPS is reqwest on rustls (roots of the system
//! plus `oauth.ca_file`), redirects off. Every call blocks: the session runs it off the
//! async threads. Tokens travel in [`Secret`]; no message, log line or child's argv or
//! environment holds one. A refresh happens under a per-account lock file (`flock`), and
//! a rotated refresh token is stored before the new access token is handed out.

pub mod settings;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyring_core::Entry;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl,
    EndpointMaybeSet, EndpointNotSet, PkceCodeChallenge, RedirectUrl, RefreshToken,
    RequestTokenError, RevocationUrl, Scope, StandardDeviceAuthorizationResponse,
    StandardRevocableToken, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

pub use settings::{ClientSecretSource, Endpoints, Flow, Given, OAuthSettings};

use crate::config::Account;
use crate::credentials::{self, CredentialError};
use crate::secret::Secret;

/// Keyring service of the token set (user: the account name).
pub const TOKEN_SERVICE: &str = "mailtun-oauth";
/// Keyring service of a client secret kept with `client_secret = { keyring = true }`.
pub const CLIENT_SECRET_SERVICE: &str = "mailtun-oauth-client";
/// A stored access token is used only while it stays valid this much longer.
pub const MIN_VALIDITY: Duration = Duration::from_secs(60);
/// How long the browser flow waits for the redirect.
const BROWSER_WAIT: Duration = Duration::from_secs(300);

type OClient = BasicClient<
    EndpointMaybeSet,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The token set kept in the keyring (as JSON).
#[derive(Serialize, Deserialize, Default)]
struct Stored {
    access_token: String,
    refresh_token: Option<String>,
    /// Unix time at which the access token expires.
    expires_at: u64,
    scope: String,
}

impl Zeroize for Stored {
    fn zeroize(&mut self) {
        self.access_token.zeroize();
        self.refresh_token.zeroize();
    }
}

/// What `oauth status` shows: never a token.
#[derive(Debug)]
pub struct Status {
    pub keyring: &'static str,
    /// Seconds the access token stays valid (negative: expired that long ago).
    pub expires_in: i64,
    pub scope: String,
    pub has_refresh_token: bool,
}

/// What `oauth logout` did.
#[derive(Debug)]
pub struct Logout {
    /// The provider confirmed the revocation (false: it has no revocation endpoint).
    pub revoked: bool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn fail(account: &Account, step: &'static str, detail: impl Into<String>) -> CredentialError {
    CredentialError::OAuth {
        account: account.name.clone(),
        step,
        detail: detail.into(),
    }
}

fn token_entry(account: &Account, s: &OAuthSettings) -> Result<Entry, CredentialError> {
    let store = credentials::open_store(s.keyring)?;
    Entry::new_in_store(&store, TOKEN_SERVICE, &account.name)
        .map_err(|e| fail(account, "keyring", e.to_string()))
}

fn read(account: &Account, s: &OAuthSettings) -> Result<Option<Secret<Stored>>, CredentialError> {
    let raw = match token_entry(account, s)?.get_password() {
        Ok(p) => Secret::new(p),
        Err(keyring_core::Error::NoEntry) => return Ok(None),
        Err(e) => return Err(fail(account, "keyring", e.to_string())),
    };
    // serde's message could quote the text: never shown.
    serde_json::from_str::<Stored>(raw.expose())
        .map(|t| Some(Secret::new(t)))
        .map_err(|_| {
            fail(
                account,
                "keyring",
                "the stored tokens are unreadable; sign in again with `mailtun oauth login`",
            )
        })
}

fn write(account: &Account, s: &OAuthSettings, t: &Stored) -> Result<(), CredentialError> {
    let json = Secret::new(serde_json::to_string(t).expect("plain struct"));
    token_entry(account, s)?
        .set_password(json.expose())
        .map_err(|e| fail(account, "keyring", e.to_string()))
}

fn not_signed_in(account: &Account, s: &OAuthSettings) -> CredentialError {
    CredentialError::OAuthNotSignedIn {
        account: account.name.clone(),
        store: credentials::store_name(s.keyring),
    }
}

/// The account's access token: the stored one while it stays valid for
/// [`MIN_VALIDITY`], else a refreshed one (stored first). Never interactive.
pub fn access_token(
    account: &Account,
    s: &OAuthSettings,
) -> Result<Secret<String>, CredentialError> {
    let fresh_enough = |t: &Stored| t.expires_at >= now() + MIN_VALIDITY.as_secs();
    let stored = read(account, s)?.ok_or_else(|| not_signed_in(account, s))?;
    if fresh_enough(stored.expose()) {
        tracing::debug!(account = %account.name, "OAuth: stored access token [OAuth token] still valid");
        return Ok(Secret::new(stored.expose().access_token.clone()));
    }
    let _lock = lock(account)?;
    // Another session may have refreshed (and rotated) while we waited for the lock.
    let stored = read(account, s)?.ok_or_else(|| not_signed_in(account, s))?;
    if fresh_enough(stored.expose()) {
        tracing::debug!(account = %account.name, "OAuth: another session refreshed the token");
        return Ok(Secret::new(stored.expose().access_token.clone()));
    }
    let Some(refresh) = stored.expose().refresh_token.clone().map(Secret::new) else {
        return Err(CredentialError::OAuthGrantRefused {
            account: account.name.clone(),
            reason: "the access token expired and the provider gave no refresh token".into(),
        });
    };
    tracing::debug!(account = %account.name, "OAuth: refreshing the access token");
    let http = http_client(account, s)?;
    let given = endpoints(account, s, &http)?;
    let client = oauth_client(account, s, &given)?;
    let refresh_token = RefreshToken::new(refresh.expose().clone());
    let request = client
        .exchange_refresh_token(&refresh_token)
        .map_err(|e| fail(account, "refresh", e.to_string()))?;
    let response = request.request(&http).map_err(|e| match &e {
        RequestTokenError::ServerResponse(r)
            if *r.error() == BasicErrorResponseType::InvalidGrant =>
        {
            CredentialError::OAuthGrantRefused {
                account: account.name.clone(),
                reason: format!(
                    "invalid_grant: the refresh token was revoked or has expired{}",
                    r.error_description()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            }
        }
        _ => fail(account, "refresh", describe(&e)),
    })?;
    let mut next = stored_from(&response, &stored.expose().scope);
    if next.refresh_token.is_none() {
        // No rotation: the old refresh token stays valid.
        next.refresh_token = Some(refresh.expose().clone());
    }
    let next = Secret::new(next);
    // The rotated refresh token is safe before the new access token is used.
    write(account, s, next.expose())?;
    Ok(Secret::new(next.expose().access_token.clone()))
}

fn stored_from(r: &oauth2::basic::BasicTokenResponse, old_scope: &str) -> Stored {
    Stored {
        access_token: r.access_token().secret().clone(),
        refresh_token: r.refresh_token().map(|t| t.secret().clone()),
        expires_at: now()
            + r.expires_in()
                .map(|d| d.as_secs())
                .unwrap_or(MIN_VALIDITY.as_secs()),
        scope: r
            .scopes()
            .map(|v| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| old_scope.to_string()),
    }
}

/// An OAuth request error as text: the provider's error code and description, or the
/// transport failure. Never the response body (it may hold tokens).
fn describe<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + std::fmt::Display>(
    e: &RequestTokenError<RE, T>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => format!("the provider answered {r}"),
        RequestTokenError::Request(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
        RequestTokenError::Parse(_, _) => {
            "the provider's answer is not a valid token response".into()
        }
        RequestTokenError::Other(s) => s.clone(),
    }
}

/// The HTTPS client for the provider: rustls, system roots plus `oauth.ca_file`, no
/// redirects (RFC 6749 token requests must not be redirected), the account's timeout.
fn http_client(
    account: &Account,
    s: &OAuthSettings,
) -> Result<reqwest::blocking::Client, CredentialError> {
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(account.timeout)
        .user_agent(concat!("mailtun/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &s.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            fail(
                account,
                "configuration",
                format!("cannot read `oauth.ca_file` {}: {e}", path.display()),
            )
        })?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            fail(
                account,
                "configuration",
                format!("`oauth.ca_file` {}: {e}", path.display()),
            )
        })? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|e| fail(account, "HTTPS client", e.to_string()))
}

#[derive(Deserialize)]
struct Metadata {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

/// The endpoints: given ones, completed from the issuer's metadata
/// (`/.well-known/openid-configuration`, else RFC 8414 `oauth-authorization-server`).
fn endpoints(
    account: &Account,
    s: &OAuthSettings,
    http: &reqwest::blocking::Client,
) -> Result<Given, CredentialError> {
    let (issuer, given) = match &s.endpoints {
        Endpoints::Given(g) => return Ok(g.clone()),
        Endpoints::Discover { issuer, given } => (issuer.trim_end_matches('/'), given),
    };
    let mut last = String::new();
    for well_known in ["openid-configuration", "oauth-authorization-server"] {
        let url = format!("{issuer}/.well-known/{well_known}");
        let resp = match http.get(&url).send() {
            Ok(r) => r,
            Err(e) => {
                last = format!("{url}: {e}");
                continue;
            }
        };
        if !resp.status().is_success() {
            last = format!("{url}: HTTP {}", resp.status());
            continue;
        }
        let m: Metadata = resp.json().map_err(|e| {
            fail(
                account,
                "discovery",
                format!("{url}: not provider metadata: {e}"),
            )
        })?;
        if m.issuer.as_deref().map(|i| i.trim_end_matches('/')) != Some(issuer) {
            return Err(fail(
                account,
                "discovery",
                format!(
                    "{url} names another issuer ({:?}); check `oauth.issuer`",
                    m.issuer.unwrap_or_default()
                ),
            ));
        }
        let pick = |mine: &Option<String>,
                    theirs: Option<String>,
                    name: &str|
         -> Result<Option<String>, CredentialError> {
            match mine.clone().or(theirs) {
                Some(u) if !u.starts_with("https://") => Err(fail(
                    account,
                    "discovery",
                    format!("the provider's {name} is not https://"),
                )),
                u => Ok(u),
            }
        };
        return Ok(Given {
            authorization: pick(
                &given.authorization,
                m.authorization_endpoint,
                "authorization_endpoint",
            )?,
            token: pick(&given.token, m.token_endpoint, "token_endpoint")?,
            device_authorization: pick(
                &given.device_authorization,
                m.device_authorization_endpoint,
                "device_authorization_endpoint",
            )?,
            revocation: pick(
                &given.revocation,
                m.revocation_endpoint,
                "revocation_endpoint",
            )?,
        });
    }
    Err(fail(
        account,
        "discovery",
        format!("no provider metadata at `oauth.issuer` ({last})"),
    ))
}

fn client_secret(
    account: &Account,
    s: &OAuthSettings,
) -> Result<Option<Secret<String>>, CredentialError> {
    match &s.client_secret {
        None => Ok(None),
        Some(ClientSecretSource::Command(c)) => {
            credentials::first_line_of("OAuth client secret", c).map(Some)
        }
        Some(ClientSecretSource::Keyring) => {
            match client_secret_entry(account, s)?.get_password() {
                Ok(p) => Ok(Some(Secret::new(p))),
                Err(keyring_core::Error::NoEntry) => Err(fail(
                    account,
                    "client secret",
                    format!(
                        "the {} keyring holds no client secret (`client_secret = {{ keyring = true }}`); store it with `mailtun oauth secret {}`",
                        credentials::store_name(s.keyring),
                        account.name
                    ),
                )),
                Err(e) => Err(fail(
                    account,
                    "client secret",
                    format!(
                        "{e} (service `{CLIENT_SECRET_SERVICE}`, user `{}`)",
                        account.name
                    ),
                )),
            }
        }
    }
}

fn client_secret_entry(account: &Account, s: &OAuthSettings) -> Result<Entry, CredentialError> {
    let store = credentials::open_store(s.keyring)?;
    Entry::new_in_store(&store, CLIENT_SECRET_SERVICE, &account.name)
        .map_err(|e| fail(account, "client secret", e.to_string()))
}

/// `mailtun oauth secret ACCOUNT`: stores the client secret of an account with
/// `client_secret = { keyring = true }` (service [`CLIENT_SECRET_SERVICE`], user the account).
pub fn set_client_secret(
    account: &Account,
    s: &OAuthSettings,
    secret: &Secret<String>,
) -> Result<(), CredentialError> {
    client_secret_entry(account, s)?
        .set_password(secret.expose())
        .map_err(|e| fail(account, "client secret", e.to_string()))
}

/// `mailtun oauth secret ACCOUNT --delete`.
pub fn delete_client_secret(account: &Account, s: &OAuthSettings) -> Result<(), CredentialError> {
    match client_secret_entry(account, s)?.delete_credential() {
        Ok(()) => Ok(()),
        Err(keyring_core::Error::NoEntry) => Err(fail(
            account,
            "client secret",
            format!(
                "the {} keyring holds no client secret to delete",
                credentials::store_name(s.keyring)
            ),
        )),
        Err(e) => Err(fail(account, "client secret", e.to_string())),
    }
}

/// Where the client secret comes from, for `oauth status` (the secret itself is not read
/// out of the keyring: only whether it is there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretStatus {
    /// A public client.
    None,
    Command(String),
    /// `client_secret = { keyring = true }`: stored or not, and in which keyring.
    Keyring {
        store: &'static str,
        stored: bool,
    },
}

pub fn client_secret_status(
    account: &Account,
    s: &OAuthSettings,
) -> Result<SecretStatus, CredentialError> {
    match &s.client_secret {
        None => Ok(SecretStatus::None),
        Some(ClientSecretSource::Command(c)) => Ok(SecretStatus::Command(c.clone())),
        Some(ClientSecretSource::Keyring) => {
            let stored = match client_secret_entry(account, s)?.get_password() {
                Ok(p) => {
                    drop(Secret::new(p));
                    true
                }
                Err(keyring_core::Error::NoEntry) => false,
                Err(e) => return Err(fail(account, "client secret", e.to_string())),
            };
            Ok(SecretStatus::Keyring {
                store: credentials::store_name(s.keyring),
                stored,
            })
        }
    }
}

fn oauth_client(
    account: &Account,
    s: &OAuthSettings,
    g: &Given,
) -> Result<OClient, CredentialError> {
    let bad = |name: &str, e: oauth2::url::ParseError| {
        fail(account, "configuration", format!("{name}: {e}"))
    };
    let mut c = BasicClient::new(ClientId::new(s.client_id.clone()))
        .set_auth_uri_option(
            g.authorization
                .clone()
                .map(AuthUrl::new)
                .transpose()
                .map_err(|e| bad("authorization_endpoint", e))?,
        )
        .set_device_authorization_url_option(
            g.device_authorization
                .clone()
                .map(DeviceAuthorizationUrl::new)
                .transpose()
                .map_err(|e| bad("device_authorization_endpoint", e))?,
        )
        .set_revocation_url_option(
            g.revocation
                .clone()
                .map(RevocationUrl::new)
                .transpose()
                .map_err(|e| bad("revocation_endpoint", e))?,
        )
        .set_token_uri_option(
            g.token
                .clone()
                .map(TokenUrl::new)
                .transpose()
                .map_err(|e| bad("token_endpoint", e))?,
        );
    if let Some(secret) = client_secret(account, s)? {
        c = c.set_client_secret(ClientSecret::new(secret.expose().clone()));
    }
    Ok(c)
}

/// Signs in by `flow` (the account's `oauth.flow`, else device when the provider has
/// that endpoint) and stores the tokens. `say` shows lines to the user (never a token).
pub fn login(
    account: &Account,
    s: &OAuthSettings,
    flow: Option<Flow>,
    say: &mut dyn FnMut(&str),
) -> Result<Status, CredentialError> {
    let http = http_client(account, s)?;
    let given = endpoints(account, s, &http)?;
    let flow = flow
        .or(s.flow)
        .unwrap_or(if given.device_authorization.is_some() {
            Flow::Device
        } else {
            Flow::Browser
        });
    let client = oauth_client(account, s, &given)?;
    let scopes: Vec<Scope> = s.scopes.iter().cloned().map(Scope::new).collect();
    let response = match flow {
        Flow::Device => {
            let details: StandardDeviceAuthorizationResponse = client
                .exchange_device_code()
                .map_err(|_| {
                    fail(
                        account,
                        "device login",
                        "the provider has no device authorization endpoint; use `--browser`",
                    )
                })?
                .add_scopes(scopes)
                .request(&http)
                .map_err(|e| fail(account, "device login", describe(&e)))?;
            say(&format!(
                "To sign in account `{}`, open {}",
                account.name,
                details.verification_uri().as_str()
            ));
            say(&format!(
                "and enter the code {}",
                details.user_code().secret()
            ));
            if let Some(complete) = details.verification_uri_complete() {
                say(&format!("(or open {})", complete.secret()));
            }
            say(&format!(
                "Waiting up to {} s ...",
                details.expires_in().as_secs()
            ));
            // The crate polls at the server's `interval` (first poll at once), adds 5 s
            // for each `slow_down` (RFC 8628 3.5) and stops at `expires_in` with
            // `expired_token`; tests/it/oauth.rs holds it to both.
            client
                .exchange_device_access_token(&details)
                .map_err(|e| fail(account, "device login", e.to_string()))?
                .request(&http, std::thread::sleep, None)
                .map_err(|e| match &e {
                    RequestTokenError::ServerResponse(r) if *r.error() == oauth2::DeviceCodeErrorResponseType::ExpiredToken => fail(
                        account,
                        "device login",
                        format!("the code expired after {} s without approval; run `mailtun oauth login {}` again", details.expires_in().as_secs(), account.name),
                    ),
                    RequestTokenError::ServerResponse(r) if *r.error() == oauth2::DeviceCodeErrorResponseType::AccessDenied => {
                        fail(account, "device login", "the sign-in was denied")
                    }
                    _ => fail(account, "device login", describe(&e)),
                })?
        }
        Flow::Browser => browser(account, client, scopes, &http, say)?,
    };
    let stored = Secret::new(stored_from(&response, &s.scopes.join(" ")));
    write(account, s, stored.expose())?;
    status_of(stored.expose(), s)
}

fn browser(
    account: &Account,
    client: OClient,
    scopes: Vec<Scope>,
    http: &reqwest::blocking::Client,
    say: &mut dyn FnMut(&str),
) -> Result<oauth2::basic::BasicTokenResponse, CredentialError> {
    let step = "browser login";
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| fail(account, step, format!("cannot listen on 127.0.0.1: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| fail(account, step, e.to_string()))?
        .port();
    let redirect = RedirectUrl::new(format!("http://127.0.0.1:{port}/")).expect("valid URL");
    let client = client.set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .map_err(|_| {
            fail(
                account,
                step,
                "the provider has no authorization endpoint; use `--device`",
            )
        })?
        .add_scopes(scopes)
        .set_pkce_challenge(challenge)
        .url();
    say(&format!(
        "To sign in account `{}`, open {url}",
        account.name
    ));
    open_browser(url.as_str());
    let (code, got_state) = receive_redirect(account, &listener)?;
    drop(listener);
    if got_state.expose().as_bytes() != state.secret().as_bytes() {
        return Err(fail(
            account,
            step,
            "the redirect's `state` does not match this sign-in (a forged or stale redirect); nothing stored",
        ));
    }
    client
        .exchange_code(AuthorizationCode::new(code.expose().clone()))
        .map_err(|e| fail(account, step, e.to_string()))?
        .set_pkce_verifier(verifier)
        .request(http)
        .map_err(|e| fail(account, step, describe(&e)))
}

/// `$BROWSER URL`, else `xdg-open URL` when present; the URL is printed anyway.
fn open_browser(url: &str) {
    let mut cmd = match std::env::var_os("BROWSER") {
        Some(b) if !b.is_empty() => {
            let mut c = std::process::Command::new("/bin/sh");
            c.arg("-c")
                .arg(format!("{} \"$1\"", b.to_string_lossy()))
                .arg("sh")
                .arg(url);
            c
        }
        _ => {
            let mut c = std::process::Command::new("xdg-open");
            c.arg(url);
            c
        }
    };
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    if let Ok(mut child) = cmd.spawn() {
        std::thread::spawn(move || child.wait());
    }
}

/// Accepts one request on the loopback listener and answers it; returns `code` and `state`.
fn receive_redirect(
    account: &Account,
    listener: &TcpListener,
) -> Result<(Secret<String>, Secret<String>), CredentialError> {
    let step = "browser login";
    listener
        .set_nonblocking(true)
        .map_err(|e| fail(account, step, e.to_string()))?;
    let deadline = Instant::now() + BROWSER_WAIT;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(fail(
                    account,
                    step,
                    format!(
                        "no redirect from the browser within {} s",
                        BROWSER_WAIT.as_secs()
                    ),
                ));
            }
            Err(e) => return Err(fail(account, step, e.to_string())),
        }
    };
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut buf = Secret::new(Vec::with_capacity(1024));
    let mut chunk = [0u8; 1024];
    while !buf.expose().windows(4).any(|w| w == b"\r\n\r\n") && buf.expose().len() < 16384 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut v = buf.expose().clone();
                v.extend_from_slice(&chunk[..n]);
                buf = Secret::new(v);
            }
        }
    }
    chunk.zeroize();
    let text = String::from_utf8_lossy(buf.expose()).into_owned();
    let text = Secret::new(text);
    let target = text.expose().split_whitespace().nth(1).unwrap_or("");
    let url = oauth2::url::Url::parse(&format!("http://127.0.0.1{target}")).ok();
    let param = |name: &str| {
        url.as_ref().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| Secret::new(v.into_owned()))
        })
    };
    let (body, result) = match (param("code"), param("state"), param("error")) {
        (Some(code), Some(state), None) => (
            "mailtun: signed in; you may close this window.\n",
            Ok((code, state)),
        ),
        (_, _, Some(err)) => (
            "mailtun: the sign-in failed; see the terminal.\n",
            Err(fail(
                account,
                step,
                format!("the provider answered `{}`", err.expose()),
            )),
        ),
        _ => (
            "mailtun: unexpected request.\n",
            Err(fail(
                account,
                step,
                "the redirect carries no authorization code",
            )),
        ),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
    result
}

fn status_of(t: &Stored, s: &OAuthSettings) -> Result<Status, CredentialError> {
    Ok(Status {
        keyring: credentials::store_name(s.keyring),
        expires_in: t.expires_at as i64 - now() as i64,
        scope: t.scope.clone(),
        has_refresh_token: t.refresh_token.is_some(),
    })
}

/// The stored tokens' expiry and scope (`None`: not signed in).
pub fn status(account: &Account, s: &OAuthSettings) -> Result<Option<Status>, CredentialError> {
    match read(account, s)? {
        None => Ok(None),
        Some(t) => status_of(t.expose(), s).map(Some),
    }
}

/// Revokes the refresh token at the provider (RFC 7009), then deletes the stored tokens.
/// A failed revocation keeps them (so that it can be tried again).
pub fn logout(account: &Account, s: &OAuthSettings) -> Result<Logout, CredentialError> {
    let stored = read(account, s)?.ok_or_else(|| not_signed_in(account, s))?;
    let http = http_client(account, s)?;
    let given = endpoints(account, s, &http)?;
    let revoked = if given.revocation.is_some() {
        let client = oauth_client(account, s, &given)?;
        let token = match &stored.expose().refresh_token {
            Some(r) => StandardRevocableToken::RefreshToken(RefreshToken::new(r.clone())),
            None => StandardRevocableToken::AccessToken(oauth2::AccessToken::new(
                stored.expose().access_token.clone(),
            )),
        };
        client
            .revoke_token(token)
            .map_err(|e| fail(account, "logout", e.to_string()))?
            .request(&http)
            .map_err(|e| {
                fail(
                    account,
                    "logout",
                    format!("{}; the tokens are kept", describe(&e)),
                )
            })?;
        true
    } else {
        false
    };
    token_entry(account, s)?
        .delete_credential()
        .map_err(|e| fail(account, "keyring", e.to_string()))?;
    Ok(Logout { revoked })
}

/// An exclusive `flock` on the account's lock file, held until dropped.
struct Lock(std::fs::File);

fn lock(account: &Account) -> Result<Lock, CredentialError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => std::path::PathBuf::from(d).join("mailtun"),
        _ => std::env::temp_dir().join(format!("mailtun-{}", unsafe { libc::getuid() })),
    };
    let _ = std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&dir);
    // A directory someone else made (in /tmp) could hold the lock against us.
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(&dir)
            .map_err(|e| fail(account, "refresh lock", format!("{}: {e}", dir.display())))?;
        // SAFETY: getuid has no preconditions.
        if !meta.is_dir() || meta.uid() != unsafe { libc::getuid() } || meta.mode() & 0o077 != 0 {
            return Err(fail(
                account,
                "refresh lock",
                format!(
                    "{} is not a private directory of this user; remove it",
                    dir.display()
                ),
            ));
        }
    }
    let name: String = account
        .name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect();
    let path = dir.join(format!("oauth-{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| fail(account, "refresh lock", format!("{}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor we own; blocks until the other session is done.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    if r != 0 {
        return Err(fail(
            account,
            "refresh lock",
            format!("{}: {}", path.display(), std::io::Error::last_os_error()),
        ));
    }
    Ok(Lock(file))
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
