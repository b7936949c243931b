//! `mailtun probe` against the real Dovecot (IMAP, POP3, submission) and against
//! scripted servers with bad certificates; `mailtun check` against the real servers.

use serde_json::Value;

use crate::fake_server::{
    Act, Cert, FakeServer, HOST, HOSTILE_TEXT, assert_terminal_safe, pki, send,
};
use crate::harness::{Output, harness, run_mailtun};
use crate::{EXIT_AUTH, EXIT_NETWORK};

fn probe_json(args: &[&str]) -> (Value, Output) {
    let mut all = vec!["probe", "--json"];
    all.extend_from_slice(args);
    let out = run_mailtun(&all, b"");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probe --json is not JSON ({e}): {}\n{}",
            out.stdout_text(),
            out.stderr
        )
    });
    (doc, out)
}

fn harness_probe(protocol: &str) -> (Value, Output) {
    let h = harness();
    probe_json(&[
        h.get("MAIL_HOST"),
        "--protocol",
        protocol,
        "--connect",
        h.get("MAIL_ADDR"),
        "--ca-file",
        h.get("CA_FILE"),
    ])
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn probe_reports_both_methods_of_the_real_imap_pop3_and_submission_servers() {
    for protocol in ["imap", "pop3", "smtp"] {
        let (doc, out) = harness_probe(protocol);
        assert_eq!(out.code, Some(0), "{protocol}: {}", out.stderr);
        assert_eq!(doc["protocol"], protocol);
        let methods = doc["methods"].as_array().unwrap();
        assert_eq!(methods.len(), 2);
        assert_eq!(methods[0]["method"], "starttls");
        assert_eq!(methods[1]["method"], "implicit");
        assert_eq!(methods[0]["starttls_offered"], true, "{protocol}");
        assert_eq!(methods[0]["starttls_performed"], true, "{protocol}");
        assert!(methods[0]["greeting"].as_str().unwrap().len() > 3);
        for m in methods {
            assert_eq!(m["reachable"], true, "{protocol}: {m}");
            assert!(m["error"].is_null(), "{protocol}: {m}");
            let tls = &m["tls"];
            assert_eq!(tls["version"], "TLSv1.3", "{protocol}");
            assert!(!tls["cipher_suite"].as_str().unwrap().is_empty());
            assert!(!tls["key_exchange"].as_str().unwrap().is_empty());
            assert_eq!(tls["verified"], true, "{protocol}: {tls}");
            let leaf = &tls["chain"][0];
            assert!(strings(&leaf["sans"]).contains(&"mail.example.test".to_string()));
            assert!(
                leaf["subject"]
                    .as_str()
                    .unwrap()
                    .contains("mail.example.test")
            );
            assert!(leaf["issuer"].as_str().unwrap().contains("mailtun test CA"));
            assert!(leaf["days_left"].as_i64().unwrap() > 0);
            assert_eq!(leaf["sha256"].as_str().unwrap().len(), 32 * 3 - 1);
            let after = strings(&m["after_tls"]["mechanisms"]);
            for mech in ["GSSAPI", "SCRAM-SHA-256", "PLAIN"] {
                assert!(after.contains(&mech.to_string()), "{protocol}: {after:?}");
            }
        }
        // Dovecot keeps PLAIN and LOGIN for TLS (disable_plaintext_auth).
        let before = strings(&methods[0]["before_tls"]["mechanisms"]);
        assert!(
            !before.contains(&"PLAIN".to_string()),
            "{protocol}: {before:?}"
        );
        let combos = doc["combinations"].as_array().unwrap();
        let names: Vec<&str> = combos
            .iter()
            .map(|c| c["combination"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["tls+strong", "tls", "strong", "none"]);
        assert_eq!(combos[0]["possible"], true);
        assert_eq!(combos[0]["verdict"], "chosen");
        assert_eq!(combos[1]["verdict"], "fallback");
        assert_ne!(combos[2]["verdict"], "chosen");
        assert_ne!(combos[3]["verdict"], "chosen");
        let choice = &doc["choice"];
        assert_eq!(choice["method"], "starttls");
        assert_eq!(choice["mechanism"], "GSSAPI");
        assert_eq!(choice["combination"], "tls+strong");
        assert!(strings(&choice["fallbacks"]).contains(&"SCRAM-SHA-256".to_string()));
        let block = doc["suggested_config"].as_str().unwrap();
        assert!(block.starts_with("[accounts.mail]"), "{block}");
        assert!(block.contains("min_protection = \"tls+strong\""), "{block}");
        // The suggested block is valid configuration.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, block).unwrap();
        mailtun::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
}

#[test]
fn probe_human_output_is_a_table_without_colour_when_not_on_a_terminal() {
    let h = harness();
    let out = run_mailtun(
        &[
            "probe",
            h.get("MAIL_HOST"),
            "--connect",
            h.get("MAIL_ADDR"),
            "--ca-file",
            h.get("CA_FILE"),
        ],
        b"",
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = out.stdout_text();
    assert!(!text.contains('\x1b'), "no colour on a pipe: {text}");
    for needle in [
        "STARTTLS on port 143",
        "Implicit TLS on port 993",
        "offered, performed",
        "certificate  verified",
        "SHA-256 ",
        "tls+strong   yes       CHOSEN",
        "mailtun would use: starttls on port 143, GSSAPI",
        "[accounts.mail]",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn probe_without_the_private_ca_shows_the_certificate_and_why_it_is_not_trusted() {
    let h = harness();
    let (doc, out) = probe_json(&[
        h.get("MAIL_HOST"),
        "--connect",
        h.get("MAIL_ADDR"),
        "--protocol",
        "pop3",
    ]);
    assert_eq!(
        out.code,
        Some(EXIT_NETWORK),
        "exit code of a TLS problem: {}",
        out.stderr
    );
    for m in doc["methods"].as_array().unwrap() {
        let tls = &m["tls"];
        assert_eq!(tls["verified"], false);
        assert_eq!(tls["verification_error"]["code"], "unknown_ca", "{tls}");
        assert!(
            tls["verification_error"]["message"]
                .as_str()
                .unwrap()
                .contains("mailtun test CA"),
            "the issuer is named: {tls}"
        );
        // The capabilities behind the unverified TLS are still shown.
        assert!(strings(&m["after_tls"]["mechanisms"]).contains(&"GSSAPI".to_string()));
    }
    assert!(doc["choice"]["mechanism"].is_null());
    let refusal = doc["choice"]["refusal"].as_str().unwrap();
    assert!(refusal.contains("does not trust"), "{refusal}");
    assert_eq!(doc["combinations"][0]["possible"], false);
}

/// A TLS-port server with `cert`, greeting with its capabilities and answering LOGOUT.
fn tls_server(cert: Cert) -> FakeServer {
    FakeServer::start(vec![
        Act::Tls(cert),
        send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=SCRAM-SHA-256] hello\r\n"),
        Act::ReadLine,
        send("* BYE bye\r\n{tag} OK LOGOUT completed\r\n"),
        Act::Close,
    ])
}

#[test]
fn probe_reads_bad_certificates_and_the_capabilities_behind_them_without_authenticating() {
    for (cert, code, detail) in [
        (Cert::UnknownCa, "unknown_ca", "mailtun unknown CA"),
        (Cert::WrongName, "name_mismatch", "other.example.test"),
        (Cert::Expired, "expired", "2001-01-01"),
        (Cert::NotYetValid, "not_yet_valid", "2090-01-01"),
    ] {
        let server = tls_server(cert);
        let port = server.port.to_string();
        let (doc, out) = probe_json(&[
            HOST,
            "--connect",
            "127.0.0.1",
            "--plain-port",
            "1",
            "--tls-port",
            &port,
            "--ca-file",
            pki().ca_file.to_str().unwrap(),
            "--timeout",
            "5",
        ]);
        let rec = server.finish();
        assert_eq!(out.code, Some(EXIT_NETWORK), "{cert:?}: {}", out.stderr);
        let plain = &doc["methods"][0];
        assert_eq!(plain["reachable"], false);
        assert_eq!(plain["error"]["code"], "refused", "{plain}");
        let tls = &doc["methods"][1]["tls"];
        assert_eq!(tls["verified"], false, "{cert:?}");
        assert_eq!(tls["verification_error"]["code"], code, "{cert:?}: {tls}");
        let msg = tls["verification_error"]["message"].as_str().unwrap();
        assert!(msg.contains(detail), "{cert:?}: {msg}");
        let leaf = &tls["chain"][0];
        assert_eq!(leaf["subject"], format!("CN={HOST}"));
        if cert == Cert::Expired {
            assert!(leaf["days_left"].as_i64().unwrap() < 0);
            assert_eq!(leaf["not_after"], "2001-01-01");
        }
        assert_eq!(
            strings(&doc["methods"][1]["after_tls"]["mechanisms"]),
            ["PLAIN", "SCRAM-SHA-256"]
        );
        // Only the logout went to the server: no AUTHENTICATE, no LOGIN, no secret.
        assert_eq!(rec.decrypted_lines(), ["mtz LOGOUT"], "{cert:?}");
        assert!(
            doc["choice"]["refusal"]
                .as_str()
                .unwrap()
                .contains("implicit")
        );
    }
}

/// A TLS-port server of `protocol` with the hostile certificate whose greeting and
/// capabilities carry [`HOSTILE_TEXT`], answering the logout.
fn hostile_tls_server(protocol: &str) -> FakeServer {
    let h = HOSTILE_TEXT;
    let mut script = vec![Act::Tls(Cert::HostileNames)];
    match protocol {
        "imap" => script.extend([send(format!(
            "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=X\u{1b}[2J AUTH=Y\u{202e}] {h}\r\n"
        ))]),
        "pop3" => script.extend([
            send(format!("+OK {h}\r\n")),
            Act::ReadLine,
            send("+OK\r\nSASL PLAIN X\u{1b}[2J Y\u{202e}\r\n.\r\n"),
        ]),
        _ => script.extend([
            send(format!("220 {h}\r\n")),
            Act::ReadLine,
            send("250-mail.example.test\r\n250 AUTH PLAIN X\u{1b}[2J Y\u{202e}\r\n"),
        ]),
    }
    script.extend([Act::ReadLine, send(format!("{h}\r\n")), Act::Close]);
    FakeServer::start(script)
}

/// Every string of a JSON document.
fn all_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| all_strings(x, out)),
        _ => {}
    }
}

#[test]
fn probe_shows_hostile_greetings_capabilities_and_certificate_names_escaped() {
    for protocol in ["imap", "pop3", "smtp"] {
        for json in [false, true] {
            let case = format!("{protocol} (json {json})");
            let server = hostile_tls_server(protocol);
            let port = server.port.to_string();
            let mut args = vec!["probe"];
            if json {
                args.push("--json");
            }
            args.extend([
                HOST,
                "--protocol",
                protocol,
                "--connect",
                "127.0.0.1",
                "--plain-port",
                "1",
                "--tls-port",
                &port,
                "--ca-file",
                pki().ca_file.to_str().unwrap(),
                "--timeout",
                "5",
            ]);
            let out = run_mailtun(&args, b"");
            server.finish();
            assert_eq!(out.code, Some(EXIT_NETWORK), "{case}: {}", out.stderr);
            assert_terminal_safe(&format!("{case}: stderr"), &out.stderr);
            let text = out.stdout_text();
            assert_terminal_safe(&format!("{case}: stdout"), &text);
            let shown = if json {
                let doc: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {text}"));
                let mut strings = Vec::new();
                all_strings(&doc, &mut strings);
                for s in &strings {
                    assert_terminal_safe(&format!("{case}: a JSON string"), s);
                }
                strings.join("\n")
            } else {
                text
            };
            // The hostile parts are there, escaped: greeting, capabilities, certificate.
            for needle in [
                "\\u{1b}]0;owned",
                "X\\u{1b}[2J",
                "Y\\u{202e}",
                "Evil CA",
                "evil\\u{1b}[31m.example.test",
            ] {
                assert!(
                    shown.contains(needle),
                    "{case}: {needle:?} missing: {shown}"
                );
            }
        }
    }
}

#[test]
fn probe_of_nothing_listening_reports_both_ports_refused() {
    let (doc, out) = probe_json(&[
        HOST,
        "--connect",
        "127.0.0.1",
        "--plain-port",
        "1",
        "--tls-port",
        "1",
    ]);
    assert_eq!(out.code, Some(EXIT_NETWORK));
    for m in doc["methods"].as_array().unwrap() {
        assert_eq!(m["reachable"], false);
        let msg = m["error"]["message"].as_str().unwrap();
        assert!(msg.contains("127.0.0.1 port 1"), "{msg}");
    }
}

fn check_config(dir: &std::path::Path, protocol: &str, extra: &str) -> std::path::PathBuf {
    harness().config(dir, &format!("protocol = \"{protocol}\"\n{extra}"), "")
}

#[test]
fn check_authenticates_logs_out_and_times_each_step_for_imap_pop3_and_smtp() {
    for protocol in ["imap", "pop3", "smtp"] {
        let dir = tempfile::tempdir().unwrap();
        let config = check_config(dir.path(), protocol, "");
        let out = run_mailtun(
            &[
                "--config",
                config.to_str().unwrap(),
                "check",
                "test",
                "--json",
            ],
            b"",
        );
        assert_eq!(out.code, Some(0), "{protocol}: {}", out.stderr);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["ok"], true);
        assert_eq!(doc["mechanism"], "GSSAPI");
        assert_eq!(doc["combination"], "tls+strong");
        assert_eq!(doc["method"], "starttls");
        let phases: Vec<&str> = doc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["phase"].as_str().unwrap())
            .collect();
        assert_eq!(
            phases,
            ["connect", "tls", "capabilities", "authentication", "logout"]
        );
        for s in doc["steps"].as_array().unwrap() {
            assert!(s["round_trips"].as_u64().unwrap() >= 1, "{protocol}: {s}");
            assert!(s["ms"].as_f64().unwrap() >= 0.0);
        }
        // STARTTLS and a TLS 1.3 handshake: two round trips.
        assert_eq!(doc["steps"][1]["round_trips"], 2, "{protocol}");
        let logout = doc["logout"].as_str().unwrap();
        let expected = match protocol {
            "imap" => "mtz OK",
            "pop3" => "+OK",
            _ => "221",
        };
        assert!(logout.starts_with(expected), "{protocol}: {logout}");
    }
}

