//! The only module that calls the Kerberos (GSS-API) library: per-account credentials,
//! the client security context with mutual authentication, and wrap/unwrap.
//!
//! Every call here may block (it can talk to the KDC); the session runs them off the
//! async worker threads.

use std::ffi::CString;
use std::ptr;

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::error::{Error as GssError, MajorFlags};
use libgssapi::name::Name;
use libgssapi::oid::{
    GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_ENTERPRISE_NAME, GSS_NT_KRB5_PRINCIPAL,
    OidSet,
};
use libgssapi_sys as sys;

use crate::config::{GssapiSettings, KinitCache};
use crate::krb5_profile::{Profile, canonical_guess, enterprise_name};
use crate::sasl::gssapi::GssContext;
use crate::sasl::{GssFailure, GssFailureKind};
use crate::secret::Secret;

// krb5 minor status codes (com_err table krb5, see krb5/krb5.h) worth a specific remedy.
const KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN: i32 = -1765328377;
const KRB5KDC_ERR_CLIENT_REVOKED: i32 = -1765328366;
const KRB5KDC_ERR_KEY_EXP: i32 = -1765328361;
const KRB5KDC_ERR_ETYPE_NOSUPP: i32 = -1765328370;
const KRB5KRB_AP_ERR_TKT_EXPIRED: i32 = -1765328352;
const KRB5KRB_AP_ERR_SKEW: i32 = -1765328347;
/// The client refused the KDC's reply because of its timestamp (MIT, with
/// `kdc_timesync = 0`; by default the library adopts the KDC's time instead).
const KRB5_KDCREP_SKEW: i32 = -1765328236;
const KRB5_KDC_UNREACH: i32 = -1765328228;
const KRB5_REALM_UNKNOWN: i32 = -1765328230;
const KRB5_CC_NOTFOUND: i32 = -1765328243;
const KRB5_FCC_NOFILE: i32 = -1765328189;
const KRB5_CC_BADNAME: i32 = -1765328245;

fn failure(context: &str, e: GssError) -> GssFailure {
    let minor = e.minor as i32;
    let kind = match minor {
        KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN => GssFailureKind::UnknownServer,
        KRB5KDC_ERR_KEY_EXP => GssFailureKind::PasswordExpired,
        KRB5KDC_ERR_CLIENT_REVOKED => GssFailureKind::AccountLocked,
        KRB5KDC_ERR_ETYPE_NOSUPP => GssFailureKind::EnctypeUnsupported,
        KRB5KRB_AP_ERR_TKT_EXPIRED => GssFailureKind::Expired,
        KRB5KRB_AP_ERR_SKEW | KRB5_KDCREP_SKEW => GssFailureKind::ClockSkew,
        KRB5_KDC_UNREACH => GssFailureKind::KdcUnreachable,
        KRB5_REALM_UNKNOWN => GssFailureKind::UnknownRealm,
        KRB5_CC_NOTFOUND | KRB5_FCC_NOFILE | KRB5_CC_BADNAME => GssFailureKind::NoCredentials,
        _ if e.major.contains(MajorFlags::GSS_S_CREDENTIALS_EXPIRED) => GssFailureKind::Expired,
        _ if e.major.contains(MajorFlags::GSS_S_NO_CRED) => GssFailureKind::NoCredentials,
        _ => GssFailureKind::Other,
    };
    let mut message = format!("{context}: {}", e.to_string().trim());
    if kind == GssFailureKind::KdcUnreachable {
        message.push_str(&kdcs_named(&message));
    }
    GssFailure { kind, message }
}

/// For "Cannot contact any KDC for realm 'R'": which KDCs krb5.conf gives R (the library
/// does not say), as a suffix for the message.
fn kdcs_named(message: &str) -> String {
    let Some(realm) = message
        .split_once("for realm ")
        .and_then(|(_, r)| r.get(1..))
        .and_then(|r| r.split(['\'', '"']).next())
    else {
        return String::new();
    };
    let kdcs = Profile::load().kdcs(realm).join(", ");
    if kdcs.is_empty() {
        format!("; krb5.conf names no KDC for {realm} (the library may have asked DNS)")
    } else {
        format!("; tried the KDCs of {realm} in krb5.conf: {kdcs}")
    }
}

