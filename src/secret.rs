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

/// A piece of a buffer that carries a secret: bytes as they are, or their base64 form
/// (standard alphabet, padded).
#[derive(Clone, Copy)]
pub enum Piece<'a> {
    Raw(&'a [u8]),
    Base64(&'a [u8]),
}

impl Piece<'_> {
    fn len(&self) -> usize {
        match self {
            Piece::Raw(b) => b.len(),
            Piece::Base64(b) => {
                base64::encoded_len(b.len(), true).expect("a payload of addressable size")
            }
        }
    }
}

/// Puts `pieces` together in one buffer allocated at its final size, the base64 written
/// straight into it: no reallocation and no intermediate string leaves a copy of a secret
/// in freed memory, and the buffer is wiped when the [`Secret`] drops.
pub fn assemble(pieces: &[Piece<'_>]) -> Secret<Vec<u8>> {
    use base64::Engine;
    let total = pieces.iter().map(Piece::len).sum();
    let mut out = Secret::new(vec![0u8; total]);
    let buf = &mut out.0;
    let mut at = 0;
    for p in pieces {
        let n = p.len();
        match p {
            Piece::Raw(b) => buf[at..at + n].copy_from_slice(b),
            Piece::Base64(b) => {
                let written = base64::engine::general_purpose::STANDARD
                    .encode_slice(b, &mut buf[at..at + n])
                    .expect("the slice has the encoded length");
                debug_assert_eq!(written, n);
            }
        }
        at += n;
    }
    out
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
    fn assembled_buffers_are_allocated_at_their_final_size() {
        let s = assemble(&[
            Piece::Raw(b"AUTH PLAIN "),
            Piece::Base64(b"\0alice\0hunter2"),
            Piece::Raw(b"\r\n"),
        ]);
        assert_eq!(s.expose(), b"AUTH PLAIN AGFsaWNlAGh1bnRlcjI=\r\n");
        assert_eq!(s.expose().capacity(), s.expose().len());
        assert_eq!(assemble(&[]).expose().len(), 0);
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }
}
