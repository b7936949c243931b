//! The TOML configuration: where it is found, its schema, and its resolution into
//! [`Account`]s with every default filled in.
//!
//! Every error names the file, the line and column, and the account. Nothing here opens a
//! network connection or reads a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The mail protocol an account speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Imap,
    Pop3,
    Smtp,
}

impl Protocol {
    /// Port used by STARTTLS (or no TLS) when the account names none.
    pub fn default_plain_port(self) -> u16 {
        match self {
            Protocol::Imap => 143,
            Protocol::Pop3 => 110,
            Protocol::Smtp => 587,
        }
    }

    /// Port used by implicit TLS when the account names none.
    pub fn default_tls_port(self) -> u16 {
        match self {
            Protocol::Imap => 993,
            Protocol::Pop3 => 995,
            Protocol::Smtp => 465,
        }
    }

    /// GSSAPI service name (RFC 4752 section 3.1 and the IANA service registry).
    pub fn default_gss_service(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop",
            Protocol::Smtp => "smtp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Smtp => "smtp",
        })
    }
}

/// How the session is protected, tried in the order the account lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMethod {
    /// Connect to the plain port and upgrade with STARTTLS / STLS.
    Starttls,
    /// Connect to the TLS port and start TLS at once (RFC 8314).
    Implicit,
    /// No TLS at all. Only allowed where a strong mechanism protects the session itself.
    None,
}

impl fmt::Display for TlsMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMethod::Starttls => "starttls",
            TlsMethod::Implicit => "implicit",
            TlsMethod::None => "none",
        })
    }
}

/// A SASL mechanism an account may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MechName {
    Gssapi,
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    External,
    OAuthBearer,
    XOAuth2,
    Plain,
    Login,
    CramMd5,
    /// The IMAP `LOGIN` command (not SASL).
    ImapLogin,
    /// POP3 `USER` and `PASS` (not SASL).
    UserPass,
    /// POP3 `APOP` (not SASL).
    Apop,
}

impl MechName {
    /// Every mechanism, in the order `auth = "auto"` ranks them; CRAM-MD5 and the
    /// protocol-level logins last (they are only used when listed by name).
    pub const ALL: [MechName; 14] = [
        MechName::Gssapi,
        MechName::ScramSha256Plus,
        MechName::ScramSha1Plus,
        MechName::ScramSha256,
        MechName::ScramSha1,
        MechName::External,
        MechName::OAuthBearer,
        MechName::XOAuth2,
        MechName::Plain,
        MechName::Login,
        MechName::CramMd5,
        MechName::ImapLogin,
        MechName::UserPass,
        MechName::Apop,
    ];

    /// The IANA name the server advertises.
    pub fn as_str(self) -> &'static str {
        match self {
            MechName::Gssapi => "GSSAPI",
            MechName::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            MechName::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            MechName::ScramSha256 => "SCRAM-SHA-256",
            MechName::ScramSha1 => "SCRAM-SHA-1",
            MechName::External => "EXTERNAL",
            MechName::OAuthBearer => "OAUTHBEARER",
            MechName::XOAuth2 => "XOAUTH2",
            MechName::Plain => "PLAIN",
            MechName::Login => "LOGIN",
            MechName::CramMd5 => "CRAM-MD5",
            MechName::ImapLogin => crate::protocol::IMAP_LOGIN,
            MechName::UserPass => crate::protocol::USER_PASS,
            MechName::Apop => crate::protocol::APOP,
        }
    }

    /// Whether this is a protocol's own password login (IMAP `LOGIN`, POP3 `USER`/`PASS`,
    /// `APOP`) rather than a SASL mechanism.
    pub fn is_protocol_login(self) -> bool {
        self.protocol_of_login().is_some()
    }

    /// What `auth = "auto"` means for an account with these TLS methods. Without TLS
    /// only a mechanism with a security layer protects the session, so "auto" means
    /// GSSAPI there: a Kerberos user's intent.
    pub fn auto(tls: &[TlsMethod]) -> Vec<MechName> {
        MechName::ALL
            .into_iter()
            .filter(|m| !m.only_by_name())
            .filter(|m| tls != [TlsMethod::None] || m.negotiates_layer())
            .collect()
    }

    /// Whether only `auth = [...]` can select it: `"auto"` leaves it out.
    fn only_by_name(self) -> bool {
        self == MechName::CramMd5 || self.is_protocol_login()
    }

    /// The protocol this login command belongs to; `None` for SASL mechanisms.
    fn protocol_of_login(self) -> Option<Protocol> {
        match self {
            MechName::ImapLogin => Some(Protocol::Imap),
            MechName::UserPass | MechName::Apop => Some(Protocol::Pop3),
            _ => None,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        MechName::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }

    /// The mechanism's facts (strength, credentials, binding, layer): `sasl::properties`
    /// states them, this table picks them by variant.
    const fn properties(self) -> &'static crate::sasl::properties::Properties {
        use crate::sasl::properties as p;
        match self {
            MechName::Gssapi => &p::GSSAPI,
            MechName::ScramSha256Plus => &p::SCRAM_SHA_256_PLUS,
            MechName::ScramSha1Plus => &p::SCRAM_SHA_1_PLUS,
            MechName::ScramSha256 => &p::SCRAM_SHA_256,
            MechName::ScramSha1 => &p::SCRAM_SHA_1,
            MechName::External => &p::EXTERNAL,
            MechName::OAuthBearer => &p::OAUTHBEARER,
            MechName::XOAuth2 => &p::XOAUTH2,
            MechName::Plain => &p::PLAIN,
            MechName::Login => &p::LOGIN,
            MechName::CramMd5 => &p::CRAM_MD5,
            MechName::ImapLogin => &p::IMAP_LOGIN,
            MechName::UserPass => &p::USER_PASS,
            MechName::Apop => &p::APOP,
        }
    }

    /// Whether the mechanism keeps the password, any password equivalent and any bearer
    /// token off the wire (see `sasl::properties` for each mechanism's reasoning).
    pub fn is_strong(self) -> bool {
        self.properties().is_strong()
    }

    /// Whether the mechanism needs the account's password.
    pub fn needs_password(self) -> bool {
        self.properties().needs_password()
    }

    /// Whether the mechanism can only run over TLS (channel binding, client certificate,
    /// or a secret sent as it is).
    pub fn needs_tls(self) -> bool {
        !self.is_strong() || self.properties().channel_binding() || self == MechName::External
    }

    /// Whether the mechanism can only run over TLS whose certificate was verified or
    /// pinned: it gives the peer the password, a password equivalent or a token.
    pub fn needs_verified_tls(self) -> bool {
        self.properties().exposes_secret_to_peer()
    }

    /// Whether this is a -PLUS (channel-binding) mechanism.
    pub fn is_plus(self) -> bool {
        self.properties().channel_binding()
    }

    /// The -PLUS form of a SCRAM mechanism without binding.
    pub fn plus_form(self) -> Option<MechName> {
        match self {
            MechName::ScramSha256 => Some(MechName::ScramSha256Plus),
            MechName::ScramSha1 => Some(MechName::ScramSha1Plus),
            _ => None,
        }
    }

    /// Whether the mechanism can negotiate a security layer that protects a session
    /// without TLS (only GSSAPI; see `sasl::properties`).
    pub fn negotiates_layer(self) -> bool {
        self.properties().security_layer()
    }
}

