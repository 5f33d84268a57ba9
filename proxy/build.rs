//! Records where the OpenSSL that the `openssl` backend links came from, for
//! `proxy --version`: openssl-sys tells its dependents `vendored=1` (as DEP_OPENSSL_VENDORED)
//! when it built OpenSSL from source, and nothing when it found the host's libssl
//! (OPENSSL_NO_VENDOR=1).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // The switch that decides it (openssl-sys's): rerun when it flips in the same target dir.
    println!("cargo::rerun-if-env-changed=OPENSSL_NO_VENDOR");
    let source = match std::env::var_os("DEP_OPENSSL_VENDORED") {
        Some(_) => "built with the workspace",
        None => "the host's libssl",
    };
    println!("cargo::rustc-env=TLS_OFF_OPENSSL_SOURCE={source}");
}
