//! Fuzz target for `proxy::proxy_protocol::parse`, the parser that reads untrusted PROXY
//! headers from a load balancer before the TLS handshake.
//!
//! On any input it checks parse's promises (no panic, never consumes more than it was given
//! or more than `MAX_HEADER_BYTES`, never asks for more than `MAX_HEADER_BYTES`), and when a
//! header parses it re-encodes what was understood and parses that again: the addresses, and
//! for v2 the TLS facts, must survive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::proxy_protocol::{encode, parse, TlsFacts, Version, MAX_HEADER_BYTES};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Some((header, used))) => {
            assert!(used <= data.len() && used <= MAX_HEADER_BYTES);
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
});