impl fmt::Display for MechName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The weakest session an account accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MinProtection {
    /// Verified TLS and a strong mechanism.
    #[serde(rename = "tls+strong")]
    TlsStrong,
    /// Verified TLS (the default).
    #[serde(rename = "tls")]
    Tls,
    /// A strong mechanism, with or without TLS.
    #[serde(rename = "strong")]
    Strong,
}

impl MinProtection {
    pub fn requires_tls(self) -> bool {
        matches!(self, MinProtection::TlsStrong | MinProtection::Tls)
    }
    pub fn requires_strong(self) -> bool {
        matches!(self, MinProtection::TlsStrong | MinProtection::Strong)
    }
}

impl fmt::Display for MinProtection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MinProtection::TlsStrong => "tls+strong",
            MinProtection::Tls => "tls",
            MinProtection::Strong => "strong",
        })
    }
}

/// Which OS keyring holds passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyringStore {
    /// The desktop's Secret Service (GNOME Keyring, KWallet) over D-Bus.
    SecretService,
    /// The Linux kernel key retention service (session keyring).
    Keyutils,
}

/// Where the account's password comes from, when a mechanism needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// Asked on the controlling terminal (never stdin/stdout: they carry the protocol).
    Prompt,
    /// First line of a command's output (`sh -c`), e.g. `pass show mail/work`.
    Command(String),
    /// The OS keyring, service `mailtun`, user `ACCOUNT`.
    Keyring(KeyringStore),
}

/// Kerberos settings of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GssapiSettings {
    /// Service part of the target name `service@host`.
    pub service: String,
    /// Client principal to use; the ccache's default principal otherwise.
    pub principal: Option<String>,
    /// Credential cache of this account (`FILE:/path`, `KEYRING:...`); the default otherwise.
    pub ccache: Option<String>,
    /// Forward the user's TGT to the server (GSS_C_DELEG_FLAG). Off unless asked for.
    pub delegate: bool,
    /// Authorization identity sent in the last GSSAPI step; empty (the principal) by default.
    pub authzid: String,
    /// Without a valid ticket, obtain one with the account's password (it goes only to
    /// the KDC).
    pub kinit: bool,
    /// Where a ticket obtained by `kinit` goes.
    pub kinit_cache: KinitCache,
    /// The RFC 4752 security layer to negotiate when the session has no TLS.
    pub layer: GssLayer,
    /// Let the Kerberos library build the service principal from `service@host`
    /// (GSS_C_NT_HOSTBASED_SERVICE), so krb5.conf's `dns_canonicalize_hostname` and `rdns`
    /// may rewrite the host name through DNS. Off: the principal is `service/host` as
    /// configured.
    pub canonicalize: bool,
}

/// Where `gssapi.kinit` keeps the ticket it obtains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KinitCache {
    /// In this process's memory only: every connection without a ticket asks the KDC.
    #[default]
    Memory,
    /// In the account's `ccache`, so the next connection needs neither the password nor
    /// the KDC's AS exchange.
    Account,
}

/// The GSSAPI security layer wanted on a session without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GssLayer {
    Confidentiality,
    Integrity,
}

/// Settings that weaken security. Each use prints a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dangerous {
    /// Accept any server certificate. TLS then protects against nothing active.
    #[serde(default)]
    pub accept_invalid_certs: bool,
    /// Let `listen` be an address other than loopback: anyone who can reach it may try
    /// the local login.
    #[serde(default)]
    pub listen_on_network: bool,
}

/// Where `mailtun serve` listens for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The settings of `mailtun serve` for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    /// None: the account is not served (unless a socket is passed by systemd).
    pub listen: Option<ListenAddr>,
    /// No local login: IMAP greets with `* PREAUTH`, POP3 and SMTP let any login in.
    pub preauth: bool,
    /// How long a client may take to log in locally before it is sent away.
    pub login_timeout: Duration,
    /// Connections at once; more are refused.
    pub max_connections: usize,
    /// How long running sessions may go on after SIGTERM.
    pub drain: Duration,
    /// The password the client must give in its local login, if any.
    pub local_password: Option<PasswordSource>,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            listen: None,
            preauth: false,
            login_timeout: Duration::from_secs(30),
            max_connections: 16,
            drain: Duration::from_secs(10),
            local_password: None,
        }
    }
}

/// One account with every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub protocol: Protocol,
    /// Name checked in the certificate and used for the Kerberos target.
    pub host: String,
    /// Address or name actually dialled.
    pub connect: String,
    pub tls: Vec<TlsMethod>,
    pub plain_port: u16,
    pub tls_port: u16,
    pub ca_file: Option<PathBuf>,
    pub pin_sha256: Option<[u8; 32]>,
    pub user: String,
    pub auth: Vec<MechName>,
    pub min_protection: MinProtection,
    pub password: PasswordSource,
    /// Command whose first output line is an OAuth 2.0 access token.
    pub oauth_token_command: Option<String>,
    /// Built-in OAuth 2.0 (`[accounts.X.oauth]`): tokens from `mailtun oauth login`.
    pub oauth: Option<crate::oauth::OAuthSettings>,
    /// TLS client certificate and key (PEM), for EXTERNAL.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub timeout: Duration,
    /// End a relayed session after this long without traffic (none by default: IMAP IDLE
    /// sessions may stay quiet for a long time).
    pub idle_timeout: Option<Duration>,
    /// Name sent in SMTP EHLO.
    pub ehlo_name: String,
    pub gssapi: GssapiSettings,
    pub dangerous: Dangerous,
    /// `mailtun serve`: listener and local login.
    pub serve: ServeSettings,
}

