//! Framing of server replies: size-bounded CRLF lines, and IMAP responses whose lines
//! carry `{N}` literals. Only complete frames leave the buffer; a partial one waits.

use super::ProtocolError;

/// Longest line accepted before authentication (RFC 7162 recommends at least 8192 octets).
pub const MAX_LINE: usize = 64 * 1024;
/// Largest literal accepted before authentication; nothing legitimate comes close.
pub const MAX_LITERAL: usize = 64 * 1024;
/// Most lines accepted in one multi-line reply (POP3 `CAPA`, SMTP `EHLO`); real servers
/// send a dozen or two.
pub const MAX_REPLY_LINES: usize = 128;
/// Most bytes accepted in one multi-line reply, line terminators not counted.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Takes one line from the front of `buf`, without its CRLF (a bare LF is accepted too).
/// `Ok(None)` means more bytes are needed.
pub fn take_line(buf: &mut Vec<u8>, limit: usize) -> Result<Option<Vec<u8>>, ProtocolError> {
    match find_line_end(buf, 0, limit)? {
        None => Ok(None),
        Some((content_end, next)) => {
            let line = buf[..content_end].to_vec();
            buf.drain(..next);
            Ok(Some(line))
        }
    }
}

/// Takes one IMAP response from the front of `buf`: a line, or a line ending in a literal
/// announcement followed by the literal and the rest of the response. Line terminators
/// inside the frame are kept; the final CRLF is removed. Each line is at most
/// `line_limit` bytes, each literal at most `literal_limit`, and the frame up to its last
/// literal at most their sum.
pub fn take_imap_response(
    buf: &mut Vec<u8>,
    line_limit: usize,
    literal_limit: usize,
) -> Result<Option<Vec<u8>>, ProtocolError> {
    let mut pos = 0;
    loop {
        let Some((content_end, next)) = find_line_end(buf, pos, line_limit)? else {
            return Ok(None);
        };
        match literal_size(&buf[pos..content_end]) {
            None => {
                let frame = buf[..content_end].to_vec();
                buf.drain(..next);
                return Ok(Some(frame));
            }
            Some(size) if size > literal_limit as u64 => {
                return Err(ProtocolError::LiteralTooLarge {
                    size,
                    limit: literal_limit,
                });
            }
            Some(size) => {
                let after = next + size as usize;
                // Each literal may be within its limit while the response never ends:
                // the whole frame is bounded too.
                let frame_limit = line_limit.saturating_add(literal_limit);
                if after > frame_limit {
                    return Err(ProtocolError::LineTooLong { limit: frame_limit });
                }
                if buf.len() < after {
                    return Ok(None);
                }
                pos = after;
            }
        }
    }
}

/// Finds the end of the line starting at `from`: (end of content, start of next line).
fn find_line_end(
    buf: &[u8],
    from: usize,
    limit: usize,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let window = &buf[from..];
    match window.iter().position(|&b| b == b'\n') {
        None if window.len() > limit => Err(ProtocolError::LineTooLong { limit }),
        None => {
            if window.contains(&0) {
                return Err(ProtocolError::NulByte);
            }
            Ok(None)
        }
        Some(lf) if lf > limit => Err(ProtocolError::LineTooLong { limit }),
        Some(lf) => {
            if window[..lf].contains(&0) {
                return Err(ProtocolError::NulByte);
            }
            let end = if lf > 0 && window[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            Ok(Some((from + end, from + lf + 1)))
        }
    }
}

/// The size announced by a line ending in `{N}` or `{N+}` (RFC 3501, RFC 7888).
fn literal_size(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_for_their_terminator() {
        let mut buf = b"* OK hi\r\n* BYE".to_vec();
        assert_eq!(take_line(&mut buf, 100).unwrap().unwrap(), b"* OK hi");
        assert_eq!(take_line(&mut buf, 100).unwrap(), None);
        buf.extend_from_slice(b"\n");
        assert_eq!(take_line(&mut buf, 100).unwrap().unwrap(), b"* BYE");
        assert!(buf.is_empty());
    }

    #[test]
    fn an_endless_line_is_refused_before_it_fills_memory() {
        let mut buf = vec![b'a'; 101];
        assert_eq!(
            take_line(&mut buf, 100),
            Err(ProtocolError::LineTooLong { limit: 100 })
        );
    }

    #[test]
    fn nul_bytes_are_refused() {
        let mut buf = b"* OK a\0b\r\n".to_vec();
        assert_eq!(take_line(&mut buf, 100), Err(ProtocolError::NulByte));
    }

    #[test]
    fn imap_literals_are_part_of_the_frame() {
        let mut buf = b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\nm1 OK\r\n".to_vec();
        let frame = take_imap_response(&mut buf, 100, 100).unwrap().unwrap();
        assert_eq!(frame, b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)");
        assert_eq!(buf, b"m1 OK\r\n");
    }

    #[test]
    fn an_incomplete_literal_waits() {
        let mut buf = b"* X {10}\r\nabc".to_vec();
        assert_eq!(take_imap_response(&mut buf, 100, 100).unwrap(), None);
        assert_eq!(buf.len(), 13);
    }

    #[test]
    fn an_endless_chain_of_small_literals_is_refused() {
        let mut buf = b"* X".to_vec();
        for _ in 0..10 {
            buf.extend_from_slice(b" {60}\r\n");
            buf.extend_from_slice(&[b'a'; 60]);
        }
        assert_eq!(
            take_imap_response(&mut buf, 100, 100),
            Err(ProtocolError::LineTooLong { limit: 200 })
        );
    }

    #[test]
    fn a_huge_literal_is_refused_without_waiting_for_it() {
        let mut buf = b"* X {4294967296}\r\n".to_vec();
        assert_eq!(
            take_imap_response(&mut buf, 100, 100),
            Err(ProtocolError::LiteralTooLarge {
                size: 4294967296,
                limit: 100
            })
        );
    }
}
