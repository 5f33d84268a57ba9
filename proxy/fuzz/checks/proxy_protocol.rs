//! One fuzz input through `proxy::proxy_protocol::parse`, the parser that reads untrusted
//! PROXY headers from a load balancer before the TLS handshake, with the promises every
//! outcome must keep.
//!
//! Shared, via `#[path]`, by the `proxy_protocol` fuzz target and by
//! `proxy/tests/fuzz_regressions.rs`, so a saved crash replays on stable through exactly the
//! code that found it.
//!
//! On any input: no panic, never consumes more than it was given or more than
//! `MAX_HEADER_BYTES`, never asks for more than `MAX_HEADER_BYTES`. When a header parses it
//! re-encodes what was understood and parses that again: the addresses, and for v2 the TLS
//! facts, must survive.

use proxy::proxy_protocol::{
    encode, parse, Header, ProxyHeaderError, TlsFacts, Version, MAX_HEADER_BYTES,
};

/// Parses `data`, panics if a promise is broken, and returns what `parse` said.
pub fn check(data: &[u8]) -> Result<Option<(Header, usize)>, ProxyHeaderError> {
    let result = parse(data);
    match &result {
        Ok(Some((header, used))) => {
            assert!(*used <= data.len() && *used <= MAX_HEADER_BYTES);
            let tls = header.tls_facts().ok().flatten();
            let mut out = Vec::new();
            encode(header.version, &header.addrs, tls.as_ref(), &mut out);
            let (again, again_used) = parse(&out)
                .expect("a header we encoded parses")
                .expect("a header we encoded is complete");
            assert_eq!(again_used, out.len());
            assert_eq!(again.addrs, header.addrs);
            // v1 carries no TLS facts; over-cap values are left out by design.
            if let (Version::V2, Some(tls)) = (header.version, tls.filter(TlsFacts::fits_caps)) {
                assert_eq!(again.tls_facts(), Ok(Some(tls)));
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEADER_BYTES),
        Err(_) => {}
    }
    result
}
