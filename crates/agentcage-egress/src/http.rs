//! HTTP/1 request heads (httparse) and authorities, parsed strictly.
//!
//! Anything ambiguous is refused rather than interpreted: more than one Host, a Host that
//! differs from the absolute URI's authority, Content-Length together with Transfer-Encoding,
//! several Content-Length values, a Transfer-Encoding other than a single `chunked`, obs-fold
//! continuation lines, NUL bytes, userinfo in a URI.

use std::net::IpAddr;

use crate::rules::canonical_name;

/// The most bytes a request head may take.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;

/// A destination host: a canonical name or an IP literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    Name(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(a) => write!(f, "{a}"),
        }
    }
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    None,
    Length(u64),
    Chunked,
}

/// What the request line's target is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// `CONNECT host:port`
    Authority(Host, u16),
    /// `GET http://host[:port]/path`: the host, port and origin-form path.
    Absolute(Host, u16, String),
    /// `GET /path` (a request for a server, not a proxy).
    Origin(String),
}

/// A parsed, checked request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) form: Form,
    /// The Host header, parsed (default port 80).
    pub(crate) host: Option<(Host, u16)>,
    /// Header (name, value) pairs as sent.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Body,
    /// Length of the head in bytes (what follows belongs to the body or the tunnel).
    pub(crate) len: usize,
    pub(crate) minor_version: u8,
}

/// True when `buf` starts like an HTTP request line (a method token then a space), so it
/// must parse as one: a bad head is refused, never relayed as opaque bytes.
pub(crate) fn looks_like_http(buf: &[u8]) -> bool {
    let n = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    n > 0 && n <= 16 && (buf.len() == n || buf[n] == b' ')
}

/// Parses `host` or `host:port` (IPv6 in brackets); the port defaults to `default_port` when
/// given. Names are canonicalised.
pub(crate) fn parse_authority(s: &[u8], default_port: Option<u16>) -> Result<(Host, u16), String> {
    let text = std::str::from_utf8(s).map_err(|_| "authority is not ASCII".to_owned())?;
    if text.contains('@') {
        return Err(format!("authority {text:?} has userinfo"));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or(format!("authority {text:?}: no ']'"))?;
        let ip: std::net::Ipv6Addr = inner
            .parse()
            .map_err(|_| format!("authority {text:?}: bad IPv6 literal"))?;
        (Host::Ip(IpAddr::V6(ip)), after)
    } else {
        let (h, p) = match text.rfind(':') {
            Some(i) => (&text[..i], &text[i..]),
            None => (text, ""),
        };
        let host = match h.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) => Host::Name(canonical_name(h.as_bytes()).map_err(|e| e.to_string())?),
        };
        (host, p)
    };
    let port = match port {
        "" => default_port.ok_or(format!("authority {text:?} has no port"))?,
        p => {
            let digits = p
                .strip_prefix(':')
                .ok_or(format!("authority {text:?}: junk after host"))?;
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(format!("authority {text:?}: bad port"));
            }
            match digits.parse::<u16>() {
                Ok(n) if n != 0 => n,
                _ => return Err(format!("authority {text:?}: bad port")),
            }
        }
    };
    Ok((host, port))
}

