//! `mailtun check ACCOUNT`: the account's real connection and authentication (through
//! `session::establish`, exactly as `tunnel` does it), then a logout, with the time and
//! round trips of each step.
//!
//! It hands nothing to a client and prints nothing: `main` renders the [`CheckReport`]
//! (`report`) or the failure.

use std::time::Instant;

use serde::Serialize;

use crate::config::Account;
use crate::error::Failure;
use crate::session;
use crate::timeline::{Phase, PhaseTiming};

/// What a successful check found; the `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Always `true` here; a failed check prints `ok: false` with the error instead.
    pub ok: bool,
    pub account: String,
    pub protocol: String,
    pub host: String,
    pub connect: String,
    /// `starttls` or `implicit`: the method that worked.
    pub method: String,
    pub port: u16,
    pub tls_version: Option<String>,
    /// `verified TLS`, `unverified TLS` (`accept_invalid_certs` without a pin) or
    /// `no TLS`.
    pub link: String,
    pub cipher_suite: Option<String>,
    pub key_exchange: Option<String>,
    pub mechanism: String,
    /// `tls+strong`, `tls` or `strong` (unverified TLS, or no TLS with a GSSAPI layer).
    pub combination: String,
    /// Connect, tls, capabilities, authentication, logout: `phase`, `ms`, `round_trips`.
    pub steps: Vec<PhaseTiming>,
    /// Wall time from the first connection attempt to the end of the logout.
    pub total_ms: u64,
    pub total_round_trips: u32,
    /// Methods tried and given up before the one that worked: `method`, `port`, `reason`.
    pub earlier: Vec<EarlierAttempt>,
    /// The server's last line after the logout command, or why there was none.
    pub logout: String,
    /// With GSSAPI: the principals and the ticket-granting ticket's lifetime.
    pub kerberos: Option<KerberosFacts>,
}

/// The Kerberos side of a GSSAPI check.
#[derive(Debug, Clone, Serialize)]
pub struct KerberosFacts {
    /// The client principal of the account's ticket cache, when it holds a usable ticket.
    pub client_principal: Option<String>,
    /// The service principal asked for: `service/host@REALM`, the realm from krb5.conf's
    /// `[domain_realm]`; `service/host@` when it maps none (the KDC's referral decides).
    pub service_principal: String,
    /// Seconds the ticket-granting ticket still lasts, and when it ends (Unix time).
    pub tgt_remaining_secs: Option<u64>,
    pub tgt_end_unix: Option<u64>,
    /// Until when it can be renewed (`kinit -R`), when it is renewable. From a FILE cache.
    pub tgt_renew_until_unix: Option<u64>,
    /// The service ticket the cache holds after this check (a FILE cache): the principal
    /// it was obtained for (after referrals) and its encryption types.
    pub service_principal_obtained: Option<String>,
    pub ticket_enctype: Option<String>,
    pub session_key_enctype: Option<String>,
    /// Set when the ticket-granting ticket ends within an hour.
    pub warning: Option<String>,
}

/// Warn when the ticket-granting ticket ends sooner than this.
const TGT_WARN_SECS: u64 = 3600;

