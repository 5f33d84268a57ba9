//! The target URL: `http://`, `https://` or `unix://`, parsed once. Below settings, request
//! and connect, which all read it.

use std::path::PathBuf;

/// A parsed target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or address, without IPv6 brackets; `localhost` for Unix sockets.
    pub host: String,
    pub port: u16,
    /// Request target: path and query, starting with `/`.
    pub path: String,
    /// The socket path of a `unix://` URL.
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Unix,
}

/// A URL loadgen cannot use; part of [`crate::SettingsError`], so exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid URL {url:?}: {reason} (expected http://HOST:PORT/path, https://HOST:PORT/path or unix:///abs/path.sock)")]
pub struct UrlError {
    url: String,
    reason: String,
}

impl Url {
    /// Parses `http://HOST[:PORT][/path]`, `https://...` or `unix:///abs/path`.
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let fail = |reason: &str| UrlError {
            url: text.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = match text.split_once("://") {
            Some((s, rest)) => (s.to_ascii_lowercase(), rest),
            None => return Err(fail("no scheme")),
        };
        let scheme = match scheme.as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "unix" => Scheme::Unix,
            other => return Err(fail(&format!("unsupported scheme {other:?}"))),
        };
        if scheme == Scheme::Unix {
            if !rest.starts_with('/') || rest.len() < 2 {
                return Err(fail(
                    "a unix URL needs an absolute socket path (unix:///run/x.sock)",
                ));
            }
            return Ok(Url {
                scheme,
                host: "localhost".into(),
                port: 0,
                path: "/".into(),
                socket: Some(PathBuf::from(rest)),
            });
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(fail("the path contains spaces or control characters"));
        }
        if let Some(i) = path.find('#') {
            return Err(fail(&format!(
                "fragments are not sent to servers ({})",
                &path[i..]
            )));
        }
        if authority.contains('@') {
            return Err(fail("user information in URLs is not supported"));
        }
        let default_port = if scheme == Scheme::Https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| fail("unclosed [ in the IPv6 address"))?;
            let port = match after {
                "" => default_port,
                p => parse_port(p.strip_prefix(':').ok_or_else(|| fail("junk after ]"))?)
                    .ok_or_else(|| fail("bad port"))?,
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(fail(&format!("{host:?} is not an IPv6 address")));
            }
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, p)) => (
                    host.to_string(),
                    parse_port(p).ok_or_else(|| fail("bad port"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
        if !valid_host {
            return Err(fail("missing or invalid host"));
        }
        Ok(Url {
            scheme,
            host,
            port,
            path,
            socket: None,
        })
    }

    /// The `Host` header's value: the host, bracketed if IPv6, with the port unless default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.scheme, self.port) {
            (Scheme::Unix, _) | (Scheme::Http, 80) | (Scheme::Https, 443) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

fn parse_port(p: &str) -> Option<u16> {
    p.parse::<u16>().ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = Url::parse("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Http, "127.0.0.1", 8080, "/a/b?x=1")
        );
        assert_eq!(u.host_header(), "127.0.0.1:8080");

        let u = Url::parse("https://localhost").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header().as_str()),
            (443, "/", "localhost")
        );

        let u = Url::parse("https://[::1]:8443/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8443));
        assert_eq!(u.host_header(), "[::1]:8443");

        let u = Url::parse("unix:///run/echo.sock").unwrap();
        assert_eq!(
            u.socket.as_deref(),
            Some(std::path::Path::new("/run/echo.sock"))
        );
        assert_eq!(u.path, "/");
    }

    #[test]
    fn bad_urls_are_named() {
        for bad in [
            "127.0.0.1:8080",
            "ftp://x/",
            "http://:80/",
            "http://host:99999/",
            "http://host:0/",
            "http://[::1/",
            "unix://relative.sock",
            "http://a b/",
            "http://h/#frag",
        ] {
            let err = Url::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
