//! Text that came from a server or its certificate, made safe to show on a terminal.
//!
//! A server chooses its greeting, its refusals, its capability words and the names in
//! its certificate; printed as they are, an ESC sequence could rewrite the terminal, a
//! CR or LF could forge a line of mailtun's own output, and a bidi override could make
//! text read differently than it is. [`escape`] replaces every such character with its
//! Rust escape (`\u{1b}`, `\r`, `\u{202e}`), visible and inert. Everything else,
//! including non-ASCII letters, stays as it is.
//!
//! The escape is applied where server text is captured (a dialect's `shown_text`, the
//! certificate facts, the capability lists of messages and reports), so the `--json`
//! documents hold the escaped form too (`"\\u{1b}"` in JSON): what a script reads is
//! what a person would see. [`escape_lines`] is the last guard before stderr.

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls and DEL
/// (`char::is_control`), the bidi controls (ALM, LRM, RLM, the embeddings and overrides
/// U+202A-U+202E, the isolates U+2066-U+2069), the line and paragraph separators, the
/// zero-width joiners and the byte-order mark, and the interlinear annotation marks.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Pushes `c` onto `out`, escaped if it is unsafe.
fn push(out: &mut String, c: char) {
    if is_unsafe(c) {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    } else {
        out.push(c);
    }
}

/// `s` with every unsafe character (see [`is_unsafe`]) written as an escape. Idempotent:
/// the escapes are printable ASCII.
pub fn escape(s: &str) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push(&mut out, c);
    }
    out
}

/// [`escape`], but LF stays a line break: for mailtun's own multi-line messages, whose
/// server parts were escaped already (this is the guard for anything that was not).
pub fn escape_lines(s: &str) -> String {
    s.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped_and_letters_kept() {
        assert_eq!(
            escape("\u{1b}[2J\rok\n\u{202e}txt.exe\u{2066}\u{7f}\u{9b}é"),
            "\\u{1b}[2J\\rok\\n\\u{202e}txt.exe\\u{2066}\\u{7f}\\u{9b}é"
        );
        assert_eq!(escape("Grüße, 日本"), "Grüße, 日本");
        assert_eq!(escape_lines("a\u{1b}\nb\r"), "a\\u{1b}\nb\\r");
    }
}
