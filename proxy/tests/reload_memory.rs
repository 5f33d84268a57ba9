//! A reload of thousands of SNI certificates through the real `proxy` binary hands the
//! previous set's memory back to the OS: the new set and the old one are both resident
//! while the reload runs, and before the proxy released the old one explicitly (its C
//! parts live in glibc's malloc, which keeps its high-water mark) a process that had
//! reloaded stayed at up to twice its size (`harness --scenario sni-scale`, README
//! "Certificates at scale"). Without the release the OpenSSL case fails (120,664 KiB
//! before, 216,588 after 3 reloads); the rustls case, whose set is a tenth of the size
//! and reused in place when no handshake runs, holds either way and guards against growth.

// reason: a test helper that cannot set up its fixture should fail the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::upstream::{Up, Upstream};
use common::{Pki, Proxy};

/// Names in the list: enough that one set is megabytes on either backend.
const NAMES: usize = 4000;
const RELOADS: usize = 3;
/// The releases after a reload come within 10 s of it; this catches "never".
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

#[rstest::rstest]
#[case::rustls("rustls-aws-lc")]
#[case::openssl("openssl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_of_many_certificates_leave_memory_where_it_was(#[case] backend: &str) {
    let pki = Pki::new(&[]);
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let conf = pki.dir.path().join("many.toml");
    std::fs::write(&conf, config(&pki, backend, &upstream.spec)).unwrap();
    let proxy = Proxy::start(pki.dir.path(), &[conf.to_str().unwrap()], 1);
    let pid = proxy.child.id();
    let before = rss_kib(pid);
    for done in 1..=RELOADS {
        kill(Pid::from_raw(pid as i32), Signal::SIGHUP).unwrap();
        wait_reloads(&proxy, done);
    }
    let limit = before + before / 4;
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut after = rss_kib(pid);
    while after > limit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = rss_kib(pid);
    }
    assert!(
        after <= limit,
        "{backend}: RSS {before} KiB with {NAMES} certificates, {after} KiB \
         {SETTLE_LIMIT:?} after {RELOADS} reloads (limit {limit})"
    );
}

/// The test certificate's files under every name: each entry is read and parsed into
/// objects of its own, as distinct files would be.
fn config(pki: &Pki, backend: &str, upstream: &str) -> String {
    let (cert, key) = (pki.cert.display(), pki.key.display());
    let mut s = format!(
        "threads = 1\n[tls]\nbackend = \"{backend}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n"
    );
    for i in 0..NAMES {
        let _ = write!(
            s,
            "[[tls.sni]]\nname = \"n{i}.test\"\ncert = \"{cert}\"\nkey = \"{key}\"\n"
        );
    }
    let _ = write!(
        s,
        "[[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n"
    );
    s
}

/// Waits until the proxy has logged `count` finished reloads.
fn wait_reloads(proxy: &Proxy, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = proxy.log();
        assert!(!log.contains("reload failed"), "{log}");
        if log.matches("TLS settings reloaded").count() >= count {
            return;
        }
        assert!(Instant::now() < deadline, "reload {count} never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
