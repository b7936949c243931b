//! `[accounts.X.oauth]`: the provider's endpoints (discovered from `issuer`, explicit, or a
//! preset), the client registration and the flow, resolved once by `config`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::KeyringStore;

/// The table as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    provider: Option<Provider>,
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<toml::Value>,
    scope: Option<String>,
    flow: Option<Flow>,
    ca_file: Option<PathBuf>,
}

/// A provider whose endpoints and mail scopes mailtun knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Microsoft,
    Google,
}

impl Provider {
    /// The name as written in `oauth.provider`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Microsoft => "microsoft",
            Provider::Google => "google",
        }
    }

    /// The endpoints this preset fills in.
    pub fn endpoints(self) -> Given {
        preset(self).0
    }
}

/// How `mailtun oauth login` signs in by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// RFC 8628: a code typed in a browser anywhere.
    Device,
    /// Authorization code with PKCE and a loopback redirect.
    Browser,
}

impl Flow {
    /// The name as written in `oauth.flow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Device => "device",
            Flow::Browser => "browser",
        }
    }
}

/// The provider's endpoints: found at `issuer`, or given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoints {
    /// `issuer/.well-known/openid-configuration` (RFC 8414 metadata accepted too), plus
    /// any endpoint the table also names (those win).
    Discover {
        issuer: String,
        given: Given,
    },
    Given(Given),
}

/// Endpoints named in the table (or by a preset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Given {
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub device_authorization: Option<String>,
    pub revocation: Option<String>,
}

/// Where the client secret comes from (never the file itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSecretSource {
    Command(String),
    /// The keyring: service `mailtun-oauth-client`, user the account name.
    Keyring,
}

/// `[accounts.X.oauth]` with every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// The preset named by `oauth.provider`, if any (its endpoints are in `endpoints`).
    pub provider: Option<Provider>,
    pub endpoints: Endpoints,
    pub client_id: String,
    pub client_secret: Option<ClientSecretSource>,
    pub scopes: Vec<String>,
    /// Default flow of `oauth login`; `None`: device when the provider has the endpoint.
    pub flow: Option<Flow>,
    pub ca_file: Option<PathBuf>,
    /// The keyring that holds the tokens (the account's `keyring_store`).
    pub keyring: KeyringStore,
}

const MICROSOFT: &str = "https://login.microsoftonline.com/common/oauth2/v2.0";
const MICROSOFT_SCOPES: &str = "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/POP.AccessAsUser.All https://outlook.office.com/SMTP.Send offline_access";

fn preset(p: Provider) -> (Given, &'static str) {
    match p {
        Provider::Microsoft => (
            Given {
                authorization: Some(format!("{MICROSOFT}/authorize")),
                token: Some(format!("{MICROSOFT}/token")),
                device_authorization: Some(format!("{MICROSOFT}/devicecode")),
                // Microsoft has no RFC 7009 endpoint: logout deletes the tokens only.
                revocation: None,
            },
            MICROSOFT_SCOPES,
        ),
        Provider::Google => (
            Given {
                authorization: Some("https://accounts.google.com/o/oauth2/v2/auth".into()),
                token: Some("https://oauth2.googleapis.com/token".into()),
                device_authorization: Some("https://oauth2.googleapis.com/device/code".into()),
                revocation: Some("https://oauth2.googleapis.com/revoke".into()),
            },
            "https://mail.google.com/",
        ),
    }
}

fn https(name: &str, url: Option<String>) -> Result<Option<String>, String> {
    match url {
        Some(u) if !u.starts_with("https://") => Err(format!(
            "`oauth.{name}` must be an https:// URL (tokens travel there)"
        )),
        u => Ok(u),
    }
}

