//! A reader of MIT's FILE credential cache (format 4), for what `check` shows and GSS-API
//! does not tell: the tickets' end and renew-until times, the service principal a ticket
//! was obtained for (after referrals) and its encryption types. Pure parsing; read only.

/// One ticket of a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub client: String,
    pub server: String,
    /// Encryption type of the session key.
    pub session_enctype: i32,
    /// Encryption type the ticket itself is encrypted in (the service's key).
    pub ticket_enctype: Option<i32>,
    pub end: u32,
    pub renew_till: u32,
}

/// The tickets of a format-4 FILE cache (configuration entries left out), or `None` when
/// `data` is not one.
pub fn parse(data: &[u8]) -> Option<Vec<Ticket>> {
    let mut r = Reader { data, at: 0 };
    if r.u16()? != 0x0504 {
        return None;
    }
    let header = r.u16()? as usize;
    r.take(header)?;
    r.principal()?;
    let mut out = Vec::new();
    while r.at < data.len() {
        let client = r.principal()?;
        let server = r.principal()?;
        let session_enctype = r.u16()? as i16 as i32;
        r.counted()?;
        let _authtime = r.u32()?;
        let _start = r.u32()?;
        let end = r.u32()?;
        let renew_till = r.u32()?;
        r.take(1 + 4)?; // is_skey, flags
        for _ in 0..r.u32()? {
            r.u16()?;
            r.counted()?;
        }
        for _ in 0..r.u32()? {
            r.u16()?;
            r.counted()?;
        }
        let ticket = r.counted()?;
        r.counted()?; // second ticket
        if server.contains("@X-CACHECONF:") {
            continue;
        }
        out.push(Ticket {
            client,
            server,
            session_enctype,
            ticket_enctype: ticket_etype(ticket),
            end,
            renew_till,
        });
    }
    Some(out)
}

/// The tickets of the cache named `name` (`FILE:/path` or a path), when it is a readable
/// FILE cache.
pub fn read(name: &str) -> Option<Vec<Ticket>> {
    let path = match name.split_once(':') {
        Some(("FILE", p)) => p,
        Some(_) => return None,
        None => name,
    };
    parse(&std::fs::read(path).ok()?)
}

