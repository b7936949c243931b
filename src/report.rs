//! Renders `probe` and `check` reports for people: aligned tables, colour only when asked
//! for (`main` asks when stdout is a terminal and `NO_COLOR` is unset). `--json` output
//! is the reports themselves, serialized; nothing here decides anything.

use std::fmt::Write;

use crate::check::CheckReport;
use crate::probe::{CapsReport, MethodReport, ProbeReport};

/// How to paint.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(self, s: &str) -> String {
        self.paint("1", s)
    }
    fn good(self, s: &str) -> String {
        self.paint("32", s)
    }
    fn bad(self, s: &str) -> String {
        self.paint("31", s)
    }
    fn warn(self, s: &str) -> String {
        self.paint("33", s)
    }
}

/// Whether to use colour: a terminal, and `NO_COLOR` unset or empty (no-color.org).
pub fn want_color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

/// Rows of cells as a left-aligned table; the last column is not padded.
fn table(rows: &[Vec<String>], plain_widths: &[Vec<usize>], indent: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![0; cols];
    for r in plain_widths {
        for (i, w) in r.iter().enumerate() {
            width[i] = width[i].max(*w);
        }
    }
    let mut out = String::new();
    for (r, w) in rows.iter().zip(plain_widths) {
        out.push_str(indent);
        for (i, cell) in r.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < r.len() {
                out.push_str(&" ".repeat(width[i] - w[i] + 2));
            }
        }
        out.push('\n');
    }
    out
}

/// A table whose cells may be painted: `(shown, plain length)`.
struct Table {
    rows: Vec<Vec<String>>,
    widths: Vec<Vec<usize>>,
}

impl Table {
    fn new() -> Self {
        Table {
            rows: Vec::new(),
            widths: Vec::new(),
        }
    }
    fn row(&mut self, cells: Vec<(String, String)>) {
        self.widths
            .push(cells.iter().map(|(_, p)| p.chars().count()).collect());
        self.rows.push(cells.into_iter().map(|(s, _)| s).collect());
    }
    fn render(&self, indent: &str) -> String {
        table(&self.rows, &self.widths, indent)
    }
}

fn cell(s: impl Into<String>) -> (String, String) {
    let s = s.into();
    (s.clone(), s)
}

fn painted(shown: String, plain: &str) -> (String, String) {
    (shown, plain.to_string())
}

fn caps_rows(t: &mut Table, label: &str, c: &CapsReport) {
    t.row(vec![
        cell(label),
        cell(format!("mechanisms: {}", list(&c.mechanisms))),
    ]);
    t.row(vec![
        cell(""),
        cell(format!("notable: {}", list(&c.notable))),
    ]);
}