#[test]
fn check_human_output_and_a_failure_with_its_hint() {
    let dir = tempfile::tempdir().unwrap();
    let config = check_config(dir.path(), "imap", "tls = [\"implicit\"]");
    let out = run_mailtun(
        &["--config", config.to_str().unwrap(), "check", "test"],
        b"",
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = out.stdout_text();
    for needle in [
        "connect",
        "tls",
        "capabilities",
        "authentication",
        "total",
        "with GSSAPI over TLSv1.3",
        "(implicit on port 993): protection tls+strong",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    let bad = harness().config(dir.path(), "", "service = \"nosuch\"");
    let out = run_mailtun(
        &["--config", bad.to_str().unwrap(), "check", "test", "--json"],
        b"",
    );
    assert_eq!(out.code, Some(EXIT_AUTH), "{}", out.stderr);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["class"], "auth");
    assert!(doc["hint"].as_str().unwrap().contains("gssapi.service"));
}

/// A TLS-port server of `protocol` that accepts PLAIN and answers the logout with
/// [`HOSTILE_TEXT`].
fn hostile_logout_server(protocol: &str) -> FakeServer {
    let h = HOSTILE_TEXT;
    let mut script = vec![Act::Tls(Cert::Good)];
    match protocol {
        "imap" => script.extend([
            send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n"),
            Act::ReadLine,
            send("{tag} OK [CAPABILITY IMAP4rev1] logged in\r\n"),
            Act::ReadLine,
            send(format!("* BYE {h}\r\n{{tag}} OK {h}\r\n")),
        ]),
        "pop3" => script.extend([
            send("+OK ready\r\n"),
            Act::ReadLine,
            send("+OK\r\nSASL PLAIN\r\n.\r\n"),
            Act::ReadLine,
            send("+OK logged in\r\n"),
            Act::ReadLine,
            send("+OK\r\nTOP\r\n.\r\n"),
            Act::ReadLine,
            send(format!("+OK {h}\r\n")),
        ]),
        _ => script.extend([
            send("220 ready\r\n"),
            Act::ReadLine,
            send("250-mail.example.test\r\n250 AUTH PLAIN\r\n"),
            Act::ReadLine,
            send("235 2.7.0 ok\r\n"),
            Act::ReadLine,
            send("250 mail.example.test\r\n"),
            Act::ReadLine,
            send(format!("221 {h}\r\n")),
        ]),
    }
    script.push(Act::Close);
    FakeServer::start(script)
}

#[test]
fn check_shows_the_servers_hostile_logout_reply_escaped() {
    use std::os::unix::fs::PermissionsExt;
    for protocol in ["imap", "pop3", "smtp"] {
        for json in [false, true] {
            let case = format!("{protocol} (json {json})");
            let server = hostile_logout_server(protocol);
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("config.toml");
            std::fs::write(
                &config,
                format!(
                    "[accounts.test]\nprotocol = \"{protocol}\"\nhost = \"{HOST}\"\nconnect = \"127.0.0.1\"\ntls_port = {}\ntls = [\"implicit\"]\nca_file = \"{}\"\nuser = \"alice\"\nauth = [\"plain\"]\npassword = {{ command = \"echo pw\" }}\ntimeout_secs = 5\n",
                    server.port,
                    pki().ca_file.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
            let mut args = vec!["--config", config.to_str().unwrap(), "check", "test"];
            if json {
                args.push("--json");
            }
            let out = run_mailtun(&args, b"");
            server.finish();
            assert_eq!(out.code, Some(0), "{case}: {}", out.stderr);
            assert_terminal_safe(&format!("{case}: stderr"), &out.stderr);
            let text = out.stdout_text();
            assert_terminal_safe(&format!("{case}: stdout"), &text);
            let logout = if json {
                let doc: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {text}"));
                doc["logout"].as_str().unwrap().to_string()
            } else {
                text
            };
            assert!(
                logout.contains("\\u{1b}]0;owned") && logout.contains("\\u{202e}txt.exe"),
                "{case}: the reply is shown escaped: {logout}"
            );
        }
    }
}
