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
    })
}
