//! The GS2 header (RFC 5801 section 4) and `saslname` escaping, shared by SCRAM
//! (RFC 5802) and OAUTHBEARER (RFC 7628). Only formatting: which flag to use is the
//! mechanism's decision.

/// The channel-binding flag of a GS2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CbFlag<'a> {
    /// `n`: the client does not support channel binding.
    No,
    /// `y`: the client supports channel binding but thinks the server does not.
    Yes,
    /// `p=<type>`: the client binds to the channel of this type.
    Plus(&'a str),
}

/// `saslname` escaping: `,` becomes `=2C` and `=` becomes `=3D`, so that the name can
/// stand between commas.
pub(crate) fn escape_saslname(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

/// The GS2 header: flag, optional `a=` authorization identity, and the closing comma.
pub(crate) fn header(flag: CbFlag<'_>, authzid: Option<&str>) -> String {
    let flag = match flag {
        CbFlag::No => "n".to_string(),
        CbFlag::Yes => "y".to_string(),
        CbFlag::Plus(kind) => format!("p={kind}"),
    };
    match authzid {
        Some(a) => format!("{flag},a={},", escape_saslname(a)),
        None => format!("{flag},,"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5802_saslname_escapes_comma_and_equals() {
        assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(escape_saslname("=,"), "=3D=2C");
        assert_eq!(escape_saslname("plain"), "plain");
    }

    #[test]
    fn rfc5801_headers_for_each_flag() {
        assert_eq!(header(CbFlag::No, None), "n,,");
        assert_eq!(header(CbFlag::Yes, None), "y,,");
        assert_eq!(
            header(CbFlag::Plus("tls-exporter"), None),
            "p=tls-exporter,,"
        );
        assert_eq!(
            header(CbFlag::No, Some("user@example.com")),
            "n,a=user@example.com,"
        );
        assert_eq!(header(CbFlag::No, Some("a,b")), "n,a=a=2Cb,");
    }
}