/// A configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}: {message}", .file.display(), .location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default(), .account.as_ref().map(|a| format!(": account `{a}`")).unwrap_or_default())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub location: Option<(usize, usize)>,
    pub account: Option<String>,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    accounts: BTreeMap<String, Spanned<RawAccount>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    protocol: Option<Protocol>,
    host: Spanned<String>,
    connect: Option<String>,
    tls: Option<Spanned<Vec<TlsMethod>>>,
    plain_port: Option<u16>,
    tls_port: Option<u16>,
    ca_file: Option<PathBuf>,
    pin_sha256: Option<Spanned<String>>,
    user: Option<String>,
    auth: Option<Spanned<toml::Value>>,
    min_protection: Option<MinProtection>,
    password: Option<Spanned<RawPassword>>,
    keyring_store: Option<KeyringStore>,
    oauth_token_command: Option<String>,
    oauth: Option<Spanned<crate::oauth::settings::RawOAuth>>,
    client_cert: Option<Spanned<PathBuf>>,
    client_key: Option<PathBuf>,
    timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    ehlo_name: Option<String>,
    gssapi: Option<RawGssapi>,
    dangerous: Option<Dangerous>,
    listen: Option<Spanned<String>>,
    listen_preauth: Option<bool>,
    listen_login_timeout_secs: Option<Spanned<u64>>,
    max_connections: Option<Spanned<u64>>,
    drain_secs: Option<Spanned<u64>>,
    local_password: Option<Spanned<RawPassword>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPassword {
    #[serde(default)]
    keyring: bool,
    command: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGssapi {
    service: Option<String>,
    principal: Option<String>,
    ccache: Option<String>,
    #[serde(default)]
    delegate: bool,
    #[serde(default)]
    authzid: String,
    #[serde(default)]
    kinit: bool,
    kinit_cache: Option<KinitCache>,
    layer: Option<GssLayer>,
    #[serde(default)]
    canonicalize: bool,
}

/// The configuration file to read: `--config`, else `$MAILTUN_CONFIG`, else
/// `$XDG_CONFIG_HOME/mailtun/config.toml`, else `~/.config/mailtun/config.toml`.
pub fn locate(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = env("MAILTUN_CONFIG") {
        return Some(PathBuf::from(p));
    }
    default_location()
}

/// The configuration file found without `--config` and `$MAILTUN_CONFIG`:
/// `$XDG_CONFIG_HOME/mailtun/config.toml`, else `~/.config/mailtun/config.toml`.
pub fn default_location() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(x) = env("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("mailtun/config.toml"));
    }
    env("HOME").map(|h| PathBuf::from(h).join(".config/mailtun/config.toml"))
}

/// Refuses a configuration file that someone other than the user (or root) can change:
/// the file itself writable by its group or by others, or owned by another user; or one
/// of the directories above it writable by group or others (without the sticky bit,
/// which keeps others from replacing entries they do not own) or owned by another user,
/// since whoever can write a directory can put another file in its place. Such a file
/// can name a password or token command, which mailtun would run as the user.
fn refuse_if_others_can_write(file: &Path, meta: &std::fs::Metadata) -> Result<(), ConfigError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let refuse = |message: String| ConfigError {
        file: file.to_path_buf(),
        location: None,
        account: None,
        message,
    };
    let why = "anyone who can change it can name a password command that runs as you, so mailtun does not read it";
    let mode = meta.permissions().mode() & 0o7777;
    if meta.uid() != me && meta.uid() != 0 {
        return Err(refuse(format!(
            "the configuration file is owned by another user (uid {}); {why}: use a file of your own",
            meta.uid()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "the configuration file can be written by others than its owner (mode {mode:04o}); {why}: restrict it with `chmod go-w {}`",
            file.display()
        )));
    }
    // The directories that hold it: the one named, and those of the real file.
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(parent) = file.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        dirs.push(parent.to_path_buf());
    }
    if let Ok(real) = std::fs::canonicalize(file) {
        dirs.extend(real.ancestors().skip(1).map(Path::to_path_buf));
    }
    for dir in dirs {
        let Ok(d) = std::fs::metadata(&dir) else {
            continue;
        };
        let dmode = d.permissions().mode() & 0o7777;
        if d.uid() != me && d.uid() != 0 {
            return Err(refuse(format!(
                "the directory {} that holds the configuration is owned by another user (uid {}); {why}: keep the configuration in a directory of your own",
                dir.display(),
                d.uid()
            )));
        }
        let sticky = dmode & 0o1000 != 0;
        if dmode & 0o022 != 0 && !sticky {
            return Err(refuse(format!(
                "the directory {} that holds the configuration can be written by others than its owner (mode {dmode:04o}), who could replace the file; {why}: restrict it with `chmod go-w {}`",
                dir.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// All accounts of a configuration, parsed and validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub accounts: BTreeMap<String, Account>,
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// A file that another user can change is refused before it is parsed (see
    /// [`refuse_if_others_can_write`]): it can name a password command, which runs as
    /// the user.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let unreadable = |e: std::io::Error| ConfigError {
            file: file.to_path_buf(),
            location: None,
            account: None,
            message: format!(
                "cannot read the configuration: {e} (create it, or name another with --config or MAILTUN_CONFIG)"
            ),
        };
        // The checks look at the file that was opened, so it cannot be swapped between
        // the check and the read.
        let mut opened = std::fs::File::open(file).map_err(unreadable)?;
        let meta = opened.metadata().map_err(unreadable)?;
        refuse_if_others_can_write(file, &meta)?;
        let mut text = String::new();
        opened.read_to_string(&mut text).map_err(unreadable)?;
        let config = Config::parse(file, &text)?;
        config.warn_if_readable_by_others();
        Ok(config)
    }

    /// Warns when the file names a way to a secret (a password command, an OAuth token
    /// command, a client key) and others than its owner may read it: the commands and
    /// paths tell where the secrets are, and a writer could swap the command.
    fn warn_if_readable_by_others(&self) {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(&self.file) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return;
        }
        let holders: Vec<String> = self
            .accounts
            .values()
            .filter_map(|a| {
                let mut what = Vec::new();
                if matches!(a.password, PasswordSource::Command(_)) {
                    what.push("a password command");
                }
                if a.oauth_token_command.is_some() {
                    what.push("an OAuth token command");
                }
                if a.client_cert.is_some() {
                    what.push("a client key");
                }
                (!what.is_empty()).then(|| format!("`{}` ({})", a.name, what.join(", ")))
            })
            .collect();
        if !holders.is_empty() {
            tracing::warn!(
                "{} is readable by others (mode {mode:04o}) and names secrets for account {}: restrict it with `chmod 600 {}`",
                self.file.display(),
                holders.join(", "),
                self.file.display()
            );
        }
    }

    /// Parses configuration text; `file` only serves the error messages.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let err =
            |span: Option<Range<usize>>, account: Option<&str>, message: String| ConfigError {
                file: file.to_path_buf(),
                location: span.as_ref().map(|s| line_col(text, s.start)),
                account: account
                    .map(str::to_owned)
                    .or_else(|| span_account(text, span.clone())),
                message,
            };
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| err(e.span(), None, e.message().trim_end().to_string()))?;
        let mut accounts = BTreeMap::new();
        for (name, raw) in raw.accounts {
            let span = raw.span();
            let account = resolve(&name, raw.into_inner())
                .map_err(|(s, m)| err(Some(s.unwrap_or(span.clone())), Some(&name), m))?;
            accounts.insert(name, account);
        }
        Ok(Config {
            file: file.to_path_buf(),
            accounts,
        })
    }

    /// The account called `name`, or an error listing the ones that exist.
    pub fn account(&self, name: &str) -> Result<&Account, ConfigError> {
        self.accounts.get(name).ok_or_else(|| ConfigError {
            file: self.file.clone(),
            location: None,
            account: Some(name.to_string()),
            message: if self.accounts.is_empty() {
                "no such account: the file defines none (add an [accounts.NAME] table)".into()
            } else {
                format!(
                    "no such account; the file defines: {}",
                    self.accounts.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            },
        })
    }
}

