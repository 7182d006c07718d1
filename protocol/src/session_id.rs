//! Session-Id values (RFC 6733 section 8.8): `<DiameterIdentity>;<high 32 bits>;<low 32
//! bits>[;<optional value>]`.
//!
//! Servers holding many sessions keep the canonical form compactly (an interned host and
//! two integers) and rebuild the text when they must send it; [`split`] recognises exactly the
//! ids that [`format`](std::fmt::Write) would rebuild byte for byte.

/// Splits a canonical `<host>;<high>;<low>` Session-Id (decimal numbers without leading
/// zeros, no optional part). Anything else is `None`: keep such ids as text.
///
/// ```
/// use protocol::session_id::split;
/// assert_eq!(split("gw1.example.net;1700000000;42"), Some(("gw1.example.net", 1_700_000_000, 42)));
/// assert_eq!(split("gw1.example.net;1700000000;042"), None);
/// assert_eq!(split("gw1.example.net;1;2;extra"), None);
/// ```
pub fn split(session_id: &str) -> Option<(&str, u32, u32)> {
    let mut parts = session_id.rsplitn(3, ';');
    let (low, high, host) = (parts.next()?, parts.next()?, parts.next()?);
    if host.is_empty() || host.contains(';') {
        return None;
    }
    let canonical = |s: &str| {
        let n: u32 = s.parse().ok()?;
        (s.len() == decimal_len(n) && s.bytes().all(|b| b.is_ascii_digit())).then_some(n)
    };
    Some((host, canonical(high)?, canonical(low)?))
}

fn decimal_len(mut n: u32) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_ids_split() {
        assert_eq!(split("h;0;0"), Some(("h", 0, 0)));
        assert_eq!(split("h;4294967295;1"), Some(("h", u32::MAX, 1)));
        for odd in [
            "h;4294967296;1",
            "h;+1;1",
            "h;1",
            ";1;2",
            "h;1;2;3",
            "h; 1;2",
            "h;01;2",
        ] {
            assert_eq!(split(odd), None, "{odd}");
        }
    }
}
