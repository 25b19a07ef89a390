//! Fake addresses: one IPv4 and one IPv6 per allowed name, handed out in order and never
//! reused within a run, so a captured destination maps back to exactly one name.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub(crate) struct FakeMap {
    v4: (Ipv4Addr, u8),
    v6: (Ipv6Addr, u8),
    by_name: HashMap<String, u32>,
    /// Index i-1 holds the name of fake index i.
    names: Vec<String>,
    capacity: u32,
}

impl FakeMap {
    pub(crate) fn new(v4: (Ipv4Addr, u8), v6: (Ipv6Addr, u8)) -> Self {
        // Index 0 (the network address) and the last index (broadcast) are never handed out.
        let v4_size = 1u64 << (32 - u32::from(v4.1));
        let capacity = u32::try_from(v4_size.saturating_sub(2)).unwrap_or(u32::MAX);
        FakeMap {
            v4,
            v6,
            by_name: HashMap::new(),
            names: Vec::new(),
            capacity,
        }
    }

    fn addrs(&self, idx: u32) -> (Ipv4Addr, Ipv6Addr) {
        (
            Ipv4Addr::from(u32::from(self.v4.0) + idx),
            Ipv6Addr::from(u128::from(self.v6.0) + u128::from(idx)),
        )
    }

    /// The fake addresses of `name`, allocated on first use; None when the range is used up.
    pub(crate) fn get_or_alloc(&mut self, name: &str) -> Option<(Ipv4Addr, Ipv6Addr)> {
        if let Some(&idx) = self.by_name.get(name) {
            return Some(self.addrs(idx));
        }
        let idx = u32::try_from(self.names.len()).ok()? + 1;
        if idx > self.capacity {
            return None;
        }
        self.names.push(name.to_owned());
        self.by_name.insert(name.to_owned(), idx);
        Some(self.addrs(idx))
    }

    /// True when `ip` lies in one of the fake ranges (allocated or not).
    pub(crate) fn in_range(&self, ip: IpAddr) -> bool {
        self.index(ip).is_some()
    }

    fn index(&self, ip: IpAddr) -> Option<u128> {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let off = u32::from(a).wrapping_sub(u32::from(self.v4.0));
                (u64::from(off) < (1u64 << (32 - u32::from(self.v4.1)))).then_some(u128::from(off))
            }
            IpAddr::V6(a) => {
                let off = u128::from(a).wrapping_sub(u128::from(self.v6.0));
                (off >> (128 - u32::from(self.v6.1)) == 0).then_some(off)
            }
        }
    }

    /// The name a fake address stands for.
    pub(crate) fn name_of(&self, ip: IpAddr) -> Option<&str> {
        let idx = usize::try_from(self.index(ip)?).ok()?;
        self.names.get(idx.checked_sub(1)?).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_in_order_and_maps_back() {
        let mut m = FakeMap::new(crate::FAKE_V4, crate::FAKE_V6);
        let (a4, a6) = m.get_or_alloc("a.com").unwrap();
        let (b4, b6) = m.get_or_alloc("b.com").unwrap();
        assert_eq!(a4, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(b4, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(m.get_or_alloc("a.com").unwrap(), (a4, a6));
        assert_ne!(a6, b6);
        assert_eq!(m.name_of(a4.into()), Some("a.com"));
        assert_eq!(m.name_of(b6.into()), Some("b.com"));
        assert_eq!(m.name_of(IpAddr::V6(a4.to_ipv6_mapped())), Some("a.com"));
        assert_eq!(m.name_of("198.18.0.3".parse().unwrap()), None);
        assert!(m.in_range("198.19.255.255".parse().unwrap()));
        assert!(!m.in_range("198.20.0.0".parse().unwrap()));
        assert!(!m.in_range("127.0.0.1".parse().unwrap()));
        assert_eq!(m.name_of("198.18.0.0".parse().unwrap()), None);
    }

    #[test]
    fn never_reuses_and_stops_when_full() {
        let mut m = FakeMap::new((Ipv4Addr::new(10, 0, 0, 0), 30), crate::FAKE_V6);
        assert!(m.get_or_alloc("a.com").is_some());
        assert!(m.get_or_alloc("b.com").is_some());
        assert_eq!(m.get_or_alloc("c.com"), None);
        assert_eq!(m.name_of("10.0.0.1".parse().unwrap()), Some("a.com"));
    }
}
