//! Allow rules: parsing, canonical form and matching.
//!
//! A rule is `host`, `host:port`, `*.domain`, `*.domain:port`, `IP`, `IP:port`, `CIDR`,
//! `CIDR:port`, `[v6]`, `[v6]:port` or `[v6/len]:port`. Without a port a rule allows 443 and 80.
//! Names are canonicalised once ([`canonical_name`]): the engine decides on, logs and resolves
//! exactly the canonical bytes, never the bytes the client sent.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The ports a rule without an explicit port allows.
pub const DEFAULT_PORTS: [u16; 2] = [443, 80];

/// Ports the launcher listens on even when no rule allows them, so that denials there are
/// logged instead of silently reset.
const LOGGED_PORTS: [u16; 5] = [22, 80, 443, 8080, 9418];

/// Longest name (RFC 1035, without the trailing dot) and label.
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// One allow rule, parsed and canonicalised.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    target: Target,
    port: Option<u16>,
}

/// What a rule names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// Exactly this canonical name.
    Name(String),
    /// `*.domain`: strict subdomains of this canonical name (never the name itself).
    Suffix(String),
    /// An address block (a single IP is a /32 or /128).
    Net(Net),
}

/// An IP network: the address has no bits set beyond `len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Net {
    pub(crate) addr: IpAddr,
    pub(crate) len: u8,
}

impl Net {
    /// True when `ip` lies in this block (same family; IPv4-mapped IPv6 counts as IPv4).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(n)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(n)
            }
            _ => false,
        }
    }
}

/// Why a rule or a name was rejected.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct RuleError(String);

impl RuleError {
    fn new(msg: impl Into<String>) -> Self {
        RuleError(msg.into())
    }
}

/// Canonicalises a host name: ASCII lower case, one trailing dot stripped; rejects an empty
/// name, a NUL, control or non-ASCII byte, an empty or over-long label, a label that is not
/// letters/digits/hyphens (or starts or ends with a hyphen), an over-long name, and an
/// all-numeric last label (such names are IPv4 literals to some resolvers: `127.1`).
///
/// # Errors
/// The first offending byte or label and why.
pub(crate) fn canonical_name(raw: &[u8]) -> Result<String, RuleError> {
    if let Some(pos) = raw.iter().position(|&b| b == 0) {
        return Err(RuleError::new(format!(
            "name has a NUL byte at offset {pos}"
        )));
    }
    if let Some(pos) = raw.iter().position(|&b| b < 0x20 || b == 0x7f) {
        return Err(RuleError::new(format!(
            "name has control byte 0x{:02x} at offset {pos}",
            raw[pos]
        )));
    }
    if let Some(pos) = raw.iter().position(|&b| b >= 0x80) {
        return Err(RuleError::new(format!(
            "name has non-ASCII byte 0x{:02x} at offset {pos} (use the xn-- form)",
            raw[pos]
        )));
    }
    let shown = String::from_utf8_lossy(raw);
    let body = raw.strip_suffix(b".").unwrap_or(raw);
    if body.is_empty() {
        return Err(RuleError::new("empty name"));
    }
    if body.len() > MAX_NAME {
        return Err(RuleError::new(format!(
            "name {shown:?} is {} bytes long (at most {MAX_NAME})",
            body.len()
        )));
    }
    let lower = body.to_ascii_lowercase();
    let mut last = &lower[..];
    for label in lower.split(|&b| b == b'.') {
        check_label(label, &shown)?;
        last = label;
    }
    if last.iter().all(u8::is_ascii_digit) {
        return Err(RuleError::new(format!(
            "name {shown:?}: the last label is all digits (not a host name; write an IP rule)"
        )));
    }
    // Every byte is ASCII: this cannot fail.
    String::from_utf8(lower).map_err(|_| RuleError::new("name is not ASCII"))
}

fn check_label(label: &[u8], shown: &str) -> Result<(), RuleError> {
    if label.is_empty() {
        return Err(RuleError::new(format!("name {shown:?} has an empty label")));
    }
    if label.len() > MAX_LABEL {
        return Err(RuleError::new(format!(
            "name {shown:?} has a label of {} bytes (at most {MAX_LABEL})",
            label.len()
        )));
    }
    if let Some(&b) = label
        .iter()
        .find(|&&b| !(b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Err(RuleError::new(format!(
            "name {shown:?}: byte {:?} is not a letter, digit or hyphen",
            char::from(b)
        )));
    }
    if label.starts_with(b"-") || label.ends_with(b"-") {
        return Err(RuleError::new(format!(
            "name {shown:?}: a label starts or ends with a hyphen"
        )));
    }
    Ok(())
}

fn parse_port(s: &str, rule: &str) -> Result<u16, RuleError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleError::new(format!(
            "rule {rule:?}: port {s:?} is not a number 1-65535"
        )));
    }
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(RuleError::new(format!(
            "rule {rule:?}: port {s:?} is not a number 1-65535"
        ))),
    }
}