/// A client security context towards `service@host`, ready for the GSSAPI mechanism.
pub struct KerberosContext {
    ctx: ClientCtx,
    /// The service principal asked for, as `service/host@REALM` (the client's realm when
    /// the name has none), for messages only.
    target: String,
    /// The principal asked for and where its realm comes from, for `-v`.
    description: String,
}

impl KerberosContext {
    /// Acquires the account's credentials and prepares a context for the service
    /// principal `service/host`: `host` as configured (lower case), never rewritten by DNS
    /// (forward or reverse) or by server text, unless the account sets
    /// `gssapi.canonicalize` (then the library's host-based name and its krb5.conf rules).
    pub fn new(settings: &GssapiSettings, host: &str) -> Result<Self, GssFailure> {
        let target = Target::new(settings, host)?;
        let cred = acquire(settings)?;
        Ok(Self::with_cred(settings, target, cred))
    }

    /// Like [`KerberosContext::new`], with a ticket obtained from the KDC with `password`
    /// (`gss_acquire_cred_with_password`); it lives in memory only.
    pub fn with_password(
        settings: &GssapiSettings,
        host: &str,
        password: &Secret<String>,
    ) -> Result<Self, GssFailure> {
        let target = Target::new(settings, host)?;
        let principal = settings.principal.as_deref().ok_or(GssFailure {
            kind: GssFailureKind::NoCredentials,
            message: "`gssapi.kinit` needs `gssapi.principal` or `user` (the principal to get a ticket for)"
                .into(),
        })?;
        // A user principal name (`alice@example.org`) goes to the KDC as an enterprise
        // name, which the KDC canonicalises to the account's principal.
        let enterprise = enterprise_name(principal, &Profile::load());
        let name = match &enterprise {
            Some(e) => Name::new(e.as_bytes(), Some(GSS_NT_KRB5_ENTERPRISE_NAME)),
            None => Name::new(principal.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)),
        }
        .map_err(|e| failure("the principal name is not valid", e))?;
        let mechs = OidSet::singleton(GSS_MECH_KRB5)
            .map_err(|e| failure("the Kerberos mechanism is not available", e))?;
        let cred = Cred::acquire_with_password(
            Some(&name),
            password.expose(),
            None,
            CredUsage::Initiate,
            Some(&mechs),
        )
        .map_err(|e| {
            let mut f = failure(
                &format!("getting a ticket for {principal} with the password failed"),
                e,
            );
            let why = match f.kind {
                GssFailureKind::PasswordExpired => "the password of {} has expired",
                GssFailureKind::AccountLocked => {
                    "the KDC refuses tickets to {}: the account is locked out or disabled"
                }
                _ => return f,
            };
            f.message = format!("{} ({})", why.replace("{}", principal), f.message);
            f
        })?;
        // Not canonicalised, the ticket names the enterprise name (`alice\@example.org@R`),
        // which no server maps to a user.
        if let Some(e) = enterprise {
            if cred.name().map_or(true, |n| n.to_string().contains("\\@")) {
                return Err(GssFailure {
                    kind: GssFailureKind::Other,
                    message: format!(
                        "the KDC gave a ticket for the user principal name {principal} without canonicalising it to the account's principal: set `canonicalize = true` in krb5.conf's [libdefaults] (for all realms or in a `{} = {{ ... }}` subsection), or set `gssapi.principal` to user@REALM",
                        e.rsplit_once('@').map_or("REALM", |(_, r)| r)
                    ),
                });
            }
        }
        if let (KinitCache::Account, Some(ccache)) = (settings.kinit_cache, &settings.ccache) {
            cred.store_into(
                ccache,
                true,
                false,
                CredUsage::Initiate,
                Some(GSS_MECH_KRB5),
            )
            .map_err(|e| failure(&format!("storing the new ticket in {ccache} failed"), e))?;
        }
        Ok(Self::with_cred(settings, target, cred))
    }

    fn with_cred(settings: &GssapiSettings, target: Target, cred: Cred) -> Self {
        // Without a realm of its own, the request starts in the client's realm (where a
        // referral, if any, comes from): messages name that one.
        let client_realm = || {
            cred.name()
                .ok()
                .and_then(|n| n.to_string().rsplit_once('@').map(|(_, r)| r.to_string()))
        };
        let shown = match (&target.realm, client_realm()) {
            (Some(r), _) if !r.is_empty() => format!("{}@{r}", target.principal),
            (_, Some(r)) => format!("{}@{r}", target.principal),
            (_, None) => target.principal.clone(),
        };
        let description = match &target.realm {
            None => format!(
                "Kerberos service {}@{}, as the Kerberos library canonicalizes it \
                 (`gssapi.canonicalize = true`: krb5.conf's dns_canonicalize_hostname and rdns \
                 may rewrite the host name through DNS)",
                settings.service, target.host
            ),
            Some(r) if r.is_empty() => format!(
                "Kerberos service principal {}@ (the configured host name, not rewritten by DNS; \
                 no domain_realm entry for it, so the realm comes from the KDC's referral, \
                 asked first in the client's realm: {shown})",
                target.principal
            ),
            Some(_) => format!(
                "Kerberos service principal {shown} (the configured host name, not rewritten by DNS)"
            ),
        };
        let mut flags = CtxFlags::GSS_C_MUTUAL_FLAG
            | CtxFlags::GSS_C_SEQUENCE_FLAG
            | CtxFlags::GSS_C_REPLAY_FLAG
            | CtxFlags::GSS_C_INTEG_FLAG
            | CtxFlags::GSS_C_CONF_FLAG;
        if settings.delegate {
            flags |= CtxFlags::GSS_C_DELEG_FLAG;
        }
        let ctx = ClientCtx::new(Some(cred), target.name, flags, Some(GSS_MECH_KRB5));
        KerberosContext {
            ctx,
            target: shown,
            description,
        }
    }

    /// What `-v` says about the service principal asked for (no secret in it).
    pub fn target_description(&self) -> &str {
        &self.description
    }
}

