//! Systemd socket activation: the listening sockets passed as fds 3.. with `LISTEN_FDS`
//! and `LISTEN_PID` (sd_listen_fds(3)), named by `LISTEN_FDNAMES` after the accounts
//! they serve (`FileDescriptorName=` in the socket unit).

use std::os::fd::{FromRawFd, OwnedFd};

/// First fd passed by systemd.
const FIRST_FD: i32 = 3;

/// One passed listening socket and the name systemd gave it.
pub struct Passed {
    pub name: Option<String>,
    pub fd: OwnedFd,
}

/// The sockets passed to this process, taken (at most once: the variables are
/// removed, so that no child sees them); empty when none were passed.
pub fn take_passed() -> Vec<Passed> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    // SAFETY: called once at start-up by `mailtun serve` on its main thread, before any
    // other thread of ours reads the environment.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if !pid_ok || count <= 0 {
        return Vec::new();
    }
    (0..count)
        .map(|i| {
            let fd = FIRST_FD + i;
            // Not inherited by password or token commands.
            // SAFETY: fcntl on an fd number; failure leaves it as it was.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            Passed {
                name: names
                    .get(i as usize)
                    .filter(|n| !n.is_empty() && n.as_str() != "unknown")
                    .cloned(),
                // SAFETY: sd_listen_fds(3): fds 3..3+LISTEN_FDS belong to this process
                // when LISTEN_PID is its pid; each is taken once, here.
                fd: unsafe { OwnedFd::from_raw_fd(fd) },
            }
        })
        .collect()
}