/// `addr` or `addr/len` (no port).
fn parse_net(s: &str, rule: &str) -> Result<Net, RuleError> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    // std's parsers are strict: no octal, hex or short IPv4 forms, no zone ids.
    let addr: IpAddr = a
        .parse()
        .map_err(|_| RuleError::new(format!("rule {rule:?}: {a:?} is not an IP address")))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => {
            if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RuleError::new(format!(
                    "rule {rule:?}: prefix length {l:?} is not a number"
                )));
            }
            let n: u8 = l
                .parse()
                .map_err(|_| RuleError::new(format!("rule {rule:?}: bad prefix length {l:?}")))?;
            if n > max {
                return Err(RuleError::new(format!(
                    "rule {rule:?}: prefix length {n} is longer than {max}"
                )));
            }
            n
        }
    };
    let net = Net { addr, len };
    if !net.contains(addr) || (addr.is_ipv6() && addr.to_canonical().is_ipv4()) {
        // Host bits set, or an IPv4-mapped IPv6 block (write it as IPv4).
        let why = if addr.is_ipv6() && addr.to_canonical().is_ipv4() {
            "write IPv4-mapped addresses as IPv4"
        } else {
            "the address has bits set beyond the prefix length"
        };
        return Err(RuleError::new(format!("rule {rule:?}: {why}")));
    }
    Ok(net)
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        if s.is_empty() {
            return Err(RuleError::new("empty rule"));
        }
        if let Some(pos) = s.bytes().position(|b| b == 0 || b < 0x20 || b == 0x7f) {
            return Err(RuleError::new(format!(
                "rule {s:?} has a NUL or control byte at offset {pos}"
            )));
        }
        // `[v6]`, `[v6]:port`, `[v6/len]:port`
        if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest
                .split_once(']')
                .ok_or_else(|| RuleError::new(format!("rule {s:?}: missing ']'")))?;
            let port = match after {
                "" => None,
                p => Some(parse_port(
                    p.strip_prefix(':').ok_or_else(|| {
                        RuleError::new(format!("rule {s:?}: expected ':port' after ']'"))
                    })?,
                    s,
                )?),
            };
            let net = parse_net(inner, s)?;
            if net.addr.is_ipv4() {
                return Err(RuleError::new(format!("rule {s:?}: brackets are for IPv6")));
            }
            return Ok(Rule {
                target: Target::Net(net),
                port,
            });
        }
        // More than one ':' and no brackets: a bare IPv6 address or block, no port.
        if s.bytes().filter(|&b| b == b':').count() > 1 {
            return Ok(Rule {
                target: Target::Net(parse_net(s, s)?),
                port: None,
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(parse_port(p, s)?)),
            None => (s, None),
        };
        let first = host.as_bytes().first().copied();
        if host.contains('/') || first.is_some_and(|b| b.is_ascii_digit()) {
            // Could be an IPv4 address or block; a name whose first label starts with a digit
            // (`1password.com`) is a name if it is not an address.
            if let Ok(net) = parse_net(host, s) {
                return Ok(Rule {
                    target: Target::Net(net),
                    port,
                });
            }
            if host.contains('/') {
                return Err(parse_net(host, s)
                    .err()
                    .unwrap_or_else(|| RuleError::new("bad CIDR")));
            }
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                return Err(RuleError::new(format!(
                    "rule {s:?}: '*' is only allowed as a leading '*.'"
                )));
            }
            let name = canonical_name(domain.as_bytes())
                .map_err(|e| RuleError::new(format!("rule {s:?}: {e}")))?;
            return Ok(Rule {
                target: Target::Suffix(name),
                port,
            });
        }
        if host.contains('*') {
            return Err(RuleError::new(format!(
                "rule {s:?}: '*' is only allowed as a leading '*.'"
            )));
        }
        let name = canonical_name(host.as_bytes())
            .map_err(|e| RuleError::new(format!("rule {s:?}: {e}")))?;
        Ok(Rule {
            target: Target::Name(name),
            port,
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Name(n) => f.write_str(n)?,
            Target::Suffix(d) => write!(f, "*.{d}")?,
            Target::Net(net) => {
                let full = if net.addr.is_ipv4() { 32 } else { 128 };
                let text = if net.len == full {
                    net.addr.to_string()
                } else {
                    format!("{}/{}", net.addr, net.len)
                };
                return match (net.addr, self.port) {
                    (IpAddr::V6(_), Some(p)) => write!(f, "[{text}]:{p}"),
                    (_, Some(p)) => write!(f, "{text}:{p}"),
                    (_, None) => f.write_str(&text),
                };
            }
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl Rule {
    /// True when the rule names a port (so it allows any protocol on it, not only TLS/HTTP).
    pub(crate) fn explicit_port(&self) -> bool {
        self.port.is_some()
    }

    fn allows_port(&self, port: u16) -> bool {
        match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        }
    }

    /// True when the rule names this canonical name (any port).
    pub(crate) fn names(&self, name: &str) -> bool {
        match &self.target {
            Target::Name(n) => n == name,
            Target::Suffix(d) => {
                name.len() > d.len() + 1
                    && name.ends_with(d.as_str())
                    && name.as_bytes()[name.len() - d.len() - 1] == b'.'
            }
            Target::Net(_) => false,
        }
    }

    /// True when the rule allows this canonical name on this port.
    pub(crate) fn allows_name(&self, name: &str, port: u16) -> bool {
        self.names(name) && self.allows_port(port)
    }

    /// True when this is an IP/CIDR rule covering `ip` (any port).
    pub(crate) fn covers_ip(&self, ip: IpAddr) -> bool {
        matches!(&self.target, Target::Net(n) if n.contains(ip))
    }

    /// True when this is an IP/CIDR rule covering `ip` whose block is no wider than
    /// `range_len` (a rule for 10.0.0.0/8 permits the private 10.1.2.3; `0.0.0.0/0` does not
    /// permit loopback or private space: only a rule inside that range does).
    pub(crate) fn covers_ip_within(&self, ip: IpAddr, range_len: u8) -> bool {
        matches!(&self.target, Target::Net(n) if n.contains(ip) && n.len >= range_len)
    }

    /// True when this is an IP/CIDR rule allowing `ip` on `port`.
    pub(crate) fn allows_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.covers_ip(ip) && self.allows_port(port)
    }

    /// The ports this rule can allow.
    fn ports(&self) -> Vec<u16> {
        match self.port {
            Some(p) => vec![p],
            None => DEFAULT_PORTS.to_vec(),
        }
    }
}

