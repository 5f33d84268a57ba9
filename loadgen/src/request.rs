//! The request, built once: head and body in one buffer so each request is one write.

use crate::url::Url;

/// A header or method that cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("-H {0:?}: expected \"Name: value\"")]
    HeaderSyntax(String),
    #[error("-H {0:?}: {1} is set by loadgen itself ({2})")]
    HeaderReserved(String, &'static str, &'static str),
    #[error("--method {0:?} is not an HTTP method token")]
    Method(String),
}

/// Builds `METHOD path HTTP/1.1`, `Host`, the user's headers, `Content-Length` and, without
/// keep-alive, `Connection: close`, followed by the body.
pub fn build(
    method: &str,
    url: &Url,
    headers: &[String],
    body: &[u8],
    keepalive: bool,
    has_body: bool,
) -> Result<Vec<u8>, RequestError> {
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(RequestError::Method(method.to_string()));
    }
    let mut parsed = Vec::with_capacity(headers.len());
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| RequestError::HeaderSyntax(h.clone()))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty()
            || !name.bytes().all(is_token)
            || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
        {
            return Err(RequestError::HeaderSyntax(h.clone()));
        }
        for (reserved, why) in RESERVED {
            if name.eq_ignore_ascii_case(reserved) {
                return Err(RequestError::HeaderReserved(h.clone(), reserved, why));
            }
        }
        parsed.push((name, value));
    }

    let mut head = format!("{method} {} HTTP/1.1\r\n", url.path);
    if !parsed.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {}\r\n", url.host_header()));
    }
    for (name, value) in parsed {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // A body-carrying method always says how long its body is, even when it is empty.
    if has_body || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !keepalive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    Ok(request)
}

/// `size` bytes of printable, position-dependent data (a xorshift sequence over
/// `[a-z0-9]`): an echo that drops, repeats or reorders bytes does not match it.
pub fn generated_body(size: usize) -> Vec<u8> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 36) as usize]
        })
        .collect()
}

/// Headers loadgen frames or controls itself, and the flag that controls them.
const RESERVED: [(&str, &str); 3] = [
    ("content-length", "use -b/--body-size or --body-file"),
    ("transfer-encoding", "bodies are sent with a Content-Length"),
    ("connection", "use --no-keepalive"),
];

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://127.0.0.1:8080/echo").unwrap()
    }

    #[test]
    fn post_with_body_and_headers() {
        let req = build("POST", &url(), &["X-A: 1".into()], b"hello", true, true).unwrap();
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"
        );
    }

    #[test]
    fn get_without_keepalive_and_own_host() {
        let req = build("GET", &url(), &["host: example".into()], b"", false, false).unwrap();
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "GET /echo HTTP/1.1\r\nhost: example\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn bad_headers_are_named() {
        for (h, needle) in [
            ("NoColon", "Name: value"),
            ("Content-Length: 3", "--body-size"),
            ("connection: close", "--no-keepalive"),
            ("Bad Name: x", "Name: value"),
        ] {
            let err = build("GET", &url(), &[h.into()], b"", true, false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(h) && err.contains(needle), "{err}");
        }
        assert!(build("G T", &url(), &[], b"", true, false).is_err());
    }

    #[test]
    fn generated_body_is_printable_and_varied() {
        let body = generated_body(4096);
        assert_eq!(body.len(), 4096);
        assert!(body.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(body[..36], body[36..72]);
    }
}