fn kerberos_facts(account: &Account) -> KerberosFacts {
    let g = &account.gssapi;
    let ticket = crate::gss::ticket_facts(g);
    let remaining = ticket.as_ref().map(|(_, l)| l.as_secs());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let client = ticket.as_ref().map(|(n, _)| n.clone());
    // The cache GSS-API used: the account's, else KRB5CCNAME's.
    let cache = g
        .ccache
        .clone()
        .or_else(|| std::env::var("KRB5CCNAME").ok())
        .and_then(|c| crate::ccache::read(&c))
        .unwrap_or_default();
    let client_realm = client
        .as_deref()
        .and_then(|c| c.rsplit_once('@'))
        .map(|(_, r)| r.to_string());
    let tgt = client_realm.as_ref().and_then(|r| {
        let name = format!("krbtgt/{r}@{r}");
        cache.iter().rev().find(|t| t.server == name)
    });
    let renew_until = tgt
        .filter(|t| t.renew_till > t.end)
        .map(|t| u64::from(t.renew_till));
    let prefix = format!("{}/{}@", g.service, account.host).to_ascii_lowercase();
    let service = cache
        .iter()
        .rev()
        .find(|t| t.server.to_ascii_lowercase().starts_with(&prefix) && !t.server.ends_with('@'));
    KerberosFacts {
        client_principal: client,
        service_principal: crate::krb5_profile::service_principal(&g.service, &account.host),
        tgt_remaining_secs: remaining,
        tgt_end_unix: remaining.map(|r| now + r),
        tgt_renew_until_unix: renew_until,
        service_principal_obtained: service.map(|t| t.server.clone()),
        ticket_enctype: service
            .and_then(|t| t.ticket_enctype)
            .map(crate::ccache::enctype_name),
        session_key_enctype: service.map(|t| crate::ccache::enctype_name(t.session_enctype)),
        warning: remaining.filter(|r| *r < TGT_WARN_SECS).map(|r| {
            let how = match (tgt, renew_until) {
                (Some(_), Some(u)) if u > now + r => "renew it with `kinit -R`",
                (Some(_), _) => "it is not renewable: get a new one with `kinit`",
                (None, _) => {
                    "renew it with `kinit -R` if it is renewable, else get a new one with `kinit`"
                }
            };
            format!("the ticket-granting ticket ends in {} min: {how}", r / 60)
        }),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EarlierAttempt {
    pub method: String,
    pub port: u16,
    pub reason: String,
}

/// Connects, authenticates and logs out.
pub async fn check(account: &Account) -> Result<CheckReport, Failure> {
    let started = Instant::now();
    let mut est = session::establish(account).await?;
    let mut timeline = est.timeline.clone();
    timeline.enter(Phase::Logout);
    // Bytes the server sent after its authentication reply are not ours to read here.
    timeline.sent();
    let logout = if est.layer.is_some() {
        // Commands now travel inside the GSSAPI security layer; the relay frames them,
        // a bare LOGOUT here would not be understood. Closing is enough for a check.
        use tokio::io::AsyncWriteExt;
        let _ = est.link.shutdown().await;
        "(not sent: the session uses a GSSAPI security layer; connection closed)".to_string()
    } else {
        match tokio::time::timeout(
            account.timeout,
            session::logout(&mut est.link, account.protocol),
        )
        .await
        {
            Ok(Ok(line)) => {
                timeline.received();
                line
            }
            Ok(Err(e)) => format!("(no reply: {e})"),
            Err(_) => format!("(no reply within {} s)", account.timeout.as_secs()),
        }
    };
    let steps: Vec<PhaseTiming> = Phase::ALL
        .iter()
        .filter_map(|p| timeline.phases().into_iter().find(|t| t.phase == *p))
        .collect();
    let tls = est.tls.clone();
    let kerberos = if est.mechanism.to_string() == "GSSAPI" {
        let account = account.clone();
        tokio::task::spawn_blocking(move || kerberos_facts(&account))
            .await
            .ok()
    } else {
        None
    };
    Ok(CheckReport {
        ok: true,
        account: account.name.clone(),
        protocol: account.protocol.to_string(),
        host: account.host.clone(),
        connect: account.connect.clone(),
        method: est.method.to_string(),
        port: est.port,
        tls_version: tls.as_ref().map(|t| t.version.clone()),
        link: tls
            .as_ref()
            .map_or(crate::policy::LinkTrust::Plain, |t| t.trust)
            .to_string(),
        cipher_suite: tls.as_ref().map(|t| t.cipher_suite.clone()),
        key_exchange: tls.as_ref().map(|t| t.key_exchange.clone()),
        mechanism: est.mechanism.to_string(),
        combination: est.combination.to_string(),
        total_round_trips: steps.iter().map(|s| s.round_trips).sum(),
        steps,
        total_ms: started.elapsed().as_millis() as u64,
        earlier: est
            .earlier
            .iter()
            .map(|a| EarlierAttempt {
                method: a.method.to_string(),
                port: a.port,
                reason: a.reason.clone(),
            })
            .collect(),
        logout,
        kerberos,
    })
}