/// Resolves the table; errors are messages for `config` to locate.
pub fn resolve(raw: RawOAuth, keyring: KeyringStore) -> Result<OAuthSettings, String> {
    let (preset_given, preset_scope) = match raw.provider {
        Some(p) => {
            let (g, s) = preset(p);
            (g, Some(s))
        }
        None => (Given::default(), None),
    };
    let given = Given {
        authorization: https(
            "authorization_endpoint",
            raw.authorization_endpoint.or(preset_given.authorization),
        )?,
        token: https("token_endpoint", raw.token_endpoint.or(preset_given.token))?,
        device_authorization: https(
            "device_authorization_endpoint",
            raw.device_authorization_endpoint
                .or(preset_given.device_authorization),
        )?,
        revocation: https(
            "revocation_endpoint",
            raw.revocation_endpoint.or(preset_given.revocation),
        )?,
    };
    let endpoints = match https("issuer", raw.issuer)? {
        Some(issuer) => Endpoints::Discover { issuer, given },
        None if given.token.is_none() => {
            return Err(
                "`[oauth]` needs `issuer`, `provider` or `token_endpoint` (with `device_authorization_endpoint` or `authorization_endpoint`)".into(),
            );
        }
        None if given.authorization.is_none() && given.device_authorization.is_none() => {
            return Err(
                "`[oauth]` needs `device_authorization_endpoint` or `authorization_endpoint` to sign in".into(),
            );
        }
        None => Endpoints::Given(given),
    };
    let client_id = match raw.client_id {
        Some(c) if !c.trim().is_empty() => c,
        _ => {
            return Err(format!(
                "`[oauth]` needs `client_id`: register mailtun as an application at the provider{}",
                match raw.provider {
                    Some(Provider::Microsoft) =>
                        " (Microsoft Entra admin center, App registrations; see the README)",
                    Some(Provider::Google) =>
                        " (Google Cloud console, APIs & Services, Credentials; see the README)",
                    None => "",
                }
            ));
        }
    };
    let client_secret = match raw.client_secret {
        None => None,
        Some(v) => Some(client_secret(v)?),
    };
    let scope = raw.scope.or(preset_scope.map(str::to_string));
    let scopes = scope
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    Ok(OAuthSettings {
        provider: raw.provider,
        endpoints,
        client_id,
        client_secret,
        scopes,
        flow: raw.flow,
        ca_file: raw.ca_file,
        keyring,
    })
}

fn client_secret(v: toml::Value) -> Result<ClientSecretSource, String> {
    let refuse = || {
        "`oauth.client_secret` must be `{ command = \"...\" }` or `{ keyring = true }` (a secret written in the file is refused)".to_string()
    };
    let toml::Value::Table(t) = v else {
        return Err(refuse());
    };
    let keyring = t.get("keyring").and_then(toml::Value::as_bool);
    let command = t.get("command").and_then(toml::Value::as_str);
    match (t.len(), keyring, command) {
        (1, Some(true), None) => Ok(ClientSecretSource::Keyring),
        (1, None, Some(c)) if !c.trim().is_empty() => Ok(ClientSecretSource::Command(c.into())),
        _ => Err(refuse()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OAuthSettings, String> {
        let raw: RawOAuth = toml::from_str(text).map_err(|e| e.to_string())?;
        resolve(raw, KeyringStore::Keyutils)
    }

    #[test]
    fn a_client_secret_written_in_the_file_is_refused() {
        let e = parse("issuer = \"https://idp\"\nclient_id = \"c\"\nclient_secret = \"s3cr3t\"\n")
            .unwrap_err();
        assert!(e.contains("a secret written in the file is refused"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        let ok = parse(
            "issuer = \"https://idp\"\nclient_id = \"c\"\nclient_secret = { command = \"pass x\" }\n",
        )
        .unwrap();
        assert_eq!(
            ok.client_secret,
            Some(ClientSecretSource::Command("pass x".into()))
        );
    }

    #[test]
    fn a_preset_fills_endpoints_and_mail_scopes_but_not_the_client_id() {
        let e = parse("provider = \"microsoft\"\n").unwrap_err();
        assert!(e.contains("client_id") && e.contains("README"), "{e}");
        let s =
            parse("provider = \"google\"\nclient_id = \"x.apps.googleusercontent.com\"\n").unwrap();
        assert_eq!(s.scopes, ["https://mail.google.com/"]);
        let Endpoints::Given(g) = s.endpoints else {
            panic!("preset must give endpoints")
        };
        assert!(g.device_authorization.is_some() && g.revocation.is_some());
    }

    #[test]
    fn endpoints_must_be_https() {
        let e = parse("issuer = \"http://idp\"\nclient_id = \"c\"\n").unwrap_err();
        assert!(e.contains("https://"), "{e}");
    }
}
