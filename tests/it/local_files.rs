//! Local files (issue 12, item 6): a configuration that another user can change is
//! refused (it can name a password command), `--log` files are created for the user
//! alone, and a password command that outlives the account's timeout dies with every
//! process it started.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::fake_server::{Act, Cert, FakeServer, HOST, pki, send};
use crate::harness::{Output, run_mailtun};
use crate::{EXIT_CONFIG, EXIT_NETWORK};

/// A config for a `protocol` account on the SSL port `port`, logging in with PLAIN and
/// the password command `command`, with a 2 s timeout.
fn config_text(port: u16, command: &str) -> String {
    format!(
        "[accounts.test]\nprotocol = \"imap\"\nhost = \"{HOST}\"\nconnect = \"127.0.0.1\"\ntls_port = {port}\ntls = [\"implicit\"]\nca_file = \"{}\"\nuser = \"alice\"\nauth = [\"plain\"]\nmin_protection = \"tls\"\npassword = {{ command = \"{command}\" }}\ntimeout_secs = 2\n",
        pki().ca_file.display()
    )
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn tunnel(config: &Path) -> Output {
    run_mailtun(
        &["--config", config.to_str().unwrap(), "tunnel", "test"],
        b"",
    )
}

#[test]
fn a_config_that_others_can_write_is_refused_naming_it_and_the_chmod() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    // Port 1: an accepted file would fail on the network (exit 4), not here.
    std::fs::write(&config, config_text(1, "echo pw")).unwrap();
    for mode in [0o664, 0o646, 0o620] {
        chmod(&config, mode);
        let out = tunnel(&config);
        let case = format!("mode {mode:o}");
        assert_eq!(out.code, Some(EXIT_CONFIG), "{case}: {}", out.stderr);
        let wanted = format!("chmod go-w {}", config.display());
        assert!(
            out.stderr.contains(&wanted),
            "{case}: {wanted:?} missing: {}",
            out.stderr
        );
        assert!(
            out.stdout_text().starts_with("* BYE [UNAVAILABLE]"),
            "{case}: {}",
            out.stdout_text()
        );
    }
    // The control: the same file, writable by its owner only, gets past the configuration.
    chmod(&config, 0o644);
    let out = tunnel(&config);
    assert_eq!(out.code, Some(EXIT_NETWORK), "{}", out.stderr);
    assert!(!out.stderr.contains("chmod go-w"), "{}", out.stderr);
}

#[test]
fn a_config_in_a_directory_that_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("mailtun");
    std::fs::create_dir(&sub).unwrap();
    let config = sub.join("config.toml");
    std::fs::write(&config, config_text(1, "echo pw")).unwrap();
    chmod(&config, 0o600);
    for mode in [0o775, 0o757] {
        chmod(&sub, mode);
        let out = tunnel(&config);
        let case = format!("directory mode {mode:o}");
        assert_eq!(out.code, Some(EXIT_CONFIG), "{case}: {}", out.stderr);
        assert!(
            out.stderr.contains(&config.display().to_string()),
            "{case}: the file is named: {}",
            out.stderr
        );
        let wanted = format!("chmod go-w {}", sub.display());
        assert!(
            out.stderr.contains(&wanted),
            "{case}: {wanted:?} missing: {}",
            out.stderr
        );
    }
    chmod(&sub, 0o755);
    let out = tunnel(&config);
    assert_eq!(out.code, Some(EXIT_NETWORK), "{}", out.stderr);
}

#[test]
fn a_log_file_is_created_for_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(1, "echo pw")).unwrap();
    let log = dir.path().join("mailtun.log");
    let out = run_mailtun(
        &[
            "-v",
            "--log",
            log.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "tunnel",
            "test",
        ],
        b"",
    );
    assert_eq!(out.code, Some(EXIT_NETWORK), "{}", out.stderr);
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "log file mode {mode:o}");
    assert!(!std::fs::read_to_string(&log).unwrap().is_empty());
}

/// Whether process `pid` still runs; a zombie does not (it only waits to be reaped by
/// whoever inherited it). A SIGKILL takes effect when the target next runs, so this
/// gives it up to 5 s (a bound, not a timing).
fn still_runs(pid: &str) -> bool {
    let runs = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let state = s.rsplit_once(") ")?.1.chars().next()?;
                Some(state != 'Z' && state != 'X')
            })
            .unwrap_or(false)
    };
    let until = Instant::now() + Duration::from_secs(5);
    while runs() {
        if Instant::now() > until {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_password_command_abandoned_at_the_timeout_dies_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The shell (then a foreground sleep) and a background child: both outlive the
    // account's 2 s timeout unless mailtun kills their process group. (Their stderr is
    // not mailtun's, which the test reads to its end.)
    let command = format!(
        "exec 2>/dev/null; echo $$ > {p}; sleep 1000 & echo $! >> {p}; exec sleep 1000",
        p = pids.display()
    );
    let server = FakeServer::start(vec![
        Act::Tls(Cert::Good),
        send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n"),
        Act::ReadLine,
    ]);
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(server.port, &command)).unwrap();
    let out = tunnel(&config);
    server.finish();
    let pids = std::fs::read_to_string(&pids).unwrap_or_default();
    let left: Vec<&str> = pids.lines().filter(|p| still_runs(p)).collect();
    for p in &left {
        // This test's own sleeps: do not leave them behind when it fails.
        let _ = std::process::Command::new("kill").args(["-9", p]).status();
    }
    assert_eq!(out.code, Some(EXIT_NETWORK), "{}", out.stderr);
    assert!(out.stderr.contains("within 2 s"), "{}", out.stderr);
    assert_eq!(pids.lines().count(), 2, "the command ran: {pids:?}");
    assert!(left.is_empty(), "still running: {left:?} of {pids:?}");
}