type Located = (Option<Range<usize>>, String);

fn resolve(name: &str, raw: RawAccount) -> Result<Account, Located> {
    let protocol = raw.protocol.unwrap_or(Protocol::Imap);
    let host = host_name(raw.host)?;
    let (tls, tls_span) = tls_methods(raw.tls)?;
    let pin_sha256 = pin(raw.pin_sha256)?;
    let auth_span = raw.auth.as_ref().map(|a| a.span());
    let auth = match raw.auth {
        None => vec![MechName::Gssapi],
        Some(list) => auth_list(list, &tls, protocol)?,
    };
    let min_protection = raw.min_protection.unwrap_or(MinProtection::Tls);
    without_tls_needs_strong(&tls, tls_span, min_protection)?;
    let accept_invalid = raw
        .dangerous
        .as_ref()
        .is_some_and(|d| d.accept_invalid_certs);
    unverified_tls_needs_strong(accept_invalid, pin_sha256.is_some(), &tls, min_protection)?;
    auth_meets_protection(&auth, auth_span, &tls, min_protection)?;
    let password = match raw.password {
        None => PasswordSource::Prompt,
        Some(p) => password_source(p, raw.keyring_store)?,
    };
    let client_cert = client_cert(raw.client_cert, raw.client_key, &auth)?;
    let (timeout, idle_timeout) = timeouts(raw.timeout_secs, raw.idle_timeout_secs)?;
    let oauth = oauth_settings(raw.oauth, raw.keyring_store)?;
    let user = raw.user.unwrap_or_default();
    let on_network = raw.dangerous.as_ref().is_some_and(|d| d.listen_on_network);
    let preauth = raw.listen_preauth.unwrap_or(false);
    if let (Some(lp), true) = (&raw.local_password, preauth) {
        // Fail closed: with no local login, no password would be asked for.
        return Err((
            Some(lp.span()),
            "`local_password` is checked in the local login, and `listen_preauth = true` has none; remove one of them".into(),
        ));
    }
    let serve = ServeSettings {
        listen: raw.listen.map(|l| listen_addr(l, on_network)).transpose()?,
        preauth,
        login_timeout: Duration::from_secs(bounded(
            raw.listen_login_timeout_secs,
            "listen_login_timeout_secs",
            1,
            3600,
            30,
        )?),
        max_connections: bounded(raw.max_connections, "max_connections", 1, 4096, 16)? as usize,
        drain: Duration::from_secs(bounded(raw.drain_secs, "drain_secs", 0, 3600, 10)?),
        local_password: raw
            .local_password
            .map(|p| password_source(p, raw.keyring_store))
            .transpose()?,
    };
    Ok(Account {
        name: name.to_string(),
        protocol,
        connect: raw.connect.unwrap_or_else(|| host.clone()),
        host,
        tls,
        plain_port: raw.plain_port.unwrap_or(protocol.default_plain_port()),
        tls_port: raw.tls_port.unwrap_or(protocol.default_tls_port()),
        ca_file: raw.ca_file,
        pin_sha256,
        user,
        auth,
        min_protection,
        password,
        oauth_token_command: raw.oauth_token_command,
        oauth,
        client_cert,
        timeout,
        idle_timeout,
        ehlo_name: raw.ehlo_name.unwrap_or_else(|| "localhost".into()),
        gssapi: gssapi_settings(raw.gssapi.unwrap_or_default(), protocol)?,
        dangerous: raw.dangerous.unwrap_or_default(),
        serve,
    })
}

/// `[accounts.NAME.oauth]`: built-in OAuth 2.0; its tokens live in the account's keyring.
fn oauth_settings(
    raw: Option<Spanned<crate::oauth::settings::RawOAuth>>,
    store: Option<KeyringStore>,
) -> Result<Option<crate::oauth::OAuthSettings>, Located> {
    let Some(o) = raw else { return Ok(None) };
    let span = o.span();
    let store = store.unwrap_or(KeyringStore::Keyutils);
    crate::oauth::settings::resolve(o.into_inner(), store)
        .map(Some)
        .map_err(|m| (Some(span), m))
}

