//! The parsers on outputs recorded from real programs (`fixtures/`): Debian 12's and
//! Debian 13's HAProxy, nginx and stunnel, HAProxy built on AWS-LC, the loader's trace of
//! Debian 12's hitch, and our proxy's `--version`.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn fixture(name: &str) -> &'static str {
    match name {
        "haproxy-deb12" => include_str!("fixtures/haproxy-deb12-vv.txt"),
        "haproxy-deb13" => include_str!("fixtures/haproxy-deb13-vv.txt"),
        "haproxy-awslc" => include_str!("fixtures/haproxy-awslc-vv.txt"),
        "nginx-deb12" => include_str!("fixtures/nginx-deb12-V.txt"),
        "nginx-deb13" => include_str!("fixtures/nginx-deb13-V.txt"),
        "stunnel-deb12" => include_str!("fixtures/stunnel-deb12-version.txt"),
        "stunnel-deb13" => include_str!("fixtures/stunnel-deb13-version.txt"),
        "hitch-deb12" => include_str!("fixtures/hitch-deb12-trace.txt"),
        "proxy" => include_str!("fixtures/proxy-version.txt"),
        other => panic!("no fixture {other}"),
    }
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[test]
fn haproxy_names_the_library_it_runs_on_not_the_one_it_was_built_with() {
    // Debian 12's was built with 3.0.22 and runs on the 3.0.19 installed.
    assert_eq!(haproxy(fixture("haproxy-deb12")), some("OpenSSL 3.0.19"));
    assert_eq!(haproxy(fixture("haproxy-deb13")), some("OpenSSL 3.5.9"));
    // Built "with OpenSSL 1.1.1 (compatible; AWS-LC 5.12.0)": the running line says AWS-LC.
    assert_eq!(haproxy(fixture("haproxy-awslc")), some("AWS-LC 5.12.0"));
}

#[test]
fn nginx_names_the_running_library_else_the_built_one() {
    assert_eq!(nginx(fixture("nginx-deb12")), some("OpenSSL 3.0.19"));
    assert_eq!(nginx(fixture("nginx-deb13")), some("OpenSSL 3.5.9"));
    let same = "nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.9 30 May 2023\nTLS SNI support enabled\n";
    assert_eq!(nginx(same), some("OpenSSL 3.0.9"));
}

#[test]
fn stunnel_names_the_library_it_runs_with() {
    assert_eq!(stunnel(fixture("stunnel-deb12")), some("OpenSSL 3.0.19"));
    assert_eq!(stunnel(fixture("stunnel-deb13")), some("OpenSSL 3.5.9"));
}

#[test]
fn the_loader_trace_names_the_libcrypto_loaded() {
    assert_eq!(
        loaded_libcrypto(fixture("hitch-deb12")),
        Some(PathBuf::from("/lib/x86_64-linux-gnu/libcrypto.so.3"))
    );
    assert_eq!(loaded_libcrypto("\tlibcrypto.so.3 => not found\n"), None);
    assert_eq!(
        loaded_libcrypto("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n"),
        None
    );
}

#[test]
fn a_libcrypto_file_says_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libcrypto.so.3");
    // Other mentions of OpenSSL come first in a real library; only a version counts.
    let bytes = b"\x7fELF\0OpenSSL \0OpenSSL 1.x\0OpenSSL 3.5.9 29 Sep 2026\0OpenSSL 3.0.0\0";
    std::fs::write(&lib, bytes).unwrap();
    assert_eq!(library_version(&lib), some("OpenSSL 3.5.9"));
    assert_eq!(
        openssl_version_in(b"OpenSSL 1.1.1w  11 Sep 2023"),
        some("OpenSSL 1.1.1w")
    );
    assert_eq!(
        openssl_version_in(b"at the end: OpenSSL 3.0.19"),
        some("OpenSSL 3.0.19")
    );
    assert_eq!(openssl_version_in(b"no version here"), None);
    assert_eq!(library_version(&dir.path().join("missing.so")), None);
}