/// The TCP ports the launcher must listen on inside: every port a rule can allow plus a few
/// common ones (so denials there are logged), sorted and deduplicated. The DNS and proxy
/// ports are left out: their addresses are already bound to the stub and the proxy, and a
/// wildcard listener cannot share their port.
pub fn capture_ports(rules: &[Rule]) -> Vec<u16> {
    let mut ports: Vec<u16> = rules
        .iter()
        .flat_map(Rule::ports)
        .chain(LOGGED_PORTS)
        .collect();
    ports.retain(|&p| p != crate::DNS_ADDR.port() && p != crate::PROXY_ADDR.port());
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Rule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad(s: &str) -> String {
        match s.parse::<Rule>() {
            Ok(rule) => panic!("{s:?} parsed as {rule}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn canonical_forms() {
        for (input, canon) in [
            ("Example.COM", "example.com"),
            ("example.com.", "example.com"),
            ("example.com:22", "example.com:22"),
            ("*.Example.com.", "*.example.com"),
            ("*.example.com:8443", "*.example.com:8443"),
            ("1password.com", "1password.com"),
            ("10.0.0.1", "10.0.0.1"),
            ("10.0.0.0/8:22", "10.0.0.0/8:22"),
            ("10.1.2.3:5432", "10.1.2.3:5432"),
            ("::1", "::1"),
            ("[::1]:8080", "[::1]:8080"),
            ("[FD00::/8]:22", "[fd00::/8]:22"),
            ("fd00::/8", "fd00::/8"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(r(input).to_string(), canon, "{input}");
            assert_eq!(r(canon), r(input), "{canon} reparses");
        }
    }

    #[test]
    fn rejects() {
        for (input, why) in [
            ("", "empty"),
            ("exa\0mple.com", "NUL"),
            ("example.com\0.evil.com", "NUL"),
            ("exa\tmple.com", "control"),
            ("ex_ample.com", "letter, digit"),
            ("exämple.com", "non-ASCII"),
            ("example..com", "empty label"),
            (".example.com", "empty label"),
            ("example.com..", "empty label"),
            ("-example.com", "hyphen"),
            ("example-.com", "hyphen"),
            ("*example.com", "'*'"),
            ("a.*.example.com", "'*'"),
            ("*.*.example.com", "'*'"),
            ("*", "'*'"),
            ("*.", "empty"),
            ("example.com:0", "port"),
            ("example.com:65536", "port"),
            ("example.com:+80", "port"),
            ("example.com:", "port"),
            ("10.0.0.1/33", "longer"),
            ("10.0.0.1/8", "bits set"),
            ("127.1", "all digits"),
            ("0x7f.0.0.1", "all digits"),
            ("[10.0.0.1]:80", "IPv6"),
            ("[::ffff:10.0.0.1]:80", "IPv4-mapped"),
            ("[::1]80", "':port'"),
            ("[::1", "']'"),
            ("fe80::1%eth0", "not an IP"),
            ("1.2.3.4/", "prefix"),
        ] {
            let e = bad(input);
            assert!(e.contains(why), "{input:?}: {e:?} lacks {why:?}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(bad(&long).contains("64 bytes"));
        let huge = format!("{}com", "abcdefghi.".repeat(26));
        assert!(bad(&huge).contains("at most 253"));
    }

    #[test]
    fn matching() {
        let exact = r("example.com");
        assert!(exact.allows_name("example.com", 443));
        assert!(exact.allows_name("example.com", 80));
        assert!(!exact.allows_name("example.com", 22));
        assert!(!exact.allows_name("a.example.com", 443));
        assert!(!exact.allows_name("example.com.evil", 443));
        let wild = r("*.example.com");
        assert!(wild.allows_name("a.example.com", 443));
        assert!(wild.allows_name("a.b.example.com", 80));
        assert!(
            !wild.allows_name("example.com", 443),
            "*.d is subdomains only"
        );
        assert!(!wild.allows_name("badexample.com", 443));
        assert!(!wild.allows_name("a.example.com.evil", 443));
        let ssh = r("git.example.com:22");
        assert!(ssh.allows_name("git.example.com", 22));
        assert!(!ssh.allows_name("git.example.com", 443));
        assert!(ssh.explicit_port() && !exact.explicit_port());
        let net = r("10.0.0.0/8:5432");
        assert!(net.allows_ip("10.9.8.7".parse().unwrap(), 5432));
        assert!(net.allows_ip("::ffff:10.9.8.7".parse().unwrap(), 5432));
        assert!(!net.allows_ip("11.0.0.1".parse().unwrap(), 5432));
        assert!(!net.allows_ip("10.0.0.1".parse().unwrap(), 443));
        assert!(!net.names("10.0.0.1"), "IP rules never match names");
        assert!(
            !exact.covers_ip("93.184.215.14".parse().unwrap()),
            "names never imply IPs"
        );
        let v6 = r("[2001:db8::/32]:443");
        assert!(v6.allows_ip("2001:db8::5".parse().unwrap(), 443));
        assert!(!v6.allows_ip("2001:db9::5".parse().unwrap(), 443));
        assert!(r("0.0.0.0/0").allows_ip("8.8.8.8".parse().unwrap(), 80));
    }

    #[test]
    fn canonical_name_bytes() {
        assert_eq!(
            canonical_name(b"API.Example.Com.").unwrap(),
            "api.example.com"
        );
        assert!(canonical_name(b"a.example.com\0").is_err());
        assert!(canonical_name(b"example.com..").is_err());
        assert!(canonical_name(b".").is_err());
        assert!(canonical_name(b"a b.com").is_err());
        assert!(canonical_name(b"a/b.com").is_err());
        assert!(canonical_name(b"a%2eb.com").is_err());
        assert!(canonical_name(b"localhost").is_ok());
    }

    #[test]
    fn ports() {
        let rules = [
            r("a.com"),
            r("b.com:8443"),
            r("c.com:3128"),
            r("d.com:53"),
            r("10.0.0.1:22"),
        ];
        assert_eq!(capture_ports(&rules), vec![22, 80, 443, 8080, 8443, 9418]);
        assert_eq!(capture_ports(&[]), vec![22, 80, 443, 8080, 9418]);
    }
}
