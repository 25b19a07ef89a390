//! What a captured connection starts with: a TLS ClientHello (tls-parser), an HTTP/1 request
//! head (httparse), or something else (ssh, git://, ...).

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_plaintext, SNIType, TlsExtension, TlsMessage,
    TlsMessageHandshake,
};

use crate::http::{looks_like_http, parse_head, Head};
use crate::rules::canonical_name;

/// TLS record header length and the largest plaintext record (2^14 + header slack).
const TLS_HEADER: usize = 5;
const TLS_MAX_RECORD: usize = 16_384 + 2048;

/// The first bytes of a connection, classified.
#[derive(Debug)]
pub(crate) enum Hello {
    /// A TLS ClientHello and its server name (canonical), if it sent one.
    Tls(Option<String>),
    /// An HTTP/1 request head.
    Http(Head),
    /// Neither (including no bytes at all).
    Other,
}

/// Classifies `buf`. `Ok(None)`: incomplete, read more. `Err`: starts like TLS or HTTP but
/// does not parse (refused: never relayed as opaque bytes).
pub(crate) fn classify(buf: &[u8]) -> Result<Option<Hello>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == 0x16 {
        return tls(buf);
    }
    if looks_like_http(buf) {
        return Ok(parse_head(buf)?.map(Hello::Http));
    }
    Ok(Some(Hello::Other))
}

fn tls(buf: &[u8]) -> Result<Option<Hello>, String> {
    if buf.len() < TLS_HEADER {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if len > TLS_MAX_RECORD {
        return Err("TLS record too long".into());
    }
    if buf.len() < TLS_HEADER + len {
        return Ok(None);
    }
    let (_, record) = parse_tls_plaintext(&buf[..TLS_HEADER + len]).map_err(|_| {
        "TLS record is not a complete ClientHello (fragmented or malformed)".to_owned()
    })?;
    let hello = match record.msg.as_slice() {
        [TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))] => ch,
        _ => return Err("first TLS record is not a single ClientHello".into()),
    };
    let Some(ext) = hello.ext else {
        return Ok(Some(Hello::Tls(None)));
    };
    let (rest, exts) = parse_tls_client_hello_extensions(ext)
        .map_err(|_| "malformed ClientHello extensions".to_owned())?;
    if !rest.is_empty() {
        return Err("malformed ClientHello extensions".into());
    }
    let mut sni = None;
    for e in &exts {
        if let TlsExtension::SNI(list) = e {
            if sni.is_some() {
                return Err("more than one server_name extension".into());
            }
            let names: Vec<&[u8]> = list
                .iter()
                .filter(|(t, _)| *t == SNIType::HostName)
                .map(|(_, n)| *n)
                .collect();
            if names.len() != 1 || list.len() != 1 {
                return Err("server_name extension must hold exactly one host name".into());
            }
            sni = Some(canonical_name(names[0]).map_err(|e| format!("SNI: {e}"))?);
        }
    }
    Ok(Some(Hello::Tls(sni)))
}

/// A minimal TLS 1.2/1.3-style ClientHello record with `sni` (for tests and the bench).
#[doc(hidden)]
pub fn client_hello(sni: Option<&[u8]>) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let n = name.len() as u16;
        ext.extend_from_slice(&[0x00, 0x00]); // server_name
        ext.extend_from_slice(&(n + 5).to_be_bytes());
        ext.extend_from_slice(&(n + 3).to_be_bytes());
        ext.push(0); // host_name
        ext.extend_from_slice(&n.to_be_bytes());
        ext.extend_from_slice(name);
    }
    // supported_versions: TLS 1.3, 1.2
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sni_of(buf: &[u8]) -> Result<Option<String>, String> {
        match classify(buf)? {
            Some(Hello::Tls(s)) => Ok(s),
            other => panic!("not TLS: {other:?}"),
        }
    }

    #[test]
    fn client_hello_sni() {
        let ch = client_hello(Some(b"API.Example.com"));
        assert_eq!(sni_of(&ch).unwrap().as_deref(), Some("api.example.com"));
        assert_eq!(sni_of(&client_hello(None)).unwrap(), None);
        assert!(sni_of(&client_hello(Some(b"a.com\0.b.com")))
            .unwrap_err()
            .contains("NUL"));
        assert!(
            classify(&ch[..ch.len() - 1]).unwrap().is_none(),
            "incomplete"
        );
        let mut trunc = ch.clone();
        trunc[4] = trunc[4].wrapping_sub(3); // record shorter than the hello
        assert!(classify(&trunc).is_err());
    }

    #[test]
    fn other_protocols() {
        assert!(matches!(
            classify(b"SSH-2.0-OpenSSH_9\r\n"),
            Ok(Some(Hello::Other))
        ));
        assert!(matches!(
            classify(b"0032git-upload-pack /x\0host=a\0"),
            Ok(Some(Hello::Other))
        ));
        assert!(matches!(
            classify(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n"),
            Ok(Some(Hello::Http(_)))
        ));
        assert!(classify(b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n").is_err());
        assert!(classify(b"").unwrap().is_none());
    }
}
