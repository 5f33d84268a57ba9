//! `openssl s_client` (the host's OpenSSL) through the proxy: TLS 1.2 and TLS 1.3 with the
//! certificate verified against the test CA, resumption from a saved session
//! (`-sess_out`, then `-sess_in`: "Reused"), and mutual TLS (a client certificate from the
//! CA the proxy's `--client-ca` names gets an answer; no certificate gets none).

use std::path::Path;
use std::process::{Command, Output};

use proxy::tls::Backend;
use rstest::rstest;
use rstest_reuse::apply;

use crate::common::Proxy;
use crate::every_backend;
use crate::stack::{self, cell, EchoServer, Pki, HOST};

/// What s_client sends once the handshake is done: the echo-server answers a GET with an
/// empty 200 and, for `Connection: close`, closes, which ends s_client (`-ign_eof`).
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: web.tls-off.test\r\nConnection: close\r\n\r\n";
const ANSWER: &str = "HTTP/1.1 200 OK";

#[apply(every_backend)]
fn s_client_versions_resumption_and_client_certificates(backend: Backend) {
    let Some(openssl) = stack::program("openssl", "openssl") else {
        return;
    };
    println!(
        "real-clients | {}",
        stack::version_line(&openssl, &["version"])
    );
    let pki = Pki::new();
    let echo = EchoServer::start(pki.path());
    let proxy = pki.proxy(backend, &echo.spec, &[]);
    let client = SClient {
        openssl: &openssl,
        pki: &pki,
        proxy: &proxy,
    };
    for version in ["1.2", "1.3"] {
        if backend == Backend::NativeTls && version == "1.3" {
            // native-tls's server speaks TLS 1.2 only: a 1.3-only client must be refused.
            let out = client.connect(version, &[]);
            assert!(
                !stack::text(&out).contains(ANSWER),
                "native-tls answered TLS 1.3: {}",
                stack::text(&out)
            );
            cell(
                "s_client",
                backend,
                "TLS 1.3",
                "refused (native-tls is TLS 1.2 only)",
            );
            continue;
        }
        resumes(&client, backend, version);
    }
    client_certificates(&pki, &openssl, &echo, backend);
}

/// A full handshake that saves its session, then one that resumes from it.
fn resumes(client: &SClient<'_>, backend: Backend, version: &str) {
    let session = client.pki.path().join(format!("session-{version}.pem"));
    let first = client.connect(version, &["-sess_out", stack::utf8(&session)]);
    client.assert_answered(&first, backend, version);
    let first = stack::text(&first);
    assert!(
        first.contains(&format!("New, TLSv{version}")),
        "{backend}: {first}"
    );
    let again = client.connect(version, &["-sess_in", stack::utf8(&session)]);
    client.assert_answered(&again, backend, version);
    let again = stack::text(&again);
    assert!(
        again.contains(&format!("Reused, TLSv{version}")),
        "{backend} TLS {version}: the saved session was not resumed: {again}"
    );
    cell(
        "s_client",
        backend,
        &format!("TLS {version}"),
        "verified; resumed from -sess_in (Reused)",
    );
}

/// The proxy with `--client-ca`: s_client with a certificate from that CA is answered,
/// without one it is not. native-tls has no client certificates: the proxy must refuse the
/// flag at start-up (exit 2, naming it) rather than run without the check.
fn client_certificates(pki: &Pki, openssl: &Path, echo: &EchoServer, backend: Backend) {
    let ca = stack::utf8(&pki.ca.path);
    if backend == Backend::NativeTls {
        let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
            .args(["--listen", "127.0.0.1:0", "--upstream", &echo.spec])
            .args(["--cert", stack::utf8(&pki.server.cert)])
            .args(["--key", stack::utf8(&pki.server.key)])
            .args(["--tls-backend", backend.name(), "--client-ca", ca])
            .output()
            .expect("running the proxy");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("client_ca"), "{err}");
        cell(
            "s_client",
            backend,
            "mTLS",
            "skipped: --client-ca refused at start-up",
        );
        return;
    }
    let proxy = pki.proxy(backend, &echo.spec, &["--client-ca", ca]);
    let client = SClient {
        openssl,
        pki,
        proxy: &proxy,
    };
    let id = pki
        .ca
        .issue_client_files("real-client", pki.path(), "client");
    for version in ["1.2", "1.3"] {
        let with = client.connect(
            version,
            &["-cert", stack::utf8(&id.cert), "-key", stack::utf8(&id.key)],
        );
        client.assert_answered(&with, backend, version);
        let without = client.connect(version, &[]);
        let text = stack::text(&without);
        assert!(
            !text.contains(ANSWER),
            "{backend} TLS {version}: answered a client without a certificate: {text}"
        );
        assert!(
            !without.status.success() && text.contains("alert"),
            "{backend} TLS {version}: no alert for the missing certificate: {text}"
        );
        cell(
            "s_client",
            backend,
            &format!("mTLS, TLS {version}"),
            "with certificate answered; without refused by alert",
        );
    }
}

/// s_client pointed at one proxy.
struct SClient<'a> {
    openssl: &'a Path,
    pki: &'a Pki,
    proxy: &'a Proxy,
}

impl SClient<'_> {
    /// One connection with TLS `version` only ("1.2" or "1.3"), verifying the proxy's
    /// certificate for [`HOST`] against the test CA, sending [`REQUEST`].
    fn connect(&self, version: &str, extra: &[&str]) -> Output {
        let flag = if version == "1.2" {
            "-tls1_2"
        } else {
            "-tls1_3"
        };
        stack::run(
            Command::new(self.openssl)
                .args(["s_client", "-connect", &self.proxy.addr.to_string()])
                .args(["-servername", HOST, "-verify_hostname", HOST])
                .args(["-CAfile", stack::utf8(&self.pki.ca.path)])
                .args(["-verify_return_error", "-ign_eof", flag])
                .args(extra),
            REQUEST,
        )
    }

    /// The handshake verified the certificate, ran TLS `version`, and the echo-server's
    /// answer came back through it.
    fn assert_answered(&self, out: &Output, backend: Backend, version: &str) {
        let text = stack::text(out);
        let what = format!(
            "{backend} TLS {version}: {text}\nproxy: {}",
            self.proxy.log()
        );
        assert!(text.contains(ANSWER), "no answer: {what}");
        assert!(text.contains("Verify return code: 0 (ok)"), "{what}");
        let protocol = format!(", TLSv{version}, Cipher is");
        assert!(text.contains(&protocol), "{what}");
    }
}