/// The target name to import, and how it is shown.
struct Target {
    name: Name,
    /// `service/host` (exact), or `service/host` as configured before the library's
    /// canonicalization (`gssapi.canonicalize`).
    principal: String,
    /// The host part as put in the name.
    host: String,
    /// The realm put in the name (empty: the referral realm); `None` when the library
    /// builds the principal itself (`gssapi.canonicalize`).
    realm: Option<String>,
}

impl Target {
    fn new(settings: &GssapiSettings, host: &str) -> Result<Self, GssFailure> {
        let invalid = |e| failure("the server name is not a valid Kerberos service name", e);
        if settings.canonicalize {
            // The library's own behaviour: GSS_C_NT_HOSTBASED_SERVICE, which krb5.conf's
            // dns_canonicalize_hostname and rdns apply to.
            let hostbased = format!("{}@{}", settings.service, host);
            let name =
                Name::new(hostbased.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE)).map_err(invalid)?;
            return Ok(Target {
                name,
                principal: format!("{}/{host}", settings.service),
                host: host.to_string(),
                realm: None,
            });
        }
        let host = host.to_ascii_lowercase();
        let realm = host_realm(&host)?;
        let full = service_principal(&settings.service, &host, &realm)?;
        // A Kerberos principal name (not a host-based service name): the library takes it
        // as it is, and an empty realm is MIT's referral realm.
        let name = Name::new(full.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(invalid)?;
        let principal = full
            .strip_suffix(&format!("@{}", escape(&realm)))
            .unwrap_or(&full)
            .to_string();
        Ok(Target {
            name,
            principal,
            host,
            realm: Some(realm),
        })
    }
}

/// `service/host@realm` in Kerberos principal syntax: `host` in lower case and otherwise
/// as given, each part escaped (`\\`, `/`, `@`) so that nothing in the configuration adds
/// a component or a realm. `realm` may be empty (the referral realm).
fn service_principal(service: &str, host: &str, realm: &str) -> Result<String, GssFailure> {
    if [service, host, realm].iter().any(|p| p.contains('\0')) {
        return Err(GssFailure {
            kind: GssFailureKind::Other,
            message: "the server name contains a NUL byte".into(),
        });
    }
    Ok(format!(
        "{}/{}@{}",
        escape(service),
        escape(&host.to_ascii_lowercase()),
        escape(realm)
    ))
}

fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        if matches!(c, '\\' | '/' | '@') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The krb5 library calls for the realm of a host (MIT and Heimdal share these
/// signatures; `krb5_realm` is `char *` in Heimdal).
mod krb5 {
    use std::ffi::{c_char, c_void};

    #[link(name = "krb5")]
    unsafe extern "C" {
        pub fn krb5_init_context(context: *mut *mut c_void) -> i32;
        pub fn krb5_free_context(context: *mut c_void);
        pub fn krb5_get_host_realm(
            context: *mut c_void,
            host: *const c_char,
            realms: *mut *mut *mut c_char,
        ) -> i32;
        pub fn krb5_free_host_realm(context: *mut c_void, realms: *mut *mut c_char) -> i32;
    }
}

/// The realm of `host` by krb5.conf's `[domain_realm]` (and the library's other
/// host-realm rules, none of which canonicalizes the name); empty when none applies:
/// the referral realm, so the client's KDC decides by referral.
fn host_realm(host: &str) -> Result<String, GssFailure> {
    let host = CString::new(host).map_err(|_| GssFailure {
        kind: GssFailureKind::Other,
        message: "the server name contains a NUL byte".into(),
    })?;
    let config_failure = |what: &str, code: i32| GssFailure {
        kind: GssFailureKind::Other,
        message: format!("{what} failed (krb5 error {code}): check krb5.conf (or KRB5_CONFIG)"),
    };
    let mut context: *mut std::ffi::c_void = ptr::null_mut();
    // SAFETY: `context` receives a new krb5 context, freed below.
    let code = unsafe { krb5::krb5_init_context(&mut context) };
    if code != 0 {
        return Err(config_failure("reading the Kerberos configuration", code));
    }
    let mut realms: *mut *mut std::ffi::c_char = ptr::null_mut();
    // SAFETY: `context` is live and `host` a NUL-terminated string for the call; `realms`
    // receives a NULL-terminated list that krb5_free_host_realm releases.
    let code = unsafe { krb5::krb5_get_host_realm(context, host.as_ptr(), &mut realms) };
    let realm = if code != 0 {
        Err(config_failure(
            "finding the realm of the server's host name",
            code,
        ))
    } else if realms.is_null() {
        Ok(String::new())
    } else {
        // SAFETY: a non-null list from krb5_get_host_realm; its first entry is a
        // NUL-terminated string or NULL (an empty list).
        let first = unsafe { *realms };
        let realm = if first.is_null() {
            String::new()
        } else {
            // SAFETY: see above.
            unsafe { std::ffi::CStr::from_ptr(first) }
                .to_string_lossy()
                .into_owned()
        };
        // SAFETY: `realms` came from krb5_get_host_realm on this context, released once.
        unsafe { krb5::krb5_free_host_realm(context, realms) };
        Ok(realm)
    };
    // SAFETY: `context` came from krb5_init_context and is released once.
    unsafe { krb5::krb5_free_context(context) };
    realm
}

impl GssContext for KerberosContext {
    fn step(&mut self, token: Option<&[u8]>) -> Result<Option<Vec<u8>>, GssFailure> {
        self.ctx
            .step(token, None)
            .map(|t| t.map(|b| b.to_vec()))
            .map_err(|e| {
                let detail = e.to_string().trim().to_string();
                let mut f = failure("the Kerberos exchange with the server failed", e);
                if f.kind == GssFailureKind::UnknownServer {
                    unknown_server(&mut f, &detail, &self.target);
                } else if f.kind == GssFailureKind::EnctypeUnsupported && token.is_none() {
                    f.message = format!(
                        "the KDC refused a ticket for {}: it has no key of that service in an encryption type it may use; the service's key is most likely RC4-only ({})",
                        self.target, f.message
                    );
                } else if f.kind == GssFailureKind::ClockSkew && token.is_none() {
                    // The first step asks the KDC for a ticket for the service (unless one
                    // is cached): a skew here is the KDC's verdict on the TGS request.
                    f.message = format!(
                        "the KDC refused a ticket for {}: its clock and this machine's differ too much ({detail})",
                        self.target
                    );
                }
                f
            })
    }

    fn is_complete(&self) -> bool {
        self.ctx.is_complete()
    }

    fn mutual(&self) -> bool {
        self.ctx
            .flags()
            .is_ok_and(|f| f.contains(CtxFlags::GSS_C_MUTUAL_FLAG))
    }

    fn wrap(&mut self, encrypt: bool, msg: &[u8]) -> Result<Vec<u8>, GssFailure> {
        self.ctx
            .wrap(encrypt, msg)
            .map(|b| b.to_vec())
            .map_err(|e| failure("gss_wrap failed", e))
    }

    fn unwrap(&mut self, msg: &[u8]) -> Result<(Vec<u8>, bool), GssFailure> {
        let data = self
            .ctx
            .unwrap(msg)
            .map(|b| b.to_vec())
            .map_err(|e| failure("gss_unwrap failed", e))?;
        Ok((data, conf_state(msg)))
    }
}

/// Says what the KDC lacked when it knew no such server principal. The library names the
/// principal it asked for (`Server NAME not found in Kerberos database`): a cross-realm
/// `krbtgt/SERVICE-REALM@CLIENT-REALM` means the client's realm has no trust path to the
/// service's realm (the realm krb5.conf's `[domain_realm]` or a referral gave the host);
/// otherwise it is the service principal in the realm actually asked. `asked` is the
/// service principal as this side built it, for when the library names none.
fn unknown_server(f: &mut GssFailure, detail: &str, asked: &str) {
    let named = detail
        .find(" not found in Kerberos database")
        .and_then(|end| {
            let start = detail[..end].rfind("Server ")? + "Server ".len();
            Some(&detail[start..end])
        })
        .filter(|p| !p.is_empty() && !p.contains(char::is_whitespace));
    let service = asked.rsplit_once('@').map_or(asked, |(s, _)| s);
    let cross = named
        .and_then(|p| p.strip_prefix("krbtgt/"))
        .and_then(|p| p.split_once('@'))
        .filter(|(to, from)| to != from);
    f.message = match (named, cross) {
        (_, Some((to, from))) => {
            f.kind = GssFailureKind::NoTrustPath;
            format!(
                "no trust path from realm {from} (the client's) to realm {to} (the service's, for {service}@{to}): the KDC of {from} has no krbtgt/{to}@{from} ({})",
                f.message
            )
        }
        (Some(p), None) => format!(
            "the KDC does not know the service principal {p} ({})",
            f.message
        ),
        (None, None) => format!(
            "the KDC does not know the service principal {asked} ({})",
            f.message
        ),
    };
}

/// The `conf_state` that `gss_unwrap` reports for a Kerberos wrap token it accepted:
/// whether the token was encrypted.
///
/// libgssapi's `unwrap` passes no `conf_state` to `gss_unwrap` and its context does not
/// expose the handle to call it ourselves, so this reads the same bit the Kerberos
/// mechanism reads: the header of a token that `gss_unwrap` has just verified (the header
/// is inside the checksum or the encryption, so it cannot have been altered). RFC 4121
/// section 4.2.6.2 (AES, Camellia): token ID `05 04`, flag `Sealed` (0x02). RFC 1964
/// section 1.2.2 and RFC 4757 (DES3, RC4): framed token with ID `02 01`, `SEAL_ALG`
/// `ff ff` for none. Any other form counts as not encrypted, so a confidentiality layer
/// refuses it.
fn conf_state(token: &[u8]) -> bool {
    const SEALED: u8 = 0x02;
    if let [0x05, 0x04, flags, ..] = token {
        return flags & SEALED != 0;
    }
    rfc1964_seal_alg(token).is_some_and(|alg| alg != [0xff, 0xff])
}

/// The `SEAL_ALG` of an RFC 1964 wrap token: after the GSS-API framing (RFC 2743
/// section 3.1: `60`, a DER length, the mechanism OID), the token ID `02 01` and
/// `SGN_ALG`.
fn rfc1964_seal_alg(token: &[u8]) -> Option<[u8; 2]> {
    const KRB5_OID: [u8; 11] = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
    ];
    let rest = token.strip_prefix(&[0x60])?;
    let (&first, rest) = rest.split_first()?;
    let rest = match first {
        0..=0x7f => rest,
        0x81..=0x84 => rest.get(usize::from(first & 0x7f)..)?,
        _ => return None,
    };
    let rest = rest.strip_prefix(&KRB5_OID)?;
    let rest = rest.strip_prefix(&[0x02, 0x01])?;
    Some([*rest.get(2)?, *rest.get(3)?])
}