fn method_section(out: &mut String, m: &MethodReport, s: Style) {
    let title = match m.method.as_str() {
        "starttls" => format!("STARTTLS on port {}", m.port),
        _ => format!("Implicit TLS on port {}", m.port),
    };
    let _ = writeln!(out, "{}", s.bold(&title));
    let mut t = Table::new();
    let yes_no = |b: bool| {
        if b {
            painted(s.good("yes"), "yes")
        } else {
            painted(s.bad("no"), "no")
        }
    };
    t.row(vec![cell("reachable"), yes_no(m.reachable)]);
    if let Some(g) = &m.greeting {
        t.row(vec![cell("greeting"), cell(g.clone())]);
    }
    if let Some(c) = &m.before_tls {
        caps_rows(&mut t, "before TLS", c);
    }
    if let Some(o) = m.starttls_offered {
        let performed = m.starttls_performed.unwrap_or(false);
        let text = match (o, performed) {
            (false, _) => "not offered".to_string(),
            (true, true) => "offered, performed".to_string(),
            (true, false) => "offered, not performed".to_string(),
        };
        let shown = if o && performed {
            s.good(&text)
        } else {
            s.bad(&text)
        };
        t.row(vec![cell("STARTTLS"), painted(shown, &text)]);
    }
    if let Some(tls) = &m.tls {
        t.row(vec![
            cell("TLS"),
            cell(format!(
                "{}, {}, {}",
                tls.version, tls.cipher_suite, tls.key_exchange
            )),
        ]);
        let verdict = match &tls.verification_error {
            None => painted(s.good("verified"), "verified"),
            Some(e) => {
                let text = format!("NOT verified ({}): {}", e.code, e.message);
                painted(s.bad(&text), &text)
            }
        };
        t.row(vec![cell("certificate"), verdict]);
        for (i, c) in tls.chain.iter().enumerate() {
            let label = if i == 0 {
                "  server".to_string()
            } else {
                format!("  chain #{i}")
            };
            t.row(vec![cell(label), cell(format!("subject {}", c.subject))]);
            if i == 0 {
                t.row(vec![cell(""), cell(format!("names   {}", list(&c.sans)))]);
            }
            t.row(vec![cell(""), cell(format!("issuer  {}", c.issuer))]);
            let days = if c.days_left < 0 {
                s.bad(&format!("expired {} days ago", -c.days_left))
            } else if c.days_left < 30 {
                s.warn(&format!("{} days left", c.days_left))
            } else {
                format!("{} days left", c.days_left)
            };
            let plain_days = if c.days_left < 0 {
                format!("expired {} days ago", -c.days_left)
            } else {
                format!("{} days left", c.days_left)
            };
            let text = format!("valid   {} to {} (", c.not_before, c.not_after);
            t.row(vec![
                cell(""),
                painted(format!("{text}{days})"), &format!("{text}{plain_days})")),
            ]);
            if i == 0 {
                t.row(vec![cell(""), cell(format!("SHA-256 {}", c.sha256))]);
            }
        }
    }
    if let Some(c) = &m.after_tls {
        caps_rows(&mut t, "after TLS", c);
    }
    if let Some(e) = &m.error {
        let text = format!("{} ({}): {}", e.step, e.code, e.message);
        t.row(vec![cell("failed"), painted(s.bad(&text), &text)]);
    }
    out.push_str(&t.render("  "));
    out.push('\n');
}