/// Parses `http://authority[/path]` strictly (scheme case-insensitive; no userinfo).
fn parse_absolute(target: &str) -> Result<Form, String> {
    let lower = target.get(..7).map(str::to_ascii_lowercase);
    if lower.as_deref() != Some("http://") {
        if target.len() >= 8 && target[..8].eq_ignore_ascii_case("https://") {
            return Err("an https:// URI needs CONNECT".to_owned());
        }
        return Err(format!("unsupported request target {target:?}"));
    }
    let rest = &target[7..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (auth, path) = rest.split_at(end);
    if path.starts_with('#') {
        return Err("fragment in request target".to_owned());
    }
    let (host, port) = parse_authority(auth.as_bytes(), Some(80))?;
    let path = if path.is_empty() {
        "/".to_owned()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    Ok(Form::Absolute(host, port, path))
}

/// Parses and checks a request head. `Ok(None)`: incomplete, read more.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    if buf.contains(&0) {
        return Err("NUL byte in the request head".to_owned());
    }
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD {
                return Err(format!("request head longer than {MAX_HEAD} bytes"));
            }
            return Ok(None);
        }
        Err(e) => return Err(format!("malformed request head: {e}")),
    };
    if len > MAX_HEAD {
        return Err(format!("request head longer than {MAX_HEAD} bytes"));
    }
    let method = req.method.unwrap_or_default().to_owned();
    let target = req.path.unwrap_or_default().to_owned();
    let minor_version = req.version.unwrap_or(1);
    let form = if method == "CONNECT" {
        let (h, p) = parse_authority(target.as_bytes(), None)?;
        Form::Authority(h, p)
    } else if target.starts_with('/') {
        Form::Origin(target)
    } else {
        parse_absolute(&target)?
    };
    let mut host = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "host" => {
                if host.is_some() {
                    return Err("more than one Host header".to_owned());
                }
                host = Some(parse_authority(h.value, Some(80)).map_err(|e| format!("Host: {e}"))?);
            }
            "content-length" => {
                let v = std::str::from_utf8(h.value).unwrap_or("");
                if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("bad Content-Length".to_owned());
                }
                if length.is_some() {
                    return Err("more than one Content-Length header".to_owned());
                }
                length = v.parse().ok();
            }
            "transfer-encoding" => {
                if chunked || !h.value.eq_ignore_ascii_case(b"chunked") {
                    return Err("Transfer-Encoding other than one \"chunked\"".to_owned());
                }
                chunked = true;
            }
            _ => {}
        }
        headers.push((h.name.to_owned(), h.value.to_vec()));
    }
    let body = match (length, chunked) {
        (Some(_), true) => return Err("both Content-Length and Transfer-Encoding".to_owned()),
        (Some(0), false) | (None, false) => Body::None,
        (Some(n), false) => Body::Length(n),
        (None, true) => Body::Chunked,
    };
    if let (Form::Absolute(uh, up, _), Some((hh, hp))) = (&form, &host) {
        if uh != hh || up != hp {
            return Err(format!(
                "Host header {hh}:{hp} differs from the request URI's authority {uh}:{up}"
            ));
        }
    }
    if let (Form::Authority(uh, up), Some((hh, hp))) = (&form, &host) {
        // Host without a port defaults to 80 above; for CONNECT only the host must agree
        // when no port was written.
        if uh != hh || (up != hp && *hp != 80) {
            return Err(format!(
                "Host header {hh} differs from the CONNECT authority {uh}:{up}"
            ));
        }
    }
    Ok(Some(Head {
        method,
        form,
        host,
        headers,
        body,
        len,
        minor_version,
    }))
}

/// The head to send upstream for an absolute-form request: origin-form target, the same
/// headers minus hop-by-hop and proxy ones, a Host header, and `Connection: close` (one
/// request per proxied connection: the next request may name another host).
pub(crate) fn rewrite_for_origin(head: &Head, host: &Host, port: u16, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(format!(" HTTP/1.{}\r\n", head.minor_version).as_bytes());
    let host_value = if port == 80 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    out.extend_from_slice(format!("Host: {host_value}\r\n").as_bytes());
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "host"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authorization"
                | "te"
                | "upgrade"
        ) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

