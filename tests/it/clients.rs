//! Real mail clients driving the tunnel: mutt (under tmux) and mbsync.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{harness, mailtun_bin};

/// A shell-quoted tunnel command for `config`.
fn tunnel_command(config: &Path) -> String {
    format!(
        "{} --config {} tunnel test",
        mailtun_bin(),
        config.display()
    )
}

#[test]
fn mutt_opens_the_inbox_through_the_tunnel_and_shows_the_message_count() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = h.config(dir.path(), "", "");
    let muttrc = dir.path().join("muttrc");
    std::fs::write(
        &muttrc,
        format!(
            "set tunnel=\"{}\"\nset folder=\"imap://alice@{}/\"\nset spoolfile=\"+INBOX\"\nset imap_user=alice\nset status_format=\"STATUS %f msgs=%m\"\nset header_cache=\"\"\nset message_cachedir=\"\"\nset mail_check=60\nset imap_passive=yes\n",
            tunnel_command(&config),
            h.get("MAIL_HOST")
        ),
    )
    .unwrap();
    let session = format!("mailtun-test-{}", std::process::id());
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux");
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "40",
        &format!(
            "env KRB5_CONFIG={} HOME={} TERM=xterm mutt -n -F {} ; sleep 30",
            h.get("KRB5_CONFIG"),
            dir.path().display(),
            muttrc.display()
        ),
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut screen = String::new();
    while Instant::now() < deadline {
        screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout)
            .into_owned();
        if screen.contains("msgs=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = tmux(&["send-keys", "-t", &session, "q", ""]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = tmux(&["kill-session", "-t", &session]);
    let count = h.get("INBOX_MESSAGES");
    assert!(
        screen.contains(&format!("msgs={count}")),
        "mutt's screen:\n{screen}"
    );
    assert!(screen.contains("INBOX"), "mutt's screen:\n{screen}");
}

#[test]
fn mbsync_syncs_the_mailbox_through_the_tunnel_with_the_big_message_intact() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = h.config(dir.path(), "", "");
    let local = dir.path().join("mail");
    std::fs::create_dir_all(&local).unwrap();
    let rc = dir.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount test\nTunnel \"{}\"\n\nIMAPStore remote\nAccount test\n\nMaildirStore local\nPath {}/\nInbox {}/INBOX\n\nChannel test\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSyncState *\n",
            tunnel_command(&config),
            local.display(),
            local.display()
        ),
    )
    .unwrap();
    let out = Command::new("mbsync")
        .args(["-c", rc.to_str().unwrap(), "-a"])
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .output()
        .expect("run mbsync");
    assert!(
        out.status.success(),
        "mbsync failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cur = local.join("INBOX/cur");
    let new = local.join("INBOX/new");
    let files: Vec<_> = [cur, new]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .collect();
    let expected_count: usize = h.get("INBOX_MESSAGES").parse().unwrap();
    assert_eq!(files.len(), expected_count, "{files:?}");
    // mbsync stores messages with LF line ends and adds an X-TUID header of its own;
    // compare on that basis.
    let big = std::fs::read(h.path("BIG_MESSAGE")).unwrap();
    let big_lf: Vec<u8> = strip_cr(&big);
    let found = files
        .iter()
        .any(|f| without_tuid(&strip_cr(&std::fs::read(f).unwrap())) == big_lf);
    assert!(found, "no synced message equals the 20 MB message");
}

fn strip_cr(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, &b) in data.iter().enumerate() {
        if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

/// Removes the `X-TUID:` header line that mbsync adds while syncing.
fn without_tuid(data: &[u8]) -> Vec<u8> {
    let Some(at) = data.windows(8).position(|w| w == b"X-TUID: ") else {
        return data.to_vec();
    };
    let end = at
        + data[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len() - at, |p| p + 1);
    [&data[..at], &data[end..]].concat()
}

#[test]
fn fetchmail_retrieves_a_message_through_the_plugin() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let config = h.config(dir.path(), "", "");
    let out_file = dir.path().join("fetched.eml");
    let rc = dir.path().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "poll {host} via localhost no dns with proto IMAP plugin \"{tunnel}\" auth ssh\n  user alice is root here keep fetchall sslproto \"\" fetchlimit 1 mda \"cat > {out}\"\n",
            host = h.get("MAIL_HOST"),
            tunnel = tunnel_command(&config),
            out = out_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("fetchmail")
        .args(["-f", rc.to_str().unwrap(), "--nosyslog"])
        .env("KRB5_CONFIG", h.get("KRB5_CONFIG"))
        .env("HOME", dir.path())
        .output()
        .expect("run fetchmail");
    // Exit 13 is "fetchlimit reached": one message fetched, others left on the server.
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(0 | 13)),
        "fetchmail failed: {log}"
    );
    let fetched = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert!(
        fetched.contains("Subject: Hello Alice"),
        "fetched: {fetched}\nlog: {log}"
    );
}