#[test]
fn our_version_text_names_each_backend() {
    let text = fixture("proxy");
    assert_eq!(
        ours(text, Backend::RustlsAwsLc),
        some("rustls 0.23.46 + aws-lc-rs 1.19.0")
    );
    assert_eq!(
        ours(text, Backend::RustlsRing),
        some("rustls 0.23.46 + ring 0.17.14")
    );
    assert_eq!(ours(text, Backend::Openssl), some("OpenSSL 3.6.3"));
    assert_eq!(
        ours(text, Backend::NativeTls),
        some("native-tls 0.2.18 + OpenSSL 3.6.3")
    );
    assert_eq!(ours("proxy 0.1.0\n", Backend::Openssl), None);
    assert_eq!(
        ours(
            "native-tls backend: native-tls 0.2.18\n",
            Backend::NativeTls
        ),
        None,
        "no OpenSSL named"
    );
}

#[test]
fn unreadable_output_gives_none() {
    for text in [
        "",
        "Running on OpenSSL version :\n",
        "Running on OpenSSL version : OpenSSL\n",
        "built with\n",
        "built with OpenSSL 3 (running with OpenSSL x.y.z)\n",
        "Running  with\n",
        "rustls-aws-lc backend: \nopenssl backend: OpenSSL soon\n",
    ] {
        assert_eq!(haproxy(text), None, "{text:?}");
        assert_eq!(nginx(text), None, "{text:?}");
        assert_eq!(stunnel(text), None, "{text:?}");
        assert_eq!(loaded_libcrypto(text), None, "{text:?}");
        for backend in Backend::ALL {
            assert_eq!(ours(text, backend), None, "{text:?}");
        }
    }
}

#[test]
fn a_peer_is_asked_with_its_own_flag() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("nginx");
    // Answers -V only, and on stderr, as nginx does.
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = -V ] && cat >&2 <<'END'\n{}END\n",
        fixture("nginx-deb13")
    );
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        of_peer(ConfigName::Nginx, &program, &Origin::System),
        "OpenSSL 3.5.9"
    );
    assert_eq!(
        of_peer(ConfigName::Haproxy, &program, &Origin::System),
        UNKNOWN
    );
    assert_eq!(
        of_peer(
            ConfigName::Hitch,
            &dir.path().join("no-such-hitch"),
            &Origin::System
        ),
        UNKNOWN
    );
}

#[test]
fn each_variant_gets_its_terminators_library() {
    let ours = Ours::read(
        fixture("proxy"),
        "echo-server 0.1.0\nopenssl backend: OpenSSL 3.0.19 27 Jan 2026 (the host's libssl)\n",
    );
    let peers = [Peer {
        config: ConfigName::Haproxy,
        program: "/usr/sbin/haproxy".into(),
        version: "HAProxy version 3.0.11".into(),
        origin: Origin::System,
        tls_library: "AWS-LC 5.12.0".into(),
    }];
    let of = |config, backend| of_variant(&Variant { config, backend }, &ours, &peers);
    assert_eq!(of(ConfigName::Haproxy, None), "AWS-LC 5.12.0");
    assert_eq!(of(ConfigName::Nginx, None), UNKNOWN, "a peer not found");
    assert_eq!(of(ConfigName::Http, None), NONE);
    assert_eq!(of(ConfigName::Relay, None), NONE);
    assert_eq!(
        of(ConfigName::ProxyRustls, Some(Backend::RustlsRing)),
        "rustls 0.23.46 + ring 0.17.14"
    );
    assert_eq!(
        of(ConfigName::ProxyOpenssl, Some(Backend::Openssl)),
        "OpenSSL 3.6.3"
    );
    // https-* rows are the echo-server's own TLS.
    assert_eq!(
        of(ConfigName::HttpsOpenssl, Some(Backend::Openssl)),
        "OpenSSL 3.0.19"
    );
    assert_eq!(
        of(ConfigName::HttpsRustls, Some(Backend::RustlsAwsLc)),
        UNKNOWN
    );
    assert_eq!(
        of(ConfigName::ProxyNativeTls, Some(Backend::NativeTls)),
        "native-tls 0.2.18 + OpenSSL 3.6.3"
    );
    assert_eq!(
        of(ConfigName::HttpsNativeTls, Some(Backend::NativeTls)),
        UNKNOWN,
        "the echo-server's own line, which this one lacks"
    );
    assert_eq!(
        ours.to_json(false)["rustls-aws-lc"],
        "rustls 0.23.46 + aws-lc-rs 1.19.0"
    );
}