/// The account's initiator credentials: from its own ccache when it names one (through
/// `gss_acquire_cred_from`, so no process-wide variable is changed), else the default.
fn acquire(settings: &GssapiSettings) -> Result<Cred, GssFailure> {
    let mechs = OidSet::singleton(GSS_MECH_KRB5)
        .map_err(|e| failure("the Kerberos mechanism is not available", e))?;
    let no_ticket = |e| failure("no usable Kerberos ticket", e);
    // A cache holds the canonical principal, never a user principal name: look for the
    // one the KDC most likely made of it (user@REALM); if the cache has no ticket for it,
    // `gssapi.kinit` gets one (a wrong guess costs a password round, never another user).
    let principal = settings.principal.as_deref().map(|p| {
        enterprise_name(p, &Profile::load())
            .and_then(|e| canonical_guess(&e))
            .unwrap_or_else(|| p.to_string())
    });
    let cred = match &settings.ccache {
        None => {
            let name = match &principal {
                None => None,
                Some(p) => Some(
                    Name::new(p.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
                        .map_err(|e| failure("the principal name is not valid", e))?,
                ),
            };
            Cred::acquire(name.as_ref(), None, CredUsage::Initiate, Some(&mechs))
                .map_err(no_ticket)?
        }
        Some(ccache) => acquire_from_ccache(ccache, principal.as_deref())?,
    };
    // Acquisition succeeds on an expired ticket; its lifetime tells (zero, or an error
    // whose minor code is 0: "The referenced credential has expired (Success)").
    let expired = || GssFailure {
        kind: GssFailureKind::Expired,
        message: match &settings.ccache {
            Some(c) => {
                format!("no usable Kerberos ticket: the ticket-granting ticket in {c} has expired")
            }
            None => "no usable Kerberos ticket: the ticket-granting ticket has expired".into(),
        },
    };
    match cred.lifetime() {
        Ok(l) if l.is_zero() => Err(expired()),
        Ok(_) => Ok(cred),
        Err(e) if e.major.contains(MajorFlags::GSS_S_CREDENTIALS_EXPIRED) => Err(expired()),
        Err(e) => Err(no_ticket(e)),
    }
}

fn acquire_from_ccache(ccache: &str, principal: Option<&str>) -> Result<Cred, GssFailure> {
    let bad = |what: &str| GssFailure {
        kind: GssFailureKind::Other,
        message: format!("{what} contains a NUL byte"),
    };
    let key = CString::new("ccache").expect("static key");
    let value = CString::new(ccache).map_err(|_| bad("gssapi.ccache"))?;
    let mut element = sys::gss_key_value_element_desc {
        key: key.as_ptr(),
        value: value.as_ptr(),
    };
    let store = sys::gss_key_value_set_desc {
        count: 1,
        elements: &mut element,
    };
    let mut name: sys::gss_name_t = ptr::null_mut();
    let mut minor: sys::OM_uint32 = 0;
    if let Some(p) = principal {
        let mut buf = sys::gss_buffer_desc {
            length: p.len(),
            value: p.as_ptr() as *mut _,
        };
        let mut nt = oid_desc(&GSS_NT_KRB5_PRINCIPAL);
        // SAFETY: buf and nt point to live memory for the call; name receives a new handle.
        let major = unsafe { sys::gss_import_name(&mut minor, &mut buf, &mut nt, &mut name) };
        if major != sys::GSS_S_COMPLETE {
            return Err(failure(
                "the principal name is not valid",
                GssError {
                    major: MajorFlags::from_bits_retain(major),
                    minor,
                },
            ));
        }
    }
    let mut krb5 = oid_desc(&GSS_MECH_KRB5);
    let mut mechs = sys::gss_OID_set_desc {
        count: 1,
        elements: &mut krb5,
    };
    let mut cred: sys::gss_cred_id_t = ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `cred` receives a new handle that
    // `Cred::from_c` takes sole ownership of; `name` is released below.
    let major = unsafe {
        sys::gss_acquire_cred_from(
            &mut minor,
            name,
            sys::_GSS_C_INDEFINITE,
            &mut mechs,
            sys::GSS_C_INITIATE as sys::gss_cred_usage_t,
            &store,
            &mut cred,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if !name.is_null() {
        let mut m = 0;
        // SAFETY: `name` came from gss_import_name and is released once.
        unsafe { sys::gss_release_name(&mut m, &mut name) };
    }
    if major != sys::GSS_S_COMPLETE {
        return Err(failure(
            &format!("no usable Kerberos ticket in {ccache}"),
            GssError {
                major: MajorFlags::from_bits_retain(major),
                minor,
            },
        ));
    }
    // SAFETY: `cred` is a fresh handle owned by no one else.
    Ok(unsafe { Cred::from_c(cred) })
}

fn oid_desc(oid: &libgssapi::oid::Oid<'static>) -> sys::gss_OID_desc {
    let bytes: &[u8] = oid;
    sys::gss_OID_desc {
        length: bytes.len() as u32,
        elements: bytes.as_ptr() as *mut _,
    }
}

/// What the account's ticket cache holds, for `check`: the client principal and how long
/// its ticket-granting ticket still lasts. `None` when no usable ticket is found there
/// (a `gssapi.kinit` ticket kept in memory, for one).
pub fn ticket_facts(settings: &GssapiSettings) -> Option<(String, std::time::Duration)> {
    let cred = acquire(settings).ok()?;
    let name = cred.name().ok()?.to_string();
    Some((name, cred.lifetime().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_principal_is_the_configured_host_in_lower_case_with_the_realm_as_given() {
        let p = |s, h, r| service_principal(s, h, r).unwrap();
        assert_eq!(
            p("imap", "Mail.Example.ORG", "EXAMPLE.ORG"),
            "imap/mail.example.org@EXAMPLE.ORG"
        );
        // The realm is not derived from the host nor case-folded.
        assert_eq!(
            p("smtp", "mail.example.org", "Other.Realm"),
            "smtp/mail.example.org@Other.Realm"
        );
        // An empty realm is MIT's referral realm.
        assert_eq!(p("pop", "MAIL", ""), "pop/mail@");
        // Nothing in the configuration adds a component or a realm.
        assert_eq!(
            p("imap", "evil/x@EVIL.REALM", "EXAMPLE.ORG"),
            "imap/evil\\/x\\@evil.realm@EXAMPLE.ORG"
        );
        assert_eq!(p("a\\b", "h", "R"), "a\\\\b/h@R");
        assert!(service_principal("imap", "h\0x", "R").is_err());
    }

    #[test]
    fn the_library_keeps_the_exact_principal_as_imported() {
        for principal in [
            "imap/mail.example.org@EXAMPLE.ORG",
            "imap/mail.example.org@",
            "imap/evil\\/x\\@y@EXAMPLE.ORG",
        ] {
            let name = Name::new(principal.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).unwrap();
            assert_eq!(name.to_string(), principal);
        }
    }

    #[test]
    fn rfc4121_the_sealed_flag_of_a_wrap_token_is_its_conf_state() {
        // TOK_ID, flags (SentByAcceptor | Sealed | AcceptorSubkey), filler, EC, RRC, SND_SEQ.
        let sealed = [
            0x05, 0x04, 0x07, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9,
        ];
        let signed = [
            0x05, 0x04, 0x05, 0xff, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9,
        ];
        assert!(conf_state(&sealed));
        assert!(!conf_state(&signed));
    }

    #[test]
    fn rfc1964_seal_alg_ffff_means_not_encrypted() {
        let token = |seal: [u8; 2]| {
            let mut body = vec![
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x02, 0x01, 0x11,
                0x00, seal[0], seal[1], 0xff, 0xff,
            ];
            body.extend_from_slice(&[0xaa; 40]);
            let mut t = vec![0x60, body.len() as u8];
            t.extend_from_slice(&body);
            t
        };
        assert!(conf_state(&token([0x02, 0x00])));
        assert!(conf_state(&token([0x10, 0x00])));
        assert!(!conf_state(&token([0xff, 0xff])));
    }

    #[test]
    fn a_token_of_no_known_form_counts_as_not_encrypted() {
        for t in [
            &b""[..],
            b"\x05",
            b"\x60\x85",
            b"\x04\x04\x02",
            b"\x60\x03\x06\x01\x00",
        ] {
            assert!(!conf_state(t), "{t:?}");
        }
    }
}