/// `listen`: `"127.0.0.1:1143"`, `"[::1]:1143"` or `"unix:/path"`; an address other than
/// loopback only under `[dangerous] listen_on_network`.
fn listen_addr(raw: Spanned<String>, on_network: bool) -> Result<ListenAddr, Located> {
    let span = raw.span();
    let text = raw.into_inner();
    if let Some(path) = text.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if !path.is_absolute() || path.file_name().is_none() {
            return Err((
                Some(span),
                "`listen = \"unix:PATH\"` needs an absolute path to the socket file".into(),
            ));
        }
        return Ok(ListenAddr::Unix(path));
    }
    let addr: std::net::SocketAddr = text.parse().map_err(|_| {
        (
            Some(span.clone()),
            format!(
                "`listen` must be \"127.0.0.1:PORT\", \"[::1]:PORT\" or \"unix:/path\", not \"{text}\""
            ),
        )
    })?;
    if !addr.ip().is_loopback() && !on_network {
        return Err((
            Some(span),
            format!(
                "`listen = \"{addr}\"` is not a loopback address: any host that reaches it could try the local login; use 127.0.0.1 or [::1], or set `[dangerous] listen_on_network = true`"
            ),
        ));
    }
    Ok(ListenAddr::Tcp(addr))
}

/// A whole number key between `min` and `max`, `default` when absent.
fn bounded(
    raw: Option<Spanned<u64>>,
    key: &str,
    min: u64,
    max: u64,
    default: u64,
) -> Result<u64, Located> {
    match raw {
        None => Ok(default),
        Some(v) => {
            let span = v.span();
            let v = v.into_inner();
            if (min..=max).contains(&v) {
                Ok(v)
            } else {
                Err((
                    Some(span),
                    format!("`{key}` must be between {min} and {max}"),
                ))
            }
        }
    }
}

/// `host`: a name without blanks.
fn host_name(raw: Spanned<String>) -> Result<String, Located> {
    let span = raw.span();
    let host = raw.into_inner();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err((Some(span), "`host` must be a host name".into()));
    }
    Ok(host)
}

/// `tls`: at least one method, each once, and `"none"` only alone (never a fallback from
/// TLS to no TLS). Returns the methods and the key's span.
fn tls_methods(
    raw: Option<Spanned<Vec<TlsMethod>>>,
) -> Result<(Vec<TlsMethod>, Option<Range<usize>>), Located> {
    let (tls, tls_span) = match raw {
        Some(t) => {
            let span = t.span();
            (t.into_inner(), Some(span))
        }
        None => (vec![TlsMethod::Starttls, TlsMethod::Implicit], None),
    };
    if tls.is_empty() {
        return Err((
            tls_span,
            "`tls` lists no method; use [\"starttls\", \"implicit\"] or one of them".into(),
        ));
    }
    if tls.contains(&TlsMethod::None) && tls.len() > 1 {
        return Err((
            tls_span,
            "`tls = [\"none\"]` stands alone: mailtun never falls back from TLS to no TLS".into(),
        ));
    }
    let mut seen = Vec::new();
    for m in &tls {
        if seen.contains(m) {
            return Err((tls_span, format!("`tls` lists \"{m}\" twice")));
        }
        seen.push(*m);
    }
    Ok((tls, tls_span))
}

/// `pin_sha256`: 64 hex digits.
fn pin(raw: Option<Spanned<String>>) -> Result<Option<[u8; 32]>, Located> {
    let Some(p) = raw else {
        return Ok(None);
    };
    let span = p.span();
    Ok(Some(parse_pin(p.get_ref()).ok_or((
        Some(span),
        "`pin_sha256` must be 64 hex digits (colons allowed): the SHA-256 of the server's certificate, as `mailtun probe` or `openssl x509 -fingerprint -sha256` print it".to_string(),
    ))?))
}

/// `auth`: `"auto"` or a list of known mechanisms, each a SASL mechanism or a login
/// command of this account's protocol; duplicates dropped.
fn auth_list(
    list: Spanned<toml::Value>,
    tls: &[TlsMethod],
    protocol: Protocol,
) -> Result<Vec<MechName>, Located> {
    let span = list.span();
    let bad = |what: String| Err((Some(span.clone()), what));
    match list.into_inner() {
        // Without TLS only a mechanism with a security layer protects the
        // session, so "auto" means GSSAPI there: a Kerberos user's intent.
        toml::Value::String(w) if w == "auto" => Ok(MechName::auto(tls)),
        toml::Value::Array(list) if list.is_empty() => {
            bad("`auth` lists no mechanism; use [\"gssapi\"] or \"auto\"".into())
        }
        toml::Value::Array(list) => {
            let mut out = Vec::new();
            for m in list {
                let Some(mech) = m.as_str().and_then(MechName::parse) else {
                    return bad(format!(
                        "unknown or unsupported mechanism {m} in `auth`; supported: {}",
                        supported_mechanisms()
                    ));
                };
                if let Some(p) = mech.protocol_of_login().filter(|p| *p != protocol) {
                    return bad(format!(
                        "\"{}\" is a {p} command; this account speaks {protocol}",
                        mech.as_str().to_ascii_lowercase()
                    ));
                }
                if !out.contains(&mech) {
                    out.push(mech);
                }
            }
            Ok(out)
        }
        other => bad(format!(
            "`auth` must be \"auto\" or a list of mechanisms, not {other}"
        )),
    }
}

