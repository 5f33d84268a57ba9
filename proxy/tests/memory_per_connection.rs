//! Heap bytes an idle TLS connection holds on the server, counted by a global allocator
//! that wraps the system's: the data path's memory bound as a count, not as RSS or timing.
//!
//! Each test accepts connections on one thread whose allocations (minus its frees) are
//! counted, completes their handshakes, reads a first request so every post-handshake
//! message (TLS 1.3 tickets) has gone out, and holds them idle. The server side of each is
//! what the proxy keeps per idle client connection: the TLS stream over the socket.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{mpsc, Arc};

use proxy::tls::selfsigned::{self, KeyKind};
use proxy::tls::{Acceptor, Backend, CertSet, RustlsIo, TlsSettings};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sysio::read_ahead::ReadAhead;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counts, per thread, the bytes a thread allocated minus those it freed, while it opts
/// in (`COUNTED`). Per thread, so tests running side by side do not count each other.
struct Counting;

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    if COUNTED.with(Cell::get) {
        LIVE.with(|live| live.set(live.get() + delta));
    }
}

// SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
#[allow(unsafe_code)] // reason: GlobalAlloc is an unsafe trait; this one only forwards
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// 4 KiB. Measured 3,720 on 2026-12-07 (rustls 0.23.46 with ring, TLS 1.3, P-256), of
/// which 1,272 are the stream itself (the connection's state inline) and the rest its keys,
/// handshake state and socket registration; against 7,807 for tokio-rustls.
const UNBUFFERED_BOUND: f64 = 4096.0;

/// Far more than 200 handshakes over loopback take, even on a busy machine.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Connections held idle per measurement: enough that one-off allocations (a thread's
/// first use of a buffer, a table growing) weigh little per connection.
const CONNECTIONS: usize = 200;

/// The unbuffered API's idle connection holds its TLS state and nothing else: under the
/// bound below, and at most half of what tokio-rustls's does (whose buffered connection
/// keeps a 4 KiB read buffer).
#[test]
fn an_idle_unbuffered_connection_holds_no_tls_buffer() {
    let unbuffered = bytes_per_idle_connection(RustlsIo::Unbuffered);
    let buffered = bytes_per_idle_connection(RustlsIo::Buffered);
    println!("heap bytes per idle connection: unbuffered {unbuffered:.0}, buffered {buffered:.0}");
    assert!(
        unbuffered <= UNBUFFERED_BOUND,
        "unbuffered: {unbuffered:.0} bytes per idle connection, bound {UNBUFFERED_BOUND}"
    );
    assert!(
        unbuffered <= 0.5 * buffered,
        "unbuffered {unbuffered:.0} against buffered {buffered:.0} bytes: more than half"
    );
}

/// Heap bytes per idle connection on the server, for a rustls acceptor in `io` mode.
///
/// The crypto provider is ring's, whose keys live in Rust memory, so the count is whole:
/// aws-lc-rs and OpenSSL allocate their key contexts with C's `malloc`, which Rust's
/// global allocator never sees (the harness's idle scenario, by RSS, sees everything).
fn bytes_per_idle_connection(io: RustlsIo) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let paths = selfsigned::write_to_dir(dir.path(), KeyKind::EcdsaP256)
        .expect("a self-signed certificate");
    let (cert, key) = (paths.cert, paths.key);
    let settings = TlsSettings {
        backend: Backend::RustlsRing,
        rustls_io: io,
        ..TlsSettings::default()
    };
    let acceptor = Acceptor::build(&settings, &CertSet::single(&cert, &key)).expect("the acceptor");
    let root = CertificateDer::from_pem_file(&cert).expect("the certificate's PEM");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let clients = std::thread::spawn(move || clients(addr, root, CONNECTIONS + 1, done_rx));
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let measure = async {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            // One connection first, dropped: the thread's buffers and the runtime's tables
            // are allocated once, not per connection.
            drop(serve_one(&listener, &acceptor).await);
            COUNTED.with(|c| c.set(true));
            let before = LIVE.with(Cell::get);
            // The array counts too: it stands for the tasks that hold the streams in the
            // proxy.
            let mut held = Vec::with_capacity(CONNECTIONS);
            for _ in 0..CONNECTIONS {
                held.push(serve_one(&listener, &acceptor).await);
            }
            let after = LIVE.with(Cell::get);
            COUNTED.with(|c| c.set(false));
            drop(held);
            (after - before) as f64 / CONNECTIONS as f64
        };
        rt.block_on(async { tokio::time::timeout(TIMEOUT, measure).await })
            .expect("the connections did not all open in time")
    });
    let per_connection = server.join().expect("the server thread");
    done_tx.send(()).expect("the clients still waiting");
    clients.join().expect("the client thread");
    per_connection
}

/// Accepts one connection, completes its handshake and reads its "ping".
async fn serve_one(
    listener: &tokio::net::TcpListener,
    acceptor: &Acceptor,
) -> proxy::tls::TlsStream<ReadAhead<tokio::net::TcpStream>> {
    let (tcp, _) = listener.accept().await.expect("accepting a connection");
    let mut tls = acceptor
        .accept(ReadAhead::new(tcp))
        .await
        .expect("the server's handshake");
    let mut ping = [0u8; 4];
    tls.read_exact(&mut ping).await.expect("the client's ping");
    assert_eq!(&ping, b"ping");
    tls
}

/// `n` TLS clients that each send "ping" and stay connected until `done`.
fn clients(
    addr: std::net::SocketAddr,
    root: CertificateDer<'static>,
    n: usize,
    done: mpsc::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("trusting the certificate");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let streams = rt.block_on(async {
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .expect("connecting");
            let name = ServerName::try_from("localhost").expect("a server name");
            let mut tls = connector
                .connect(name, tcp)
                .await
                .expect("the client's handshake");
            tls.write_all(b"ping").await.expect("sending ping");
            tls.flush().await.expect("flushing ping");
            streams.push(tls);
        }
        streams
    });
    done.recv().expect("the measurement's end");
    drop(streams);
}
