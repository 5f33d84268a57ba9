//! One spelling of TLS cipher suite and key-exchange group names.
//!
//! rustls, OpenSSL and the RFCs spell the same suite or group differently (`TLS13_AES_...`
//! vs `TLS_AES_...`, `P-256` vs `prime256v1` vs `secp256r1`). Every TLS backend of the proxy
//! and the load generator's handshake reports pass names through these, so configs accept
//! any spelling and CSV columns from different backends compare equal.

/// Canonical (IANA) cipher suite name for any spelling users may write: `TLS13_AES_...`
/// (rustls) becomes `TLS_AES_...`; case is ignored.
pub fn canonical_suite(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    match upper.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => upper,
    }
}

/// Canonical key-exchange group name: OpenSSL's and the RFC's spellings map to rustls's
/// (`P-256`/`prime256v1` become `secp256r1`), so every backend reports the same string.
pub fn canonical_group(name: &str) -> String {
    match name.trim().to_ascii_lowercase().as_str() {
        "x25519" => "X25519".into(),
        "p-256" | "prime256v1" | "secp256r1" => "secp256r1".into(),
        "p-384" | "secp384r1" => "secp384r1".into(),
        "p-521" | "secp521r1" => "secp521r1".into(),
        "x25519mlkem768" => "X25519MLKEM768".into(),
        "x448" => "X448".into(),
        _ => name.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_and_group_names_are_canonical() {
        assert_eq!(
            canonical_suite("tls13_aes_128_gcm_sha256"),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            canonical_suite("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(canonical_group("P-256"), "secp256r1");
        assert_eq!(canonical_group("prime256v1"), "secp256r1");
        assert_eq!(canonical_group("x25519"), "X25519");
    }
}