/// The human form of a probe report.
pub fn render_probe(r: &ProbeReport, s: Style) -> String {
    let mut out = String::new();
    let via = if r.connect != r.host {
        format!(", via {}", r.connect)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{}\n",
        s.bold(&format!("mailtun probe: {} ({}{via})", r.host, r.protocol))
    );
    let _ = writeln!(
        out,
        "GSSAPI would ask for the service principal {}\n",
        r.gssapi_service_principal
    );
    for m in &r.methods {
        method_section(&mut out, m, s);
    }
    combinations_section(&mut out, r, s);
    choice_line(&mut out, &r.choice, s);
    let _ = writeln!(out, "\n{}", s.bold("Suggested configuration:"));
    for line in r.suggested_config.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// The table of the four combinations, with mailtun's verdict on each.
fn combinations_section(out: &mut String, r: &ProbeReport, s: Style) {
    let _ = writeln!(
        out,
        "{}",
        s.bold(&format!(
            "Combinations (default policy: {})",
            r.choice.policy
        ))
    );
    let mut t = Table::new();
    t.row(vec![
        cell("combination"),
        cell("possible"),
        cell("mailtun"),
        cell("mechanisms"),
        cell("why"),
    ]);
    for c in &r.combinations {
        let possible = if c.possible { "yes" } else { "no" };
        let verdict = match c.verdict.as_str() {
            "chosen" => s.good("CHOSEN"),
            "fallback" => s.warn("fallback"),
            "refused" => s.bad("refused"),
            _ => "-".to_string(),
        };
        let verdict_plain = match c.verdict.as_str() {
            "chosen" => "CHOSEN",
            "fallback" => "fallback",
            "refused" => "refused",
            _ => "-",
        };
        t.row(vec![
            cell(c.combination.clone()),
            cell(possible),
            painted(verdict, verdict_plain),
            cell(if c.mechanisms.is_empty() {
                "-".to_string()
            } else {
                c.mechanisms.join(", ")
            }),
            cell(c.reason.clone()),
        ]);
    }
    out.push_str(&t.render("  "));
    out.push('\n');
}

/// What mailtun would do with this server: the method, port, mechanism and protection, or
/// why it would refuse.
fn choice_line(out: &mut String, ch: &crate::probe::Choice, s: Style) {
    match (&ch.mechanism, &ch.refusal) {
        (Some(mech), _) => {
            let then = if ch.fallbacks.is_empty() {
                String::new()
            } else {
                format!(
                    " (then {} if it cannot start or is rejected)",
                    ch.fallbacks.join(", ")
                )
            };
            let _ = writeln!(
                out,
                "{} {} on port {}, {mech}{then}: protection {}",
                s.bold("mailtun would use:"),
                ch.method.as_deref().unwrap_or("?"),
                ch.port.unwrap_or(0),
                s.good(ch.combination.as_deref().unwrap_or("?")),
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(
                out,
                "{} {}",
                s.bold("mailtun would refuse this server:"),
                s.bad(why)
            );
        }
        (None, None) => {}
    }
}

/// The human form of a check report.
pub fn render_check(r: &CheckReport, s: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        s.bold(&format!(
            "mailtun check: account `{}` ({} {}, via {} port {})",
            r.account, r.protocol, r.host, r.connect, r.port
        ))
    );
    for e in &r.earlier {
        let _ = writeln!(
            out,
            "  {}",
            s.warn(&format!(
                "tried {} on port {} first: {}",
                e.method, e.port, e.reason
            ))
        );
    }
    let mut t = Table::new();
    t.row(vec![cell("step"), cell("time"), cell("round trips")]);
    for st in &r.steps {
        t.row(vec![
            cell(st.phase.as_str()),
            cell(format!("{:.1} ms", st.duration.as_micros() as f64 / 1000.0)),
            cell(st.round_trips.to_string()),
        ]);
    }
    t.row(vec![
        cell("total"),
        cell(format!("{} ms", r.total_ms)),
        cell(r.total_round_trips.to_string()),
    ]);
    out.push_str(&t.render("  "));
    let tls = match (&r.tls_version, &r.cipher_suite, &r.key_exchange) {
        (Some(v), Some(c), Some(k)) if r.link == "unverified TLS" => {
            format!("{} ({v}, {c}, {k})", r.link)
        }
        (Some(v), Some(c), Some(k)) => format!("{v}, {c}, {k}"),
        _ => "no TLS".into(),
    };
    let _ = writeln!(
        out,
        "{} {} with {} over {} ({} on port {}): protection {}",
        s.bold("result:"),
        s.good("authenticated"),
        r.mechanism,
        tls,
        r.method,
        r.port,
        s.good(&r.combination)
    );
    let _ = writeln!(out, "{} {}", s.bold("logout:"), r.logout);
    if let Some(k) = &r.kerberos {
        let _ = writeln!(
            out,
            "{} client {}, service {}",
            s.bold("kerberos:"),
            k.client_principal
                .as_deref()
                .unwrap_or("(no ticket in the cache)"),
            k.service_principal
        );
        if let Some(obtained) = &k.service_principal_obtained {
            let _ = writeln!(
                out,
                "{} {obtained}, ticket {}, session key {}",
                s.bold("service ticket:"),
                k.ticket_enctype.as_deref().unwrap_or("?"),
                k.session_key_enctype.as_deref().unwrap_or("?")
            );
        }
        if let Some(secs) = k.tgt_remaining_secs {
            let renew = match k.tgt_renew_until_unix.zip(k.tgt_end_unix) {
                Some((u, e)) if u > e => {
                    let more = u - e;
                    format!(
                        ", renewable for {} h {} min more",
                        more / 3600,
                        more % 3600 / 60
                    )
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{} ends in {} h {} min{renew}",
                s.bold("ticket-granting ticket:"),
                secs / 3600,
                secs % 3600 / 60
            );
        }
        if let Some(w) = &k.warning {
            let _ = writeln!(out, "  {}", s.warn(&format!("warning: {w}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_plain_width_even_when_painted() {
        let mut t = Table::new();
        let s = Style { color: true };
        t.row(vec![painted(s.good("yes"), "yes"), cell("x")]);
        t.row(vec![cell("longer"), cell("y")]);
        let out = t.render("");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "longer  y");
        assert!(lines[0].ends_with("yes\x1b[0m     x"), "{:?}", lines[0]);
    }
}