/// Every mechanism name `auth` accepts, as the error message lists them.
fn supported_mechanisms() -> String {
    MechName::ALL
        .iter()
        .map(|m| format!("\"{}\"", m.as_str().to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `tls = ["none"]` is a session without TLS: only `min_protection = "strong"` accepts it.
fn without_tls_needs_strong(
    tls: &[TlsMethod],
    tls_span: Option<Range<usize>>,
    min_protection: MinProtection,
) -> Result<(), Located> {
    if tls == [TlsMethod::None] && min_protection != MinProtection::Strong {
        return Err((
            tls_span,
            "`tls = [\"none\"]` gives a session without TLS: set `min_protection = \"strong\"` to accept one protected by a strong mechanism (GSSAPI with its security layer) instead".into(),
        ));
    }
    Ok(())
}

/// `[dangerous] accept_invalid_certs` without a pin gives unverified TLS, which is not
/// the verified TLS that "tls" and "tls+strong" name: only "strong" may accept it.
fn unverified_tls_needs_strong(
    accept_invalid_certs: bool,
    pinned: bool,
    tls: &[TlsMethod],
    min_protection: MinProtection,
) -> Result<(), Located> {
    let unverified = accept_invalid_certs && !pinned && tls != [TlsMethod::None];
    if unverified && min_protection.requires_tls() {
        return Err((
            None,
            format!(
                "`[dangerous] accept_invalid_certs` without `pin_sha256` gives unverified TLS, which `min_protection = \"{min_protection}\"` does not accept: pin the server's certificate (`pin_sha256`, as `mailtun probe` prints it), or set `min_protection = \"strong\"` to accept a strong mechanism (GSSAPI, SCRAM) over unverified TLS"
            ),
        ));
    }
    Ok(())
}

/// `auth` against `min_protection` and `tls`: a strong mechanism when the protection
/// asks for one, and without TLS only mechanisms that negotiate a security layer.
fn auth_meets_protection(
    auth: &[MechName],
    auth_span: Option<Range<usize>>,
    tls: &[TlsMethod],
    min_protection: MinProtection,
) -> Result<(), Located> {
    if min_protection.requires_strong() && !auth.iter().any(|m| m.is_strong()) {
        return Err((
            None,
            format!(
                "`min_protection = \"{min_protection}\"` needs a strong mechanism in `auth` (GSSAPI, SCRAM, EXTERNAL)"
            ),
        ));
    }
    // Without TLS the session has only the mechanism's security layer to protect it: a
    // mechanism without one would leave the relay in cleartext, and listing it would let
    // an attacker who hides GSSAPI (or refuses it) push the session onto it.
    if tls == [TlsMethod::None] {
        let unlayered: Vec<String> = auth
            .iter()
            .filter(|m| !m.negotiates_layer())
            .map(|m| format!("\"{}\"", m.as_str().to_ascii_lowercase()))
            .collect();
        if !unlayered.is_empty() {
            return Err((
                auth_span,
                format!(
                    "`tls = [\"none\"]` needs a mechanism that negotiates a security layer (GSSAPI), but `auth` also lists {}, which would leave the session in cleartext: remove {}, or use TLS",
                    unlayered.join(", "),
                    if unlayered.len() == 1 { "it" } else { "them" }
                ),
            ));
        }
    }
    Ok(())
}

/// `password`: `{ keyring = true }` (in `keyring_store`) or `{ command = "..." }`.
fn password_source(
    raw: Spanned<RawPassword>,
    keyring_store: Option<KeyringStore>,
) -> Result<PasswordSource, Located> {
    let span = raw.span();
    match raw.into_inner() {
        RawPassword {
            keyring: true,
            command: None,
        } => Ok(PasswordSource::Keyring(
            keyring_store.unwrap_or(KeyringStore::Keyutils),
        )),
        RawPassword {
            keyring: false,
            command: Some(c),
        } if !c.trim().is_empty() => Ok(PasswordSource::Command(c)),
        _ => Err((
            Some(span),
            "`password` must be `{ keyring = true }` or `{ command = \"...\" }`".into(),
        )),
    }
}

/// `client_cert` and `client_key`: both or neither; EXTERNAL alone needs them.
fn client_cert(
    cert: Option<Spanned<PathBuf>>,
    key: Option<PathBuf>,
    auth: &[MechName],
) -> Result<Option<(PathBuf, PathBuf)>, Located> {
    let client_cert = match (cert, key) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((c.into_inner(), k)),
        (c, _) => {
            return Err((
                c.map(|c| c.span()),
                "`client_cert` and `client_key` go together".into(),
            ));
        }
    };
    if auth.contains(&MechName::External) && client_cert.is_none() && auth.len() == 1 {
        return Err((None, "EXTERNAL needs `client_cert` and `client_key`".into()));
    }
    Ok(client_cert)
}

/// `timeout_secs` (1 s to an hour, 30 s by default) and `idle_timeout_secs` (1 s to a
/// week, none by default).
fn timeouts(
    timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
) -> Result<(Duration, Option<Duration>), Located> {
    let timeout = match timeout_secs {
        None => Duration::from_secs(30),
        Some(t) if *t.get_ref() == 0 || *t.get_ref() > 3600 => {
            return Err((
                Some(t.span()),
                "`timeout_secs` must be between 1 and 3600".into(),
            ));
        }
        Some(t) => Duration::from_secs(*t.get_ref()),
    };
    let idle_timeout = match idle_timeout_secs {
        None => None,
        Some(t) if *t.get_ref() == 0 || *t.get_ref() > 7 * 86400 => {
            return Err((
                Some(t.span()),
                "`idle_timeout_secs` must be between 1 and 604800 (a week)".into(),
            ));
        }
        Some(t) => Some(Duration::from_secs(*t.get_ref())),
    };
    Ok((timeout, idle_timeout))
}

/// `[accounts.NAME.gssapi]` with its defaults (the service follows the protocol, the
/// layer is confidentiality).
fn gssapi_settings(g: RawGssapi, protocol: Protocol) -> Result<GssapiSettings, Located> {
    if g.kinit_cache.is_some() && !g.kinit {
        return Err((
            None,
            "`gssapi.kinit_cache` says where `gssapi.kinit` keeps its ticket: set `gssapi.kinit = true` too, or remove it".into(),
        ));
    }
    if g.kinit_cache == Some(KinitCache::Account) && g.ccache.is_none() {
        return Err((
            None,
            "`gssapi.kinit_cache = \"account\"` stores the ticket in the account's cache: set `gssapi.ccache` (e.g. \"FILE:/path\")".into(),
        ));
    }
    Ok(GssapiSettings {
        service: g
            .service
            .unwrap_or_else(|| protocol.default_gss_service().into()),
        principal: g.principal,
        ccache: g.ccache,
        delegate: g.delegate,
        authzid: g.authzid,
        kinit: g.kinit,
        kinit_cache: g.kinit_cache.unwrap_or_default(),
        layer: g.layer.unwrap_or(GssLayer::Confidentiality),
        canonicalize: g.canonicalize,
    })
}

/// Parses a SHA-256 fingerprint written as hex, with or without colons.
pub fn parse_pin(s: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The account whose table holds `span`, from the nearest `[accounts.NAME...]` header above.
fn span_account(text: &str, span: Option<Range<usize>>) -> Option<String> {
    let start = span?.start.min(text.len());
    text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        let inner = l.strip_prefix("[accounts.")?;
        let name = inner.split(['.', ']']).next()?.trim_matches('"');
        Some(name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    /// Each mechanism's facts are the ones `sasl::properties` states under its name, and
    /// the protocol logins are exactly the ones that belong to a protocol.
    #[test]
    fn every_mechanism_name_has_its_own_properties() {
        use crate::sasl::properties::{ALL, PROTOCOL_LOGINS};
        for m in MechName::ALL {
            assert_eq!(m.properties().name(), m.as_str());
            assert_eq!(
                m.is_protocol_login(),
                PROTOCOL_LOGINS.contains(m.properties()),
                "{m}"
            );
        }
        assert_eq!(MechName::ALL.len(), ALL.len() + PROTOCOL_LOGINS.len());
    }

    #[test]
    fn gssapi_canonicalize_is_read() {
        let c = parse("[accounts.a]\nhost = \"h\"\n[accounts.a.gssapi]\ncanonicalize = true\n")
            .unwrap();
        assert!(c.account("a").unwrap().gssapi.canonicalize);
    }

    #[test]
    fn defaults_follow_the_protocol() {
        let c = parse("[accounts.work]\nhost = \"mail.example.org\"\nuser = \"alice\"\n").unwrap();
        let a = c.account("work").unwrap();
        assert_eq!(a.protocol, Protocol::Imap);
        assert_eq!((a.plain_port, a.tls_port), (143, 993));
        assert_eq!(a.tls, vec![TlsMethod::Starttls, TlsMethod::Implicit]);
        assert_eq!(a.connect, "mail.example.org");
        assert_eq!(a.gssapi.service, "imap");
        assert!(!a.gssapi.delegate);
        assert!(!a.gssapi.canonicalize);
    }

    #[test]
    fn unknown_key_names_file_line_column_and_account() {
        let e = parse("[accounts.work]\nhost = \"h\"\nhots = 1\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("test.toml:3:1: account `work`:"), "{msg}");
        assert!(msg.contains("hots"), "{msg}");
    }

    #[test]
    fn wrong_type_is_located() {
        let e = parse("[accounts.a]\nhost = \"h\"\nplain_port = \"x\"\n").unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(3), "{e}");
        assert_eq!(e.account.as_deref(), Some("a"));
    }

    #[test]
    fn unsupported_mechanism_and_bad_pin_are_refused() {
        let e = parse("[accounts.a]\nhost = \"h\"\nauth = [\"gssapi\", \"rot13\"]\n").unwrap_err();
        assert!(e.to_string().contains("rot13"), "{e}");
        assert_eq!(e.location, Some((3, 8)));
        let e = parse("[accounts.a]\nhost = \"h\"\npin_sha256 = \"abc\"\n").unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
    }

    #[test]
    fn a_session_without_tls_must_be_asked_for_explicitly() {
        let e = parse("[accounts.a]\nhost = \"h\"\ntls = [\"none\"]\n").unwrap_err();
        assert!(e.to_string().contains("min_protection = \"strong\""), "{e}");
        let e = parse("[accounts.a]\nhost = \"h\"\ntls = [\"starttls\", \"none\"]\nmin_protection = \"strong\"\n").unwrap_err();
        assert!(e.to_string().contains("stands alone"), "{e}");
        let c = parse("[accounts.a]\nhost = \"h\"\ntls = [\"none\"]\nmin_protection = \"strong\"\n[accounts.a.gssapi]\nlayer = \"integrity\"\n").unwrap();
        assert_eq!(c.account("a").unwrap().gssapi.layer, GssLayer::Integrity);
    }

    #[test]
    fn unverified_tls_is_accepted_only_by_min_protection_strong() {
        let dangerous = "[accounts.a.dangerous]\naccept_invalid_certs = true\n";
        for min in [
            "",
            "min_protection = \"tls\"\n",
            "min_protection = \"tls+strong\"\n",
        ] {
            let e = parse(&format!("[accounts.a]\nhost = \"h\"\n{min}{dangerous}")).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("account `a`"), "{text}");
            assert!(text.contains("unverified TLS"), "{text}");
            assert!(text.contains("pin_sha256"), "{text}");
        }
        parse(&format!(
            "[accounts.a]\nhost = \"h\"\nmin_protection = \"strong\"\n{dangerous}"
        ))
        .unwrap();
        let pin = "AB:".repeat(31) + "AB";
        parse(&format!(
            "[accounts.a]\nhost = \"h\"\npin_sha256 = \"{pin}\"\n{dangerous}"
        ))
        .unwrap();
    }

    #[test]
    fn without_tls_only_mechanisms_with_a_security_layer_are_accepted() {
        let none = "[accounts.a]\nhost = \"h\"\ntls = [\"none\"]\nmin_protection = \"strong\"\n";
        for (auth, named) in [
            ("[\"gssapi\", \"scram-sha-256\"]", "\"scram-sha-256\""),
            ("[\"scram-sha-1\"]", "\"scram-sha-1\""),
            ("[\"gssapi\", \"external\"]", "\"external\""),
        ] {
            let e = parse(&format!("{none}auth = {auth}\n")).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(named), "{auth}: {text}");
            assert!(text.contains("security layer"), "{auth}: {text}");
            assert_eq!(e.location.map(|l| l.0), Some(5), "{auth}: {text}");
        }
        // "auto" keeps GSSAPI only; with TLS it keeps everything.
        let c = parse(&format!("{none}auth = \"auto\"\n")).unwrap();
        assert_eq!(c.account("a").unwrap().auth, [MechName::Gssapi]);
        let c = parse("[accounts.a]\nhost = \"h\"\nauth = \"auto\"\n").unwrap();
        assert!(
            c.account("a")
                .unwrap()
                .auth
                .contains(&MechName::ScramSha256)
        );
        let c = parse(&format!("{none}auth = [\"gssapi\"]\n")).unwrap();
        assert_eq!(c.account("a").unwrap().auth, [MechName::Gssapi]);
    }

    #[test]
    fn listen_is_loopback_unless_dangerous() {
        let base = "[accounts.a]\nhost = \"h\"\n";
        let c = parse(&format!("{base}listen = \"127.0.0.1:1143\"\n")).unwrap();
        let a = c.account("a").unwrap();
        assert_eq!(
            a.serve.listen,
            Some(ListenAddr::Tcp("127.0.0.1:1143".parse().unwrap()))
        );
        assert_eq!(a.serve.max_connections, 16);
        assert_eq!(a.serve.drain, Duration::from_secs(10));
        let c = parse(&format!("{base}listen = \"[::1]:1143\"\n")).unwrap();
        assert!(c.account("a").unwrap().serve.listen.is_some());
        let c = parse(&format!("{base}listen = \"unix:/run/user/1/m.sock\"\n")).unwrap();
        assert_eq!(
            c.account("a").unwrap().serve.listen,
            Some(ListenAddr::Unix("/run/user/1/m.sock".into()))
        );
        let e = parse(&format!("{base}listen = \"0.0.0.0:1143\"\n")).unwrap_err();
        assert!(e.to_string().contains("listen_on_network"), "{e}");
        assert!(e.to_string().contains("account `a`"), "{e}");
        let c = parse(&format!(
            "{base}listen = \"0.0.0.0:1143\"\n[accounts.a.dangerous]\nlisten_on_network = true\n"
        ))
        .unwrap();
        assert!(c.account("a").unwrap().serve.listen.is_some());
        assert!(parse(&format!("{base}listen = \"localhost\"\n")).is_err());
        assert!(parse(&format!("{base}listen = \"unix:rel.sock\"\n")).is_err());
        assert!(parse(&format!("{base}max_connections = 0\n")).is_err());
        assert_eq!(a.serve.login_timeout, Duration::from_secs(30));
        let c = parse(&format!(
            "{base}local_password = {{ command = \"echo x\" }}\nlisten_login_timeout_secs = 5\nprotocol = \"smtp\"\n"
        ))
        .unwrap();
        let a = c.account("a").unwrap();
        assert_eq!(
            a.serve.local_password,
            Some(PasswordSource::Command("echo x".into()))
        );
        assert_eq!(a.serve.login_timeout, Duration::from_secs(5));
        assert!(parse(&format!("{base}listen_login_timeout_secs = 0\n")).is_err());
        let c = parse(&format!("{base}listen_preauth = true\n")).unwrap();
        assert!(c.account("a").unwrap().serve.preauth);
        let e = parse(&format!(
            "{base}local_password = {{ command = \"echo x\" }}\nlisten_preauth = true\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("listen_preauth"), "{e}");
    }

    #[test]
    fn pin_accepts_colons() {
        let hex = "AB:".repeat(31) + "AB";
        assert_eq!(parse_pin(&hex), Some([0xab; 32]));
    }

    #[test]
    fn missing_account_lists_the_others() {
        let c = parse("[accounts.a]\nhost = \"h\"\n[accounts.b]\nhost = \"h\"\n").unwrap();
        let e = c.account("c").unwrap_err();
        assert!(e.to_string().contains("a, b"), "{e}");
    }

    #[test]
    fn auto_ranks_gssapi_first_and_leaves_cram_md5_out() {
        let c = parse("[accounts.a]\nhost = \"h\"\nauth = \"auto\"\n").unwrap();
        let auth = &c.account("a").unwrap().auth;
        assert_eq!(auth.first(), Some(&MechName::Gssapi));
        assert_eq!(auth.last(), Some(&MechName::Login));
        assert!(!auth.contains(&MechName::CramMd5));
        assert!(!auth.iter().any(|m| m.is_protocol_login()));
    }

    #[test]
    fn protocol_logins_are_named_and_belong_to_their_protocol() {
        let c = parse("[accounts.a]\nhost = \"h\"\nauth = [\"scram-sha-256\", \"imap-login\"]\n")
            .unwrap();
        assert_eq!(
            c.account("a").unwrap().auth,
            [MechName::ScramSha256, MechName::ImapLogin]
        );
        let c = parse(
            "[accounts.a]\nprotocol = \"pop3\"\nhost = \"h\"\nauth = [\"apop\", \"user-pass\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.account("a").unwrap().auth,
            [MechName::Apop, MechName::UserPass]
        );
        let e = parse("[accounts.a]\nhost = \"h\"\nauth = [\"user-pass\"]\n").unwrap_err();
        assert!(
            e.to_string().contains("\"user-pass\" is a pop3 command"),
            "{e}"
        );
        let e = parse("[accounts.a]\nprotocol = \"smtp\"\nhost = \"h\"\nauth = [\"imap-login\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("imap command"), "{e}");
        // Without TLS a login command could only be sent in the clear: refused here, and
        // skipped by the policy when a strong mechanism is listed too.
        let e = parse("[accounts.a]\nhost = \"h\"\ntls = [\"none\"]\nmin_protection = \"strong\"\nauth = [\"imap-login\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("strong mechanism"), "{e}");
    }

    #[test]
    fn password_sources_and_min_protection() {
        let c = parse(
            "[accounts.a]\nhost = \"h\"\nauth = [\"scram-sha-256\"]\nmin_protection = \"tls+strong\"\npassword = { command = \"pass show x\" }\n",
        )
        .unwrap();
        let a = c.account("a").unwrap();
        assert_eq!(a.password, PasswordSource::Command("pass show x".into()));
        assert_eq!(a.min_protection, MinProtection::TlsStrong);
        let e = parse(
            "[accounts.a]\nhost = \"h\"\nauth = [\"plain\"]\nmin_protection = \"tls+strong\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("strong mechanism"), "{e}");
        let e =
            parse("[accounts.a]\nhost = \"h\"\npassword = { keyring = true, command = \"x\" }\n")
                .unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(3), "{e}");
        let c = parse("[accounts.a]\nhost = \"h\"\npassword = { keyring = true }\nkeyring_store = \"secret-service\"\n").unwrap();
        assert_eq!(
            c.account("a").unwrap().password,
            PasswordSource::Keyring(KeyringStore::SecretService)
        );
    }

    #[test]
    fn idle_timeout_is_off_unless_set() {
        let c = parse("[accounts.a]\nhost = \"h\"\n").unwrap();
        assert_eq!(c.account("a").unwrap().idle_timeout, None);
        let c = parse("[accounts.a]\nhost = \"h\"\nidle_timeout_secs = 1800\n").unwrap();
        assert_eq!(
            c.account("a").unwrap().idle_timeout,
            Some(Duration::from_secs(1800))
        );
        let e = parse("[accounts.a]\nhost = \"h\"\nidle_timeout_secs = 0\n").unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(3), "{e}");
    }

    #[test]
    fn kinit_cache_is_memory_unless_the_account_cache_is_asked_for() {
        let g = "[accounts.a]\nhost = \"h\"\n[accounts.a.gssapi]\nkinit = true\n";
        let c = parse(g).unwrap();
        assert_eq!(
            c.account("a").unwrap().gssapi.kinit_cache,
            KinitCache::Memory
        );
        let c = parse(&format!(
            "{g}kinit_cache = \"account\"\nccache = \"FILE:/x\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.account("a").unwrap().gssapi.kinit_cache,
            KinitCache::Account
        );
        let e = parse(&format!("{g}kinit_cache = \"account\"\n")).unwrap_err();
        assert!(e.to_string().contains("set `gssapi.ccache`"), "{e}");
        let e =
            parse("[accounts.a]\nhost = \"h\"\n[accounts.a.gssapi]\nkinit_cache = \"memory\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("set `gssapi.kinit = true`"), "{e}");
    }
}
