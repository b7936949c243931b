#![no_main]
//! IMAP response framing: arbitrary bytes, arbitrary limits. A frame is never longer
//! than a line plus a literal allows, and the buffer only ever shrinks by what was taken.

use libfuzzer_sys::fuzz_target;
use mailtun::protocol::line::{take_imap_response, take_line};

fuzz_target!(|data: &[u8]| {
    let Some((&l, rest)) = data.split_first() else {
        return;
    };
    let line_limit = usize::from(l % 64) + 1;
    let literal_limit = usize::from(l / 4) + 1;
    let mut buf = rest.to_vec();
    loop {
        let before = buf.len();
        match take_imap_response(&mut buf, line_limit, literal_limit) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= line_limit + literal_limit + line_limit);
                assert!(buf.len() < before);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let mut buf = rest.to_vec();
    while let Ok(Some(line)) = take_line(&mut buf, line_limit) {
        assert!(line.len() <= line_limit);
        assert!(!line.contains(&b'\n'));
    }
});