/// A readable name for an encryption type number (RFC 3961/3962/4757/8009).
pub fn enctype_name(e: i32) -> String {
    match e {
        16 => "des3-cbc-sha1".into(),
        17 => "aes128-cts-hmac-sha1-96".into(),
        18 => "aes256-cts-hmac-sha1-96".into(),
        19 => "aes128-cts-hmac-sha256-128".into(),
        20 => "aes256-cts-hmac-sha384-192".into(),
        23 => "rc4-hmac".into(),
        24 => "rc4-hmac-exp".into(),
        25 => "camellia128-cts-cmac".into(),
        26 => "camellia256-cts-cmac".into(),
        n => format!("enctype {n}"),
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn counted(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// `name/components@REALM`.
    fn principal(&mut self) -> Option<String> {
        let _type = self.u32()?;
        let n = self.u32()?;
        let realm = String::from_utf8_lossy(self.counted()?).into_owned();
        let mut parts = Vec::new();
        for _ in 0..n {
            parts.push(String::from_utf8_lossy(self.counted()?).into_owned());
        }
        Some(format!("{}@{realm}", parts.join("/")))
    }
}

/// One DER element at the start of `d`: (tag, contents, rest).
fn der(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *d.first()?;
    let first = *d.get(1)?;
    let (len, head) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in d.get(2..2 + n)? {
            len = len << 8 | *b as usize;
        }
        (len, 2 + n)
    };
    let body = d.get(head..head.checked_add(len)?)?;
    Some((tag, body, &d[head + len..]))
}

/// `Ticket ::= [APPLICATION 1] SEQUENCE { tkt-vno [0], realm [1], sname [2],
/// enc-part [3] EncryptedData { etype [0] Int32, ... } }`: the etype.
fn ticket_etype(ticket: &[u8]) -> Option<i32> {
    let (0x61, app, _) = der(ticket)? else {
        return None;
    };
    let (0x30, mut fields, _) = der(app)? else {
        return None;
    };
    while !fields.is_empty() {
        let (tag, body, rest) = der(fields)?;
        if tag == 0xa3 {
            let (0x30, enc, _) = der(body)? else {
                return None;
            };
            let (0xa0, etype, _) = der(enc)? else {
                return None;
            };
            let (0x02, int, _) = der(etype)? else {
                return None;
            };
            if int.is_empty() || int.len() > 4 {
                return None;
            }
            let mut v: i32 = if int[0] & 0x80 != 0 { -1 } else { 0 };
            for b in int {
                v = v << 8 | *b as i32;
            }
            return Some(v);
        }
        fields = rest;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(out: &mut Vec<u8>, d: &[u8]) {
        out.extend_from_slice(&(d.len() as u32).to_be_bytes());
        out.extend_from_slice(d);
    }

    fn principal(out: &mut Vec<u8>, realm: &str, parts: &[&str]) {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&(parts.len() as u32).to_be_bytes());
        counted(out, realm.as_bytes());
        for p in parts {
            counted(out, p.as_bytes());
        }
    }

    /// A DER Ticket whose enc-part is in `etype`.
    fn ticket(etype: u8) -> Vec<u8> {
        let enc = [
            0x30, 0x0a, 0xa0, 0x03, 0x02, 0x01, etype, 0xa2, 0x03, 0x04, 0x01, 0x00,
        ];
        let mut seq = vec![0xa0, 0x03, 0x02, 0x01, 0x05];
        seq.extend_from_slice(&[0xa1, 0x03, 0x1b, 0x01, b'R']);
        seq.extend_from_slice(&[0xa3, enc.len() as u8]);
        seq.extend_from_slice(&enc);
        let mut t = vec![0x30, seq.len() as u8];
        t.extend_from_slice(&seq);
        let mut app = vec![0x61, t.len() as u8];
        app.extend_from_slice(&t);
        app
    }

    fn cred(out: &mut Vec<u8>, server: (&str, &[&str]), skey: u16, tkt: &[u8], end: u32) {
        principal(out, "EXAMPLE.TEST", &["alice"]);
        principal(out, server.0, server.1);
        out.extend_from_slice(&skey.to_be_bytes());
        counted(out, &[0u8; 32]);
        for t in [1u32, 1, end, end + 3600] {
            out.extend_from_slice(&t.to_be_bytes());
        }
        out.push(0);
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        counted(out, tkt);
        counted(out, &[]);
    }

    #[test]
    fn reads_times_principals_and_both_enctypes() {
        let mut c = vec![0x05, 0x04, 0x00, 0x0c];
        c.extend_from_slice(&[0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        principal(&mut c, "EXAMPLE.TEST", &["alice"]);
        cred(
            &mut c,
            ("EXAMPLE.TEST", &["krbtgt", "EXAMPLE.TEST"]),
            18,
            &ticket(18),
            1000,
        );
        cred(
            &mut c,
            ("X-CACHECONF:", &["krb5_ccache_conf_data", "pa_type"]),
            0,
            b"",
            0,
        );
        cred(
            &mut c,
            ("AD.EXAMPLE", &["imap", "mail.ad.example"]),
            18,
            &ticket(23),
            2000,
        );
        let t = parse(&c).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].client, "alice@EXAMPLE.TEST");
        assert_eq!(t[0].server, "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST");
        assert_eq!((t[0].end, t[0].renew_till), (1000, 4600));
        assert_eq!(t[1].server, "imap/mail.ad.example@AD.EXAMPLE");
        assert_eq!((t[1].session_enctype, t[1].ticket_enctype), (18, Some(23)));
        assert_eq!(enctype_name(23), "rc4-hmac");
        // Truncated or foreign data is no cache, never a panic.
        for n in 0..c.len() {
            let _ = parse(&c[..n]);
        }
        assert!(parse(b"\x05\x03").is_none());
    }
}
