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

/// Stores many Session-Ids compactly: canonical ones as an interned host index and two
/// integers (kept by the caller, in its own slot layout), others as text under the caller's
/// slot number. Used by the PDF's and the gateway's session tables.
#[derive(Debug, Default)]
pub struct CompactIds {
    hosts: Vec<Box<str>>,
    host_ids: std::collections::HashMap<Box<str>, u16>,
    texts: std::collections::HashMap<u32, Box<str>>,
}

/// The host index that means "kept as text".
pub const TEXT: u16 = u16::MAX;

impl CompactIds {
    /// Stores `session_id` for `slot`; returns (host index or [`TEXT`], high, low) for the
    /// caller to keep.
    pub fn store(&mut self, slot: u32, session_id: &str) -> (u16, u32, u32) {
        if let Some((host, high, low)) = split(session_id) {
            if let Some(id) = self.intern(host) {
                return (id, high, low);
            }
        }
        self.texts.insert(slot, session_id.into());
        (TEXT, 0, 0)
    }

    /// Rebuilds the Session-Id of `slot` from what [`store`](Self::store) returned.
    pub fn text(&self, slot: u32, host: u16, high: u32, low: u32) -> String {
        match self.hosts.get(usize::from(host)) {
            Some(name) if host != TEXT => format!("{name};{high};{low}"),
            _ => self
                .texts
                .get(&slot)
                .map(|t| t.to_string())
                .unwrap_or_default(),
        }
    }

    /// Forgets the text kept for `slot`, if any (the slot is being freed).
    pub fn forget(&mut self, slot: u32) {
        self.texts.remove(&slot);
    }

    /// The interned hosts, by index, and the Session-Ids kept as text, by slot: everything
    /// [`from_parts`](Self::from_parts) needs to rebuild the same store (a hot upgrade
    /// carries it, so that the caller's slots stay valid as they are).
    pub fn parts(&self) -> (Vec<String>, Vec<(u32, String)>) {
        let hosts = self.hosts.iter().map(|h| h.to_string()).collect();
        let mut texts: Vec<(u32, String)> = self
            .texts
            .iter()
            .map(|(&slot, text)| (slot, text.to_string()))
            .collect();
        texts.sort_unstable_by_key(|&(slot, _)| slot);
        (hosts, texts)
    }

    /// The store [`parts`](Self::parts) describes. Refuses more hosts than an index holds,
    /// or a host given twice.
    pub fn from_parts(hosts: Vec<String>, texts: Vec<(u32, String)>) -> Result<Self, String> {
        if hosts.len() >= usize::from(TEXT) {
            return Err(format!("{} hosts: at most {} fit", hosts.len(), TEXT));
        }
        let mut store = Self::default();
        for host in hosts {
            let id = store.hosts.len() as u16;
            if store.host_ids.insert(host.clone().into(), id).is_some() {
                return Err(format!("host {host:?} given twice"));
            }
            store.hosts.push(host.into());
        }
        store.texts = texts
            .into_iter()
            .map(|(slot, text)| (slot, text.into()))
            .collect();
        Ok(store)
    }

    /// How many hosts are interned.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    fn intern(&mut self, host: &str) -> Option<u16> {
        if let Some(&id) = self.host_ids.get(host) {
            return Some(id);
        }
        if self.hosts.len() >= usize::from(TEXT) {
            return None;
        }
        let id = self.hosts.len() as u16;
        self.hosts.push(host.into());
        self.host_ids.insert(host.into(), id);
        Some(id)
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;

    #[test]
    fn canonical_ids_are_interned_others_kept_as_text() {
        let mut ids = CompactIds::default();
        let a = ids.store(1, "gw.example.net;1;2");
        let b = ids.store(2, "gw.example.net;3;4");
        assert_eq!(a.0, b.0, "one host, interned once");
        assert_eq!(ids.text(1, a.0, a.1, a.2), "gw.example.net;1;2");
        let c = ids.store(3, "gw.example.net;01;2");
        assert_eq!(c.0, TEXT);
        assert_eq!(ids.text(3, c.0, c.1, c.2), "gw.example.net;01;2");
        ids.forget(3);
        assert_eq!(ids.text(3, c.0, c.1, c.2), "");
        let d = ids.store(4, "other;5");
        let (hosts, texts) = ids.parts();
        let copy = CompactIds::from_parts(hosts.clone(), texts).expect("parts");
        assert_eq!(copy.text(1, a.0, a.1, a.2), "gw.example.net;1;2");
        assert_eq!(copy.text(4, d.0, d.1, d.2), "other;5");
        assert!(CompactIds::from_parts(vec![hosts[0].clone(), hosts[0].clone()], vec![]).is_err());
    }
}
