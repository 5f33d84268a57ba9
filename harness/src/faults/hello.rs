//! Hand-made TLS bytes for the attackers: a valid TLS 1.3 ClientHello (so the proxy answers
//! with a ServerHello and junk sent after it lands mid-handshake), record framing, alerts,
//! and a small deterministic PRNG for garbage. The workspace has no `rand`, and garbage
//! from a seed is a feature: the seed is in the log, so a failing run can be replayed.

/// TLS record content types (RFC 8446, section 5.1).
pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

/// Alert levels and the descriptions the attackers send.
pub const WARNING: u8 = 1;
pub const FATAL: u8 = 2;
pub const CLOSE_NOTIFY: u8 = 0;
pub const HANDSHAKE_FAILURE: u8 = 40;

/// One TLS record: type, legacy version 3.3, length, payload.
///
/// Panics if `payload` does not fit the 16-bit length field; every caller passes less.
pub fn record(content_type: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("record payloads here are under 64 KiB");
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(content_type);
    out.extend_from_slice(&[3, 3]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An alert record (plaintext, as before the handshake finishes).
pub fn alert(level: u8, description: u8) -> Vec<u8> {
    record(ALERT, &[level, description])
}

/// A record header that announces `len` bytes (possibly more than allowed), without the
/// payload: the proxy must refuse it from the header alone, or wait for bytes that never
/// come and time out.
pub fn record_header(content_type: u8, len: u16) -> [u8; 5] {
    let [hi, lo] = len.to_be_bytes();
    [content_type, 3, 3, hi, lo]
}

/// A complete TLS 1.3 ClientHello record: TLS_AES_128_GCM_SHA256 and friends, X25519 with
/// a random public key, the signature schemes of ECDSA, RSA-PSS and Ed25519 certificates.
/// A TLS 1.3 server answers it with a ServerHello; the key share is random, so nobody can
/// finish the handshake, which is the point: what follows it is junk.
pub fn client_hello(rng: &mut Rng) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(&[3, 3]); // legacy_version TLS 1.2
    let mut random = [0u8; 32];
    rng.fill(&mut random);
    body.extend_from_slice(&random);
    // legacy_session_id: 32 bytes, as middlebox-compatible clients send.
    let mut session = [0u8; 32];
    rng.fill(&mut session);
    body.push(32);
    body.extend_from_slice(&session);
    // cipher_suites: TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256.
    body.extend_from_slice(&[0, 6, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
    body.extend_from_slice(&[1, 0]); // legacy_compression_methods: null

    let mut ext = Vec::with_capacity(128);
    // supported_groups: x25519, secp256r1.
    extension(&mut ext, 10, &[0, 4, 0, 0x1d, 0, 0x17]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256,
    // ed25519.
    extension(
        &mut ext,
        13,
        &[0, 8, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x08, 0x07],
    );
    // supported_versions: TLS 1.3 only.
    extension(&mut ext, 43, &[2, 3, 4]);
    // key_share: one x25519 share of 32 random bytes.
    let mut share = vec![0, 36, 0, 0x1d, 0, 32];
    let mut key = [0u8; 32];
    rng.fill(&mut key);
    share.extend_from_slice(&key);
    extension(&mut ext, 51, &share);
    push_u16_len(&mut body, &ext);

    let mut handshake = Vec::with_capacity(4 + body.len());
    handshake.push(1); // client_hello
    let len = u32::try_from(body.len()).expect("a ClientHello of a few hundred bytes");
    handshake.extend_from_slice(&len.to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    // The first record says 3.1 for the benefit of old middleboxes (RFC 8446, 5.1).
    let mut rec = record(HANDSHAKE, &handshake);
    rec[2] = 1;
    rec
}

fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    push_u16_len(out, data);
}

fn push_u16_len(out: &mut Vec<u8>, data: &[u8]) {
    let len = u16::try_from(data.len()).expect("extension data here is short");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

/// Records of random bytes with plausible headers: what a confused or hostile client sends
/// after its ClientHello. `kind` picks the content type the junk claims.
pub fn junk_records(rng: &mut Rng, content_type: u8, count: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..count {
        let mut payload = vec![0u8; 1 + rng.below(512) as usize];
        rng.fill(&mut payload);
        out.extend_from_slice(&record(content_type, &payload));
    }
    out
}

/// SplitMix64: tiny, fast, and good enough for garbage and jitter (not for keys).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed from the clock and the PID: different every run, printed for replay.
    pub fn seed_from_clock() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.fill(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection};

    use super::*;

    /// A rustls server with a throwaway certificate, in memory.
    fn server() -> ServerConnection {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let config = ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        ServerConnection::new(Arc::new(config)).unwrap()
    }

    /// Feeds `bytes` to the server; returns what it answers, or its error.
    fn feed(conn: &mut ServerConnection, bytes: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let mut input = bytes;
        while !input.is_empty() {
            conn.read_tls(&mut input).unwrap();
            conn.process_new_packets()?;
        }
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        Ok(out)
    }

    #[test]
    fn crafted_client_hello_gets_a_server_hello_from_rustls() {
        let mut rng = Rng::new(7);
        let hello = client_hello(&mut rng);
        assert_eq!(&hello[..3], &[HANDSHAKE, 3, 1]);
        let len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
        assert_eq!(len + 5, hello.len());
        let mut conn = server();
        let answer = feed(&mut conn, &hello).unwrap();
        // ServerHello is a plaintext handshake record; the rest follows encrypted.
        assert_eq!(answer[0], HANDSHAKE, "{answer:?}");
        assert_eq!(answer[5], 2, "handshake type server_hello");
        assert!(conn.is_handshaking());
    }

    #[test]
    fn hellos_differ_but_have_the_same_shape() {
        let mut rng = Rng::new(1);
        let a = client_hello(&mut rng);
        let b = client_hello(&mut rng);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
    }

    #[test]
    fn truncated_hello_waits_and_junk_after_hello_is_refused() {
        let mut rng = Rng::new(3);
        let hello = client_hello(&mut rng);
        for cut in [1, 4, 5, 40, hello.len() - 1] {
            let mut conn = server();
            assert_eq!(feed(&mut conn, &hello[..cut]).unwrap(), Vec::<u8>::new());
            assert!(conn.is_handshaking());
        }
        for junk_type in [APPLICATION_DATA, HANDSHAKE] {
            let mut conn = server();
            feed(&mut conn, &hello).unwrap();
            let junk = junk_records(&mut rng, junk_type, 2);
            assert!(feed(&mut conn, &junk).is_err(), "junk type {junk_type}");
        }
    }

    #[test]
    fn oversized_records_and_alerts_are_refused() {
        let mut conn = server();
        let header = record_header(HANDSHAKE, u16::MAX);
        assert!(feed(&mut conn, &header).is_err());
        // Longer than any record may be: 2^14 + 256 bytes (RFC 8446, section 5.2).
        assert!((u16::MAX as usize) > (1 << 14) + 256);
        let mut conn = server();
        assert!(feed(&mut conn, &alert(FATAL, HANDSHAKE_FAILURE)).is_err());
    }

    #[test]
    fn rng_is_deterministic_and_spreads() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        assert_eq!(a.bytes(33), b.bytes(33));
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[a.below(10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(record(ALERT, &[1, 0]), vec![21, 3, 3, 0, 2, 1, 0]);
    }
}
