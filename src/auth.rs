//! Builds the account's SASL mechanism with its credentials: a Kerberos context, a
//! password from the account's source, an OAuth token, channel-binding data.
//!
//! Everything here may block (KDC, password command, keyring, terminal prompt): the
//! session calls it off the async threads.

use crate::config::{Account, GssLayer, MechName};
use crate::credentials::{self, CredentialError};
use crate::gss::KerberosContext;
use crate::sasl::cram_md5::CramMd5;
use crate::sasl::external::External;
use crate::sasl::gssapi::{Gssapi, LayerWanted};
use crate::sasl::login::Login;
use crate::sasl::oauth::{OAuthBearer, XOAuth2};
use crate::sasl::plain::Plain;
use crate::sasl::protocol_login::ProtocolLogin;
use crate::sasl::scram::{Binding, ChannelBinding, ClientNonce, Scram, ScramHash};
use crate::sasl::{GssFailureKind, Mechanism, SaslError};

/// Why a mechanism could not start on this side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Sasl(#[from] SaslError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// A -PLUS mechanism on a connection without channel-binding data.
    #[error("no channel-binding data on this connection")]
    NoChannelBinding,
    #[error("EXTERNAL needs `client_cert` and `client_key`")]
    NoClientCertificate,
    /// A protocol-level login that cannot be sent (no APOP timestamp, unsafe bytes).
    #[error(transparent)]
    Login(#[from] crate::protocol::LoginError),
}

/// What the session knows of the connection that a mechanism may need.
pub struct LinkFacts {
    pub host: String,
    pub port: u16,
    /// Channel-binding data of the TLS session, when it has any.
    pub binding: Option<ChannelBinding>,
    /// The link is TLS; without it GSSAPI negotiates the account's security layer.
    pub on_tls: bool,
}

/// Builds `name` for `account`, asking for credentials as needed, and returns it with
/// its initial response computed.
pub fn build(
    name: MechName,
    account: &Account,
    link: LinkFacts,
) -> Result<Box<dyn Mechanism>, SetupError> {
    let user = account.user.as_str();
    let password = || credentials::password(account);
    Ok(match name {
        MechName::Gssapi => {
            let ctx = match KerberosContext::new(&account.gssapi, &account.host) {
                Ok(ctx) => ctx,
                // `gssapi.kinit`: no usable ticket, so get one with the password; it goes
                // only to the KDC, and the ticket stays in memory.
                Err(e)
                    if account.gssapi.kinit
                        && matches!(
                            e.kind,
                            GssFailureKind::NoCredentials | GssFailureKind::Expired
                        ) =>
                {
                    // Without `gssapi.principal`, the ticket is for `user` in the default
                    // realm (the library adds it), as `kinit user` does.
                    let mut settings = account.gssapi.clone();
                    if settings.principal.is_none() && !user.is_empty() {
                        settings.principal = Some(user.to_string());
                    }
                    KerberosContext::with_password(&settings, &account.host, &password()?)
                        .map_err(SaslError::Gss)?
                }
                Err(e) => return Err(SaslError::Gss(e).into()),
            };
            tracing::info!("account `{}`: {}", account.name, ctx.target_description());
            let layer = match (link.on_tls, account.gssapi.layer) {
                (true, _) => LayerWanted::None,
                (false, GssLayer::Confidentiality) => LayerWanted::Confidentiality,
                (false, GssLayer::Integrity) => LayerWanted::Integrity,
            };
            Box::new(Gssapi::new(ctx, layer, account.gssapi.authzid.clone()))
        }
        MechName::ScramSha256
        | MechName::ScramSha1
        | MechName::ScramSha256Plus
        | MechName::ScramSha1Plus => {
            let hash = match name {
                MechName::ScramSha256 | MechName::ScramSha256Plus => ScramHash::Sha256,
                _ => ScramHash::Sha1,
            };
            let binding = match name {
                MechName::ScramSha256Plus | MechName::ScramSha1Plus => {
                    Binding::Plus(link.binding.ok_or(SetupError::NoChannelBinding)?)
                }
                // RFC 5802 section 6: a client that could bind never says "n". The policy
                // picks the -PLUS form whenever the server offers it, so plain SCRAM with
                // binding data means the server advertised no -PLUS for it: say so ("y"),
                // which lets a server that does bind detect a stripped -PLUS.
                _ => match link.binding {
                    Some(_) => Binding::SupportedButNotAdvertised,
                    None => Binding::Unsupported,
                },
            };
            let nonce = ClientNonce::random().map_err(|_| SaslError::UnusableCredential {
                mechanism: name.as_str(),
                what: "nonce",
                reason: "the system has no randomness available",
            })?;
            Box::new(Scram::new(hash, user, password()?, None, binding, nonce)?)
        }
        MechName::CramMd5 => Box::new(CramMd5::new(user, password()?)?),
        MechName::Plain => Box::new(Plain::new(user, password()?, None)?),
        MechName::Login => Box::new(Login::new(user, password()?)?),
        MechName::External => {
            if account.client_cert.is_none() {
                return Err(SetupError::NoClientCertificate);
            }
            Box::new(External::new(None))
        }
        MechName::OAuthBearer => Box::new(OAuthBearer::new(
            Some(user).filter(|u| !u.is_empty()),
            Some(&link.host),
            Some(link.port),
            credentials::oauth_token(account)?,
        )?),
        MechName::XOAuth2 => Box::new(XOAuth2::new(user, credentials::oauth_token(account)?)?),
        MechName::ImapLogin | MechName::UserPass | MechName::Apop => {
            Box::new(ProtocolLogin::new(name.as_str(), password()?)?)
        }
    })
}
