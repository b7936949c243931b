//! Where a session's time went: a small recorder that `session` advances at each step
//! (connect, TLS, capabilities, authentication) and that `mailtun check` reports.
//!
//! It only reads a monotonic clock and counts round trips: a round trip is a read that
//! answers bytes we sent, plus the TCP handshake and the TLS handshake's own flights
//! (one for TLS 1.3, two for TLS 1.2). It never sees the bytes themselves.

use std::time::{Duration, Instant};

/// A step of the session, as `mailtun check` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// DNS and the TCP handshake.
    Connect,
    /// The TLS handshake, and the STARTTLS command before it.
    Tls,
    /// The greeting and the capability queries, before and after TLS.
    Capabilities,
    /// The SASL exchange, up to the server's final reply.
    Authentication,
    /// Closing the session (`check` only).
    Logout,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Connect,
        Phase::Tls,
        Phase::Capabilities,
        Phase::Authentication,
        Phase::Logout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Capabilities => "capabilities",
            Phase::Authentication => "authentication",
            Phase::Logout => "logout",
        }
    }
}

/// Time and round trips spent in each phase.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PhaseTiming {
    pub phase: Phase,
    #[serde(rename = "ms", serialize_with = "millis")]
    pub duration: Duration,
    pub round_trips: u32,
}

/// Milliseconds with microsecond precision.
fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_micros() as f64 / 1000.0)
}

/// The recorder. Time is attributed to the current phase until [`Timeline::enter`] moves
/// to the next.
#[derive(Debug, Clone)]
pub struct Timeline {
    started: Instant,
    current: Phase,
    since: Instant,
    awaiting_reply: bool,
    phases: Vec<PhaseTiming>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

impl Timeline {
    /// Starts in [`Phase::Connect`], now.
    pub fn new() -> Self {
        let now = Instant::now();
        Timeline {
            started: now,
            current: Phase::Connect,
            since: now,
            awaiting_reply: false,
            phases: Vec::new(),
        }
    }

    fn entry(&mut self, phase: Phase) -> &mut PhaseTiming {
        if let Some(i) = self.phases.iter().position(|p| p.phase == phase) {
            return &mut self.phases[i];
        }
        self.phases.push(PhaseTiming {
            phase,
            duration: Duration::ZERO,
            round_trips: 0,
        });
        self.phases.last_mut().expect("just pushed")
    }

    /// Ends the current phase now and starts `phase` (which may be one seen before).
    pub fn enter(&mut self, phase: Phase) {
        let now = Instant::now();
        let spent = now - self.since;
        self.entry(self.current).duration += spent;
        self.current = phase;
        self.since = now;
    }

    /// Adds round trips that happened without a read of ours (TCP, TLS flights).
    pub fn add_round_trips(&mut self, n: u32) {
        let current = self.current;
        self.entry(current).round_trips += n;
    }

    /// Bytes were sent: the next read answers them.
    pub fn sent(&mut self) {
        self.awaiting_reply = true;
    }

    /// Bytes were read: one round trip if they answer bytes we sent.
    pub fn received(&mut self) {
        if std::mem::take(&mut self.awaiting_reply) {
            self.add_round_trips(1);
        }
    }

    /// The TLS handshake of this version completed (1 round trip for TLS 1.3, 2 before).
    pub fn tls_handshake(&mut self, version: Option<&str>) {
        self.add_round_trips(if version == Some("TLSv1.3") { 1 } else { 2 });
        self.awaiting_reply = false;
    }

    /// The phases so far, in the order first entered, the current one included.
    pub fn phases(&self) -> Vec<PhaseTiming> {
        let mut t = self.clone();
        t.enter(self.current);
        t.phases
    }

    /// Time since [`Timeline::new`].
    pub fn total(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_are_reads_that_answer_a_send() {
        let mut t = Timeline::new();
        t.add_round_trips(1);
        t.enter(Phase::Capabilities);
        t.received(); // the greeting: the server spoke first
        t.sent();
        t.received();
        t.received(); // a second chunk of the same reply
        t.enter(Phase::Tls);
        t.sent();
        t.received();
        t.tls_handshake(Some("TLSv1.3"));
        let p = t.phases();
        let rt = |ph| p.iter().find(|x| x.phase == ph).unwrap().round_trips;
        assert_eq!(rt(Phase::Connect), 1);
        assert_eq!(rt(Phase::Capabilities), 1);
        assert_eq!(rt(Phase::Tls), 2);
    }
}
