//! `Secret<T>`: a value that never shows itself in `Debug`/`Display` and is zeroized on drop.
//!
//! Passwords, tokens, Kerberos tokens and SASL payloads travel in this type so that no
//! log line, error message or panic can print them by accident.

use std::fmt;
use zeroize::Zeroize;

/// A secret value: redacted when formatted, wiped from memory when dropped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Gives access to the value; call sites are the places to audit.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Keeps secrets out of core dumps: no core file (`RLIMIT_CORE` 0) and the process not
/// dumpable (`PR_SET_DUMPABLE` 0, which also keeps other processes of the same user from
/// attaching a debugger). Called first thing by the binary, before any secret is read;
/// children (a password command) start with a core limit of 0 too.
///
/// Returns the error of the first call that failed; the caller may only warn.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit and prctl take plain values and a pointer to a live struct.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }
}