/// One step of a chunked body: how many bytes at the start of `buf` form complete chunk
/// framing + data that can be forwarded, and whether the body ended there.
/// `Ok(None)`: need more bytes.
pub(crate) fn chunk_step(buf: &[u8]) -> Result<Option<(usize, bool)>, String> {
    match httparse::parse_chunk_size(buf) {
        Ok(httparse::Status::Complete((hdr, size))) => {
            if size == 0 {
                // Trailer section: header lines until an empty line.
                let mut pos = hdr;
                loop {
                    let rest = &buf[pos..];
                    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                        return if rest.len() > MAX_HEAD {
                            Err("trailer too long".into())
                        } else {
                            Ok(None)
                        };
                    };
                    if rest[..eol].contains(&0) {
                        return Err("NUL in chunk trailer".into());
                    }
                    pos += eol + 2;
                    if eol == 0 {
                        return Ok(Some((pos, true)));
                    }
                }
            }
            let size = usize::try_from(size).map_err(|_| "chunk too large".to_owned())?;
            let total = hdr
                .checked_add(size)
                .and_then(|t| t.checked_add(2))
                .ok_or("chunk too large")?;
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[total - 2..total] != b"\r\n" {
                return Err("chunk data not followed by CRLF".into());
            }
            Ok(Some((total, false)))
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() > 1024 {
                Err("chunk size line too long".into())
            } else {
                Ok(None)
            }
        }
        Err(_) => Err("bad chunk size".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Head, String> {
        parse_head(s.as_bytes()).map(|h| h.expect("complete"))
    }

    #[test]
    fn connect_and_absolute() {
        let h = head("CONNECT Example.COM.:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").unwrap();
        assert_eq!(
            h.form,
            Form::Authority(Host::Name("example.com".into()), 443)
        );
        let h = head("GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n").unwrap();
        assert_eq!(
            h.form,
            Form::Absolute(Host::Name("example.com".into()), 80, "/a?b".into())
        );
        let h = head("GET HTTP://[::1]:8080 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(
            h.form,
            Form::Absolute(Host::Ip("::1".parse().unwrap()), 8080, "/".into())
        );
        let h = head("POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!((h.body, h.len), (Body::Length(5), h.len));
        assert!(matches!(h.form, Form::Origin(_)));
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: a").unwrap().is_none());
    }

    #[test]
    fn ambiguous_requests_refused() {
        for (req, why) in [
            ("GET http://a.com/ HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n", "more than one Host"),
            ("GET http://a.com/ HTTP/1.1\r\nHost: b.com\r\n\r\n", "differs"),
            ("GET http://a.com/ HTTP/1.1\r\nHost: a.com:81\r\n\r\n", "differs"),
            ("CONNECT a.com:443 HTTP/1.1\r\nHost: b.com:443\r\n\r\n", "differs"),
            ("GET http://a.com\0.b.com/ HTTP/1.1\r\n\r\n", "NUL"),
            ("GET http://a.com/ HTTP/1.1\r\nX: a\0b\r\n\r\n", "NUL"),
            ("GET http://a.com/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "malformed"),
            ("POST http://a.com/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
            ("POST http://a.com/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", "more than one"),
            ("POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"),
            ("POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding"),
            ("POST http://a.com/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
            ("GET http://user@a.com/ HTTP/1.1\r\n\r\n", "userinfo"),
            ("GET https://a.com/ HTTP/1.1\r\n\r\n", "CONNECT"),
            ("GET ftp://a.com/ HTTP/1.1\r\n\r\n", "unsupported"),
            ("GET http://a_b.com/ HTTP/1.1\r\n\r\n", "letter"),
            ("GET http://127.1/ HTTP/1.1\r\n\r\n", "digits"),
            ("CONNECT a.com HTTP/1.1\r\n\r\n", "no port"),
            ("CONNECT a.com:0 HTTP/1.1\r\n\r\n", "bad port"),
        ] {
            let e = head(req).expect_err(req);
            assert!(e.contains(why), "{req:?}: {e:?} lacks {why:?}");
        }
    }

    #[test]
    fn rewrite_drops_proxy_headers() {
        let h = head(
            "GET http://a.com:8080/x HTTP/1.1\r\nHost: a.com:8080\r\nProxy-Authorization: s\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        let out = rewrite_for_origin(&h, &Host::Name("a.com".into()), 8080, "/x");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /x HTTP/1.1\r\nHost: a.com:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn chunks() {
        assert_eq!(
            chunk_step(b"5\r\nhello\r\n0\r\n\r\n").unwrap(),
            Some((10, false))
        );
        assert_eq!(chunk_step(b"0\r\n\r\n").unwrap(), Some((5, true)));
        assert_eq!(chunk_step(b"0\r\nX: y\r\n\r\n").unwrap(), Some((11, true)));
        assert_eq!(chunk_step(b"5\r\nhel").unwrap(), None);
        assert!(chunk_step(b"5\r\nhelloXX").is_err());
        assert!(chunk_step(b"zz\r\n").is_err());
    }

    #[test]
    fn http_sniffing() {
        assert!(looks_like_http(b"GET / HTTP/1.1"));
        assert!(looks_like_http(b"CONNECT"));
        assert!(!looks_like_http(b"SSH-2.0-OpenSSH"));
        assert!(!looks_like_http(b"\x16\x03\x01"));
        assert!(!looks_like_http(b"0032git-upload-pack"));
    }
}
